//! Webhook verification and reading: each forge's proof that a delivery
//! comes from it — an HMAC-SHA256 of the raw body (GitHub, Gitea,
//! Bitbucket, generic) or GitLab's shared token — compared in constant
//! time, and the refs a delivery is about, read from each forge's event
//! shape so pushes to other branches are accepted and ignored.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bodies larger than this are refused (413) before any work.
pub const MAX_BODY: usize = 1024 * 1024;

/// The forges whose deliveries pgcd understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `X-Hub-Signature-256: sha256=<hex>`, event in `X-GitHub-Event`.
    Github,
    /// `X-Gitea-Signature: <hex>`, event in `X-Gitea-Event`.
    Gitea,
    /// `X-Gitlab-Token: <secret>` (the secret itself, not a signature),
    /// event in `X-Gitlab-Event`.
    Gitlab,
    /// `X-Hub-Signature: sha256=<hex>` (Cloud and Data Center), event in `X-Event-Key`.
    Bitbucket,
    /// `X-Pgcd-Signature: sha256=<hex>`.
    Generic,
}

impl Flavor {
    /// The header carrying the signature (or GitLab's token).
    pub fn header(self) -> &'static str {
        match self {
            Flavor::Github => "x-hub-signature-256",
            Flavor::Gitea => "x-gitea-signature",
            Flavor::Gitlab => "x-gitlab-token",
            Flavor::Bitbucket => "x-hub-signature",
            Flavor::Generic => "x-pgcd-signature",
        }
    }

    /// The header naming the event.
    pub fn event_header(self) -> &'static str {
        match self {
            Flavor::Github => "x-github-event",
            Flavor::Gitea => "x-gitea-event",
            Flavor::Gitlab => "x-gitlab-event",
            Flavor::Bitbucket => "x-event-key",
            Flavor::Generic => "x-pgcd-event",
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
    /// GitLab's token is not the secret.
    #[error("token does not match")]
    WrongToken,
}

/// The hex HMAC-SHA256 of a body (what a sender puts in the header).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hex::encode(mac(secret, body))
}

fn mac(secret: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Checks a delivery's signature (or token) header against the body.
pub fn verify(
    flavor: Flavor,
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), Refused> {
    let header = header.ok_or(Refused::Missing(flavor.header()))?.trim();
    if flavor == Flavor::Gitlab {
        // Compare digests, so neither the content nor the length of the
        // secret shows in how long the comparison takes.
        let (given, want) = (Sha256::digest(header.as_bytes()), Sha256::digest(secret));
        return if given.ct_eq(&want).into() {
            Ok(())
        } else {
            Err(Refused::WrongToken)
        };
    }
    let hex_sig = match flavor {
        Flavor::Gitea => header.strip_prefix("sha256=").unwrap_or(header),
        _ => header.strip_prefix("sha256=").ok_or(Refused::Mismatch)?,
    };
    let given = hex::decode(hex_sig).map_err(|_| Refused::Mismatch)?;
    if mac(secret, body).ct_eq(&given).into() {
        Ok(())
    } else {
        Err(Refused::Mismatch)
    }
}

/// What a verified delivery is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A forge checking that the hook works.
    Ping,
    /// Changes to these refs (`refs/heads/main`, `refs/merge-requests/7/head`).
    Refs(Vec<String>),
    /// Anything else: it wakes the leader, which looks for itself.
    Other,
}

