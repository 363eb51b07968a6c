//! Pseudonyms as the audit thread computes them: each is an HMAC of the value under the
//! audit secret ([`AuditKeys::pseudonym`]), and the same few subjects, emails and session
//! ids come back on every request of a session, so the last ones computed are kept.
//!
//! The memo is bounded ([`MEMO_ENTRIES`]) and simply emptied when full: a busy gateway
//! recomputes a pseudonym at most once per fill, and a stream of distinct values (one
//! request per session) costs what it cost without the memo. It holds the values in clear
//! in the audit thread's memory, where they already pass through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::keys::{AuditKeys, Domain};

/// Most pseudonyms kept.
pub const MEMO_ENTRIES: usize = 4096;
/// Longest value kept (longer ones are computed every time).
const MEMO_VALUE_MAX: usize = 512;

/// The pseudonyms of one audit secret, with a memo of the last ones.
pub(crate) struct Pseudonyms {
    keys: Arc<AuditKeys>,
    /// One map per domain (subject, email, session), looked up by `&str`.
    memo: Mutex<[HashMap<Box<str>, Box<str>>; 3]>,
}

impl Pseudonyms {
    /// Pseudonyms under `keys`.
    pub fn new(keys: Arc<AuditKeys>) -> Self {
        Pseudonyms {
            keys,
            memo: Mutex::new(Default::default()),
        }
    }

    /// The keys.
    pub fn keys(&self) -> &Arc<AuditKeys> {
        &self.keys
    }

    /// The pseudonym of a subject (as [`AuditKeys::pseudonym`] in [`Domain::Subject`]).
    pub fn subject(&self, sub: &str) -> String {
        self.memoized(0, sub, |k, v| k.pseudonym(Domain::Subject, v))
    }

    /// The pseudonym of an `Mcp-Session-Id` (as [`AuditKeys::pseudonym`] in
    /// [`Domain::Session`]).
    pub fn session(&self, id: &str) -> String {
        self.memoized(1, id, |k, v| k.pseudonym(Domain::Session, v))
    }

    /// The pseudonym of an email (as [`AuditKeys::email_pseudonym`]).
    pub fn email(&self, email: &str) -> String {
        self.memoized(2, email, |k, v| k.email_pseudonym(v))
    }

    fn memoized(
        &self,
        map: usize,
        value: &str,
        compute: impl FnOnce(&AuditKeys, &str) -> String,
    ) -> String {
        if value.len() > MEMO_VALUE_MAX {
            return compute(&self.keys, value);
        }
        let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        let memo = &mut memo[map];
        if let Some(hit) = memo.get(value) {
            return hit.to_string();
        }
        let computed = compute(&self.keys, value);
        if memo.len() >= MEMO_ENTRIES {
            memo.clear();
        }
        memo.insert(value.into(), computed.as_str().into());
        computed
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::SecretSource;
    use super::*;

    #[test]
    fn memoized_pseudonyms_are_the_keys_own_and_the_memo_stays_bounded() {
        let keys = Arc::new(AuditKeys::from_secret(
            b"0123456789abcdef0123456789abcdef",
            SecretSource::Ephemeral,
        ));
        let p = Pseudonyms::new(keys.clone());
        for _ in 0..2 {
            assert_eq!(p.subject("alice"), keys.pseudonym(Domain::Subject, "alice"));
            assert_eq!(p.session("alice"), keys.pseudonym(Domain::Session, "alice"));
            assert_eq!(
                p.email("Alice@X.org "),
                keys.email_pseudonym("Alice@X.org ")
            );
        }
        // One value, three domains, three different pseudonyms.
        assert_ne!(p.subject("alice"), p.session("alice"));
        let long = "x".repeat(MEMO_VALUE_MAX + 1);
        assert_eq!(p.subject(&long), keys.pseudonym(Domain::Subject, &long));
        for i in 0..(MEMO_ENTRIES + 10) {
            let v = format!("s{i}");
            assert_eq!(p.session(&v), keys.pseudonym(Domain::Session, &v));
        }
        let memo = p.memo.lock().unwrap();
        assert!(memo.iter().all(|m| m.len() <= MEMO_ENTRIES));
        assert!(!memo[0].contains_key(long.as_str()));
    }
}
