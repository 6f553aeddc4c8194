//! The coordinator of a cluster-wide QUERY or TOP: asks the masters,
//! waits for every part (at most `cluster-timeout`), checks that the
//! parts covered each slot once, merges them and renders the answer.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use redis_module::{Context, RedisValue};
use rustc_hash::FxHashMap;

use super::transfer::{self, Bytes};
use crate::budget::{MERGE_STEP, QUERY_SLICE};
use crate::engine::{self, Asked, Finish, Job};
use crate::redis::blocked::BlockedReply;
use crate::redis::cluster;
use crate::redis::context::{caller_name, is_resp3};
use crate::redis::slices::{self, Sliced, Step};
use crate::share::Slot;
use crate::stats;
use listingstats_core::cluster::{key_slot, ClusterView};
use listingstats_core::date::day_string;
use listingstats_core::fanout::{
    coverage, first_bad, split_ids, split_star, Coverage, Direction, Frame, Kind, Merger,
    PartAnswer, PartKind, Request,
};
use listingstats_core::query::span::utc_hour_bound;
use listingstats_core::query::When;
use listingstats_core::query::{
    check_cells, not_a_proportion, Aggregator, FieldPlan, GroupBy, Listings,
};
use listingstats_core::settings::Settings;
use listingstats_core::{Error, Result};

/// Whether a query must be answered cluster-wide: on a cluster, `*`
/// unless this master owns every slot, and a set with a listing this node
/// does not serve. A set served here (or being resharded here, which the
/// local path refuses with `TRYAGAIN`) is answered locally.
pub fn needed(ctx: &Context, listings: &Listings<'_>) -> Result<bool> {
    if !cluster::enabled() {
        return Ok(false);
    }
    let view = cluster::view(ctx, false)?;
    Ok(match listings {
        Listings::All => (0..16384u16).any(|s| view.owner(s) != Some(view.me())),
        Listings::Ids(ids) => ids.iter().any(|id| view.elsewhere(id)),
    })
}

/// One master's part, as the coordinator sees it.
struct Part {
    node: String,
    addr: String,
    listings: Option<Vec<Vec<u8>>>,
    answer: Option<PartAnswer>,
    done: bool,
}

/// A cluster-wide query waiting for its parts.
struct Gather {
    blocked: BlockedReply,
    request: Request,
    ids: Option<Vec<Vec<u8>>>,
    settings: Arc<Settings>,
    plan: FieldPlan,
    group: GroupBy,
    finish: Finish,
    span: (NaiveDate, NaiveDate),
    when: When,
    resp3: bool,
    parts: Vec<Part>,
    /// Asked again after the slots moved under the previous attempt.
    attempt: u32,
    started: Instant,
    /// Identical calls that may take the merged answer (`crate::share`).
    share: Option<Slot>,
}

resident! {
    static WAITING: RefCell<FxHashMap<u64, Gather>> = RefCell::default();
    /// Queries whose requests go out at the next timer pass, with the
    /// slots they were planned on.
    static OPEN: RefCell<FxHashMap<u64, (Gather, Rc<ClusterView>)>> = RefCell::default();
}

/// Attempts after the first when slots moved while a query ran; then the
/// client gets `TRYAGAIN`.
const RETRIES: u32 = 2;

/// Queries waiting for parts (INFO).
pub fn waiting() -> usize {
    WAITING.with(|w| w.borrow().len()) + OPEN.with(|o| o.borrow().len())
}

