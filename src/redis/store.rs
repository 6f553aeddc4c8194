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
pub use super::key::FieldNames;
use super::key::{bad_counter, KeyRef, OpenKey};
use super::scan::Cursor;
use super::string::lent_bytes;
use listingstats_core::dedup::{shard_keys, stale_generations, Marker};
use listingstats_core::keys::KeyScheme;
use listingstats_core::migrate::flat_value;
use listingstats_core::number::add_counter;
use listingstats_core::query::FieldPlan;
use listingstats_core::write::{CounterStore, Increment};
use listingstats_core::{Error, Result};

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
}

/// Things named by a Redis string, found by its bytes: a few in place (INCR
/// touches one to three keys, with no allocation for the lookup), a map of
/// positions once there are more (INGEST touches thousands).
struct Names<T> {
    /// Each item with its name's bytes, read once when it was added.
    items: smallvec::SmallVec<[(T, *const u8, usize); 4]>,
    index: FxHashMap<Vec<u8>, usize>,
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

    fn find(&self, bytes: &[u8]) -> Option<&T> {
        if self.items.len() > Self::SCAN {
            return self.index.get(bytes).map(|&i| &self.items[i].0);
        }
        self.items
            .iter()
            // SAFETY: the bytes of a Redis string this store owns and never
            // changes, read when it was added; it lives as long as `items`.
            .find(|(_, p, n)| unsafe { std::slice::from_raw_parts(*p, *n) } == bytes)
            .map(|(t, _, _)| t)
    }

    fn push(&mut self, item: T) -> &T {
        // SAFETY: a live Redis string, owned by `item`.
        let name = unsafe { lent_bytes(item.name().inner) };
        let (p, n) = (name.as_ptr(), name.len());
        self.items.push((item, p, n));
        if self.items.len() > Self::SCAN {
            // The map starts with every name so far, then takes each new one.
            let from = if self.index.is_empty() {
                0
            } else {
                self.items.len() - 1
            };
            for (i, (_, p, n)) in self.items.iter().enumerate().skip(from) {
                // SAFETY: as in `find`.
                let name = unsafe { std::slice::from_raw_parts(*p, *n) };
                self.index.insert(name.to_vec(), i);
            }
        }
        &self.items[self.items.len() - 1].0
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
        let at = RedisString::create_from_slice(ctx.ctx, at_ms.to_string().as_bytes());
        replicate(ctx, c"PEXPIREAT", &mut [current.name.inner, at.inner]);
        notify(
            ctx,
            raw::REDISMODULE_NOTIFY_GENERIC,
            c"expire",
            current.name.inner,
        );
    }

    /// RETAIN of one day hash: one without an expiry gets `at_ms`, or is
    /// deleted when that is already past (`DEL`, replicated). Keys the user
    /// could not `PEXPIREAT`/`DEL` are left alone.
    pub fn retain(&mut self, key: &[u8], at_ms: i64, now_ms: i64) -> Retained {
        let name = RedisString::create_from_slice(self.ctx.ctx, key);
        let open = OpenKey::open(self.ctx, &name, true);
        if !open.is_hash() || open.expire_at_ms().is_some() {
            return Retained::Untouched;
        }
        let native = if at_ms <= now_ms {
            Native::Del
        } else {
            Native::Pexpireat
        };
        if !self.acl.allows(&name, native) {
            return Retained::Denied;
        }
        if at_ms <= now_ms {
            if open.delete() {
                self.replicate_argv(c"DEL", &mut [name.inner]);
                self.notify(raw::REDISMODULE_NOTIFY_GENERIC, c"del", name.inner);
            }
            return Retained::Deleted;
        }
        RedisStore::set_expiry(self.ctx, &CurrentKey { name, open }, at_ms);
        Retained::Set
    }

    /// MIGRATE of one flat counter: adds its value to `field` of the day
    /// hash `day_key` and deletes it, in one step (replicated as `HINCRBY`
    /// and `DEL`); with `dry_run`, only checks that it could. Fails, having
    /// changed nothing, when the user may not `GET`/`DEL` the flat key or
    /// `HINCRBY` the day hash, the value is not an integer, the day hash is
    /// not a hash, or the sum would overflow.
    pub fn migrate_flat(
        &mut self,
        flat: &[u8],
        day_key: &[u8],
        field: &[u8],
        expire_at: Option<i64>,
        dry_run: bool,
    ) -> Result<()> {
        let name = RedisString::create_from_slice(self.ctx.ctx, flat);
        for native in [Native::Get, Native::Del] {
            self.acl.check(&name, native)?;
        }
        let open = OpenKey::open(self.ctx, &name, true);
        let text = open
            .read_string()
            .ok_or_else(|| Error::invalid("not a string any more"))?;
        let value = flat_value(&text)?;
        let current = self.counter(day_key, field)?.unwrap_or(0);
        let total = add_counter(current, value)?;
        if dry_run {
            return Ok(());
        }
        self.set_counter(day_key, field, total, value);
        if let Some(at) = expire_at {
            self.expire_at(day_key, at);
        }
        if open.delete() {
            self.replicate_argv(c"DEL", &mut [name.inner]);
            self.notify(raw::REDISMODULE_NOTIFY_GENERIC, c"del", name.inner);
        }
        // A later flat key of the same day hash must see this write.
        Ok(())
    }

