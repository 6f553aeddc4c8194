//! Registering commands and running them.
//!
//! [`dispatch`] is the one entry point Redis calls for every command. It
//! reads the arguments in place (no copies, no reference counting) and runs
//! the body under `catch_unwind`: a core error becomes the error reply, and
//! a panic, which would otherwise unwind into Redis and kill the server,
//! becomes an error reply and a line in the server log.

use std::ffi::CString;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use redis_module::{raw, Context, RedisError, RedisValue, Status};
use smallvec::SmallVec;

use super::string::lent_bytes;
use crate::stats;
use listingstats_core::Result;

/// A module command: its metadata next to its code.
pub trait Command {
    /// Full name, lower case, e.g. `listingstats.incr`.
    const NAME: &'static str;
    /// `RedisModule_CreateCommand` flags, e.g. `write deny-oom`.
    const FLAGS: &'static str;
    /// ACL categories (Redis 7.2+, Valkey), e.g. `write hash fast`; the
    /// module's own `listingstats` category is added where the server can
    /// create categories (Redis 7.4+, Valkey 8+). Where it cannot, the
    /// module's own per-key checks still refuse what the native command
    /// would (see `acl.rs`).
    const ACL: &'static str;
    /// Runs on the arguments after the command name.
    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue>;
}

extern "C" fn dispatch<C: Command>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    stats::CALLS.add(1);
    let reply = catch_unwind(AssertUnwindSafe(|| {
        let argv: &[*mut raw::RedisModuleString] = if argv.is_null() {
            &[]
        } else {
            // SAFETY: Redis passes argc valid strings that outlive the call.
            unsafe { std::slice::from_raw_parts(argv, usize::try_from(argc).unwrap_or(0)) }
        };
        // SAFETY: the argument strings live until this command returns,
        // and `args` does not escape it.
        let args: SmallVec<[&[u8]; 16]> = argv
            .iter()
            .skip(1)
            .map(|&s| unsafe { lent_bytes(s) })
            .collect();
        C::run(&context, &args)
    }));
    let reply = match reply {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            stats::ERRORS.add(1);
            Err(RedisError::String(err.reply_text()))
        }
        Err(panic) => {
            stats::ERRORS.add(1);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            context.log_warning(&format!(
                "listingstats: internal error in {}: {what}",
                C::NAME
            ));
            Err(RedisError::Str(
                "ERR listingstats internal error, see the server log",
            ))
        }
    };
    context.reply(reply) as c_int
}

/// Registers one command. Key positions are 0: every key a command touches
/// is computed from its arguments, and checked against ACLs by the command.
pub fn register<C: Command>(ctx: &Context) -> Status {
    let (Ok(name), Ok(flags)) = (CString::new(C::NAME), CString::new(C::FLAGS)) else {
        return Status::Err;
    };
    // SAFETY: called from OnLoad with live strings; Redis copies them.
    let created = unsafe {
        api!(RedisModule_CreateCommand)(
            ctx.ctx,
            name.as_ptr(),
            Some(dispatch::<C>),
            flags.as_ptr(),
            0,
            0,
            0,
        )
    };
    if created != raw::REDISMODULE_OK as c_int {
        ctx.log_warning(&format!("listingstats: could not register {}", C::NAME));
        return Status::Err;
    }
    set_acl_categories(ctx, &name, C::ACL)
}

/// Whether the server accepted the `listingstats` ACL category.
static OWN_CATEGORY: AtomicBool = AtomicBool::new(false);

/// Creates the `listingstats` ACL category, where the server can (call
/// once, before registering commands).
pub fn add_own_category(ctx: &Context) {
    // SAFETY: called from OnLoad, before any command is registered.
    let added = unsafe {
        (*std::ptr::addr_of!(raw::RedisModule_AddACLCategory))
            .map(|add| add(ctx.ctx, c"listingstats".as_ptr()) == raw::REDISMODULE_OK as c_int)
    };
    OWN_CATEGORY.store(added == Some(true), Ordering::Relaxed);
}

fn set_acl_categories(ctx: &Context, name: &CString, categories: &str) -> Status {
    if !has_api!(RedisModule_GetCommand) || !has_api!(RedisModule_SetCommandACLCategories) {
        return Status::Ok; // Redis 7.0: no categories; the per-key checks remain.
    }
    let mut all = categories.to_string();
    if OWN_CATEGORY.load(Ordering::Relaxed) {
        all.push_str(" listingstats");
    }
    let Ok(all) = CString::new(all) else {
        return Status::Err;
    };
    // SAFETY: OnLoad, after CreateCommand: the command exists; Redis copies
    // what it keeps.
    let ok = unsafe {
        let command = api!(RedisModule_GetCommand)(ctx.ctx, name.as_ptr());
        !command.is_null()
            && api!(RedisModule_SetCommandACLCategories)(command, all.as_ptr())
                == raw::REDISMODULE_OK as c_int
    };
    if ok {
        Status::Ok
    } else {
        ctx.log_warning(&format!(
            "listingstats: could not set ACL categories of {}",
            name.to_string_lossy()
        ));
        Status::Err
    }
}
