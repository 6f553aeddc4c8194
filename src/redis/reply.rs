//! Writing a reply piece by piece, to a command's context or to a blocked
//! client's thread-safe one.
//!
//! Raw calls on purpose: a reply of thousands of rows built as a tree of
//! `RedisValue`s first would be allocated, copied and freed for nothing
//! (measured when QUERY was written; see BENCHMARKS.md).

use std::os::raw::{c_char, c_long};

use redis_module::raw;

/// Where a reply goes. Only made by this layer, from a live context.
pub struct Reply {
    ctx: *mut raw::RedisModuleCtx,
}

impl Reply {
    /// # Safety
    /// `ctx` must be a live context that may reply, for as long as the
    /// `Reply` is used.
    pub(super) unsafe fn new(ctx: *mut raw::RedisModuleCtx) -> Reply {
        Reply { ctx }
    }

    /// The reply of a command, written through its context.
    pub fn of(ctx: &redis_module::Context) -> Reply {
        Reply { ctx: ctx.ctx }
    }

    pub fn array(&mut self, len: usize) {
        raw::reply_with_array(self.ctx, len as c_long);
    }

    /// An array whose length [`Reply::set_array_len`] gives at the end.
    pub fn array_of_unknown_len(&mut self) {
        raw::reply_with_array(self.ctx, raw::REDISMODULE_POSTPONED_LEN as c_long);
    }

    /// Closes the array opened by [`Reply::array_of_unknown_len`].
    pub fn set_array_len(&mut self, len: usize) {
        // SAFETY: live context with a postponed array open.
        unsafe { api!(RedisModule_ReplySetArrayLength)(self.ctx, len as c_long) };
    }

    /// A map (RESP3) or a flat array of its pairs (RESP2).
    pub fn map(&mut self, pairs: usize) {
        raw::reply_with_map(self.ctx, pairs as c_long);
    }

    pub fn bulk(&mut self, bytes: &[u8]) {
        raw::reply_with_string_buffer(self.ctx, bytes.as_ptr().cast::<c_char>(), bytes.len());
    }

    pub fn int(&mut self, n: i64) {
        raw::reply_with_long_long(self.ctx, n);
    }

    pub fn double(&mut self, v: f64) {
        raw::reply_with_double(self.ctx, v);
    }

    /// A simple string (`+OK`).
    pub fn simple(&mut self, text: &str) {
        let _ = redis_module::Context::new(self.ctx)
            .reply(Ok(redis_module::RedisValue::SimpleString(text.to_string())));
    }

    pub fn null(&mut self) {
        raw::reply_with_null(self.ctx);
    }

    /// An error reply; `text` starts with its code (`ERR ...`).
    pub fn error(&mut self, text: &str) {
        let _ = redis_module::Context::new(self.ctx)
            .reply(Err(redis_module::RedisError::String(text.to_string())));
    }
}
