//! The metric registry: the definitions QUERY, TOP, MIGRATE and the cache
//! read, kept in the plain hash `<prefix>listingstats:metrics` so they
//! persist and replicate (the commands that change them are in
//! `commands/metric.rs`).
//! On Redis Cluster each master keeps one copy,
//! `<prefix>listingstats:metrics:<slot>:{<tag>}` in the lowest slot it owns
//! (no node ever writes a slot it does not own), with a version (see the
//! core's `registry_copy`). METRIC SET/DEL sent to any master change its
//! copy and are sent to every other master over the cluster bus before the
//! reply; every second each master sends its registry to the others, and a
//! node adopts any newer one, so a node that was down, lost its copy in a
//! reshard, or joined later catches up. Replicas read their master's copy.
//! Copies of the older layout (one per owned slot, no version) are read
//! until the first change, which deletes them.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::Context;

use crate::config;
use crate::redis::bus;
use crate::redis::cluster;
use crate::redis::events::{self, class, ServerEvent};
use crate::redis::reader::Reader;
use crate::redis::store::RedisStore;
use listingstats_core::keys::KeyScheme;
use listingstats_core::metrics::{registry, Metric};
use listingstats_core::registry_copy::{changed, read_copy, Definitions, Version, VERSION_FIELD};
use listingstats_core::{Error, Result};

/// The metrics a query may name: built-ins, overridden or extended by the
/// metrics hash. The definitions are read as module metadata, without the
/// caller's key permissions: a query returns only day-hash data, and every
/// day hash it reads is checked. METRIC LIST, which returns the definitions
/// themselves, checks (`listed_registry`).
pub fn current_registry(ctx: &Context, keys: &KeyScheme) -> Result<Vec<Metric>> {
    if cluster::enabled() {
        return Ok(registry(&cluster_definitions(ctx, keys)?));
    }
    Ok(registry(
        &Reader::unchecked(ctx).hash_all(&keys.metrics_key())?,
    ))
}

/// On a cluster: the newest copy's definitions, or while this master has
/// none (a reshard just moved it away; it is written again at once) the
/// last ones it knew.
fn cluster_definitions(ctx: &Context, keys: &KeyScheme) -> Result<Definitions> {
    Ok(match newest_copy(ctx, keys)? {
        Some((_, defs, _)) => defs,
        None => KNOWN.with(|k| k.borrow().clone().map(|k| k.0).unwrap_or_default()),
    })
}

/// The registry as METRIC LIST returns it: the caller must be allowed to
/// `HGETALL` the registry hash.
pub fn listed_registry(ctx: &Context, keys: &KeyScheme) -> Result<Vec<Metric>> {
    let Some(key) = registry_key(ctx, keys)? else {
        return Ok(registry(&cluster_definitions(ctx, keys)?));
    };
    Ok(registry(&Reader::new(ctx).hash_all(&key)?))
}

/// The hash the definitions are read from: the one registry hash, or on
/// Redis Cluster the newest copy in the slots this node serves (owns, or on
/// a replica its master owns); `None`: no copy, built-ins only.
fn registry_key(ctx: &Context, keys: &KeyScheme) -> Result<Option<Vec<u8>>> {
    if !cluster::enabled() {
        return Ok(Some(keys.metrics_key()));
    }
    Ok(newest_copy(ctx, keys)?.map(|(slot, ..)| keys.metrics_key_in(slot)))
}

/// On a cluster: the newest copy this node serves, its definitions and
/// version. The slot found is cached until a copy or the slots change.
fn newest_copy(ctx: &Context, keys: &KeyScheme) -> Result<Option<(u16, Definitions, Version)>> {
    let epoch = (COPIES_EPOCH.load(Ordering::Relaxed), cluster::changes());
    let reader = Reader::unchecked(ctx);
    if let Some((at, slot)) = COPY_SLOT.with(Cell::get) {
        if at == epoch {
            return Ok(match slot {
                Some(slot) => {
                    let (defs, version) = read_copy(&reader.hash_all(&keys.metrics_key_in(slot))?);
                    Some((slot, defs, version))
                }
                None => None,
            });
        }
    }
    let view = cluster::view(ctx, false)?;
    let mut best: Option<(u16, Definitions, Version)> = None;
    for slot in view.served() {
        let fields = reader.hash_all(&keys.metrics_key_in(slot))?;
        if fields.is_empty() {
            continue;
        }
        let (defs, version) = read_copy(&fields);
        if best.as_ref().is_none_or(|b| version > b.2) {
            best = Some((slot, defs, version));
        }
    }
    COPY_SLOT.with(|c| c.set(Some((epoch, best.as_ref().map(|b| b.0)))));
    if let Some((_, defs, version)) = &best {
        KNOWN.with(|k| *k.borrow_mut() = Some((defs.clone(), version.clone())));
    }
    Ok(best)
}

