//! Keeps the per-day listing index (`listingstats_core::day_index`) in step
//! with the data.
//!
//! * Keyspace notifications: every hash write to a day-hash name adds it
//!   (HINCRBY from this module or any other client; a field's expiry) and
//!   makes its cached row unknown; `del`, `expired`, `evicted`,
//!   `rename_from`, `move_from` remove it; `rename_to`, `restore`,
//!   `copy_to`, `move_to` add it; any other event on the name (another
//!   type written over it) makes its row unknown.
//! * Server events: FLUSHDB/FLUSHALL clear, SWAPDB swaps.
//! * Rebuilds, by an in-process scan of every database, run in slices of
//!   about 1 ms (`redis::slices`), so the server keeps serving meanwhile:
//!   at module load, at the end of loading (restart, replica full sync,
//!   DEBUG RELOAD), and at the first query after a change of key-prefix or
//!   key-format. Notifications that arrive between slices update the
//!   partial index too. A `*` query that arrives during a rebuild waits for
//!   it (its client blocked), or, inside MULTI/EXEC or a script, completes
//!   it at once. One rebuild at a time: starting one ends the one before.
//!
//! `feed.rs` applies the events, `rebuild.rs` runs rebuilds, `warm.rs` fills
//! the cache ahead of queries; this file holds the state, the look-ups
//! queries make, and the cache's columns, which follow the metric
//! definitions.
//!
//! Everything here runs on Redis's main thread. The state is a
//! `thread_local` `RefCell`: notifications fire synchronously inside
//! writes, so a write made while the state is borrowed would re-enter it;
//! that panics (caught, logged) instead of deadlocking the server as a
//! mutex would.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use redis_module::Context;

use crate::budget::WARM_SLICE;
use crate::config;
use crate::redis::events;
use crate::redis::events::class;
use crate::redis::slices::{self, Sliced, Step};
use listingstats_core::day_index::{Cached, Index, Planned, Planner};
use listingstats_core::keys::KeyScheme;

mod feed;
mod rebuild;
pub mod warm;

use feed::{on_counters_written, on_key_event, on_server_event};
pub use rebuild::finish_rebuild;
use rebuild::start_rebuild;

pub struct State {
    pub index: Index,
    /// Counts cache warm-ups started (see [`warm`]); a pass ends when it
    /// is not the newest. `warming` while the newest runs.
    warm_epoch: u64,
    warming: bool,
    /// The key scheme the index is current for; `None` while it is stale
    /// or being rebuilt.
    built_for: Option<KeyScheme>,
    /// A rebuild under way.
    rebuild: Option<Rebuild>,
    /// Counts rebuilds started: a rebuild's slices end when it is not the
    /// newest.
    epoch: u64,
}

/// A rebuild's findings so far; its scan position lives in the sliced
/// work ([`RebuildWork`]).
struct Rebuild {
    scheme: KeyScheme,
    partial: Index,
}

