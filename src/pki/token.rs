//! Join tokens: `<id>.<secret>.<pin>`. The id names the record in etcd,
//! which holds only SHA-256 of the secret; the pin is the CA certificate's
//! SHA-256, so a joining host checks the server's CA before it sends the
//! secret (kubeadm's discovery hash, in the same string).

use super::PkiError;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A join token as a person passes it to `--join-token`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The record's id (public).
    pub id: String,
    /// The secret (never stored, never logged).
    pub secret: String,
    /// The CA pin (public).
    pub pin: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken({}.***)", self.id)
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.id, self.secret, self.pin)
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl JoinToken {
    /// A new token for a CA with this pin (128 random bits of secret).
    pub fn generate(pin: &str) -> Self {
        Self {
            id: random_hex(4),
            secret: random_hex(16),
            pin: pin.to_owned(),
        }
    }

    /// Parses `<id>.<secret>.<pin>`; the message never repeats the input.
    pub fn parse(text: &str) -> Result<Self, PkiError> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        match parts.as_slice() {
            [id, secret, pin] if is_hex(id, 8) && is_hex(secret, 32) && is_hex(pin, 64) => {
                Ok(Self {
                    id: (*id).to_owned(),
                    secret: (*secret).to_owned(),
                    pin: pin.to_ascii_lowercase(),
                })
            }
            _ => Err(PkiError::Token(
                "the join token is not of the form pgcd prints (ID.SECRET.CA_PIN); run `pgcd cert join-token` on a cluster member".into(),
            )),
        }
    }

    /// What etcd keeps of the secret.
    pub fn hash(&self) -> String {
        hash_secret(&self.secret)
    }
}

/// SHA-256 of a token secret, hex.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The record of a join token in etcd (`keys::join_token`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// When it stops working, seconds since the Unix epoch.
    pub expires_at_unix: i64,
    /// When it was made, RFC 3339.
    pub created_at: String,
    /// The host that used it; a retry by that host (a lost answer) is
    /// answered again, any other host is refused.
    #[serde(default)]
    pub used_by: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_its_debug_hides_the_secret() {
        let t = JoinToken::generate(&"ab".repeat(32));
        let back = JoinToken::parse(&t.to_string()).unwrap();
        assert_eq!(back, t);
        assert!(!format!("{t:?}").contains(&t.secret));
        assert_ne!(t.hash(), t.secret);
    }

    #[test]
    fn a_malformed_token_is_refused_without_echoing_it() {
        let err = JoinToken::parse("deadbeef.s3cr3t-value.zz")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ID.SECRET.CA_PIN"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}
