//! Commit statuses over the forges' HTTP APIs, each in its documented shape:
//! GitHub's and Gitea's `POST /repos/{owner}/{repo}/statuses/{sha}`,
//! GitLab's `POST /projects/:id/statuses/:sha`, and Bitbucket Cloud's
//! `POST /2.0/repositories/{workspace}/{repo}/commit/{sha}/statuses/build`.
//! A request is built as a plain value (tested against the documentation),
//! then sent with retries; 4xx answers other than 429 are not retried.

use super::status::{CommitStatus, State};
use crate::spec::config::Reporters;
use base64::Engine;
use std::time::Duration;

/// One forge's statuses endpoint, with its token resolved.
#[derive(Debug, Clone)]
pub enum StatusApi {
    /// GitHub, Gitea, Forgejo: `Authorization: token ...`.
    Github {
        /// API base, e.g. `https://api.github.com`.
        base_url: String,
        /// `owner/name`.
        repository: String,
        /// The token.
        token: String,
    },
    /// GitLab: `PRIVATE-TOKEN: ...`.
    Gitlab {
        /// API base, e.g. `https://gitlab.com/api/v4`.
        base_url: String,
        /// Numeric id or `group/name` (sent URL-encoded).
        project: String,
        /// The token.
        token: String,
    },
    /// Bitbucket Cloud: a bearer token, or basic auth for `user:app_password`.
    Bitbucket {
        /// API base, e.g. `https://api.bitbucket.org`.
        base_url: String,
        /// `workspace/repo_slug`.
        repository: String,
        /// The token.
        token: String,
    },
}

/// An HTTP request, as a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The full URL.
    pub url: String,
    /// Headers besides `Content-Type: application/json`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: serde_json::Value,
}

impl StatusApi {
    /// Every HTTP reporter `reporters` configures, by name, with its token
    /// resolved on this host (or why it cannot be).
    pub fn from_reporters(r: &Reporters) -> Vec<(&'static str, Result<Self, String>)> {
        let token = |t: &crate::spec::secret::SecretRef| {
            crate::secrets::resolve(t).map_err(|e| format!("token {t}: {e}"))
        };
        let mut out = Vec::new();
        if let Some(h) = &r.http {
            out.push((
                "http",
                token(&h.token).map(|token| Self::Github {
                    base_url: h.base_url.clone(),
                    repository: h.repository.clone(),
                    token,
                }),
            ));
        }
        if let Some(g) = &r.gitlab {
            out.push((
                "gitlab",
                token(&g.token).map(|token| Self::Gitlab {
                    base_url: g
                        .base_url
                        .clone()
                        .unwrap_or_else(|| "https://gitlab.com/api/v4".into()),
                    project: g.project.clone(),
                    token,
                }),
            ));
        }
        if let Some(b) = &r.bitbucket {
            out.push((
                "bitbucket",
                token(&b.token).map(|token| Self::Bitbucket {
                    base_url: b
                        .base_url
                        .clone()
                        .unwrap_or_else(|| "https://api.bitbucket.org".into()),
                    repository: b.repository.clone(),
                    token,
                }),
            ));
        }
        out
    }

    /// The request that posts `status` on commit `sha`.
    pub fn request(&self, sha: &str, status: &CommitStatus) -> Request {
        let agent = (
            "User-Agent",
            concat!("pgcd/", env!("CARGO_PKG_VERSION")).into(),
        );
        match self {
            Self::Github {
                base_url,
                repository,
                token,
            } => Request {
                url: format!("{}/repos/{repository}/statuses/{sha}", trim(base_url)),
                headers: vec![
                    ("Authorization", format!("token {token}")),
                    ("Accept", "application/vnd.github+json".into()),
                    agent,
                ],
                body: serde_json::to_value(status).unwrap_or_default(),
            },
            Self::Gitlab {
                base_url,
                project,
                token,
            } => {
                let mut body = serde_json::json!({
                    "state": gitlab_state(status.state),
                    "name": status.context,
                    "description": status.description,
                });
                if let Some(u) = &status.target_url {
                    body["target_url"] = u.clone().into();
                }
                Request {
                    url: format!(
                        "{}/projects/{}/statuses/{sha}",
                        trim(base_url),
                        encode_path_segment(project)
                    ),
                    headers: vec![("PRIVATE-TOKEN", token.clone()), agent],
                    body,
                }
            }
            Self::Bitbucket {
                base_url,
                repository,
                token,
            } => {
                let auth = match token.split_once(':') {
                    Some(_) => format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(token)
                    ),
                    None => format!("Bearer {token}"),
                };
                let mut body = serde_json::json!({
                    "key": status.context,
                    "state": bitbucket_state(status.state),
                    "name": status.context,
                    "description": status.description,
                });
                if let Some(u) = &status.target_url {
                    body["url"] = u.clone().into();
                }
                Request {
                    url: format!(
                        "{}/2.0/repositories/{repository}/commit/{sha}/statuses/build",
                        trim(base_url)
                    ),
                    headers: vec![("Authorization", auth), agent],
                    body,
                }
            }
        }
    }

    /// POSTs one status, retrying with exponential backoff (`attempts`
    /// tries, first wait `backoff`). Each request times out after 10 s.
    pub async fn post(
        &self,
        client: &reqwest::Client,
        sha: &str,
        status: &CommitStatus,
        attempts: u32,
        backoff: Duration,
    ) -> Result<(), String> {
        let req = self.request(sha, status);
        let mut wait = backoff;
        let mut last = String::new();
        for attempt in 1..=attempts.max(1) {
            let mut builder = client
                .post(&req.url)
                .timeout(Duration::from_secs(10))
                .json(&req.body);
            for (k, v) in &req.headers {
                builder = builder.header(*k, v);
            }
            match builder.send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    let code = r.status();
                    let text = r.text().await.unwrap_or_default();
                    // GitLab refuses to post a state a status already has
                    // ("Cannot transition status via :run from :running"):
                    // the forge shows what was meant, so it counts as delivered.
                    if matches!(self, Self::Gitlab { .. })
                        && code.as_u16() == 400
                        && text.contains("Cannot transition status")
                    {
                        return Ok(());
                    }
                    return Err(format!("{}: HTTP {code}: {}", req.url, short(&text)));
                }
                Ok(r) => last = format!("{}: HTTP {}", req.url, r.status()),
                Err(e) => last = format!("{}: {e}", req.url),
            }
            if attempt < attempts {
                tracing::debug!(attempt, %last, "commit status not delivered; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
        Err(last)
    }
}

