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
//! Everything here runs on Redis's main thread. The state is a
//! `thread_local` `RefCell`: notifications fire synchronously inside
//! writes, so a write made while the state is borrowed would re-enter it;
//! that panics (caught, logged) instead of deadlocking the server as a
//! mutex would.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use redis_module::Context;

use crate::budget::{REBUILD_SLICE, WARM_SLICE};
use crate::config;
use crate::redis::context::{db_size, select_db, selected_db};
use crate::redis::events::{class, KeyEvent, ServerEvent, Written};
use crate::redis::reader::Reader;
use crate::redis::scan::Cursor;
use crate::redis::slices::{self, Sliced, Step};
use crate::redis::{events, slices::run_now};
use crate::stats;
use listingstats_core::day_index::{Cached, Index, Planned, Planner};
use listingstats_core::keys::KeyScheme;

pub mod warm;

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

thread_local! {
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

/// Marks the index stale and frees it; a rebuild starts at the next query
/// that needs it.
pub fn invalidate() {
    with_state(|st| {
        st.built_for = None;
        st.rebuild = None;
        st.epoch += 1;
        st.index.clear(None);
    });
}

/// What one notification does to the index (and its cache). `true` when
/// the key may have a new expiry, which the caller reads (outside the
/// state: opening a key can expire it, which notifies).
fn apply(index: &mut Index, e: &KeyEvent<'_>, day: NaiveDate, listing: &[u8]) -> bool {
    // By event name, not class: Valkey 9 sends a hash field's expiry
    // (`hexpired`) in the `expired` class, and the key stays.
    // `overwritten`: the key event of another value written over the name
    // (Redis 7.2+, Valkey); a hash that arrives in its place (RESTORE,
    // COPY ... REPLACE) sends its own event next and is added again.
    let removes = matches!(
        e.event,
        b"del" | b"rename_from" | b"move_from" | b"expired" | b"evicted" | b"overwritten"
    );
    let arrives = matches!(e.event, b"rename_to" | b"restore" | b"copy_to" | b"move_to");
    let hash_write = e.class & (class::HASH | class::EXPIRED | class::EVICTED) != 0;
    if removes {
        index.remove(e.db, day, listing);
        false
    } else if hash_write || arrives {
        // Indexed, or its cached row made unknown: a hash was written.
        index.add(e.db, day, listing);
        arrives
    } else if e.event == b"expire" {
        true
    } else {
        // `persist`, or another type written over the name (SET,
        // SORT ... STORE, SUNIONSTORE, ...): read it again.
        if e.event != b"persist" {
            index.forget(e.db, day, listing);
        }
        false
    }
}

fn on_key_event(ctx: &Context, e: &KeyEvent<'_>) {
    if is_registry(e.key) {
        // Replication, a restore or another client changed the metric
        // definitions: the cache's columns follow.
        metrics_changed_soon(ctx);
        return;
    }
    let Some(expiry_of) = with_state(|st| {
        let (scheme, index) = match (&st.built_for, &mut st.rebuild) {
            (Some(scheme), _) => (scheme, &mut st.index),
            (None, Some(rebuild)) => (&rebuild.scheme, &mut rebuild.partial),
            // Stale: the rebuild that follows finds the day hashes.
            (None, None) => return None,
        };
        let (day, listing) = scheme.parse_day_key(e.key)?;
        Some((apply(index, e, day, listing) && st.built_for.is_some()).then_some(day))
    }) else {
        return;
    };
    if e.class & (class::HASH | class::GENERIC) != 0 {
        // A day hash may exist from now on: another value written over it
        // must be seen (a no-op after the first time).
        events::watch_overwrites(ctx);
    }
    if let Some(day) = expiry_of {
        if let Some(at) = Reader::unchecked(ctx).expiry(e.key) {
            with_state(|st| st.index.expires(e.db, day, at));
        }
    }
}

/// Whether `key` is the metric registry hash (or, on a cluster, a copy).
fn is_registry(key: &[u8]) -> bool {
    let settings = config::current();
    key.strip_prefix(settings.keys.prefix.as_bytes())
        .is_some_and(|rest| rest.starts_with(b"listingstats:metrics"))
}

/// The module wrote counters of a day hash (its own handlers do not get
/// the notification): a new hash is indexed (its row unknown), a known
/// one's cached row takes the values.
fn on_counters_written(ctx: &Context, db: i32, key: &[u8], fields: &Written<'_>, created: bool) {
    let day_hash = with_state(|st| {
        let current = st.built_for.is_some();
        let (scheme, index) = match (&st.built_for, &mut st.rebuild) {
            (Some(scheme), _) => (scheme, &mut st.index),
            (None, Some(rebuild)) => (&rebuild.scheme, &mut rebuild.partial),
            (None, None) => return false,
        };
        let Some((day, listing)) = scheme.parse_day_key(key) else {
            return false;
        };
        if created {
            index.add(db, day, listing);
        } else if current {
            index.written(db, day, listing, fields);
        }
        true
    });
    if created && day_hash {
        events::watch_overwrites(ctx);
    }
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
/// (a changed set drops the cached values), and a warm-up fills them again.
/// This, the end of a rebuild and `CONFIG SET listingstats.cache` are the
/// only places the columns change; a query only looks them up.
pub fn metrics_changed(ctx: &Context) {
    if config::current().cache {
        warm::start(ctx);
    }
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

/// Makes the cache hold the columns `all` (or nothing when `enabled` is
/// false), and says where `terms` are: `true` when the columns changed.
fn columns(enabled: bool, all: &[Vec<u8>], terms: &[Vec<u8>]) -> (bool, Option<CacheUse>) {
    with_state(|st| {
        let changed = st.index.set_columns(enabled, all);
        if !enabled {
            return (changed, None);
        }
        (changed, columns_of(st, all, terms))
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

fn on_server_event(ctx: &Context, e: &ServerEvent<'_>) {
    match *e {
        ServerEvent::Flush(which) => with_state(|st| {
            st.index.clear(which);
            if let Some(rebuild) = &mut st.rebuild {
                rebuild.partial.clear(which);
            }
        }),
        ServerEvent::SwapDb(a, b) => {
            let restart = with_state(|st| {
                st.index.swap(a, b);
                // The scan was walking databases that just traded places.
                st.rebuild.take().map(|r| r.scheme)
            });
            if let Some(scheme) = restart {
                start_rebuild(ctx, scheme);
            }
        }
        ServerEvent::Loading { ended } => {
            // Loading replaces the dataset: rebuild from what was loaded.
            invalidate();
            if ended {
                start_rebuild(ctx, config::current().keys.clone());
            }
        }
        ServerEvent::ConfigChanged(names) => {
            // Another key scheme: the index names other keys. Free it now;
            // the next query that needs it rebuilds it.
            let keys = config::current().keys.clone();
            if with_state(|st| st.built_for.as_ref().is_some_and(|b| *b != keys)) {
                invalidate();
            }
            if names
                .iter()
                .any(|n| n.eq_ignore_ascii_case(b"listingstats.cache"))
            {
                if config::current().cache {
                    warm::start(ctx);
                } else {
                    // Off: the memory goes back now, not at the next query.
                    warm::stop();
                    with_state(|st| st.index.set_columns(false, &[]));
                }
            }
        }
        ServerEvent::BecameMaster => {}
    }
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

/// Ends a planner's pin on the index (planning abandoned).
pub fn release(planner: &mut Planner) {
    if planner.is_pinned() {
        with_state(|st| planner.release(&mut st.index));
    }
}

/// Completes the rebuild under way at once (for callers that cannot wait).
/// Its pending slice then finds the work done and ends.
pub fn finish_rebuild(ctx: &Context) {
    let epoch = with_state(|st| st.rebuild.is_some().then_some(st.epoch));
    if let Some(epoch) = epoch {
        let mut work = RebuildWork::new(epoch);
        run_now(ctx, &mut work);
    }
}

/// Starts rebuilding for `scheme`, ending any other rebuild.
fn start_rebuild(ctx: &Context, scheme: KeyScheme) {
    let epoch = with_state(|st| {
        st.built_for = None;
        st.index.clear(None);
        st.epoch += 1;
        st.rebuild = Some(Rebuild {
            scheme,
            partial: Index::default(),
        });
        st.epoch
    });
    slices::start(ctx, RebuildWork::new(epoch));
}

/// The scan of one rebuild: which database, where in it.
struct RebuildWork {
    epoch: u64,
    db: i32,
    cursor: Cursor,
    /// The database whose keys were last reserved room for.
    reserved: i32,
}

impl RebuildWork {
    fn new(epoch: u64) -> RebuildWork {
        RebuildWork {
            epoch,
            db: 0,
            cursor: Cursor::new(),
            reserved: -1,
        }
    }
}

impl Sliced for RebuildWork {
    fn slice_len(&self) -> Duration {
        REBUILD_SLICE
    }

    fn what(&self) -> &'static str {
        "an index rebuild"
    }

    fn failed(&mut self, _ctx: &Context) {
        // The index stays stale; the next query that needs it starts over.
        invalidate();
    }

    fn run(&mut self, ctx: &Context, deadline: Instant) -> Step {
        let Some(scheme) = with_state(|st| {
            (st.epoch == self.epoch)
                .then(|| st.rebuild.as_ref().map(|r| r.scheme.clone()))
                .flatten()
        }) else {
            return Step::Done; // Replaced, completed, or invalidated.
        };
        let original = selected_db(ctx);
        let mut calls = 0u32;
        let mut found: Vec<(i32, NaiveDate, Vec<u8>)> = Vec::new();
        let finished = loop {
            if !select_db(ctx, self.db) {
                break true; // Past the last database.
            }
            let db = self.db;
            if self.reserved != db {
                self.reserved = db;
                // Room for this database's day hashes at once (an upper
                // bound: its keys).
                let keys = usize::try_from(db_size(ctx)).unwrap_or(0);
                with_state(|st| {
                    if let Some(rebuild) = st.rebuild.as_mut() {
                        rebuild.partial.reserve(keys.min(1 << 24));
                    }
                });
            }
            // A scan writes nothing, so no notification borrows the state
            // meanwhile; findings are added after the batch.
            let more = self.cursor.scan_batch(ctx, |k| {
                if k.is_hash() {
                    if let Some((day, listing)) = scheme.parse_day_key(k.name) {
                        found.push((db, day, listing.to_vec()));
                    }
                }
            });
            if !more {
                self.db += 1;
                self.cursor = Cursor::new();
            }
            calls += 1;
            if calls.is_multiple_of(64) && Instant::now() >= deadline {
                break false;
            }
        };
        select_db(ctx, original);
        if !found.is_empty() {
            events::watch_overwrites(ctx);
        }
        let step = with_state(|st| {
            let Some(rebuild) = st.rebuild.as_mut() else {
                return Step::Done;
            };
            for (db, day, listing) in &found {
                rebuild.partial.add(*db, *day, listing);
            }
            if !finished {
                return Step::More;
            }
            if let Some(mut done) = st.rebuild.take() {
                stats::INDEX_REBUILDS.add(1);
                done.partial.trim();
                st.index = done.partial;
                st.built_for = Some(done.scheme);
            }
            Step::Done
        });
        if step == Step::Done {
            // A new index has an empty cache: fill it ahead of queries.
            warm::start(ctx);
        }
        step
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
