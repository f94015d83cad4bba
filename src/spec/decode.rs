//! Decoding YAML nodes into spec types while collecting every error.
//!
//! serde stops at the first error and forgets positions; a person fixing a
//! spec wants all of them with line and column. So each type decodes itself
//! from a [`Node`], records where its fields start in the [`SpanMap`], and
//! reports problems into [`Ctx`] instead of returning early.

use super::diag::{Diagnostic, FieldPath, SpanMap};
use super::values::PgVersion;
use super::yaml::{Key, Node, Pos, Value};
use std::collections::BTreeMap;

/// The errors and spans of the file being decoded.
#[derive(Debug)]
pub struct Ctx {
    /// Where every decoded field starts.
    pub spans: SpanMap,
    /// The errors found so far.
    pub diags: Vec<Diagnostic>,
    /// `postgres_version` of a database that names none: `pgcd.yaml`'s, or
    /// pgcd's own default when `None`.
    pub postgres_version: Option<PgVersion>,
}

impl Ctx {
    /// A context for one file.
    pub fn new(file: &str) -> Self {
        Self {
            spans: SpanMap::new(file),
            diags: Vec::new(),
            postgres_version: None,
        }
    }

    /// Records an error at a position.
    pub fn error_at(&mut self, pos: Pos, path: &FieldPath, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.spans.file().to_string(),
            line: pos.line,
            column: pos.column,
            field: path.to_string(),
            message: message.into(),
        });
    }
}

/// A spec type that can be decoded from a YAML node.
pub trait Decode: Sized {
    /// Decodes `node`, reporting problems into `cx`; `None` when it cannot.
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self>;
}

/// Decodes a node and records where it starts.
pub fn decode<T: Decode>(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<T> {
    cx.spans.insert(path, node.pos);
    T::decode(node, path, cx)
}

/// The closest of `candidates` to `word`, when it is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word_l = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(&word_l, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Reads the fields of one mapping, then reports the ones nobody asked for.
pub struct MapReader<'n> {
    entries: &'n [(Key, Node)],
    used: Vec<bool>,
    path: FieldPath,
    pos: Pos,
    known: Vec<&'static str>,
}

impl<'n> MapReader<'n> {
    /// Starts reading `node`, which must be a mapping (`what` names it in the error).
    pub fn new(node: &'n Node, path: &FieldPath, cx: &mut Ctx, what: &str) -> Option<Self> {
        match &node.value {
            Value::Map(entries) => Some(Self {
                entries,
                used: vec![false; entries.len()],
                path: path.clone(),
                pos: node.pos,
                known: Vec::new(),
            }),
            _ => {
                cx.error_at(
                    node.pos,
                    path,
                    format!("expected {what} (a mapping), found {}", node.kind_name()),
                );
                None
            }
        }
    }

    /// The raw node of a field (null counts as absent), marking it as known.
    pub fn node(&mut self, name: &'static str) -> Option<&'n Node> {
        self.known.push(name);
        let i = self.entries.iter().position(|(k, _)| k.text == name)?;
        self.used[i] = true;
        let node = &self.entries[i].1;
        (!node.is_null()).then_some(node)
    }

    /// Whether the mapping has the field (even when null).
    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.text == name)
    }

    /// An optional field.
    pub fn opt<T: Decode>(&mut self, cx: &mut Ctx, name: &'static str) -> Option<T> {
        let node = self.node(name)?;
        decode(node, &self.path.field(name), cx)
    }

    /// An optional list field; absent is empty.
    pub fn list<T: Decode>(&mut self, cx: &mut Ctx, name: &'static str) -> Vec<T> {
        self.opt::<Vec<T>>(cx, name).unwrap_or_default()
    }

    /// An optional map field; absent is empty.
    pub fn map<T: Decode>(&mut self, cx: &mut Ctx, name: &'static str) -> BTreeMap<String, T> {
        self.opt::<BTreeMap<String, T>>(cx, name)
            .unwrap_or_default()
    }

    /// A required field; its absence is reported.
    pub fn req<T: Decode>(&mut self, cx: &mut Ctx, name: &'static str) -> Option<T> {
        if self
            .entries
            .iter()
            .any(|(k, v)| k.text == name && !v.is_null())
        {
            self.opt(cx, name)
        } else {
            self.known.push(name);
            cx.error_at(
                self.pos,
                &self.path.field(name),
                format!("missing required field `{name}`"),
            );
            None
        }
    }

    /// A field pgcd does not support (a pgEdge field, say): when present it
    /// is an error at its key, with `why` saying what pgcd offers instead.
    pub fn unsupported(
        &mut self,
        cx: &mut Ctx,
        name: &'static str,
        why: impl FnOnce(&Node) -> String,
    ) {
        let Some(i) = self.entries.iter().position(|(k, _)| k.text == name) else {
            return;
        };
        self.used[i] = true;
        let (key, node) = &self.entries[i];
        if !node.is_null() {
            cx.error_at(key.pos, &self.path.field(name), why(node));
        }
    }

    /// A list field that must hold at least one item when present or
    /// `required`. Emptiness is judged on the YAML list itself, so an item
    /// that fails to decode (and is reported) does not also make the list
    /// "empty".
    pub fn nonempty_list<T: Decode>(
        &mut self,
        cx: &mut Ctx,
        name: &'static str,
        required: bool,
        empty: &str,
    ) -> Option<Vec<T>> {
        let raw_empty = self
            .entries
            .iter()
            .find(|(k, _)| k.text == name)
            .map(|(_, v)| matches!(&v.value, Value::Seq(items) if items.is_empty()));
        let list: Option<Vec<T>> = if required {
            self.req(cx, name)
        } else {
            self.opt(cx, name)
        };
        if raw_empty == Some(true) {
            let p = self.path.field(name);
            let pos = cx.spans.pos(p.as_str());
            cx.error_at(pos, &p, empty);
        }
        list
    }

    /// The path of this mapping.
    pub fn path(&self) -> &FieldPath {
        &self.path
    }

    /// Reports every field that was not read as unknown, with a suggestion.
    pub fn finish(self, cx: &mut Ctx) {
        for (i, (key, _)) in self.entries.iter().enumerate() {
            if self.used[i] {
                continue;
            }
            let hint = match did_you_mean(&key.text, self.known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("known fields: {}", self.known.join(", ")),
            };
            cx.error_at(
                key.pos,
                &self.path.field(&key.text),
                format!("unknown field `{}` ({hint})", key.text),
            );
        }
    }
}

