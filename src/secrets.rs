//! Resolving secret references on this host: the one place where a
//! `{env: ...}`, `{file: ...}` or `{age: ...}` reference becomes the secret
//! itself. Callers keep the value in memory only as long as they need it and
//! never log it.

use crate::spec::secret::SecretRef;

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
    /// Age ciphertexts need the host's identity, which this build lacks.
    #[error("age-encrypted secrets are not decrypted by this version")]
    AgeUnsupported,
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
        SecretRef::Age(_) => Err(SecretError::AgeUnsupported),
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

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
