//! The audit secret and the keys derived from it: one for pseudonyms (subject, email,
//! session id, params) and one for the hash chain, so neither use weakens the other.
//!
//! The secret is `audit.secret`, or else a random one generated once and kept in
//! `<storage dir>/audit.key` (mode 0600): pseudonyms then stay stable across restarts and
//! the chain stays verifiable, with no setup. Replicas of a fleet must share a configured
//! secret, or their pseudonyms differ and `audit verify` finds records it cannot check.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::Mac;
use serde::Serialize;

use super::chain::{derive_subkey, hex, new_mac, with_scratch, ChainKey};
use super::AuditError;
use crate::config::Config;

/// The generated secret's file name inside the storage directory.
pub const KEY_FILE: &str = "audit.key";
/// Shortest accepted `audit.secret`.
pub const MIN_SECRET_LEN: usize = 32;
/// Bytes of HMAC output kept in a pseudonym (128 bits, 32 hex characters).
const PSEUDONYM_BYTES: usize = 16;

/// Where the secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `audit.secret`.
    Configured,
    /// Read from, or generated into, this file.
    File(PathBuf),
    /// Random for this process only (the file could not be written).
    Ephemeral,
}

/// The keys of one audit secret.
pub struct AuditKeys {
    pseudonym: hmac::Hmac<sha2::Sha256>,
    chain: std::sync::Arc<ChainKey>,
    source: SecretSource,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKeys")
            .field("chain_key_id", &self.chain.id())
            .field("source", &self.source)
            .finish()
    }
}

/// Domains of pseudonyms: the same value hashes differently as a subject and as an email.
#[derive(Debug, Clone, Copy)]
pub enum Domain {
    /// A subject.
    Subject,
    /// A lowercased email.
    Email,
    /// An `Mcp-Session-Id`.
    Session,
    /// The canonical JSON of `params`.
    Params,
}

impl Domain {
    fn tag(self) -> &'static [u8] {
        match self {
            Domain::Subject => b"sub\0",
            Domain::Email => b"email\0",
            Domain::Session => b"session\0",
            Domain::Params => b"params\0",
        }
    }
}

impl AuditKeys {
    /// Keys of `secret`.
    pub fn from_secret(secret: &[u8], source: SecretSource) -> Self {
        let pseudonym_key = derive_subkey(secret, b"cortex-audit/pseudonym/v1");
        AuditKeys {
            pseudonym: new_mac(&pseudonym_key),
            chain: std::sync::Arc::new(ChainKey::derive(secret)),
            source,
        }
    }

    /// The keys for `config`: `audit.secret`, else the key file in the storage directory,
    /// generated when missing and `create` is set (the gateway) but not otherwise (`audit
    /// verify` must not invent a secret). A file that cannot be written while serving
    /// falls back to an ephemeral secret: auditing goes on, with a warning.
    pub fn load(config: &Config, create: bool) -> Result<(AuditKeys, Option<String>), AuditError> {
        if let Some(secret) = config.audit.secret.as_deref() {
            if secret.chars().count() < MIN_SECRET_LEN {
                return Err(AuditError::Config(format!(
                    "audit.secret must be at least {MIN_SECRET_LEN} characters"
                )));
            }
            return Ok((
                AuditKeys::from_secret(secret.as_bytes(), SecretSource::Configured),
                None,
            ));
        }
        let path = config.storage_dir().join(KEY_FILE);
        match read_key_file(&path)? {
            Some(secret) => {
                let warning = format!(
                    "audit.secret is not set: pseudonyms and the audit hash chain use the generated secret in {} (keep that file with the database; replicas of a fleet need one shared audit.secret)",
                    path.display()
                );
                Ok((
                    AuditKeys::from_secret(&secret, SecretSource::File(path)),
                    Some(warning),
                ))
            }
            None if !create => Err(AuditError::Config(format!(
                "no audit secret: audit.secret is not set and {} does not exist",
                path.display()
            ))),
            None => match create_key_file(&path) {
                Ok(secret) => {
                    let warning = format!(
                        "audit.secret is not set: generated a random audit secret in {} (keep that file with the database; replicas of a fleet need one shared audit.secret)",
                        path.display()
                    );
                    Ok((
                        AuditKeys::from_secret(&secret, SecretSource::File(path)),
                        Some(warning),
                    ))
                }
                Err(e) => {
                    let warning = format!(
                        "audit.secret is not set and {} cannot be written ({e}): using a random secret for this process only; pseudonyms change and the audit chain cannot be verified after a restart",
                        path.display()
                    );
                    let secret = random_secret();
                    Ok((
                        AuditKeys::from_secret(&secret, SecretSource::Ephemeral),
                        Some(warning),
                    ))
                }
            },
        }
    }

