//! Bad input never panics: random text, random YAML-ish token soup and
//! mutations of the sample repository go through the parser and validator.
//! Every outcome is either a desired state or located diagnostics.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

use pgcd::spec::{load, SourceFile};
use proptest::prelude::*;

fn sample_texts() -> Vec<SourceFile> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-repo");
    pgcd::spec::read_dir(&root).expect("sample repo")
}

fn check(files: &[SourceFile]) {
    if let Err(diags) = load(files) {
        assert!(!diags.is_empty());
        for d in diags {
            assert!(!d.file.is_empty(), "{d}");
            assert!(
                files.iter().any(|f| f.path == d.file),
                "{d} names a file that was not given"
            );
        }
    }
}

const TOKENS: &[&str] = &[
    "database_name: ",
    "postgres_version: ",
    "nodes:",
    "- ",
    "  ",
    "\n",
    "name: ",
    "host_ids: ",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "&a ",
    "*a",
    "!!str ",
    "'",
    "\"",
    "|",
    "> ",
    "17",
    "n1",
    "h1",
    "port: ",
    "99999",
    "-1",
    "null",
    "~",
    "? ",
    "---\n",
    "...\n",
    "#",
    "\t",
    "state: absent",
    "password: ",
    "env: X",
    "extensions: ",
    "pgvector",
    "\u{feff}",
    "é",
    "\\",
    "%YAML 1.2\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        check(&[SourceFile { path: "databases/x.yaml".into(), text: text.clone() }]);
        check(&[SourceFile { path: "operations/x.yaml".into(), text: text.clone() }]);
        check(&[SourceFile { path: "pgcd.yaml".into(), text }]);
    }

    #[test]
    fn token_soup_never_panics(idx in proptest::collection::vec(0..TOKENS.len(), 0..120)) {
        let text: String = idx.iter().map(|i| TOKENS[*i]).collect();
        check(&[SourceFile { path: "databases/x.yaml".into(), text }]);
    }

    #[test]
    fn mutated_sample_never_panics(
        file in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..4u8, any::<char>()), 1..8),
    ) {
        let mut files = sample_texts();
        let f = file % files.len();
        let mut chars: Vec<char> = files[f].text.chars().collect();
        for (at, op, ch) in edits {
            if chars.is_empty() { break; }
            let i = at.index(chars.len());
            match op {
                0 => { chars.remove(i); }
                1 => chars.insert(i, ch),
                2 => chars[i] = ch,
                _ => { let j = at.index(chars.len()); chars.swap(i, j); }
            }
        }
        files[f].text = chars.into_iter().collect();
        check(&files);
    }
}
