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
use listingstats_core::ingest::{self, Event, Outcome, Parsed, Report};
use listingstats_core::ingest_split::{
    decode_event, decode_outcome, encode_event, encode_outcomes, merge, not_applied_there, resplit,
    split, PartAnswer,
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
    index: u16,
    node: String,
    addr: String,
    indices: Vec<usize>,
    /// Its events, sent again elsewhere when the master answers that they
    /// were not applied there (a client's INGEST only).
    events: Vec<(usize, Event)>,
    frames: Vec<u8>,
    done: bool,
    /// Its answer, once complete (kept for [`Then::Call`]).
    answer: Option<PartAnswer>,
}

/// Who waits for the parts' outcomes.
enum Then {
    /// A client's INGEST: the merged report is its reply.
    Reply(BlockedReply),
    /// FOLLOW on a cluster: each part's answer, by node.
    Call(Done),
}

/// Each part's answer, by node index.
pub type Answers = Vec<(u16, PartAnswer)>;
/// What [`send_parts`] calls with the answers.
pub type Done = Box<dyn FnOnce(&Context, Answers)>;

struct Waiting {
    then: Then,
    events: usize,
    outcomes: Vec<(usize, Outcome, Option<String>)>,
    increments: usize,
    parts: Vec<Sent>,
    timeout_ms: i64,
    /// The user the parts are applied as.
    user: Vec<u8>,
    /// Events a master did not apply because their listings live
    /// elsewhere now (it was demoted, a slot moved), with that reason:
    /// sent again to their owners every [`RESEND`] until `cluster-timeout`.
    again: Vec<(usize, Event, String)>,
}

/// How long a client's INGEST waits before it sends again the events a
/// master did not apply (the cluster's slot map may still be changing).
const RESEND: Duration = Duration::from_millis(100);

resident! {
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
        match send_part(ctx, view, node, user.clone(), share, id) {
            Ok(sent) => parts.push(sent),
            Err(who) => {
                let why = format!(
                    "CLUSTERDOWN node {who} cannot be reached over the cluster bus; not applied there"
                );
                outcomes.extend(
                    indices
                        .iter()
                        .map(|&i| (i, Outcome::Rejected, Some(why.clone()))),
                );
            }
        }
    }
    let waiting = Waiting {
        then: Then::Reply(blocked),
        events,
        outcomes,
        increments,
        parts,
        timeout_ms: settings.cluster_timeout,
        user,
        // No master serves some listing now (a failover under way): placed
        // again with a later slot reading.
        again: split.unplaced,
    };
    if waiting.parts.is_empty() && waiting.again.is_empty() {
        finish(ctx, waiting);
        return Ok(RedisValue::NoReply);
    }
    let timeout = Duration::from_millis(settings.cluster_timeout.max(1) as u64);
    ctx.create_timer(timeout, on_timeout, id);
    if waiting.parts.is_empty() {
        parts_done(ctx, id, waiting);
    } else {
        WAITING.with(|w| w.borrow_mut().insert(id, waiting));
    }
    Ok(RedisValue::NoReply)
}

fn count(report: &Report) {
    stats::EVENTS.add(report.applied as u64);
    stats::DUPLICATES.add(report.duplicates as u64);
    stats::REJECTED.add(report.rejected as u64);
    stats::INCREMENTS.add(report.increments as u64);
}

/// Replies the merged report, or tells the caller each part's answer.
fn finish(ctx: &Context, w: Waiting) {
    match w.then {
        Then::Reply(mut blocked) => {
            let report = merge(w.events, w.outcomes, w.increments);
            write_report(&mut blocked.reply(), &report);
        }
        Then::Call(done) => {
            let answers = w
                .parts
                .into_iter()
                .map(|p| {
                    let answer = match p.answer {
                        Some(a) => a,
                        None => Err(format!(
                            "TIMEOUT no answer from node {} ({})",
                            p.addr, p.node
                        )),
                    };
                    (p.index, answer)
                })
                .collect();
            done(ctx, answers);
        }
    }
}

