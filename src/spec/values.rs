//! Small value types of the spec: versions, CPU and memory quantities,
//! timestamps, durations and `postgresql.conf` values.

use super::decode::{Ctx, Decode};
use super::diag::FieldPath;
use super::yaml::{Node, Value};
use chrono::{DateTime, Utc};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// The PostgreSQL majors pgcd runs.
pub const SUPPORTED_MAJORS: &[u16] = &[16, 17, 18];

/// A PostgreSQL version: a major (`17`), or a pinned minor (`"17.6"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PgVersion {
    /// The major version.
    pub major: u16,
    /// The pinned minor; the newest image of the major when absent.
    pub minor: Option<u16>,
}

impl PgVersion {
    /// Parses `17` or `17.6`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "\"{}\" is not a supported PostgreSQL version (supported: 16, 17, 18, or a pinned minor like \"17.6\")",
                s.chars().take(40).collect::<String>()
            )
        };
        let (major, minor) = match s.trim().split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (s.trim(), None),
        };
        let major: u16 = major.parse().map_err(|_| bad())?;
        let minor = match minor {
            Some(m) => Some(m.parse::<u16>().map_err(|_| bad())?),
            None => None,
        };
        if !SUPPORTED_MAJORS.contains(&major) {
            return Err(bad());
        }
        Ok(Self { major, minor })
    }
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.minor {
            Some(m) => write!(f, "{}.{m}", self.major),
            None => write!(f, "{}", self.major),
        }
    }
}

impl Serialize for PgVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for PgVersion {
    fn schema_name() -> Cow<'static, str> {
        "PgVersion".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "PostgreSQL major (16, 17, 18) or pinned minor (\"17.6\").",
            "type": ["string", "integer", "number"],
            "pattern": "^(16|17|18)(\\.[0-9]+)?$"
        })
    }
}

fn parse_with<T>(
    node: &Node,
    path: &FieldPath,
    cx: &mut Ctx,
    f: impl Fn(&str) -> Result<T, String>,
) -> Option<T> {
    let text = String::decode(node, path, cx)?;
    match f(&text) {
        Ok(v) => Some(v),
        Err(msg) => {
            cx.error_at(node.pos, path, msg);
            None
        }
    }
}

impl Decode for PgVersion {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        parse_with(node, path, cx, Self::parse)
    }
}

macro_rules! text_value {
    ($(#[$m:meta])* $name:ident, $desc:literal, $pattern:literal, $check:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl Decode for $name {
            fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
                parse_with(node, path, cx, |s| {
                    let check: fn(&str) -> Result<(), String> = $check;
                    check(s).map(|()| Self(s.to_string()))
                })
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": ["string", "number"], "description": $desc, "pattern": $pattern })
            }
        }
    };
}

text_value!(
    /// CPUs as a count (`"2"`, `"1.5"`) or millicores (`"500m"`).
    Cpus, "CPUs: a count (\"2\", \"1.5\") or millicores (\"500m\").", "^([0-9]+(\\.[0-9]+)?|[0-9]+m)$",
    |s| {
        let ok = match s.strip_suffix('m') {
            Some(milli) => milli.parse::<u32>().is_ok_and(|v| v > 0),
            None => s.parse::<f64>().is_ok_and(|v| v > 0.0 && v <= 1024.0),
        };
        if ok { Ok(()) } else { Err(format!("\"{s}\" is not a CPU quantity (e.g. \"2\", \"1.5\", \"500m\")")) }
    }
);

/// Bytes of a memory quantity such as `16GiB`, `512MiB` or `1G`.
pub fn memory_bytes(s: &str) -> Option<u64> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "K" | "KB" | "Ki" | "KiB" => 1 << 10,
        "M" | "MB" | "Mi" | "MiB" => 1 << 20,
        "G" | "GB" | "Gi" | "GiB" => 1 << 30,
        "T" | "TB" | "Ti" | "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult).filter(|b| *b > 0)
}

