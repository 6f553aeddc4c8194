//! Redis's side of the core's [`CounterStore`], and the readers the query
//! commands use. Every key read or written for a command goes through here,
//! after its ACL check (`acl.rs`).
//!
//! Why raw calls instead of `ctx.call("HINCRBY", ...)`: a call through
//! `RedisModule_Call` builds a fake client and a full argv for each
//! command, several times the cost of the lookup itself; INCR must stay
//! close to native HINCRBY. Why explicit replication: the effect of INCR
//! depends on the clock and on dedup state, so replicas and the AOF get the
//! concrete `HINCRBY key field n` and `HSET shard id 1` instead.

use std::os::raw::c_longlong;
use std::ptr;

use redis_module::{raw, Context, RedisString};
use rustc_hash::FxHashMap;

use super::acl::{Acl, Native};
use super::context::selected_db;
use super::events;
use super::key::OpenKey;
use super::reader::Reader;
use super::string::lent_bytes;
use listingstats_core::dedup::Marker;
use listingstats_core::keys::KeyScheme;
use listingstats_core::number::counter_error;
use listingstats_core::write::{CounterStore, Increment};
use listingstats_core::Result;

const SHARD_ABOUT_FIELD: &[u8] = b"listingstats about";
const SHARD_ABOUT: &[u8] =
    b"dedup shard of LISTINGSTATS: the other fields are event ids seen in this generation; no TTL, the module deletes it two windows on";

/// Writes day hashes, dedup markers and the metrics hash for one command.
pub struct RedisStore<'c> {
    ctx: &'c Context,
    /// The key names in force for this command.
    scheme: &'c KeyScheme,
    acl: Acl,
    /// Every key this command touched, open for writing, its ACL check
    /// passed: the write phase finds the handles the check phase opened.
    /// All are closed when the store is dropped, at the end of the command.
    keys: Names<CurrentKey>,
    /// Field names as Redis strings, made once per command.
    fields: Names<RedisString>,
    /// Dedup registries the command wrote ids under (see [`Touched`]).
    touched: Vec<Touched>,
}

/// A dedup registry a command remembered ids under: one marker of it, and
/// whether the command also created a shard it must list.
pub struct Touched {
    /// The registry hash, its current generation, and the cluster slot of
    /// its shards (`None`: the 64 FNV shards).
    pub registry: std::rc::Rc<[u8]>,
    pub generation: i64,
    pub slot: Option<u16>,
    pub listed_new: bool,
}

/// What [`RedisStore::peek`] saw of a key.
pub struct Peek {
    pub hash: bool,
    pub expires_at: Option<i64>,
}

/// Things named by a Redis string, found by its bytes: a few in place (INCR
/// touches one to three keys, with no allocation for the lookup), a map of
/// positions once there are more (INGEST touches thousands). The map holds
/// the names' own bytes, not copies: no allocation per name.
struct Names<T> {
    /// Each item with its name's bytes, read once when it was added.
    items: smallvec::SmallVec<[(T, Lent); 4]>,
    index: FxHashMap<Lent, usize>,
}

/// The bytes of a Redis string an item of [`Names`] owns: hashed and
/// compared as those bytes, so the map is searched with a `&[u8]`.
#[derive(Clone, Copy)]
struct Lent {
    ptr: *const u8,
    len: usize,
}

impl Lent {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the bytes of a Redis string the store owns and never
        // changes, read when it was added; it lives as long as the `Names`
        // that holds this.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::hash::Hash for Lent {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

impl PartialEq for Lent {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for Lent {}

impl std::borrow::Borrow<[u8]> for Lent {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

trait Named {
    fn name(&self) -> &RedisString;
}

impl Named for CurrentKey {
    fn name(&self) -> &RedisString {
        &self.name
    }
}

impl Named for RedisString {
    fn name(&self) -> &RedisString {
        self
    }
}

impl<T: Named> Names<T> {
    const SCAN: usize = 8;

    fn new() -> Self {
        Names {
            items: smallvec::SmallVec::new(),
            index: FxHashMap::default(),
        }
    }

    /// Where the item named `bytes` is.
    fn position(&self, bytes: &[u8]) -> Option<usize> {
        if self.items.len() > Self::SCAN {
            return self.index.get(bytes).copied();
        }
        self.items
            .iter()
            .position(|(_, name)| name.bytes() == bytes)
    }