    /// The key, opened for writing on first use, after checking that the
    /// caller could run `native` on it.
    fn key(&mut self, key: &[u8], native: Native) -> Result<&CurrentKey> {
        // Two look-ups on a hit keep the borrow checker content; each is a
        // comparison of a few slices.
        if self.keys.find(key).is_some() {
            return self
                .keys
                .find(key)
                .ok_or_else(|| Error::invalid("internal error: no open key"));
        }
        let name = RedisString::create_from_slice(self.ctx.ctx, key);
        self.acl.check(&name, native)?;
        let open = OpenKey::open(self.ctx, &name, true);
        Ok(self.keys.push(CurrentKey { name, open }))
    }

    /// The field as a Redis string, valid as long as the store.
    fn field(&mut self, field: &[u8]) -> *mut raw::RedisModuleString {
        if let Some(name) = self.fields.find(field) {
            return name.inner;
        }
        let name = RedisString::create_from_slice(self.ctx.ctx, field);
        self.fields.push(name).inner
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
        let current = self.key(key, Native::Hset)?;
        current.open.hash_set(name, value.inner);
        let key_name = current.name.inner;
        self.replicate_argv(c"HSET", &mut [key_name, name, value.inner]);
        self.notify(raw::REDISMODULE_NOTIFY_HASH, c"hset", key_name);
        Ok(())
    }

    /// `HDEL key field`, replicated when it removed something.
    pub fn hash_del(&mut self, key: &[u8], field: &[u8]) -> Result<bool> {
        self.key(key, Native::Hdel)?.open.expect_hash()?;
        if self.key(key, Native::Hdel)?.open.is_empty() {
            return Ok(false);
        }
        let name = self.field(field);
        let current = self.key(key, Native::Hdel)?;
        // REDISMODULE_HASH_DELETE is the pointer value 1 in redismodule.h.
        let removed = current.open.hash_set(name, ptr::without_provenance_mut(1));
        if removed <= 0 {
            return Ok(false);
        }
        let key_name = current.name.inner;
        self.replicate_argv(c"HDEL", &mut [key_name, name]);
        self.notify(raw::REDISMODULE_NOTIFY_HASH, c"hdel", key_name);
        Ok(true)
    }
}

impl CounterStore for RedisStore<'_> {
    fn counter(&mut self, key: &[u8], field: &[u8]) -> Result<Option<i64>> {
        let name = self.field(field);
        let open = &self.key(key, Native::Hincrby)?.open;
        open.expect_hash()?;
        open.hash_get_int(name)
            .map_err(|bad| bad_counter(key, field, &bad))
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
        let names: Vec<*mut raw::RedisModuleString> = increments
            .iter()
            .map(|inc| self.field(&inc.field))
            .collect();
        let texts: Vec<RedisString> = values
            .iter()
            .map(|v| self.create_string(v.to_string().as_bytes()))
            .collect();
        let Ok(current) = self.key(key, Native::Hincrby) else {
            return;
        };
        let existed = !current.open.is_empty();
        let key_name = current.name.inner;
        let mut argv = Vec::with_capacity(1 + 2 * names.len());
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
        // Housekeeping once per registry the batch touched.
        let mut done: Vec<&[u8]> = Vec::new();
        for m in new_shards.iter().copied().chain(markers.iter()) {
            if done.contains(&&*m.registry) {
                continue;
            }
            done.push(&m.registry);
            let listed_new = new_shards.iter().any(|n| n.registry == m.registry);
            self.keep_generations(m, listed_new);
        }
    }
}

