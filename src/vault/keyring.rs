//! The vault's key ring: every configured key opens, the newest seals. A grant is sealed as
//! one record (tokens, expiry, scope, endpoints, client id) with the (subject, provider, key
//! id) triple as associated data (`cortex_filters::vault::grant_aad`), so a row copied to
//! another user or provider, or relabelled with another key id, fails to open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cortex_filters::seal::Sealer;
use cortex_filters::vault::{client_aad, grant_aad};
use serde::{Deserialize, Serialize};

use crate::config::vault::{decode_key, VaultConfig, PRIMARY_KEY_ID};

/// The secret part of a grant, as sealed. Never logged: its `Debug` hides the tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The access token for the provider.
    pub access_token: String,
    /// The refresh token, when the provider issued one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires, Unix ms (unknown: `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// The scope granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Where it is refreshed.
    pub token_endpoint: String,
    /// The issuer that granted it.
    pub issuer: String,
    /// The RFC 8707 resource it was granted for.
    pub resource: String,
    /// The client id it was granted to.
    pub client_id: String,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("scope", &self.scope)
            .field("issuer", &self.issuer)
            .field("resource", &self.resource)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why a sealed value cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Sealed under a key id the ring does not hold.
    #[error("sealed under key `{0}`, which is not in the vault's key ring")]
    UnknownKey(String),
    /// Altered, moved to another row, or relabelled.
    #[error(
        "a vault record failed authentication (altered, or moved from another user or provider)"
    )]
    Tampered,
}

/// Every key of the ring, oldest first; the last seals.
pub struct KeyRing {
    keys: Vec<(String, Sealer)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing").field("ids", &ids).finish()
    }
}

impl KeyRing {
    /// The ring of `config` (`vault.key` first as `primary`, then `vault.keys`); `None`
    /// when no key is configured.
    pub fn from_config(config: &VaultConfig) -> Result<Option<KeyRing>, String> {
        let mut keys = Vec::new();
        if let Some(k) = &config.key {
            let bytes = decode_key(k).map_err(|e| format!("vault.key {e}"))?;
            keys.push((PRIMARY_KEY_ID.to_string(), Sealer::new(&bytes)));
        }
        for k in &config.keys {
            let bytes = decode_key(&k.key).map_err(|e| format!("vault key `{}` {e}", k.id))?;
            keys.push((k.id.clone(), Sealer::new(&bytes)));
        }
        Ok((!keys.is_empty()).then_some(KeyRing { keys }))
    }

    /// A ring of explicit keys (tests, tools), oldest first; `None` when empty.
    pub fn new(keys: Vec<(String, [u8; 32])>) -> Option<KeyRing> {
        let keys: Vec<_> = keys
            .into_iter()
            .map(|(id, k)| (id, Sealer::new(&k)))
            .collect();
        (!keys.is_empty()).then_some(KeyRing { keys })
    }

    /// The id of the key that seals.
    pub fn newest_id(&self) -> &str {
        self.keys.last().map_or("", |(id, _)| id.as_str())
    }

    fn newest(&self) -> &Sealer {
        // `new`/`from_config` never build an empty ring.
        &self.keys[self.keys.len() - 1].1
    }

