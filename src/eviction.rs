//! Whether the server's eviction policy can take dedup state.
//!
//! Dedup shards carry no TTL (see `listingstats_core::dedup`), so `volatile-*` policies
//! never evict them; `allkeys-*` policies may evict any key, shards and
//! counters included, and a redelivered event whose id was evicted counts
//! twice. The policy is read at load and again whenever `CONFIG SET`
//! changes it; under `allkeys-*` the log says so once per change, and
//! `INFO listingstats` shows `dedup_safe_under_eviction:0`.

use std::ffi::CStr;
use std::os::raw::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

use redis_module::{raw, Context, RedisValue};

use listingstats_core::dedup::safe_under_policy;

static SAFE: AtomicBool = AtomicBool::new(true);

/// Whether dedup state is safe from this server's eviction policy.
pub fn dedup_safe() -> bool {
    SAFE.load(Ordering::Relaxed)
}

/// Reads the policy now, and follows `CONFIG SET maxmemory-policy`.
pub fn init(ctx: &Context) {
    refresh(ctx);
    // SAFETY: OnLoad; the callback lives as long as the module.
    unsafe {
        if let Some(subscribe) = *std::ptr::addr_of!(raw::RedisModule_SubscribeToServerEvent) {
            subscribe(
                ctx.ctx,
                raw::RedisModuleEvent {
                    id: raw::REDISMODULE_EVENT_CONFIG,
                    dataver: 1,
                },
                Some(on_config),
            );
        }
    }
}

fn text(v: &RedisValue) -> Option<String> {
    match v {
        RedisValue::SimpleString(s) | RedisValue::BulkString(s) => Some(s.clone()),
        RedisValue::BulkRedisString(s) => Some(s.to_string_lossy()),
        RedisValue::StringBuffer(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn refresh(ctx: &Context) {
    let policy = match ctx.call("CONFIG", &["GET", "maxmemory-policy"]) {
        Ok(RedisValue::Array(pair)) => pair.get(1).and_then(text),
        _ => None,
    };
    let Some(policy) = policy else {
        return;
    };
    let safe = safe_under_policy(&policy);
    SAFE.store(safe, Ordering::Relaxed);
    if !safe {
        ctx.log_warning(&format!(
            "listingstats: maxmemory-policy {policy} may evict any key, dedup state and \
             counters included: a redelivered event whose id was evicted counts twice. \
             Use noeviction or a volatile-* policy (dedup state has no TTL)."
        ));
    }
}

extern "C" fn on_config(
    ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    sub: u64,
    data: *mut c_void,
) {
    if sub != raw::REDISMODULE_SUBEVENT_CONFIG_CHANGE || data.is_null() {
        return;
    }
    // SAFETY: Redis passes a RedisModuleConfigChange with num_changes
    // NUL-terminated names for this event.
    let changed = unsafe {
        let change = &*data.cast::<raw::RedisModuleConfigChange>();
        (0..change.num_changes as usize).any(|i| {
            let name = *change.config_names.add(i);
            !name.is_null() && CStr::from_ptr(name).to_bytes() == b"maxmemory-policy"
        })
    };
    if changed {
        let _ = std::panic::catch_unwind(|| refresh(&Context::new(ctx)));
    }
}
