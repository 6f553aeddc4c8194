//! Identical queries computed once, and recent answers kept for `MAXAGE`.
//!
//! A dashboard shown to a thousand viewers asks the same QUERY or TOP a
//! thousand times. Two calls are **identical** when their parsed
//! arguments (without `MAXAGE`), the metric definitions, the key names in
//! force, the database, the protocol (RESP2/3 replies differ) and the
//! calling user are the same: the same user has the same key permissions,
//! so a shared answer is exactly the one each would get alone. Users never
//! share with one another.
//!
//! An answer is computed once and **recorded** as it is written to the
//! first caller (`Reply::tee`); whoever asked the same meanwhile waits
//! (blocked) and gets it replayed. Without `MAXAGE` a call takes a
//! computation (under way or done) only when no day hash of the server
//! changed since it started (the index feed's data epoch): its answer is
//! then the one a computation of its own would give. With `MAXAGE ms` a
//! call takes any computation started at most that long ago. On Redis
//! Cluster the asking node cannot see the other masters' writes: a call
//! without `MAXAGE` takes only a computation whose requests to the masters
//! are not sent yet (they go out from a timer after the server's pass over
//! its clients, so each master reads after every call that joined); with
//! `MAXAGE`, any recent one. The asking node keeps the merged answer.
//!
//! Done answers stay in a cache bounded by `answer-cache-memory` (oldest
//! dropped first). What a replay writes to a waiting client counts under
//! `max-query-memory` like any query's reply.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::rc::Rc;
use std::time::{Duration, Instant};

use redis_module::{Context, RedisValue};
use rustc_hash::FxHashMap;

use crate::budget::QUERY_SLICE;
use crate::engine::inflight::Need;
use crate::index_upkeep;
use crate::redis::blocked::BlockedReply;
use crate::redis::cluster;
use crate::redis::context::{caller_name, can_block, is_resp3, now_ms, selected_db};
use crate::redis::reply::{Recorded, Recording, Reply};
use crate::redis::slices::{self, Sliced, Step};
use crate::{config, stats};
use listingstats_core::keys::KeyScheme;
use listingstats_core::metrics::Metric;
use listingstats_core::Result;

/// Reply items replayed per look at the clock.
const REPLAY_STEP: usize = 1024;

/// Answers of at most this many bytes are replayed at once; larger ones
/// in slices, each waiter in turn under `max-query-memory`.
const REPLAY_AT_ONCE: usize = 64 << 10;

/// Who waits for an answer under way.
type Waiters = Rc<RefCell<Vec<BlockedReply>>>;

enum State {
    Computing(Waiters),
    Done(Rc<Recorded>),
}

struct Entry {
    /// Which computation this is (a newer one may replace it).
    id: u64,
    /// When it started (wall ms), and the data epoch then.
    started_ms: i64,
    epoch: u64,
    state: State,
    /// A cluster-wide computation whose requests to the masters are not
    /// sent yet: every master will read its data after any call that
    /// joins now, so a joiner gets an answer as fresh as its own.
    open: bool,
}

#[derive(Default)]
struct Shared {
    entries: FxHashMap<String, Entry>,
    /// Done answers, oldest first, for the memory bound.
    done: VecDeque<(String, u64)>,
    bytes: usize,
    next_id: u64,
}

resident! {
    static SHARED: RefCell<Shared> = RefCell::default();
}

fn with<R>(f: impl FnOnce(&mut Shared) -> R) -> R {
    SHARED.with(|s| f(&mut s.borrow_mut()))
}

/// A computation others may join: what its job records, and where the
/// answer goes when done ([`Slot::publish`]).
pub struct Slot {
    key: String,
    id: u64,
    waiters: Waiters,
    recording: Option<Recording>,
    /// An identical computation was under way when this one started:
    /// identical calls are coming in together.
    contended: bool,
}

/// What a call should do.
enum Found {
    /// Reply with this answer (computed recently enough).
    Answer(Rc<Recorded>),
    /// The client was blocked and waits for a computation under way.
    Joined,
    /// Compute it; `None` when the call cannot share (inside MULTI or a
    /// script, which cannot wait).
    Compute(Option<Slot>),
}

/// The identity of a call: everything its answer depends on but the data.
/// `what`: its parsed arguments; `registry`: the metric definitions in
/// force; `keys`: the key names.
fn key(ctx: &Context, what: &dyn std::fmt::Debug, registry: &[Metric], keys: &KeyScheme) -> String {
    let user = caller_name(ctx).unwrap_or_default();
    REGISTRY_TEXT.with(|memo| {
        let mut memo = memo.borrow_mut();
        // Written out once per registry, not per call: the registry's text
        // cost three quarters of a call that found its answer kept.
        if memo.0.as_slice() != registry {
            *memo = (registry.to_vec(), format!("{registry:?}"));
        }
        format!(
            "{}|{}|{}|{what:?}|{}|{keys:?}",
            selected_db(ctx),
            is_resp3(ctx),
            String::from_utf8_lossy(&user),
            memo.1
        )
    })
}