/// Reads a delivery's event (the value of [`Flavor::event_header`]) and body.
pub fn delivery(flavor: Flavor, event: Option<&str>, body: &[u8]) -> Delivery {
    let event = event.unwrap_or("");
    if matches!(event, "ping" | "diagnostics:ping") {
        return Delivery::Ping;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Delivery::Other;
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let num = |v: &serde_json::Value| v.as_u64().map(|n| n.to_string());
    let refs: Vec<String> = match (flavor, event) {
        // Merge requests live at refs/merge-requests/<iid>/head.
        (Flavor::Gitlab, "Merge Request Hook") => num(&v["object_attributes"]["iid"])
            .map(|iid| format!("refs/merge-requests/{iid}/head"))
            .into_iter()
            .collect(),
        (Flavor::Github | Flavor::Gitea, "pull_request") => num(&v["number"])
            .map(|n| format!("refs/pull/{n}/head"))
            .into_iter()
            .collect(),
        // Cloud: push.changes[].new (old when a ref was deleted).
        (Flavor::Bitbucket, "repo:push") => v["push"]["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let side = if c["new"].is_object() {
                    &c["new"]
                } else {
                    &c["old"]
                };
                let name = side["name"].as_str()?;
                match side["type"].as_str()? {
                    "branch" | "named_branch" => Some(format!("refs/heads/{name}")),
                    "tag" | "annotated_tag" => Some(format!("refs/tags/{name}")),
                    _ => None,
                }
            })
            .collect(),
        // Data Center: changes[].ref.id is the full ref.
        (Flavor::Bitbucket, "repo:refs_changed") => v["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| text(&c["ref"]["id"]).or_else(|| text(&c["refId"])))
            .collect(),
        (Flavor::Bitbucket, e) if e.starts_with("pr:") => num(&v["pullRequest"]["id"])
            .map(|id| format!("refs/pull-requests/{id}/from"))
            .into_iter()
            .collect(),
        _ => text(&v["ref"]).into_iter().collect(),
    };
    if refs.is_empty() {
        Delivery::Other
    } else {
        Delivery::Refs(refs)
    }
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
        assert_eq!(
            delivery(Flavor::Github, Some("push"), body),
            Delivery::Refs(vec!["refs/heads/main".into()])
        );
    }

    #[test]
    fn githubs_published_example_verifies() {
        // docs.github.com, "Validating webhook deliveries".
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let secret = b"It's a Secret to Everybody";
        assert_eq!(
            verify(Flavor::Github, secret, Some(sig), b"Hello, World!"),
            Ok(())
        );
        assert_eq!(
            verify(Flavor::Bitbucket, secret, Some(sig), b"Hello, World!"),
            Ok(())
        );
        assert_eq!(sign(secret, b"Hello, World!"), &sig[7..]);
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
    fn gitlab_sends_the_token_itself() {
        let body = br#"{"object_kind":"push","ref":"refs/heads/main"}"#;
        assert_eq!(verify(Flavor::Gitlab, b"tok", Some("tok"), body), Ok(()));
        assert_eq!(
            verify(Flavor::Gitlab, b"tok", Some("toK"), body),
            Err(Refused::WrongToken)
        );
        assert_eq!(
            verify(Flavor::Gitlab, b"tok", Some("tok-longer"), body),
            Err(Refused::WrongToken)
        );
        assert_eq!(
            verify(Flavor::Gitlab, b"tok", None, body),
            Err(Refused::Missing("x-gitlab-token"))
        );
        assert_eq!(
            delivery(Flavor::Gitlab, Some("Push Hook"), body),
            Delivery::Refs(vec!["refs/heads/main".into()])
        );
        let mr = br#"{"object_kind":"merge_request","object_attributes":{"iid":7}}"#;
        assert_eq!(
            delivery(Flavor::Gitlab, Some("Merge Request Hook"), mr),
            Delivery::Refs(vec!["refs/merge-requests/7/head".into()])
        );
    }

    #[test]
    fn bitbucket_events_name_their_refs() {
        let cloud = br#"{"push":{"changes":[
            {"new":{"type":"branch","name":"main","target":{"hash":"abc"}},"old":null},
            {"new":null,"old":{"type":"tag","name":"v1"}}]}}"#;
        assert_eq!(
            delivery(Flavor::Bitbucket, Some("repo:push"), cloud),
            Delivery::Refs(vec!["refs/heads/main".into(), "refs/tags/v1".into()])
        );
        let dc = br#"{"eventKey":"repo:refs_changed","changes":[{"ref":{"id":"refs/heads/main","displayId":"main","type":"BRANCH"},"refId":"refs/heads/main","type":"UPDATE"}]}"#;
        assert_eq!(
            delivery(Flavor::Bitbucket, Some("repo:refs_changed"), dc),
            Delivery::Refs(vec!["refs/heads/main".into()])
        );
        assert_eq!(
            delivery(Flavor::Bitbucket, Some("diagnostics:ping"), b"{}"),
            Delivery::Ping
        );
        assert_eq!(
            delivery(Flavor::Bitbucket, Some("pullrequest:created"), b"{}"),
            Delivery::Other
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