resident! {
    static STATE: RefCell<State> = RefCell::new(State {
        index: Index::default(),
        warm_epoch: 0,
        warming: false,
        built_for: None,
        rebuild: None,
        epoch: 0,
    });
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

/// Moves whenever a day hash (or the metric registry) may have changed:
/// any notification the index feed gets, the module's own counter writes,
/// flushes, loads, SWAPDB. Two answers computed at the same epoch read the
/// same data (`share`).
static DATA_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// See [`DATA_EPOCH`].
pub fn data_epoch() -> u64 {
    DATA_EPOCH.load(std::sync::atomic::Ordering::Relaxed)
}

fn data_changed() {
    DATA_EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Marks the index stale and frees it; a rebuild starts at the next query
/// that needs it.
pub fn invalidate() {
    data_changed();
    with_state(|st| {
        st.built_for = None;
        st.rebuild = None;
        st.epoch += 1;
        st.index.clear(None);
    });
}

/// What a query reads the cache with: the columns' version, and the
/// column of each of its terms.
pub struct CacheUse {
    pub version: u64,
    pub columns: Vec<usize>,
    /// The column of each of the terms a whole row is read with.
    pub row_columns: Vec<usize>,
}

/// The metric definitions changed (METRIC SET/DEL here, or their hash
/// written by replication or another client): the cache's columns follow
/// (a changed set drops the cached values, and a warm-up fills them again).
/// This, the end of a rebuild and `CONFIG SET listingstats.cache` are the
/// only places the columns change; a query only looks them up.
pub fn metrics_changed(ctx: &Context) {
    warm::follow_metrics(ctx);
}

/// [`metrics_changed`] once, at the next timer pass, however many writes
/// to the registry announce it meanwhile: METRIC SET on a cluster writes a
/// copy per owned slot (thousands of notifications on the node and on its
/// replicas), and each must cost next to nothing.
fn metrics_changed_soon(ctx: &Context) {
    if SYNC_PENDING.with(|p| p.replace(true)) {
        return;
    }
    slices::start(ctx, MetricsSync);
}

thread_local! {
    /// A [`MetricsSync`] is scheduled.
    static SYNC_PENDING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The deferred [`metrics_changed`].
struct MetricsSync;

impl Sliced for MetricsSync {
    fn slice_len(&self) -> Duration {
        WARM_SLICE
    }

    fn what(&self) -> &'static str {
        "following the metric definitions"
    }

    fn failed(&mut self, _ctx: &Context) {
        SYNC_PENDING.with(|p| p.set(false));
    }

    fn run(&mut self, ctx: &Context, _deadline: Instant) -> Step {
        SYNC_PENDING.with(|p| p.set(false));
        metrics_changed(ctx);
        Step::Done
    }
}

/// Where a query's `terms` are in the cache, and where the terms of every
/// registered metric (`all`, see `FieldPlan::terms`) are: `None` when the
/// cache is off or does not hold exactly `all` (the definitions changed and
/// the columns have not followed yet): the query then reads hashes.
pub fn use_cache(enabled: bool, all: &[Vec<u8>], terms: &[Vec<u8>]) -> Option<CacheUse> {
    if !enabled {
        return None;
    }
    with_state(|st| {
        if st.index.columns().len() != all.len() {
            return None;
        }
        columns_of(st, all, terms)
    })
}

/// Makes the cache hold the columns `all` (the warm-up's, for the metric
/// definitions in force): `true` when they changed, and where they are.
fn set_columns(all: &[Vec<u8>]) -> (bool, Option<CacheUse>) {
    with_state(|st| {
        let changed = st.index.set_columns(true, all);
        (changed, columns_of(st, all, &[]))
    })
}

fn columns_of(st: &State, all: &[Vec<u8>], terms: &[Vec<u8>]) -> Option<CacheUse> {
    let column_of = |terms: &[Vec<u8>]| {
        terms
            .iter()
            .map(|t| st.index.column(t))
            .collect::<Option<Vec<usize>>>()
    };
    Some(CacheUse {
        version: st.index.columns_version(),
        columns: column_of(terms)?,
        row_columns: column_of(all)?,
    })
}

/// Runs `f` on the index (and its cache) in one borrow: for a run of
/// cache look-ups. `f` also learns whether the index is current (then a
/// day hash it does not hold does not exist). `f` must not call Redis (a
/// write would notify, and the notification would find the state
/// borrowed).
pub fn with_index<R>(f: impl FnOnce(&mut Index, bool) -> R) -> R {
    with_state(|st| f(&mut st.index, st.built_for.is_some()))
}

/// What [`cached`] found.
pub enum Lookup {
    /// `out` holds the query's values.
    Hit,
    /// Read the whole row (every column) and [`fill`] it.
    Miss,
    /// No such day hash: the index is current and does not hold it.
    Gone,
    /// Read the query's values from the hash; nothing to fill (the index
    /// is being rebuilt, or the columns changed).
    Read,
}

/// What a cache look-up means for a query: `out` (the query's terms)
/// takes the row's values on a hit. `current`: whether the index is current.
pub fn lookup(cached: Cached<'_>, current: bool, cache: &CacheUse, out: &mut [i64]) -> Lookup {
    match cached {
        Cached::Row(row) => {
            for (v, &c) in out.iter_mut().zip(&cache.columns) {
                *v = row[c];
            }
            Lookup::Hit
        }
        Cached::Unknown => Lookup::Miss,
        Cached::Absent if current => Lookup::Gone,
        Cached::Absent | Cached::Stale => Lookup::Read,
    }
}

/// A cell's values from the cache, into `out` (the query's terms).
pub fn cached(
    cache: &CacheUse,
    db: i32,
    day: NaiveDate,
    listing: &[u8],
    now_ms: i64,
    out: &mut [i64],
) -> Lookup {
    with_state(|st| {
        let current = st.built_for.is_some();
        let cached = st.index.cached(cache.version, db, day, listing, now_ms);
        lookup(cached, current, cache, out)
    })
}

/// Stores a row read from its hash after a [`Lookup::Miss`] (`row`: the
/// values of the terms `use_cache` was given as `all`, in that order).
pub fn fill(
    cache: &CacheUse,
    db: i32,
    day: NaiveDate,
    listing: &[u8],
    row: &[i64],
    expires: Option<i64>,
) {
    let mut ordered: smallvec::SmallVec<[i64; 8]> = smallvec::smallvec![0; row.len()];
    for (&v, &c) in row.iter().zip(&cache.row_columns) {
        ordered[c] = v;
    }
    with_state(|st| {
        st.index
            .fill(cache.version, db, day, listing, &ordered, expires)
    });
}

/// Subscribes to the events that keep the index current, and starts the
/// first build (the server may already hold data: MODULE LOAD).
pub fn init(ctx: &Context) -> Result<(), String> {
    events::on_keyspace(ctx, class::ALL & !class::STREAM, on_key_event)?;
    events::on_server_events(ctx, on_server_event);
    events::on_counters_written(on_counters_written);
    start_rebuild(ctx, config::current().keys.clone());
    Ok(())
}

/// One step of a `*` query's planning (see `Planner`): `None` while the
/// index is not current (a rebuild is under way, or is started here).
pub fn plan_step(ctx: &Context, planner: &mut Planner, budget: usize) -> Option<Planned> {
    let scheme = config::current().keys.clone();
    let (planned, rebuilding) = with_state(|st| {
        if st.built_for.as_ref() == Some(&scheme) {
            return (Some(planner.step(&mut st.index, budget)), true);
        }
        (
            None,
            st.rebuild.as_ref().is_some_and(|r| r.scheme == scheme),
        )
    });
    if planned.is_none() && !rebuilding {
        start_rebuild(ctx, scheme);
    }
    planned
}

/// How many day hashes of database `db` the index holds from `start` to
/// `end` (O(days)); `None` while it is not current.
pub fn cells_in(db: i32, start: NaiveDate, end: NaiveDate) -> Option<usize> {
    with_state(|st| {
        st.built_for.as_ref()?;
        Some(st.index.db(db).map_or(0, |d| d.count_in_range(start, end)))
    })
}

/// Ends a planner's pin on the index (planning abandoned).
pub fn release(planner: &mut Planner) {
    if planner.is_pinned() {
        with_state(|st| planner.release(&mut st.index));
    }
}

/// What INFO shows of the index and its cache.
pub struct Size {
    pub entries: usize,
    pub bytes: usize,
    pub building: bool,
    pub warming: bool,
    pub cache_columns: usize,
    pub cache_bytes: usize,
}

pub fn size() -> Size {
    STATE.with(|s| {
        let st = s.borrow();
        Size {
            entries: st.index.entries(),
            bytes: st.index.heap_bytes(),
            building: st.rebuild.is_some(),
            warming: st.warming,
            cache_columns: st.index.columns().len(),
            cache_bytes: st.index.cache_bytes(),
        }
    })
}