/// Starts sending master `node` its part `events` (request `id`, applied
/// as `user`); `Err` names the node (`ip:port (id)`) when the bus has no
/// link to it.
fn send_part(
    ctx: &Context,
    view: &ClusterView,
    node: u16,
    user: Vec<u8>,
    events: Vec<(usize, Event)>,
    id: u64,
) -> std::result::Result<Sent, String> {
    let request = Request {
        kind: PartKind::Ingest,
        user,
        args: events.iter().map(|(i, e)| encode_event(*i, e)).collect(),
        listings: None,
    };
    let sent = Sent {
        index: node,
        node: view.id(node).to_string(),
        addr: view.addr(node).to_string(),
        indices: events.iter().map(|(i, _)| *i).collect(),
        events,
        frames: Vec::new(),
        done: false,
        answer: None,
    };
    let source = Box::new(Bytes {
        bytes: request.encode(),
        at: 0,
    });
    if transfer::start(ctx, &sent.node, Direction::Request, id, source) {
        Ok(sent)
    } else {
        Err(format!("{} ({})", sent.addr, sent.node))
    }
}

/// Sends each master of `shares` its events, as they are (ids kept), and
/// calls `done` with every part's answer once all came or
/// `timeout_ms` passed. `Err`: no part could be sent (each part's
/// reason); `done` is then never called.
pub fn send_parts(
    ctx: &Context,
    view: &ClusterView,
    shares: &[(u16, Vec<(usize, Event)>)],
    timeout_ms: i64,
    done: Done,
) -> std::result::Result<(), Answers> {
    let id = super::next_id();
    let mut parts = Vec::new();
    let mut failed: Answers = Vec::new();
    for (node, events) in shares {
        // No user: the node applies it with the module's own rights, as
        // the following master applies its own part.
        match send_part(ctx, view, *node, Vec::new(), events.clone(), id) {
            Ok(sent) => parts.push(sent),
            Err(who) => {
                let why = format!("CLUSTERDOWN node {who} cannot be reached over the cluster bus");
                failed.push((*node, Err(why)));
            }
        }
    }
    if parts.is_empty() {
        return Err(failed);
    }
    let mut waiting = Waiting {
        then: Then::Call(done),
        events: 0,
        outcomes: Vec::new(),
        increments: 0,
        parts,
        timeout_ms,
        user: Vec::new(),
        again: Vec::new(),
    };
    for (node, answer) in failed {
        waiting.parts.push(Sent {
            index: node,
            node: String::new(),
            addr: String::new(),
            indices: Vec::new(),
            events: Vec::new(),
            frames: Vec::new(),
            done: true,
            answer: Some(answer),
        });
    }
    let timeout = Duration::from_millis(timeout_ms.max(1) as u64);
    WAITING.with(|w| w.borrow_mut().insert(id, waiting));
    ctx.create_timer(timeout, on_timeout, id);
    Ok(())
}

