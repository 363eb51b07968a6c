//! Where environment values come from: the process, a map (tests), or a Cortex-style env file
//! layered under the process environment.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::ConfigError;

/// A source of environment variables. Tests pass a [`MapEnv`]; the binary passes
/// [`ProcessEnv`], optionally layered over an env file with [`LayeredEnv`].
pub trait EnvSource {
    /// The value of `key`, if set (and valid UTF-8).
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment (`std::env::var`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

/// A fixed set of variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapEnv(pub BTreeMap<String, String>);

impl MapEnv {
    /// Builds a map from `(key, value)` pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        MapEnv(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl EnvSource for MapEnv {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

/// Two sources, the first winning: `LayeredEnv::new(ProcessEnv, file_env)` gives the process
/// environment precedence over an env file, as Docker and dotenv do.
#[derive(Debug, Clone, Default)]
pub struct LayeredEnv<P, F> {
    /// Consulted first.
    pub primary: P,
    /// Consulted when `primary` does not have the variable.
    pub fallback: F,
}

impl<P: EnvSource, F: EnvSource> LayeredEnv<P, F> {
    /// `primary` over `fallback`.
    pub fn new(primary: P, fallback: F) -> Self {
        LayeredEnv { primary, fallback }
    }
}

impl<P: EnvSource, F: EnvSource> EnvSource for LayeredEnv<P, F> {
    fn get(&self, key: &str) -> Option<String> {
        self.primary.get(key).or_else(|| self.fallback.get(key))
    }
}

impl<T: EnvSource + ?Sized> EnvSource for &T {
    fn get(&self, key: &str) -> Option<String> {
        (**self).get(key)
    }
}

/// Reads a Cortex-style env file: `KEY=VALUE` lines, `#` comments, an optional `export `
/// prefix, values in single, double or back quotes (double quotes understand `\n`, `\t`,
/// `\"`, `\\` and may span lines), and ` # comment` after unquoted values. A later line wins
/// over an earlier one for the same key. No `$VAR` expansion is done, as with dotenv.
pub fn read_env_file(path: &Path) -> Result<MapEnv, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_env_str(&text).map_err(|(line, message)| ConfigError::EnvFile {
        path: path.to_path_buf(),
        line,
        message,
    })
}

/// Parses env-file text; errors carry the 1-based line number.
pub fn parse_env_str(text: &str) -> Result<MapEnv, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut vars = BTreeMap::new();
    let mut index = 0;
    while index < lines.len() {
        let line_no = index + 1;
        let line = lines[index].trim();
        index += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, raw)) = line.split_once('=') else {
            return Err((
                line_no,
                format!("expected KEY=VALUE, found `{}`", truncate(line)),
            ));
        };
        let key = key.trim();
        if !is_env_name(key) {
            return Err((
                line_no,
                format!("`{}` is not a valid variable name", truncate(key)),
            ));
        }
        let raw = raw.trim_start();
        let value = match raw.chars().next() {
            Some(quote @ ('"' | '\'' | '`')) => {
                let (value, used) = quoted_value(&raw[1..], quote, &lines[index..])
                    .ok_or_else(|| (line_no, format!("unterminated {quote}-quoted value")))?;
                index += used;
                value
            }
            _ => unquoted_value(raw),
        };
        vars.insert(key.to_string(), value);
    }
    Ok(MapEnv(vars))
}

/// The value of an unquoted assignment: up to a ` #` comment, trimmed.
fn unquoted_value(raw: &str) -> String {
    let mut end = raw.len();
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            end = i;
            break;
        }
    }
    raw[..end].trim().to_string()
}

/// Reads a quoted value starting just after the opening quote; it may continue on the
/// following lines. Returns the value and how many extra lines it consumed.
fn quoted_value(first: &str, quote: char, more: &[&str]) -> Option<(String, usize)> {
    let mut value = String::new();
    let mut current = first.to_string();
    let mut used = 0;
    loop {
        let mut chars = current.chars();
        while let Some(c) = chars.next() {
            if c == quote {
                // Whatever follows the closing quote (a comment, or stray text that dotenv
                // also ignores) is dropped.
                return Some((value, used));
            }
            if c == '\\' && quote == '"' {
                match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some('t') => value.push('\t'),
                    Some(other) => value.push(other),
                    None => value.push('\\'),
                }
            } else {
                value.push(c);
            }
        }
        let next = more.get(used)?;
        used += 1;
        value.push('\n');
        current = (*next).to_string();
    }
}