    fn find(&self, bytes: &[u8]) -> Option<&T> {
        self.position(bytes).map(|i| &self.items[i].0)
    }

    fn get(&self, at: usize) -> &T {
        &self.items[at].0
    }

    /// Adds `item`; returns its position.
    fn push(&mut self, item: T) -> usize {
        // SAFETY: a live Redis string, owned by `item`.
        let name = unsafe { lent_bytes(item.name().inner) };
        let lent = Lent {
            ptr: name.as_ptr(),
            len: name.len(),
        };
        self.items.push((item, lent));
        let at = self.items.len() - 1;
        if self.items.len() > Self::SCAN {
            // The map starts with every name so far, then takes each new one.
            let from = if self.index.is_empty() { 0 } else { at };
            for (i, (_, name)) in self.items.iter().enumerate().skip(from) {
                self.index.insert(*name, i);
            }
        }
        at
    }
}

struct CurrentKey {
    name: RedisString,
    open: OpenKey,
}

impl<'c> RedisStore<'c> {
    pub fn new(ctx: &'c Context, scheme: &'c KeyScheme) -> Self {
        RedisStore {
            ctx,
            scheme,
            acl: Acl::of_caller(ctx),
            keys: Names::new(),
            fields: Names::new(),
            touched: Vec::new(),
        }
    }

    /// A store acting for the user named `user` (None: no checks), for
    /// work that runs from a timer, where there is no client.
    pub fn for_user(ctx: &'c Context, scheme: &'c KeyScheme, user: Option<&[u8]>) -> Result<Self> {
        let acl = match user {
            Some(name) => Acl::of_name(ctx.ctx, name)?,
            None => Acl::unchecked(ctx.ctx),
        };
        Ok(RedisStore {
            ctx,
            scheme,
            acl,
            keys: Names::new(),
            fields: Names::new(),
            touched: Vec::new(),
        })
    }

    /// `PEXPIREAT key at_ms`, applied exactly and replicated, unless the
    /// key has that expiry already (within a second).
    fn set_expiry(ctx: &Context, current: &CurrentKey, at_ms: i64) {
        if current.open.is_empty() {
            return;
        }
        if current
            .open
            .expire_at_ms()
            .is_some_and(|t| (t - at_ms).abs() < 1000)
        {
            return;
        }
        current.open.set_expire_at(&current.name, at_ms);
        let at = int_string(ctx, at_ms);
        replicate(ctx, c"PEXPIREAT", &mut [current.name.inner, at.inner]);
        notify(
            ctx,
            raw::REDISMODULE_NOTIFY_GENERIC,
            c"expire",
            current.name.inner,
        );
    }

    /// Whether the caller could run `native` on `key` (no ACL LOG entry).
    pub fn may(&self, key: &[u8], native: Native) -> bool {
        self.acl.allows(&self.create_string(key), native)
    }

    /// Fails when the caller may not run `native` on `key` (and logs it in
    /// ACL LOG).
    pub fn check(&self, key: &[u8], native: Native) -> Result<()> {
        self.acl.check(&self.create_string(key), native)
    }

    /// What `key` is now (no permission check: the caller decides what to
    /// do with it, and checks before it acts).
    pub fn peek(&self, key: &[u8]) -> Peek {
        let name = self.create_string(key);
        let open = OpenKey::open(self.ctx, &name, false);
        Peek {
            hash: open.is_hash(),
            expires_at: open.expire_at_ms(),
        }
    }

    /// The value of the string `key`; `None` when it is absent or not a
    /// string. No permission check.
    pub fn read_string(&self, key: &[u8]) -> Option<Vec<u8>> {
        let name = self.create_string(key);
        OpenKey::open(self.ctx, &name, false).read_string()
    }

    /// `DEL key`, replicated and notified as the native command; `true`
    /// when something was deleted. No permission check: the caller made it
    /// (or the key is the module's own state).
    pub fn delete(&mut self, key: &[u8]) -> bool {
        let name = self.create_string(key);
        let open = OpenKey::open(self.ctx, &name, true);
        if open.is_empty() || !open.delete() {
            return false;
        }
        self.replicate_argv(c"DEL", &mut [name.inner]);
        self.notify(raw::REDISMODULE_NOTIFY_GENERIC, c"del", name.inner);
        true
    }

