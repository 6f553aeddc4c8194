//! Redis's side of the core's [`CounterStore`], and the read helpers the
//! query commands use. All raw key I/O of the module lives in this file.
//!
//! Why raw calls instead of `ctx.call("HINCRBY", ...)`: a call through
//! `RedisModule_Call` builds a fake client and a full argv for each
//! command, several times the cost of the lookup itself; INCR must stay
//! close to native HINCRBY. Why explicit replication: the effect of INCR
//! depends on the clock and on dedup state, so replicas and the AOF get the
//! concrete `HINCRBY key field n` and `SET marker 1 PXAT t` instead.

use std::os::raw::{c_char, c_int, c_longlong};
use std::ptr;

use redis_module::{raw, Context, RedisString};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use listingstats_core::dedup::{stale_generations, Marker, SHARDS};
use listingstats_core::number::parse_counter;
use listingstats_core::write::CounterStore;
use listingstats_core::{Error, Result};

/// The native command a module action stands for, on one key: the module
/// may do to a key only what the caller could do with that command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Native {
    /// Reading some fields (QUERY, TOP, the registry).
    Hmget,
    /// Reading a whole hash (GET).
    Hgetall,
    /// Adding to a counter (INCR, INGEST).
    Hincrby,
    /// Setting fields (METRIC SET, dedup ids).
    Hset,
    /// Removing a field (METRIC DEL).
    Hdel,
}

impl Native {
    /// The argv after the key: a placeholder field (and value), since ACL
    /// rules never look at fields.
    fn argv(self) -> (&'static [u8], &'static [&'static [u8]]) {
        match self {
            Native::Hmget => (b"HMGET", &[b"f"]),
            Native::Hgetall => (b"HGETALL", &[]),
            Native::Hincrby => (b"HINCRBY", &[b"f", b"1"]),
            Native::Hset => (b"HSET", &[b"f", b"1"]),
            Native::Hdel => (b"HDEL", &[b"f"]),
        }
    }

    fn is_write(self) -> bool {
        matches!(self, Native::Hincrby | Native::Hset | Native::Hdel)
    }
}

/// The calling user, for permission checks.
///
/// Redis checks ACLs only for keys at declared argument positions; ours are
/// computed from a listing and a day, so every command checks each key it
/// computes here, before it reads or writes anything. The check is
/// `RedisModule_ACLCheckCommandPermissions` on the equivalent native argv
/// (`HINCRBY key f 1`, `HMGET key f`, ...): it refuses exactly what the
/// native command would, selectors and `-@write` included.
/// (`RedisModule_ACLCheckKeyPermissions` alone passes a key when any
/// selector's pattern matches it, whatever commands that selector allows.)
pub struct Acl {
    ctx: *mut raw::RedisModuleCtx,
    user: *mut raw::RedisModuleUser,
}

impl Acl {
    /// No checks: no client (AOF loading, replication, the module itself).
    fn unchecked(ctx: *mut raw::RedisModuleCtx) -> Acl {
        Acl {
            ctx,
            user: ptr::null_mut(),
        }
    }

    pub fn of_caller(ctx: &Context) -> Acl {
        match caller_name(ctx) {
            Some(name) => Acl::of_name(ctx.ctx, &name).unwrap_or_else(|_| Acl::unchecked(ctx.ctx)),
            None => Acl::unchecked(ctx.ctx),
        }
    }

    /// The user named `name`, for work that outlives the command (a timer
    /// has no client). Fails when the user is gone or disabled.
    fn of_name(ctx: *mut raw::RedisModuleCtx, name: &[u8]) -> Result<Acl> {
        let name_str = RedisString::create_from_slice(ptr::null_mut(), name);
        // SAFETY: live string; the user is freed in Drop.
        let user = unsafe { api!(RedisModule_GetModuleUserFromUserName)(name_str.inner) };
        if user.is_null() {
            return Err(Error::invalid(format!(
                "user {} no longer exists or is disabled",
                listingstats_core::error::quote(name)
            )));
        }
        Ok(Acl { ctx, user })
    }

