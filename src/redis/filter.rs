//! One command filter, on a cluster node only, for the slots this node
//! serves, which the module caches across commands and must drop when a
//! `CLUSTER` command arrives (`CLUSTER SETSLOT` and friends). A filter sees
//! every command the server runs, so it is a cost to all traffic: a single
//! server, which has no slots, installs none. Filters see commands sent
//! inside `MULTI` and through `RedisModule_Call` too.
//!
//! (ACL changes need no filter: permissions are looked up afresh by every
//! command, `acl.rs`.)

use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::{raw, Context};

use super::string::lent_bytes;

static CLUSTER: AtomicU64 = AtomicU64::new(0);

/// Changes whenever a `CLUSTER` command reached this server.
pub fn cluster_changes() -> u64 {
    CLUSTER.load(Ordering::Relaxed)
}

/// Installs the filter (OnLoad; it lives as long as the module).
pub fn init(ctx: &Context) {
    // SAFETY: OnLoad, as the API requires.
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
    if name.len() == 7 && name.eq_ignore_ascii_case(b"cluster") {
        CLUSTER.fetch_add(1, Ordering::Relaxed);
    }
}
