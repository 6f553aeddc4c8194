//! A keyspace scan cursor (RAII) with a closure per key.
//!
//! Not the crate's `KeysCursor`: its callback lends a `RedisKey` whose raw
//! handle the hash readers (`key.rs`) cannot reach, so each key would be
//! opened a second time by name.

use std::os::raw::c_void;

use redis_module::{raw, Context};

use super::key::KeyRef;
use super::string::lent_bytes;

/// What a scan lends its closure for one key.
pub struct Scanned<'a> {
    /// The key's name, valid during the callback.
    pub name: &'a [u8],
    pub(super) name_raw: *mut raw::RedisModuleString,
    pub(super) key: KeyRef,
}

impl Scanned<'_> {
    pub fn is_hash(&self) -> bool {
        !self.key.key.is_null() && self.key.is_hash()
    }

    pub fn is_string(&self) -> bool {
        !self.key.key.is_null()
            && self.key.kind()
                == redis_module::raw::REDISMODULE_KEYTYPE_STRING as std::os::raw::c_int
    }
}

/// A position in a scan of the selected database.
pub struct Cursor(*mut raw::RedisModuleScanCursor);

impl Cursor {
    pub fn new() -> Cursor {
        // SAFETY: plain API call; destroyed in Drop.
        Cursor(unsafe { api!(RedisModule_ScanCursorCreate)() })
    }

    /// Scans one batch of the context's selected database, calling `each`
    /// per key; false when the scan is complete.
    pub fn scan_batch<F: FnMut(Scanned<'_>)>(&mut self, ctx: &Context, mut each: F) -> bool {
        extern "C" fn trampoline<F: FnMut(Scanned<'_>)>(
            ctx: *mut raw::RedisModuleCtx,
            keyname: *mut raw::RedisModuleString,
            key: *mut raw::RedisModuleKey,
            privdata: *mut c_void,
        ) {
            // SAFETY: privdata is `each` below, alive during RM_Scan; the
            // key name and handle are live for this callback only, which
            // bounds the `Scanned` made of them.
            let each = unsafe { &mut *privdata.cast::<F>() };
            let name = unsafe { lent_bytes(keyname) };
            each(Scanned {
                name,
                name_raw: keyname,
                key: KeyRef { ctx, key },
            });
        }
        // SAFETY: live context and cursor; `each` outlives the call.
        unsafe {
            api!(RedisModule_Scan)(
                ctx.ctx,
                self.0,
                Some(trampoline::<F>),
                (&mut each as *mut F).cast::<c_void>(),
            ) != 0
        }
    }
}

impl Default for Cursor {
    fn default() -> Self {
        Cursor::new()
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        // SAFETY: created by ScanCursorCreate, destroyed once.
        unsafe { api!(RedisModule_ScanCursorDestroy)(self.0) };
    }
}
