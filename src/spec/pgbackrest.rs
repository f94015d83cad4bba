//! The pgBackRest repository options a spec's `custom_options` may name.
//!
//! The names are pgBackRest's own, without the `repoN-` prefix that pgcd
//! adds (`s3-uri-style` becomes `repo1-s3-uri-style`): the union of what
//! `pgbackrest help` lists as repository options in the images' versions
//! (2.45, 2.55, 2.60). Pure data and one check; no I/O.

use super::decode::did_you_mean;

/// Repository options of pgBackRest 2.45–2.60, without the `repo-` prefix.
pub const REPO_OPTIONS: &[&str] = &[
    "azure-account",
    "azure-container",
    "azure-endpoint",
    "azure-key",
    "azure-key-type",
    "azure-uri-style",
    "block",
    "block-age-map",
    "block-checksum-size-map",
    "block-size-map",
    "block-size-super",
    "block-size-super-full",
    "bundle",
    "bundle-limit",
    "bundle-size",
    "cipher-pass",
    "cipher-type",
    "gcs-bucket",
    "gcs-endpoint",
    "gcs-key",
    "gcs-key-type",
    "gcs-user-project",
    "hardlink",
    "host",
    "host-ca-file",
    "host-ca-path",
    "host-cert-file",
    "host-cmd",
    "host-config",
    "host-config-include-path",
    "host-config-path",
    "host-key-file",
    "host-port",
    "host-type",
    "host-user",
    "path",
    "retention-archive",
    "retention-archive-type",
    "retention-diff",
    "retention-full",
    "retention-full-type",
    "retention-history",
    "s3-bucket",
    "s3-endpoint",
    "s3-key",
    "s3-key-secret",
    "s3-key-type",
    "s3-kms-key-id",
    "s3-region",
    "s3-requester-pays",
    "s3-role",
    "s3-sse-customer-key",
    "s3-sts-host",
    "s3-token",
    "s3-uri-style",
    "sftp-host",
    "sftp-host-fingerprint",
    "sftp-host-key-check-type",
    "sftp-host-key-hash-type",
    "sftp-host-port",
    "sftp-host-user",
    "sftp-known-host",
    "sftp-private-key-file",
    "sftp-private-key-passphrase",
    "sftp-public-key-file",
    "storage-ca-file",
    "storage-ca-path",
    "storage-host",
    "storage-port",
    "storage-tag",
    "storage-upload-chunk-size",
    "storage-verify-tls",
    "type",
];

/// Options pgcd renders from the repository's own fields: naming them in
/// `custom_options` would fight the spec.
const FROM_FIELDS: &[(&str, &str)] = &[
    ("type", "type"),
    ("path", "base_path"),
    ("s3-bucket", "s3_bucket"),
    ("s3-region", "s3_region"),
    ("s3-endpoint", "s3_endpoint"),
    ("s3-key", "s3_key"),
    ("s3-key-secret", "s3_key_secret"),
    ("gcs-bucket", "gcs_bucket"),
    ("gcs-key", "gcs_key"),
    ("azure-account", "azure_account"),
    ("azure-container", "azure_container"),
    ("azure-key", "azure_key"),
    ("retention-full", "retention_full"),
    ("retention-full-type", "retention_full_type"),
];

/// Options whose value is a secret: a spec holds none in clear text.
const SECRETS: &[&str] = &[
    "cipher-pass",
    "s3-token",
    "s3-sse-customer-key",
    "sftp-private-key-passphrase",
];

/// Why a `custom_options` entry is refused, in words for the diagnostic;
/// `None` when pgcd passes it on as `repoN-<name>=<value>`.
pub fn check_custom_option(name: &str, value: &str) -> Option<String> {
    if let Some((_, field)) = FROM_FIELDS.iter().find(|(o, _)| *o == name) {
        return Some(format!(
            "pgcd sets repo-{name} from the repository's `{field}`; set that field instead"
        ));
    }
    if SECRETS.contains(&name) {
        return Some(format!(
            "repo-{name} is a secret and custom_options are clear text; pgcd does not take it here"
        ));
    }
    if !REPO_OPTIONS.contains(&name) {
        let bare = strip_repo_prefix(name);
        if bare != name && REPO_OPTIONS.contains(&bare) {
            return Some(format!(
                "write \"{bare}\": pgcd adds the repoN- prefix itself"
            ));
        }
        let hint = did_you_mean(name, REPO_OPTIONS.iter().copied())
            .map(|m| format!(" (did you mean \"{m}\"?)"))
            .unwrap_or_default();
        return Some(format!(
            "\"{name}\" is not a pgBackRest repository option{hint}"
        ));
    }
    if value.contains(['\n', '\r', '\0']) || value.trim().is_empty() {
        return Some(format!("the value of {name} must be one non-empty line"));
    }
    None
}

/// `repo1-x`, `repo-x` → `x`.
fn strip_repo_prefix(name: &str) -> &str {
    let Some(rest) = name.strip_prefix("repo") else {
        return name;
    };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    rest.strip_prefix('-').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_options_pass_and_others_say_why() {
        assert_eq!(check_custom_option("s3-uri-style", "path"), None);
        assert_eq!(check_custom_option("storage-ca-file", "/etc/ca.crt"), None);
        assert!(check_custom_option("s3-uri-styl", "path")
            .unwrap()
            .contains("did you mean \"s3-uri-style\""));
        assert!(check_custom_option("repo1-s3-uri-style", "path")
            .unwrap()
            .contains("write \"s3-uri-style\""));
        assert!(check_custom_option("path", "/x")
            .unwrap()
            .contains("`base_path`"));
        assert!(check_custom_option("cipher-pass", "x")
            .unwrap()
            .contains("secret"));
        assert!(check_custom_option("storage-port", "1\n2").is_some());
    }
}
