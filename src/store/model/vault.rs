//! The per-user token vault's tables: sealed grants per (subject, provider), the OAuth client
//! registrations the gateway made at providers, and the single-use marks of linking states.
//! Plain data, no I/O. Everything secret arrives here already sealed (`sealed` is
//! base64url(nonce | ciphertext | tag) under the key named by `key_id`); the store never sees a
//! token in clear.

/// One stored grant: the sealed secrets of one user at one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGrant {
    /// The gateway user's subject.
    pub subject: String,
    /// The provider id (configuration).
    pub provider: String,
    /// The vault key the record is sealed under.
    pub key_id: String,
    /// The sealed record (tokens, expiry, scope, endpoints, client id).
    pub sealed: String,
    /// Bumped by every write: a conditional write (refresh, rotation) states the version it
    /// read, so two writers never silently overwrite each other.
    pub version: i64,
    /// When the grant was first stored (link time), Unix ms.
    pub created_at_ms: i64,
    /// Last write, Unix ms.
    pub updated_at_ms: i64,
}

/// A grant to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant {
    /// Subject.
    pub subject: String,
    /// Provider id.
    pub provider: String,
    /// Key id the record is sealed under.
    pub key_id: String,
    /// The sealed record.
    pub sealed: String,
    /// Write time, Unix ms.
    pub now_ms: i64,
}

/// One client registration at a provider's authorization server (dynamic client
/// registration), bound to the issuer it was made at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClient {
    /// Provider id.
    pub provider: String,
    /// The issuer that issued the client id (re-register when it changes).
    pub issuer: String,
    /// The client id (public).
    pub client_id: String,
    /// Key id of `sealed_secret`.
    pub key_id: String,
    /// The sealed client secret, if the server issued one.
    pub sealed_secret: Option<String>,
    /// Registration time, Unix ms.
    pub created_at_ms: i64,
}

/// How many records are sealed under one key (`vault status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCount {
    /// The key id.
    pub key_id: String,
    /// Grants sealed under it.
    pub grants: i64,
    /// Client secrets sealed under it.
    pub clients: i64,
}