fn on_timeout(ctx: &Context, id: u64) {
    let Some(mut w) = WAITING.with(|w| w.borrow_mut().remove(&id)) else {
        return;
    };
    stats::CLUSTER_TIMEOUTS.add(1);
    for part in w.parts.iter().filter(|p| !p.done) {
        transfer::stop(&part.node, Direction::Request, id);
        if matches!(w.then, Then::Call(_)) {
            continue; // Told as `None`: no answer.
        }
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
    give_up_again(&mut w);
    finish(ctx, w);
}

/// The events still waiting to be sent again are rejected with the reason
/// their last master gave.
fn give_up_again(w: &mut Waiting) {
    let again = std::mem::take(&mut w.again);
    w.outcomes.extend(
        again
            .into_iter()
            .map(|(i, _, why)| (i, Outcome::Rejected, Some(why))),
    );
}

/// Every part answered: the reply, unless some events must be sent again
/// (then after [`RESEND`]).
fn parts_done(ctx: &Context, id: u64, w: Waiting) {
    if w.again.is_empty() {
        return finish(ctx, w);
    }
    WAITING.with(|m| m.borrow_mut().insert(id, w));
    ctx.create_timer(RESEND, resend, id);
}

/// Sends the events a master did not apply to their owners by a fresh
/// slot reading (the parts carry the caller's ids: each counts once).
fn resend(ctx: &Context, id: u64) {
    let Some(mut w) = WAITING.with(|m| m.borrow_mut().remove(&id)) else {
        return; // Answered meanwhile (cluster-timeout).
    };
    let Ok(view) = cluster::view(ctx, true) else {
        return parts_done(ctx, id, w);
    };
    let again = std::mem::take(&mut w.again);
    let split = resplit(again.into_iter().map(|(i, e, _)| (i, e)).collect(), &view);
    stats::CLUSTER_RETRIES.add(1);
    for (node, share) in split.shares {
        // This node's own share goes through the bus too: as any part, it
        // then waits in the work queue while writes are paused.
        match send_part(ctx, &view, node, w.user.clone(), share.clone(), id) {
            Ok(sent) => w.parts.push(sent),
            Err(who) => {
                let why = format!("CLUSTERDOWN node {who} cannot be reached over the cluster bus");
                w.again
                    .extend(share.into_iter().map(|(i, e)| (i, e, why.clone())));
            }
        }
    }
    // A slot moving or unserved now: tried again after RESEND.
    w.again.extend(split.unplaced);
    if w.parts.iter().all(|p| p.done) {
        parts_done(ctx, id, w);
    } else {
        WAITING.with(|m| m.borrow_mut().insert(id, w));
    }
}

/// A frame of a part's outcomes; `false` when no INGEST waits for it.
pub fn on_answer(ctx: &Context, sender: &str, frame: &Frame<'_>) -> bool {
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
            if matches!(waiting.then, Then::Call(_)) {
                part.answer = Some(answer_of(part));
            } else {
                let (outcomes, increments) = outcomes_of(part);
                waiting.increments += increments;
                for (index, outcome, why) in outcomes {
                    // Not applied there, its listings live elsewhere now:
                    // sent again (within cluster-timeout).
                    let again = why
                        .as_deref()
                        .filter(|w| not_applied_there(w))
                        .and_then(|w| {
                            let event = part.events.iter().find(|(i, _)| *i == index)?;
                            Some((index, event.1.clone(), w.to_string()))
                        });
                    match again {
                        Some(again) => waiting.again.push(again),
                        None => waiting.outcomes.push((index, outcome, why)),
                    }
                }
                part.events = Vec::new();
            }
        }
        let all = waiting.parts.iter().all(|p| p.done);
        (true, if all { w.remove(&frame.id) } else { None })
    });
    if let Some(waiting) = done {
        parts_done(ctx, frame.id, waiting);
    }
    known
}

/// A complete part's answer as it came: its outcomes (transient reasons
/// included) or the error it sent instead.
fn answer_of(part: &Sent) -> PartAnswer {
    match Head::decode(&part.frames).map(|(h, _)| h) {
        Some(Head {
            error: None,
            fields,
            examined,
            ..
        }) => Ok((
            fields.iter().filter_map(|b| decode_outcome(b)).collect(),
            examined as usize,
        )),
        other => {
            let why = other
                .and_then(|h| h.error)
                .unwrap_or_else(|| "ERR a node sent a damaged answer".into());
            let why = why.strip_prefix("ERR ").unwrap_or(&why).to_string();
            Err(format!("{why} (node {})", part.addr))
        }
    }
}

/// A complete part's outcomes, and its increments; a part that failed
/// rejects each of its events with its error.
fn outcomes_of(part: &Sent) -> (Vec<(usize, Outcome, Option<String>)>, usize) {
    answer_of(part).unwrap_or_else(|why| {
        let each = part.indices.iter();
        (
            each.map(|&i| (i, Outcome::Rejected, Some(why.clone())))
                .collect(),
            0,
        )
    })
}

