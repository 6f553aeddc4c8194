//! Cluster-wide INGEST: a batch sent to any master is applied as one node
//! would apply it. Every event is validated here first (STRICT refuses
//! the batch before anything moves); each event's listings go to the
//! masters that own them, one part per master, the event's id kept (ids
//! are remembered per slot, so a part counts once however often it is
//! sent); this node applies its own part at once and waits for the
//! others' outcomes, merged event by event into the reply.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use redis_module::{Context, RedisValue};
use rustc_hash::FxHashMap;

use super::transfer::{self, Bytes};
use crate::redis::blocked::BlockedReply;
use crate::redis::cluster;
use crate::redis::context::{caller_name, now_ms};
use crate::redis::reply::Reply;
use crate::redis::store::RedisStore;
use crate::{config, dedup_upkeep, stats};
use listingstats_core::cluster::ClusterView;
use listingstats_core::fanout::{Direction, Frame, Head, PartKind, Request, SlotSet};
use listingstats_core::ingest::{self, Outcome, Parsed, Report};
use listingstats_core::ingest_split::{
    decode_event, decode_outcome, encode_event, encode_outcomes, merge, split,
};
use listingstats_core::settings::Settings;
use listingstats_core::{Error, Result};

/// On a cluster, whether some event names a listing another master owns
/// (this node then sends those parts on); the fresh slot reading to split by.
pub fn needed(ctx: &Context, parsed: &Parsed) -> Result<Option<std::rc::Rc<ClusterView>>> {
    if !cluster::enabled() {
        return Ok(None);
    }
    let view = cluster::view(ctx, true)?;
    let elsewhere = parsed
        .iter()
        .flatten()
        .any(|e| e.listings.iter().any(|l| view.elsewhere(l)));
    Ok(elsewhere.then_some(view))
}

/// A part sent to another master: which of the caller's events it holds.
struct Sent {
    node: String,
    addr: String,
    indices: Vec<usize>,
    frames: Vec<u8>,
    done: bool,
}

struct Waiting {
    blocked: BlockedReply,
    events: usize,
    outcomes: Vec<(usize, Outcome, Option<String>)>,
    increments: usize,
    parts: Vec<Sent>,
    timeout_ms: i64,
}

thread_local! {
    static WAITING: RefCell<FxHashMap<u64, Waiting>> = RefCell::default();
}

/// Applies this node's part now and sends the others; the client waits
/// for their outcomes.
pub fn start(
    ctx: &Context,
    parsed: Parsed,
    strict: bool,
    settings: Arc<Settings>,
    view: &ClusterView,
) -> Result<RedisValue> {
    let events = parsed.len();
    let split = split(parsed, view, &settings, now_ms(), strict)?;
    let user = caller_name(ctx)
        .ok_or_else(|| Error::invalid("a cluster-wide INGEST needs a client with a user"))?;
    let blocked = BlockedReply::block(ctx).ok_or_else(|| {
        Error::invalid(
            "an INGEST of listings on several nodes cannot run inside MULTI or a script: \
             it waits for the other nodes",
        )
    })?;
    let mut outcomes: Vec<(usize, Outcome, Option<String>)> = split
        .rejected
        .into_iter()
        .map(|(i, why)| (i, Outcome::Rejected, Some(why)))
        .collect();
    let mut increments = 0;
    let id = super::next_id();
    let mut parts = Vec::new();
    for (node, share) in split.shares {
        let indices: Vec<usize> = share.iter().map(|(i, _)| *i).collect();
        if node == view.me() {
            let local: Parsed = share.into_iter().map(|(_, e)| Ok(e)).collect();
            let mut store = RedisStore::new(ctx, &settings.keys);
            let report = ingest::run(&mut store, local, false, &settings, now_ms(), Some(view))?;
            dedup_upkeep::after_write(&mut store);
            count(&report);
            increments += report.increments;
            let encoded = encode_outcomes(&report, &indices);
            outcomes.extend(encoded.iter().filter_map(|b| decode_outcome(b)));
            continue;
        }
        let request = Request {
            kind: PartKind::Ingest,
            user: user.clone(),
            args: share.iter().map(|(i, e)| encode_event(*i, e)).collect(),
            listings: None,
        };
        let sent = Sent {
            node: view.id(node).to_string(),
            addr: view.addr(node).to_string(),
            indices,
            frames: Vec::new(),
            done: false,
        };
        let source = Box::new(Bytes {
            bytes: request.encode(),
            at: 0,
        });
        if transfer::start(ctx, &sent.node, Direction::Request, id, source) {
            parts.push(sent);
        } else {
            let why = format!(
                "CLUSTERDOWN node {} ({}) cannot be reached over the cluster bus; not applied there",
                sent.addr, sent.node
            );
            outcomes.extend(
                sent.indices
                    .iter()
                    .map(|&i| (i, Outcome::Rejected, Some(why.clone()))),
            );
        }
    }
    let waiting = Waiting {
        blocked,
        events,
        outcomes,
        increments,
        parts,
        timeout_ms: settings.cluster_timeout,
    };
    if waiting.parts.is_empty() {
        finish(waiting);
        return Ok(RedisValue::NoReply);
    }
    let timeout = Duration::from_millis(settings.cluster_timeout.max(1) as u64);
    WAITING.with(|w| w.borrow_mut().insert(id, waiting));
    ctx.create_timer(timeout, on_timeout, id);
    Ok(RedisValue::NoReply)
}

