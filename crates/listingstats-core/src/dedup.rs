//! Where event ids are remembered for the dedup window.
//!
//! Ids live as fields of hashes `<prefix>listingstats:seen:<generation>:<shard>`,
//! where `generation = floor(now / window)` and the shard is a stable hash
//! of the id (FNV-1a, 64 shards). A lookup checks the id's shard in the
//! current and the previous generation, so an id is remembered for at
//! least `dedup-window` and at most twice that.
//!
//! Shards carry **no TTL**, so `maxmemory-policy volatile-*` never evicts
//! them (an evicted shard would let redeliveries count twice). Instead the
//! hash `<prefix>listingstats:seen:generations` lists the generations that
//! have shards, and the write path deletes every generation other than the
//! current and the previous one ([`stale_generations`]), replicated as
//! `DEL`/`HDEL`. Deletion is housekeeping only: lookups never consult an
//! older generation, so when it happens does not change what counts.
//!
//! Why not one key per id with its own expiry: that costs a top-level key
//! (~150 bytes) and a replicated `SET ... PXAT` per id. Here an id is one
//! hash field, and a batch replicates one `HSET shard id 1 id 1 ...` per
//! shard it touched. Changing `dedup-window` changes the generation
//! numbering: ids seen before the change are forgotten (and their shards
//! deleted by the next write that remembers an id).

use std::rc::Rc;

use super::keys::KeyScheme;
use super::token::{token, Token};

pub const SHARDS: u64 = 64;

/// Where one id is looked up and remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub id: Token,
    /// The id's shard hash in the current generation: read, and written.
    pub current: Rc<[u8]>,
    /// The same shard in the previous generation: read only.
    pub previous: Rc<[u8]>,
    /// The current generation's number.
    pub generation: i64,
    /// The hash listing the generations that have shards.
    pub registry: Rc<[u8]>,
    /// On Redis Cluster, the slot whose shards these are (see
    /// [`KeyScheme::seen_key_in`]); `None` for the 64 FNV shards.
    pub slot: Option<u16>,
}

/// Every shard key of one generation: the 64 FNV shards, or on a cluster
/// the one shard of `slot`. The sweep of old generations deletes these.
pub fn shard_keys(scheme: &KeyScheme, generation: i64, slot: Option<u16>) -> Vec<Vec<u8>> {
    match slot {
        Some(slot) => vec![scheme.seen_key_in(generation, slot)],
        None => (0..SHARDS)
            .map(|s| scheme.seen_key(generation, s))
            .collect(),
    }
}

/// Whether dedup state survives `maxmemory-policy` `policy`: shards have
/// no TTL, so only the `allkeys-*` policies can evict them.
pub fn safe_under_policy(policy: &str) -> bool {
    !policy.trim().to_ascii_lowercase().starts_with("allkeys-")
}

/// The generations in the registry hash (its fields) that are neither
/// `current` nor the one before: their shards are to be deleted. A field
/// that is not a number is left alone.
pub fn stale_generations<'a>(fields: impl IntoIterator<Item = &'a [u8]>, current: i64) -> Vec<i64> {
    let mut stale: Vec<i64> = fields
        .into_iter()
        .filter_map(|f| std::str::from_utf8(f).ok()?.parse::<i64>().ok())
        .filter(|&g| g != current && g != current - 1)
        .collect();
    stale.sort_unstable();
    stale.dedup();
    stale
}

/// The id's shard: 64-bit FNV-1a of its bytes, modulo [`SHARDS`]. The
/// number is part of stored key names, so this must never change (a test
/// pins real values).
pub fn shard_of(id: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = id
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    hash % SHARDS
}

/// The shard keys of the current and previous generation at one instant,
/// named once per command rather than once per id.
pub struct Generations {
    current: Vec<Rc<[u8]>>,
    previous: Vec<Rc<[u8]>>,
    generation: i64,
    registry: Rc<[u8]>,
}

impl Generations {
    /// At `now_ms`, for a window of `window_secs` (> 0).
    pub fn at(scheme: &KeyScheme, window_secs: i64, now_ms: i64) -> Generations {
        let window_ms = window_secs.max(1).saturating_mul(1000);
        let generation = now_ms.div_euclid(window_ms);
        let keys = |g: i64| {
            (0..SHARDS)
                .map(|s| Rc::from(scheme.seen_key(g, s)))
                .collect()
        };
        Generations {
            current: keys(generation),
            previous: keys(generation - 1),
            generation,
            registry: Rc::from(scheme.seen_generations_key()),
        }
    }

    pub fn marker(&self, id: &[u8]) -> Marker {
        let shard = shard_of(id) as usize;
        Marker {
            id: token(id),
            current: Rc::clone(&self.current[shard]),
            previous: Rc::clone(&self.previous[shard]),
            generation: self.generation,
            registry: Rc::clone(&self.registry),
            slot: None,
        }
    }

    /// On Redis Cluster: the marker of `id` counted for a listing in `slot`.
    pub fn marker_in(&self, scheme: &KeyScheme, id: &[u8], slot: u16) -> Marker {
        slot_marker(scheme, self.generation, id, slot)
    }
}

fn slot_marker(scheme: &KeyScheme, generation: i64, id: &[u8], slot: u16) -> Marker {
    Marker {
        id: token(id),
        current: Rc::from(scheme.seen_key_in(generation, slot)),
        previous: Rc::from(scheme.seen_key_in(generation - 1, slot)),
        generation,
        registry: Rc::from(scheme.seen_generations_key_in(slot)),
        slot: Some(slot),
    }
}

