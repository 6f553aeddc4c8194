//! Dedup generations' upkeep (see `listingstats_core::dedup`): after a
//! command remembered event ids, each registry it wrote under lists the
//! generation that just got a shard, and the shards of every generation no
//! look-up reaches any more are deleted (replicated as `DEL`/`HDEL`).
//!
//! The registry is read at most once per generation per database between
//! restarts (`SWEPT`). Module state, so no per-user ACL check: the caller
//! was allowed to write a shard under the same prefix.

use std::cell::RefCell;

use rustc_hash::FxHashMap;

use crate::redis::store::{RedisStore, Touched};
use listingstats_core::dedup::{shard_keys, stale_generations};

resident! {
    /// database -> registry key -> the generation whose sweep is done.
    /// Main-thread state only; a restart forgets it and sweeps once more.
    static SWEPT: RefCell<FxHashMap<i32, FxHashMap<Vec<u8>, i64>>> = RefCell::default();
}

/// Runs the upkeep for every registry `store` wrote ids under; call it
/// once the command's writes are done.
pub fn after_write(store: &mut RedisStore<'_>) {
    for touched in store.take_touched() {
        keep_generations(store, &touched);
    }
}

/// Lists the generation in its registry when it just got a shard, and
/// deletes the shards of every generation no look-up reaches.
fn keep_generations(store: &mut RedisStore<'_>, marker: &Touched) {
    // A registry name holding someone else's key of another type is left
    // alone: `state_hash_set` writes nothing to it and `state_hash_all`
    // refuses it.
    let listed_new = marker.listed_new;
    let db = store.db();
    let swept = SWEPT.with(|s| {
        s.borrow().get(&db).and_then(|m| m.get(&*marker.registry)) == Some(&marker.generation)
    });
    if swept && !listed_new {
        return; // The common case: one map look-up, no key opened.
    }
    if listed_new {
        store.state_hash_set(
            &marker.registry,
            marker.generation.to_string().as_bytes(),
            b"1",
        );
    }
    if swept {
        return;
    }
    let Ok(fields) = store.state_hash_all(&marker.registry) else {
        return;
    };
    let stale = stale_generations(fields.iter().map(|(f, _)| f.as_slice()), marker.generation);
    for old in stale {
        for shard in shard_keys(store.scheme(), old, marker.slot) {
            store.delete(&shard);
        }
        store.state_hash_del(&marker.registry, old.to_string().as_bytes());
    }
    SWEPT.with(|s| {
        s.borrow_mut()
            .entry(db)
            .or_default()
            .insert(marker.registry.to_vec(), marker.generation)
    });
}