    /// Whether the user could run `native` on `key` (no ACL LOG entry).
    fn allows_raw(&self, key: *mut raw::RedisModuleString, native: Native) -> bool {
        if self.user.is_null() {
            return true;
        }
        let (command, rest) = native.argv();
        let mut words: SmallVec<[RedisString; 3]> = SmallVec::new();
        words.push(RedisString::create_from_slice(self.ctx, command));
        words.extend(
            rest.iter()
                .map(|w| RedisString::create_from_slice(self.ctx, w)),
        );
        let mut argv: SmallVec<[*mut raw::RedisModuleString; 4]> = SmallVec::new();
        argv.push(words[0].inner);
        argv.push(key);
        argv.extend(words[1..].iter().map(|w| w.inner));
        // SAFETY: user and every string are live; Redis only reads argv.
        let status = unsafe {
            api!(RedisModule_ACLCheckCommandPermissions)(
                self.user,
                argv.as_mut_ptr(),
                argv.len() as c_int,
            )
        };
        status == raw::REDISMODULE_OK as c_int
    }

    fn allows(&self, key: &RedisString, native: Native) -> bool {
        self.allows_raw(key.inner, native)
    }

    /// `Ok` when the user could run `native` on `key`; otherwise a NOPERM
    /// error, and an `ACL LOG` entry as the server makes for its own
    /// refusals.
    fn check(&self, key: &RedisString, native: Native) -> Result<()> {
        if self.allows(key, native) {
            return Ok(());
        }
        let flags = if native.is_write() {
            raw::REDISMODULE_CMD_KEY_ACCESS | raw::REDISMODULE_CMD_KEY_UPDATE
        } else {
            raw::REDISMODULE_CMD_KEY_ACCESS
        } as c_int;
        // SAFETY: user and key are live Redis objects.
        let key_refused =
            unsafe { api!(RedisModule_ACLCheckKeyPermissions)(self.user, key.inner, flags) }
                != raw::REDISMODULE_OK as c_int;
        // SAFETY: live context, user and key; the log copies the key name.
        unsafe {
            if let Some(log) = *ptr::addr_of!(raw::RedisModule_ACLAddLogEntry) {
                let reason = if key_refused {
                    raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_KEY
                } else {
                    raw::RedisModuleACLLogEntryReason_REDISMODULE_ACL_LOG_CMD
                };
                let command = RedisString::create_from_slice(self.ctx, native.argv().0);
                log(
                    self.ctx,
                    self.user,
                    if key_refused {
                        key.inner
                    } else {
                        command.inner
                    },
                    reason,
                );
            }
        }
        let verb = if native.is_write() { "write" } else { "read" };
        let key_text = key.as_slice().escape_ascii();
        Err(Error::invalid(if key_refused {
            format!("NOPERM this user has no permissions to {verb} the key '{key_text}'")
        } else {
            format!(
                "NOPERM this user has no permissions to run '{}' on the key '{key_text}'",
                String::from_utf8_lossy(native.argv().0).to_lowercase()
            )
        }))
    }
}

impl Drop for Acl {
    fn drop(&mut self) {
        if !self.user.is_null() {
            // SAFETY: created by GetModuleUserFromUserName, freed once.
            unsafe { api!(RedisModule_FreeModuleUser)(self.user) };
        }
    }
}

/// A key handle: opened by us ([`OpenKey`]) or lent by a keyspace scan.
struct KeyRef {
    ctx: *mut raw::RedisModuleCtx,
    key: *mut raw::RedisModuleKey,
}

/// A key we opened, closed on drop.
struct OpenKey(KeyRef);

impl OpenKey {
    fn open(ctx: &Context, name: &RedisString, write: bool) -> OpenKey {
        let mode = if write {
            raw::REDISMODULE_READ | raw::REDISMODULE_WRITE
        } else {
            raw::REDISMODULE_READ
        };
        // SAFETY: ctx and name are live. In READ mode an absent key gives
        // NULL: KeyType and CloseKey accept that, the readers check it.
        let key = unsafe { api!(RedisModule_OpenKey)(ctx.ctx, name.inner, mode as c_int) };
        OpenKey(KeyRef {
            ctx: ctx.ctx,
            key: key.cast(),
        })
    }
}

impl std::ops::Deref for OpenKey {
    type Target = KeyRef;
    fn deref(&self) -> &KeyRef {
        &self.0
    }
}

impl KeyRef {
    fn is_hash(&self) -> bool {
        self.kind() == raw::REDISMODULE_KEYTYPE_HASH as c_int
    }

