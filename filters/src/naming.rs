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

/// Whether `name` is a valid MCP tool name (1–128 chars of `[A-Za-z0-9_.-]`).
pub fn is_valid_name(name: &str) -> bool {
    todo!("{name}")
}

/// The exposed name for entry `name` of backend `backend_id` under `mode`, following the
/// module rules. Returns `None` for an empty name.
pub fn exposed_name(backend_id: &str, name: &str, mode: NamingMode) -> Option<String> {
    todo!("{backend_id} {name} {mode:?}")
}

/// Whether `id` is a valid backend id: 1–64 chars of `[a-z0-9_-]`, starting with a letter or
/// digit (ids are lowercased before this check, as Cortex does).
pub fn is_valid_backend_id(id: &str) -> bool {
    todo!("{id}")
}
