//! The `vault:` section: the per-user token vault's key ring, the linking flow's limits, and
//! the third-party providers users link their accounts at (docs/vault.md). Validation of the
//! section lives here too, so the vault's rules are in one place.

use std::time::Duration;

use base64::Engine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::{p, pi, pik, Findings};
use super::Config;

/// Key id of `vault.key` (`CORTEX_VAULT_KEY`), the first key of the ring.
pub const PRIMARY_KEY_ID: &str = "primary";

/// The per-user token vault.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VaultConfig {
    /// The first vault key (`CORTEX_VAULT_KEY`): base64 of exactly 32 bytes, key id
    /// `primary`. Keys in `keys` come after it; the last key of the ring seals new records.
    pub key: Option<String>,
    /// More keys, oldest first. Every key of the ring opens records; the last one seals.
    /// To rotate: append a key, restart, run `cortex-gateway vault rotate`; drop the old key
    /// once `vault status` shows no record under it.
    pub keys: Vec<VaultKeyConfig>,
    /// Lifetime of a linking request (the `state` handed to the provider). Default 10m.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub link_ttl: Duration,
    /// Refresh an access token this long before it expires. Default 60s.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub refresh_before: Duration,
    /// Timeout of each call to a provider's authorization server. Default 10s.
    #[serde(with = "crate::config::units::duration")]
    #[schemars(schema_with = "crate::config::units::duration::schema")]
    pub timeout: Duration,
    /// The providers users link their own accounts at.
    pub providers: Vec<VaultProviderConfig>,
}

impl Default for VaultConfig {
    fn default() -> Self {
        VaultConfig {
            key: None,
            keys: Vec::new(),
            link_ttl: Duration::from_secs(600),
            refresh_before: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            providers: Vec::new(),
        }
    }
}

/// One key of the vault's ring.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VaultKeyConfig {
    /// Its id, stored with every record it seals (`[A-Za-z0-9_.-]`, at most 64).
    pub id: String,
    /// base64 (standard or URL-safe) of exactly 32 random bytes.
    pub key: String,
}

/// A third-party provider (an OAuth-protected upstream MCP server) users link accounts at.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VaultProviderConfig {
    /// Id: lowercase `[a-z0-9_-]`; in the link URLs (`/link/<id>/start`) and named by
    /// backends (`vault_provider`).
    pub id: String,
    /// A name shown to users; default the id.
    #[serde(default)]
    pub name: Option<String>,
    /// The canonical URI of the upstream MCP server: the RFC 8707 `resource` of every
    /// authorization and token request, and where RFC 9728 discovery starts when `issuer` is
    /// not given.
    pub resource: String,
    /// The authorization server's issuer (RFC 8414 / OpenID discovery). Default: the first
    /// of the resource's protected-resource metadata (RFC 9728).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Pre-registered client id (`CORTEX_MCP_<ID>_CLIENT_ID`); absent: dynamic client
    /// registration at the server, stored in the vault and bound to its issuer.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Its secret (`CORTEX_MCP_<ID>_CLIENT_SECRET`); absent: a public client.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Scopes to ask for; default the resource metadata's `scopes_supported`, else none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Subject whose linked grant discovers this provider's tools for users who have not
    /// linked (`CORTEX_MCP_<ID>_CATALOG_SUB`).
    #[serde(default)]
    pub catalog_sub: Option<String>,
}

impl VaultProviderConfig {
    /// The name shown to users.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// Decodes a vault key: base64 (standard or URL-safe, padded or not) of exactly 32 bytes.
pub fn decode_key(text: &str) -> Result<[u8; 32], String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let t = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(t).ok())
        .ok_or_else(|| "is not base64".to_string())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "decodes to {} bytes; a vault key is exactly 32",
            bytes.len()
        )
    })
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_provider_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// The `vault:` checks (called by the configuration's validation).
pub(crate) fn check(config: &Config, f: &mut Findings) {
    let v = &config.vault;
    if let Some(k) = &v.key {
        if let Err(e) = decode_key(k) {
            f.error(p(&["vault", "key"]), format!("the vault key {e}"));
        }
    }
    let mut ids = vec![PRIMARY_KEY_ID.to_string()];
    for (i, k) in v.keys.iter().enumerate() {
        if !valid_key_id(&k.id) {
            f.error(
                pik(&["vault", "keys"], i, "id"),
                "a key id is 1 to 64 of A-Z a-z 0-9 _ . -",
            );
        } else if ids.contains(&k.id) {
            f.error(
                pik(&["vault", "keys"], i, "id"),
                format!("key id `{}` is used twice (`primary` is vault.key's)", k.id),
            );
        }
        ids.push(k.id.clone());
        if let Err(e) = decode_key(&k.key) {
            f.error(pik(&["vault", "keys"], i, "key"), format!("the key {e}"));
        }
    }
    for (name, d) in [("link_ttl", v.link_ttl), ("timeout", v.timeout)] {
        if d.is_zero() {
            f.error(p(&["vault", name]), "must be more than 0");
        }
    }
    if !v.providers.is_empty() && v.key.is_none() && v.keys.is_empty() {
        f.error(
            p(&["vault"]),
            "providers are configured but there is no vault key: set vault.key (CORTEX_VAULT_KEY, base64 of 32 random bytes)",
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, pr) in v.providers.iter().enumerate() {
        if !valid_provider_id(&pr.id) {
            f.error(
                pik(&["vault", "providers"], i, "id"),
                "a provider id is 1 to 64 of a-z 0-9 _ -",
            );
        } else if seen.contains(&pr.id.as_str()) {
            f.error(
                pik(&["vault", "providers"], i, "id"),
                format!("provider id `{}` is used twice", pr.id),
            );
        }
        seen.push(&pr.id);
        if let Err(e) = super::validate::http_url(&pr.resource) {
            f.error(pik(&["vault", "providers"], i, "resource"), e);
        }
        if let Some(iss) = &pr.issuer {
            if let Err(e) = super::validate::http_url(iss) {
                f.error(pik(&["vault", "providers"], i, "issuer"), e);
            }
        }
        if pr.client_secret.is_some() && pr.client_id.is_none() {
            f.error(
                pik(&["vault", "providers"], i, "client_secret"),
                "a client secret without a client_id",
            );
        }
    }
    for (i, b) in config.backends.iter().enumerate() {
        if let Some(name) = &b.vault_provider {
            if !v.providers.iter().any(|pr| &pr.id == name) {
                f.error(
                    pik(&["backends"], i, "vault_provider"),
                    if v.providers.is_empty() {
                        format!("no provider `{name}`: nothing is configured under vault.providers (add one with this id, its resource and issuer)")
                    } else {
                        let ids: Vec<String> =
                            v.providers.iter().map(|pr| format!("`{}`", pr.id)).collect();
                        format!(
                            "no provider `{name}` under vault.providers (configured: {})",
                            ids.join(", ")
                        )
                    },
                );
            }
        }
    }
    let _ = pi;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_in_every_base64_alphabet() {
        let key = [0xfbu8; 32];
        for e in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            assert_eq!(decode_key(&e.encode(key)).unwrap(), key);
        }
        assert!(decode_key("!!").unwrap_err().contains("base64"));
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert!(decode_key(&short).unwrap_err().contains("16 bytes"));
    }
}
