//! Resolving secret references on this host: the one place where a
//! `{env: ...}`, `{file: ...}` or `{age: ...}` reference becomes the secret
//! itself. Callers keep the value in memory only as long as they need it and
//! never log it.
//!
//! age: the cluster has one X25519 identity, made at `--init` and kept like
//! the CA key (0600 in each host's `DATA_DIR/pki/age.key`, handed to a host
//! only when it proves a join token, never in etcd). `{age: ...}` values in
//! specs are encrypted to its recipient (`pgcd secret encrypt`), and so are
//! the secrets pgcd makes itself and keeps in etcd (replication passwords):
//! a reader of etcd or of the repository sees ciphertext only.

use crate::spec::secret::SecretRef;
use age::secrecy::ExposeSecret;
use std::path::Path;
use std::sync::RwLock;

static IDENTITY: RwLock<Option<age::x25519::Identity>> = RwLock::new(None);

/// The armor every age ciphertext starts with.
pub const AGE_HEADER: &str = "-----BEGIN AGE ENCRYPTED FILE-----";

/// Why a secret reference could not be read on this host. The message names
/// the reference (variable or path), never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set in the agent's environment.
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    /// The file cannot be read.
    #[error("{path}: {source}")]
    File {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// This process holds no age identity (not an agent, or its data dir
    /// has no `pki/age.key`).
    #[error("this host has no age identity to decrypt with (DATA_DIR/pki/age.key)")]
    NoIdentity,
    /// The ciphertext is not for this cluster, or is damaged.
    #[error("cannot decrypt the age value: {0}")]
    Decrypt(String),
    /// Encryption failed, or a recipient is not an age X25519 recipient.
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
}

/// Makes a new cluster identity; returns its secret text (`AGE-SECRET-KEY-1…`).
pub fn generate_identity() -> String {
    age::x25519::Identity::generate()
        .to_string()
        .expose_secret()
        .to_owned()
}

/// The public recipient (`age1…`) of an identity's secret text.
pub fn recipient_of(identity: &str) -> Result<String, SecretError> {
    let id: age::x25519::Identity = identity
        .trim()
        .parse()
        .map_err(|e: &str| SecretError::Decrypt(e.to_owned()))?;
    Ok(id.to_public().to_string())
}

/// Loads this host's identity from its file, for every later `{age: ...}`.
pub fn install_identity_file(path: &Path) -> Result<(), SecretError> {
    // Read once at startup, before the runtime serves anything.
    #[allow(clippy::disallowed_methods)]
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
        path: path.display().to_string(),
        source,
    })?;
    let id: age::x25519::Identity = text
        .trim()
        .parse()
        .map_err(|e: &str| SecretError::Decrypt(format!("{}: {e}", path.display())))?;
    *IDENTITY.write().unwrap_or_else(|p| p.into_inner()) = Some(id);
    Ok(())
}

/// Encrypts `plain` to an age recipient (`age1…`), armored.
pub fn encrypt_to(recipient: &str, plain: &str) -> Result<String, SecretError> {
    let r: age::x25519::Recipient = recipient
        .trim()
        .parse()
        .map_err(|e: &str| SecretError::Encrypt(format!("recipient: {e}")))?;
    age::encrypt_and_armor(&r, plain.as_bytes()).map_err(|e| SecretError::Encrypt(e.to_string()))
}

/// Encrypts `plain` to this cluster (the installed identity's recipient):
/// how pgcd keeps the secrets it makes in etcd.
pub fn seal(plain: &str) -> Result<String, SecretError> {
    let guard = IDENTITY.read().unwrap_or_else(|p| p.into_inner());
    let id = guard.as_ref().ok_or(SecretError::NoIdentity)?;
    age::encrypt_and_armor(&id.to_public(), plain.as_bytes())
        .map_err(|e| SecretError::Encrypt(e.to_string()))
}

/// Decrypts an armored age value with this host's identity.
pub fn open(cipher: &str) -> Result<String, SecretError> {
    let guard = IDENTITY.read().unwrap_or_else(|p| p.into_inner());
    let id = guard.as_ref().ok_or(SecretError::NoIdentity)?;
    open_with(id, cipher)
}

fn open_with(id: &age::x25519::Identity, cipher: &str) -> Result<String, SecretError> {
    let plain = age::decrypt(id, cipher.trim().as_bytes())
        .map_err(|e| SecretError::Decrypt(e.to_string()))?;
    String::from_utf8(plain).map_err(|_| SecretError::Decrypt("the plaintext is not text".into()))
}

/// A secret pgcd stored in etcd: sealed (an age value), or, written by an
/// older pgcd, the value itself.
pub fn open_stored(value: &str) -> Result<String, SecretError> {
    if value.trim_start().starts_with(AGE_HEADER) {
        open(value)
    } else {
        Ok(value.to_owned())
    }
}

/// Reads a secret reference on this host. A file's trailing newline is not
/// part of the secret.
pub fn resolve(secret: &SecretRef) -> Result<String, SecretError> {
    match secret {
        SecretRef::Env(name) => {
            std::env::var(name).map_err(|_| SecretError::EnvMissing(name.clone()))
        }
        // Small files read once per use; callers on the async runtime accept
        // this short blocking read (secret files live on local disk).
        #[allow(clippy::disallowed_methods)]
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|s| s.trim_end().to_string())
            .map_err(|source| SecretError::File {
                path: path.clone(),
                source,
            }),
        SecretRef::Age(cipher) => open(cipher),
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn an_age_value_opens_only_with_the_clusters_identity() {
        let key = generate_identity();
        let other = generate_identity();
        let cipher = encrypt_to(&recipient_of(&key).unwrap(), "s3cret-pw").unwrap();
        assert!(cipher.starts_with(AGE_HEADER));
        assert!(!cipher.contains("s3cret-pw"));
        let id: age::x25519::Identity = key.parse().unwrap();
        assert_eq!(open_with(&id, &cipher).unwrap(), "s3cret-pw");
        let wrong: age::x25519::Identity = other.parse().unwrap();
        let err = open_with(&wrong, &cipher).unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn a_missing_variable_names_the_variable_not_a_value() {
        let e = resolve(&SecretRef::Env("PGCD_TEST_SURELY_UNSET".into())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable PGCD_TEST_SURELY_UNSET is not set"
        );
    }

    #[test]
    fn a_file_secret_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        let got = resolve(&SecretRef::File(p.display().to_string())).unwrap();
        assert_eq!(got, "s3cret");
    }
}