/// The marker of one `id` at `now_ms`, for a window of `window_secs` (> 0):
/// names only its own two shards (INCR), where [`Generations`] names all of
/// them once for a batch. `slot`: on Redis Cluster, the listing's slot.
pub fn marker(
    scheme: &KeyScheme,
    window_secs: i64,
    now_ms: i64,
    id: &[u8],
    slot: Option<u16>,
) -> Marker {
    let window_ms = window_secs.max(1).saturating_mul(1000);
    let generation = now_ms.div_euclid(window_ms);
    if let Some(slot) = slot {
        return slot_marker(scheme, generation, id, slot);
    }
    let shard = shard_of(id);
    Marker {
        id: token(id),
        current: Rc::from(scheme.seen_key(generation, shard)),
        previous: Rc::from(scheme.seen_key(generation - 1, shard)),
        generation,
        registry: Rc::from(scheme.seen_generations_key()),
        slot: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_remembered_between_one_and_two_windows() {
        let scheme = KeyScheme::default();
        let window = 60;
        for seen_at in [0i64, 1, 59_999, 60_000, 119_999, 1_449_855_906_000] {
            let m = marker(&scheme, window, seen_at, b"evt-1", None);
            let keys_at = |t: i64| {
                let later = marker(&scheme, window, t, b"evt-1", None);
                [later.current.to_vec(), later.previous.to_vec()]
            };
            // Still found a whole window later.
            let t = seen_at + window * 1000;
            assert!(
                keys_at(t).contains(&m.current.to_vec()),
                "seen at {seen_at}, looked up at {t}"
            );
            // Never looked up past two windows, and then stale.
            let t = seen_at + 2 * window * 1000;
            assert!(!keys_at(t).contains(&m.current.to_vec()));
            let later = marker(&scheme, window, t, b"evt-1", None);
            assert_eq!(
                stale_generations([m.generation.to_string().as_bytes()], later.generation),
                vec![m.generation]
            );
        }
    }

    #[test]
    fn only_generations_no_lookup_reaches_are_stale() {
        let fields: [&[u8]; 6] = [b"7", b"9", b"10", b"12", b"x", b"-3"];
        assert_eq!(stale_generations(fields, 10), vec![-3, 7, 12]);
        assert_eq!(stale_generations(fields, 13), vec![-3, 7, 9, 10]);
        assert!(stale_generations([], 5).is_empty());
    }

    #[test]
    fn only_allkeys_policies_endanger_dedup_state() {
        for safe in [
            "noeviction",
            "volatile-lru",
            "volatile-lfu",
            "volatile-ttl",
            "volatile-random",
        ] {
            assert!(safe_under_policy(safe), "{safe}");
        }
        for unsafe_ in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "ALLKEYS-LRU",
        ] {
            assert!(!safe_under_policy(unsafe_), "{unsafe_}");
        }
    }

    #[test]
    fn one_marker_and_a_batch_agree() {
        let scheme = KeyScheme::default();
        let batch = Generations::at(&scheme, 3600, 1_449_855_906_000);
        for id in [&b"a"[..], b"evt-17", b"shardId-000000000000:4959"] {
            assert_eq!(
                batch.marker(id),
                marker(&scheme, 3600, 1_449_855_906_000, id, None)
            );
        }
    }

    #[test]
    fn cluster_markers_live_in_the_listing_slot() {
        let scheme = KeyScheme::default();
        let batch = Generations::at(&scheme, 3600, 7_200_000);
        let m = batch.marker_in(&scheme, b"e-1", 4242);
        assert_eq!(m, marker(&scheme, 3600, 7_200_000, b"e-1", Some(4242)));
        for key in [&m.current, &m.previous, &m.registry] {
            assert_eq!(crate::cluster::key_slot(key), 4242);
        }
        assert_eq!(&*m.current, &scheme.seen_key_in(2, 4242)[..]);
        assert_eq!(
            shard_keys(&scheme, 1, Some(4242)),
            [scheme.seen_key_in(1, 4242)]
        );
        assert_eq!(shard_keys(&scheme, 1, None).len(), SHARDS as usize);
    }

    #[test]
    fn shard_numbers_are_pinned() {
        // Values of 64-bit FNV-1a computed independently; shard numbers
        // are in stored key names, so a change here loses remembered ids.
        for (id, shard) in [
            (&b"evt-1"[..], 4),
            (b"a", 12),
            (b"shardId-000000000000:4959", 36),
            (b"", 37),
            (b"presto-17", 49),
        ] {
            assert_eq!(shard_of(id), shard, "{:?}", String::from_utf8_lossy(id));
        }
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of(b"evt-1"), shard_of(b"evt-1"));
        let used: std::collections::BTreeSet<u64> = (0..1000)
            .map(|i| shard_of(format!("evt-{i}").as_bytes()))
            .collect();
        assert_eq!(used.len(), SHARDS as usize);
        let m = marker(
            &KeyScheme {
                prefix: "ls:".into(),
                ..KeyScheme::default()
            },
            604_800,
            0,
            b"x",
            None,
        );
        assert!(
            m.current.starts_with(b"ls:listingstats:seen:0:"),
            "{:?}",
            String::from_utf8_lossy(&m.current)
        );
        assert!(m.previous.starts_with(b"ls:listingstats:seen:-1:"));
    }
}
