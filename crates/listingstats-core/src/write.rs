//! The write path shared by INCR and INGEST: dedup decisions, then
//! validate every increment, then write every increment.
//!
//! A command that answers with an error must have changed nothing, so no
//! write happens until every key has passed its ACL and type checks and
//! every counter has been read and proven not to overflow. The store does
//! the I/O; this module decides.

use super::dedup::Marker;
use super::error::Result;
use super::number::add_counter;
use super::token::Token;

/// One `HINCRBY key field delta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Increment {
    pub key: Token,
    pub field: Token,
    pub delta: i64,
    /// The day hash's absolute expiry (unix ms) under `retention-days`.
    pub expire_at: Option<i64>,
}

/// What the write path needs from Redis (or from a map, in tests).
pub trait CounterStore {
    /// The counter's current value; `None` when the key or field is absent.
    /// Fails when the caller may not write the key, when it is not a hash,
    /// or when the value is not an integer.
    fn counter(&mut self, key: &[u8], field: &[u8]) -> Result<Option<i64>>;
    /// Writes a value computed by [`apply`]; `delta` is what replicas replay.
    fn set_counter(&mut self, key: &[u8], field: &[u8], value: i64, delta: i64);
    /// Writes several counters of one key (`increments[i]` gets
    /// `values[i]`). A store may replicate them as one `HSET key f v ...`
    /// of the final values, which is exact because the command is atomic.
    fn set_counters(&mut self, key: &[u8], increments: &[Increment], values: &[i64]) {
        for (inc, &value) in increments.iter().zip(values) {
            self.set_counter(key, &inc.field, value, inc.delta);
        }
    }
    /// Whether an event id is remembered (in either generation's shard).
    /// Fails when the caller may not write the shard keys, or one is not a
    /// hash.
    fn is_remembered(&mut self, marker: &Marker) -> Result<bool>;
    /// Remembers ids, each in its current shard.
    fn remember(&mut self, markers: &[Marker]);
    /// Gives the day hash `key` the absolute expiry `at_ms` (retention),
    /// unless it has it already.
    fn expire_at(&mut self, key: &[u8], at_ms: i64);
}

/// Validates all `increments`, then writes them and the `markers`.
/// Returns each counter's new value, in order. Keys must be unique pairs
/// (aggregate first); on error nothing was written.
pub fn apply<S: CounterStore>(
    store: &mut S,
    increments: &[Increment],
    markers: &[Marker],
) -> Result<Vec<i64>> {
    let mut values = Vec::with_capacity(increments.len());
    for inc in increments {
        let current = store.counter(&inc.key, &inc.field)?.unwrap_or(0);
        values.push(add_counter(current, inc.delta)?);
    }
    // Increments of one key are next to each other (INGEST sorts them):
    // each key is written in one go, and gets its expiry once.
    let mut start = 0;
    while start < increments.len() {
        let key = &increments[start].key;
        let end = start
            + increments[start..]
                .iter()
                .take_while(|inc| inc.key == *key)
                .count();
        store.set_counters(key, &increments[start..end], &values[start..end]);
        if let Some(at) = increments[start].expire_at {
            store.expire_at(key, at);
        }
        start = end;
    }
    if !markers.is_empty() {
        store.remember(markers);
    }
    Ok(values)
}

#[cfg(test)]
pub mod memory {
    //! An in-memory [`CounterStore`] for unit tests.
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::error::Error;
    use crate::number::parse_counter;

    #[derive(Default)]
    pub struct MemoryStore {
        pub hashes: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>,
        pub strings: BTreeSet<Vec<u8>>,
        /// (shard key, id) -> expiry of the shard.
        pub markers: BTreeMap<(Vec<u8>, Vec<u8>), i64>,
        /// Day hash -> absolute expiry (retention).
        pub expiries: BTreeMap<Vec<u8>, i64>,
        pub writes: usize,
    }

    impl CounterStore for MemoryStore {
        fn counter(&mut self, key: &[u8], field: &[u8]) -> Result<Option<i64>> {
            if self.strings.contains(key) {
                return Err(Error::WrongType);
            }
            let raw = self.hashes.get(key).and_then(|h| h.get(field));
            raw.map(|v| parse_counter(key, field, v)).transpose()
        }
        fn set_counter(&mut self, key: &[u8], field: &[u8], value: i64, _delta: i64) {
            self.writes += 1;
            let hash = self.hashes.entry(key.to_vec()).or_default();
            hash.insert(field.to_vec(), value.to_string().into_bytes());
        }
        fn is_remembered(&mut self, marker: &Marker) -> Result<bool> {
            let has = |key: &[u8]| {
                self.markers
                    .contains_key(&(key.to_vec(), marker.id.to_vec()))
            };
            Ok(has(&marker.current) || has(&marker.previous))
        }
        fn expire_at(&mut self, key: &[u8], at_ms: i64) {
            self.expiries.insert(key.to_vec(), at_ms);
        }
        fn remember(&mut self, markers: &[Marker]) {
            for m in markers {
                self.markers
                    .insert((m.current.to_vec(), m.id.to_vec()), m.generation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryStore;
    use super::*;

    fn inc(key: &str, field: &str, delta: i64) -> Increment {
        Increment {
            key: key.as_bytes().into(),
            field: field.as_bytes().into(),
            delta,
            expire_at: None,
        }
    }

    #[test]
    fn writes_all_and_returns_new_values() {
        let mut store = MemoryStore::default();
        let m = crate::dedup::marker(&Default::default(), 60, 0, b"id", None);
        let values = apply(
            &mut store,
            &[inc("a", "x", 2), inc("b", "x", -3)],
            std::slice::from_ref(&m),
        )
        .unwrap();
        assert_eq!(values, [2, -3]);
        let values = apply(&mut store, &[inc("a", "x", 5)], &[]).unwrap();
        assert_eq!(values, [7]);
        assert!(store.is_remembered(&m).unwrap());
    }

    #[test]
    fn any_failure_writes_nothing() {
        let mut store = MemoryStore::default();
        apply(&mut store, &[inc("a", "x", i64::MAX)], &[]).unwrap();
        let m = crate::dedup::marker(&Default::default(), 60, 0, b"id", None);
        store.strings.insert(b"str".to_vec());
        store
            .hashes
            .entry(b"bad".to_vec())
            .or_default()
            .insert(b"x".to_vec(), b"1.5".to_vec());
        let writes = store.writes;
        for failing in [
            vec![inc("b", "x", 1), inc("a", "x", 1)],
            vec![inc("b", "x", 1), inc("str", "x", 1)],
            vec![inc("b", "x", 1), inc("bad", "x", 1)],
        ] {
            assert!(apply(&mut store, &failing, std::slice::from_ref(&m)).is_err());
            assert_eq!(store.writes, writes);
            assert!(store.markers.is_empty());
            assert!(!store.hashes.contains_key(&b"b"[..]));
        }
    }
}
