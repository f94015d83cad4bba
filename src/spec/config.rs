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
    /// PostgreSQL image per major (`"17": pgcd/postgres:17`) or per exact
    /// version (`"17.10": registry/postgres:17.10`); pgcd's own images
    /// (`pgcd/postgres:17`, `pgcd/postgres:17.10`) when absent.
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

impl ClusterConfig {
    /// The image a `postgres_version` runs: `images:`'s entry for exactly
    /// that version (`"17.10"`), else for its major (`"17"`: an image pinned
    /// for the major serves its minors too, pgcd cannot know its minor),
    /// else pgcd's own, tagged by the version (`pgcd/postgres:17` is the
    /// major's newest build, `pgcd/postgres:17.10` exactly that one).
    pub fn image_for(&self, version: PgVersion) -> String {
        self.images
            .get(&version.to_string())
            .or_else(|| self.images.get(&version.major.to_string()))
            .cloned()
            .unwrap_or_else(|| format!("pgcd/postgres:{version}"))
    }

    /// `images:` names an image of this version (exactly, or by its major):
    /// what it contains is not known here.
    pub fn pins_image(&self, version: PgVersion) -> bool {
        self.images.contains_key(&version.to_string())
            || self.images.contains_key(&version.major.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_for_prefers_the_exact_version_then_the_major_then_pgcds_own() {
        let v = |s: &str| PgVersion::parse(s).unwrap();
        let mut c = ClusterConfig::default();
        assert_eq!(c.image_for(v("17")), "pgcd/postgres:17");
        assert_eq!(c.image_for(v("17.10")), "pgcd/postgres:17.10");
        c.images.insert("18".into(), "mine:18".into());
        c.images.insert("17.10".into(), "mine:17.10".into());
        assert_eq!(c.image_for(v("17.10")), "mine:17.10");
        assert_eq!(c.image_for(v("17.12")), "pgcd/postgres:17.12");
        assert_eq!(c.image_for(v("18.3")), "mine:18");
        assert!(c.pins_image(v("18.6")) && !c.pins_image(v("17.12")));
    }
}
