//! A small bounded, expiring map for the authorization server's in-memory state (pending
//! sign-ins, codes, refresh tokens). A development server keeps everything in memory, but an
//! open registration and authorization endpoint must not let a client grow it without limit:
//! expired entries are dropped on every insert, and when the map is full the oldest entry goes.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A map with a capacity and a time to live per entry.
#[derive(Debug)]
pub(crate) struct BoundedMap<V> {
    entries: HashMap<String, (Instant, V)>,
    /// Keys in insertion order (may hold keys already removed; skipped when evicting).
    order: VecDeque<String>,
    capacity: usize,
}

impl<V> BoundedMap<V> {
    /// An empty map holding at most `capacity` entries (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedMap {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Inserts `value` under `key`, valid for `ttl`.
    pub(crate) fn insert(&mut self, key: String, value: V, ttl: Duration) {
        let now = Instant::now();
        self.purge(now);
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, (now + ttl, value));
    }

    /// The live entry under `key`.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let now = Instant::now();
        match self.entries.get_mut(key) {
            Some((expires, value)) if *expires > now => Some(value),
            _ => None,
        }
    }

    /// Removes and returns the live entry under `key`.
    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let (expires, value) = self.entries.remove(key)?;
        (expires > Instant::now()).then_some(value)
    }

    /// Every live value, mutably (for revoking a whole refresh-token family).
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        let now = Instant::now();
        self.entries
            .values_mut()
            .filter(move |(expires, _)| *expires > now)
            .map(|(_, v)| v)
    }

    /// Number of entries (live or not yet purged).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Drops expired entries and the order slots of removed ones.
    fn purge(&mut self, now: Instant) {
        self.entries.retain(|_, (expires, _)| *expires > now);
        let entries = &self.entries;
        self.order.retain(|k| entries.contains_key(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_oldest_when_full() {
        let mut m = BoundedMap::new(2);
        m.insert("a".into(), 1, Duration::from_secs(60));
        m.insert("b".into(), 2, Duration::from_secs(60));
        m.insert("c".into(), 3, Duration::from_secs(60));
        assert_eq!(m.len(), 2);
        assert!(m.get_mut("a").is_none());
        assert_eq!(m.get_mut("b"), Some(&mut 2));
        assert_eq!(m.remove("c"), Some(3));
        assert!(m.remove("c").is_none());
    }

    #[test]
    fn expired_entries_are_invisible_and_purged() {
        let mut m = BoundedMap::new(10);
        m.insert("old".into(), 1, Duration::from_millis(0));
        assert!(m.get_mut("old").is_none());
        m.insert("new".into(), 2, Duration::from_secs(60));
        assert_eq!(m.len(), 1);
        assert_eq!(m.values_mut().count(), 1);
    }
}