    /// Reads `fields` into `out` (0 for an absent field). `Ok(false)` when
    /// the key is not a hash: look-alike keys never count.
    fn read_counters(&self, key: &[u8], fields: &FieldNames, out: &mut [i64]) -> Result<bool> {
        if !self.is_hash() {
            return Ok(false);
        }
        for ((bytes, name), slot) in fields.0.iter().zip(out.iter_mut()) {
            *slot = match self.hash_get_int(name.inner) {
                Ok(v) => v.unwrap_or(0),
                Err(bad) => return Err(bad_counter(key, bytes, &bad)),
            };
        }
        Ok(true)
    }

    fn kind(&self) -> c_int {
        // SAFETY: live key handle.
        unsafe { api!(RedisModule_KeyType)(self.key) }
    }

    fn is_empty(&self) -> bool {
        self.kind() == raw::REDISMODULE_KEYTYPE_EMPTY as c_int
    }

    /// Absent keys read as empty hashes; other types are WRONGTYPE.
    fn expect_hash(&self) -> Result<()> {
        let kind = self.kind();
        if kind == raw::REDISMODULE_KEYTYPE_EMPTY as c_int
            || kind == raw::REDISMODULE_KEYTYPE_HASH as c_int
        {
            Ok(())
        } else {
            Err(Error::WrongType)
        }
    }

    /// One field's value as an integer; `Ok(None)` when the key or the
    /// field is absent, `Err(bytes)` when the value is not an integer.
    fn hash_get_int(
        &self,
        field: *mut raw::RedisModuleString,
    ) -> std::result::Result<Option<i64>, Vec<u8>> {
        if self.key.is_null() {
            return Ok(None);
        }
        let mut value: *mut raw::RedisModuleString = ptr::null_mut();
        // SAFETY: flags NONE, one field string, one out pointer, NULL end.
        unsafe {
            api!(RedisModule_HashGet)(
                self.key,
                raw::REDISMODULE_HASH_NONE as c_int,
                field,
                &mut value as *mut *mut raw::RedisModuleString,
                ptr::null::<c_char>(),
            );
        }
        if value.is_null() {
            return Ok(None);
        }
        let mut n: c_longlong = 0;
        // SAFETY: value is ours until freed below. StringToLongLong accepts
        // exactly what HINCRBY accepts.
        let parsed = unsafe { api!(RedisModule_StringToLongLong)(value, &mut n) };
        let result = if parsed == raw::REDISMODULE_OK as c_int {
            Ok(Some(n))
        } else {
            Err(string_bytes(value).to_vec())
        };
        // SAFETY: HashGet hands us ownership of the value.
        unsafe { api!(RedisModule_FreeString)(self.ctx, value) };
        result
    }

    /// `HashSet` of one field; returns how many fields it updated or
    /// deleted, as the API does.
    fn hash_set(
        &self,
        field: *mut raw::RedisModuleString,
        value: *mut raw::RedisModuleString,
    ) -> c_int {
        // SAFETY: live writable key; Redis copies field and value.
        unsafe {
            api!(RedisModule_HashSet)(
                self.key,
                raw::REDISMODULE_HASH_NONE as c_int,
                field,
                value,
                ptr::null::<c_char>(),
            )
        }
    }

    fn hash_has(&self, field: *mut raw::RedisModuleString) -> bool {
        if self.key.is_null() || self.is_empty() {
            return false;
        }
        let mut exists: c_int = 0;
        // SAFETY: EXISTS flag: one field, one int out pointer, NULL end.
        unsafe {
            api!(RedisModule_HashGet)(
                self.key,
                raw::REDISMODULE_HASH_EXISTS as c_int,
                field,
                &mut exists as *mut c_int,
                ptr::null::<c_char>(),
            );
        }
        exists != 0
    }

