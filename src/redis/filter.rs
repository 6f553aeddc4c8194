//! One command filter, for what the module remembers across commands and
//! must forget when a command changes it: on a cluster node, the slots it
//! serves (dropped when a `CLUSTER` command arrives: `CLUSTER SETSLOT` and
//! friends); and, once a query needed it, whether a user may read every
//! key (`acl.rs`; dropped when an `ACL` command, or an `EXEC` that may hold
//! one, arrives). A filter sees every command the server runs, so it is a
//! cost to all traffic: a single server installs it only when the first
//! query by date or in total (or shared) asks about a user's permissions.
//! Filters see commands sent inside `MULTI` and through
//! `RedisModule_Call` too.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redis_module::{raw, Context};

use super::string::lent_bytes;

static CLUSTER: AtomicU64 = AtomicU64::new(0);
static ACL: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Changes whenever a `CLUSTER` command reached this server.
pub fn cluster_changes() -> u64 {
    CLUSTER.load(Ordering::Relaxed)
}

/// Changes whenever a command that may change a user's permissions
/// reached this server (`ACL ...`, or `EXEC`, which may run one); `None`
/// while the filter is not installed (nothing is known then).
pub fn acl_changes() -> Option<u64> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| ACL.load(Ordering::Relaxed))
}

/// Installs the filter, once (it lives as long as the module).
pub fn init(ctx: &Context) {
    if INSTALLED.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: live context; the callback is a plain function.
    unsafe {
        api!(RedisModule_RegisterCommandFilter)(
            ctx.ctx,
            Some(on_command),
            raw::REDISMODULE_CMDFILTER_NOSELF as c_int,
        );
    }
}

extern "C" fn on_command(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    // SAFETY: Redis passes a live filter context; argument 0 is the
    // command name, valid during the call.
    let name = unsafe {
        let name = api!(RedisModule_CommandFilterArgGet)(fctx, 0);
        if name.is_null() {
            return;
        }
        lent_bytes(name)
    };
    match name.len() {
        7 if name.eq_ignore_ascii_case(b"cluster") => {
            CLUSTER.fetch_add(1, Ordering::Relaxed);
        }
        3 if name.eq_ignore_ascii_case(b"acl") => {
            ACL.fetch_add(1, Ordering::Relaxed);
        }
        4 if name.eq_ignore_ascii_case(b"exec") => {
            ACL.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}
