//! The global allocator: Redis's allocator inside Redis, the system one
//! anywhere else.
//!
//! Inside a server, allocations go through `RedisModule_Alloc` so they show
//! in `INFO memory` and obey `maxmemory`. The same library is also linked
//! into unit and integration test binaries, where no Redis exists; the
//! crate's `RedisAlloc` aborts there. `RedisModule_Init` fills in
//! `RedisModule_Alloc` before the module allocates anything, and it never
//! changes afterwards, so each block is freed by the allocator that made it.

use std::alloc::{GlobalAlloc, Layout, System};

use redis_module::alloc::RedisAlloc;
use redis_module::raw;

#[derive(Default, Debug, Clone, Copy)]
pub struct ModuleAlloc;

fn in_redis() -> bool {
    // SAFETY: a plain read of a function pointer written once by
    // RedisModule_Init, before any other code of this module runs.
    unsafe { (*std::ptr::addr_of!(raw::RedisModule_Alloc)).is_some() }
}

unsafe impl GlobalAlloc for ModuleAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if in_redis() {
            RedisAlloc.alloc(layout)
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if in_redis() {
            RedisAlloc.dealloc(ptr, layout)
        } else {
            System.dealloc(ptr, layout)
        }
    }
}