resident! {
    /// The last registry a key was made for, and its text.
    static REGISTRY_TEXT: RefCell<(Vec<Metric>, String)> = RefCell::default();
}

/// Where a QUERY or TOP call goes: `Break` with its reply when an
/// identical call's answer fits (kept, or under way: it then waits),
/// `Continue` with the slot its own computation records into. `what`: its
/// parsed arguments without MAXAGE.
pub fn take(
    ctx: &Context,
    what: &dyn std::fmt::Debug,
    registry: &[Metric],
    keys: &KeyScheme,
    max_age: Option<u64>,
) -> ControlFlow<Result<RedisValue>, Option<Slot>> {
    match find(ctx, key(ctx, what, registry, keys), max_age) {
        Found::Answer(answer) => ControlFlow::Break(reply_now(ctx, answer)),
        Found::Joined => ControlFlow::Break(Ok(RedisValue::NoReply)),
        Found::Compute(slot) => ControlFlow::Continue(slot),
    }
}

/// Finds an answer or a computation a call with `key` may take.
fn find(ctx: &Context, key: String, max_age: Option<u64>) -> Found {
    let now = now_ms();
    let epoch = index_upkeep::data_epoch();
    // Another master's writes are not seen here: only MAXAGE shares.
    let by_epoch = !cluster::enabled();
    let fits = |e: &Entry| {
        max_age.is_some_and(|age| now - e.started_ms <= age as i64)
            || (by_epoch && e.epoch == epoch)
            || e.open
    };
    let found = with(|s| match s.entries.get(&key) {
        Some(e) if fits(e) => Some(match &e.state {
            State::Done(answer) => Ok(Rc::clone(answer)),
            State::Computing(waiters) => Err(Rc::clone(waiters)),
        }),
        _ => None,
    });
    match found {
        Some(Ok(answer)) => {
            stats::SHARED_ANSWERS.add(1);
            return Found::Answer(answer);
        }
        Some(Err(waiters)) if can_block(ctx) => {
            if let Some(blocked) = BlockedReply::block(ctx) {
                stats::SHARED_ANSWERS.add(1);
                waiters.borrow_mut().push(blocked);
                return Found::Joined;
            }
        }
        _ => {}
    }
    if !can_block(ctx) {
        return Found::Compute(None);
    }
    let waiters: Waiters = Rc::default();
    let mut contended = false;
    let id = with(|s| {
        s.next_id += 1;
        let id = s.next_id;
        if let Some(old) = s.entries.insert(
            key.clone(),
            Entry {
                id,
                started_ms: now,
                epoch,
                state: State::Computing(Rc::clone(&waiters)),
                open: false,
            },
        ) {
            contended = matches!(old.state, State::Computing(_));
            forget_done(s, &old);
        }
        id
    });
    Found::Compute(Some(Slot {
        key,
        id,
        waiters,
        recording: Some(Recording::default()),
        contended,
    }))
}

fn forget_done(s: &mut Shared, e: &Entry) {
    if let State::Done(answer) = &e.state {
        s.bytes -= answer.size();
    }
}

impl Slot {
    /// Identical calls may join this computation until [`Slot::close`],
    /// whatever their MAXAGE: its reads of the data all come later (a
    /// cluster-wide query, before it sends its requests).
    pub fn open(&self) {
        self.set_open(true);
    }

    /// Whether an identical computation was still under way when this one
    /// started: calls like it are arriving together, and holding it open
    /// (see [`Slot::open`]) is worth a pass of the event loop.
    pub fn contended(&self) -> bool {
        self.contended
    }

    /// Ends [`Slot::open`]: the computation starts reading.
    pub fn close(&self) {
        self.set_open(false);
    }

    fn set_open(&self, open: bool) {
        with(|s| {
            if let Some(e) = s.entries.get_mut(&self.key).filter(|e| e.id == self.id) {
                e.open = open && matches!(e.state, State::Computing(_));
            }
        });
    }

    /// Starts recording what `out` writes (for a slice of the answer).
    pub fn attach(&mut self, out: &mut Reply) {
        if let Some(r) = self.recording.take() {
            out.tee(r);
        }
    }

    /// Takes the recording back from `out` (the slice is over).
    pub fn detach(&mut self, out: &mut Reply) {
        if let Some(r) = out.untee() {
            self.recording = Some(r);
        }
    }

    /// Whether others wait for this answer.
    pub fn has_waiters(&self) -> bool {
        !self.waiters.borrow().is_empty()
    }

