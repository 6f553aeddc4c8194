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
//! All work waits in one queue behind one timer (the crate's typed
//! `Context::create_timer`). A pass of that timer runs the queued works in
//! turn, each for at most its own slice, and stops when the pass has used
//! [`PASS_BUDGET`]: however much work is under way (a FOLLOW, the parts of
//! other nodes' batches, queries, the index upkeep), one pass of the
//! server's event loop holds it for about that long at most. A work not
//! reached keeps its place at the front for the next pass.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use redis_module::Context;

use crate::budget::PASS_BUDGET;

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

/// A queued work, whatever its type.
trait Queued {
    fn slice_len(&self) -> Duration;
    fn slice(&mut self, ctx: &Context, deadline: Instant) -> Step;
}

impl<W: Sliced> Queued for W {
    fn slice_len(&self) -> Duration {
        Sliced::slice_len(self)
    }

    fn slice(&mut self, ctx: &Context, deadline: Instant) -> Step {
        one_slice(ctx, self, Some(deadline))
    }
}

thread_local! {
    static QUEUE: RefCell<VecDeque<Box<dyn Queued>>> = RefCell::default();
    /// Whether the queue's timer is pending.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

/// Starts `work`: its first slice runs at a next timer pass.
pub fn start<W: Sliced>(ctx: &Context, work: W) {
    QUEUE.with(|q| q.borrow_mut().push_back(Box::new(work)));
    arm(ctx);
}

fn arm(ctx: &Context) {
    if !ARMED.with(|a| a.replace(true)) {
        ctx.create_timer(Duration::ZERO, pass, ());
    }
}

/// One pass: the works queued when it began, in turn, until the budget
/// is spent. A work started meanwhile waits for the next pass.
fn pass(ctx: &Context, (): ()) {
    ARMED.with(|a| a.set(false));
    let end = Instant::now() + PASS_BUDGET;
    let queued = QUEUE.with(|q| q.borrow().len());
    for turn in 0..queued {
        let now = Instant::now();
        let Some(mut work) = QUEUE.with(|q| q.borrow_mut().pop_front()) else {
            break;
        };
        let len = work.slice_len();
        // The first work of a pass always runs its slice; a later one only
        // with at least half of it left, else it keeps its place.
        if turn > 0 && now + len / 2 > end {
            QUEUE.with(|q| q.borrow_mut().push_front(work));
            break;
        }
        let deadline = if turn == 0 {
            now + len
        } else {
            (now + len).min(end)
        };
        if work.slice(ctx, deadline) == Step::More {
            QUEUE.with(|q| q.borrow_mut().push_back(work));
        }
        // A finished work drops here, outside any borrow of the queue.
    }
    if QUEUE.with(|q| !q.borrow().is_empty()) {
        arm(ctx);
    }
}

/// Runs `work` to its end now, in one piece (for callers that cannot wait:
/// MULTI/EXEC, scripts).
pub fn run_now<W: Sliced>(ctx: &Context, work: &mut W) {
    while one_slice(ctx, work, None) == Step::More {}
}

fn one_slice<W: Sliced>(ctx: &Context, work: &mut W, deadline: Option<Instant>) -> Step {
    // Without a deadline, a slice length of an hour stands for "to the end".
    let started = Instant::now();
    let cpu = super::loop_watch::thread_cpu_us();
    let timed = deadline.is_some();
    let deadline = deadline.unwrap_or_else(|| started + Duration::from_secs(3600));
    match catch_unwind(AssertUnwindSafe(|| work.run(ctx, deadline))) {
        Ok(step) => {
            if timed {
                let us = started.elapsed().as_micros() as u64;
                crate::stats::LONGEST_SLICE_US.max(us);
                crate::stats::LONGEST_SLICE_CPU_US
                    .max(super::loop_watch::thread_cpu_us().saturating_sub(cpu));
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