/// Blocks the client and asks every master concerned for its part.
pub fn start(
    ctx: &Context,
    raw: &[&[u8]],
    settings: Arc<Settings>,
    ask: Asked<'_>,
    share: Option<Slot>,
) -> Result<RedisValue> {
    if let Listings::Ids(ids) = &ask.listings {
        check_cells(ask.start, ask.end, ids.len(), settings.max_query_cells)?;
    }
    let user = caller_name(ctx)
        .ok_or_else(|| Error::invalid("a cluster-wide query needs a client with a user"))?;
    let view = cluster::view(ctx, true)?;
    let blocked = BlockedReply::block(ctx).ok_or_else(|| {
        Error::invalid(
            "a query of listings on several nodes cannot run inside MULTI or a script: \
             it waits for the other nodes",
        )
    })?;
    let gather = Gather {
        blocked,
        request: Request {
            kind: ask.kind,
            user,
            args: absolute_args(raw, &ask.when),
            listings: None,
        },
        ids: match &ask.listings {
            Listings::All => None,
            Listings::Ids(ids) => Some(ids.iter().map(|i| i.to_vec()).collect()),
        },
        settings,
        plan: ask.plan,
        group: ask.group,
        finish: ask.finish,
        span: (ask.start, ask.end),
        when: ask.when,
        resp3: is_resp3(ctx),
        parts: Vec::new(),
        attempt: 0,
        started: Instant::now(),
        share,
    };
    stats::CLUSTER_QUERIES.add(1);
    match &gather.share {
        // Identical calls that arrive before the requests go out join this
        // one (every master reads after they arrived, so each gets an
        // answer as fresh as its own): while identical calls come in
        // together (one was still under way), the requests go out from a
        // timer, once the server has read the calls that came with this
        // one; a call alone sends them at once (a timer costs it about a
        // millisecond).
        Some(slot) if slot.contended() => {
            slot.open();
            let id = super::next_id();
            OPEN.with(|o| o.borrow_mut().insert(id, (gather, view)));
            ctx.create_timer(Duration::ZERO, dispatch, id);
        }
        _ => launch(ctx, gather, &view),
    }
    Ok(RedisValue::NoReply)
}

/// Sends the requests of a query that identical calls could join until
/// now (see `start`).
fn dispatch(ctx: &Context, id: u64) {
    let Some((g, view)) = OPEN.with(|o| o.borrow_mut().remove(&id)) else {
        return;
    };
    if let Some(slot) = &g.share {
        slot.close();
    }
    launch(ctx, g, &view);
}

/// The arguments sent to the masters: as asked, with the range's bounds
/// made absolute (`today`, `now`, `-24h` mean the same on every master:
/// this node's clock), hours as UTC hours.
fn absolute_args(raw: &[&[u8]], when: &When) -> Vec<Vec<u8>> {
    let mut args: Vec<Vec<u8>> = raw.iter().map(|a| a.to_vec()).collect();
    let (start, end) = match when.span.hours {
        Some((from, to)) => (utc_hour_bound(from), utc_hour_bound(to - 1)),
        None => (day_string(when.span.start), day_string(when.span.end)),
    };
    if args.len() > 2 {
        args[1] = start.into_bytes();
        args[2] = end.into_bytes();
    }
    args
}

/// The parts of an attempt: each master concerned, and its listings.
fn parts_of(view: &ClusterView, ids: Option<&[Vec<u8>]>) -> Result<Vec<Part>> {
    let shares: Vec<(u16, Option<Vec<Vec<u8>>>)> = match ids {
        None => split_star(view)?
            .into_iter()
            .map(|s| (s.node, None))
            .collect(),
        Some(ids) => {
            let ids: Vec<&[u8]> = ids.iter().map(Vec::as_slice).collect();
            split_ids(view, &ids)?
                .into_iter()
                .map(|s| {
                    let owned = s
                        .listings
                        .map(|l| l.into_iter().map(<[u8]>::to_vec).collect());
                    (s.node, owned)
                })
                .collect()
        }
    };
    Ok(shares
        .into_iter()
        .map(|(node, listings)| Part {
            node: view.id(node).to_string(),
            addr: view.addr(node).to_string(),
            listings,
            answer: None,
            done: false,
        })
        .collect())
}

/// Sends an attempt's requests under a new id; on failure answers the
/// client at once.
fn launch(ctx: &Context, mut g: Gather, view: &ClusterView) {
    g.parts = match parts_of(view, g.ids.as_deref()) {
        Ok(parts) => parts,
        Err(e) => return fail(g, &e.reply_text()),
    };
    let id = super::next_id();
    for part in &g.parts {
        let request = Request {
            listings: part.listings.clone(),
            ..g.request.clone()
        };
        let source = Box::new(Bytes {
            bytes: request.encode(),
            at: 0,
        });
        if !transfer::start(ctx, &part.node, Direction::Request, id, source) {
            let text = unreachable_text(part);
            cancel(ctx, &g, id);
            return fail(g, &text);
        }
    }
    let timeout = Duration::from_millis(g.settings.cluster_timeout.max(1) as u64);
    WAITING.with(|w| w.borrow_mut().insert(id, g));
    ctx.create_timer(timeout, on_timeout, id);
}

fn unreachable_text(part: &Part) -> String {
    format!(
        "CLUSTERDOWN node {} ({}) cannot be reached over the cluster bus; nothing was answered",
        part.addr, part.node
    )
}

