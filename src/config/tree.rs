//! The YAML document as a tree that remembers where every value came from.
//!
//! Loading goes YAML text → [`Node`] tree (with line and column of every key and value) →
//! `${VAR}` expansion → environment overlay → typed [`super::Config`]. Keeping the tree lets
//! every later step (expansion, overlay, deserialization, validation) point at the exact
//! line and column, or name the environment variable a value came from.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::error::ConfigIssue;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A position in the YAML file (1-based).
    File { line: u64, column: u64 },
    /// An environment variable of the overlay.
    Env(String),
    /// Created by the loader (an empty document, an intermediate mapping).
    Synthetic,
}

impl Origin {
    fn from_location(location: &serde_saphyr::Location) -> Origin {
        if location.line() == 0 {
            Origin::Synthetic
        } else {
            Origin::File {
                line: location.line(),
                column: location.column(),
            }
        }
    }

    /// `name:line:column` for file positions.
    pub(crate) fn location(&self, name: &str) -> Option<String> {
        match self {
            Origin::File { line, column } => Some(format!("{name}:{line}:{column}")),
            _ => None,
        }
    }

    /// The environment variable, for values set by the overlay.
    pub(crate) fn env_var(&self) -> Option<&str> {
        match self {
            Origin::Env(var) => Some(var),
            _ => None,
        }
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Renders `catalog.refresh`, `backends[0].url`.
pub(crate) fn path_string(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => {
                out.push_str(&format!("[{i}]"));
            }
        }
    }
    out
}

/// Builds a key path from `"server"`, `"listen"`, … (all keys).
pub(crate) fn keys(names: &[&str]) -> Vec<Seg> {
    names.iter().map(|n| Seg::Key((*n).to_string())).collect()
}

/// A YAML value with its origin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub origin: Origin,
}

/// The shape of a value. `Removed` marks a value that failed to deserialize: it is skipped on
/// the next attempt so the other problems of the file can still be found, while sequence
/// indices in messages keep matching the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
    Removed,
}

/// A mapping entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_origin: Origin,
    pub value: Node,
}

impl Node {
    pub(crate) fn new(kind: Kind, origin: Origin) -> Node {
        Node { kind, origin }
    }

    /// A string set by an environment variable.
    pub(crate) fn env_str(value: impl Into<String>, var: &str) -> Node {
        Node::new(Kind::Str(value.into()), Origin::Env(var.to_string()))
    }

    /// A list of strings set by an environment variable.
    pub(crate) fn env_list(values: Vec<String>, var: &str) -> Node {
        Node::new(
            Kind::Seq(values.into_iter().map(|v| Node::env_str(v, var)).collect()),
            Origin::Env(var.to_string()),
        )
    }

