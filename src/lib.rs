//! listingstats: per-day, per-listing event counters in plain Redis hashes,
//! and click-through-rate queries over them, as a Redis module.
//!
//! `listingstats_core` (crates/listingstats-core) is pure Rust (no FFI) and holds every rule; `commands` is the thin
//! layer Redis calls; `store` is the only place that touches keys.

/// Looks up a module API function pointer, which `RedisModule_Init` filled
/// in; a pointer this server lacks is a panic, which the command dispatcher
/// turns into an error reply.
macro_rules! api {
    ($name:ident) => {{
        // SAFETY: written once by RedisModule_Init before any command runs.
        #[allow(unused_unsafe)]
        let f = unsafe { *std::ptr::addr_of!(redis_module::raw::$name) };
        match f {
            Some(f) => f,
            None => panic!(concat!(
                stringify!($name),
                " is not available on this server"
            )),
        }
    }};
}

mod alloc;
mod commands;
mod config;
mod eviction;
mod index;
mod stats;
mod store;

use redis_module::{raw, redis_module, Context, RedisString, Status};

/// Module API functions that appeared in Redis 7.0 and that the module
/// cannot work without. A server that lacks any (Redis 6.2 and older) is
/// refused at load with one log line naming them, rather than loading a
/// module whose commands would fail one by one.
fn missing_7_0_api() -> Vec<&'static str> {
    macro_rules! missing {
        ($($name:ident),* $(,)?) => {{
            let mut missing = Vec::new();
            // SAFETY: written once by RedisModule_Init, before this runs.
            $(if unsafe { *std::ptr::addr_of!(raw::$name) }.is_none() {
                missing.push(stringify!($name));
            })*
            missing
        }};
    }
    missing!(
        RedisModule_RegisterStringConfig,
        RedisModule_LoadConfigs,
        RedisModule_ACLCheckKeyPermissions,
        RedisModule_GetModuleUserFromUserName,
        RedisModule_GetCurrentUserName,
        RedisModule_ScanCursorCreate,
        RedisModule_BlockedClientMeasureTimeStart,
    )
}

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    let missing = missing_7_0_api();
    if !missing.is_empty() {
        ctx.log_warning(&format!(
            "listingstats: refusing to load: this server lacks the Redis 7.0 module API \
             (missing {}); listingstats needs Redis 7.0+ or Valkey 7.2+",
            missing.join(", ")
        ));
        return Status::Err;
    }
    if let Err(reason) = config::init(ctx, args).and_then(|()| index::init(ctx)) {
        ctx.log_warning(&format!("listingstats: refusing to load: {reason}"));
        return Status::Err;
    }
    // Registered here rather than through the macro's `info:` hook, which
    // needs the proc-macro crate; the last registration wins. Commands are
    // registered by `commands` too (see there why not by the macro's list).
    eviction::init(ctx);
    raw::register_info_function(ctx.ctx, Some(stats::info));
    commands::register_all(ctx)
}

redis_module! {
    name: "listingstats",
    version: 1,
    allocator: (crate::alloc::ModuleAlloc, crate::alloc::ModuleAlloc),
    data_types: [],
    init: init,
}
