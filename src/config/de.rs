//! A serde `Deserializer` over the [`Node`] tree.
//!
//! Why not deserialize straight from YAML: the tree has already been through `${VAR}`
//! expansion and the environment overlay, and deserializing from it lets us
//! - reject unknown keys with the closest valid key as a suggestion, collecting *all* of
//!   them (serde's derived code stops at the first), using the field lists that serde hands
//!   to `deserialize_struct`;
//! - attach the key path and the file position (or environment variable) to every error;
//! - accept strings for numbers and booleans, since `${VAR}` expansion produces strings
//!   (`threads: ${THREADS:-2}`).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::tree::{path_string, Entry, Kind, Node, Origin, Seg};

/// A problem found during deserialization.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeIssue {
    pub path: Vec<Seg>,
    pub origin: Option<Origin>,
    pub message: String,
}

/// What one deserialization pass learns besides its result.
#[derive(Default)]
pub(crate) struct Collector {
    /// Unknown keys (skipped, so the pass goes on).
    pub issues: RefCell<Vec<DeIssue>>,
    /// The field list of every struct met, by path (used to check the reference file).
    pub structs: RefCell<Vec<(String, &'static [&'static str])>>,
}

/// A deserialization error; the innermost node sets the path and origin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError {
    pub message: String,
    pub path: Option<Vec<Seg>>,
    pub origin: Option<Origin>,
}

impl DeError {
    fn msg(message: impl Into<String>) -> Self {
        DeError {
            message: message.into(),
            path: None,
            origin: None,
        }
    }

    fn or_at(mut self, path: &[Seg], origin: &Origin) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_vec());
            self.origin = Some(origin.clone());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::msg(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::msg(format!(
            "expected {exp}, found {}",
            describe_unexpected(&unexp)
        ))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::msg(format!(
            "expected {exp}, found {}",
            describe_unexpected(&unexp)
        ))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        DeError::msg(format!("expected {exp}, found {len} items"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::msg(unknown_value_message(variant, expected))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::msg(unknown_key_message(field, "", expected))
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::msg(format!("missing required key `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::msg(format!("key `{field}` is given twice"))
    }
}

fn describe_unexpected(unexp: &de::Unexpected<'_>) -> String {
    match unexp {
        de::Unexpected::Unit | de::Unexpected::Option => "an empty value".into(),
        de::Unexpected::Str(s) => format!("`{s}`"),
        de::Unexpected::Signed(i) => format!("`{i}`"),
        de::Unexpected::Unsigned(u) => format!("`{u}`"),
        de::Unexpected::Float(f) => format!("`{f}`"),
        de::Unexpected::Bool(b) => format!("`{b}`"),
        de::Unexpected::Seq => "a list".into(),
        de::Unexpected::Map => "a mapping".into(),
        other => other.to_string(),
    }
}

/// The closest candidate to `input`, if any is close enough to be a plausible typo.
pub fn suggest<'c>(input: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let needle = input.to_ascii_lowercase().replace('-', "_");
    candidates
        .iter()
        .map(|c| {
            let distance = strsim::damerau_levenshtein(&needle, c);
            let similarity = strsim::jaro_winkler(&needle, c);
            (c, distance, similarity)
        })
        .filter(|(c, distance, similarity)| *distance <= 2.max(c.len() / 3) || *similarity >= 0.85)
        .min_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)))
        .map(|(c, _, _)| *c)
}

/// "unknown key `refrsh` in `catalog`; did you mean `refresh`?"
pub(crate) fn unknown_key_message(key: &str, parent: &str, expected: &[&str]) -> String {
    let head = if parent.is_empty() {
        format!("unknown top-level key `{key}`")
    } else {
        format!("unknown key `{key}` in `{parent}`")
    };
    match suggest(key, expected) {
        Some(best) => format!("{head}; did you mean `{best}`?"),
        None => format!("{head}; valid keys: {}", expected.join(", ")),
    }
}

fn unknown_value_message(value: &str, expected: &[&str]) -> String {
    let list = expected
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match suggest(value, expected) {
        Some(best) => {
            format!("unknown value `{value}` (expected one of {list}); did you mean `{best}`?")
        }
        None => format!("unknown value `{value}`; expected one of {list}"),
    }
}

