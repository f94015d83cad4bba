//! `pgcd.yaml`: optional cluster-wide settings the leader honours — how it
//! follows the repository, where it reports, which images it runs.

use super::decode::{Ctx, Decode, MapReader};
use super::diag::FieldPath;
pub use super::reporters::{BitbucketReporter, GitNotes, GitlabReporter, HttpReporter, Reporters};
use super::secret::SecretRef;
use super::values::{Duration, PgVersion};
use super::yaml::Node;
use serde::Serialize;
use std::collections::BTreeMap;

/// The whole of `pgcd.yaml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// How the leader follows the repository.
    #[serde(default)]
    pub source: SourceSettings,
    /// Where commit statuses go.
    #[serde(default)]
    pub reporters: Reporters,
    /// PostgreSQL image per major (`"17": pgcd/postgres:17`); pgcd's own images when absent.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// The `postgres_version` of every database that names none (a major such
    /// as `"17"`, or a pinned minor). Default: pgcd's newest major, 18.
    /// Changing it changes those databases' desired version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<PgVersion>,
    /// Maintenance mode for every database: as `suspend: true` in each
    /// database's file (no steps but the operations committed, no drift
    /// correction, no automatic failover or schedule; observation and
    /// status go on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

impl Decode for ClusterConfig {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "pgcd.yaml settings")?;
        let r = (
            m.opt(cx, "source"),
            m.opt(cx, "reporters"),
            m.map(cx, "images"),
            m.opt(cx, "postgres_version"),
            m.opt(cx, "suspend"),
        );
        m.finish(cx);
        Some(Self {
            source: r.0.unwrap_or_default(),
            reporters: r.1.unwrap_or_default(),
            images: r.2,
            postgres_version: r.3,
            suspend: r.4,
        })
    }
}

/// How the leader follows the repository.
#[derive(Debug, Clone, PartialEq, Default, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// How often to look for a new head. Default 15s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<Duration>,
    /// Give up a fetch after this long. Default 60s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_timeout: Option<Duration>,
    /// Refs that are validated and planned but never applied (`refs/heads/*`, `refs/pull/*/head`).
    #[serde(default)]
    pub plan_refs: Vec<String>,
    /// Refuse commits without a good signature from `allowed_signers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_signed_commits: Option<bool>,
    /// SSH allowed-signers lines or GPG key fingerprints.
    #[serde(default)]
    pub allowed_signers: Vec<String>,
    /// Shared secret of the webhooks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretRef>,
}

impl Decode for SourceSettings {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "source settings")?;
        let r = (
            m.opt(cx, "poll_interval"),
            m.opt(cx, "fetch_timeout"),
            m.list(cx, "plan_refs"),
            m.opt(cx, "require_signed_commits"),
            m.list(cx, "allowed_signers"),
            m.opt(cx, "webhook_secret"),
        );
        m.finish(cx);
        Some(Self {
            poll_interval: r.0,
            fetch_timeout: r.1,
            plan_refs: r.2,
            require_signed_commits: r.3,
            allowed_signers: r.4,
            webhook_secret: r.5,
        })
    }
}
