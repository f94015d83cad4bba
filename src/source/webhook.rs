//! Webhook verification: an HMAC-SHA256 of the raw body with a shared
//! secret, compared in constant time, and the pushed branch read from the
//! event so pushes to other branches are accepted and ignored.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Bodies larger than this are refused (413) before any work.
pub const MAX_BODY: usize = 1024 * 1024;

/// The forges whose signature headers pgcd understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `X-Hub-Signature-256: sha256=<hex>`.
    Github,
    /// `X-Gitea-Signature: <hex>`.
    Gitea,
    /// `X-Pgcd-Signature: sha256=<hex>`.
    Generic,
}

impl Flavor {
    /// The header carrying the signature.
    pub fn header(self) -> &'static str {
        match self {
            Flavor::Github => "x-hub-signature-256",
            Flavor::Gitea => "x-gitea-signature",
            Flavor::Generic => "x-pgcd-signature",
        }
    }
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No signature header.
    #[error("missing signature header {0}")]
    Missing(&'static str),
    /// The signature does not match the body.
    #[error("signature does not match")]
    Mismatch,
}

/// The hex HMAC-SHA256 of a body (what a sender puts in the header).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a delivery's signature header against the body.
pub fn verify(
    flavor: Flavor,
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), Refused> {
    let header = header.ok_or(Refused::Missing(flavor.header()))?.trim();
    let hex_sig = match flavor {
        Flavor::Gitea => header.strip_prefix("sha256=").unwrap_or(header),
        Flavor::Github | Flavor::Generic => {
            header.strip_prefix("sha256=").ok_or(Refused::Mismatch)?
        }
    };
    let given = hex::decode(hex_sig).map_err(|_| Refused::Mismatch)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    let want = mac.finalize().into_bytes();
    if want.as_slice().ct_eq(&given).into() {
        Ok(())
    } else {
        Err(Refused::Mismatch)
    }
}

/// The ref a push event names (`refs/heads/main`), if the body has one.
pub fn pushed_ref(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("ref").and_then(|r| r.as_str()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signature_round_trip() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = format!("sha256={}", sign(b"s3cret", body));
        assert_eq!(verify(Flavor::Github, b"s3cret", Some(&sig), body), Ok(()));
        assert_eq!(
            verify(Flavor::Github, b"other", Some(&sig), body),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            verify(Flavor::Github, b"s3cret", Some(&sig), b"tampered"),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            verify(Flavor::Github, b"s3cret", None, body),
            Err(Refused::Missing("x-hub-signature-256"))
        );
        assert_eq!(pushed_ref(body).as_deref(), Some("refs/heads/main"));
    }

    #[test]
    fn gitea_sends_bare_hex() {
        let body = b"{}";
        assert_eq!(
            verify(Flavor::Gitea, b"k", Some(&sign(b"k", body)), body),
            Ok(())
        );
        assert_eq!(
            verify(Flavor::Gitea, b"k", Some("zz"), body),
            Err(Refused::Mismatch)
        );
    }

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
