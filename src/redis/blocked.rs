//! A blocked client and the reply it collects across slices.
//!
//! Not the crate's `ThreadSafeContext<BlockedClient>`: it keeps its context
//! private, so rows could only be sent as one `RedisValue` tree at the end.

use std::cell::RefCell;

use redis_module::{raw, Context};
use rustc_hash::FxHashSet;

use super::reply::Reply;

resident! {
    /// Blocked clients whose connection closed (main thread only).
    static GONE: RefCell<FxHashSet<usize>> = RefCell::default();
}

unsafe extern "C" fn on_disconnect(
    _ctx: *mut raw::RedisModuleCtx,
    bc: *mut raw::RedisModuleBlockedClient,
) {
    GONE.with(|g| g.borrow_mut().insert(bc as usize));
}

/// The calling client, blocked until this is dropped; what is written to
/// [`BlockedReply::reply`] is sent when it is.
pub struct BlockedReply {
    bc: *mut raw::RedisModuleBlockedClient,
    reply: *mut raw::RedisModuleCtx,
}

impl BlockedReply {
    /// Blocks the client of `ctx`; `None` when it cannot be blocked.
    pub fn block(ctx: &Context) -> Option<BlockedReply> {
        // SAFETY: live context; no reply or timeout callback (the
        // thread-safe context carries the reply). Both are released in Drop.
        unsafe {
            let bc = api!(RedisModule_BlockClient)(ctx.ctx, None, None, None, 0);
            if bc.is_null() {
                return None;
            }
            if let Some(set) = *std::ptr::addr_of!(raw::RedisModule_SetDisconnectCallback) {
                set(bc, Some(on_disconnect));
            }
            let reply = api!(RedisModule_GetThreadSafeContext)(bc);
            Some(BlockedReply { bc, reply })
        }
    }

    /// Where the reply is written.
    pub fn reply(&mut self) -> Reply {
        // SAFETY: the thread-safe context lives until Drop.
        unsafe { Reply::new(self.reply) }
    }

    /// Whether the client closed its connection meanwhile.
    pub fn client_gone(&self) -> bool {
        GONE.with(|g| g.borrow().contains(&(self.bc as usize)))
    }

    /// Counts the time until the guard drops as the blocked command's
    /// (SLOWLOG, latency). The guard must drop before this `BlockedReply`.
    pub fn measure(&self) -> Measuring {
        // SAFETY: live blocked client; the guard ends the measurement.
        unsafe { api!(RedisModule_BlockedClientMeasureTimeStart)(self.bc) };
        Measuring { bc: self.bc }
    }
}

/// A running measurement of a blocked command's time.
pub struct Measuring {
    bc: *mut raw::RedisModuleBlockedClient,
}

impl Drop for Measuring {
    fn drop(&mut self) {
        // SAFETY: started by `measure`, on a client still blocked.
        unsafe { api!(RedisModule_BlockedClientMeasureTimeEnd)(self.bc) };
    }
}

impl Drop for BlockedReply {
    fn drop(&mut self) {
        GONE.with(|g| g.borrow_mut().remove(&(self.bc as usize)));
        // SAFETY: freed once; the thread-safe context is freed before the
        // client is unblocked, which sends what it collected.
        unsafe {
            api!(RedisModule_FreeThreadSafeContext)(self.reply);
            api!(RedisModule_UnblockClient)(self.bc, std::ptr::null_mut());
        }
    }
}