    /// Deletes the key; true when it existed.
    fn delete(&self) -> bool {
        // SAFETY: live writable key.
        unsafe { api!(RedisModule_DeleteKey)(self.key) == raw::REDISMODULE_OK as c_int }
    }

    fn hash_set_int(&self, field: *mut raw::RedisModuleString, value: i64) {
        // SAFETY: the value string is ours and freed after the copy HashSet makes.
        unsafe {
            let v = api!(RedisModule_CreateStringFromLongLong)(self.ctx, value as c_longlong);
            api!(RedisModule_HashSet)(
                self.key,
                raw::REDISMODULE_HASH_NONE as c_int,
                field,
                v,
                ptr::null::<c_char>(),
            );
            api!(RedisModule_FreeString)(self.ctx, v);
        }
    }
}

impl Drop for OpenKey {
    fn drop(&mut self) {
        // SAFETY: opened by OpenKey, closed once.
        unsafe { api!(RedisModule_CloseKey)(self.0.key) };
    }
}

/// The error for a stored value that is not an integer.
fn bad_counter(key: &[u8], field: &[u8], value: &[u8]) -> Error {
    match parse_counter(key, field, value) {
        Err(e) => e,
        Ok(_) => Error::invalid("internal error: integer check disagrees"),
    }
}

/// What a scan does with each wanted key: its name and counters.
type Visit<'a> = dyn FnMut(&[u8], &[i64]) -> Result<()> + 'a;

/// Field names of a query, as Redis strings made once per command.
pub struct FieldNames(Vec<(Vec<u8>, RedisString)>);

/// The bytes of a Redis string, valid while the string lives.
pub fn string_bytes<'a>(s: *const raw::RedisModuleString) -> &'a [u8] {
    let mut len = 0usize;
    // SAFETY: s is a live string; the slice is used before it is freed.
    unsafe {
        let p = api!(RedisModule_StringPtrLen)(s, &mut len);
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    }
}

/// The name of the user running the command, if there is a client.
pub fn caller_name(ctx: &Context) -> Option<Vec<u8>> {
    // SAFETY: live context; the returned string is ours to free.
    unsafe {
        let name = api!(RedisModule_GetCurrentUserName)(ctx.ctx);
        if name.is_null() {
            return None;
        }
        let bytes = string_bytes(name).to_vec();
        api!(RedisModule_FreeString)(ctx.ctx, name);
        Some(bytes)
    }
}

/// The database the context has selected.
pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: live context.
    unsafe { api!(RedisModule_GetSelectedDb)(ctx.ctx) }
}

/// The server's clock, in unix milliseconds.
pub fn now_ms() -> i64 {
    // SAFETY: plain API call.
    unsafe { api!(RedisModule_Milliseconds)() }
}

const SHARD_ABOUT_FIELD: &[u8] = b"listingstats about";
const SHARD_ABOUT: &[u8] =
    b"dedup shard of LISTINGSTATS: the other fields are event ids seen in this generation; no TTL, the module deletes it two windows on";

/// Writes day hashes, dedup markers and the metrics hash for one command.
pub struct RedisStore<'c> {
    ctx: &'c Context,
    acl: Acl,
    /// Every key this command touched, open for writing, its ACL check
    /// passed: the write phase finds the handles the check phase opened.
    /// All are closed when the store is dropped, at the end of the command.
    keys: FxHashMap<Vec<u8>, CurrentKey>,
    /// Field names as Redis strings, made once per command.
    fields: FxHashMap<Vec<u8>, RedisString>,
}

struct CurrentKey {
    name: RedisString,
    open: OpenKey,
}

impl<'c> RedisStore<'c> {
    pub fn new(ctx: &'c Context) -> Self {
        RedisStore {
            ctx,
            acl: Acl::of_caller(ctx),
            keys: FxHashMap::default(),
            fields: FxHashMap::default(),
        }
    }

