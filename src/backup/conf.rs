//! Rendering `pgbackrest.conf` for one instance: the stanza with its
//! `pg1-*` options, each repository as `repoN-*`, retention, the spec's
//! custom options, and `archive-async` with a spool path for object
//! stores. Pure: secrets arrive through the caller's resolver, and the
//! rendering comes twice, once to write and once with every secret masked
//! (the one that may be logged).

use crate::plan::backup::{BackupConf, RepoConf, CONTAINER_DIR};
use crate::spec::backup::{RepoType, RetentionType};
use crate::spec::secret::SecretRef;
use std::collections::BTreeMap;

/// The data directory, socket directory and superuser inside the container.
const PG_PATH: &str = "/var/lib/pgcd/data";
const PG_SOCKET: &str = "/var/lib/pgcd/run";
const MASK: &str = "***";

/// Why a configuration cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// A secret reference could not be read on this host.
    #[error("repository {repo}: {field}: {error}")]
    Secret {
        /// The repository id.
        repo: String,
        /// The spec field.
        field: &'static str,
        /// Why (names the reference, never a value).
        error: String,
    },
    /// A value pgBackRest cannot take.
    #[error("repository {repo}: {message}")]
    Invalid {
        /// The repository id.
        repo: String,
        /// What is wrong.
        message: String,
    },
}

/// A rendered configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The file's text, secrets included: written with mode 0600, never logged.
    pub text: String,
    /// The same with every secret replaced by `***`: for logs.
    pub masked: String,
    /// Each repository's `repoN-path`, by index.
    pub repo_paths: BTreeMap<u32, String>,
    /// Further files beside the configuration (name in [`CONTAINER_DIR`],
    /// content): a GCS key, written 0600 like the configuration.
    pub files: Vec<(String, String)>,
}

/// Resolves a secret reference to its value (on the host, at write time).
pub type Resolver<'a> = dyn FnMut(&SecretRef) -> Result<String, String> + 'a;

struct Out {
    text: String,
    masked: String,
}

impl Out {
    fn line(&mut self, key: &str, value: &str) {
        self.text.push_str(&format!("{key}={value}\n"));
        self.masked.push_str(&format!("{key}={value}\n"));
    }
    fn secret(&mut self, key: &str, value: &str) {
        self.text.push_str(&format!("{key}={value}\n"));
        self.masked.push_str(&format!("{key}={MASK}\n"));
    }
    fn raw(&mut self, s: &str) {
        self.text.push_str(s);
        self.masked.push_str(s);
    }
}

/// The repository path of a stanza's cluster: `<base>/<stanza>/<system id>`.
/// A new system identifier (a restore from another cluster, a new initdb)
/// is a new path, so its WAL and backups never meet the old cluster's,
/// which stay where they were, listed and restorable.
pub fn repo_path(repo: &RepoConf, stanza: &str, system_identifier: &str) -> String {
    let base = repo
        .base_path
        .as_deref()
        .unwrap_or("/")
        .trim_end_matches('/');
    let base = if base.starts_with('/') {
        base.to_string()
    } else {
        format!("/{base}")
    };
    let base = base.trim_end_matches('/');
    format!("{base}/{stanza}/{system_identifier}")
}

/// Splits an S3 endpoint (`host`, `host:port`, `https://host:port/`) into
/// host and port; `http://` is refused: pgBackRest speaks TLS only.
fn endpoint(repo: &RepoConf, raw: &str) -> Result<(String, Option<u16>), ConfError> {
    if raw.starts_with("http://") {
        return Err(ConfError::Invalid {
            repo: repo.id.clone(),
            message: format!("s3_endpoint {raw}: pgBackRest reaches object stores over https only"),
        });
    }
    let rest = raw.trim_start_matches("https://").trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) => {
            let port = port.parse::<u16>().map_err(|_| ConfError::Invalid {
                repo: repo.id.clone(),
                message: format!("s3_endpoint {raw}: \"{port}\" is not a port"),
            })?;
            Ok((host.to_string(), Some(port)))
        }
        None => Ok((rest.to_string(), None)),
    }
}

fn resolved(
    repo: &RepoConf,
    field: &'static str,
    secret: Option<&SecretRef>,
    resolve: &mut Resolver<'_>,
) -> Result<Option<String>, ConfError> {
    secret
        .map(|s| {
            resolve(s).map_err(|error| ConfError::Secret {
                repo: repo.id.clone(),
                field,
                error,
            })
        })
        .transpose()
}

fn checked(repo: &RepoConf, field: &str, value: &str) -> Result<(), ConfError> {
    if value.contains(['\n', '\r', '\0']) {
        return Err(ConfError::Invalid {
            repo: repo.id.clone(),
            message: format!("{field} must be one line"),
        });
    }
    Ok(())
}

