//! SSH host keys checked the way OpenSSH checks them: against a
//! `known_hosts` file (plain or hashed host names, `[host]:port` for other
//! ports, patterns with `*`, `?` and `!`, `@revoked` lines), and named by
//! their SHA256 fingerprint as `ssh-keygen -l` prints it, so an operator can
//! compare what pgcd saw with what the server's administrator published.
//!
//! Pure functions over text: reading the file is the caller's business.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// What a `known_hosts` file says of a key offered by a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line names the host with exactly this key.
    Known,
    /// No line names the host.
    Unknown,
    /// Lines name the host with other keys of the same type: the server's
    /// key changed, or someone is in between. `lines` are 1-based, with the
    /// fingerprint each holds.
    Changed {
        /// `(line, fingerprint)` of each key on record for the host.
        on_record: Vec<(usize, String)>,
    },
    /// Lines name the host with keys of other types only (the server
    /// offered a type the file has no key of).
    OtherTypes {
        /// The key types on record for the host.
        types: Vec<String>,
    },
    /// The key is marked `@revoked` (at this 1-based line).
    Revoked {
        /// The line.
        line: usize,
    },
}

/// The SHA256 fingerprint of a key blob, as `ssh-keygen -l` prints it
/// (`SHA256:` and unpadded base64).
pub fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// The key type named at the start of an SSH public key blob
/// (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, ...).
pub fn key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4 + len)?).ok()
}

/// How the host appears in `known_hosts`: the bare name on port 22,
/// `[name]:port` on any other.
pub fn host_entry_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks the key `blob` that `host` (on `port`) offered against the text
/// of a `known_hosts` file.
pub fn check(known_hosts: &str, host: &str, port: u16, blob: &[u8]) -> Verdict {
    let name = host_entry_name(host, port);
    let offered_type = key_type(blob).unwrap_or("unknown");
    let mut same_type = Vec::new();
    let mut other_types = Vec::new();
    let mut known = false;
    for (i, line) in known_hosts.lines().enumerate() {
        let Some(entry) = Entry::parse(line) else {
            continue;
        };
        if !entry.matches(&name) {
            continue;
        }
        let Ok(key) = base64::engine::general_purpose::STANDARD.decode(entry.key) else {
            continue;
        };
        match entry.marker {
            Some("@revoked") if key == blob => return Verdict::Revoked { line: i + 1 },
            Some(_) => {} // @cert-authority: host certificates are not used here
            None if key == blob => known = true,
            None if entry.kind == offered_type => same_type.push((i + 1, fingerprint(&key))),
            None => other_types.push(entry.kind.to_string()),
        }
    }
    if known {
        Verdict::Known
    } else if !same_type.is_empty() {
        Verdict::Changed {
            on_record: same_type,
        }
    } else if !other_types.is_empty() {
        other_types.dedup();
        Verdict::OtherTypes { types: other_types }
    } else {
        Verdict::Unknown
    }
}

/// One line of a `known_hosts` file.
struct Entry<'a> {
    marker: Option<&'a str>,
    hosts: &'a str,
    kind: &'a str,
    key: &'a str,
}

impl<'a> Entry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut parts = line.split_whitespace();
        let mut first = parts.next()?;
        let mut marker = None;
        if first.starts_with('@') {
            marker = Some(first);
            first = parts.next()?;
        }
        Some(Self {
            marker,
            hosts: first,
            kind: parts.next()?,
            key: parts.next()?,
        })
    }

    /// OpenSSH's rule: some pattern matches and no negated pattern does;
    /// a hashed entry (`|1|salt|hash`) stands for one name.
    fn matches(&self, name: &str) -> bool {
        if let Some(hashed) = self.hosts.strip_prefix("|1|") {
            return hashed_matches(hashed, name);
        }
        let mut hit = false;
        for pattern in self.hosts.split(',') {
            match pattern.strip_prefix('!') {
                Some(neg) if wildcard(neg, name) => return false,
                Some(_) => {}
                None => hit |= wildcard(pattern, name),
            }
        }
        hit
    }
}

fn hashed_matches(hashed: &str, name: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` matches any run of characters, `?` any one (case-insensitive, as host names are).
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up ed25519 public key blob (type string, then 32 key bytes).
    fn blob(byte: u8) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&11u32.to_be_bytes());
        b.extend_from_slice(b"ssh-ed25519");
        b.extend_from_slice(&32u32.to_be_bytes());
        b.extend_from_slice(&[byte; 32]);
        b
    }

    fn line(hosts: &str, key: &[u8]) -> String {
        format!(
            "{hosts} ssh-ed25519 {}\n",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    #[test]
    fn a_key_on_record_for_the_host_and_port_is_known() {
        let k = blob(1);
        let text = line("[git.example]:2222,10.0.0.1", &k);
        assert_eq!(check(&text, "git.example", 2222, &k), Verdict::Known);
        assert_eq!(check(&text, "10.0.0.1", 22, &k), Verdict::Known);
        // The same name on port 22 is another entry.
        assert_eq!(check(&text, "git.example", 22, &k), Verdict::Unknown);
        assert_eq!(key_type(&k), Some("ssh-ed25519"));
    }

    #[test]
    fn another_key_of_the_same_type_is_a_change_with_the_old_fingerprint() {
        let text = format!("# comment\n{}", line("git.example", &blob(1)));
        match check(&text, "git.example", 22, &blob(2)) {
            Verdict::Changed { on_record } => {
                assert_eq!(on_record, vec![(2, fingerprint(&blob(1)))]);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn hashed_names_patterns_negation_and_revocation() {
        // `ssh-keygen -H` form of "git.example", salt of 20 zero bytes.
        let salt = [0u8; 20];
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"git.example");
        let b64 = base64::engine::general_purpose::STANDARD;
        let hashed = format!(
            "|1|{}|{}",
            b64.encode(salt),
            b64.encode(mac.finalize().into_bytes())
        );
        let k = blob(3);
        assert_eq!(
            check(&line(&hashed, &k), "git.example", 22, &k),
            Verdict::Known
        );
        assert_eq!(check(&line(&hashed, &k), "other", 22, &k), Verdict::Unknown);
        let text = line("*.example,!evil.example", &k);
        assert_eq!(check(&text, "git.example", 22, &k), Verdict::Known);
        assert_eq!(check(&text, "evil.example", 22, &k), Verdict::Unknown);
        let revoked = format!("@revoked {}{}", line("*", &k), line("git.example", &k));
        assert_eq!(
            check(&revoked, "git.example", 22, &k),
            Verdict::Revoked { line: 1 }
        );
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        // `ssh-keygen -lf` printed SHA256:Rzgia16R... for this public key.
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIKHTrkrNWxOj6tjTAjPVEvHCDMzZUySkdp49UtGay3KE";
        let blob = base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap();
        assert_eq!(key_type(&blob), Some("ssh-ed25519"));
        assert_eq!(
            fingerprint(&blob),
            "SHA256:Rzgia16RbqkNnFR+ftHD6hsGuydf37Bsxw4otL3ycCw"
        );
    }
}
