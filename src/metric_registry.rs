//! The metric registry: the definitions QUERY, TOP, MIGRATE and the cache
//! read, kept in the plain hash `<prefix>listingstats:metrics` so they
//! persist and replicate (the commands that change them are in
//! `commands/metric.rs`).
//! On Redis Cluster every slot a node owns holds a copy
//! (`<prefix>listingstats:metrics:<slot>:{<tag>}`), so the definitions move
//! with the slots when the cluster is resharded and no node ever writes a
//! slot it does not own; the client sends METRIC SET/DEL to every master.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::Context;

use crate::config;
use crate::redis::cluster;
use crate::redis::events::{self, class, ServerEvent};
use crate::redis::reader::Reader;
use crate::redis::store::RedisStore;
use listingstats_core::keys::KeyScheme;
use listingstats_core::metrics::{registry, Metric};
use listingstats_core::{Error, Result};

/// The metrics a query may name: built-ins, overridden or extended by the
/// metrics hash. The definitions are read as module metadata, without the
/// caller's key permissions: a query returns only day-hash data, and every
/// day hash it reads is checked. METRIC LIST, which returns the definitions
/// themselves, checks (`listed_registry`).
pub fn current_registry(ctx: &Context, keys: &KeyScheme) -> Result<Vec<Metric>> {
    let Some(key) = registry_key(ctx, keys)? else {
        return Ok(registry(&[]));
    };
    Ok(registry(&Reader::unchecked(ctx).hash_all(&key)?))
}

/// The registry as METRIC LIST returns it: the caller must be allowed to
/// `HGETALL` the registry hash.
pub fn listed_registry(ctx: &Context, keys: &KeyScheme) -> Result<Vec<Metric>> {
    let Some(key) = registry_key(ctx, keys)? else {
        return Ok(registry(&[]));
    };
    Ok(registry(&Reader::new(ctx).hash_all(&key)?))
}

/// The hash the definitions are read from: the one registry hash, or on
/// Redis Cluster the copy in the first slot this node serves (owns, or on
/// a replica its master owns) that has one
/// (`None`: no copy, built-ins only).
fn registry_key(ctx: &Context, keys: &KeyScheme) -> Result<Option<Vec<u8>>> {
    if !cluster::enabled() {
        return Ok(Some(keys.metrics_key()));
    }
    let epoch = (COPIES_EPOCH.load(Ordering::Relaxed), cluster::changes());
    if let Some((at, slot)) = COPY_SLOT.with(Cell::get) {
        if at == epoch {
            return Ok(slot.map(|s| keys.metrics_key_in(s)));
        }
    }
    let view = cluster::view(ctx, false)?;
    let reader = Reader::unchecked(ctx);
    let mut found = None;
    for slot in view.served() {
        if !reader.hash_all(&keys.metrics_key_in(slot))?.is_empty() {
            found = Some(slot);
            break;
        }
    }
    COPY_SLOT.with(|c| c.set(Some((epoch, found))));
    Ok(found.map(|s| keys.metrics_key_in(s)))
}

/// Bumped when a registry copy may have appeared, changed or gone (its key
/// changed, moved in or out by a reshard, a flush, a load).
static COPIES_EPOCH: AtomicU64 = AtomicU64::new(0);

/// (copies epoch, cluster changes): when either moves, look again.
type Epoch = (u64, u64);

thread_local! {
    /// The slot whose copy was found, at an epoch (see `registry_key`).
    static COPY_SLOT: Cell<Option<(Epoch, Option<u16>)>> = const { Cell::new(None) };
}

/// On a cluster, follows what can move registry copies.
pub fn init(ctx: &Context) -> std::result::Result<(), String> {
    if !cluster::enabled() {
        return Ok(());
    }
    events::on_keyspace(ctx, class::ALL, |_, ev| {
        if ev.key.windows(COPY_MARK.len()).any(|w| w == COPY_MARK) {
            COPIES_EPOCH.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    events::on_server_events(ctx, |_, ev| {
        if matches!(
            ev,
            ServerEvent::Flush(_) | ServerEvent::SwapDb(..) | ServerEvent::Loading { .. }
        ) {
            COPIES_EPOCH.fetch_add(1, Ordering::Relaxed);
        }
    });
    Ok(())
}

const COPY_MARK: &[u8] = b"listingstats:metrics";
/// A field every cluster copy holds, so a copy exists even with no stored
/// metric; not a valid metric name, so the registry ignores it.
const COPY_FIELD: &[u8] = b"~copy";
const COPY_NOTE: &[u8] = b"listingstats metric definitions, one copy per slot";

/// Writes a change to the registry: the one hash, or on a cluster every
/// copy in the slots this node owns (a copy that is missing gets every
/// definition). `set`: a new definition; otherwise `name` is removed.
/// Returns whether `name` had a stored definition before.
pub fn change(ctx: &Context, name: &str, set: Option<&[u8]>) -> Result<bool> {
    let settings = config::current();
    let keys = &settings.keys;
    let mut store = RedisStore::new(ctx, keys);
    if !cluster::enabled() {
        let key = keys.metrics_key();
        return match set {
            // SET's reply does not say, so nothing is read.
            Some(value) => store.hash_set(&key, name.as_bytes(), value).map(|()| false),
            None => store.hash_del(&key, name.as_bytes()),
        };
    }
    let view = cluster::view(ctx, true)?;
    if let Some(slot) = cluster::split_slot(ctx, &view) {
        return Err(Error::Cluster(format!(
            "TRYAGAIN slot {slot} is being resharded on this node; change metrics when it has moved"
        )));
    }
    let stored = match registry_key(ctx, keys)? {
        Some(key) => Reader::unchecked(ctx).hash_all(&key)?,
        None => Vec::new(),
    };
    let had = stored.iter().any(|(f, _)| f == name.as_bytes());
    let reader = Reader::unchecked(ctx);
    for slot in view.owned() {
        let key = keys.metrics_key_in(slot);
        if reader.hash_all(&key)?.is_empty() {
            store.hash_set(&key, COPY_FIELD, COPY_NOTE)?;
            for (f, v) in &stored {
                if f != name.as_bytes() && f != COPY_FIELD {
                    store.hash_set(&key, f, v)?;
                }
            }
        }
        match set {
            Some(value) => store.hash_set(&key, name.as_bytes(), value)?,
            None => {
                store.hash_del(&key, name.as_bytes())?;
            }
        }
    }
    Ok(had)
}
