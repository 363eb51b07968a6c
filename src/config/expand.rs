//! `${VAR}` references in YAML string values, so secrets stay out of the file.
//!
//! - `${VAR}`: the variable's value; an unset variable is an error (a set but empty one
//!   expands to nothing).
//! - `${VAR:-default}`: the default when the variable is unset or empty; the default may
//!   itself contain references.
//! - `$$`: a literal `$`. A `$` not followed by `{` or `$` is kept as is.
//!
//! Expansion happens on parsed values, never on the YAML text, so a value containing `:`,
//! `#` or a newline cannot change the structure of the file.

use super::env::EnvSource;
use super::tree::{Kind, Node, Seg};

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// `${VAR}` without a default, and VAR is not set.
    Missing(String),
    /// A malformed reference.
    Syntax(String),
}

impl ExpandError {
    pub(crate) fn message(&self) -> String {
        match self {
            ExpandError::Missing(var) => format!(
                "environment variable `{var}` is not set (referenced as `${{{var}}}`); set it, or give a default with `${{{var}:-value}}`"
            ),
            ExpandError::Syntax(why) => why.clone(),
        }
    }
}

/// Expands every string value of the tree in place. Returns the problems with the path of
/// the value they were found in (its origin is still on the node).
pub(crate) fn expand_tree(node: &mut Node, env: &dyn EnvSource) -> Vec<(Vec<Seg>, ExpandError)> {
    let mut problems = Vec::new();
    let mut path = Vec::new();
    walk(node, env, &mut path, &mut problems);
    problems
}