/// Replies `text` as an error (the client is unblocked when `g` drops).
fn fail(mut g: Gather, text: &str) {
    stats::ERRORS.add(1);
    g.blocked.reply().error(text);
    if let Some(slot) = g.share.take() {
        slot.fail(text);
    }
}

/// Tells the parts that have not answered that nobody waits any more.
fn cancel(ctx: &Context, g: &Gather, id: u64) {
    for part in g.parts.iter().filter(|p| !p.done) {
        transfer::stop(&part.node, Direction::Request, id);
        transfer::control(ctx, &part.node, Kind::Cancel, Direction::Answer, id, 0);
    }
}

fn on_timeout(ctx: &Context, id: u64) {
    let Some(g) = WAITING.with(|w| w.borrow_mut().remove(&id)) else {
        return;
    };
    cancel(ctx, &g, id);
    let late: Vec<String> = g
        .parts
        .iter()
        .filter(|p| !p.done)
        .map(|p| format!("{} ({})", p.addr, p.node))
        .collect();
    let text = format!(
        "TIMEOUT no answer from node {} within cluster-timeout {} ms; nothing was answered",
        late.join(", "),
        g.settings.cluster_timeout
    );
    stats::CLUSTER_TIMEOUTS.add(1);
    fail(g, &text);
}

/// The bus has no link to `node`, which a request of query `id` was for.
pub fn unreachable(ctx: &Context, node: &str, id: u64) {
    let Some(g) = WAITING.with(|w| w.borrow_mut().remove(&id)) else {
        return;
    };
    cancel(ctx, &g, id);
    let text = g
        .parts
        .iter()
        .find(|p| p.node == node)
        .map(unreachable_text)
        .unwrap_or_else(|| "CLUSTERDOWN a node cannot be reached".into());
    fail(g, &text);
}

/// A frame of a part's answer; `false` when no query waits for it.
pub fn on_answer(ctx: &Context, sender: &str, frame: &Frame<'_>) -> bool {
    if !WAITING.with(|w| w.borrow().contains_key(&frame.id)) {
        return false;
    }
    let complete = WAITING.with(|w| {
        let mut w = w.borrow_mut();
        let g = w.get_mut(&frame.id)?;
        let part = g.parts.iter_mut().find(|p| p.node == sender && !p.done)?;
        match &mut part.answer {
            None if frame.seq == 0 => match PartAnswer::first(frame.payload.to_vec()) {
                Some(answer) => part.answer = Some(answer),
                None => {
                    part.answer = Some(PartAnswer::first(damaged()).expect("a valid head"));
                    part.done = true;
                }
            },
            Some(answer) => answer.push(frame.payload.to_vec()),
            None => return None,
        }
        part.done |= frame.last;
        g.parts.iter().all(|p| p.done).then_some(())
    });
    if complete.is_some() {
        if let Some(g) = WAITING.with(|w| w.borrow_mut().remove(&frame.id)) {
            finish(ctx, g);
        }
    }
    true
}

fn damaged() -> Vec<u8> {
    let mut out = Vec::new();
    listingstats_core::fanout::Head::failed("ERR a node sent a damaged answer".into())
        .encode(&mut out);
    out
}

/// Whether a part's error says the slots moved (ask again).
fn moved(text: &str) -> bool {
    ["MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN"]
        .iter()
        .any(|p| text.starts_with(p))
}

/// Asks again with a fresh reading of the slots, or gives up with
/// `TRYAGAIN` (cluster clients retry it) after [`RETRIES`].
fn retry(ctx: &Context, mut g: Gather, why: &str) {
    if g.attempt >= RETRIES {
        let text = if why.starts_with("TRYAGAIN") || why.starts_with("CLUSTERDOWN") {
            why.to_string()
        } else {
            format!("TRYAGAIN slots moved while the query ran ({why}); retry")
        };
        return fail(g, &text);
    }
    g.attempt += 1;
    stats::CLUSTER_RETRIES.add(1);
    match cluster::view(ctx, true) {
        Ok(view) => launch(ctx, g, &view),
        Err(e) => fail(g, &e.reply_text()),
    }
}

