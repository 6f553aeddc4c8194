//! Keeps the per-day listing index (`core::index`) in step with the data.
//!
//! * Keyspace notifications: every hash write to a day-hash name adds it
//!   (HINCRBY from this module or any other client); `del`, `expired`,
//!   `evicted`, `rename_from`, `move_from` remove it; `rename_to`,
//!   `restore`, `copy_to`, `move_to` add it.
//! * Server events: FLUSHDB/FLUSHALL clear, SWAPDB swaps, and the end of
//!   loading (restart, replica full sync) rebuilds from a scan.
//! * Module load and a change of key-prefix or key-format mark it stale; a
//!   stale index is rebuilt (one in-process scan of every database) before
//!   the next query that uses it.
//!
//! Everything here runs on Redis's main thread.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::{LazyLock, Mutex, MutexGuard};

use redis_module::raw;
use redis_module::Context;

use crate::config;
use crate::core::index::Index;
use crate::core::keys::KeyScheme;
use crate::stats;
use crate::store::string_bytes;

pub struct State {
    pub index: Index,
    /// The key scheme the index was built for; `None` when it must be
    /// rebuilt before use.
    built_for: Option<KeyScheme>,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| {
    Mutex::new(State {
        index: Index::default(),
        built_for: None,
    })
});

fn state() -> MutexGuard<'static, State> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Marks the index stale: the next query that uses it rebuilds it first.
pub fn invalidate() {
    let mut st = state();
    st.built_for = None;
    st.index.clear(None);
}

fn selected_db(ctx: *mut raw::RedisModuleCtx) -> i32 {
    // SAFETY: live context.
    unsafe { api!(RedisModule_GetSelectedDb)(ctx) }
}

extern "C" fn on_key_event(
    ctx: *mut raw::RedisModuleCtx,
    kind: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    // Never unwind into Redis from a notification.
    let _ = std::panic::catch_unwind(|| {
        let mut st = state();
        let Some(scheme) = st.built_for.clone() else {
            return;
        };
        let Some((day, listing)) = scheme.parse_day_key(string_bytes(key)) else {
            return;
        };
        // SAFETY: Redis passes a NUL-terminated event name.
        let event = unsafe { CStr::from_ptr(event) }.to_bytes();
        let db = selected_db(ctx);
        let removes = kind & (raw::REDISMODULE_NOTIFY_EXPIRED | raw::REDISMODULE_NOTIFY_EVICTED)
            != 0
            || matches!(event, b"del" | b"rename_from" | b"move_from");
        let adds = kind & raw::REDISMODULE_NOTIFY_HASH != 0
            || matches!(event, b"rename_to" | b"restore" | b"copy_to" | b"move_to");
        if removes {
            st.index.remove(db, day, listing);
        } else if adds {
            st.index.add(db, day, listing);
        }
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
    state().index.clear((db >= 0).then_some(db));
}

extern "C" fn on_swap(
    _ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    _sub: u64,
    data: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: Redis passes a RedisModuleSwapDbInfo for this event.
    let info = unsafe { &*data.cast::<raw::RedisModuleSwapDbInfo>() };
    state().index.swap(info.dbnum_first, info.dbnum_second);
}

extern "C" fn on_loading(
    _ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    sub: u64,
    _data: *mut c_void,
) {
    // Loading replaces the dataset (restart, replica full sync): the index
    // is rebuilt, from what was loaded, before its next use.
    if sub == raw::REDISMODULE_SUBEVENT_LOADING_ENDED
        || sub == raw::REDISMODULE_SUBEVENT_LOADING_FAILED
    {
        invalidate();
    } else {
        state().index.clear(None);
    }
}

/// Subscribes to the events that keep the index current.
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
    invalidate();
    Ok(())
}

/// Runs `f` on an index that is current for the configured key scheme,
/// rebuilding it first (a scan of every database) when it is stale.
pub fn with_current<R>(ctx: &Context, f: impl FnOnce(&State) -> R) -> R {
    let scheme = config::current().keys.clone();
    if state().built_for.as_ref() != Some(&scheme) {
        rebuild(ctx, &scheme);
    }
    f(&state())
}

/// Scans every database for day hashes of `scheme`.
fn rebuild(ctx: &Context, scheme: &KeyScheme) {
    struct Scan<'a> {
        scheme: &'a KeyScheme,
        db: i32,
        index: Index,
    }
    extern "C" fn each(
        _ctx: *mut raw::RedisModuleCtx,
        keyname: *mut raw::RedisModuleString,
        key: *mut raw::RedisModuleKey,
        privdata: *mut c_void,
    ) {
        // SAFETY: privdata is the Scan below, alive during RM_Scan.
        let scan = unsafe { &mut *privdata.cast::<Scan<'_>>() };
        // SAFETY: key is NULL or a live handle for this callback.
        let is_hash = !key.is_null()
            && unsafe { api!(RedisModule_KeyType)(key) } == raw::REDISMODULE_KEYTYPE_HASH as c_int;
        if is_hash {
            if let Some((day, listing)) = scan.scheme.parse_day_key(string_bytes(keyname)) {
                scan.index.add(scan.db, day, listing);
            }
        }
    }
    let mut scan = Scan {
        scheme,
        db: 0,
        index: Index::default(),
    };
    let original = selected_db(ctx.ctx);
    // SAFETY: SelectDb fails for an id past the last database, which ends
    // the loop; the cursor lives for one database's scan.
    unsafe {
        while api!(RedisModule_SelectDb)(ctx.ctx, scan.db) == raw::REDISMODULE_OK as c_int {
            let cursor = api!(RedisModule_ScanCursorCreate)();
            while api!(RedisModule_Scan)(
                ctx.ctx,
                cursor,
                Some(each),
                (&mut scan as *mut Scan<'_>).cast(),
            ) != 0
            {}
            api!(RedisModule_ScanCursorDestroy)(cursor);
            scan.db += 1;
        }
        api!(RedisModule_SelectDb)(ctx.ctx, original);
    }
    stats::INDEX_REBUILDS.add(1);
    let mut st = state();
    st.index = scan.index;
    st.built_for = Some(scheme.clone());
}

/// Entries and approximate heap bytes, for INFO.
pub fn size() -> (usize, usize) {
    let st = state();
    (st.index.entries(), st.index.heap_bytes())
}
