//! The start-up key check of a fleet: the keys every replica must share (session secret,
//! audit secret, mint key, vault keys) are compared by fingerprint with the ones the fleet
//! recorded in PostgreSQL (`cortex_fleet_keys`); a replica whose keys differ refuses to
//! start, instead of sealing session ids, audit records or vault entries the others reject.
//!
//! A fingerprint is a truncated SHA-256 of a domain-separated derivation of the key, never
//! the key. Only configured keys are checked: a key generated per replica (no
//! `sessions.secret`, `audit.secret`, `auth.mint.key_file`) is one of a kind by nature,
//! which the start-up log says.

use sha2::{Digest, Sha256};

use crate::audit::AuditKeys;
use crate::config::Config;
use crate::store::{KeyFingerprint, StoreBase, StoreError};

/// Why the check refuses the start.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    /// Keys differ from the fleet's.
    #[error("{0}")]
    Mismatch(String),
    /// A key could not be read.
    #[error("fleet key check: {0}")]
    Key(String),
    /// The store failed (not an outage: a statement).
    #[error("fleet key check: {0}")]
    Store(StoreError),
}

fn fingerprint(domain: &str, material: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"cortex-gateway fleet key fingerprint v1\0");
    h.update(domain.as_bytes());
    h.update([0]);
    h.update(material);
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// This replica's configured keys as (name, fingerprint). `session` is the session
/// manager's fingerprint, `mint_kid` the signing key's id when `auth.mint.key_file` is set.
pub fn fingerprints(
    config: &Config,
    session: Option<&str>,
    mint_kid: Option<String>,
) -> Result<Vec<(String, String)>, KeyCheckError> {
    let mut out = Vec::new();
    if let Some(fp) = session {
        out.push(("sessions.secret".to_string(), fp.to_string()));
    }
    if config.audit.secret.is_some() {
        let (keys, _) =
            AuditKeys::load(config, false).map_err(|e| KeyCheckError::Key(e.to_string()))?;
        out.push((
            "audit.secret".to_string(),
            fingerprint("audit", keys.chain().id().as_bytes()),
        ));
    }
    if let (Some(_), Some(kid)) = (&config.auth.mint.key_file, mint_kid) {
        out.push((
            "auth.mint.key_file".to_string(),
            fingerprint("mint", kid.as_bytes()),
        ));
    }
    if let Some(k) = &config.vault.key {
        let bytes = crate::config::vault::decode_key(k)
            .map_err(|e| KeyCheckError::Key(format!("vault.key {e}")))?;
        out.push(("vault.key".to_string(), fingerprint("vault", &bytes)));
    }
    for k in &config.vault.keys {
        let bytes = crate::config::vault::decode_key(&k.key)
            .map_err(|e| KeyCheckError::Key(format!("vault key `{}` {e}", k.id)))?;
        out.push((format!("vault.keys.{}", k.id), fingerprint("vault", &bytes)));
    }
    Ok(out)
}

/// Outcome of a check that could run.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// The keys match the fleet's (the ones it had no row for are recorded now).
    Match(usize),
    /// The store is not shared (SQLite): nothing to compare with.
    NotShared,
    /// The database is down: check again later.
    Unavailable(String),
}

/// Compares `ours` with the fleet's fingerprints in `store` (recording the new ones as set
/// by `replica`).
pub async fn check(
    store: &dyn StoreBase,
    ours: &[(String, String)],
    replica: &str,
) -> Result<Checked, KeyCheckError> {
    if ours.is_empty() {
        return Ok(Checked::Match(0));
    }
    let offered = ours
        .iter()
        .map(|(name, fp)| KeyFingerprint {
            name: name.clone(),
            fingerprint: fp.clone(),
            set_by: replica.to_string(),
            set_at_ms: 0,
        })
        .collect();
    let stored = match store
        .fleet_keys(offered, replica.to_string(), crate::clock::now_ms())
        .await
    {
        Ok(Some(rows)) => rows,
        Ok(None) => return Ok(Checked::NotShared),
        Err(StoreError::Unavailable(e)) => return Ok(Checked::Unavailable(e)),
        Err(e) => return Err(KeyCheckError::Store(e)),
    };
    let fleet: Vec<(String, String, String)> = stored
        .into_iter()
        .map(|k| (k.name, k.fingerprint, k.set_by))
        .collect();
    let mismatches = cortex_filters::fleet::key_mismatches(ours, &fleet);
    if mismatches.is_empty() {
        return Ok(Checked::Match(ours.len()));
    }
    let list: Vec<String> = mismatches
        .iter()
        .map(|m| {
            format!(
                "{} (this replica's fingerprint {}, the fleet's {} recorded by replica {})",
                m.name, m.ours, m.fleet, m.set_by
            )
        })
        .collect();
    Err(KeyCheckError::Mismatch(format!(
        "this replica's keys differ from the fleet's sharing this database: {}. Every replica must run with the same keys, or the others reject what this one seals (session ids, audit chain, vault entries). Give this replica the fleet's keys; to change a key for the whole fleet on purpose, stop every replica and delete its row (DELETE FROM cortex_fleet_keys WHERE name = '<key>') before starting them with the new key (docs/fleet.md)",
        list.join("; ")
    )))
}
