//! Diagnostics: one error a person can act on, with file, line, column and
//! the field path inside the file.

use super::yaml::Pos;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;

/// One validation error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, PartialOrd, Ord)]
pub struct Diagnostic {
    /// Path of the file inside the config repository, e.g. `databases/orders.yaml`.
    pub file: String,
    /// Line, from 1 (0 when the error is about the file as a whole).
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// Field path inside the file, e.g. `nodes[1].host_ids[0]` (empty for the file itself).
    pub field: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// A field path such as `nodes[1].host_ids[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// The path of a file's root.
    pub fn root() -> Self {
        Self::default()
    }

    /// The path of a field below this one.
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// The path of a list item below this one.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// The path of a map entry below this one (`postgresql_conf.port`).
    pub fn key(&self, key: &str) -> Self {
        self.field(key)
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The index of a list item's path (`repositories[2]` → 2).
    pub fn last_index(&self) -> Option<usize> {
        let inner = self.0.strip_suffix(']')?;
        inner[inner.rfind('[')? + 1..].parse().ok()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where each field of one file starts, so rules that run after decoding
/// can still point at the right line.
#[derive(Debug, Clone, Default)]
pub struct SpanMap {
    file: String,
    spans: HashMap<String, Pos>,
}

impl SpanMap {
    /// An empty map for a file.
    pub fn new(file: &str) -> Self {
        Self {
            file: file.to_string(),
            spans: HashMap::new(),
        }
    }

    /// The file the spans belong to.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records where a field starts.
    pub fn insert(&mut self, path: &FieldPath, pos: Pos) {
        self.spans.insert(path.0.clone(), pos);
    }

    /// Whether the field itself was in the file (not only a parent).
    pub fn has(&self, path: &str) -> bool {
        self.spans.contains_key(path)
    }

    /// Where a field starts; falls back to its closest recorded parent.
    pub fn pos(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.spans.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => {
                    return self
                        .spans
                        .get("")
                        .copied()
                        .unwrap_or(Pos { line: 1, column: 1 })
                }
            }
        }
    }

    /// A diagnostic about a field of this file.
    pub fn error(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let pos = self.pos(path);
        Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            field: path.to_string(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_line_col_field_message() {
        let d = Diagnostic {
            file: "databases/orders.yaml".into(),
            line: 14,
            column: 7,
            field: "nodes[1].host_ids".into(),
            message: "bad".into(),
        };
        assert_eq!(
            d.to_string(),
            "databases/orders.yaml:14:7: nodes[1].host_ids: bad"
        );
    }

    #[test]
    fn span_lookup_falls_back_to_the_parent() {
        let mut spans = SpanMap::new("f.yaml");
        spans.insert(&FieldPath::root(), Pos { line: 1, column: 1 });
        let nodes = FieldPath::root().field("nodes").index(1);
        spans.insert(&nodes, Pos { line: 9, column: 5 });
        assert_eq!(
            spans.pos("nodes[1].host_ids[0]"),
            Pos { line: 9, column: 5 }
        );
        assert_eq!(spans.pos("other.field"), Pos { line: 1, column: 1 });
    }
}