/// Describes a node for "expected X, found Y" messages.
fn describe(node: &Node) -> String {
    match &node.kind {
        Kind::Null | Kind::Removed => "an empty value".into(),
        Kind::Bool(b) => format!("`{b}`"),
        Kind::Int(i) => format!("`{i}`"),
        Kind::UInt(u) => format!("`{u}`"),
        Kind::Float(f) => format!("`{f}`"),
        Kind::Str(s) => format!("the text `{s}`"),
        Kind::Seq(_) => "a list".into(),
        Kind::Map(_) => "a mapping".into(),
    }
}

/// Deserializes one node.
pub(crate) struct NodeDe<'a> {
    node: &'a Node,
    path: Vec<Seg>,
    collector: &'a Collector,
}

impl<'a> NodeDe<'a> {
    pub(crate) fn root(node: &'a Node, collector: &'a Collector) -> Self {
        NodeDe {
            node,
            path: Vec::new(),
            collector,
        }
    }

    fn mismatch(&self, expected: &str) -> DeError {
        DeError::msg(format!(
            "expected {expected}, found {}",
            describe(self.node)
        ))
    }

    fn finish<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|e| e.or_at(&self.path, &self.node.origin))
    }

    /// The value as an integer, accepting integer strings (from `${VAR}` expansion).
    fn integer(&self) -> Result<i128, DeError> {
        match &self.node.kind {
            Kind::Int(i) => Ok(i128::from(*i)),
            Kind::UInt(u) => Ok(i128::from(*u)),
            Kind::Str(s) => s
                .trim()
                .parse::<i128>()
                .map_err(|_| self.mismatch("a whole number")),
            _ => Err(self.mismatch("a whole number")),
        }
    }

    fn unsigned<'de, V: Visitor<'de>>(self, max: u64, visitor: V) -> Result<V::Value, DeError> {
        let result = self.integer().and_then(|n| {
            u64::try_from(n)
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| {
                    DeError::msg(if n < 0 {
                        format!("expected a whole number (0 or more), found `{n}`")
                    } else {
                        format!("expected a whole number between 0 and {max}, found `{n}`")
                    })
                })
                .and_then(|n| visitor.visit_u64(n))
        });
        self.finish(result)
    }

    fn signed<'de, V: Visitor<'de>>(
        self,
        min: i64,
        max: i64,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = self.integer().and_then(|n| {
            i64::try_from(n)
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    DeError::msg(format!(
                        "expected a whole number between {min} and {max}, found `{n}`"
                    ))
                })
                .and_then(|n| visitor.visit_i64(n))
        });
        self.finish(result)
    }

    fn child(&self, seg: Seg, node: &'a Node) -> NodeDe<'a> {
        let mut path = self.path.clone();
        path.push(seg);
        NodeDe {
            node,
            path,
            collector: self.collector,
        }
    }

    fn visit_entries<'de, V: Visitor<'de>>(
        &self,
        entries: Vec<&'a Entry>,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_map(MapAcc {
            parent: self,
            entries: entries.into_iter(),
            pending: None,
        })
    }

    fn visit_items<'de, V: Visitor<'de>>(
        &self,
        items: &'a [Node],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_seq(SeqAcc {
            parent: self,
            items: items.iter().enumerate(),
        })
    }
}

