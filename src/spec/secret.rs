//! Secret references: where a password comes from, never the password.

use super::decode::{Ctx, Decode, MapReader};
use super::diag::FieldPath;
use super::yaml::Node;
use serde::Serialize;

/// A reference to a secret: an environment variable or file on the hosts,
/// or an age-encrypted value decrypted by the agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    /// The name of an environment variable of the agent.
    Env(String),
    /// An absolute path of a file on the host.
    File(String),
    /// An ASCII-armored age ciphertext.
    Age(String),
}

/// Prints the reference as it is written (`{env: NAME}`, `{file: PATH}`),
/// never a value: an age ciphertext prints as `{age: ...}`.
impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(name) => write!(f, "{{env: {name}}}"),
            Self::File(path) => write!(f, "{{file: {path}}}"),
            Self::Age(_) => f.write_str("{age: ...}"),
        }
    }
}

const AGE_HEADER: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const FORMS: &str = "{env: NAME}, {file: /absolute/path} or {age: <armored ciphertext>}";

impl Decode for SecretRef {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        if !matches!(node.value, super::yaml::Value::Map(_)) {
            // Never echo the value: it may be a real password.
            cx.error_at(
                node.pos,
                path,
                format!("a secret may not be written in clear text; use {FORMS}"),
            );
            return None;
        }
        let mut m = MapReader::new(node, path, cx, "a secret reference")?;
        let env: Option<String> = m.opt(cx, "env");
        let file: Option<String> = m.opt(cx, "file");
        let age: Option<String> = m.opt(cx, "age");
        let before = cx.diags.len();
        m.finish(cx);
        if cx.diags.len() > before {
            return None; // the unknown field's message says it all
        }
        let given = [env.is_some(), file.is_some(), age.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            cx.error_at(
                node.pos,
                path,
                format!("a secret reference has exactly one of {FORMS}"),
            );
            return None;
        }
        if let Some(name) = env {
            let ok = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                cx.error_at(
                    node.pos,
                    &path.field("env"),
                    format!("\"{name}\" is not an environment variable name (A-Z, 0-9, '_')"),
                );
                return None;
            }
            return Some(Self::Env(name));
        }
        if let Some(file) = file {
            if !file.starts_with('/') {
                cx.error_at(
                    node.pos,
                    &path.field("file"),
                    "the secret file must be an absolute path",
                );
                return None;
            }
            return Some(Self::File(file));
        }
        let age = age.unwrap_or_default();
        if !age.trim_start().starts_with(AGE_HEADER) {
            cx.error_at(
                node.pos,
                &path.field("age"),
                format!("an age value is an armored ciphertext starting with \"{AGE_HEADER}\""),
            );
            return None;
        }
        Some(Self::Age(age))
    }
}