    /// `PEXPIREAT key at_ms`, replicated, with no permission check (the
    /// caller made it).
    pub fn set_expiry_unchecked(&mut self, key: &[u8], at_ms: i64) {
        let name = self.create_string(key);
        let open = OpenKey::open(self.ctx, &name, true);
        RedisStore::set_expiry(self.ctx, &CurrentKey { name, open }, at_ms);
    }

    /// `HSET key field value` on the module's own state (a dedup registry),
    /// with no permission check; a key of another type is left alone
    /// (`false`).
    pub fn state_hash_set(&mut self, key: &[u8], field: &[u8], value: &[u8]) -> bool {
        let (name, field, value) = (
            self.create_string(key),
            self.create_string(field),
            self.create_string(value),
        );
        let open = OpenKey::open(self.ctx, &name, true);
        if open.expect_hash().is_err() {
            return false;
        }
        hset(self.ctx, &open, name.inner, field.inner, value.inner);
        true
    }

    /// `HDEL key field` on the module's own state, with no permission
    /// check; `true` when it removed something.
    pub fn state_hash_del(&mut self, key: &[u8], field: &[u8]) -> bool {
        let (name, field) = (self.create_string(key), self.create_string(field));
        let open = OpenKey::open(self.ctx, &name, true);
        open.expect_hash().is_ok() && hdel(self.ctx, &open, name.inner, field.inner)
    }

    /// Every field and value of the hash `key` (module state: no
    /// permission check), sorted by field.
    pub fn state_hash_all(&self, key: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Reader::unchecked(self.ctx).hash_all_of(&self.create_string(key))
    }

    /// The dedup registries written since the last call.
    pub fn take_touched(&mut self) -> Vec<Touched> {
        std::mem::take(&mut self.touched)
    }

    /// The database the command works in.
    pub fn db(&self) -> i32 {
        selected_db(self.ctx)
    }

    /// The key names in force.
    pub fn scheme(&self) -> &KeyScheme {
        self.scheme
    }

    /// The key, opened for writing on first use, after checking that the
    /// caller could run `native` on it.
    fn key(&mut self, key: &[u8], native: Native) -> Result<&CurrentKey> {
        if let Some(at) = self.keys.position(key) {
            return Ok(self.keys.get(at));
        }
        let name = RedisString::create_from_slice(self.ctx.ctx, key);
        self.acl.check(&name, native)?;
        let open = OpenKey::open(self.ctx, &name, true);
        let at = self.keys.push(CurrentKey { name, open });
        Ok(self.keys.get(at))
    }

    /// The field as a Redis string, valid as long as the store.
    fn field(&mut self, field: &[u8]) -> *mut raw::RedisModuleString {
        if let Some(name) = self.fields.find(field) {
            return name.inner;
        }
        let name = RedisString::create_from_slice(self.ctx.ctx, field);
        let at = self.fields.push(name);
        self.fields.get(at).inner
    }

    /// `HINCRBY key field delta` to replicas and the AOF, from the Redis
    /// strings the store already holds (no copies made).
    fn replicate_hincrby(
        &self,
        key: *mut raw::RedisModuleString,
        field: *mut raw::RedisModuleString,
        delta: i64,
    ) {
        // SAFETY: "ssl": two live Redis strings (Redis takes its own
        // references) and a long long.
        unsafe {
            api!(RedisModule_Replicate)(
                self.ctx.ctx,
                c"HINCRBY".as_ptr(),
                c"ssl".as_ptr(),
                key,
                field,
                delta as c_longlong,
            );
        }
    }

    /// Replicates `command` with these arguments (Redis strings).
    fn replicate_argv(&self, command: &std::ffi::CStr, argv: &mut [*mut raw::RedisModuleString]) {
        replicate(self.ctx, command, argv);
    }

    fn notify(&self, class: i32, event: &std::ffi::CStr, name: *mut raw::RedisModuleString) {
        notify(self.ctx, class, event, name);
    }

    /// The `hincrby` notification of counters written to a day hash. The
    /// module's own handlers are spared it (other subscribers still get the
    /// event): the caller tells the index and cache directly, with the
    /// values and whether the hash is new ([`events::counters_written`]).
    fn notify_counters(&self, key_name: *mut raw::RedisModuleString) {
        events::without_own_handlers(|| {
            self.notify(raw::REDISMODULE_NOTIFY_HASH, c"hincrby", key_name)
        });
    }

    fn create_string(&self, bytes: &[u8]) -> RedisString {
        RedisString::create_from_slice(self.ctx.ctx, bytes)
    }

