//! Watching the server's event loop: how long each pass of it ran, from
//! waking up to going back to sleep, in wall and CPU time. That is what a
//! client waits at worst behind whatever the server did in one pass —
//! the module's slices, other commands, cluster bus messages.
//!
//! Off by default: it costs two callbacks per pass. On, it is the
//! measurement behind the "no client waits more than 10 ms" goal
//! (`scripts/bench.sh follow_cluster`), independent of the module's own
//! accounting of its slices.

use std::cell::Cell;
use std::os::raw::c_void;

use redis_module::{raw, Context};

use crate::stats::{LONGEST_PASS_CPU_US, LONGEST_PASS_US};

thread_local! {
    /// When the current pass woke up (wall µs, CPU µs); `None` while asleep.
    static AWAKE: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

fn wall_us() -> u64 {
    clock_us(libc::CLOCK_MONOTONIC)
}

/// CPU time this thread has used, in microseconds.
pub fn thread_cpu_us() -> u64 {
    clock_us(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_us(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a plain call writing into `t`.
    let ok = unsafe { libc::clock_gettime(clock, &mut t) } == 0;
    if ok {
        t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
    } else {
        0
    }
}

unsafe extern "C" fn on_loop(
    _ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    sub: u64,
    _data: *mut c_void,
) {
    if sub == raw::REDISMODULE_SUBEVENT_EVENTLOOP_AFTER_SLEEP {
        AWAKE.with(|a| a.set(Some((wall_us(), thread_cpu_us()))));
    } else if let Some((wall, cpu)) = AWAKE.with(|a| a.take()) {
        LONGEST_PASS_US.max(wall_us().saturating_sub(wall));
        LONGEST_PASS_CPU_US.max(thread_cpu_us().saturating_sub(cpu));
    }
}

/// Starts (`true`) or stops watching the event loop. Starting begins a
/// new measurement: the longest pass so far is forgotten.
pub fn watch(ctx: &Context, on: bool) {
    if WATCHING.with(Cell::get) == on {
        return;
    }
    WATCHING.with(|w| w.set(on));
    AWAKE.with(|a| a.set(None));
    if on {
        LONGEST_PASS_US.reset();
        LONGEST_PASS_CPU_US.reset();
    }
    let event = raw::RedisModuleEvent {
        id: raw::REDISMODULE_EVENT_EVENTLOOP,
        dataver: 1,
    };
    // SAFETY: the main thread; a NULL callback unsubscribes.
    unsafe {
        api!(RedisModule_SubscribeToServerEvent)(ctx.ctx, event, on.then_some(on_loop as _));
    }
}
