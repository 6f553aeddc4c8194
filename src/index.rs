//! Keeps the per-day listing index (`listingstats_core::day_index`) in step with the data.
//!
//! * Keyspace notifications: every hash write to a day-hash name adds it
//!   (HINCRBY from this module or any other client); `del`, `expired`,
//!   `evicted`, `rename_from`, `move_from` remove it; `rename_to`,
//!   `restore`, `copy_to`, `move_to` add it.
//! * Server events: FLUSHDB/FLUSHALL clear, SWAPDB swaps.
//! * Rebuilds, by an in-process scan of every database, run in slices of
//!   about 1 ms from a timer, so the server keeps serving meanwhile: at
//!   module load, at the end of loading (restart, replica full sync, DEBUG
//!   RELOAD), and at the first query after a change of key-prefix or
//!   key-format. Notifications that arrive between slices update the
//!   partial index too. A `*` query that arrives during a rebuild waits for
//!   it (its client blocked), or, inside MULTI/EXEC or a script, completes
//!   it at once.
//!
//! Everything here runs on Redis's main thread.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use redis_module::{raw, Context};

use crate::config;
use crate::stats;
use crate::store::string_bytes;
use listingstats_core::day_index::Index;
use listingstats_core::keys::KeyScheme;

pub struct State {
    pub index: Index,
    /// The key scheme the index is current for; `None` while it is stale
    /// or being rebuilt.
    built_for: Option<KeyScheme>,
    /// A rebuild under way.
    rebuild: Option<Rebuild>,
}

/// A rebuild: the scan position and what it has found so far.
struct Rebuild {
    scheme: KeyScheme,
    db: i32,
    cursor: Cursor,
    partial: Index,
}

/// A scan cursor, used only on Redis's main thread.
struct Cursor(*mut raw::RedisModuleScanCursor);

// SAFETY: the cursor is created, used and destroyed on Redis's main thread
// only; the mutex around State is there for Rust's statics, not threads.
unsafe impl Send for Cursor {}

impl Cursor {
    fn new() -> Cursor {
        // SAFETY: plain API call.
        Cursor(unsafe { api!(RedisModule_ScanCursorCreate)() })
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        // SAFETY: created by ScanCursorCreate, destroyed once.
        unsafe { api!(RedisModule_ScanCursorDestroy)(self.0) };
    }
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| {
    Mutex::new(State {
        index: Index::default(),
        built_for: None,
        rebuild: None,
    })
});

fn state() -> MutexGuard<'static, State> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Marks the index stale and frees it; a rebuild starts at the next query
/// that needs it.
pub fn invalidate() {
    let mut st = state();
    st.built_for = None;
    st.rebuild = None;
    st.index.clear(None);
}

fn selected_db(ctx: *mut raw::RedisModuleCtx) -> i32 {
    // SAFETY: live context.
    unsafe { api!(RedisModule_GetSelectedDb)(ctx) }
}

/// What one notification does to the index.
fn apply(index: &mut Index, db: i32, kind: c_int, event: &[u8], day: NaiveDate, listing: &[u8]) {
    let removes = kind & (raw::REDISMODULE_NOTIFY_EXPIRED | raw::REDISMODULE_NOTIFY_EVICTED) != 0
        || matches!(event, b"del" | b"rename_from" | b"move_from");
    let adds = kind & raw::REDISMODULE_NOTIFY_HASH != 0
        || matches!(event, b"rename_to" | b"restore" | b"copy_to" | b"move_to");
    if removes {
        index.remove(db, day, listing);
    } else if adds {
        index.add(db, day, listing);
    }
}

extern "C" fn on_key_event(
    ctx: *mut raw::RedisModuleCtx,
    kind: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    // Never unwind into Redis from a notification.
    let _ = std::panic::catch_unwind(|| {
        let mut guard = state();
        let st = &mut *guard;
        let (scheme, index) = match (&st.built_for, &mut st.rebuild) {
            (Some(scheme), _) => (scheme, &mut st.index),
            (None, Some(rebuild)) => (&rebuild.scheme, &mut rebuild.partial),
            (None, None) => return,
        };
        let Some((day, listing)) = scheme.parse_day_key(string_bytes(key)) else {
            return;
        };
        // SAFETY: Redis passes a NUL-terminated event name.
        let event = unsafe { CStr::from_ptr(event) }.to_bytes();
        apply(index, selected_db(ctx), kind, event, day, listing);
    });
    raw::REDISMODULE_OK as c_int
}

