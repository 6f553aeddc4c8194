//! The command layer: one file per command family. Each command declares its
//! name, flags and summary next to its code (the [`Command`] trait), parses
//! its arguments with the core, touches keys through `store`, and replies.
//!
//! [`dispatch`] is the one entry point Redis calls for every command. It
//! reads the arguments in place (no copies, no reference counting) and runs
//! the body under `catch_unwind`: a core error becomes the error reply, and
//! a panic, which would otherwise unwind into Redis and kill the server,
//! becomes an error reply and a line in the server log.

use std::ffi::CString;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{raw, Context, RedisError, RedisValue, Status};
use smallvec::SmallVec;

use crate::stats;
use crate::store::string_bytes;
use listingstats_core::Result;

pub mod get;
pub mod incr;
pub mod ingest;
pub mod job;
pub mod metric;
pub mod query;
pub mod top;

/// A module command.
pub trait Command {
    /// Full name, lower case, e.g. `listingstats.incr`.
    const NAME: &'static str;
    /// `RedisModule_CreateCommand` flags, e.g. `write deny-oom`.
    const FLAGS: &'static str;
    /// ACL categories (Redis 7.2+, Valkey), e.g. `write hash fast`; the
    /// module's own `listingstats` category is added where the server can
    /// create categories (Redis 7.4+, Valkey 8+). Where it cannot, the
    /// module's own per-key checks still refuse what the native command
    /// would (see `store::Acl`).
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
        let args: SmallVec<[&[u8]; 16]> = argv.iter().skip(1).map(|&s| string_bytes(s)).collect();
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
fn register<C: Command>(ctx: &Context) -> Status {
    let (Ok(name), Ok(flags)) = (CString::new(C::NAME), CString::new(C::FLAGS)) else {
        return Status::Err;
    };
    // SAFETY: called from OnLoad with live strings; Redis copies them.
    let created = unsafe {
        raw::RedisModule_CreateCommand.map(|create| {
            create(
                ctx.ctx,
                name.as_ptr(),
                Some(dispatch::<C>),
                flags.as_ptr(),
                0,
                0,
                0,
            )
        })
    };
    if created != Some(raw::REDISMODULE_OK as c_int) {
        ctx.log_warning(&format!("listingstats: could not register {}", C::NAME));
        return Status::Err;
    }
    set_acl_categories(ctx, &name, C::ACL)
}

/// Whether the server accepted the `listingstats` ACL category.
static OWN_CATEGORY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Creates the `listingstats` ACL category, where the server can.
fn add_own_category(ctx: &Context) {
    // SAFETY: called from OnLoad, before any command is registered.
    let added = unsafe {
        (*std::ptr::addr_of!(raw::RedisModule_AddACLCategory))
            .map(|add| add(ctx.ctx, c"listingstats".as_ptr()) == raw::REDISMODULE_OK as c_int)
    };
    OWN_CATEGORY.store(added == Some(true), std::sync::atomic::Ordering::Relaxed);
}

fn set_acl_categories(ctx: &Context, name: &CString, categories: &str) -> Status {
    // SAFETY: OnLoad, after CreateCommand: the command exists.
    let (Some(get), Some(set)) = (
        unsafe { *std::ptr::addr_of!(raw::RedisModule_GetCommand) },
        unsafe { *std::ptr::addr_of!(raw::RedisModule_SetCommandACLCategories) },
    ) else {
        return Status::Ok; // Redis 7.0: no categories; the per-key checks remain.
    };
    let mut all = categories.to_string();
    if OWN_CATEGORY.load(std::sync::atomic::Ordering::Relaxed) {
        all.push_str(" listingstats");
    }
    let Ok(all) = CString::new(all) else {
        return Status::Err;
    };
    // SAFETY: live context and strings; Redis copies what it keeps.
    let ok = unsafe {
        let command = get(ctx.ctx, name.as_ptr());
        !command.is_null() && set(command, all.as_ptr()) == raw::REDISMODULE_OK as c_int
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

/// Every command of the module.
pub fn register_all(ctx: &Context) -> Status {
    add_own_category(ctx);
    let all = [
        register::<incr::Incr>,
        register::<ingest::Ingest>,
        register::<get::Get>,
        register::<query::Query>,
        register::<top::Top>,
        register::<metric::MetricSet>,
        register::<metric::MetricDel>,
        register::<metric::MetricList>,
    ];
    if all.iter().all(|reg| reg(ctx) == Status::Ok) {
        Status::Ok
    } else {
        Status::Err
    }
}
