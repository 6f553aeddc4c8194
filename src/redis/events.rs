//! Keyspace notifications and server events, delivered to safe handlers.
//!
//! Handlers are plain functions registered at load; each runs under
//! `catch_unwind` (nothing unwinds into Redis from a notification).
//!
//! Loading the module must not slow down traffic that never touches it,
//! so the subscriptions are as narrow as the module's state allows:
//!
//! * At load: the hash, generic, expired and evicted classes only (a day
//!   hash is written, created by RESTORE/RENAME/COPY/MOVE, or removed).
//!   Each notification first passes a gate of a few byte comparisons on
//!   the key name ([`watch_prefix`], `KeyScheme::may_concern`) before any
//!   context, lock or handler.
//! * [`watch_overwrites`], called when the first day hash is known: another
//!   type written over a day hash (SET, SORT ... STORE, SUNIONSTORE, ...).
//!   Where the server has key events (Redis 7.2+, Valkey) that is the
//!   `overwritten` key event; on Redis 7.0 it is the string, list, set and
//!   zset classes.
//! * [`watch_streams`], called when a stream is first followed: the stream
//!   class.
//!
//! A subscription, once made, stays for the life of the module (the API
//! cannot drop one on every server the module supports); the gate keeps
//! what it then costs to a callback that returns at once.

use std::cell::{Cell, RefCell};
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
    /// Not a keyspace class: the server's `overwritten` key event (another
    /// value written over a key), delivered as event `overwritten`.
    pub const OVERWRITTEN: i32 = 1 << 30;
    /// Subscribed at load.
    pub const BASE: i32 = HASH | GENERIC | EXPIRED | EVICTED;
    /// Where the server has no key events: the classes whose writes can put
    /// another type over a day hash.
    pub const OVERWRITES: i32 = STRING | LIST | SET | ZSET;
    /// Every class a handler can be given.
    pub const ALL: i32 = BASE | OVERWRITES | STREAM | OVERWRITTEN;
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
    // SAFETY: Redis passes a live key name for the duration of this
    // callback. Nothing here can panic (no unwinding into Redis).
    let key = unsafe { lent_bytes(key) };
    if !GATE.with(|g| g.passes(class, key)) {
        return raw::REDISMODULE_OK as c_int;
    }
    // SAFETY: a NUL-terminated event name, live for the callback.
    let event = unsafe { CStr::from_ptr(event).to_bytes() };
    dispatch(ctx, class, event, key);
    raw::REDISMODULE_OK as c_int
}

/// Calls every handler of `class` with one event.
fn dispatch(ctx: *mut raw::RedisModuleCtx, class: i32, event: &[u8], key: &[u8]) {
    let context = Context::new(ctx);
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
}

/// The key event `overwritten` (Redis 7.2+, Valkey), for the handlers of
/// [`class::OVERWRITTEN`]; the other key events (deleted, expired,
/// evicted) also come as keyspace notifications, which the handlers take.
unsafe extern "C" fn on_key_event(
    ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    sub: u64,
    data: *mut c_void,
) {
    if sub != raw::REDISMODULE_SUBEVENT_KEY_OVERWRITTEN || data.is_null() {
        return;
    }
    // SAFETY: for the key event Redis passes a RedisModuleKeyInfo whose
    // key is open for the callback; its name lives as long.
    let key = unsafe {
        let info = &*data.cast::<raw::RedisModuleKeyInfoV1>();
        let Some(name_of) = *std::ptr::addr_of!(raw::RedisModule_GetKeyNameFromModuleKey) else {
            return;
        };
        let name = name_of(info.key);
        if name.is_null() {
            return;
        }
        lent_bytes(name)
    };
    if GATE.with(|g| g.passes(class::OVERWRITTEN, key)) {
        dispatch(ctx, class::OVERWRITTEN, b"overwritten", key);
    }
}

/// What decides, before anything else, whether a notification reaches the
/// handlers: a few byte comparisons, no allocation, lock or map look-up.
struct Gate {
    /// Set while the module fires a notification its own handlers need not
    /// see (see [`without_own_handlers`]).
    quiet: Cell<bool>,
    /// Some stream is followed: stream and generic events pass.
    streams: Cell<bool>,
    /// The key prefix of day hashes and of the module's registry.
    prefix: RefCell<Vec<u8>>,
}

impl Gate {
    fn passes(&self, class: i32, key: &[u8]) -> bool {
        if self.quiet.get() {
            return false;
        }
        // A followed stream can be added to, deleted, renamed, expired or
        // written over; hash writes never land on a stream.
        if self.streams.get() && class & !class::HASH != 0 {
            return true;
        }
        match self.prefix.try_borrow() {
            Ok(prefix) => listingstats_core::keys::may_concern(&prefix, key),
            Err(_) => true,
        }
    }
}

resident! {
    static GATE: Gate = const {
        Gate {
            quiet: Cell::new(false),
            streams: Cell::new(false),
            prefix: RefCell::new(Vec::new()),
        }
    };
}

thread_local! {
    /// Which of the later subscriptions were made.
    static WATCHING: Cell<(bool, bool)> = const { Cell::new((false, false)) };
}

