//! Names that reach PostgreSQL, etcd keys or file names: validated once when
//! decoded, so a value of these types is known to be well-formed.

use super::decode::{Ctx, Decode};
use super::diag::FieldPath;
use super::yaml::Node;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

/// PostgreSQL truncates identifiers at 63 bytes (NAMEDATALEN - 1).
pub const MAX_NAME_BYTES: usize = 63;

macro_rules! name_type {
    ($(#[$m:meta])* $name:ident, $what:literal, $pattern:literal, $allowed:literal, $check:path) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks a candidate name; the error says what is allowed.
            pub fn parse(s: &str) -> Result<Self, String> {
                let shown: String = s.chars().take(80).collect();
                let ok = !s.is_empty()
                    && s.len() <= MAX_NAME_BYTES
                    && $check(s);
                if !ok {
                    return Err(format!(
                        concat!($what, " \"{}\" is not valid (allowed: ", $allowed, ", at most 63 bytes)"),
                        shown
                    ));
                }
                Ok(Self(s.to_string()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<&$name> for $name {
            fn eq(&self, other: &&$name) -> bool {
                self.0 == other.0
            }
        }

        impl PartialEq<$name> for &$name {
            fn eq(&self, other: &$name) -> bool {
                self.0 == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        /// A name reads as the text it is, so it can go wherever a `&str` does.
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::parse(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            /// Stored values are checked again: a key or record written by
            /// hand must not smuggle a malformed name in.
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Decode for $name {
            fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
                let s = String::decode(node, path, cx)?;
                match Self::parse(&s) {
                    Ok(v) => Some(v),
                    Err(msg) => {
                        cx.error_at(node.pos, path, msg);
                        None
                    }
                }
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "maxLength": MAX_NAME_BYTES,
                    "description": concat!("A ", $what, ": ", $allowed, ", at most 63 bytes."),
                })
            }
        }
    };
}

fn is_sql_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

fn is_host_id(s: &str) -> bool {
    s.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_role_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

fn is_op_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '0'..='9'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
}

name_type!(
    /// A database name; also the file name `databases/<name>.yaml`.
    DatabaseName, "database name", "^[a-z_][a-z0-9_]*$",
    "a-z, 0-9, '_', not starting with a digit", is_sql_name
);
name_type!(
    /// A node name; it becomes part of replication slot and subscription names.
    NodeName, "node name", "^[a-z_][a-z0-9_]*$",
    "a-z, 0-9, '_', not starting with a digit", is_sql_name
);
name_type!(
    /// A host id, as given to `pgcd agent --host-id`.
    HostId, "host id", "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
    "a-z, 0-9, '-'", is_host_id
);
name_type!(
    /// A PostgreSQL role managed by pgcd.
    RoleName, "user name", "^[a-z_][a-z0-9_-]*$",
    "a-z, 0-9, '_', '-', starting with a letter or '_'", is_role_name
);
name_type!(
    /// An id of an operation, a backup repository or a schedule.
    ObjectId, "id", "^[a-z0-9][a-z0-9._-]*$",
    "a-z, 0-9, '.', '_', '-'", is_op_id
);

/// Database names PostgreSQL or pgcd keep for themselves.
pub const RESERVED_DATABASES: &[&str] = &["postgres", "template0", "template1", "pgcd"];

/// Role names pgcd keeps for itself (PostgreSQL also reserves the `pg_` prefix).
pub const RESERVED_ROLES: &[&str] = &["postgres", "pgcd", "pgcd_replication", "public", "none"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_rules() {
        assert!(HostId::parse("h1").is_ok());
        assert!(HostId::parse("h 3").unwrap_err().contains("a-z, 0-9, '-'"));
        assert!(HostId::parse("-h").is_err());
        assert!(DatabaseName::parse("orders_2").is_ok());
        assert!(DatabaseName::parse("2orders").is_err());
        assert!(DatabaseName::parse(&"a".repeat(64)).is_err());
        assert!(DatabaseName::parse(&"a".repeat(63)).is_ok());
        assert!(RoleName::parse("app-user").is_ok());
        assert!(NodeName::parse("n-1").is_err());
    }
}