    /// The answer is complete: the waiters get it, and it is kept for
    /// later calls (within `answer-cache-memory`).
    pub fn publish(mut self, ctx: &Context) {
        let answer = Rc::new(self.recording.take().unwrap_or_default().finish());
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for blocked in waiters {
            replay(ctx, blocked, Rc::clone(&answer));
        }
        let cap = usize::try_from(config::current().answer_cache_memory).unwrap_or(0);
        let key = std::mem::take(&mut self.key);
        with(|s| {
            let Some(e) = s.entries.get_mut(&key).filter(|e| e.id == self.id) else {
                return; // A newer computation replaced it.
            };
            if answer.size() > cap {
                s.entries.remove(&key);
                return;
            }
            e.state = State::Done(Rc::clone(&answer));
            s.bytes += answer.size();
            s.done.push_back((key, self.id));
            while s.bytes > cap {
                let Some((old, id)) = s.done.pop_front() else {
                    break;
                };
                if s.entries.get(&old).is_some_and(|e| e.id == id) {
                    if let Some(e) = s.entries.remove(&old) {
                        forget_done(s, &e);
                    }
                }
            }
        });
    }

    /// The computation failed: its waiters get the same error.
    pub fn fail(mut self, text: &str) {
        self.end(text);
    }

    fn end(&mut self, text: &str) {
        for mut blocked in std::mem::take(&mut *self.waiters.borrow_mut()) {
            blocked.reply().error(text);
        }
        let (key, id) = (std::mem::take(&mut self.key), self.id);
        with(|s| {
            if s.entries.get(&key).is_some_and(|e| e.id == id) {
                s.entries.remove(&key);
            }
        });
    }
}

impl Drop for Slot {
    /// A computation dropped before its answer (its client left and no one
    /// waited, or it failed without a reply): anyone who joined since
    /// asks again.
    fn drop(&mut self) {
        if !self.key.is_empty() {
            self.end(
                "TRYAGAIN the identical query this one waited for did not complete; ask again",
            );
        }
    }
}

/// Replies `answer` to the calling command: at once when small, else in
/// slices with the client blocked.
fn reply_now(ctx: &Context, answer: Rc<Recorded>) -> Result<RedisValue> {
    if answer.size() <= REPLAY_AT_ONCE || !can_block(ctx) {
        answer.replay(0, &mut Reply::of(ctx), usize::MAX);
        return Ok(RedisValue::NoReply);
    }
    if let Some(blocked) = BlockedReply::block(ctx) {
        replay(ctx, blocked, answer);
    }
    Ok(RedisValue::NoReply)
}

/// Replays `answer` to a blocked client, then unblocks it.
fn replay(ctx: &Context, mut blocked: BlockedReply, answer: Rc<Recorded>) {
    if answer.size() <= REPLAY_AT_ONCE {
        answer.replay(0, &mut blocked.reply(), usize::MAX);
        return;
    }
    slices::start(
        ctx,
        Replaying {
            need: Need::new(answer.size() as u64),
            blocked,
            answer,
            at: 0,
        },
    );
}

/// A large answer replayed to one client in slices.
struct Replaying {
    blocked: BlockedReply,
    answer: Rc<Recorded>,
    at: usize,
    need: Need,
}

impl Sliced for Replaying {
    fn slice_len(&self) -> Duration {
        QUERY_SLICE
    }

    fn what(&self) -> &'static str {
        "a shared answer's replay"
    }

    fn ready(&self) -> bool {
        self.blocked.client_gone() || self.need.could_start(config::current().max_query_memory)
    }

    fn run(&mut self, _ctx: &Context, deadline: Instant) -> Step {
        if self.blocked.client_gone() {
            return Step::Done;
        }
        match self.need.admitted(config::current().max_query_memory) {
            Ok(true) => {}
            Ok(false) => return Step::Wait,
            Err(e) => {
                self.blocked.reply().error(&e.reply_text());
                return Step::Done;
            }
        }
        let mut out = self.blocked.reply();
        while self.at < self.answer.size() {
            self.at = self.answer.replay(self.at, &mut out, REPLAY_STEP);
            if Instant::now() >= deadline {
                break;
            }
        }
        if self.at < self.answer.size() {
            Step::More
        } else {
            Step::Done
        }
    }

    fn failed(&mut self, _ctx: &Context) {
        self.blocked
            .reply()
            .error("ERR listingstats internal error, see the server log");
    }
}

/// Answers kept now and their bytes (INFO).
pub fn cached() -> (usize, usize) {
    with(|s| {
        let done = s
            .entries
            .values()
            .filter(|e| matches!(e.state, State::Done(_)))
            .count();
        (done, s.bytes)
    })
}
