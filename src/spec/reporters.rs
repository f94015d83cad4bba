//! `reporters` of `pgcd.yaml`: where commit statuses go — Git notes, a
//! GitHub-compatible statuses API (GitHub, Gitea, Forgejo), GitLab's commit
//! status API and Bitbucket Cloud's build status API.

use super::decode::{Ctx, Decode, MapReader};
use super::diag::{Diagnostic, FieldPath, SpanMap};
use super::secret::SecretRef;
use super::yaml::Node;
use serde::Serialize;

/// Commit-status reporters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reporters {
    /// Git notes under `refs/notes/pgcd`.
    #[serde(default)]
    pub git_notes: GitNotes,
    /// A GitHub-compatible statuses API (GitHub, Gitea, Forgejo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpReporter>,
    /// GitLab's commit status API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<GitlabReporter>,
    /// Bitbucket Cloud's build status API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitbucket: Option<BitbucketReporter>,
}

impl Decode for Reporters {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "reporters")?;
        let r = (
            m.opt(cx, "git_notes"),
            m.opt(cx, "http"),
            m.opt(cx, "gitlab"),
            m.opt(cx, "bitbucket"),
        );
        m.finish(cx);
        Some(Self {
            git_notes: r.0.unwrap_or_default(),
            http: r.1,
            gitlab: r.2,
            bitbucket: r.3,
        })
    }
}

/// The Git notes reporter.
#[derive(Debug, Clone, PartialEq, Default, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitNotes {
    /// Write notes. Default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Push `refs/notes/pgcd` back to the origin. Default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<bool>,
}

impl Decode for GitNotes {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "git_notes")?;
        let r = (m.opt(cx, "enabled"), m.opt(cx, "push"));
        m.finish(cx);
        Some(Self {
            enabled: r.0,
            push: r.1,
        })
    }
}

/// The GitHub-compatible statuses reporter.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpReporter {
    /// API base, e.g. `https://api.github.com` or `https://gitea.example/api/v1`.
    pub base_url: String,
    /// `owner/name`.
    pub repository: String,
    /// The API token.
    pub token: SecretRef,
}

impl Decode for HttpReporter {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "the http reporter")?;
        let r = (
            m.req(cx, "base_url"),
            m.req(cx, "repository"),
            m.req(cx, "token"),
        );
        m.finish(cx);
        Some(Self {
            base_url: r.0?,
            repository: r.1?,
            token: r.2?,
        })
    }
}

/// GitLab's commit status API (`POST /projects/:id/statuses/:sha`).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitlabReporter {
    /// API base. Default `https://gitlab.com/api/v4`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The project: its numeric id or its path (`group/subgroup/name`).
    pub project: String,
    /// A project or personal access token with the `api` scope (sent as `PRIVATE-TOKEN`).
    pub token: SecretRef,
}

impl Decode for GitlabReporter {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "the gitlab reporter")?;
        let r = (
            m.opt(cx, "base_url"),
            m.req(cx, "project"),
            m.req(cx, "token"),
        );
        m.finish(cx);
        Some(Self {
            base_url: r.0,
            project: r.1?,
            token: r.2?,
        })
    }
}

/// Bitbucket Cloud's build status API
/// (`POST /2.0/repositories/{workspace}/{repo}/commit/{sha}/statuses/build`).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BitbucketReporter {
    /// API base. Default `https://api.bitbucket.org`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// `workspace/repo_slug`.
    pub repository: String,
    /// A repository or workspace access token (sent as a bearer token), or
    /// `user:app_password` (sent as basic authentication).
    pub token: SecretRef,
}

impl Decode for BitbucketReporter {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "the bitbucket reporter")?;
        let r = (
            m.opt(cx, "base_url"),
            m.req(cx, "repository"),
            m.req(cx, "token"),
        );
        m.finish(cx);
        Some(Self {
            base_url: r.0,
            repository: r.1?,
            token: r.2?,
        })
    }
}

/// What decoding cannot see: URL schemes and repository names.
pub(super) fn check(r: &Reporters, spans: &SpanMap, diags: &mut Vec<Diagnostic>) {
    let mut url = |field: &str, u: Option<&str>| {
        if let Some(u) = u.filter(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
            diags.push(spans.error(
                &format!("reporters.{field}.base_url"),
                format!("\"{u}\" must start with https:// or http://"),
            ));
        }
    };
    url("http", r.http.as_ref().map(|h| h.base_url.as_str()));
    url(
        "gitlab",
        r.gitlab.as_ref().and_then(|g| g.base_url.as_deref()),
    );
    url(
        "bitbucket",
        r.bitbucket.as_ref().and_then(|b| b.base_url.as_deref()),
    );
    let two_parts = |s: &str| {
        let parts: Vec<&str> = s.split('/').collect();
        parts.len() == 2 && parts.iter().all(|p| !p.is_empty())
    };
    if let Some(h) = r.http.as_ref().filter(|h| !two_parts(&h.repository)) {
        diags.push(spans.error(
            "reporters.http.repository",
            format!("\"{}\" is not owner/name", h.repository),
        ));
    }
    if let Some(b) = r.bitbucket.as_ref().filter(|b| !two_parts(&b.repository)) {
        diags.push(spans.error(
            "reporters.bitbucket.repository",
            format!("\"{}\" is not workspace/repo_slug", b.repository),
        ));
    }
    if let Some(g) = &r.gitlab {
        let id = g.project.chars().all(|c| c.is_ascii_digit());
        let path = g.project.split('/').count() >= 2 && !g.project.split('/').any(str::is_empty);
        if g.project.is_empty() || !(id || path) {
            diags.push(spans.error(
                "reporters.gitlab.project",
                format!(
                    "\"{}\" is neither a project id (42) nor a path (group/name)",
                    g.project
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::{load, SourceFile};

    fn errors(yaml: &str) -> Vec<String> {
        let files = [SourceFile {
            path: "pgcd.yaml".into(),
            text: yaml.into(),
        }];
        match load(&files) {
            Ok(_) => Vec::new(),
            Err(diags) => diags.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn forge_reporters_are_checked_at_their_line_and_field() {
        let e = errors(
            "reporters:\n  gitlab:\n    project: \"acme/\"\n    token: {env: GL_TOKEN}\n  bitbucket:\n    base_url: api.bitbucket.org\n    repository: acme\n    token: {env: BB_TOKEN}\n",
        );
        assert_eq!(e.len(), 3, "{e:#?}");
        assert!(
            e.iter()
                .any(|m| m.starts_with("pgcd.yaml:3:") && m.contains("reporters.gitlab.project")),
            "{e:#?}"
        );
        assert!(
            e.iter().any(
                |m| m.starts_with("pgcd.yaml:6:") && m.contains("reporters.bitbucket.base_url")
            ),
            "{e:#?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("pgcd.yaml:7:") && m.contains("workspace/repo_slug")),
            "{e:#?}"
        );
        // A clear-text token is refused like every secret.
        let e = errors("reporters:\n  gitlab:\n    project: 42\n    token: glpat-123\n");
        assert!(
            e.iter()
                .any(|m| m.contains("clear text") && !m.contains("glpat-123")),
            "{e:#?}"
        );
        let ok = errors(
            "reporters:\n  gitlab:\n    project: group/sub/name\n    token: {env: GL_TOKEN}\n",
        );
        assert!(ok.is_empty(), "{ok:#?}");
    }
}
