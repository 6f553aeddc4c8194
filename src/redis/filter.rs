//! One command filter, for state the module caches across commands and
//! must drop when the server's configuration of it changes: the slots this
//! node serves (any `CLUSTER` command) and what users may do (any `ACL`
//! command, and `EXEC`, which may apply a queued `ACL SETUSER`). Filters see
//! every command before it runs, including those sent inside `MULTI` and
//! through `RedisModule_Call`; scripts cannot run `ACL` or `CLUSTER`
//! subcommands that change anything. The user changes are `ACL SETUSER`,
//! `DELUSER` and `LOAD`; users set in the config file or an ACL file at
//! start-up are loaded before any command runs.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redis_module::{raw, Context};

use super::string::lent_bytes;

static CLUSTER: AtomicU64 = AtomicU64::new(0);
static ACL: AtomicU64 = AtomicU64::new(0);
static ACL_CHANGED_EVER: AtomicBool = AtomicBool::new(false);

/// Changes whenever a `CLUSTER` command reached this server.
pub fn cluster_changes() -> u64 {
    CLUSTER.load(Ordering::Relaxed)
}

/// Changes whenever `ACL SETUSER|DELUSER|LOAD` (or, after one, `EXEC`)
/// reached this server.
pub fn acl_changes() -> u64 {
    ACL.load(Ordering::Relaxed)
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
    // Cheap first: most commands are neither.
    match name.len() {
        7 if name.eq_ignore_ascii_case(b"cluster") => {
            CLUSTER.fetch_add(1, Ordering::Relaxed);
        }
        3 if name.eq_ignore_ascii_case(b"acl") => {
            // SAFETY: as above, for argument 1 (NULL when absent).
            let sub = unsafe {
                let sub = api!(RedisModule_CommandFilterArgGet)(fctx, 1);
                if sub.is_null() {
                    return;
                }
                lent_bytes(sub)
            };
            if [&b"setuser"[..], b"deluser", b"load"]
                .iter()
                .any(|s| sub.eq_ignore_ascii_case(s))
            {
                ACL.fetch_add(1, Ordering::Relaxed);
                ACL_CHANGED_EVER.store(true, Ordering::Relaxed);
            }
        }
        // A change queued inside MULTI applies at EXEC, and the filter
        // cannot tell whose EXEC it is: once users have been changed at
        // run time, every EXEC counts as a possible change.
        4 if name.eq_ignore_ascii_case(b"exec") && ACL_CHANGED_EVER.load(Ordering::Relaxed) => {
            ACL.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}