/// Bumped when a registry copy may have appeared, changed or gone (its key
/// changed, moved in or out by a reshard, a flush, a load).
static COPIES_EPOCH: AtomicU64 = AtomicU64::new(0);

/// (copies epoch, cluster changes): when either moves, look again.
type Epoch = (u64, u64);

resident! {
    /// On a cluster, the registry this node last read or wrote.
    static KNOWN: RefCell<Option<(Definitions, Version)>> = const { RefCell::new(None) };
}

thread_local! {
    /// The slot whose copy was found, at an epoch (see `registry_key`).
    static COPY_SLOT: Cell<Option<(Epoch, Option<u16>)>> = const { Cell::new(None) };
    /// What `repair` last saw when it found one copy in place: (copies
    /// epoch, cluster changes, the copy's slot, slots owned).
    static REPAIRED: Cell<Option<(u64, u64, u16, usize)>> = const { Cell::new(None) };
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
            KNOWN.with(|k| *k.borrow_mut() = None);
        }
    });
    Ok(())
}

const COPY_MARK: &[u8] = b"listingstats:metrics";
/// A field every cluster copy holds, so a copy exists even with no stored
/// metric; not a valid metric name, so the registry ignores it.
const COPY_FIELD: &[u8] = b"~copy";
const COPY_NOTE: &[u8] = b"listingstats metric definitions, this master's copy";

/// What a change did.
pub struct Change {
    /// Whether the name had a stored definition before.
    pub had: bool,
    /// On a cluster, the registry after the change, for the other masters
    /// (`None`: nothing changed, or not a cluster).
    pub cluster: Option<(Version, Definitions)>,
}

/// Writes a change to the registry: the one hash, or on a cluster this
/// master's copy, under a new version. `set`: a new definition; otherwise
/// `name` is removed.
pub fn change(ctx: &Context, name: &str, set: Option<&[u8]>) -> Result<Change> {
    let settings = config::current();
    let keys = &settings.keys;
    let mut store = RedisStore::new(ctx, keys);
    if !cluster::enabled() {
        let key = keys.metrics_key();
        let had = match set {
            // SET's reply does not say, so nothing is read.
            Some(value) => store.hash_set(&key, name.as_bytes(), value).map(|()| false),
            None => store.hash_del(&key, name.as_bytes()),
        }?;
        return Ok(Change { had, cluster: None });
    }
    let view = cluster::view(ctx, true)?;
    if let Some(slot) = cluster::split_slot(ctx, &view) {
        return Err(Error::Cluster(format!(
            "TRYAGAIN slot {slot} is being resharded on this node; change metrics when it has moved"
        )));
    }
    let (defs, version) = newest_copy(ctx, keys)?
        .map(|(_, d, v)| (d, v))
        .unwrap_or_default();
    let (defs, had) = changed(defs, name.as_bytes(), set);
    if set.is_none() && !had {
        return Ok(Change { had, cluster: None });
    }
    let version = version.next(&bus::my_id());
    write_copy(ctx, &mut store, &defs, &version, true)?;
    Ok(Change {
        had,
        cluster: Some((version, defs)),
    })
}

