//! The module's INFO section, `listingstats`, whose fields Redis prefixes
//! with `listingstats_`.

use std::os::raw::c_int;
use std::sync::OnceLock;

use redis_module::{raw, Context};

/// What INFO shows: `(name, value)` pairs, read at each INFO.
pub type Fields = fn() -> Vec<(&'static str, u64)>;

static FIELDS: OnceLock<Fields> = OnceLock::new();

extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    let Some(fields) = FIELDS.get() else { return };
    let Ok(fields) = std::panic::catch_unwind(fields) else {
        return;
    };
    // SAFETY: Redis calls this with a live info context; names are made
    // NUL-terminated here.
    unsafe {
        let add_section = api!(RedisModule_InfoAddSection);
        let add_field = api!(RedisModule_InfoAddFieldULongLong);
        if add_section(ctx, std::ptr::null_mut()) != raw::REDISMODULE_OK as c_int {
            return;
        }
        for (name, value) in fields {
            let mut name = name.as_bytes().to_vec();
            name.push(0);
            add_field(ctx, name.as_ptr().cast(), value);
        }
    }
}

/// Registers the INFO section.
pub fn register(ctx: &Context, fields: Fields) {
    let _ = FIELDS.set(fields);
    // Registered here rather than through the macro's `info:` hook, which
    // needs the proc-macro crate; the last registration wins.
    raw::register_info_function(ctx.ctx, Some(info));
}