    /// The live (not removed) entry for `key` of a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|e| e.key == key && e.value.kind != Kind::Removed)
                .map(|e| &e.value),
            _ => None,
        }
    }

    /// The string value, if this is a string-like scalar.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The node at a path where sequence steps are file indices.
    pub(crate) fn at(&self, path: &[Seg]) -> Option<&Node> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        let child = match (&self.kind, first) {
            (Kind::Map(entries), Seg::Key(key)) => entries
                .iter()
                .find(|e| &e.key == key && e.value.kind != Kind::Removed)
                .map(|e| &e.value),
            (Kind::Seq(items), Seg::Index(i)) => items.get(*i),
            _ => None,
        }?;
        child.at(rest)
    }

    /// Mutable [`Node::at`].
    pub(crate) fn at_mut(&mut self, path: &[Seg]) -> Option<&mut Node> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        let child = match (&mut self.kind, first) {
            (Kind::Map(entries), Seg::Key(key)) => entries
                .iter_mut()
                .find(|e| &e.key == key && e.value.kind != Kind::Removed)
                .map(|e| &mut e.value),
            (Kind::Seq(items), Seg::Index(i)) => items.get_mut(*i),
            _ => None,
        }?;
        child.at_mut(rest)
    }

    /// Marks the value at `path` as removed. False when there is nothing left to remove.
    pub(crate) fn remove_at(&mut self, path: &[Seg]) -> bool {
        if path.is_empty() {
            return false;
        }
        match self.at_mut(path) {
            Some(node) if node.kind != Kind::Removed => {
                node.kind = Kind::Removed;
                true
            }
            _ => false,
        }
    }

    /// Follows a path of the *typed* configuration (where removed sequence items do not
    /// count) and returns the same path with file indices and the origin of the deepest node
    /// found. A path into defaults that the file does not mention yields no origin.
    pub(crate) fn locate(&self, path: &[Seg]) -> (Vec<Seg>, Option<Origin>) {
        let mut node = self;
        let mut file_path = Vec::new();
        for seg in path {
            let next = match (&node.kind, seg) {
                (Kind::Map(entries), Seg::Key(key)) => entries
                    .iter()
                    .find(|e| &e.key == key && e.value.kind != Kind::Removed)
                    .map(|e| (Seg::Key(key.clone()), &e.value)),
                (Kind::Seq(items), Seg::Index(i)) => items
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.kind != Kind::Removed)
                    .nth(*i)
                    .map(|(file_index, n)| (Seg::Index(file_index), n)),
                _ => None,
            };
            match next {
                Some((seg, child)) => {
                    file_path.push(seg);
                    node = child;
                }
                None => {
                    // Not in the file: keep the typed path, point nowhere.
                    let rest = &path[file_path.len()..];
                    file_path.extend(rest.iter().cloned());
                    return (file_path, None);
                }
            }
        }
        (file_path, Some(node.origin.clone()))
    }

    /// The mapping entry `key`, created (as null) when absent. Returns None when this node is
    /// a scalar or a list, so a type error in the file stays visible instead of being
    /// overwritten.
    pub(crate) fn entry_mut(&mut self, key: &str) -> Option<&mut Node> {
        if matches!(self.kind, Kind::Null | Kind::Removed) {
            self.kind = Kind::Map(Vec::new());
        }
        let Kind::Map(entries) = &mut self.kind else {
            return None;
        };
        let position = entries
            .iter()
            .position(|e| e.key == key && e.value.kind != Kind::Removed);
        let index = match position {
            Some(index) => index,
            None => {
                entries.push(Entry {
                    key: key.to_string(),
                    key_origin: Origin::Synthetic,
                    value: Node::new(Kind::Null, Origin::Synthetic),
                });
                entries.len() - 1
            }
        };
        Some(&mut entries[index].value)
    }

    /// Sets the value at a path of keys, creating intermediate mappings. False when a
    /// scalar in the way prevents it.
    pub(crate) fn set(&mut self, path: &[&str], value: Node) -> bool {
        let Some((first, rest)) = path.split_first() else {
            *self = value;
            return true;
        };
        match self.entry_mut(first) {
            Some(child) => child.set(rest, value),
            None => false,
        }
    }
}

/// The raw shape serde-saphyr hands us, converted to [`Node`] right after parsing.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Raw::Map(entries))
    }
}

fn convert(raw: Spanned<Raw>) -> Node {
    let origin = Origin::from_location(&raw.referenced);
    let kind = match raw.value {
        Raw::Null => Kind::Null,
        Raw::Bool(b) => Kind::Bool(b),
        Raw::Int(i) => Kind::Int(i),
        Raw::UInt(u) => Kind::UInt(u),
        Raw::Float(f) => Kind::Float(f),
        Raw::Str(s) => Kind::Str(s),
        Raw::Seq(items) => Kind::Seq(items.into_iter().map(convert).collect()),
        Raw::Map(entries) => Kind::Map(
            entries
                .into_iter()
                .map(|(key, value)| Entry {
                    key_origin: Origin::from_location(&key.referenced),
                    key: key.value,
                    value: convert(value),
                })
                .collect(),
        ),
    };
    Node::new(kind, origin)
}

