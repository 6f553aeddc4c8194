//! The one engine for long work: run it in slices of a few milliseconds on
//! a timer, so the server serves other clients between slices.
//!
//! A piece of work implements [`Sliced`]. Each slice runs under
//! `catch_unwind`; a panic ends the work through [`Sliced::failed`] and a
//! log line, never an unwind into Redis. Work ends itself when it is no
//! longer wanted: a query whose client disconnected (see
//! `BlockedReply::client_gone`), an index rebuild that a newer one
//! replaced. Redis refuses `MODULE UNLOAD` while a module timer is pending,
//! so no slice outlives the module. What the work holds (a blocked client,
//! a cursor) is released by its own `Drop` when the work ends.
//!
//! Typed timers are the crate's (`Context::create_timer`): the work is the
//! timer's data, owned by exactly one pending timer at a time.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use redis_module::Context;

/// What a slice says about the work.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    More,
    Done,
}

/// Work that runs in slices.
pub trait Sliced: Sized + 'static {
    /// How long one slice may hold the server.
    fn slice_len(&self) -> Duration;
    /// Runs one slice, until about `deadline`.
    fn run(&mut self, ctx: &Context, deadline: Instant) -> Step;
    /// A slice panicked (already caught and logged): end the work, e.g.
    /// with an error reply.
    fn failed(&mut self, ctx: &Context);
    /// A name for the log.
    fn what(&self) -> &'static str;
}

/// Starts `work`: its first slice runs at the next timer pass.
pub fn start<W: Sliced>(ctx: &Context, work: W) {
    ctx.create_timer(Duration::ZERO, tick::<W>, work);
}

/// Runs `work` to its end now, in one piece (for callers that cannot wait:
/// MULTI/EXEC, scripts).
pub fn run_now<W: Sliced>(ctx: &Context, work: &mut W) {
    while one_slice(ctx, work, None) == Step::More {}
}

/// CPU time this thread has used, in microseconds: a slice's CPU time
/// against its wall time tells its own work from time the server waited
/// for a core.
fn thread_cpu_us() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a plain call writing into `t`.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } == 0;
    if ok {
        t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
    } else {
        0
    }
}

fn one_slice<W: Sliced>(ctx: &Context, work: &mut W, deadline: Option<Instant>) -> Step {
    // Without a deadline, a slice length of an hour stands for "to the end".
    let started = Instant::now();
    let cpu = thread_cpu_us();
    let timed = deadline.is_some();
    let deadline = deadline.unwrap_or_else(|| started + Duration::from_secs(3600));
    match catch_unwind(AssertUnwindSafe(|| work.run(ctx, deadline))) {
        Ok(step) => {
            if timed {
                let us = started.elapsed().as_micros() as u64;
                crate::stats::LONGEST_SLICE_US.max(us);
                crate::stats::LONGEST_SLICE_CPU_US.max(thread_cpu_us().saturating_sub(cpu));
            }
            step
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            ctx.log_warning(&format!(
                "listingstats: internal error in {}: {what}",
                work.what()
            ));
            let _ = catch_unwind(AssertUnwindSafe(|| work.failed(ctx)));
            Step::Done
        }
    }
}

fn tick<W: Sliced>(ctx: &Context, mut work: W) {
    let deadline = Instant::now() + work.slice_len();
    if one_slice(ctx, &mut work, Some(deadline)) == Step::More {
        ctx.create_timer(Duration::ZERO, tick::<W>, work);
    }
}
