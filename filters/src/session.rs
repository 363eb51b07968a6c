//! Sealed `Mcp-Session-Id` tokens.
//!
//! A session id is AES-256-GCM over a compact binary payload (format version, session nonce,
//! subject binding, negotiated protocol version, client capability bits, issued-at, absolute
//! expiry), encoded base64url without padding (visible ASCII, as the spec requires). Any
//! replica holding the same key can open it without a shared store; only revocations (DELETE)
//! need shared state. Sealing costs one AES-GCM operation (no KDF per request): the key is
//! derived once at start.
//!
//! The subject binding is the first 16 bytes of SHA-256(sub), compared in constant time, so a
//! session id presented by another caller is treated exactly like an unknown one.

use crate::version::ProtocolVersion;

/// Client capabilities remembered in the session (bit flags).
pub mod caps {
    /// Client declared `roots`.
    pub const ROOTS: u8 = 1;
    /// Client declared `sampling`.
    pub const SAMPLING: u8 = 2;
    /// Client declared `elicitation`.
    pub const ELICITATION: u8 = 4;
}

/// What a session id carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    /// 16 random bytes making the id unique (also the key for revocation and replay buffers).
    pub nonce: [u8; 16],
    /// First 16 bytes of SHA-256 of the subject the session belongs to.
    pub subject: [u8; 16],
    /// The negotiated protocol version.
    pub version: ProtocolVersion,
    /// Client capability bits ([`caps`]).
    pub client_caps: u8,
    /// Issued at, seconds since the Unix epoch.
    pub issued_at: u64,
    /// Absolute expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

impl SessionClaims {
    /// The subject binding of `sub`.
    pub fn bind_subject(sub: &str) -> [u8; 16] {
        todo!("{sub}")
    }

    /// Whether this session belongs to `sub` (constant-time comparison).
    pub fn belongs_to(&self, sub: &str) -> bool {
        todo!("{sub}")
    }

    /// The nonce as 32 lowercase hex characters (log- and map-friendly session key).
    pub fn key(&self) -> String {
        todo!()
    }
}

/// Why a presented session id is not usable (all map to HTTP 404 for the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not base64url, wrong length or unknown format version.
    #[error("malformed session id")]
    Malformed,
    /// Authentication tag mismatch: forged, altered, or sealed under another key.
    #[error("session id failed authentication")]
    Tampered,
    /// Past its absolute expiry.
    #[error("session expired")]
    Expired,
}

/// Seals and opens session ids under one 32-byte key.
#[derive(Clone)]
pub struct SessionSealer {
    _priv: (),
}

impl std::fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSealer(..)")
    }
}

impl SessionSealer {
    /// A sealer for `key` (32 bytes; callers derive it from configuration).
    pub fn new(key: &[u8; 32]) -> Self {
        let _ = key;
        todo!()
    }

    /// Seals `claims` into a session id (random 96-bit AES-GCM nonce per id).
    pub fn seal(&self, claims: &SessionClaims) -> String {
        todo!("{claims:?}")
    }

    /// Opens a session id; `now` is seconds since the Unix epoch.
    pub fn open(&self, id: &str, now: u64) -> Result<SessionClaims, SessionError> {
        todo!("{id} {now}")
    }
}
