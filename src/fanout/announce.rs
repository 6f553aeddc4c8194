//! Cluster-wide metric definitions: a change made on one master is sent
//! to every other master before the reply, and every second each master
//! sends its registry to the others (a node that was down, lost its copy
//! in a reshard, or joined later adopts the newest; see
//! `metric_registry`).

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use redis_module::{Context, RedisValue};
use rustc_hash::FxHashMap;

use super::transfer::{self, Bytes};
use crate::budget::WARM_SLICE;
use crate::config;
use crate::metric_registry;
use crate::redis::blocked::BlockedReply;
use crate::redis::cluster;
use crate::redis::context::Hold;
use crate::redis::slices::{self, Sliced, Step};
use listingstats_core::fanout::{Direction, Frame, PartKind, Request};
use listingstats_core::registry_copy::{to_args, Definitions, Version};
use listingstats_core::Result;

/// What the command replies once every master confirmed.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Ok,
    Int(i64),
}

impl Answer {
    fn value(self) -> RedisValue {
        match self {
            Answer::Ok => RedisValue::SimpleStringStatic("OK"),
            Answer::Int(n) => RedisValue::Integer(n),
        }
    }
}

struct Announce {
    blocked: BlockedReply,
    answer: Answer,
    /// Masters that have not confirmed yet.
    waiting: Vec<String>,
}

impl Announce {
    fn reply(mut self) {
        let mut out = self.blocked.reply();
        match self.answer {
            Answer::Ok => out.simple("OK"),
            Answer::Int(n) => out.int(n),
        }
    }
}

resident! {
    static WAITING: RefCell<FxHashMap<u64, Announce>> = RefCell::default();
}

/// Every master but this node.
fn other_masters(ctx: &Context) -> Result<Vec<String>> {
    let view = cluster::view(ctx, false)?;
    Ok(view
        .masters()
        .into_iter()
        .filter(|&m| m != view.me())
        .map(|m| view.id(m).to_string())
        .collect())
}

fn send(ctx: &Context, node: &str, id: u64, version: &Version, defs: &Definitions) -> bool {
    let request = Request {
        kind: PartKind::Registry,
        user: Vec::new(),
        args: to_args(version, defs),
        listings: None,
    };
    let source = Box::new(Bytes {
        bytes: request.encode(),
        at: 0,
    });
    transfer::start(ctx, node, Direction::Request, id, source)
}

/// Sends a change made here to every other master and replies `answer`
/// once each confirmed, or after `cluster-timeout` (a master that did not
/// confirm adopts the change from the next periodic send when it answers
/// again). Inside MULTI or a script, which cannot wait, replies at once.
pub fn announce(
    ctx: &Context,
    version: Version,
    defs: Definitions,
    answer: Answer,
) -> Result<RedisValue> {
    let others = other_masters(ctx)?;
    if others.is_empty() {
        return Ok(answer.value());
    }
    let id = super::next_id();
    let waiting: Vec<String> = others
        .into_iter()
        .filter(|node| send(ctx, node, id, &version, &defs))
        .collect();
    if waiting.is_empty() {
        return Ok(answer.value());
    }
    let Some(blocked) = BlockedReply::block(ctx) else {
        return Ok(answer.value());
    };
    WAITING.with(|w| {
        w.borrow_mut().insert(
            id,
            Announce {
                blocked,
                answer,
                waiting,
            },
        )
    });
    let timeout = Duration::from_millis(config::current().cluster_timeout.max(1) as u64);
    ctx.create_timer(timeout, on_timeout, id);
    Ok(RedisValue::NoReply)
}

fn on_timeout(ctx: &Context, id: u64) {
    if let Some(a) = WAITING.with(|w| w.borrow_mut().remove(&id)) {
        ctx.log_notice(&format!(
            "listingstats: {} master(s) did not confirm a metric change within cluster-timeout; \
             they adopt it when they answer again: {}",
            a.waiting.len(),
            a.waiting.join(", ")
        ));
        a.reply();
    }
}

/// A master's answer to a registry it was sent; `false` when the answer is
/// not one this node waits for.
pub fn on_answer(sender: &str, frame: &Frame<'_>) -> bool {
    let (known, done) = WAITING.with(|w| {
        let mut w = w.borrow_mut();
        let Some(a) = w.get_mut(&frame.id) else {
            return (false, None);
        };
        if frame.last {
            a.waiting.retain(|n| n != sender);
        }
        let done = if a.waiting.is_empty() {
            w.remove(&frame.id)
        } else {
            None
        };
        (true, done)
    });
    if let Some(a) = done {
        a.reply();
    }
    known
}

/// Every second on a cluster master whose registry has a version: sends
/// it to the other masters, which adopt it if newer.
pub fn start_sync(ctx: &Context) {
    ctx.create_timer(SYNC_EVERY, sync, ());
}

const SYNC_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    /// A [`RegistrySync`] is queued.
    static SYNC_QUEUED: Cell<bool> = const { Cell::new(false) };
}

fn sync(ctx: &Context, (): ()) {
    if !SYNC_QUEUED.with(|q| q.replace(true)) {
        slices::start(ctx, RegistrySync);
    }
    ctx.create_timer(SYNC_EVERY, sync, ());
}

/// The second's registry upkeep: it may write this master's copy
/// (`repair`), so it runs from the work queue, which holds it while this
/// node may not write.
struct RegistrySync;

impl Sliced for RegistrySync {
    fn slice_len(&self) -> Duration {
        WARM_SLICE
    }

    fn what(&self) -> &'static str {
        "keeping the metric registry in step"
    }

    fn writes(&self) -> bool {
        true
    }

    /// A replica neither keeps a copy nor sends one: it follows its master.
    fn held(&mut self, _ctx: &Context, why: Hold) -> Step {
        if why == Hold::Replica {
            SYNC_QUEUED.with(|q| q.set(false));
            return Step::Done;
        }
        Step::Wait
    }

    fn failed(&mut self, _ctx: &Context) {
        SYNC_QUEUED.with(|q| q.set(false));
    }

    fn run(&mut self, ctx: &Context, _deadline: Instant) -> Step {
        SYNC_QUEUED.with(|q| q.set(false));
        metric_registry::repair(ctx);
        if let Some((version, defs)) = metric_registry::own_versioned(ctx) {
            if let Ok(others) = other_masters(ctx) {
                let id = super::next_id();
                for node in others {
                    send(ctx, &node, id, &version, &defs);
                }
            }
        }
        Step::Done
    }
}
