//! Keyspace notifications and server events, delivered to safe handlers.
//!
//! Handlers are plain functions registered at load; each runs under
//! `catch_unwind` (nothing unwinds into Redis from a notification).

use std::cell::Cell;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::RwLock;

use redis_module::{raw, Context};

use super::context::selected_db;
use super::string::lent_bytes;

/// Notification classes.
pub mod class {
    use redis_module::raw;
    pub const HASH: i32 = raw::REDISMODULE_NOTIFY_HASH;
    pub const GENERIC: i32 = raw::REDISMODULE_NOTIFY_GENERIC;
    pub const EXPIRED: i32 = raw::REDISMODULE_NOTIFY_EXPIRED;
    pub const EVICTED: i32 = raw::REDISMODULE_NOTIFY_EVICTED;
    pub const STREAM: i32 = raw::REDISMODULE_NOTIFY_STREAM;
    pub const STRING: i32 = raw::REDISMODULE_NOTIFY_STRING;
    pub const LIST: i32 = raw::REDISMODULE_NOTIFY_LIST;
    pub const SET: i32 = raw::REDISMODULE_NOTIFY_SET;
    pub const ZSET: i32 = raw::REDISMODULE_NOTIFY_ZSET;
    /// Every class any handler wants: the one subscription's mask.
    pub const ALL: i32 = HASH | GENERIC | EXPIRED | EVICTED | STREAM | STRING | LIST | SET | ZSET;
}

/// One keyspace notification.
pub struct KeyEvent<'a> {
    pub db: i32,
    /// Its class (`class::*`).
    pub class: i32,
    /// `hset`, `del`, `rename_to`, ...
    pub event: &'a [u8],
    pub key: &'a [u8],
}

/// A server event the module follows.
pub enum ServerEvent<'a> {
    /// FLUSHDB (`Some(db)`) or FLUSHALL (`None`), before it happens.
    Flush(Option<i32>),
    SwapDb(i32, i32),
    /// Loading (restart, full sync, DEBUG RELOAD) started or ended.
    Loading {
        ended: bool,
    },
    /// `CONFIG SET` changed these settings.
    ConfigChanged(&'a [&'a [u8]]),
    /// This server became a master (failover, REPLICAOF NO ONE).
    BecameMaster,
}

