use super::*;
use crate::plan::backup::RepoConf;

fn repo(index: u32, id: &str, repo_type: RepoType) -> RepoConf {
    RepoConf {
        index,
        id: id.into(),
        repo_type,
        base_path: None,
        s3_bucket: None,
        s3_region: None,
        s3_endpoint: None,
        s3_key: None,
        s3_key_secret: None,
        gcs_bucket: None,
        gcs_key: None,
        azure_account: None,
        azure_container: None,
        azure_key: None,
        retention_full: 7,
        retention_full_type: RetentionType::Count,
        custom_options: BTreeMap::new(),
    }
}

fn conf(repos: Vec<RepoConf>) -> BackupConf {
    BackupConf {
        stanza: "orders-n1".into(),
        port: 5433,
        repos,
    }
}

/// Secrets resolve to recognisable values: `value-of-<reference>`.
fn resolver() -> impl FnMut(&SecretRef) -> Result<String, String> {
    |s: &SecretRef| match s {
        SecretRef::Env(n) => Ok(format!("value-of-{n}")),
        SecretRef::File(p) => Ok(format!("value-of-{p}")),
        SecretRef::Age(_) => Err("age is not decrypted".into()),
    }
}

fn rendered(c: &BackupConf) -> Rendered {
    render(c, "7301234567890123456", &mut resolver()).unwrap()
}

#[test]
fn posix_repository_renders_path_under_stanza_and_system_identifier() {
    let mut r = repo(1, "local", RepoType::Posix);
    r.base_path = Some("/backups/pg/".into());
    r.retention_full = 2;
    let out = rendered(&conf(vec![r]));
    assert_eq!(out.text, out.masked, "no secret, nothing masked");
    assert_eq!(
        out.repo_paths.get(&1).map(String::as_str),
        Some("/backups/pg/orders-n1/7301234567890123456")
    );
    insta::assert_snapshot!(out.text);
}

#[test]
fn s3_repository_masks_its_keys_and_splits_the_endpoint() {
    let mut r = repo(1, "s3", RepoType::S3);
    r.base_path = Some("pgcd".into());
    r.s3_bucket = Some("backups".into());
    r.s3_region = Some("eu-west-1".into());
    r.s3_endpoint = Some("https://localhost:9443".into());
    r.s3_key = Some(SecretRef::Env("S3_KEY".into()));
    r.s3_key_secret = Some(SecretRef::File("/etc/pgcd/s3.secret".into()));
    r.retention_full = 14;
    r.retention_full_type = RetentionType::Time;
    r.custom_options
        .insert("s3-uri-style".into(), "path".into());
    r.custom_options
        .insert("storage-ca-file".into(), "/etc/pgcd/ca.crt".into());
    let out = rendered(&conf(vec![r]));
    assert!(out.text.contains("repo1-s3-key=value-of-S3_KEY\n"));
    assert!(out
        .text
        .contains("repo1-s3-key-secret=value-of-/etc/pgcd/s3.secret\n"));
    assert!(!out.masked.contains("value-of"), "{}", out.masked);
    assert!(
        out.masked.contains("archive-async=y"),
        "object stores archive asynchronously"
    );
    insta::assert_snapshot!(out.masked);
}

#[test]
fn gcs_repository_writes_its_key_to_a_file_beside_the_conf() {
    let mut r = repo(1, "gcs", RepoType::Gcs);
    r.gcs_bucket = Some("pg-backups".into());
    r.gcs_key = Some(SecretRef::File("/etc/pgcd/gcs.json".into()));
    let out = rendered(&conf(vec![r]));
    assert_eq!(
        out.files,
        vec![(
            "repo1-gcs-key.json".to_string(),
            "value-of-/etc/pgcd/gcs.json".to_string()
        )]
    );
    insta::assert_snapshot!(out.masked);
}

#[test]
fn azure_repository_masks_its_shared_key() {
    let mut r = repo(1, "azure", RepoType::Azure);
    r.azure_account = Some("pgacct".into());
    r.azure_container = Some("backups".into());
    r.azure_key = Some(SecretRef::Env("AZURE_KEY".into()));
    let out = rendered(&conf(vec![r]));
    assert!(out.text.contains("repo1-azure-key=value-of-AZURE_KEY"));
    assert!(!out.masked.contains("value-of"));
    insta::assert_snapshot!(out.masked);
}

#[test]
fn cifs_and_posix_repositories_are_numbered_in_spec_order() {
    let mut a = repo(1, "nfs", RepoType::Posix);
    a.base_path = Some("/mnt/nfs".into());
    let mut b = repo(2, "share", RepoType::Cifs);
    b.base_path = Some("/mnt/cifs".into());
    b.custom_options.insert("bundle".into(), "y".into());
    let out = rendered(&conf(vec![a, b]));
    insta::assert_snapshot!(out.text);
}

#[test]
fn a_secret_that_cannot_be_read_names_the_repository_and_field() {
    let mut r = repo(1, "s3", RepoType::S3);
    r.s3_bucket = Some("b".into());
    r.s3_key = Some(SecretRef::Age("x".into()));
    r.s3_key_secret = Some(SecretRef::Env("S".into()));
    let e = render(&conf(vec![r]), "1", &mut resolver()).unwrap_err();
    assert_eq!(e.to_string(), "repository s3: s3_key: age is not decrypted");
}

#[test]
fn plain_http_endpoints_and_bad_custom_options_are_refused() {
    let mut r = repo(1, "s3", RepoType::S3);
    r.s3_endpoint = Some("http://minio:9000".into());
    let e = render(&conf(vec![r]), "1", &mut resolver()).unwrap_err();
    assert!(e.to_string().contains("https only"), "{e}");
    let mut r = repo(1, "nfs", RepoType::Posix);
    r.base_path = Some("/x".into());
    r.custom_options.insert("repo1-bundle".into(), "y".into());
    let e = render(&conf(vec![r]), "1", &mut resolver()).unwrap_err();
    assert!(e.to_string().contains("write \"bundle\""), "{e}");
}