/// `[A-Za-z_][A-Za-z0-9_.-]*`: the names dotenv accepts.
fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn truncate(text: &str) -> String {
    if text.chars().count() > 40 {
        let head: String = text.chars().take(40).collect();
        format!("{head}…")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cortex_quick_start_file() {
        let text = "\
# Cortex quick start
OAUTH_ISSUER=https://auth.example.com
export CORTEX_BACKENDS=demo
CORTEX_BACKEND_DEMO_URL='http://127.0.0.1:4820'
CORTEX_TECHNICAL_TOKEN=\"demo-technical-token\"
CORTEX_DEV_BYPASS_TOKEN=dev-secret # local only

CORTEX_DEV_BYPASS_SCOPES=mcp:demo:read mcp:demo:write
EMPTY=
HASH=a#b
";
        let env = parse_env_str(text).unwrap();
        assert_eq!(
            env.get("OAUTH_ISSUER").as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(env.get("CORTEX_BACKENDS").as_deref(), Some("demo"));
        assert_eq!(
            env.get("CORTEX_BACKEND_DEMO_URL").as_deref(),
            Some("http://127.0.0.1:4820")
        );
        assert_eq!(
            env.get("CORTEX_TECHNICAL_TOKEN").as_deref(),
            Some("demo-technical-token")
        );
        assert_eq!(
            env.get("CORTEX_DEV_BYPASS_TOKEN").as_deref(),
            Some("dev-secret")
        );
        assert_eq!(
            env.get("CORTEX_DEV_BYPASS_SCOPES").as_deref(),
            Some("mcp:demo:read mcp:demo:write")
        );
        assert_eq!(env.get("EMPTY").as_deref(), Some(""));
        assert_eq!(env.get("HASH").as_deref(), Some("a#b"));
        assert_eq!(env.get("MISSING"), None);
    }

    #[test]
    fn double_quotes_escape_and_span_lines() {
        let env =
            parse_env_str("A=\"x\\ny \\\"q\\\"\"\nB=\"line1\nline2\" # c\nC='$NOT \\n'\n").unwrap();
        assert_eq!(env.get("A").as_deref(), Some("x\ny \"q\""));
        assert_eq!(env.get("B").as_deref(), Some("line1\nline2"));
        assert_eq!(env.get("C").as_deref(), Some("$NOT \\n"));
    }

    #[test]
    fn later_lines_win_and_bom_is_ignored() {
        let env = parse_env_str("\u{feff}A=1\nA=2\n").unwrap();
        assert_eq!(env.get("A").as_deref(), Some("2"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse_env_str("A=1\nnot a line\n").unwrap_err().0, 2);
        let (line, message) = parse_env_str("\n1BAD=x\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("not a valid variable name"), "{message}");
        let (line, message) = parse_env_str("A=\"open\nB=2\n").unwrap_err();
        assert_eq!(line, 1);
        assert!(message.contains("unterminated"), "{message}");
    }

    #[test]
    fn process_env_wins_over_the_file() {
        let process = MapEnv::from_pairs([("PORT", "4000")]);
        let file = MapEnv::from_pairs([("PORT", "5000"), ("HOSTNAME", "0.0.0.0")]);
        let env = LayeredEnv::new(process, file);
        assert_eq!(env.get("PORT").as_deref(), Some("4000"));
        assert_eq!(env.get("HOSTNAME").as_deref(), Some("0.0.0.0"));
        assert_eq!(env.get("NOPE"), None);
    }

    #[test]
    fn read_env_file_reports_missing_files() {
        let err = read_env_file(Path::new("/nonexistent/cortex.env")).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot read /nonexistent/cortex.env"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "PORT=4001\noops\n").unwrap();
        let err = read_env_file(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(":2: expected KEY=VALUE, found `oops`"),
            "{err}"
        );
        std::fs::write(&path, "PORT=4001\n").unwrap();
        assert_eq!(
            read_env_file(&path).unwrap().get("PORT").as_deref(),
            Some("4001")
        );
    }
}