fn count(report: &Report) {
    stats::EVENTS.add(report.applied as u64);
    stats::DUPLICATES.add(report.duplicates as u64);
    stats::REJECTED.add(report.rejected as u64);
    stats::INCREMENTS.add(report.increments as u64);
}

/// Replies the merged report.
fn finish(mut w: Waiting) {
    let report = merge(w.events, std::mem::take(&mut w.outcomes), w.increments);
    write_report(&mut w.blocked.reply(), &report);
}

fn on_timeout(ctx: &Context, id: u64) {
    let Some(mut w) = WAITING.with(|w| w.borrow_mut().remove(&id)) else {
        return;
    };
    stats::CLUSTER_TIMEOUTS.add(1);
    for part in w.parts.iter().filter(|p| !p.done) {
        transfer::stop(&part.node, Direction::Request, id);
        let why = format!(
            "TIMEOUT no answer from node {} ({}) within cluster-timeout {} ms; the event may be \
             partly applied: send it again (with an id it counts once)",
            part.addr, part.node, w.timeout_ms
        );
        w.outcomes.extend(
            part.indices
                .iter()
                .map(|&i| (i, Outcome::Rejected, Some(why.clone()))),
        );
    }
    let _ = ctx;
    finish(w);
}

/// A frame of a part's outcomes; `false` when no INGEST waits for it.
pub fn on_answer(sender: &str, frame: &Frame<'_>) -> bool {
    let (known, done) = WAITING.with(|w| {
        let mut w = w.borrow_mut();
        let Some(waiting) = w.get_mut(&frame.id) else {
            return (false, None);
        };
        let Some(part) = waiting
            .parts
            .iter_mut()
            .find(|p| p.node == sender && !p.done)
        else {
            return (true, None);
        };
        part.frames.extend_from_slice(frame.payload);
        if frame.last {
            part.done = true;
            let outcomes = outcomes_of(part);
            waiting.outcomes.extend(outcomes.0);
            waiting.increments += outcomes.1;
        }
        let all = waiting.parts.iter().all(|p| p.done);
        (true, if all { w.remove(&frame.id) } else { None })
    });
    if let Some(waiting) = done {
        finish(waiting);
    }
    known
}

/// A complete part's outcomes, and its increments; a part that failed
/// rejects each of its events with its error.
fn outcomes_of(part: &Sent) -> (Vec<(usize, Outcome, Option<String>)>, usize) {
    let head = Head::decode(&part.frames).map(|(h, _)| h);
    match head {
        Some(Head {
            error: None,
            fields,
            examined,
            ..
        }) => (
            fields.iter().filter_map(|b| decode_outcome(b)).collect(),
            examined as usize,
        ),
        other => {
            let why = other
                .and_then(|h| h.error)
                .unwrap_or_else(|| "ERR a node sent a damaged answer".into());
            let why = why.strip_prefix("ERR ").unwrap_or(&why).to_string();
            let why = format!("{why} (node {})", part.addr);
            (
                part.indices
                    .iter()
                    .map(|&i| (i, Outcome::Rejected, Some(why.clone())))
                    .collect(),
                0,
            )
        }
    }
}

/// On the master that owns them: applies a part's events as the user who
/// sent the batch, and answers each event's outcome.
pub fn apply_part(ctx: &Context, request: &Request) -> Result<Head> {
    let settings = config::current();
    let mut indices = Vec::with_capacity(request.args.len());
    let mut parsed: Parsed = Vec::with_capacity(request.args.len());
    for arg in &request.args {
        let (index, event) =
            decode_event(arg).ok_or_else(|| Error::invalid("a node sent a damaged event"))?;
        indices.push(index);
        parsed.push(Ok(event));
    }
    let view = cluster::view(ctx, true)?;
    let mut store = RedisStore::for_user(ctx, &settings.keys, Some(&request.user))?;
    let report = ingest::run(&mut store, parsed, false, &settings, now_ms(), Some(&view))?;
    dedup_upkeep::after_write(&mut store);
    count(&report);
    Ok(Head {
        error: None,
        fields: encode_outcomes(&report, &indices),
        slots: SlotSet::default(),
        examined: report.increments as u64,
        bad: None,
    })
}

/// `applied n duplicates n rejected n errors [...]`, a map in this order
/// (RESP2 clients see the flat array).
pub fn write_report(out: &mut Reply, report: &Report) {
    out.map(4);
    for (name, n) in [
        ("applied", report.applied),
        ("duplicates", report.duplicates),
        ("rejected", report.rejected),
    ] {
        out.bulk(name.as_bytes());
        out.int(n as i64);
    }
    out.bulk(b"errors");
    out.array(report.errors.len());
    for e in &report.errors {
        out.bulk(e.as_bytes());
    }
}