/// A handler and the notification classes it wants.
type KeyHandler = (i32, fn(&Context, &KeyEvent<'_>));
type ServerHandler = fn(&Context, &ServerEvent<'_>);

static KEY_HANDLERS: RwLock<Vec<KeyHandler>> = RwLock::new(Vec::new());
static SERVER_HANDLERS: RwLock<Vec<ServerHandler>> = RwLock::new(Vec::new());

fn add<T: PartialEq + Copy>(list: &RwLock<Vec<T>>, handler: T) -> bool {
    let mut list = list.write().unwrap_or_else(|p| p.into_inner());
    let first = list.is_empty();
    if !list.contains(&handler) {
        list.push(handler);
    }
    first
}

/// Calls `f` with each handler, under the read lock (no copy: this runs
/// on every notification). Handlers are added only at load, and none
/// subscribes from inside a handler, so the lock is never contended.
fn each<T: Copy>(list: &RwLock<Vec<T>>, mut f: impl FnMut(T)) {
    for &h in list.read().unwrap_or_else(|p| p.into_inner()).iter() {
        f(h);
    }
}

unsafe extern "C" fn on_key(
    ctx: *mut raw::RedisModuleCtx,
    class: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    if QUIET.with(Cell::get) {
        return raw::REDISMODULE_OK as c_int;
    }
    let context = Context::new(ctx);
    // SAFETY: Redis passes a NUL-terminated event name and a live key name
    // for the duration of this callback.
    let (event, key) = unsafe { (CStr::from_ptr(event).to_bytes(), lent_bytes(key)) };
    let e = KeyEvent {
        db: selected_db(&context),
        class,
        event,
        key,
    };
    each(&KEY_HANDLERS, |(classes, h)| {
        if classes & class != 0 {
            let _ = catch_unwind(AssertUnwindSafe(|| h(&context, &e)));
        }
    });
    raw::REDISMODULE_OK as c_int
}

thread_local! {
    /// Set while the module fires a notification its own handlers need not
    /// see (see [`without_own_handlers`]).
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `notify`, which fires a keyspace notification, without calling this
/// module's own handlers for it (other modules' and clients' subscribers
/// still get it): for a write that changes nothing the module keeps, such as
/// a counter of a day hash that already existed. Saves the handlers' cost on
/// INCR's hot path.
pub fn without_own_handlers<R>(notify: impl FnOnce() -> R) -> R {
    QUIET.with(|q| q.set(true));
    let out = notify();
    QUIET.with(|q| q.set(false));
    out
}

/// `(field, new value)` pairs the module wrote to one hash.
pub type Written<'a> = [(&'a [u8], i64)];
type WrittenHandler = fn(i32, &[u8], &Written<'_>);

static WRITTEN: std::sync::OnceLock<WrittenHandler> = std::sync::OnceLock::new();

/// Registers the one handler told of counters written to a hash that
/// already existed, in place of the module's own keyspace handlers (see
/// [`without_own_handlers`]): it gets the values, with no notification
/// to parse.
pub fn on_counters_written(handler: WrittenHandler) {
    let _ = WRITTEN.set(handler);
}

/// Tells the handler of [`on_counters_written`].
pub fn counters_written(db: i32, key: &[u8], fields: &Written<'_>) {
    if let Some(h) = WRITTEN.get() {
        let _ = catch_unwind(AssertUnwindSafe(|| h(db, key, fields)));
    }
}

/// Calls `handler` for every notification of `classes` (every key; the
/// handler filters).
pub fn on_keyspace(
    ctx: &Context,
    classes: i32,
    handler: fn(&Context, &KeyEvent<'_>),
) -> Result<(), String> {
    if !add(&KEY_HANDLERS, (classes, handler)) {
        return Ok(()); // Subscribed already, for every class in `class::ALL`.
    }
    // SAFETY: OnLoad; the trampoline lives as long as the module. One
    // subscription for all handlers: each call would add another.
    let ok =
        unsafe { api!(RedisModule_SubscribeToKeyspaceEvents)(ctx.ctx, class::ALL, Some(on_key)) };
    if ok == raw::REDISMODULE_OK as c_int {
        Ok(())
    } else {
        Err("cannot subscribe to keyspace events".into())
    }
}

unsafe extern "C" fn on_server(
    ctx: *mut raw::RedisModuleCtx,
    e: raw::RedisModuleEvent,
    sub: u64,
    data: *mut c_void,
) {
    let context = Context::new(ctx);
    let mut names: Vec<&[u8]> = Vec::new();
    // SAFETY: for each event id Redis passes the documented struct (or
    // NULL); every pointer read here is checked and lives for the callback.
    let event = unsafe {
        match e.id {
            raw::REDISMODULE_EVENT_FLUSHDB
                if sub == raw::REDISMODULE_SUBEVENT_FLUSHDB_START && !data.is_null() =>
            {
                let db = (*data.cast::<raw::RedisModuleFlushInfo>()).dbnum;
                ServerEvent::Flush((db >= 0).then_some(db))
            }
            raw::REDISMODULE_EVENT_SWAPDB if !data.is_null() => {
                let info = &*data.cast::<raw::RedisModuleSwapDbInfo>();
                ServerEvent::SwapDb(info.dbnum_first, info.dbnum_second)
            }
            raw::REDISMODULE_EVENT_LOADING => ServerEvent::Loading {
                ended: sub == raw::REDISMODULE_SUBEVENT_LOADING_ENDED
                    || sub == raw::REDISMODULE_SUBEVENT_LOADING_FAILED,
            },
            raw::REDISMODULE_EVENT_CONFIG
                if sub == raw::REDISMODULE_SUBEVENT_CONFIG_CHANGE && !data.is_null() =>
            {
                let change = &*data.cast::<raw::RedisModuleConfigChange>();
                for i in 0..change.num_changes as usize {
                    let name = *change.config_names.add(i);
                    if !name.is_null() {
                        names.push(CStr::from_ptr(name).to_bytes());
                    }
                }
                ServerEvent::ConfigChanged(&names)
            }
            raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED
                if sub == raw::REDISMODULE_EVENT_REPLROLECHANGED_NOW_MASTER =>
            {
                ServerEvent::BecameMaster
            }
            _ => return,
        }
    };
    each(&SERVER_HANDLERS, |h| {
        let _ = catch_unwind(AssertUnwindSafe(|| h(&context, &event)));
    });
}

/// Calls `handler` for every [`ServerEvent`].
pub fn on_server_events(ctx: &Context, handler: ServerHandler) {
    if !add(&SERVER_HANDLERS, handler) {
        return; // Already subscribed for an earlier handler.
    }
    for id in [
        raw::REDISMODULE_EVENT_FLUSHDB,
        raw::REDISMODULE_EVENT_SWAPDB,
        raw::REDISMODULE_EVENT_LOADING,
        raw::REDISMODULE_EVENT_CONFIG,
        raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED,
    ] {
        // SAFETY: OnLoad; the trampoline lives as long as the module. An
        // event this server does not know is refused, harmlessly.
        unsafe {
            api!(RedisModule_SubscribeToServerEvent)(
                ctx.ctx,
                raw::RedisModuleEvent { id, dataver: 1 },
                Some(on_server),
            );
        }
    }
}
