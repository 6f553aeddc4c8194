//! Writing a reply piece by piece, to a command's context or to a blocked
//! client's thread-safe one.
//!
//! Raw calls on purpose: a reply of thousands of rows built as a tree of
//! `RedisValue`s first would be allocated, copied and freed for nothing
//! (measured when QUERY was written; see BENCHMARKS.md).

use std::os::raw::{c_char, c_long};

use redis_module::raw;

/// Where a reply goes: a context (only made by this layer, from a live
/// one), and while a [`Recording`] is attached, that recording too, to be
/// replayed to other clients later ([`Recorded`]).
pub struct Reply {
    ctx: *mut raw::RedisModuleCtx,
    record: Option<Recording>,
}

/// A reply being recorded (kept by its owner between slices).
#[derive(Default)]
pub struct Recording {
    bytes: Vec<u8>,
    /// Where each postponed array's length is (the last opened first).
    open: Vec<usize>,
}

impl Recording {
    /// The complete reply.
    pub fn finish(self) -> Recorded {
        Recorded { bytes: self.bytes }
    }

    fn put(&mut self, tag: u8, word: u64) {
        self.bytes.push(tag);
        self.bytes.extend_from_slice(&word.to_le_bytes());
    }

    fn put_bytes(&mut self, tag: u8, data: &[u8]) {
        self.put(tag, data.len() as u64);
        self.bytes.extend_from_slice(data);
    }
}

impl Reply {
    /// # Safety
    /// `ctx` must be a live context that may reply, for as long as the
    /// `Reply` is used.
    pub(super) unsafe fn new(ctx: *mut raw::RedisModuleCtx) -> Reply {
        Reply { ctx, record: None }
    }

    /// The reply of a command, written through its context.
    pub fn of(ctx: &redis_module::Context) -> Reply {
        Reply {
            ctx: ctx.ctx,
            record: None,
        }
    }

    /// Records what is written from now on in `recording` too.
    pub fn tee(&mut self, recording: Recording) {
        self.record = Some(recording);
    }

    /// Stops recording; the recording so far.
    pub fn untee(&mut self) -> Option<Recording> {
        self.record.take()
    }

    pub fn array(&mut self, len: usize) {
        if let Some(r) = &mut self.record {
            r.put(b'A', len as u64);
        }
        raw::reply_with_array(self.ctx, len as c_long);
    }

    /// An array whose length [`Reply::set_array_len`] gives at the end.
    pub fn array_of_unknown_len(&mut self) {
        if let Some(r) = &mut self.record {
            r.put(b'A', 0);
            r.open.push(r.bytes.len() - 8);
        }
        raw::reply_with_array(self.ctx, raw::REDISMODULE_POSTPONED_LEN as c_long);
    }

    /// Closes the array opened by [`Reply::array_of_unknown_len`].
    pub fn set_array_len(&mut self, len: usize) {
        if let Some(r) = &mut self.record {
            if let Some(at) = r.open.pop() {
                r.bytes[at..at + 8].copy_from_slice(&(len as u64).to_le_bytes());
            }
        }
        // SAFETY: live context with a postponed array open.
        unsafe { api!(RedisModule_ReplySetArrayLength)(self.ctx, len as c_long) };
    }

    /// A map (RESP3) or a flat array of its pairs (RESP2).
    pub fn map(&mut self, pairs: usize) {
        if let Some(r) = &mut self.record {
            r.put(b'M', pairs as u64);
        }
        raw::reply_with_map(self.ctx, pairs as c_long);
    }

    pub fn bulk(&mut self, bytes: &[u8]) {
        if let Some(r) = &mut self.record {
            r.put_bytes(b'B', bytes);
        }
        raw::reply_with_string_buffer(self.ctx, bytes.as_ptr().cast::<c_char>(), bytes.len());
    }

    pub fn int(&mut self, n: i64) {
        if let Some(r) = &mut self.record {
            r.put(b'I', n as u64);
        }
        raw::reply_with_long_long(self.ctx, n);
    }

    pub fn double(&mut self, v: f64) {
        if let Some(r) = &mut self.record {
            r.put(b'D', v.to_bits());
        }
        raw::reply_with_double(self.ctx, v);
    }

    /// A simple string (`+OK`).
    pub fn simple(&mut self, text: &str) {
        if let Some(r) = &mut self.record {
            r.put_bytes(b'S', text.as_bytes());
        }
        let _ = redis_module::Context::new(self.ctx)
            .reply(Ok(redis_module::RedisValue::SimpleString(text.to_string())));
    }

    pub fn null(&mut self) {
        if let Some(r) = &mut self.record {
            r.put(b'N', 0);
        }
        raw::reply_with_null(self.ctx);
    }

    /// An error reply; `text` starts with its code (`ERR ...`).
    pub fn error(&mut self, text: &str) {
        if let Some(r) = &mut self.record {
            r.put_bytes(b'E', text.as_bytes());
        }
        let _ = redis_module::Context::new(self.ctx)
            .reply(Err(redis_module::RedisError::String(text.to_string())));
    }
}

/// A recorded reply: replayed to any number of clients (of the protocol
/// it was recorded for), in steps.
pub struct Recorded {
    bytes: Vec<u8>,
}

impl Recorded {
    /// Its size in memory, bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Replays from byte `at` to `out`, `items` reply items at most;
    /// returns where it stopped (`size()` at the end).
    pub fn replay(&self, mut at: usize, out: &mut Reply, items: usize) -> usize {
        let b = &self.bytes;
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
        for _ in 0..items {
            let Some(&tag) = b.get(at) else {
                break;
            };
            at += 1;
            match tag {
                b'A' => out.array(word(at) as usize),
                b'M' => out.map(word(at) as usize),
                b'I' => out.int(word(at) as i64),
                b'D' => out.double(f64::from_bits(word(at))),
                b'N' => out.null(),
                _ => {
                    let len = word(at) as usize;
                    let data = &b[at + 8..at + 8 + len];
                    match tag {
                        b'B' => out.bulk(data),
                        b'S' => out.simple(&String::from_utf8_lossy(data)),
                        _ => out.error(&String::from_utf8_lossy(data)),
                    }
                    at += 8 + len;
                    continue;
                }
            }
            at += 8;
        }
        at
    }
}