    /// `HSET key field value`, replicated as such. Checks ACL and type first.
    pub fn hash_set(&mut self, key: &[u8], field: &[u8], value: &[u8]) -> Result<()> {
        self.key(key, Native::Hset)?.open.expect_hash()?;
        let value = self.create_string(value);
        let name = self.field(field);
        let ctx = self.ctx;
        let current = self.key(key, Native::Hset)?;
        hset(ctx, &current.open, current.name.inner, name, value.inner);
        Ok(())
    }

    /// `HDEL key field`, replicated when it removed something.
    pub fn hash_del(&mut self, key: &[u8], field: &[u8]) -> Result<bool> {
        self.key(key, Native::Hdel)?.open.expect_hash()?;
        let name = self.field(field);
        let ctx = self.ctx;
        let current = self.key(key, Native::Hdel)?;
        Ok(hdel(ctx, &current.open, current.name.inner, name))
    }
}

impl CounterStore for RedisStore<'_> {
    fn counter(&mut self, key: &[u8], field: &[u8]) -> Result<Option<i64>> {
        let name = self.field(field);
        let open = &self.key(key, Native::Hincrby)?.open;
        open.expect_hash()?;
        open.hash_get_int(name)
            .map_err(|bad| counter_error(key, field, &bad))
    }

    fn set_counter(&mut self, key: &[u8], field: &[u8], value: i64, delta: i64) {
        let name = self.field(field);
        let Ok(current) = self.key(key, Native::Hincrby) else {
            return;
        };
        let existed = !current.open.is_empty();
        current.open.hash_set_int(name, value);
        let key_name = current.name.inner;
        self.replicate_hincrby(key_name, name, delta);
        self.notify_counters(key_name);
        events::counters_written(self.ctx, key, &[(field, value)], !existed);
    }

    /// One key, several fields: `HSET key f1 v1 f2 v2 ...` of the final
    /// values to replicas (one command instead of an `HINCRBY` per field),
    /// and one notification. A single field stays `HINCRBY` (INCR).
    fn set_counters(&mut self, key: &[u8], increments: &[Increment], values: &[i64]) {
        if increments.len() < 2 {
            for (inc, &value) in increments.iter().zip(values) {
                self.set_counter(key, &inc.field, value, inc.delta);
            }
            return;
        }
        let names: smallvec::SmallVec<[*mut raw::RedisModuleString; 8]> = increments
            .iter()
            .map(|inc| self.field(&inc.field))
            .collect();
        let texts: smallvec::SmallVec<[RedisString; 8]> =
            values.iter().map(|&v| int_string(self.ctx, v)).collect();
        let Ok(current) = self.key(key, Native::Hincrby) else {
            return;
        };
        let existed = !current.open.is_empty();
        let key_name = current.name.inner;
        let mut argv: smallvec::SmallVec<[*mut raw::RedisModuleString; 17]> =
            smallvec::SmallVec::with_capacity(1 + 2 * names.len());
        argv.push(key_name);
        for (&name, text) in names.iter().zip(&texts) {
            current.open.hash_set(name, text.inner);
            argv.extend([name, text.inner]);
        }
        self.replicate_argv(c"HSET", &mut argv);
        self.notify_counters(key_name);
        let written: smallvec::SmallVec<[(&[u8], i64); 8]> = increments
            .iter()
            .zip(values)
            .map(|(inc, &v)| (&inc.field[..], v))
            .collect();
        events::counters_written(self.ctx, key, &written, !existed);
    }

    fn expire_at(&mut self, key: &[u8], at_ms: i64) {
        let ctx = self.ctx;
        if let Ok(current) = self.key(key, Native::Hincrby) {
            RedisStore::set_expiry(ctx, current, at_ms);
        }
    }