    /// The key, opened for writing on first use, after checking that the
    /// caller could run `native` on it.
    fn key(&mut self, key: &[u8], native: Native) -> Result<&CurrentKey> {
        if !self.keys.contains_key(key) {
            let name = RedisString::create_from_slice(self.ctx.ctx, key);
            self.acl.check(&name, native)?;
            let open = OpenKey::open(self.ctx, &name, true);
            self.keys.insert(key.to_vec(), CurrentKey { name, open });
        }
        self.keys
            .get(key)
            .ok_or_else(|| Error::invalid("internal error: no open key"))
    }

    /// The field as a Redis string, valid as long as the store.
    fn field(&mut self, field: &[u8]) -> *mut raw::RedisModuleString {
        if let Some(name) = self.fields.get(field) {
            return name.inner;
        }
        let name = RedisString::create_from_slice(self.ctx.ctx, field);
        let inner = name.inner;
        self.fields.insert(field.to_vec(), name);
        inner
    }

    fn replicate_hincrby(&self, key: &[u8], field: &[u8], delta: i64) {
        // SAFETY: "bbl" takes two (pointer, length) buffers and a long long.
        unsafe {
            api!(RedisModule_Replicate)(
                self.ctx.ctx,
                c"HINCRBY".as_ptr(),
                c"bbl".as_ptr(),
                key.as_ptr(),
                key.len(),
                field.as_ptr(),
                field.len(),
                delta as c_longlong,
            );
        }
    }

    /// Replicates `command` with these arguments (Redis strings).
    fn replicate_argv(&self, command: &std::ffi::CStr, argv: &mut [*mut raw::RedisModuleString]) {
        // SAFETY: "v" takes an array of strings and its length; Redis
        // takes its own references.
        unsafe {
            api!(RedisModule_Replicate)(
                self.ctx.ctx,
                command.as_ptr(),
                c"v".as_ptr(),
                argv.as_mut_ptr(),
                argv.len(),
            );
        }
    }

    fn notify(&self, class: i32, event: &std::ffi::CStr, name: *mut raw::RedisModuleString) {
        // SAFETY: live context and key name.
        unsafe { api!(RedisModule_NotifyKeyspaceEvent)(self.ctx.ctx, class, event.as_ptr(), name) };
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
        self.key(key, Native::Hincrby)?.open.expect_hash()?;
        let name = self.field(field);
        let current = self.key(key, Native::Hincrby)?.open.hash_get_int(name);
        current.map_err(|bad| bad_counter(key, field, &bad))
    }