    /// Where the secret came from.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// The chain key.
    pub fn chain(&self) -> &std::sync::Arc<ChainKey> {
        &self.chain
    }

    /// The pseudonym of `value` in `domain`: 32 hex characters of HMAC-SHA256.
    pub fn pseudonym(&self, domain: Domain, value: &str) -> String {
        let mut mac = self.pseudonym.clone();
        mac.update(domain.tag());
        mac.update(value.as_bytes());
        hex(&mac.finalize().into_bytes()[..PSEUDONYM_BYTES])
    }

    /// The pseudonym of an email: lowercased first, so case does not split one person.
    pub fn email_pseudonym(&self, email: &str) -> String {
        self.pseudonym(Domain::Email, &email.trim().to_lowercase())
    }

    /// The HMAC of the canonical JSON of `value` (object keys sorted by serde_json's map),
    /// streamed into the MAC without building the JSON text. Raw bytes; see [`hex_id`].
    pub fn params_mac<T: Serialize + ?Sized>(&self, value: &T) -> [u8; PSEUDONYM_BYTES] {
        let mut mac = self.pseudonym.clone();
        mac.update(Domain::Params.tag());
        // In one piece, as the chain does (see `ChainKey::link`).
        with_scratch(|buf| {
            let _ = serde_json::to_writer(&mut *buf, value);
            mac.update(buf);
        });
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; PSEUDONYM_BYTES];
        out.copy_from_slice(&full[..PSEUDONYM_BYTES]);
        out
    }
}

/// Hex of a MAC prefix.
pub fn hex_id(bytes: &[u8]) -> String {
    hex(bytes)
}

fn random_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes).into_bytes()
}

/// The secret in `path`, if the file exists.
fn read_key_file(path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim();
            if secret.len() < MIN_SECRET_LEN {
                return Err(AuditError::Config(format!(
                    "{} holds fewer than {MIN_SECRET_LEN} characters; delete it to generate a new secret (records already hashed with the old one then fail verification)",
                    path.display()
                )));
            }
            Ok(Some(secret.as_bytes().to_vec()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuditError::Config(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Writes a new random secret to `path` (mode 0600, created exclusively so two processes
/// starting together agree on one). Returns the secret in the file.
fn create_key_file(path: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let secret = random_secret();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(&secret)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another process won the race: use its secret.
            let text = std::fs::read_to_string(path)?;
            Ok(text.trim().as_bytes().to_vec())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_domain_separated_and_stable() {
        let a = AuditKeys::from_secret(
            b"secret-a-0123456789abcdef0123456789",
            SecretSource::Configured,
        );
        let b = AuditKeys::from_secret(
            b"secret-b-0123456789abcdef0123456789",
            SecretSource::Configured,
        );
        let p = a.pseudonym(Domain::Subject, "alice");
        assert_eq!(p.len(), 32);
        assert_eq!(p, a.pseudonym(Domain::Subject, "alice"));
        assert_ne!(p, b.pseudonym(Domain::Subject, "alice"));
        assert_ne!(p, a.pseudonym(Domain::Email, "alice"));
        assert_eq!(
            a.email_pseudonym("Alice@Example.com"),
            a.email_pseudonym("alice@example.com ")
        );
    }

    #[test]
    fn params_mac_ignores_key_order() {
        let k = AuditKeys::from_secret(
            b"secret-a-0123456789abcdef0123456789",
            SecretSource::Configured,
        );
        let x: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[true,"x"]}"#).unwrap();
        let y: serde_json::Value = serde_json::from_str(r#"{"b":[true,"x"],"a":1}"#).unwrap();
        let z: serde_json::Value = serde_json::from_str(r#"{"b":[true,"y"],"a":1}"#).unwrap();
        assert_eq!(k.params_mac(&x), k.params_mac(&y));
        assert_ne!(k.params_mac(&x), k.params_mac(&z));
    }

    #[test]
    fn key_file_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = Some(dir.path().join("nested"));
        assert!(
            AuditKeys::load(&config, false).is_err(),
            "verify must not invent a secret"
        );
        let (first, warning) = AuditKeys::load(&config, true).unwrap();
        assert!(warning.unwrap().contains("generated"));
        let (second, _) = AuditKeys::load(&config, false).unwrap();
        assert_eq!(first.chain().id(), second.chain().id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("nested").join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn short_configured_secret_is_refused() {
        let mut config = Config::default();
        config.audit.secret = Some("short".into());
        assert!(AuditKeys::load(&config, true).is_err());
    }
}