#[cfg(test)]
impl Node {
    /// The tree as JSON, exactly as the loader reads it (`yes` stays text, etc.).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Value};
        match &self.kind {
            Kind::Null | Kind::Removed => Value::Null,
            Kind::Bool(b) => json!(b),
            Kind::Int(i) => json!(i),
            Kind::UInt(u) => json!(u),
            Kind::Float(f) => json!(f),
            Kind::Str(s) => json!(s),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parses YAML text into a tree. `name` prefixes locations in messages. Duplicate keys,
/// syntax errors and several documents in one file are refused; aliases and `<<` merges are
/// resolved (values keep the position where they are used). `yes`/`no` stay strings: only
/// `true` and `false` are booleans.
pub(crate) fn parse_yaml(text: &str, name: &str) -> Result<Node, ConfigIssue> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options) {
        Ok(raw) => Ok(convert(raw)),
        Err(error) => {
            let location = error
                .location()
                .filter(|l| l.line() > 0)
                .map(|l| (l.line(), l.column()));
            let mut message = error.to_string();
            if let Some((line, column)) = location {
                for suffix in [
                    format!(" at line {line}, column {column}"),
                    format!("line {line} column {column}: "),
                ] {
                    message = message.replace(&suffix, "");
                }
            }
            if matches!(
                error.without_snippet(),
                serde_saphyr::Error::MultipleDocuments { .. }
            ) {
                message = "the file holds several YAML documents (`---`); a configuration is one document".into();
            }
            let message = format!("invalid YAML: {}", message.trim());
            Err(ConfigIssue::new(message)
                .at_location(location.map(|(l, c)| format!("{name}:{l}:{c}"))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin_at(line: u64, column: u64) -> Origin {
        Origin::File { line, column }
    }

    #[test]
    fn keeps_positions_and_types() {
        let tree = parse_yaml(
            "a:\n  b: 1\n  c: 'x'\n  d: yes\nlist: [true, -2, 1.5, ~]\n",
            "t",
        )
        .unwrap();
        let a = tree.get("a").unwrap();
        assert_eq!(a.get("b").unwrap().kind, Kind::UInt(1));
        assert_eq!(a.get("b").unwrap().origin, origin_at(2, 6));
        assert_eq!(a.get("c").unwrap().kind, Kind::Str("x".into()));
        assert_eq!(a.get("d").unwrap().kind, Kind::Str("yes".into()));
        let Kind::Seq(items) = &tree.get("list").unwrap().kind else {
            panic!("not a list")
        };
        let kinds: Vec<_> = items.iter().map(|n| n.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Bool(true),
                Kind::Int(-2),
                Kind::Float(1.5),
                Kind::Null
            ]
        );
    }

    #[test]
    fn empty_documents_are_null() {
        assert_eq!(parse_yaml("", "t").unwrap().kind, Kind::Null);
        assert_eq!(parse_yaml("# nothing\n", "t").unwrap().kind, Kind::Null);
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let issue = parse_yaml("a: 1\nb: [x\nc: 2\n", "gw.yaml").unwrap_err();
        let location = issue.location.clone().unwrap();
        assert!(location.starts_with("gw.yaml:"), "{issue}");
        assert!(issue.message.starts_with("invalid YAML: "), "{issue}");
        assert!(!issue.message.contains("at line"), "{issue}");
        let issue = parse_yaml("a: 1\na: 2\n", "gw.yaml").unwrap_err();
        assert_eq!(issue.location.as_deref(), Some("gw.yaml:2:1"));
        assert!(issue.message.contains("duplicate"), "{issue}");
        let issue = parse_yaml("a: 1\n---\nb: 2\n", "gw.yaml").unwrap_err();
        assert!(issue.message.contains("several YAML documents"), "{issue}");
    }

    #[test]
    fn aliases_and_merges_resolve() {
        let tree = parse_yaml("base: &b {timeout: 5s}\nx:\n  <<: *b\n  id: a\n", "t").unwrap();
        let x = tree.get("x").unwrap();
        assert_eq!(x.get("timeout").unwrap().kind, Kind::Str("5s".into()));
        assert_eq!(x.get("id").unwrap().kind, Kind::Str("a".into()));
    }

    #[test]
    fn locate_skips_removed_items_and_reports_file_indices() {
        let mut tree = parse_yaml("l:\n  - a\n  - b\n  - c\n", "t").unwrap();
        assert!(tree.remove_at(&[Seg::Key("l".into()), Seg::Index(0)]));
        assert!(!tree.remove_at(&[Seg::Key("l".into()), Seg::Index(0)]));
        let (path, origin) = tree.locate(&[Seg::Key("l".into()), Seg::Index(1)]);
        assert_eq!(path_string(&path), "l[2]");
        assert_eq!(origin, Some(origin_at(4, 5)));
        let (path, origin) = tree.locate(&keys(&["m", "n"]));
        assert_eq!(path_string(&path), "m.n");
        assert_eq!(origin, None);
    }

    #[test]
    fn set_creates_mappings_but_respects_scalars() {
        let mut tree = parse_yaml("auth:\nserver: 5\n", "t").unwrap();
        assert!(tree.set(
            &["auth", "oauth", "issuer"],
            Node::env_str("https://i", "OAUTH_ISSUER")
        ));
        let issuer = tree
            .get("auth")
            .unwrap()
            .get("oauth")
            .unwrap()
            .get("issuer")
            .unwrap();
        assert_eq!(issuer.origin.env_var(), Some("OAUTH_ISSUER"));
        assert!(!tree.set(
            &["server", "name"],
            Node::env_str("x", "CORTEX_SERVER_NAME")
        ));
    }
}
