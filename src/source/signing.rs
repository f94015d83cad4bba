//! Signed commits: when `pgcd.yaml` of the revision in force requires them,
//! a new revision is applied only if `git verify-commit` accepts its
//! signature and the signer is allowed — an SSH key listed in
//! `allowed_signers` (ssh-keygen's allowed-signers lines), or a GPG key whose
//! fingerprint is listed there (its public key in the agent's GnuPG keyring,
//! `GNUPGHOME`). The setting is taken from the state in force, never from the
//! candidate commit, so an unsigned commit cannot switch the check off for
//! itself.

// Runs inside spawn_blocking, beside git2.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;

/// Verifies the signature of `sha` in the repository at `git_dir`; says
/// who signed it (git's `Good "git" signature for ...` line, or the GPG
/// key's fingerprint), for the revision's audit record.
pub fn verify(git_dir: &Path, sha: &str, allowed_signers: &[String]) -> Result<String, String> {
    if allowed_signers.is_empty() {
        return Err("signed commits are required but no allowed signers are configured".into());
    }
    // Kept inside the mirror: only the leader's loop writes it.
    let file = git_dir.join("pgcd-allowed-signers");
    let ssh_lines: Vec<&str> = allowed_signers
        .iter()
        .map(String::as_str)
        .filter(|l| fingerprint(l).is_none())
        .collect();
    std::fs::write(&file, ssh_lines.join("\n") + "\n")
        .map_err(|e| format!("cannot write allowed signers: {e}"))?;
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .arg("-c")
        .arg(format!("gpg.ssh.allowedSignersFile={}", file.display()))
        .args(["verify-commit", "--raw", sha])
        .output()
        .map_err(|e| format!("cannot run git verify-commit: {e}"))?;
    let short = &sha[..sha.len().min(12)];
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let line = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no signature");
        return Err(format!(
            "commit {short} is not signed by an allowed key ({})",
            line.trim()
        ));
    }
    // GnuPG accepts a good signature by any key in the keyring: the signer
    // must also be one of the allowed fingerprints. (SSH signatures were
    // already checked against the allowed-signers file by git.)
    let gpg_signers = valid_gpg_signers(&stderr);
    if gpg_signers.is_empty() {
        return Ok(ssh_signer(&stderr));
    }
    let allowed: Vec<String> = allowed_signers
        .iter()
        .filter_map(|l| fingerprint(l))
        .collect();
    if let Some(f) = gpg_signers.iter().find(|f| allowed.contains(f)) {
        Ok(format!("GPG key {f}"))
    } else {
        Err(format!(
            "commit {short} is signed by GPG key {} which is not in allowed_signers",
            gpg_signers[0]
        ))
    }
}

/// git's line naming an SSH signer (`Good "git" signature for ADA with
/// ED25519 key SHA256:...`), or a plain "good SSH signature".
fn ssh_signer(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Good "))
        .unwrap_or("good SSH signature")
        .to_string()
}

/// A GPG fingerprint entry (40 or 64 hex digits, spaces allowed), normalised.
fn fingerprint(line: &str) -> Option<String> {
    let hex: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    ((hex.len() == 40 || hex.len() == 64) && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_uppercase())
}

/// Fingerprints (signing key and primary key) from GnuPG's `VALIDSIG` status lines.
fn valid_gpg_signers(status: &str) -> Vec<String> {
    status
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] VALIDSIG "))
        .flat_map(|rest| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let mut f = vec![fields.first().copied().unwrap_or("").to_ascii_uppercase()];
            if let Some(primary) = fields.get(9) {
                f.push(primary.to_ascii_uppercase());
            }
            f
        })
        .filter(|f| !f.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpg_status_lines_name_the_signer() {
        let status = "[GNUPG:] NEWSIG\n[GNUPG:] VALIDSIG 1111111111111111111111111111111111111111 2026-11-25 1 0 4 0 22 10 00 2222222222222222222222222222222222222222\n";
        assert_eq!(
            valid_gpg_signers(status),
            [
                "1111111111111111111111111111111111111111",
                "2222222222222222222222222222222222222222"
            ]
        );
        assert_eq!(
            fingerprint("2222 2222 2222 2222 2222  2222 2222 2222 2222 2222").as_deref(),
            Some("2222222222222222222222222222222222222222")
        );
        assert_eq!(fingerprint("ada@example.com ssh-ed25519 AAAA"), None);
        assert_eq!(
            ssh_signer(
                "\nGood \"git\" signature for ada@example.com with ED25519 key SHA256:abc\n"
            ),
            "Good \"git\" signature for ada@example.com with ED25519 key SHA256:abc"
        );
    }
}