fn scalar<'a>(
    node: &'a Node,
    path: &FieldPath,
    cx: &mut Ctx,
    what: &str,
) -> Option<(&'a str, bool)> {
    match &node.value {
        Value::Scalar { text, plain } if !node.is_null() => Some((text, *plain)),
        _ => {
            cx.error_at(
                node.pos,
                path,
                format!("expected {what}, found {}", node.kind_name()),
            );
            None
        }
    }
}

impl Decode for String {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        scalar(node, path, cx, "a string").map(|(s, _)| s.to_string())
    }
}

impl Decode for bool {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let (text, _) = scalar(node, path, cx, "true or false")?;
        match text {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => {
                cx.error_at(
                    node.pos,
                    path,
                    format!("expected true or false, found \"{text}\""),
                );
                None
            }
        }
    }
}

macro_rules! decode_int {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
                let (text, _) = scalar(node, path, cx, "a whole number")?;
                match text.trim().parse::<$t>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        cx.error_at(node.pos, path, format!(
                            "expected a whole number between {} and {}, found \"{}\"",
                            <$t>::MIN, <$t>::MAX, text.chars().take(40).collect::<String>()));
                        None
                    }
                }
            }
        }
    )*};
}
decode_int!(u16, u32, u64);

impl<T: Decode> Decode for Vec<T> {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        match &node.value {
            Value::Seq(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| decode(item, &path.index(i), cx))
                    .collect(),
            ),
            _ => {
                cx.error_at(
                    node.pos,
                    path,
                    format!("expected a list, found {}", node.kind_name()),
                );
                None
            }
        }
    }
}

impl<T: Decode> Decode for BTreeMap<String, T> {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        match &node.value {
            Value::Map(entries) => Some(
                entries
                    .iter()
                    .filter_map(|(k, v)| {
                        let p = path.key(&k.text);
                        cx.spans.insert(&p, k.pos);
                        T::decode(v, &p, cx).map(|v| (k.text.clone(), v))
                    })
                    .collect(),
            ),
            _ => {
                cx.error_at(
                    node.pos,
                    path,
                    format!("expected a mapping, found {}", node.kind_name()),
                );
                None
            }
        }
    }
}

/// Decodes a scalar that must be one of a fixed set of words.
pub fn decode_choice<T: Copy>(
    node: &Node,
    path: &FieldPath,
    cx: &mut Ctx,
    all: &[(&'static str, T)],
) -> Option<T> {
    let (text, _) = scalar(node, path, cx, "one of the allowed words")?;
    if let Some((_, v)) = all.iter().find(|(w, _)| *w == text) {
        return Some(*v);
    }
    let words: Vec<&str> = all.iter().map(|(w, _)| *w).collect();
    let hint = match did_you_mean(text, words.iter().copied()) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    };
    cx.error_at(
        node.pos,
        path,
        format!("\"{text}\" is not one of: {}{hint}", words.join(", ")),
    );
    None
}

/// Declares a string enum: serde and schema names, and decoding with suggestions.
macro_rules! choice {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        // Each variant is its spelling in the spec; docs would change the schema.
        #[allow(missing_docs)]
        pub enum $name { $($(#[$vm])* #[serde(rename = $text)] $var),+ }
        impl $name {
            /// Every value and its spelling.
            pub const ALL: &'static [(&'static str, $name)] = &[$(($text, $name::$var)),+];
            /// The spelling in the spec.
            pub fn as_str(&self) -> &'static str { match self { $($name::$var => $text),+ } }
        }
        impl $crate::spec::decode::Decode for $name {
            fn decode(
                node: &$crate::spec::yaml::Node,
                path: &$crate::spec::diag::FieldPath,
                cx: &mut $crate::spec::decode::Ctx,
            ) -> Option<Self> {
                $crate::spec::decode::decode_choice(node, path, cx, Self::ALL)
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}
pub(crate) use choice;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse;

    #[test]
    fn did_you_mean_finds_typos_only() {
        let known = ["postgres_version", "port", "nodes"];
        assert_eq!(
            did_you_mean("postgres_verison", known),
            Some("postgres_version")
        );
        assert_eq!(did_you_mean("nodse", known), Some("nodes"));
        assert_eq!(did_you_mean("completely_else", known), None);
    }

    #[test]
    fn map_reader_reports_missing_and_unknown_fields_together() {
        let doc = parse("prot: 5432\nname: x\n").unwrap().unwrap();
        let mut cx = Ctx::new("f.yaml");
        let mut m = MapReader::new(&doc, &FieldPath::root(), &mut cx, "a test").unwrap();
        let _: Option<String> = m.opt(&mut cx, "name");
        let _: Option<u16> = m.opt(&mut cx, "port");
        let _: Option<String> = m.req(&mut cx, "database_name");
        m.finish(&mut cx);
        let text: Vec<String> = cx.diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            text,
            [
                "f.yaml:1:1: database_name: missing required field `database_name`",
                "f.yaml:1:1: prot: unknown field `prot` (did you mean `port`?)",
            ]
        );
    }
}
