//! Signed commits: when `pgcd.yaml` of the revision in force requires them,
//! a new revision is applied only if `git verify-commit` accepts its SSH
//! signature against the allowed signers. The setting is taken from the
//! state in force, never from the candidate commit, so an unsigned commit
//! cannot switch the check off for itself.

use std::path::Path;
use std::process::Command;

/// Verifies the signature of `sha` in the repository at `git_dir` against
/// `allowed_signers` (lines of ssh-keygen's allowed-signers format).
pub fn verify(git_dir: &Path, sha: &str, allowed_signers: &[String]) -> Result<(), String> {
    if allowed_signers.is_empty() {
        return Err("signed commits are required but no allowed signers are configured".into());
    }
    // Kept inside the mirror: only the leader's loop writes it.
    let file = git_dir.join("pgcd-allowed-signers");
    std::fs::write(&file, allowed_signers.join("\n") + "\n")
        .map_err(|e| format!("cannot write allowed signers: {e}"))?;
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .arg("-c")
        .arg(format!("gpg.ssh.allowedSignersFile={}", file.display()))
        .args(["verify-commit", "--raw", sha])
        .output()
        .map_err(|e| format!("cannot run git verify-commit: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let why = String::from_utf8_lossy(&out.stderr);
        let line = why
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no signature");
        Err(format!(
            "commit {} is not signed by an allowed key ({})",
            &sha[..sha.len().min(12)],
            line.trim()
        ))
    }
}