text_value!(
    /// Memory as a quantity: `16GiB`, `512MiB`, `1G`.
    Memory, "Memory: a quantity such as \"16GiB\", \"512MiB\" or \"1G\".", "^[0-9]+([KMGT](i?B?)?|B)?$",
    |s| match memory_bytes(s) {
        Some(_) => Ok(()),
        None => Err(format!("\"{s}\" is not a memory quantity (e.g. \"16GiB\", \"512MiB\")")),
    }
);

/// Milliseconds of a duration such as `15s`, `2m`, `500ms` or `1h`.
pub fn duration_ms(s: &str) -> Option<u64> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(mult).filter(|ms| *ms > 0)
}

text_value!(
    /// A duration: `500ms`, `15s`, `2m`, `1h`.
    Duration, "A duration: \"500ms\", \"15s\", \"2m\", \"1h\".", "^[0-9]+(ms|s|m|h)$",
    |s| match duration_ms(s) {
        Some(_) => Ok(()),
        None => Err(format!("\"{s}\" is not a duration (e.g. \"15s\", \"2m\", \"500ms\")")),
    }
);

impl Duration {
    /// The duration as a std value.
    pub fn as_std(&self) -> std::time::Duration {
        std::time::Duration::from_millis(duration_ms(&self.0).unwrap_or(0))
    }
}

/// An RFC 3339 timestamp, e.g. `2026-12-01T02:00:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Timestamp(pub DateTime<Utc>);

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date-time", "description": "RFC 3339, e.g. 2026-12-01T02:00:00Z." })
    }
}

impl Decode for Timestamp {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        parse_with(node, path, cx, |s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| Self(t.with_timezone(&Utc)))
                .map_err(|_| {
                    format!("\"{s}\" is not an RFC 3339 timestamp (e.g. \"2026-12-01T02:00:00Z\")")
                })
        })
    }
}

/// A `postgresql.conf` value as written: a word, a number or a boolean.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ConfValue {
    /// `on`/`off` written as a YAML boolean.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A decimal number.
    Float(f64),
    /// Anything else (`'256MB'`, `'pg_stat_statements,pgaudit'`).
    Text(String),
}

impl fmt::Display for ConfValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfValue::Bool(b) => f.write_str(if *b { "on" } else { "off" }),
            ConfValue::Int(i) => write!(f, "{i}"),
            ConfValue::Float(x) => write!(f, "{x}"),
            ConfValue::Text(t) => f.write_str(t),
        }
    }
}

impl Decode for ConfValue {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        match &node.value {
            Value::Scalar { text, plain: true } => Some(match text.as_str() {
                "true" | "True" | "TRUE" => ConfValue::Bool(true),
                "false" | "False" | "FALSE" => ConfValue::Bool(false),
                t => match (t.parse::<i64>(), t.parse::<f64>()) {
                    (Ok(i), _) => ConfValue::Int(i),
                    (_, Ok(x)) if x.is_finite() => ConfValue::Float(x),
                    _ => ConfValue::Text(t.to_string()),
                },
            }),
            _ => String::decode(node, path, cx).map(ConfValue::Text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_majors_and_pinned_minors() {
        assert_eq!(
            PgVersion::parse("17").unwrap(),
            PgVersion {
                major: 17,
                minor: None
            }
        );
        assert_eq!(PgVersion::parse("17.6").unwrap().to_string(), "17.6");
        assert!(PgVersion::parse("15").is_err());
        assert!(PgVersion::parse("17.x").is_err());
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(memory_bytes("16GiB"), Some(16 << 30));
        assert_eq!(memory_bytes("512M"), Some(512 << 20));
        assert_eq!(memory_bytes("16 gigs"), None);
        assert_eq!(duration_ms("15s"), Some(15_000));
        assert_eq!(duration_ms("0s"), None);
    }
}
