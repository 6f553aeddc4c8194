//! Reading day hashes and the module's hashes for one caller: every read
//! of a command (GET, QUERY, TOP, METRIC LIST) goes through here, after its
//! ACL check (`acl.rs`).

use redis_module::{raw, Context, RedisString};

use super::acl::{Acl, Native};
use super::key::{FieldNames, KeyRef, OpenKey};
use super::scan::Cursor;
use super::string::lent_bytes;
use listingstats_core::query::FieldPlan;
use listingstats_core::{Error, Result};

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

    /// Whether the caller may read every key: no user, or one whose root
    /// selector is `+@all ~*` (looked up now if not yet known: one `ACL
    /// GETUSER`, which costs about what 2,000 checks cost).
    pub fn may_read_everything(&self) -> bool {
        self.acl.expect_checks(1 << 40);
        self.reads_everything()
    }

    /// The caller is about to read about `keys` keys: when that is many,
    /// the user is looked up at once, so that an unrestricted user's reads
    /// skip every check (see `Acl`).
    pub fn expect_reads(&self, keys: usize) {
        self.acl.expect_checks(keys);
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

    /// Calls `f` with every field and value of the hash `key`, in the
    /// hash's own order, with no copy (hour keys are read this way: each
    /// field is added where it belongs, nothing is kept). No permission
    /// check (the caller made it); `false` when `key` is not a hash.
    pub fn each_field(&self, key: &[u8], f: &mut dyn FnMut(&[u8], &[u8])) -> bool {
        let name = RedisString::create_from_slice(self.ctx.ctx, key);
        self.scan_hash(&name, f).is_ok()
    }

    pub(super) fn hash_all_of(&self, name: &RedisString) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut pairs = Vec::new();
        self.scan_hash(name, &mut |field, value| {
            pairs.push((field.to_vec(), value.to_vec()));
        })?;
        pairs.sort();
        Ok(pairs)
    }

    /// Every field and value of a hash (none when absent), through `f`.
    fn scan_hash(&self, name: &RedisString, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<()> {
        let open = OpenKey::open(self.ctx, name, false);
        open.expect_hash()?;
        if open.is_empty() {
            return Ok(());
        }
        let open: &KeyRef = &open;
        // What the callback gets: `f`, and a panic of it, caught there (it
        // must not unwind through Redis) and resumed once ScanKey returned.
        struct Visit<'f> {
            f: &'f mut dyn FnMut(&[u8], &[u8]),
            panic: Option<Box<dyn std::any::Any + Send>>,
        }
        extern "C" fn each(
            _key: *mut raw::RedisModuleKey,
            field: *mut raw::RedisModuleString,
            value: *mut raw::RedisModuleString,
            privdata: *mut std::os::raw::c_void,
        ) {
            // SAFETY: privdata is the Visit passed below, alive for the scan.
            let visit = unsafe { &mut *privdata.cast::<Visit<'_>>() };
            if visit.panic.is_some() {
                return;
            }
            // SAFETY: field and value are live during this callback.
            let (field, value) = unsafe { (lent_bytes(field), lent_bytes(value)) };
            let f = &mut visit.f;
            if let Err(p) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(field, value)))
            {
                visit.panic = Some(p);
            }
        }
        let mut visit = Visit { f, panic: None };
        // SAFETY: ScanKey over a live hash; `each` hands each field and
        // value to `f` while they are live, before Redis reuses them.
        unsafe {
            let cursor = api!(RedisModule_ScanCursorCreate)();
            while api!(RedisModule_ScanKey)(
                open.key,
                cursor,
                Some(each),
                (&mut visit as *mut Visit<'_>).cast(),
            ) != 0
            {}
            api!(RedisModule_ScanCursorDestroy)(cursor);
        }
        if let Some(p) = visit.panic {
            std::panic::resume_unwind(p);
        }
        Ok(())
    }
}
