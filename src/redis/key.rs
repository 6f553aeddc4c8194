//! An open key: its type, hash fields as counters, delete.
//!
//! Raw calls on purpose (the hot path of INCR, INGEST and QUERY): the
//! crate's `RedisKey` hash helpers build a `RedisString` per field read.

use std::os::raw::{c_char, c_int, c_longlong};
use std::ptr;

use redis_module::{raw, Context, RedisString};

use super::string::lent_bytes;
use listingstats_core::metrics::PatternSums;
use listingstats_core::number::counter_error;
use listingstats_core::{Error, Result};

/// Field names of a query, as Redis strings made once per command.
pub struct FieldNames {
    /// Exact event names, read one by one (`HashGet`).
    pub(super) exact: Vec<(Vec<u8>, RedisString)>,
    /// Patterns, each summing the matching fields of one pass over the hash.
    pub(super) patterns: Vec<regex::bytes::Regex>,
}

impl FieldNames {
    /// How many values a day hash gives: exact names, then patterns.
    pub fn width(&self) -> usize {
        self.exact.len() + self.patterns.len()
    }
}

/// A key handle: opened by us ([`OpenKey`]) or lent by a keyspace scan.
pub(super) struct KeyRef {
    pub(super) ctx: *mut raw::RedisModuleCtx,
    pub(super) key: *mut raw::RedisModuleKey,
}

/// A key we opened, closed on drop.
pub(super) struct OpenKey(KeyRef);