/// Makes `defs` at `version` this master's one copy: written in the lowest
/// slot it owns, every other copy it holds deleted. `checked`: the first
/// write is checked against the caller's ACL (METRIC SET/DEL); the rest is
/// module state.
fn write_copy(
    ctx: &Context,
    store: &mut RedisStore<'_>,
    defs: &Definitions,
    version: &Version,
    checked: bool,
) -> Result<()> {
    let keys = &config::current().keys;
    let view = cluster::view(ctx, false)?;
    let moving: Vec<u16> = view.moving().into_iter().map(|(s, _)| s).collect();
    let target = view
        .owned()
        .find(|s| !moving.contains(s))
        .ok_or_else(|| Error::invalid("this node owns no slot: change metrics on a master"))?;
    let key = keys.metrics_key_in(target);
    if checked {
        store.hash_set(&key, VERSION_FIELD, &version.encode())?;
    } else {
        store.state_hash_set(&key, VERSION_FIELD, &version.encode());
    }
    let old = store.state_hash_all(&key)?;
    for (f, _) in &old {
        let keep = f == VERSION_FIELD || f == COPY_FIELD || defs.iter().any(|(d, _)| d == f);
        if !keep {
            store.state_hash_del(&key, f);
        }
    }
    store.state_hash_set(&key, COPY_FIELD, COPY_NOTE);
    for (f, v) in defs {
        if !old.iter().any(|(o, ov)| o == f && ov == v) {
            store.state_hash_set(&key, f, v);
        }
    }
    for slot in view
        .served()
        .filter(|&s| s != target && !moving.contains(&s))
    {
        let other = keys.metrics_key_in(slot);
        if store.peek(&other).hash {
            store.delete(&other);
        }
    }
    COPIES_EPOCH.fetch_add(1, Ordering::Relaxed);
    KNOWN.with(|k| *k.borrow_mut() = Some((defs.clone(), version.clone())));
    Ok(())
}

/// Every second on a master whose slots are not moving: keeps exactly one
/// copy, in its lowest slot. A reshard can move a copy away (the master
/// then answers from the registry it last knew until this writes it
/// again) or bring a second one in (deleted here).
pub fn repair(ctx: &Context) {
    let keys = config::current().keys.clone();
    let Ok(view) = cluster::view(ctx, false) else {
        return;
    };
    let Some(target) = view.owned().next() else {
        return;
    };
    if !view.moving().is_empty() {
        return;
    }
    // Copies change only through their keys' events (the epoch) or this
    // node's slots: nothing to look at when neither moved since the last
    // pass found one copy in place.
    let state = (
        COPIES_EPOCH.load(Ordering::Relaxed),
        cluster::changes(),
        target,
        view.owned().count(),
    );
    if REPAIRED.with(Cell::get) == Some(state) {
        return;
    }
    let reader = Reader::unchecked(ctx);
    let copies: Vec<u16> = view
        .served()
        .filter(|&s| {
            reader
                .hash_all(&keys.metrics_key_in(s))
                .is_ok_and(|f| !f.is_empty())
        })
        .collect();
    if copies == [target] {
        REPAIRED.with(|r| r.set(Some(state)));
        return;
    }
    let newest = match newest_copy(ctx, &keys) {
        Ok(Some((_, defs, version))) => Some((defs, version)),
        Ok(None) => KNOWN.with(|k| k.borrow().clone()),
        Err(_) => None,
    };
    let Some((defs, version)) = newest else {
        return;
    };
    if let Ok(mut store) = RedisStore::for_user(ctx, &keys, None) {
        if let Err(e) = write_copy(ctx, &mut store, &defs, &version, false) {
            ctx.log_warning(&format!(
                "listingstats: could not write the metric registry: {e}"
            ));
        }
    }
}

/// Another master's registry: adopted when newer than this node's (on a
/// master; a replica follows its own master). `true` when adopted: the
/// caller tells the query cache.
pub fn adopt(ctx: &Context, version: &Version, defs: &Definitions) -> Result<bool> {
    let keys = config::current().keys.clone();
    let view = cluster::view(ctx, false)?;
    // Not while slots move: the copy's slot could be one of them.
    if view.owned().next().is_none() || !view.moving().is_empty() {
        return Ok(false);
    }
    let own = newest_copy(ctx, &keys)?
        .map(|(_, _, v)| v)
        .unwrap_or_default();
    if *version <= own {
        return Ok(false);
    }
    // A timer's context has no client: no caller to check.
    let mut store = RedisStore::for_user(ctx, &keys, None)?;
    write_copy(ctx, &mut store, defs, version, false)?;
    Ok(true)
}

/// This master's registry when it has a version (a change was made under
/// this layout), for the other masters.
pub fn own_versioned(ctx: &Context) -> Option<(Version, Definitions)> {
    let keys = config::current().keys.clone();
    let view = cluster::view(ctx, false).ok()?;
    view.owned().next()?;
    let (defs, version) = match newest_copy(ctx, &keys).ok()? {
        Some((_, defs, version)) => (defs, version),
        None => KNOWN.with(|k| k.borrow().clone())?,
    };
    (version.counter > 0).then_some((version, defs))
}
