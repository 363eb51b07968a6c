//! The hash chain: each stored record carries the hash of the one before it, so an edited,
//! inserted or deleted row breaks the chain at a place `audit verify` can name.
//!
//! Hashes are HMAC-SHA256 under a key derived from the audit secret, not plain SHA-256:
//! someone who can write to the database but does not hold the secret cannot recompute
//! the chain after an edit. The chain head (last seq and hash) and the purge anchor (the
//! last purged record) are sealed with the same key, so truncating the tail or the head
//! of the chain and "fixing up" the bookkeeping row is detected too.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::{AuditRecord, ChainLinker, StoredAudit};

pub use crate::store::{ChainState, GENESIS};

type HmacSha256 = Hmac<Sha256>;

/// Version tag mixed into every record hash; bump it when the canonical form changes.
const RECORD_DOMAIN: &[u8] = b"cortex-audit-record-v1\0";

/// The key that hashes records and seals the chain's bookkeeping.
#[derive(Clone)]
pub struct ChainKey {
    mac: HmacSha256,
    id: String,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainKey").field("id", &self.id).finish()
    }
}

/// Which seal: the head or the purge anchor (domain-separated so one cannot stand for the
/// other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seal {
    /// The newest record.
    Head,
    /// The last purged record.
    Anchor,
}

impl ChainKey {
    /// Derives the chain key from the audit secret.
    pub fn derive(secret: &[u8]) -> Self {
        let key = derive_subkey(secret, b"cortex-audit/chain/v1");
        let mac = new_mac(&key);
        let id_mac = {
            let mut m = mac.clone();
            m.update(b"key-id");
            m.finalize().into_bytes()
        };
        ChainKey {
            mac,
            id: hex(&id_mac[..8]),
        }
    }

    /// A short public id of this key (16 hex characters), stored with every record so that
    /// verification can tell "written under another secret" from "tampered with".
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The hash of `record` at `seq` following `prev_hash`, written under key id `key_id`.
    pub fn link(&self, seq: i64, prev_hash: &str, key_id: &str, record: &AuditRecord) -> String {
        let mut mac = self.mac.clone();
        mac.update(RECORD_DOMAIN);
        mac.update(&seq.to_be_bytes());
        mac.update(prev_hash.as_bytes());
        mac.update(b"\0");
        mac.update(key_id.as_bytes());
        mac.update(b"\0");
        // The record's JSON goes into the MAC in one piece: serde writes a record as some
        // hundred small pieces, and feeding each to the hash costs more than the copy.
        // Serializing a struct of plain fields into a Vec cannot fail; if it ever did, the
        // hash would differ and verification would flag the record.
        with_scratch(|buf| {
            let _ = serde_json::to_writer(&mut *buf, record);
            mac.update(buf);
        });
        hex(&mac.finalize().into_bytes())
    }

    /// Recomputes the hash of a stored record.
    pub fn rehash(&self, stored: &StoredAudit) -> String {
        self.link(
            stored.seq,
            &stored.prev_hash,
            &stored.key_id,
            &stored.record,
        )
    }

    /// Seals a (seq, hash) pair of the bookkeeping row.
    pub fn seal(&self, which: Seal, seq: i64, hash: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(match which {
            Seal::Head => b"cortex-audit-head-v1\0".as_slice(),
            Seal::Anchor => b"cortex-audit-anchor-v1\0".as_slice(),
        });
        mac.update(&seq.to_be_bytes());
        mac.update(hash.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `mac` is the seal of (seq, hash), in constant time.
    pub fn check_seal(&self, which: Seal, seq: i64, hash: &str, mac: &str) -> bool {
        crate::auth::constant_time_eq(self.seal(which, seq, hash).as_bytes(), mac.as_bytes())
    }
}

/// The store places records and seals with this key without knowing how it hashes.
impl ChainLinker for ChainKey {
    fn key_id(&self) -> &str {
        self.id()
    }
    fn link(&self, seq: i64, prev_hash: &str, key_id: &str, record: &AuditRecord) -> String {
        ChainKey::link(self, seq, prev_hash, key_id, record)
    }
    fn seal_head(&self, seq: i64, hash: &str) -> String {
        self.seal(Seal::Head, seq, hash)
    }
    fn seal_anchor(&self, seq: i64, hash: &str) -> String {
        self.seal(Seal::Anchor, seq, hash)
    }
}

/// `HMAC(secret, label)`: independent keys for independent uses of one secret.
pub(crate) fn derive_subkey(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut m = new_mac(secret);
    m.update(label);
    m.finalize().into_bytes().into()
}

/// An HMAC-SHA256 instance; HMAC takes keys of any length, so this cannot fail.
pub(crate) fn new_mac(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Largest scratch buffer kept between two uses (a record is well under it).
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with an empty byte buffer of this thread, reused from call to call (a fresh
/// one if the thread's buffer is already in use).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let out = f(&mut buf);
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
            out
        }
        Err(_) => f(&mut Vec::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        let mut r = AuditRecord::new(1_700_000_000_000, "POST");
        r.tool = Some("crm_search".into());
        r.latency_ms = 1.234;
        r
    }

    #[test]
    fn link_depends_on_every_input() {
        let k = ChainKey::derive(b"a-secret-of-enough-length-0123456789");
        let base = k.link(1, GENESIS, k.id(), &record());
        assert_eq!(base.len(), 64);
        assert_eq!(base, k.link(1, GENESIS, k.id(), &record()));
        assert_ne!(base, k.link(2, GENESIS, k.id(), &record()));
        assert_ne!(base, k.link(1, &base, k.id(), &record()));
        assert_ne!(base, k.link(1, GENESIS, "other", &record()));
        let mut edited = record();
        edited.success = true;
        assert_ne!(base, k.link(1, GENESIS, k.id(), &edited));
        let other = ChainKey::derive(b"another-secret-of-enough-length-012345");
        assert_ne!(base, other.link(1, GENESIS, k.id(), &record()));
        assert_ne!(k.id(), other.id());
    }

    #[test]
    fn seals_are_domain_separated_and_checked() {
        let k = ChainKey::derive(b"s");
        let head = k.seal(Seal::Head, 5, "h");
        assert_ne!(head, k.seal(Seal::Anchor, 5, "h"));
        assert!(k.check_seal(Seal::Head, 5, "h", &head));
        assert!(!k.check_seal(Seal::Head, 6, "h", &head));
        assert!(!k.check_seal(Seal::Anchor, 5, "h", &head));
    }
}