    fn set_counter(&mut self, key: &[u8], field: &[u8], value: i64, delta: i64) {
        let name = self.field(field);
        let Ok(current) = self.key(key, Native::Hincrby) else {
            return;
        };
        current.open.hash_set_int(name, value);
        let key_name = current.name.inner;
        self.replicate_hincrby(key, field, delta);
        self.notify(raw::REDISMODULE_NOTIFY_HASH, c"hincrby", key_name);
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
        let mut new_generation: Option<&Marker> = None;
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
                new_generation = Some(ids[0]);
            }
        }
        if let Some(m) = new_generation.or(markers.first()) {
            self.keep_generations(m, new_generation.is_some());
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
        let Ok(fields) = Reader::new(self.ctx).hash_all_of(&registry) else {
            return;
        };
        let stale = stale_generations(fields.iter().map(|(f, _)| f.as_slice()), marker.generation);
        let scheme = crate::config::current().keys.clone();
        for old in stale {
            for shard in 0..SHARDS {
                let name = self.create_string(&scheme.seen_key(old, shard));
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

    /// A reader for the user named `user` (None: no checks), for slices of
    /// a query that run from a timer, where there is no client.
    pub fn for_user(ctx: &'c Context, user: Option<&[u8]>) -> Result<Self> {
        let acl = match user {
            Some(name) => Acl::of_name(ctx.ctx, name)?,
            None => Acl::unchecked(ctx.ctx),
        };
        Ok(Reader { ctx, acl })
    }

    pub fn field_names(&self, fields: &[Vec<u8>]) -> FieldNames {
        FieldNames(
            fields
                .iter()
                .map(|f| (f.clone(), RedisString::create_from_slice(self.ctx.ctx, f)))
                .collect(),
        )
    }

    /// Reads `fields` of the day hash `key` into `out`. `Ok(false)` when
    /// the key is absent or not a hash; an error when the caller may not
    /// read it or a needed value is not an integer.
    pub fn counters(&self, key: &[u8], fields: &FieldNames, out: &mut [i64]) -> Result<bool> {
        let name = RedisString::create_from_slice(self.ctx.ctx, key);
        self.acl.check(&name, Native::Hmget)?;
        OpenKey::open(self.ctx, &name, false).read_counters(key, fields, out)
    }

    /// Whether the caller may read the day hash `key` (no ACL LOG entry).
    pub fn may_read(&self, key: &[u8]) -> bool {
        self.acl.allows(
            &RedisString::create_from_slice(self.ctx.ctx, key),
            Native::Hmget,
        )
    }

    /// Like [`Reader::counters`], but a key the caller may not read is
    /// passed over (`Ok(false)`), as a `*` query does.
    pub fn counters_if_readable(
        &self,
        key: &[u8],
        fields: &FieldNames,
        out: &mut [i64],
    ) -> Result<bool> {
        let name = RedisString::create_from_slice(self.ctx.ctx, key);
        if !self.acl.allows(&name, Native::Hmget) {
            return Ok(false);
        }
        OpenKey::open(self.ctx, &name, false).read_counters(key, fields, out)
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
        struct State<'a> {
            reader: &'a Reader<'a>,
            fields: &'a FieldNames,
            wanted: &'a mut dyn FnMut(&[u8]) -> bool,
            visit: &'a mut Visit<'a>,
            values: Vec<i64>,
            scanned: u64,
            error: Option<Error>,
        }
        extern "C" fn each(
            ctx: *mut raw::RedisModuleCtx,
            keyname: *mut raw::RedisModuleString,
            key: *mut raw::RedisModuleKey,
            privdata: *mut std::os::raw::c_void,
        ) {
            // SAFETY: privdata is the State below, alive for the whole scan.
            let st = unsafe { &mut *privdata.cast::<State<'_>>() };
            st.scanned += 1;
            if st.error.is_some() || key.is_null() {
                return;
            }
            let name = string_bytes(keyname);
            if !(st.wanted)(name) {
                return;
            }
            if !st.reader.acl.allows_raw(keyname, Native::Hmget) {
                return;
            }
            let handle = KeyRef { ctx, key };
            let mut values = std::mem::take(&mut st.values);
            let result = match handle.read_counters(name, st.fields, &mut values) {
                Ok(true) => (st.visit)(name, &values),
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            };
            st.values = values;
            if let Err(e) = result {
                st.error = Some(e);
            }
        }
        let mut state = State {
            reader: self,
            fields,
            wanted: &mut wanted,
            visit: &mut visit,
            values: vec![0; fields.0.len()],
            scanned: 0,
            error: None,
        };
        // SAFETY: the cursor is created and destroyed here; the callback
        // only runs inside RM_Scan, while `state` lives.
        unsafe {
            let cursor = api!(RedisModule_ScanCursorCreate)();
            while api!(RedisModule_Scan)(
                self.ctx.ctx,
                cursor,
                Some(each),
                (&mut state as *mut State<'_>).cast(),
            ) != 0
                && state.error.is_none()
            {}
            api!(RedisModule_ScanCursorDestroy)(cursor);
        }
        match state.error {
            Some(e) => Err(e),
            None => Ok(state.scanned),
        }
    }

    /// Every field and value of a hash, sorted by field; empty when the key
    /// is absent.
    pub fn hash_all(&self, key: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let name = RedisString::create_from_slice(self.ctx.ctx, key);
        self.acl.check(&name, Native::Hgetall)?;
        self.hash_all_of(&name)
    }

    /// [`Reader::hash_all`] without the caller's permission check, for the
    /// module's own metadata (see `commands::metric::current_registry`).
    pub fn hash_all_unchecked(&self, key: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.hash_all_of(&RedisString::create_from_slice(self.ctx.ctx, key))
    }

    pub(crate) fn hash_all_of(&self, name: &RedisString) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
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
                pairs.push((string_bytes(field).to_vec(), string_bytes(value).to_vec()));
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
