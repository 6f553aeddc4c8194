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
//! a cursor) is released by its own `Drop` when the work ends; what is
//! still queued when the process exits is never dropped (module state,
//! see `resident!`), so no destructor runs at exit.
//!
//! All work waits in one queue behind one timer (the crate's typed
//! `Context::create_timer`). A pass of that timer runs the queued works in
//! turn, each for at most its own slice, and stops when the pass has used
//! [`PASS_BUDGET`]: however much work is under way (a FOLLOW, the parts of
//! other nodes' batches, queries, the index upkeep), one pass of the
//! server's event loop holds it for about that long at most. A work not
//! reached keeps its place at the front for the next pass.
//!
//! **May I write now?** A work whose next slice writes keys says so
//! ([`Sliced::writes`]); before such a slice the pass asks
//! [`write_hold`]. While writes are paused (`CLIENT PAUSE`, `FAILOVER`,
//! `CLUSTER FAILOVER`, a `SHUTDOWN` waiting for replicas), the server is
//! loading or this node is a replica, the slice does not run: the work is
//! told ([`Sliced::held`]) and waits, looked at again every
//! [`WAIT_POLL`], or ends (a replica has nothing to apply). Nothing the
//! module does outside a client's command writes or replicates then; this
//! is the one place that rule lives. A work may also wait for its turn
//! ([`Step::Wait`], e.g. a query under `max-query-memory`), looked at
//! every [`WAIT_POLL`] too.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use redis_module::Context;

use super::context::{write_hold, Hold};
use crate::budget::{PASS_BUDGET, WAIT_POLL};

/// What a slice says about the work.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    More,
    Done,
    /// Nothing can be done now (waiting for its turn): the work sleeps
    /// until the next [`WAIT_POLL`] finds it [`Sliced::ready`].
    Wait,
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
    /// For a work that waits for its turn ([`Step::Wait`]): whether a
    /// slice now could do something (else it keeps waiting, unrun).
    fn ready(&self) -> bool {
        true
    }
    /// Whether the next slice writes keys (and so replicates). Such a
    /// slice runs only while [`write_hold`] allows writing.
    fn writes(&self) -> bool {
        false
    }
    /// The next slice would write, and this node may not write now
    /// (`why`): [`Step::Wait`] (the default) keeps the work until it may;
    /// a work can end instead (its client gone, nothing to do on a replica).
    fn held(&mut self, _ctx: &Context, _why: Hold) -> Step {
        Step::Wait
    }
}

/// A queued work, whatever its type.
trait Queued {
    fn slice_len(&self) -> Duration;
    /// One slice, or, when the slice would write and this node may not
    /// write now, what the work does instead (and why it did not run).
    fn slice(&mut self, ctx: &Context, deadline: Instant) -> (Step, Option<Hold>);
    /// Whether the work may run now: `None` when it may; else why not and
    /// what it does about it.
    fn check_hold(&mut self, ctx: &Context) -> Option<(Step, Hold)>;
    fn ready(&self) -> bool;
}

impl<W: Sliced> Queued for W {
    fn slice_len(&self) -> Duration {
        Sliced::slice_len(self)
    }

    fn slice(&mut self, ctx: &Context, deadline: Instant) -> (Step, Option<Hold>) {
        if let Some((step, why)) = self.check_hold(ctx) {
            crate::stats::WRITE_HOLDS.add(1);
            return (step, Some(why));
        }
        (one_slice(ctx, self, Some(deadline)), None)
    }

    fn check_hold(&mut self, ctx: &Context) -> Option<(Step, Hold)> {
        if !self.writes() {
            return None;
        }
        let why = write_hold(ctx)?;
        let step = catch_unwind(AssertUnwindSafe(|| self.held(ctx, why))).unwrap_or(Step::Done);
        Some((step, why))
    }

    fn ready(&self) -> bool {
        Sliced::ready(self)
    }
}

/// A work that waits: for writes to be allowed again, or for its turn.
struct Waiting {
    work: Box<dyn Queued>,
    writes: bool,
}

resident! {
    static QUEUE: RefCell<VecDeque<Box<dyn Queued>>> = RefCell::default();
    static WAITING: RefCell<VecDeque<Waiting>> = RefCell::default();
}

thread_local! {
    /// Whether the queue's timer is pending.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Whether the waiting works' timer is pending.
    static POLLING: Cell<bool> = const { Cell::new(false) };
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

/// Every [`WAIT_POLL`] while works wait: those waiting for writes that
/// still may not write stay (told again, so one may end: a client gone),
/// and so do those waiting for a turn that has not come; the others go
/// back to the queue.
fn poll(ctx: &Context, (): ()) {
    POLLING.with(|p| p.set(false));
    requeue(ctx);
}

fn requeue(ctx: &Context) {
    let waiting: Vec<Waiting> = WAITING.with(|w| w.borrow_mut().drain(..).collect());
    let mut ready = false;
    for mut w in waiting {
        if w.writes {
            match w.work.check_hold(ctx) {
                Some((Step::Wait, _)) => {
                    WAITING.with(|q| q.borrow_mut().push_back(w));
                    continue;
                }
                Some((Step::Done, _)) => continue, // It ends here.
                Some((Step::More, _)) | None => {}
            }
        } else if !w.work.ready() {
            WAITING.with(|q| q.borrow_mut().push_back(w));
            continue;
        }
        QUEUE.with(|q| q.borrow_mut().push_back(w.work));
        ready = true;
    }
    if ready {
        arm(ctx);
    }
    if WAITING.with(|w| !w.borrow().is_empty()) && !POLLING.with(|p| p.replace(true)) {
        ctx.create_timer(WAIT_POLL, poll, ());
    }
}

fn park(ctx: &Context, work: Box<dyn Queued>, writes: bool) {
    WAITING.with(|w| w.borrow_mut().push_back(Waiting { work, writes }));
    if !POLLING.with(|p| p.replace(true)) {
        ctx.create_timer(WAIT_POLL, poll, ());
    }
}

/// Works waiting now: (for writes to be allowed, for their turn), INFO.
pub fn waiting() -> (usize, usize) {
    WAITING.with(|w| {
        let w = w.borrow();
        let writes = w.iter().filter(|x| x.writes).count();
        (writes, w.len() - writes)
    })
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
        match work.slice(ctx, deadline) {
            (Step::More, _) => QUEUE.with(|q| q.borrow_mut().push_back(work)),
            (Step::Wait, held) => park(ctx, work, held.is_some()),
            // A finished work drops here, outside any borrow of the queue.
            (Step::Done, _) => {}
        }
    }
    if QUEUE.with(|q| !q.borrow().is_empty()) {
        arm(ctx);
    }
}

/// Runs `work` to its end now, in one piece (for callers that cannot wait:
/// MULTI/EXEC, scripts: a client's own command, which may write).
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