impl OpenKey {
    pub(super) fn open(ctx: &Context, name: &RedisString, write: bool) -> OpenKey {
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
    pub(super) fn is_hash(&self) -> bool {
        self.kind() == raw::REDISMODULE_KEYTYPE_HASH as c_int
    }

    /// Reads `fields` into `out` (0 for an absent field). `Ok(false)` when
    /// the key is not a hash: look-alike keys never count.
    pub(super) fn read_counters(
        &self,
        key: &[u8],
        fields: &FieldNames,
        out: &mut [i64],
    ) -> Result<bool> {
        if !self.is_hash() {
            return Ok(false);
        }
        for ((bytes, name), slot) in fields.exact.iter().zip(out.iter_mut()) {
            *slot = match self.hash_get_int(name.inner) {
                Ok(v) => v.unwrap_or(0),
                Err(bad) => return Err(counter_error(key, bytes, &bad)),
            };
        }
        if !fields.patterns.is_empty() {
            let tail = &mut out[fields.exact.len()..];
            self.sum_matching(key, &fields.patterns, tail)?;
        }
        Ok(true)
    }

    /// One pass over the hash's fields, each handed to the core's
    /// [`PatternSums`] (which fields count, the sums, the errors).
    fn sum_matching(
        &self,
        key: &[u8],
        patterns: &[regex::bytes::Regex],
        out: &mut [i64],
    ) -> Result<()> {
        extern "C" fn each(
            _key: *mut raw::RedisModuleKey,
            field: *mut raw::RedisModuleString,
            value: *mut raw::RedisModuleString,
            privdata: *mut std::os::raw::c_void,
        ) {
            // SAFETY: privdata is the PatternSums below, alive during
            // ScanKey; field and value are live for this callback.
            let sums = unsafe { &mut *privdata.cast::<PatternSums<'_>>() };
            let name = unsafe { lent_bytes(field) };
            sums.add(name, || {
                let mut n: c_longlong = 0;
                // SAFETY: live value string.
                if unsafe { api!(RedisModule_StringToLongLong)(value, &mut n) }
                    == raw::REDISMODULE_OK as c_int
                {
                    Ok(n)
                } else {
                    Err(unsafe { lent_bytes(value) }.to_vec())
                }
            });
        }
        let mut sums = PatternSums::new(key, patterns, out);
        // SAFETY: a live hash key; the cursor is destroyed here; the
        // callback runs only inside ScanKey, while `sums` lives.
        unsafe {
            let cursor = api!(RedisModule_ScanCursorCreate)();
            while api!(RedisModule_ScanKey)(
                self.key,
                cursor,
                Some(each),
                (&mut sums as *mut PatternSums<'_>).cast(),
            ) != 0
            {}
            api!(RedisModule_ScanCursorDestroy)(cursor);
        }
        sums.finish()
    }

    pub(super) fn kind(&self) -> c_int {
        // SAFETY: live key handle.
        unsafe { api!(RedisModule_KeyType)(self.key) }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.kind() == raw::REDISMODULE_KEYTYPE_EMPTY as c_int
    }

    /// Absent keys read as empty hashes; other types are WRONGTYPE.
    pub(super) fn expect_hash(&self) -> Result<()> {
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
    pub(super) fn hash_get_int(
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
            // SAFETY: value is live until freed below.
            Err(unsafe { lent_bytes(value) }.to_vec())
        };
        // SAFETY: HashGet hands us ownership of the value.
        unsafe { api!(RedisModule_FreeString)(self.ctx, value) };
        result
    }

    /// `HashSet` of one field; returns how many fields it updated or
    /// deleted, as the API does.
    pub(super) fn hash_set(
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

    pub(super) fn hash_has(&self, field: *mut raw::RedisModuleString) -> bool {
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

    /// The key's absolute expiry in unix ms; `None` without one.
    pub(super) fn expire_at_ms(&self) -> Option<i64> {
        if self.key.is_null() {
            return None; // Absent, opened for reading.
        }
        // SAFETY: live key handle. GetAbsExpire exists from Redis 7.2;
        // before that the relative TTL is re-based on the clock.
        unsafe {
            if let Some(get_abs) = *ptr::addr_of!(raw::RedisModule_GetAbsExpire) {
                let at = get_abs(self.key);
                return (at >= 0).then_some(at);
            }
            let ttl = api!(RedisModule_GetExpire)(self.key);
            (ttl >= 0).then(|| api!(RedisModule_Milliseconds)() + ttl)
        }
    }

    /// The earliest expiry (unix ms) of the hash's fields that have their
    /// own (HEXPIRE, Redis 7.4+); `None` without one or on servers without
    /// the API.
    pub(super) fn field_min_expire_ms(&self) -> Option<i64> {
        // SAFETY: live key handle (NULL for an absent key, which the API
        // accepts as "no expiry"); the function pointer is checked.
        unsafe {
            let get = (*ptr::addr_of!(raw::RedisModule_HashFieldMinExpire))?;
            if self.key.is_null() {
                return None;
            }
            let at = get(self.key);
            (at >= 0).then_some(at)
        }
    }

    /// Sets the key's expiry to the absolute unix time `at_ms`, exactly
    /// the instant replicas receive in `PEXPIREAT` (the caller replicates
    /// it). A relative expiry (RM_SetExpire) would be re-based on the
    /// server's clock a moment later and land a millisecond or so away.
    pub(super) fn set_expire_at(&self, name: &RedisString, at_ms: i64) {
        // SAFETY: live writable key that exists. SetAbsExpire exists from
        // Redis 7.2; before that, PEXPIREAT through RM_Call (not
        // replicated: no "!" flag) sets the same absolute time; its reply
        // is freed at once.
        unsafe {
            if let Some(set_abs) = *ptr::addr_of!(raw::RedisModule_SetAbsExpire) {
                set_abs(self.key, at_ms);
                return;
            }
            let reply = api!(RedisModule_Call)(
                self.ctx,
                c"PEXPIREAT".as_ptr(),
                c"sl".as_ptr(),
                name.inner,
                at_ms as c_longlong,
            );
            if !reply.is_null() {
                api!(RedisModule_FreeCallReply)(reply);
            }
        }
    }

    /// A string key's bytes; `None` for another type or an absent key.
    pub(super) fn read_string(&self) -> Option<Vec<u8>> {
        if self.key.is_null() || self.kind() != raw::REDISMODULE_KEYTYPE_STRING as c_int {
            return None;
        }
        let mut len = 0usize;
        // SAFETY: a live string key opened for reading; the bytes are
        // copied before the key is touched again.
        unsafe {
            let p = api!(RedisModule_StringDMA)(self.key, &mut len, raw::REDISMODULE_READ as c_int);
            if p.is_null() {
                return None;
            }
            Some(std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec())
        }
    }

    /// Deletes the key; true when it existed.
    pub(super) fn delete(&self) -> bool {
        // SAFETY: live writable key.
        unsafe { api!(RedisModule_DeleteKey)(self.key) == raw::REDISMODULE_OK as c_int }
    }

    pub(super) fn hash_set_int(&self, field: *mut raw::RedisModuleString, value: i64) {
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