    fn is_remembered(&mut self, marker: &Marker) -> Result<bool> {
        let id = self.field(&marker.id);
        // The current shard gets the id (HSET); the previous one is only read.
        for (shard, native) in [
            (&*marker.current, Native::Hset),
            (&*marker.previous, Native::Hmget),
        ] {
            let open = &self.key(shard, native)?.open;
            open.expect_hash()?;
            if open.hash_has(id) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn remember(&mut self, markers: &[Marker]) {
        // One HSET per shard: `HSET shard id 1 id 1 ...`.
        let mut by_shard: FxHashMap<&[u8], Vec<&Marker>> = FxHashMap::default();
        for m in markers {
            by_shard.entry(&m.current).or_default().push(m);
        }
        let one = self.create_string(b"1");
        // Written once into each new shard. Its value is longer than
        // hash-max-listpack-value (64), so Redis stores the shard as a hash
        // table from the start: a listpack of up to 512 ids (Debian's
        // default) would be searched linearly on every lookup. Ids cannot
        // contain spaces, so the field never collides with one.
        let about_field = self.create_string(SHARD_ABOUT_FIELD);
        let about = self.create_string(SHARD_ABOUT);
        // Registries that just listed a new shard (one per slot on a
        // cluster, else the one registry).
        let mut new_shards: Vec<&Marker> = Vec::new();
        for (shard, ids) in by_shard {
            let names: Vec<*mut raw::RedisModuleString> =
                ids.iter().map(|m| self.field(&m.id)).collect();
            let Ok(current) = self.key(shard, Native::Hset) else {
                continue;
            };
            let created = current.open.is_empty();
            let mut argv = Vec::with_capacity(3 + 2 * names.len());
            argv.push(current.name.inner);
            if created {
                current.open.hash_set(about_field.inner, about.inner);
                argv.extend([about_field.inner, about.inner]);
            }
            for &id in &names {
                current.open.hash_set(id, one.inner);
                argv.extend([id, one.inner]);
            }
            let key_name = current.name.inner;
            self.replicate_argv(c"HSET", &mut argv);
            self.notify(raw::REDISMODULE_NOTIFY_HASH, c"hset", key_name);
            if created {
                new_shards.push(ids[0]);
            }
        }
        // The generations' upkeep (`dedup_upkeep.rs`) runs once per
        // registry the batch touched, when the write is done.
        for m in new_shards.iter().copied().chain(markers.iter()) {
            let listed_new = new_shards.iter().any(|n| n.registry == m.registry);
            match self.touched.iter_mut().find(|t| t.registry == m.registry) {
                Some(t) => t.listed_new |= listed_new,
                None => self.touched.push(Touched {
                    registry: m.registry.clone(),
                    generation: m.generation,
                    slot: m.slot,
                    listed_new,
                }),
            }
        }
    }
}

/// The decimal text of `n` as a Redis string (a counter's new value, an
/// expiry), written without an allocation of its own.
fn int_string(ctx: &Context, n: i64) -> RedisString {
    RedisString::create_from_slice(ctx.ctx, itoa::Buffer::new().format(n).as_bytes())
}

/// Replicates `command` with these arguments (Redis strings).
fn replicate(ctx: &Context, command: &std::ffi::CStr, argv: &mut [*mut raw::RedisModuleString]) {
    // SAFETY: "v" takes an array of strings and its length; Redis takes its
    // own references.
    unsafe {
        api!(RedisModule_Replicate)(
            ctx.ctx,
            command.as_ptr(),
            c"v".as_ptr(),
            argv.as_mut_ptr(),
            argv.len(),
        );
    }
}

/// `HSET key field value` on an open hash (its type checked), replicated
/// and notified as the native command.
fn hset(
    ctx: &Context,
    open: &OpenKey,
    key: *mut raw::RedisModuleString,
    field: *mut raw::RedisModuleString,
    value: *mut raw::RedisModuleString,
) {
    open.hash_set(field, value);
    replicate(ctx, c"HSET", &mut [key, field, value]);
    notify(ctx, raw::REDISMODULE_NOTIFY_HASH, c"hset", key);
}

/// `HDEL key field` on an open hash (its type checked), replicated and
/// notified when it removed something; `true` then.
fn hdel(
    ctx: &Context,
    open: &OpenKey,
    key: *mut raw::RedisModuleString,
    field: *mut raw::RedisModuleString,
) -> bool {
    // REDISMODULE_HASH_DELETE is the pointer value 1 in redismodule.h.
    if open.is_empty() || open.hash_set(field, ptr::without_provenance_mut(1)) <= 0 {
        return false;
    }
    replicate(ctx, c"HDEL", &mut [key, field]);
    notify(ctx, raw::REDISMODULE_NOTIFY_HASH, c"hdel", key);
    true
}

/// Fires a keyspace notification for `name`, as the native command would.
fn notify(ctx: &Context, class: i32, event: &std::ffi::CStr, name: *mut raw::RedisModuleString) {
    // SAFETY: live context and key name.
    unsafe { api!(RedisModule_NotifyKeyspaceEvent)(ctx.ctx, class, event.as_ptr(), name) };
}