/// On the master that owns them: a part's events, applied as the user who
/// sent the batch (none for a followed stream's part: FOLLOW checked its
/// user) in chunks of [`PART_CHUNK`] events, as many per slice as fit
/// (the first always), so a large part never holds the server; each event's outcome is answered.
/// Events carry their ids to every chunk, so a part cut short (a crash)
/// and sent again counts once where it has ids.
pub struct PartIngest {
    user: Option<Vec<u8>>,
    /// The events not applied yet.
    events: Vec<(usize, Event)>,
    fields: Vec<Vec<u8>>,
    increments: usize,
}

/// Events of a part applied in one step (one dedup pass, one write phase).
const PART_CHUNK: usize = 32;

impl PartIngest {
    pub fn new(request: &Request) -> Result<PartIngest> {
        let events = request
            .args
            .iter()
            .map(|arg| {
                decode_event(arg).ok_or_else(|| Error::invalid("a node sent a damaged event"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PartIngest {
            user: (!request.user.is_empty()).then(|| request.user.clone()),
            fields: Vec::with_capacity(events.len()),
            events,
            increments: 0,
        })
    }

    /// Applies chunks until `deadline` (at least one); the answer once
    /// every event was applied.
    pub fn step(&mut self, ctx: &Context, deadline: std::time::Instant) -> Result<Option<Head>> {
        let settings = config::current();
        let view = cluster::view(ctx, true)?;
        let mut store = RedisStore::for_user(ctx, &settings.keys, self.user.as_deref())?;
        let now = now_ms();
        let mut longest = std::time::Duration::ZERO;
        while !self.events.is_empty() {
            let at = std::time::Instant::now();
            let rest = self.events.split_off(PART_CHUNK.min(self.events.len()));
            let chunk = std::mem::replace(&mut self.events, rest);
            let indices: Vec<usize> = chunk.iter().map(|(i, _)| *i).collect();
            let parsed: Parsed = chunk.iter().map(|(_, e)| Ok(e.clone())).collect();
            match ingest::run(&mut store, parsed, false, &settings, now, Some(&view)) {
                Ok(report) => self.done(&report, &indices),
                // The chunk failed as a whole (nothing of it written): each
                // event alone, so one bad event does not refuse the others.
                Err(_) => {
                    for (index, event) in chunk {
                        let one = vec![Ok(event)];
                        match ingest::run(&mut store, one, false, &settings, now, Some(&view)) {
                            Ok(report) => self.done(&report, &[index]),
                            Err(e) => {
                                let text = e.reply_text();
                                let why = text.strip_prefix("ERR ").unwrap_or(&text);
                                self.fields.push(format!("{index} r {why}").into_bytes());
                            }
                        }
                    }
                }
            }
            // Another chunk only when one as long as the longest so far
            // still ends by the deadline.
            longest = longest.max(at.elapsed());
            if std::time::Instant::now() + longest >= deadline {
                break;
            }
        }
        dedup_upkeep::after_write(&mut store);
        if !self.events.is_empty() {
            return Ok(None);
        }
        Ok(Some(Head {
            error: None,
            fields: std::mem::take(&mut self.fields),
            slots: SlotSet::default(),
            examined: self.increments as u64,
            bad: None,
        }))
    }

    /// Ends the part without applying the events left: each is answered
    /// rejected with `why` (a retryable reason: they were not applied),
    /// beside the outcomes of those applied already.
    pub fn stop(&mut self, why: &str) -> Head {
        for (index, _) in self.events.drain(..) {
            self.fields.push(format!("{index} r {why}").into_bytes());
        }
        Head {
            error: None,
            fields: std::mem::take(&mut self.fields),
            slots: SlotSet::default(),
            examined: self.increments as u64,
            bad: None,
        }
    }

    fn done(&mut self, report: &Report, indices: &[usize]) {
        count(report);
        self.increments += report.increments;
        self.fields.extend(encode_outcomes(report, indices));
    }
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
