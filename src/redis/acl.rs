//! Permission checks: the module does to a key only what the caller could
//! do to it with the equivalent native command.

use std::cell::RefCell;
use std::os::raw::c_int;
use std::ptr;

use redis_module::{raw, Context, RedisString};
use smallvec::SmallVec;

use super::string::lent_bytes;

use listingstats_core::{Error, Result};

/// The native command a module action stands for, on one key: the module
/// may do to a key only what the caller could do with that command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
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
    /// Setting an expiry (retention, RETAIN).
    Pexpireat,
    /// Deleting a key (RETAIN of an expired day, MIGRATE of a flat key).
    Del,
    /// Reading a string (MIGRATE of a flat key).
    Get,
    /// Reading a stream (FOLLOW).
    Xrange,
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
            Native::Pexpireat => (b"PEXPIREAT", &[b"0"]),
            Native::Del => (b"DEL", &[]),
            Native::Get => (b"GET", &[]),
            Native::Xrange => (b"XRANGE", &[b"-", b"+"]),
        }
    }

    fn is_write(self) -> bool {
        matches!(
            self,
            Native::Hincrby | Native::Hset | Native::Hdel | Native::Pexpireat | Native::Del
        )
    }
}

resident! {
    /// Users known to have (or not) `+@all ~*`, and the ACL epoch
    /// (`filter::acl_changes`) when that was looked up.
    static UNRESTRICTED: RefCell<rustc_hash::FxHashMap<Vec<u8>, (u64, bool)>> = RefCell::default();
    /// The argv words of each [`Native`] command (all but the key), made
    /// once: a check runs for every key a command touches. Main thread only.
    static WORDS: Vec<(RedisString, Vec<RedisString>)> = [
        Native::Hmget,
        Native::Hgetall,
        Native::Hincrby,
        Native::Hset,
        Native::Hdel,
        Native::Pexpireat,
        Native::Del,
        Native::Get,
        Native::Xrange,
    ]
    .iter()
    .map(|n| {
        let (command, rest) = n.argv();
        (
            RedisString::create_from_slice(ptr::null_mut(), command),
            rest.iter()
                .map(|w| RedisString::create_from_slice(ptr::null_mut(), w))
                .collect(),
        )
    })
    .collect();
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
    /// The user's name, for the unrestricted look-up below: these bytes,
    /// or those of `name_string` (the caller's, owned here) when set.
    name: Vec<u8>,
    name_string: *mut raw::RedisModuleString,
    /// Checks made so far, and whether the user's root selector is exactly
    /// `+@all ~*` (every command on every key: no check can fail), looked
    /// up once this command has made [`Acl::LOOKUP_AFTER`] checks.
    checks: std::cell::Cell<u32>,
    unrestricted: std::cell::Cell<Option<bool>>,
}

impl Acl {
    /// No checks: no client (AOF loading, replication, the module itself).
    pub(super) fn unchecked(ctx: *mut raw::RedisModuleCtx) -> Acl {
        Acl::new(ctx, ptr::null_mut(), Vec::new())
    }

    fn new(ctx: *mut raw::RedisModuleCtx, user: *mut raw::RedisModuleUser, name: Vec<u8>) -> Acl {
        Acl {
            ctx,
            user,
            name,
            name_string: ptr::null_mut(),
            checks: std::cell::Cell::new(0),
            unrestricted: std::cell::Cell::new(None),
        }
    }

    /// A query checks thousands of keys; a command a few. Past this many
    /// checks, one `ACL GETUSER` tells whether any check could fail. The
    /// look-up costs what ~2,000 checks cost (callgrind: ~4.4M instructions
    /// for the default user, against ~2k per key checked and read), so a
    /// smaller query checks its keys one by one.
    const LOOKUP_AFTER: u32 = 2048;

    /// Whether the user's root selector allows every command on every key
    /// (`+@all` and `~*` exactly): then every check passes, whatever the
    /// selectors (they only add permissions). Anything else, even a user
    /// as broad in effect, keeps the per-key checks.
    fn lookup_unrestricted(&self) -> bool {
        let name = if self.name_string.is_null() {
            &self.name[..]
        } else {
            // SAFETY: owned by this Acl, freed in Drop.
            unsafe { lent_bytes(self.name_string) }
        };
        let ctx = Context::new(self.ctx);
        // Remembered across commands until a command that may change
        // permissions arrives (the filter watches for them; installed
        // with the first look-up).
        super::filter::init(&ctx);
        let Some(epoch) = super::filter::acl_changes() else {
            return self.ask_unrestricted(&ctx, name);
        };
        if let Some(known) = UNRESTRICTED.with(|u| {
            u.borrow()
                .get(name)
                .filter(|(at, _)| *at == epoch)
                .map(|(_, known)| *known)
        }) {
            return known;
        }
        let known = self.ask_unrestricted(&ctx, name);
        UNRESTRICTED.with(|u| {
            let mut u = u.borrow_mut();
            if u.len() > 1024 {
                u.clear();
            }
            u.insert(name.to_vec(), (epoch, known));
        });
        known
    }