/// GitLab's states: pending, running, success, failed, canceled.
pub fn gitlab_state(s: State) -> &'static str {
    match s {
        State::Pending => "pending",
        State::Success => "success",
        State::Failure | State::Error => "failed",
    }
}

/// Bitbucket's states: INPROGRESS, SUCCESSFUL, FAILED, STOPPED.
pub fn bitbucket_state(s: State) -> &'static str {
    match s {
        State::Pending => "INPROGRESS",
        State::Success => "SUCCESSFUL",
        State::Failure | State::Error => "FAILED",
    }
}

fn trim(base: &str) -> &str {
    base.trim_end_matches('/')
}

fn short(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Percent-encodes everything but unreserved characters (RFC 3986), as
/// GitLab wants a project path in one segment (`group%2Fname`).
fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(state: State) -> CommitStatus {
        CommitStatus::new(
            "pgcd/validate",
            state,
            "valid: 3 databases",
            Some("http://h:7800/v1/revisions/abc".into()),
        )
    }

    #[test]
    fn gitlab_requests_follow_the_commit_status_api() {
        let api = StatusApi::Gitlab {
            base_url: "https://gitlab.example/api/v4/".into(),
            project: "acme/db/config".into(),
            token: "glpat-x".into(),
        };
        let r = api.request("abc", &st(State::Failure));
        assert_eq!(
            r.url,
            "https://gitlab.example/api/v4/projects/acme%2Fdb%2Fconfig/statuses/abc"
        );
        assert!(r.headers.contains(&("PRIVATE-TOKEN", "glpat-x".into())));
        assert_eq!(
            r.body,
            serde_json::json!({"state": "failed", "name": "pgcd/validate",
                "description": "valid: 3 databases", "target_url": "http://h:7800/v1/revisions/abc"})
        );
        assert_eq!(gitlab_state(State::Pending), "pending");
        assert_eq!(gitlab_state(State::Success), "success");
    }

    #[test]
    fn bitbucket_requests_follow_the_build_status_api() {
        let api = StatusApi::Bitbucket {
            base_url: "https://api.bitbucket.org".into(),
            repository: "acme/config".into(),
            token: "bbtoken".into(),
        };
        let r = api.request("abc", &st(State::Pending));
        assert_eq!(
            r.url,
            "https://api.bitbucket.org/2.0/repositories/acme/config/commit/abc/statuses/build"
        );
        assert!(r
            .headers
            .contains(&("Authorization", "Bearer bbtoken".into())));
        assert_eq!(
            r.body,
            serde_json::json!({"key": "pgcd/validate", "state": "INPROGRESS", "name": "pgcd/validate",
                "description": "valid: 3 databases", "url": "http://h:7800/v1/revisions/abc"})
        );
        let app_password = StatusApi::Bitbucket {
            base_url: "https://api.bitbucket.org".into(),
            repository: "acme/config".into(),
            token: "ada:pw".into(),
        };
        assert!(app_password
            .request("abc", &st(State::Success))
            .headers
            .contains(&("Authorization", "Basic YWRhOnB3".into())));
        assert_eq!(bitbucket_state(State::Error), "FAILED");
    }
}
