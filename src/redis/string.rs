//! Bytes of Redis strings.

use redis_module::raw;

/// The bytes of a Redis string the module does not own (an argument, a key
/// name lent to a callback).
///
/// # Safety
/// `s` must be a live string, and the slice must not be used after Redis
/// frees it: the caller picks the lifetime, so the caller must bound it to
/// the callback or command that lent the string. For strings the module
/// owns, use `RedisString::as_slice`, whose borrow is tied to the string.
pub unsafe fn lent_bytes<'a>(s: *const raw::RedisModuleString) -> &'a [u8] {
    let mut len = 0usize;
    // SAFETY: s is live (the caller's promise); StringPtrLen returns its
    // buffer and length.
    unsafe {
        let p = api!(RedisModule_StringPtrLen)(s, &mut len);
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    }
}