/// Renders the configuration of `conf` for the cluster `system_identifier`.
pub fn render(
    conf: &BackupConf,
    system_identifier: &str,
    resolve: &mut Resolver<'_>,
) -> Result<Rendered, ConfError> {
    let mut out = Out {
        text: String::new(),
        masked: String::new(),
    };
    let mut repo_paths = BTreeMap::new();
    let mut files = Vec::new();
    out.raw(&format!(
        "# Written by pgcd for stanza {} (system identifier {system_identifier}).\n# pgcd rewrites this file from the spec's backup_config: edit the spec, not this file.\n[global]\n",
        conf.stanza
    ));
    out.line("log-path", &format!("{CONTAINER_DIR}/log"));
    out.line("lock-path", &format!("{CONTAINER_DIR}/lock"));
    out.line("spool-path", &format!("{CONTAINER_DIR}/spool"));
    out.line("compress-type", "zst");
    out.line("start-fast", "y");
    out.line("log-level-file", "detail");
    if conf.archive_async() {
        out.line("archive-async", "y");
        out.line("archive-push-queue-max", "4GiB");
    }
    for r in &conf.repos {
        let n = format!("repo{}", r.index);
        for (field, v) in [
            ("base_path", &r.base_path),
            ("s3_bucket", &r.s3_bucket),
            ("s3_region", &r.s3_region),
            ("s3_endpoint", &r.s3_endpoint),
            ("gcs_bucket", &r.gcs_bucket),
            ("azure_account", &r.azure_account),
            ("azure_container", &r.azure_container),
        ] {
            if let Some(v) = v {
                checked(r, field, v)?;
            }
        }
        out.line(&format!("{n}-type"), r.repo_type.as_str());
        let path = repo_path(r, &conf.stanza, system_identifier);
        out.line(&format!("{n}-path"), &path);
        repo_paths.insert(r.index, path);
        match r.repo_type {
            RepoType::Posix | RepoType::Cifs => {}
            RepoType::S3 => s3(&mut out, &n, r, resolve)?,
            RepoType::Gcs => {
                if let Some(b) = &r.gcs_bucket {
                    out.line(&format!("{n}-gcs-bucket"), b);
                }
                match resolved(r, "gcs_key", r.gcs_key.as_ref(), resolve)? {
                    Some(key) => {
                        let name = format!("{n}-gcs-key.json");
                        out.line(&format!("{n}-gcs-key-type"), "service");
                        out.line(&format!("{n}-gcs-key"), &format!("{CONTAINER_DIR}/{name}"));
                        files.push((name, key));
                    }
                    // The host's own identity (instance metadata).
                    None => out.line(&format!("{n}-gcs-key-type"), "auto"),
                }
            }
            RepoType::Azure => {
                if let Some(a) = &r.azure_account {
                    out.line(&format!("{n}-azure-account"), a);
                }
                if let Some(c) = &r.azure_container {
                    out.line(&format!("{n}-azure-container"), c);
                }
                match resolved(r, "azure_key", r.azure_key.as_ref(), resolve)? {
                    Some(key) => {
                        checked(r, "azure_key", &key)?;
                        out.line(&format!("{n}-azure-key-type"), "shared");
                        out.secret(&format!("{n}-azure-key"), &key);
                    }
                    None => out.line(&format!("{n}-azure-key-type"), "auto"),
                }
            }
        }
        out.line(
            &format!("{n}-retention-full"),
            &r.retention_full.to_string(),
        );
        out.line(
            &format!("{n}-retention-full-type"),
            match r.retention_full_type {
                RetentionType::Count => "count",
                RetentionType::Time => "time",
            },
        );
        for (k, v) in &r.custom_options {
            if let Some(why) = crate::spec::pgbackrest::check_custom_option(k, v) {
                return Err(ConfError::Invalid {
                    repo: r.id.clone(),
                    message: format!("custom_options.{k}: {why}"),
                });
            }
            out.line(&format!("{n}-{k}"), v);
        }
    }
    out.raw(&format!("\n[{}]\n", conf.stanza));
    out.line("pg1-path", PG_PATH);
    out.line("pg1-port", &conf.port.to_string());
    out.line("pg1-socket-path", PG_SOCKET);
    out.line("pg1-user", crate::plan::SUPERUSER);
    Ok(Rendered {
        text: out.text,
        masked: out.masked,
        repo_paths,
        files,
    })
}

fn s3(out: &mut Out, n: &str, r: &RepoConf, resolve: &mut Resolver<'_>) -> Result<(), ConfError> {
    if let Some(b) = &r.s3_bucket {
        out.line(&format!("{n}-s3-bucket"), b);
    }
    let region = r.s3_region.as_deref().unwrap_or("us-east-1");
    out.line(&format!("{n}-s3-region"), region);
    let (host, port) = match &r.s3_endpoint {
        Some(e) => endpoint(r, e)?,
        None => (format!("s3.{region}.amazonaws.com"), None),
    };
    out.line(&format!("{n}-s3-endpoint"), &host);
    if let Some(p) = port.filter(|_| !r.custom_options.contains_key("storage-port")) {
        out.line(&format!("{n}-storage-port"), &p.to_string());
    }
    let key = resolved(r, "s3_key", r.s3_key.as_ref(), resolve)?;
    let secret = resolved(r, "s3_key_secret", r.s3_key_secret.as_ref(), resolve)?;
    match (key, secret) {
        (Some(k), Some(s)) => {
            checked(r, "s3_key", &k)?;
            checked(r, "s3_key_secret", &s)?;
            out.line(&format!("{n}-s3-key-type"), "shared");
            out.secret(&format!("{n}-s3-key"), &k);
            out.secret(&format!("{n}-s3-key-secret"), &s);
        }
        (None, None) => out.line(&format!("{n}-s3-key-type"), "auto"),
        _ => {
            return Err(ConfError::Invalid {
                repo: r.id.clone(),
                message: "s3_key and s3_key_secret go together".into(),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "conf_tests.rs"]
mod tests;
