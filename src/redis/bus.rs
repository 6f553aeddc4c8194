//! The cluster bus: messages between the module's copies on the nodes of
//! one cluster (`RedisModule_SendClusterMessage`).
//!
//! The bus is the cluster's own link between nodes: it needs no password
//! and is encrypted when the cluster's bus is (`tls-cluster yes`). A node
//! sends to itself through a queue drained on the next timer pass, so a
//! receiver never runs inside its own sender.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use redis_module::{raw, Context};

/// The module's message type on the bus (one byte, shared by all modules).
const MESSAGE_TYPE: u8 = 0x4c;
/// Node ids are 40 characters, not NUL-terminated on the receiving side.
const NODE_ID_LEN: usize = 40;

/// What handles the module's messages.
pub trait Receiver: 'static {
    /// A message from node `sender` (its id).
    fn receive(ctx: &Context, sender: &str, bytes: &[u8]);
}

resident! {
    /// Messages this node sent itself, not yet delivered.
    static LOOPBACK: RefCell<VecDeque<Vec<u8>>> = RefCell::default();
}

thread_local! {
    static DRAINING: Cell<bool> = const { Cell::new(false) };
}

/// Starts receiving the module's messages (on a cluster node, at load).
pub fn init<R: Receiver>(ctx: &Context) {
    // SAFETY: live context; the callback is a plain function.
    unsafe {
        api!(RedisModule_RegisterClusterMessageReceiver)(
            ctx.ctx,
            MESSAGE_TYPE,
            Some(on_message::<R>),
        )
    };
}

/// This node's id.
pub fn my_id() -> String {
    // SAFETY: the server's 40-byte id (not NUL-terminated), copied; NULL
    // when the server is not a cluster node.
    unsafe {
        let id = api!(RedisModule_GetMyClusterID)();
        if id.is_null() {
            return String::new();
        }
        let bytes = std::slice::from_raw_parts(id.cast::<u8>(), NODE_ID_LEN);
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Sends `bytes` to node `target` (an id); `false` when the server has no
/// link to it (unknown, or disconnected).
pub fn send<R: Receiver>(ctx: &Context, target: &str, bytes: Vec<u8>) -> bool {
    if target == my_id() {
        LOOPBACK.with(|q| q.borrow_mut().push_back(bytes));
        if !DRAINING.with(|d| d.replace(true)) {
            ctx.create_timer(Duration::ZERO, drain::<R>, ());
        }
        return true;
    }
    let Ok(id) = CString::new(target) else {
        return false;
    };
    let Ok(len) = u32::try_from(bytes.len()) else {
        return false;
    };
    // SAFETY: live context, a NUL-terminated id, and a buffer of `len` bytes.
    let status = unsafe {
        api!(RedisModule_SendClusterMessage)(
            ctx.ctx,
            id.as_ptr(),
            MESSAGE_TYPE,
            bytes.as_ptr().cast(),
            len,
        )
    };
    status == raw::REDISMODULE_OK as i32
}

fn drain<R: Receiver>(ctx: &Context, (): ()) {
    DRAINING.with(|d| d.set(false));
    let me = my_id();
    // Only what was queued before this pass: what receivers send
    // themselves now waits for the next.
    let queued: Vec<Vec<u8>> = LOOPBACK.with(|q| q.borrow_mut().drain(..).collect());
    for bytes in queued {
        deliver::<R>(ctx, &me, &bytes);
    }
}

fn deliver<R: Receiver>(ctx: &Context, sender: &str, bytes: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| R::receive(ctx, sender, bytes))).is_err() {
        ctx.log_warning("listingstats: internal error handling a cluster message");
    }
}

unsafe extern "C" fn on_message<R: Receiver>(
    ctx: *mut raw::RedisModuleCtx,
    sender_id: *const std::os::raw::c_char,
    _type: u8,
    payload: *const std::os::raw::c_uchar,
    len: u32,
) {
    if ctx.is_null() || sender_id.is_null() || (payload.is_null() && len > 0) {
        return;
    }
    // SAFETY: the server passes a 40-byte id and `len` bytes that live for
    // the call.
    let (sender, bytes) = unsafe {
        let id = std::slice::from_raw_parts(sender_id.cast::<u8>(), NODE_ID_LEN);
        let bytes = if len == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(payload, len as usize)
        };
        (String::from_utf8_lossy(id).into_owned(), bytes)
    };
    let ctx = Context::new(ctx);
    deliver::<R>(&ctx, &sender, bytes);
}