extern "C" fn on_flush(
    _ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    sub: u64,
    data: *mut c_void,
) {
    if sub != raw::REDISMODULE_SUBEVENT_FLUSHDB_START || data.is_null() {
        return;
    }
    // SAFETY: Redis passes a RedisModuleFlushInfo for this event.
    let db = unsafe { (*data.cast::<raw::RedisModuleFlushInfo>()).dbnum };
    let which = (db >= 0).then_some(db);
    let mut st = state();
    st.index.clear(which);
    if let Some(rebuild) = &mut st.rebuild {
        rebuild.partial.clear(which);
    }
}

extern "C" fn on_swap(
    ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    _sub: u64,
    data: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: Redis passes a RedisModuleSwapDbInfo for this event.
    let info = unsafe { &*data.cast::<raw::RedisModuleSwapDbInfo>() };
    let mut st = state();
    st.index.swap(info.dbnum_first, info.dbnum_second);
    if let Some(rebuild) = st.rebuild.take() {
        // The scan was walking databases that just traded places.
        drop(st);
        start_rebuild(ctx, rebuild.scheme);
    }
}

extern "C" fn on_loading(
    ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    sub: u64,
    _data: *mut c_void,
) {
    // Loading replaces the dataset: rebuild from what was loaded.
    invalidate();
    if sub == raw::REDISMODULE_SUBEVENT_LOADING_ENDED
        || sub == raw::REDISMODULE_SUBEVENT_LOADING_FAILED
    {
        start_rebuild(ctx, config::current().keys.clone());
    }
}

/// Subscribes to the events that keep the index current, and starts the
/// first build (the server may already hold data: MODULE LOAD).
pub fn init(ctx: &Context) -> Result<(), String> {
    let kinds = raw::REDISMODULE_NOTIFY_HASH
        | raw::REDISMODULE_NOTIFY_GENERIC
        | raw::REDISMODULE_NOTIFY_EXPIRED
        | raw::REDISMODULE_NOTIFY_EVICTED;
    // SAFETY: called from OnLoad with a live context; the callbacks are
    // plain functions that live as long as the module.
    unsafe {
        if api!(RedisModule_SubscribeToKeyspaceEvents)(ctx.ctx, kinds, Some(on_key_event))
            != raw::REDISMODULE_OK as c_int
        {
            return Err("cannot subscribe to keyspace events".into());
        }
        let subscribe = api!(RedisModule_SubscribeToServerEvent);
        for (id, cb) in [
            (
                raw::REDISMODULE_EVENT_FLUSHDB,
                on_flush as unsafe extern "C" fn(_, _, _, _),
            ),
            (raw::REDISMODULE_EVENT_LOADING, on_loading),
            (raw::REDISMODULE_EVENT_SWAPDB, on_swap),
        ] {
            subscribe(ctx.ctx, raw::RedisModuleEvent { id, dataver: 1 }, Some(cb));
        }
    }
    start_rebuild(ctx.ctx, config::current().keys.clone());
    Ok(())
}

/// Runs `f` on the index when it is current for the configured key
/// scheme. Otherwise makes sure a rebuild is under way and returns `None`:
/// the caller waits for it, or completes it with [`finish_rebuild`].
pub fn when_current<R>(ctx: &Context, f: impl FnOnce(&State) -> R) -> Option<R> {
    let scheme = config::current().keys.clone();
    let st = state();
    if st.built_for.as_ref() == Some(&scheme) {
        return Some(f(&st));
    }
    let rebuilding = st.rebuild.as_ref().is_some_and(|r| r.scheme == scheme);
    drop(st);
    if !rebuilding {
        start_rebuild(ctx.ctx, scheme);
    }
    None
}

/// Completes the rebuild under way at once (for callers that cannot wait).
pub fn finish_rebuild(ctx: &Context) {
    while !rebuild_slice(ctx.ctx, None) {}
}