impl RedisStore<'_> {
    /// Dedup housekeeping after ids were remembered (see `listingstats_core::dedup`):
    /// lists `marker`'s generation in the registry hash when it just got a
    /// shard, and deletes the shards of every generation no lookup reaches
    /// any more. The registry is read at most once per generation per
    /// database between restarts. Module state, so no per-user ACL check:
    /// the caller was allowed to write a shard under the same prefix.
    fn keep_generations(&mut self, marker: &Marker, listed_new: bool) {
        let db = selected_db(self.ctx);
        let swept = SWEPT.with(|s| {
            s.borrow().get(&db).and_then(|m| m.get(&*marker.registry)) == Some(&marker.generation)
        });
        if swept && !listed_new {
            return; // The common case: one map look-up, no key opened.
        }
        let registry = self.create_string(&marker.registry);
        let open = OpenKey::open(self.ctx, &registry, true);
        if open.expect_hash().is_err() {
            return; // Someone else's key of another type: leave it alone.
        }
        let generation = marker.generation.to_string();
        if listed_new {
            let field = self.create_string(generation.as_bytes());
            let one = self.create_string(b"1");
            open.hash_set(field.inner, one.inner);
            self.replicate_argv(c"HSET", &mut [registry.inner, field.inner, one.inner]);
            self.notify(raw::REDISMODULE_NOTIFY_HASH, c"hset", registry.inner);
        }
        if swept {
            return;
        }
        let Ok(fields) = Reader::unchecked(self.ctx).hash_all_of(&registry) else {
            return;
        };
        let stale = stale_generations(fields.iter().map(|(f, _)| f.as_slice()), marker.generation);
        let scheme = self.scheme;
        for old in stale {
            for shard in shard_keys(scheme, old, marker.slot) {
                let name = self.create_string(&shard);
                let key = OpenKey::open(self.ctx, &name, true);
                if !key.is_empty() && key.delete() {
                    self.replicate_argv(c"DEL", &mut [name.inner]);
                    self.notify(raw::REDISMODULE_NOTIFY_GENERIC, c"del", name.inner);
                }
            }
            let field = self.create_string(old.to_string().as_bytes());
            if open.hash_set(field.inner, ptr::without_provenance_mut(1)) > 0 {
                self.replicate_argv(c"HDEL", &mut [registry.inner, field.inner]);
                self.notify(raw::REDISMODULE_NOTIFY_HASH, c"hdel", registry.inner);
            }
        }
        SWEPT.with(|s| {
            s.borrow_mut()
                .entry(db)
                .or_default()
                .insert(marker.registry.to_vec(), marker.generation)
        });
    }
}

thread_local! {
    /// database -> registry key -> the generation whose sweep is done.
    /// Main-thread state only; a restart forgets it and sweeps once more.
    static SWEPT: std::cell::RefCell<FxHashMap<i32, FxHashMap<Vec<u8>, i64>>> = Default::default();
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

/// Fires a keyspace notification for `name`, as the native command would.
fn notify(ctx: &Context, class: i32, event: &std::ffi::CStr, name: *mut raw::RedisModuleString) {
    // SAFETY: live context and key name.
    unsafe { api!(RedisModule_NotifyKeyspaceEvent)(ctx.ctx, class, event.as_ptr(), name) };
}

/// What RETAIN did to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retained {
    Set,
    Deleted,
    /// Not a hash, or it has an expiry already.
    Untouched,
    Denied,
}

/// Read access for GET and QUERY: one caller, many keys.
pub struct Reader<'c> {
    ctx: &'c Context,
    acl: Acl,
}

impl<'c> Reader<'c> {
    pub fn new(ctx: &'c Context) -> Self {
        Reader {
            ctx,
            acl: Acl::of_caller(ctx),
        }
    }

    /// A reader for the module's own state, with no caller (load, timers,
    /// events): no permission checks.
    pub fn unchecked(ctx: &'c Context) -> Self {
        Reader {
            ctx,
            acl: Acl::unchecked(ctx.ctx),
        }
    }

    /// A reader for the user named `user` (None: no checks), for slices of
    /// a query that run from a timer, where there is no client.
    pub fn for_user(ctx: &'c Context, user: Option<&[u8]>) -> Result<Self> {
        let acl = match user {
            Some(name) => Acl::of_name(ctx.ctx, name)?,
            None => Acl::unchecked(ctx.ctx),
        };
        Ok(Reader { ctx, acl })
    }

    /// The plan's terms, made once per command (or slice).
    pub fn field_names(&self, plan: &FieldPlan) -> FieldNames {
        FieldNames {
            exact: plan
                .fields
                .iter()
                .map(|f| (f.clone(), RedisString::create_from_slice(self.ctx.ctx, f)))
                .collect(),
            patterns: plan.patterns.clone(),
        }
    }

    /// Whether every read check would pass (no user, or one with `+@all
    /// ~*`): a caller may then skip building key names for checks.
    pub fn reads_everything(&self) -> bool {
        self.acl.is_unrestricted()
    }

    /// Fails when the caller may not read `key` (and logs it in ACL LOG).
    pub fn check_read(&self, key: &[u8]) -> Result<()> {
        let name = RedisString::create_from_slice(self.ctx.ctx, key);
        self.acl.check(&name, Native::Hmget)
    }

    /// Reads `fields` of the day hash `key` into `out`, with no permission
    /// check (the caller made it): `Ok(false)` when the key is absent or
    /// not a hash; an error when a needed value is not an integer.
    pub fn counters(&self, key: &[u8], fields: &FieldNames, out: &mut [i64]) -> Result<bool> {
        Ok(self.read(key, fields, out, false)?.is_some())
    }