/// Every part answered: check, then merge and render in slices.
fn finish(ctx: &Context, mut g: Gather) {
    let parts = std::mem::take(&mut g.parts);
    let mut answers = Vec::with_capacity(parts.len());
    for part in parts {
        let Some(answer) = part.answer else {
            return fail(g, "ERR a node's answer is missing");
        };
        if let Some(e) = &answer.head.error {
            if moved(e) {
                return retry(ctx, g, e);
            }
            return fail(g, e);
        }
        if let Some(ids) = &part.listings {
            if let Some(id) = ids
                .iter()
                .find(|id| !answer.head.slots.contains(key_slot(id)))
            {
                let why = format!("listing {} moved", String::from_utf8_lossy(id));
                return retry(ctx, g, &why);
            }
        }
        if answer.head.fields.as_slice() != g.plan.names() {
            let text = format!(
                "ERR metric definitions differ between nodes: node {} ({}) sums other counters than this node; \
                 define the metric again (METRIC SET) so every node has the same",
                part.addr, part.node
            );
            return fail(g, &text);
        }
        answers.push(answer);
    }
    if g.ids.is_none() {
        match coverage(answers.iter().map(|a| &a.head.slots)) {
            Coverage::Exact => {}
            Coverage::Missing(slot) => {
                return retry(ctx, g, &format!("slot {slot} was in no part"))
            }
            Coverage::Twice(slot) => {
                return retry(ctx, g, &format!("slot {slot} was in two parts"))
            }
        }
    }
    if let Some(bad) = first_bad(answers.iter().filter_map(|a| a.head.bad.as_ref())) {
        let e = not_a_proportion(&bad.listing, bad.numerator, bad.denominator);
        return fail(g, &e.reply_text());
    }
    let examined = answers.iter().map(|a| a.head.examined).sum();
    // Parts of DAY and LISTING come in output order and share no group:
    // merged in order, the answer needs no sort. TOP's parts are rankings.
    let ordered = g.request.kind == PartKind::Query
        && matches!(g.group, GroupBy::Day | GroupBy::Listing | GroupBy::Hour);
    let mut agg = Aggregator::new(&g.plan, g.group);
    if g.when.compare.is_some() {
        agg = agg.comparing();
    }
    let merger = Merger::new(answers, ordered, agg.width());
    stats::CLUSTER_WAIT_US.add(g.started.elapsed().as_micros() as u64);
    let mut merging = Merging {
        gather: Some(g),
        merger,
        agg: Some(agg),
        examined,
    };
    // The first slice now: most answers are merged and sent at once.
    if merging.run(ctx, Instant::now() + QUERY_SLICE) == Step::More {
        slices::start(ctx, merging);
    }
}

/// Adding the parts' groups up, a step at a time; then the engine renders.
struct Merging {
    gather: Option<Gather>,
    merger: Merger,
    agg: Option<Aggregator>,
    examined: u64,
}

impl Merging {
    fn advance(&mut self, ctx: &Context, deadline: Instant) -> Result<Step> {
        let agg = self
            .agg
            .as_mut()
            .ok_or_else(|| Error::invalid("internal: merged twice"))?;
        loop {
            if self.merger.step(agg, MERGE_STEP)? {
                break;
            }
            if Instant::now() >= deadline {
                return Ok(Step::More);
            }
        }
        let (Some(g), Some(agg)) = (self.gather.take(), self.agg.take()) else {
            return Ok(Step::Done);
        };
        let job = Job::merged(
            g.span,
            &g.when,
            g.settings,
            g.plan,
            g.group,
            g.finish,
            g.resp3,
            agg,
            self.examined,
        );
        let mut blocked = g.blocked;
        match job {
            Ok(mut job) => {
                job.share_with(g.share);
                engine::continue_blocked(ctx, blocked, job, deadline)
            }
            Err(e) => {
                stats::ERRORS.add(1);
                blocked.reply().error(&e.reply_text());
            }
        }
        Ok(Step::Done)
    }
}

impl Sliced for Merging {
    fn slice_len(&self) -> Duration {
        QUERY_SLICE
    }

    fn what(&self) -> &'static str {
        "a cluster-wide merge"
    }

    fn run(&mut self, ctx: &Context, deadline: Instant) -> Step {
        match self.advance(ctx, deadline) {
            Ok(step) => step,
            Err(e) => {
                if let Some(g) = self.gather.take() {
                    fail(g, &e.reply_text());
                }
                Step::Done
            }
        }
    }

    fn failed(&mut self, _ctx: &Context) {
        if let Some(g) = self.gather.take() {
            fail(g, "ERR listingstats internal error, see the server log");
        }
    }
}