/// Starts rebuilding for `scheme`, dropping any other rebuild; a timer
/// scans a slice at a time.
fn start_rebuild(ctx: *mut raw::RedisModuleCtx, scheme: KeyScheme) {
    {
        let mut st = state();
        st.built_for = None;
        st.index.clear(None);
        st.rebuild = Some(Rebuild {
            scheme,
            db: 0,
            cursor: Cursor::new(),
            partial: Index::default(),
        });
    }
    // SAFETY: live context; the timer carries no data.
    unsafe { api!(RedisModule_CreateTimer)(ctx, 0, Some(on_rebuild_timer), std::ptr::null_mut()) };
}

/// A rebuild's slice is half a query's: Redis runs every due module timer
/// in one pass, and the pass that finishes a rebuild also runs the planning
/// of the queries that waited for it.
const REBUILD_SLICE: Duration = Duration::from_millis(1);

extern "C" fn on_rebuild_timer(ctx: *mut raw::RedisModuleCtx, _data: *mut c_void) {
    let done =
        std::panic::catch_unwind(|| rebuild_slice(ctx, Some(Instant::now() + REBUILD_SLICE)))
            .unwrap_or(true);
    if !done {
        // SAFETY: live context.
        unsafe {
            api!(RedisModule_CreateTimer)(ctx, 0, Some(on_rebuild_timer), std::ptr::null_mut())
        };
    }
}

/// Scans until `deadline` (or to the end). `true` when no rebuild remains.
fn rebuild_slice(ctx: *mut raw::RedisModuleCtx, deadline: Option<Instant>) -> bool {
    struct Found<'a> {
        scheme: &'a KeyScheme,
        keys: Vec<(NaiveDate, Vec<u8>)>,
    }
    extern "C" fn each(
        _ctx: *mut raw::RedisModuleCtx,
        keyname: *mut raw::RedisModuleString,
        key: *mut raw::RedisModuleKey,
        privdata: *mut c_void,
    ) {
        // SAFETY: privdata is the Found below, alive during RM_Scan.
        let found = unsafe { &mut *privdata.cast::<Found<'_>>() };
        // SAFETY: key is NULL or a live handle for this callback.
        let is_hash = !key.is_null()
            && unsafe { api!(RedisModule_KeyType)(key) } == raw::REDISMODULE_KEYTYPE_HASH as c_int;
        if is_hash {
            if let Some((day, listing)) = found.scheme.parse_day_key(string_bytes(keyname)) {
                found.keys.push((day, listing.to_vec()));
            }
        }
    }
    // Taken out of the state while scanning: a scan writes nothing, so no
    // notification arrives meanwhile.
    let Some(mut rebuild) = state().rebuild.take() else {
        return true;
    };
    let original = selected_db(ctx);
    let mut calls = 0u32;
    let finished = loop {
        // SAFETY: SelectDb fails past the last database, which ends the scan.
        if unsafe { api!(RedisModule_SelectDb)(ctx, rebuild.db) } != raw::REDISMODULE_OK as c_int {
            break true;
        }
        let mut found = Found {
            scheme: &rebuild.scheme,
            keys: Vec::new(),
        };
        // SAFETY: live context and cursor; `found` outlives the call.
        let more = unsafe {
            api!(RedisModule_Scan)(
                ctx,
                rebuild.cursor.0,
                Some(each),
                (&mut found as *mut Found<'_>).cast(),
            )
        } != 0;
        for (day, listing) in found.keys {
            rebuild.partial.add(rebuild.db, day, &listing);
        }
        if !more {
            rebuild.db += 1;
            rebuild.cursor = Cursor::new();
        }
        calls += 1;
        if calls.is_multiple_of(64) && deadline.is_some_and(|d| Instant::now() >= d) {
            break false;
        }
    };
    // SAFETY: restores the caller's database.
    unsafe { api!(RedisModule_SelectDb)(ctx, original) };
    let mut st = state();
    if st.rebuild.is_some() || st.built_for.is_some() {
        // Restarted or invalidated while we scanned: this one is obsolete.
        return st.rebuild.is_none();
    }
    if finished {
        stats::INDEX_REBUILDS.add(1);
        st.index = rebuild.partial;
        st.built_for = Some(rebuild.scheme);
        true
    } else {
        st.rebuild = Some(rebuild);
        false
    }
}

/// Entries, approximate heap bytes, and whether a rebuild is under way,
/// for INFO.
pub fn size() -> (usize, usize, bool) {
    let st = state();
    (
        st.index.entries(),
        st.index.heap_bytes(),
        st.rebuild.is_some(),
    )
}