    /// [`Reader::counters`] for a row the query cache keeps: `None` when
    /// the key is absent or not a hash, else when the values read may
    /// change by themselves (unix ms): the key's expiry or its fields'
    /// earliest (HEXPIRE), if any.
    pub fn row(
        &self,
        key: &[u8],
        fields: &FieldNames,
        out: &mut [i64],
    ) -> Result<Option<Option<i64>>> {
        self.read(key, fields, out, true)
    }

    /// The counters, and (`expiry`) when they may change by themselves.
    fn read(
        &self,
        key: &[u8],
        fields: &FieldNames,
        out: &mut [i64],
        expiry: bool,
    ) -> Result<Option<Option<i64>>> {
        let name = RedisString::create_from_slice(self.ctx.ctx, key);
        let open = OpenKey::open(self.ctx, &name, false);
        if !open.read_counters(key, fields, out)? {
            return Ok(None);
        }
        if !expiry {
            return Ok(Some(None));
        }
        Ok(Some(
            match (open.expire_at_ms(), open.field_min_expire_ms()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        ))
    }

    /// The expiry (unix ms) of `key`, if it exists and has one.
    pub fn expiry(&self, key: &[u8]) -> Option<i64> {
        let name = RedisString::create_from_slice(self.ctx.ctx, key);
        OpenKey::open(self.ctx, &name, false).expire_at_ms()
    }

    /// Whether the caller could run `native` on `key` (no ACL LOG entry).
    pub fn may(&self, key: &[u8], native: Native) -> bool {
        self.acl
            .allows(&RedisString::create_from_slice(self.ctx.ctx, key), native)
    }

    /// Whether the caller may read the day hash `key` (no ACL LOG entry).
    pub fn may_read(&self, key: &[u8]) -> bool {
        self.may(key, Native::Hmget)
    }

    /// Visits every key of the database, in-process (no client round trip
    /// per batch): `wanted` sees each name; for names it accepts that the
    /// caller may read and that are hashes, `visit` gets the counters of
    /// `fields`. Keys the caller may not read are passed over. Returns how
    /// many keys were scanned.
    pub fn scan(
        &self,
        fields: &FieldNames,
        mut wanted: impl FnMut(&[u8]) -> bool,
        mut visit: impl FnMut(&[u8], &[i64]) -> Result<()>,
    ) -> Result<u64> {
        let mut values = vec![0; fields.width()];
        let mut scanned = 0u64;
        let mut error: Option<Error> = None;
        let mut cursor = Cursor::new();
        loop {
            let more = cursor.scan_batch(self.ctx, |k| {
                scanned += 1;
                if error.is_some() || k.key.key.is_null() || !wanted(k.name) {
                    return;
                }
                if !self.acl.allows_raw(k.name_raw, Native::Hmget) {
                    return;
                }
                let result = match k.key.read_counters(k.name, fields, &mut values) {
                    Ok(true) => visit(k.name, &values),
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    error = Some(e);
                }
            });
            if !more || error.is_some() {
                break;
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(scanned),
        }
    }

    /// Every field and value of a hash, sorted by field; empty when the key
    /// is absent.
    pub fn hash_all(&self, key: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let name = RedisString::create_from_slice(self.ctx.ctx, key);
        self.acl.check(&name, Native::Hgetall)?;
        self.hash_all_of(&name)
    }

    pub(super) fn hash_all_of(&self, name: &RedisString) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let open = OpenKey::open(self.ctx, name, false);
        open.expect_hash()?;
        if open.is_empty() {
            return Ok(Vec::new());
        }
        let open: &KeyRef = &open;
        let mut pairs = Vec::new();
        // SAFETY: ScanKey over a live hash; the callback copies each field
        // and value out before Redis reuses them.
        unsafe {
            let cursor = api!(RedisModule_ScanCursorCreate)();
            extern "C" fn collect(
                _key: *mut raw::RedisModuleKey,
                field: *mut raw::RedisModuleString,
                value: *mut raw::RedisModuleString,
                privdata: *mut std::os::raw::c_void,
            ) {
                // SAFETY: privdata is the Vec passed below.
                let pairs = unsafe { &mut *privdata.cast::<Vec<(Vec<u8>, Vec<u8>)>>() };
                // SAFETY: field and value are live during this callback.
                pairs.push(unsafe { (lent_bytes(field).to_vec(), lent_bytes(value).to_vec()) });
            }
            while api!(RedisModule_ScanKey)(
                open.key,
                cursor,
                Some(collect),
                (&mut pairs as *mut Vec<(Vec<u8>, Vec<u8>)>).cast(),
            ) != 0
            {}
            api!(RedisModule_ScanCursorDestroy)(cursor);
        }
        pairs.sort();
        Ok(pairs)
    }
}