fn live(entries: &[Entry]) -> Vec<&Entry> {
    entries
        .iter()
        .filter(|e| e.value.kind != Kind::Removed)
        .collect()
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            Kind::Null | Kind::Removed => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::UInt(u) => visitor.visit_u64(*u),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Seq(items) => self.visit_items(items, visitor),
            Kind::Map(entries) => self.visit_entries(live(entries), visitor),
        };
        self.finish(result)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Str(s) if s.trim() == "true" => visitor.visit_bool(true),
            Kind::Str(s) if s.trim() == "false" => visitor.visit_bool(false),
            _ => Err(self.mismatch("`true` or `false`")),
        };
        self.finish(result)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.unsigned(u64::from(u8::MAX), visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.unsigned(u64::from(u16::MAX), visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.unsigned(u64::from(u32::MAX), visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.unsigned(u64::MAX, visitor)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.signed(i64::from(i8::MIN), i64::from(i8::MAX), visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.signed(i64::from(i16::MIN), i64::from(i16::MAX), visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.signed(i64::from(i32::MIN), i64::from(i32::MAX), visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.signed(i64::MIN, i64::MAX, visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::UInt(u) => visitor.visit_u64(*u),
            Kind::Str(s) => match s.trim().parse::<f64>() {
                Ok(f) => visitor.visit_f64(f),
                Err(_) => Err(self.mismatch("a number")),
            },
            _ => Err(self.mismatch("a number")),
        };
        self.finish(result)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // A plain `8080` or `true` where text is expected is taken as written.
        let result = match &self.node.kind {
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Bool(b) => visitor.visit_string(b.to_string()),
            Kind::Int(i) => visitor.visit_string(i.to_string()),
            Kind::UInt(u) => visitor.visit_string(u.to_string()),
            Kind::Float(f) => visitor.visit_string(f.to_string()),
            _ => Err(self.mismatch("text")),
        };
        self.finish(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // An empty value means "not set". A literal `""` is kept: for some keys an empty
        // string means something (`builtins.scopes.*: ""` = any caller). Expansion turns a
        // reference that comes out empty (`${VAR:-}`) into an empty value.
        let result = match &self.node.kind {
            Kind::Null | Kind::Removed => visitor.visit_none(),
            _ => {
                let again = NodeDe {
                    node: self.node,
                    path: self.path.clone(),
                    collector: self.collector,
                };
                visitor.visit_some(again)
            }
        };
        self.finish(result)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            Kind::Null => visitor.visit_unit(),
            _ => Err(self.mismatch("an empty value")),
        };
        self.finish(result)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            Kind::Seq(items) => self.visit_items(items, visitor),
            Kind::Null => self.visit_items(&[], visitor),
            Kind::Str(s) => Err(DeError::msg(format!(
                "expected a list, found the text `{s}`; write a list, e.g. `[\"{s}\"]`"
            ))),
            _ => Err(self.mismatch("a list")),
        };
        self.finish(result)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            Kind::Map(entries) => self.visit_entries(live(entries), visitor),
            Kind::Null => self.visit_entries(Vec::new(), visitor),
            _ => Err(self.mismatch("a mapping (`key: value` lines)")),
        };
        self.finish(result)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.collector
            .structs
            .borrow_mut()
            .push((path_string(&self.path), fields));
        let result = match &self.node.kind {
            Kind::Map(entries) => {
                let mut known = Vec::new();
                for entry in live(entries) {
                    if fields.contains(&entry.key.as_str()) {
                        known.push(entry);
                    } else {
                        let mut path = self.path.clone();
                        path.push(Seg::Key(entry.key.clone()));
                        self.collector.issues.borrow_mut().push(DeIssue {
                            path,
                            origin: Some(entry.key_origin.clone()),
                            message: unknown_key_message(
                                &entry.key,
                                &path_string(&self.path),
                                fields,
                            ),
                        });
                    }
                }
                self.visit_entries(known, visitor)
            }
            Kind::Null => self.visit_entries(Vec::new(), visitor),
            _ => Err(self.mismatch("a mapping (`key: value` lines)")),
        };
        self.finish(result)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            Kind::Str(s) if variants.contains(&s.as_str()) => {
                visitor.visit_enum(s.as_str().into_deserializer())
            }
            Kind::Str(s) => Err(DeError::msg(unknown_value_message(s, variants))),
            Kind::Bool(b) => Err(DeError::msg(unknown_value_message(
                &b.to_string(),
                variants,
            ))),
            _ => Err(self.mismatch(&format!("one of {}", variants.join(", ")))),
        };
        self.finish(result)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct MapAcc<'p, 'a> {
    parent: &'p NodeDe<'a>,
    entries: std::vec::IntoIter<&'a Entry>,
    pending: Option<&'a Entry>,
}

impl<'de> de::MapAccess<'de> for MapAcc<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some(entry);
        let key: de::value::StrDeserializer<'_, DeError> = entry.key.as_str().into_deserializer();
        let mut path = self.parent.path.clone();
        path.push(Seg::Key(entry.key.clone()));
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.or_at(&path, &entry.key_origin))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let Some(entry) = self.pending.take() else {
            return Err(DeError::msg("internal: value requested before its key"));
        };
        seed.deserialize(self.parent.child(Seg::Key(entry.key.clone()), &entry.value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct SeqAcc<'p, 'a> {
    parent: &'p NodeDe<'a>,
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        for (index, item) in self.items.by_ref() {
            if item.kind == Kind::Removed {
                continue;
            }
            return seed
                .deserialize(self.parent.child(Seg::Index(index), item))
                .map(Some);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tree::parse_yaml;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        refresh: Option<String>,
        page_size: u16,
        on: bool,
        mode: Mode,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        #[default]
        Oauth,
        None,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Outer {
        catalog: Inner,
        list: Vec<String>,
        map: BTreeMap<String, Vec<String>>,
        name: String,
    }

    fn de(yaml: &str) -> (Result<Outer, DeError>, Vec<DeIssue>) {
        let tree = parse_yaml(yaml, "t").unwrap();
        let collector = Collector::default();
        let result = Outer::deserialize(NodeDe::root(&tree, &collector));
        (result, collector.issues.into_inner())
    }

    #[test]
    fn unknown_keys_are_all_collected_with_suggestions() {
        let (result, issues) = de("catalog:\n  refrsh: 10s\n  page-size: 3\ncatalgo: {}\nzzz: 1\n");
        assert!(result.is_ok());
        let mut messages: Vec<_> = issues.iter().map(|i| i.message.as_str()).collect();
        messages.sort_unstable();
        assert_eq!(
            messages,
            vec![
                "unknown key `page-size` in `catalog`; did you mean `page_size`?",
                "unknown key `refrsh` in `catalog`; did you mean `refresh`?",
                "unknown top-level key `catalgo`; did you mean `catalog`?",
                "unknown top-level key `zzz`; valid keys: catalog, list, map, name",
            ]
        );
        let refrsh = issues
            .iter()
            .find(|i| i.message.contains("refrsh"))
            .unwrap();
        assert_eq!(refrsh.origin, Some(Origin::File { line: 2, column: 3 }));
        assert_eq!(path_string(&refrsh.path), "catalog.refrsh");
    }

    #[test]
    fn strings_coerce_to_numbers_and_booleans() {
        let (result, _) =
            de("catalog:\n  page_size: '42'\n  on: 'true'\nname: 8080\nlist: [1, true]\n");
        let outer = result.unwrap();
        assert_eq!(outer.catalog.page_size, 42);
        assert!(outer.catalog.on);
        assert_eq!(outer.name, "8080");
        assert_eq!(outer.list, vec!["1", "true"]);
    }

    #[test]
    fn errors_carry_path_and_position() {
        let (result, _) = de("catalog:\n  page_size: 70000\n");
        let err = result.unwrap_err();
        assert_eq!(
            err.message,
            "expected a whole number between 0 and 65535, found `70000`"
        );
        assert_eq!(path_string(err.path.as_ref().unwrap()), "catalog.page_size");
        assert_eq!(
            err.origin,
            Some(Origin::File {
                line: 2,
                column: 14
            })
        );

        let (result, _) = de("catalog:\n  page_size: -3\n");
        assert_eq!(
            result.unwrap_err().message,
            "expected a whole number (0 or more), found `-3`"
        );

        let (result, _) = de("catalog:\n  on: maybe\n");
        assert_eq!(
            result.unwrap_err().message,
            "expected `true` or `false`, found the text `maybe`"
        );

        let (result, _) = de("list: one\n");
        assert!(result.unwrap_err().message.contains("expected a list"));

        let (result, _) = de("map:\n  a: [x]\n  b: 3\n");
        let err = result.unwrap_err();
        assert_eq!(path_string(err.path.as_ref().unwrap()), "map.b");
    }

    #[test]
    fn enums_suggest_the_closest_value() {
        let (result, _) = de("catalog:\n  mode: oath\n");
        let err = result.unwrap_err();
        assert_eq!(
            err.message,
            "unknown value `oath` (expected one of `oauth`, `none`); did you mean `oauth`?"
        );
        let (result, _) = de("catalog:\n  mode: none\n");
        assert_eq!(result.unwrap().catalog.mode, Mode::None);
    }

    #[test]
    fn empty_values_mean_defaults() {
        let (result, issues) = de("catalog:\nlist:\nmap:\n");
        assert_eq!(result.unwrap(), Outer::default());
        assert!(issues.is_empty());
        let (result, _) = de("catalog:\n  refresh: ''\n");
        assert_eq!(result.unwrap().catalog.refresh.as_deref(), Some(""));
    }

    #[test]
    fn suggestions_need_a_plausible_typo() {
        assert_eq!(
            suggest("refrsh", &["refresh", "page_size"]),
            Some("refresh")
        );
        assert_eq!(suggest("timeout_ms", &["timeout", "url"]), Some("timeout"));
        assert_eq!(suggest("banana", &["refresh", "page_size"]), None);
    }
}
