//! Exposed names of federated entries: prefixing, MCP charset validation, length rule.
//!
//! MCP tool names are 1–128 characters of `[A-Za-z0-9_.-]`. A backend tool `name` of backend
//! `id` is exposed as `<id>_<name>` (or `<name>` when the backend uses `naming: none`).
//! Rules, in order:
//! 1. every character outside the charset is replaced by `_` (the original name is kept for
//!    dispatch, so the backend still receives its own name);
//! 2. if the result is longer than 128 characters, it is cut to 119 characters and `_` plus the
//!    first 8 hex digits of SHA-256(full untruncated exposed name) is appended, giving exactly
//!    128 characters that stay unique and stable across refreshes;
//! 3. an empty name is invalid (the entry is skipped and reported).

use sha2::{Digest, Sha256};

/// The longest name MCP allows.
pub const MAX_NAME_LEN: usize = 128;

/// How a backend's entries are named in the merged catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NamingMode {
    /// `<backend id>_<name>` (Cortex-compatible default).
    #[default]
    Prefix,
    /// The backend's own names; allowed only when no name collides (checked at config/merge).
    None,
}

/// Length an over-long name is cut to before the `_` + 8 hex digits suffix.
const TRUNCATED_LEN: usize = MAX_NAME_LEN - 1 - HASH_HEX_LEN;

/// Hex digits of the SHA-256 suffix that keeps truncated names unique.
const HASH_HEX_LEN: usize = 8;

/// Whether `c` is in the MCP tool-name charset `[A-Za-z0-9_.-]`.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Whether `name` is a valid MCP tool name (1–128 chars of `[A-Za-z0-9_.-]`).
pub fn is_valid_name(name: &str) -> bool {
    // The charset is ASCII, so byte length equals character length once it is checked.
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.chars().all(is_name_char)
}

/// The exposed name for entry `name` of backend `backend_id` under `mode`, following the
/// module rules. Returns `None` for an empty name.
pub fn exposed_name(backend_id: &str, name: &str, mode: NamingMode) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let raw = match mode {
        NamingMode::Prefix => format!("{backend_id}_{name}"),
        NamingMode::None => name.to_owned(),
    };
    let sanitized: String = raw
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    if sanitized.len() <= MAX_NAME_LEN {
        return Some(sanitized);
    }
    let digest = Sha256::digest(sanitized.as_bytes());
    let mut out = String::with_capacity(MAX_NAME_LEN);
    // Sanitized names are pure ASCII, so slicing at a byte index is a char boundary.
    out.push_str(&sanitized[..TRUNCATED_LEN]);
    out.push('_');
    for byte in &digest[..HASH_HEX_LEN / 2] {
        out.push_str(&format!("{byte:02x}"));
    }
    Some(out)
}

/// Whether `id` is a valid backend id: 1–64 chars of `[a-z0-9_-]`, starting with a letter or
/// digit (ids are lowercased before this check, as Cortex does).
pub fn is_valid_backend_id(id: &str) -> bool {
    let mut chars = id.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    id.len() <= 64
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha8(s: &str) -> String {
        let d = Sha256::digest(s.as_bytes());
        d[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn prefix_and_none_modes() {
        assert_eq!(
            exposed_name("crm", "get_account", NamingMode::Prefix).as_deref(),
            Some("crm_get_account")
        );
        assert_eq!(
            exposed_name("crm", "get_account", NamingMode::None).as_deref(),
            Some("get_account")
        );
        assert_eq!(NamingMode::default(), NamingMode::Prefix);
    }

    #[test]
    fn empty_names_are_invalid() {
        assert_eq!(exposed_name("crm", "", NamingMode::Prefix), None);
        assert_eq!(exposed_name("crm", "", NamingMode::None), None);
    }

    #[test]
    fn invalid_characters_become_underscores() {
        assert_eq!(
            exposed_name("crm", "get account/v2", NamingMode::Prefix).as_deref(),
            Some("crm_get_account_v2")
        );
        // One multi-byte character gives one underscore, not one per byte.
        assert_eq!(
            exposed_name("crm", "café", NamingMode::None).as_deref(),
            Some("caf_")
        );
        assert_eq!(
            exposed_name("crm", "日本", NamingMode::Prefix).as_deref(),
            Some("crm___")
        );
        assert_eq!(
            exposed_name("a", "x.y-z_W9", NamingMode::Prefix).as_deref(),
            Some("a_x.y-z_W9")
        );
    }

    #[test]
    fn exactly_128_characters_are_kept() {
        let name = "n".repeat(128 - 4);
        let exposed = exposed_name("crm", &name, NamingMode::Prefix).unwrap();
        assert_eq!(exposed.len(), 128);
        assert_eq!(exposed, format!("crm_{name}"));
        assert!(is_valid_name(&exposed));
    }

    #[test]
    fn names_over_128_characters_are_cut_and_hashed() {
        let name = "n".repeat(128 - 3);
        let full = format!("crm_{name}");
        assert_eq!(full.len(), 129);
        let exposed = exposed_name("crm", &name, NamingMode::Prefix).unwrap();
        assert_eq!(exposed.len(), 128);
        assert!(is_valid_name(&exposed));
        assert_eq!(&exposed[..119], &full[..119]);
        assert_eq!(&exposed[119..120], "_");
        assert_eq!(&exposed[120..], sha8(&full));
        // Stable across calls.
        assert_eq!(
            exposed_name("crm", &name, NamingMode::Prefix).unwrap(),
            exposed
        );
    }

    #[test]
    fn long_names_sharing_a_prefix_stay_distinct() {
        let base = "x".repeat(200);
        let a = exposed_name("crm", &format!("{base}a"), NamingMode::Prefix).unwrap();
        let b = exposed_name("crm", &format!("{base}b"), NamingMode::Prefix).unwrap();
        assert_eq!(a.len(), 128);
        assert_eq!(b.len(), 128);
        assert_ne!(a, b);
        assert_eq!(a[..119], b[..119]);
    }

    #[test]
    fn long_unicode_names_are_sanitized_then_cut() {
        let name = "é".repeat(130);
        let exposed = exposed_name("crm", &name, NamingMode::None).unwrap();
        assert_eq!(exposed.len(), 128);
        assert!(is_valid_name(&exposed));
        assert_eq!(&exposed[120..], sha8(&"_".repeat(130)));
    }

    #[test]
    fn validates_names() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name("A-z_0.9"));
        assert!(is_valid_name(&"a".repeat(128)));
        assert!(!is_valid_name(&"a".repeat(129)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name("é"));
    }

    #[test]
    fn validates_backend_ids() {
        assert!(is_valid_backend_id("crm"));
        assert!(is_valid_backend_id("0crm-a_b"));
        assert!(is_valid_backend_id(&"a".repeat(64)));
        assert!(!is_valid_backend_id(&"a".repeat(65)));
        assert!(!is_valid_backend_id(""));
        assert!(!is_valid_backend_id("_crm"));
        assert!(!is_valid_backend_id("-crm"));
        assert!(!is_valid_backend_id("Crm"));
        assert!(!is_valid_backend_id("cr m"));
        assert!(!is_valid_backend_id("crm.x"));
        assert!(!is_valid_backend_id("crmé"));
    }
}