    fn by_id(&self, id: &str) -> Result<&Sealer, OpenError> {
        self.keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, s)| s)
            .ok_or_else(|| OpenError::UnknownKey(id.to_string()))
    }

    /// Every key, newest first (opening a short-lived state sealed before a key was added).
    pub fn sealers_newest_first(&self) -> impl Iterator<Item = &Sealer> {
        self.keys.iter().rev().map(|(_, s)| s)
    }

    /// The sealer of linking states (the newest key; states are opened with every key).
    pub fn state_sealer(&self) -> &Sealer {
        self.newest()
    }

    /// Seals the grant of `subject` at `provider` under the newest key: (key id, sealed).
    pub fn seal_grant(&self, subject: &str, provider: &str, grant: &Grant) -> (String, String) {
        let id = self.newest_id().to_string();
        let plain = serde_json::to_vec(grant).unwrap_or_default();
        let sealed = self
            .newest()
            .seal(&grant_aad(subject, provider, &id), &plain)
            .map(|b| URL_SAFE_NO_PAD.encode(b))
            .unwrap_or_default();
        (id, sealed)
    }

    /// Opens the grant of `subject` at `provider` sealed under `key_id`.
    pub fn open_grant(
        &self,
        subject: &str,
        provider: &str,
        key_id: &str,
        sealed: &str,
    ) -> Result<Grant, OpenError> {
        let sealer = self.by_id(key_id)?;
        let raw = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| OpenError::Tampered)?;
        let plain = sealer
            .open(&grant_aad(subject, provider, key_id), &raw)
            .map_err(|_| OpenError::Tampered)?;
        serde_json::from_slice(&plain).map_err(|_| OpenError::Tampered)
    }

    /// Seals a client secret registered for `provider` at `issuer`: (key id, sealed).
    pub fn seal_client_secret(
        &self,
        provider: &str,
        issuer: &str,
        secret: &str,
    ) -> (String, String) {
        let id = self.newest_id().to_string();
        let sealed = self
            .newest()
            .seal(&client_aad(provider, issuer, &id), secret.as_bytes())
            .map(|b| URL_SAFE_NO_PAD.encode(b))
            .unwrap_or_default();
        (id, sealed)
    }

    /// Opens a client secret.
    pub fn open_client_secret(
        &self,
        provider: &str,
        issuer: &str,
        key_id: &str,
        sealed: &str,
    ) -> Result<String, OpenError> {
        let sealer = self.by_id(key_id)?;
        let raw = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| OpenError::Tampered)?;
        let plain = sealer
            .open(&client_aad(provider, issuer, key_id), &raw)
            .map_err(|_| OpenError::Tampered)?;
        String::from_utf8(plain).map_err(|_| OpenError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            access_token: "at-secret".into(),
            refresh_token: Some("rt-secret".into()),
            expires_at_ms: Some(5),
            scope: Some("read".into()),
            token_endpoint: "https://as/token".into(),
            issuer: "https://as".into(),
            resource: "https://mcp/".into(),
            client_id: "c".into(),
        }
    }

    #[test]
    fn the_newest_key_seals_and_every_key_opens() {
        let old = KeyRing::new(vec![("a".into(), [1; 32])]).unwrap();
        let (id, sealed) = old.seal_grant("alice", "p", &grant());
        assert_eq!(id, "a");
        assert!(!sealed.contains("at-secret"));
        let ring = KeyRing::new(vec![("a".into(), [1; 32]), ("b".into(), [2; 32])]).unwrap();
        assert_eq!(ring.newest_id(), "b");
        assert_eq!(
            ring.open_grant("alice", "p", "a", &sealed).unwrap(),
            grant()
        );
        // Moved to another user or provider, or relabelled: refused.
        assert_eq!(
            ring.open_grant("bob", "p", "a", &sealed),
            Err(OpenError::Tampered)
        );
        assert_eq!(
            ring.open_grant("alice", "q", "a", &sealed),
            Err(OpenError::Tampered)
        );
        assert_eq!(
            ring.open_grant("alice", "p", "b", &sealed),
            Err(OpenError::Tampered)
        );
        assert_eq!(
            ring.open_grant("alice", "p", "zz", &sealed),
            Err(OpenError::UnknownKey("zz".into()))
        );
        let (id, s) = ring.seal_client_secret("p", "https://as", "shh");
        assert_eq!(
            ring.open_client_secret("p", "https://as", &id, &s).unwrap(),
            "shh"
        );
        assert!(ring
            .open_client_secret("p", "https://other", &id, &s)
            .is_err());
        assert!(!format!("{:?}", grant()).contains("secret"));
    }
}