fn walk(
    node: &mut Node,
    env: &dyn EnvSource,
    path: &mut Vec<Seg>,
    problems: &mut Vec<(Vec<Seg>, ExpandError)>,
) {
    match &mut node.kind {
        Kind::Str(text) if text.contains('$') => match expand(text, env) {
            // A value that comes out empty (`${VAR:-}`) is an empty value: the key is unset.
            Ok(expanded) if expanded.is_empty() => node.kind = Kind::Null,
            Ok(expanded) => *text = expanded,
            Err(errors) => problems.extend(errors.into_iter().map(|e| (path.clone(), e))),
        },
        Kind::Seq(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(index));
                walk(item, env, path, problems);
                path.pop();
            }
        }
        Kind::Map(entries) => {
            for entry in entries.iter_mut() {
                path.push(Seg::Key(entry.key.clone()));
                walk(&mut entry.value, env, path, problems);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Expands one string. All missing variables are reported, not just the first.
pub(crate) fn expand(text: &str, env: &dyn EnvSource) -> Result<String, Vec<ExpandError>> {
    let chars: Vec<char> = text.chars().collect();
    let mut errors = Vec::new();
    let mut parser = Parser {
        chars: &chars,
        pos: 0,
        env,
        errors: &mut errors,
    };
    let out = parser.text(false);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
    env: &'a dyn EnvSource,
    errors: &'a mut Vec<ExpandError>,
}

impl Parser<'_> {
    fn peek(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    /// Expands until the end, or (inside a default) until the closing `}`.
    fn text(&mut self, in_default: bool) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek(0) {
            match c {
                '}' if in_default => return out,
                '$' if self.peek(1) == Some('$') => {
                    out.push('$');
                    self.pos += 2;
                }
                '$' if self.peek(1) == Some('{') => {
                    self.pos += 2;
                    if let Some(value) = self.reference() {
                        out.push_str(&value);
                    }
                }
                _ => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        out
    }

    /// After `${`: `NAME}` or `NAME:-default}`.
    fn reference(&mut self) -> Option<String> {
        let start = self.pos;
        while matches!(self.peek(0), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        match (self.peek(0), self.peek(1)) {
            (Some('}'), _) if valid_name => {
                self.pos += 1;
                match self.env.get(&name) {
                    Some(value) => Some(value),
                    None => {
                        self.errors.push(ExpandError::Missing(name));
                        None
                    }
                }
            }
            (Some(':'), Some('-')) if valid_name => {
                self.pos += 2;
                let default = self.text(true);
                if self.peek(0) != Some('}') {
                    self.errors.push(ExpandError::Syntax(format!(
                        "unterminated `${{{name}:-…`: missing `}}`"
                    )));
                    return None;
                }
                self.pos += 1;
                match self.env.get(&name) {
                    Some(value) if !value.is_empty() => Some(value),
                    _ => Some(default),
                }
            }
            (None, _) => {
                self.errors.push(ExpandError::Syntax(format!(
                    "unterminated `${{{name}`: missing `}}`"
                )));
                None
            }
            _ => {
                // Skip to the closing brace so one bad reference is one message.
                let bad_start = start;
                while matches!(self.peek(0), Some(c) if c != '}') {
                    self.pos += 1;
                }
                let inner: String = self.chars[bad_start..self.pos].iter().collect();
                if self.peek(0) == Some('}') {
                    self.pos += 1;
                }
                self.errors.push(ExpandError::Syntax(format!(
                    "invalid reference `${{{inner}}}`: only `${{VAR}}` and `${{VAR:-default}}` are supported (VAR is letters, digits and `_`); write `$$` for a literal `$`"
                )));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::MapEnv;

    fn env() -> MapEnv {
        MapEnv::from_pairs([("TOKEN", "s3cr3t"), ("EMPTY", ""), ("PORT", "4000")])
    }

    #[test]
    fn expands_references_and_defaults() {
        let env = env();
        assert_eq!(expand("${TOKEN}", &env).unwrap(), "s3cr3t");
        assert_eq!(expand("Bearer ${TOKEN}!", &env).unwrap(), "Bearer s3cr3t!");
        assert_eq!(expand("${NOPE:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(expand("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand("${NOPE:-}", &env).unwrap(), "");
        assert_eq!(expand("${NOPE:-${PORT}}", &env).unwrap(), "4000");
        assert_eq!(
            expand("127.0.0.1:${NOPE:-3213}", &env).unwrap(),
            "127.0.0.1:3213"
        );
        assert_eq!(expand("${TOKEN:-x}", &env).unwrap(), "s3cr3t");
    }

    #[test]
    fn dollars_escape_and_stay_literal() {
        let env = env();
        assert_eq!(expand("pa$$word", &env).unwrap(), "pa$word");
        assert_eq!(expand("$${TOKEN}", &env).unwrap(), "${TOKEN}");
        assert_eq!(expand("cost: 5$ $x", &env).unwrap(), "cost: 5$ $x");
    }

    #[test]
    fn missing_variables_are_all_named() {
        let errors = expand("${A}-${TOKEN}-${B}", &env()).unwrap_err();
        assert_eq!(
            errors,
            vec![
                ExpandError::Missing("A".into()),
                ExpandError::Missing("B".into())
            ]
        );
        let message = errors[0].message();
        assert!(message.contains("`A` is not set"), "{message}");
        assert!(message.contains("${A:-value}"), "{message}");
    }

    #[test]
    fn malformed_references_are_errors() {
        let env = env();
        for text in ["${TOKEN", "${}", "${1X}", "${A:=b}", "${NOPE:-open"] {
            let errors = expand(text, &env).unwrap_err();
            assert!(
                matches!(errors[0], ExpandError::Syntax(_)),
                "{text}: {errors:?}"
            );
        }
    }

    #[test]
    fn tree_expansion_reports_the_key_path() {
        let mut tree =
            crate::config::tree::parse_yaml("a:\n  b: ${TOKEN}\n  c: [x, '${MISSING}']\n", "t")
                .unwrap();
        let problems = expand_tree(&mut tree, &env());
        assert_eq!(problems.len(), 1);
        assert_eq!(crate::config::tree::path_string(&problems[0].0), "a.c[1]");
        assert_eq!(
            tree.get("a").unwrap().get("b").unwrap().as_str(),
            Some("s3cr3t")
        );
        let mut tree = crate::config::tree::parse_yaml("a: ${NOPE:-}\nb: ''\n", "t").unwrap();
        assert!(expand_tree(&mut tree, &env()).is_empty());
        assert_eq!(tree.get("a").unwrap().kind, Kind::Null);
        assert_eq!(tree.get("b").unwrap().kind, Kind::Str(String::new()));
    }
}
