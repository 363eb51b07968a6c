//! Helpers shared by the endpoints: form decoding, OAuth error replies, randomness, HTML
//! escaping.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};

use crate::http::Answer;

/// A failure of the server itself (not of the request): answered 500 `server_error`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Internal {
    /// The system random generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Signing a token failed.
    #[error("signing the token failed")]
    Sign,
}

impl Internal {
    /// The 500 answer.
    pub(crate) fn answer(&self) -> Answer {
        tracing::error!("dev authorization server: {self}");
        oauth_error(500, "server_error", &self.to_string())
    }
}

/// Decodes an `application/x-www-form-urlencoded` string. A repeated parameter is an error
/// (RFC 6749 §3.1: request parameters must not be included more than once).
pub(crate) fn parse_form(input: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(input.as_bytes()) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("the parameter `{k}` is repeated"));
        }
    }
    Ok(out)
}

/// Unpadded base64url.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// `n` random bytes from the system generator.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Internal> {
    let mut buf = [0u8; N];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| Internal::Random)?;
    Ok(buf)
}

/// A random, URL-safe token with 256 bits of entropy.
pub(crate) fn random_token() -> Result<String, Internal> {
    Ok(b64url(&random_bytes::<32>()?))
}

/// Seconds since the Unix epoch (the gateway's one clock).
pub(crate) use crate::clock::unix_now as now_unix;

/// A JSON answer.
pub(crate) fn json_answer(status: u16, body: &Value) -> Answer {
    Answer::json(status, serde_json::to_vec(body).unwrap_or_default())
}

/// An OAuth error reply `{"error","error_description"}` (RFC 6749 §5.2, RFC 7591 §3.2.2).
pub(crate) fn oauth_error(status: u16, error: &str, description: &str) -> Answer {
    json_answer(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Whether `s` is a PKCE code verifier or S256 challenge: 43–128 unreserved characters
/// (RFC 7636 §4.1).
pub(crate) fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Splits a space-separated scope string, dropping empties and repeats.
pub(crate) fn split_scopes(scope: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_reject_repeated_parameters() {
        let f = parse_form("a=1&b=x%20y+z").unwrap();
        assert_eq!(f["b"], "x y z");
        assert!(parse_form("a=1&a=2").unwrap_err().contains("`a`"));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn pkce_strings() {
        assert!(is_pkce_string(&"a".repeat(43)));
        assert!(!is_pkce_string(&"a".repeat(42)));
        assert!(!is_pkce_string(&"a".repeat(129)));
        assert!(!is_pkce_string(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn scopes_are_split_and_deduplicated() {
        assert_eq!(split_scopes(" a  b a "), vec!["a", "b"]);
    }
}