    /// `ACL GETUSER`: whether `name`'s root selector is `+@all ~*`.
    fn ask_unrestricted(&self, ctx: &Context, name: &[u8]) -> bool {
        let Ok(name) = std::str::from_utf8(name) else {
            return false;
        };
        let Ok(redis_module::RedisValue::Array(info)) = ctx.call("ACL", &["GETUSER", name]) else {
            return false;
        };
        let field = |want: &str| {
            info.chunks(2).find_map(|pair| {
                (super::context::reply_text(&pair[0]).as_deref() == Some(want))
                    .then(|| pair.get(1).and_then(super::context::reply_text))
                    .flatten()
            })
        };
        field("commands").as_deref() == Some("+@all") && field("keys").as_deref() == Some("~*")
    }

    pub fn of_caller(ctx: &Context) -> Acl {
        // SAFETY: live context; the name string is ours and freed here; the
        // user is freed in Drop. Permissions are looked up afresh for every
        // command: nothing cached across commands could notice an `ACL`
        // change without a command filter, a cost to all traffic.
        unsafe {
            let name = api!(RedisModule_GetCurrentUserName)(ctx.ctx);
            if name.is_null() {
                return Acl::unchecked(ctx.ctx);
            }
            let user = api!(RedisModule_GetModuleUserFromUserName)(name);
            let mut acl = Acl::new(ctx.ctx, user, Vec::new());
            // The name is copied only if a look-up needs it (many checks).
            acl.name_string = name;
            acl
        }
    }

    /// The user named `name`, for work that outlives the command (a timer
    /// has no client). Fails when the user is gone or disabled.
    pub(super) fn of_name(ctx: *mut raw::RedisModuleCtx, name: &[u8]) -> Result<Acl> {
        let name_str = RedisString::create_from_slice(ptr::null_mut(), name);
        // SAFETY: live string; the user is freed in Drop.
        let user = unsafe { api!(RedisModule_GetModuleUserFromUserName)(name_str.inner) };
        if user.is_null() {
            return Err(Error::invalid(format!(
                "user {} no longer exists or is disabled",
                listingstats_core::error::quote(name)
            )));
        }
        Ok(Acl::new(ctx, user, name.to_vec()))
    }

    /// The caller is about to make `checks` more checks: past
    /// [`Acl::LOOKUP_AFTER`], the user is looked up now rather than after
    /// that many checks (a query of 30,000 cells, or each slice of one).
    pub(super) fn expect_checks(&self, checks: usize) {
        if self.user.is_null() || self.unrestricted.get().is_some() {
            return;
        }
        if checks + self.checks.get() as usize > Acl::LOOKUP_AFTER as usize {
            self.unrestricted.set(Some(self.lookup_unrestricted()));
        }
    }

    /// Whether every check passes without asking: no user, or one known
    /// to have `+@all ~*`.
    pub(super) fn is_unrestricted(&self) -> bool {
        self.user.is_null() || self.unrestricted.get() == Some(true)
    }

    /// Whether the user could run `native` on `key` (no ACL LOG entry).
    pub(super) fn allows_raw(&self, key: *mut raw::RedisModuleString, native: Native) -> bool {
        if self.user.is_null() {
            return true;
        }
        match self.unrestricted.get() {
            Some(true) => return true,
            Some(false) => {}
            None => {
                let n = self.checks.get() + 1;
                self.checks.set(n);
                if n > Acl::LOOKUP_AFTER {
                    let unrestricted = self.lookup_unrestricted();
                    self.unrestricted.set(Some(unrestricted));
                    if unrestricted {
                        return true;
                    }
                }
            }
        }
        WORDS.with(|words| {
            let (command, rest) = &words[native as usize];
            let mut argv: SmallVec<[*mut raw::RedisModuleString; 4]> = SmallVec::new();
            argv.push(command.inner);
            argv.push(key);
            argv.extend(rest.iter().map(|w| w.inner));
            // SAFETY: user and every string are live; Redis only reads argv.
            let status = unsafe {
                api!(RedisModule_ACLCheckCommandPermissions)(
                    self.user,
                    argv.as_mut_ptr(),
                    argv.len() as c_int,
                )
            };
            status == raw::REDISMODULE_OK as c_int
        })
    }

    pub(super) fn allows(&self, key: &RedisString, native: Native) -> bool {
        self.allows_raw(key.inner, native)
    }

    /// `Ok` when the user could run `native` on `key`; otherwise a NOPERM
    /// error, and an `ACL LOG` entry as the server makes for its own
    /// refusals.
    pub(super) fn check(&self, key: &RedisString, native: Native) -> Result<()> {
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
        if !self.name_string.is_null() {
            // SAFETY: GetCurrentUserName's string, freed once.
            unsafe { api!(RedisModule_FreeString)(self.ctx, self.name_string) };
        }
        if !self.user.is_null() {
            // SAFETY: created by GetModuleUserFromUserName, freed once.
            unsafe { api!(RedisModule_FreeModuleUser)(self.user) };
        }
    }
}