/// The key prefix that day hash names and the registry start with (at load
/// and whenever `key-prefix` changes).
pub fn watch_prefix(prefix: &[u8]) {
    GATE.with(|g| *g.prefix.borrow_mut() = prefix.to_vec());
}

/// From now on, also tells the handlers of [`class::OVERWRITTEN`] (or, on
/// Redis 7.0, of [`class::OVERWRITES`]) of other values written over keys.
/// Called when the first day hash is known; the first call subscribes, the
/// others cost a thread-local read.
pub fn watch_overwrites(ctx: &Context) {
    let (overwrites, streams) = WATCHING.with(Cell::get);
    if overwrites {
        return;
    }
    WATCHING.with(|w| w.set((true, streams)));
    let event = raw::RedisModuleEvent {
        id: raw::REDISMODULE_EVENT_KEY,
        dataver: 1,
    };
    // SAFETY: plain reads of API pointers; subscribing appends to the
    // server's list (safe while it iterates: the new entry comes after).
    unsafe {
        let key_events = match *std::ptr::addr_of!(raw::RedisModule_IsSubEventSupported) {
            Some(supported) => {
                supported(event, raw::REDISMODULE_SUBEVENT_KEY_OVERWRITTEN) != 0
                    && has_api!(RedisModule_GetKeyNameFromModuleKey)
            }
            None => false,
        };
        let subscribed = key_events
            && api!(RedisModule_SubscribeToServerEvent)(ctx.ctx, event, Some(on_key_event))
                == raw::REDISMODULE_OK as c_int;
        if !subscribed {
            api!(RedisModule_SubscribeToKeyspaceEvents)(ctx.ctx, class::OVERWRITES, Some(on_key));
        }
    }
}

/// Stream events stop reaching the handlers (nothing is followed any more).
pub fn close_streams() {
    GATE.with(|g| g.streams.set(false));
}

/// From now on, also tells handlers of stream events (a stream is
/// followed). `false` closes the gate to them again (nothing followed).
pub fn watch_streams(ctx: &Context, on: bool) {
    GATE.with(|g| g.streams.set(on));
    let (overwrites, streams) = WATCHING.with(Cell::get);
    if !on || streams {
        return;
    }
    WATCHING.with(|w| w.set((overwrites, true)));
    // SAFETY: as in watch_overwrites.
    unsafe {
        api!(RedisModule_SubscribeToKeyspaceEvents)(ctx.ctx, class::STREAM, Some(on_key));
    }
    // Another type written over a followed stream ends its following.
    watch_overwrites(ctx);
}

/// Runs `notify`, which fires a keyspace notification, without calling this
/// module's own handlers for it (other modules' and clients' subscribers
/// still get it): for a write that changes nothing the module keeps, such as
/// a counter of a day hash that already existed. Saves the handlers' cost on
/// INCR's hot path.
pub fn without_own_handlers<R>(notify: impl FnOnce() -> R) -> R {
    GATE.with(|g| g.quiet.set(true));
    let out = notify();
    GATE.with(|g| g.quiet.set(false));
    out
}

/// `(field, new value)` pairs the module wrote to one hash.
pub type Written<'a> = [(&'a [u8], i64)];
/// `(ctx, db, key, written, created)`: `created` when the hash is new.
type WrittenHandler = fn(&Context, i32, &[u8], &Written<'_>, bool);

// A hook and not an import: this layer cannot import the index it tells.
static WRITTEN: std::sync::OnceLock<WrittenHandler> = std::sync::OnceLock::new();

/// Registers the one handler told of counters the module wrote to a hash,
/// in place of the module's own keyspace handlers (see
/// [`without_own_handlers`]): it gets the values, with no notification to
/// parse.
pub fn on_counters_written(handler: WrittenHandler) {
    let _ = WRITTEN.set(handler);
}

/// Tells the handler of [`on_counters_written`].
pub fn counters_written(ctx: &Context, key: &[u8], fields: &Written<'_>, created: bool) {
    if let Some(h) = WRITTEN.get() {
        let db = selected_db(ctx);
        let _ = catch_unwind(AssertUnwindSafe(|| h(ctx, db, key, fields, created)));
    }
}

/// Calls `handler` for every notification of `classes` that passes the
/// gate (a key name that may concern the module; the handler checks it in
/// full). The first call subscribes to [`class::BASE`]; the other classes
/// arrive once [`watch_overwrites`] or [`watch_streams`] subscribed them.
pub fn on_keyspace(
    ctx: &Context,
    classes: i32,
    handler: fn(&Context, &KeyEvent<'_>),
) -> Result<(), String> {
    if !add(&KEY_HANDLERS, (classes, handler)) {
        return Ok(()); // Subscribed already.
    }
    // SAFETY: OnLoad; the trampoline lives as long as the module. One
    // subscription for all handlers: each call would add another.
    let ok =
        unsafe { api!(RedisModule_SubscribeToKeyspaceEvents)(ctx.ctx, class::BASE, Some(on_key)) };
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
