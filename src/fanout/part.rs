//! A master's part of a cluster-wide query: run with the ordinary engine,
//! in slices, as the user who asked, then answered frame by frame.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use redis_module::Context;
use rustc_hash::FxHashMap;

use super::ingest::PartIngest;
use super::transfer::{self, Bytes, Source};
use crate::budget::{PART_INGEST_SLICE, QUERY_SLICE};
use crate::config;
use crate::engine::{Asked, Job};
use crate::index_upkeep;
use crate::metric_registry::{self, current_registry};
use crate::redis::cluster;
use crate::redis::context::Hold;
use crate::redis::reader::Reader;
use crate::redis::slices::{self, Sliced, Step};
use crate::stats;
use listingstats_core::fanout::{
    group_len, put_group, Bad, Direction, Frame, Head, PartKind, Request, SlotSet,
};
use listingstats_core::query::{parse_query_at, parse_top_at, At, Listings};
use listingstats_core::registry_copy::from_args;
use listingstats_core::{Error, Result};

type Key = (String, u64);

resident! {
    /// Requests arriving in several frames.
    static ARRIVING: RefCell<FxHashMap<Key, Vec<u8>>> = RefCell::default();
    /// Parts whose coordinator gave up (timeout, another part failed).
    static CANCELLED: RefCell<FxHashMap<Key, Instant>> = RefCell::default();
}

/// A frame of a request from coordinator `sender`.
pub fn on_request(ctx: &Context, sender: &str, frame: &Frame<'_>) {
    let key = (sender.to_string(), frame.id);
    let whole = ARRIVING.with(|a| {
        let mut a = a.borrow_mut();
        a.entry(key.clone())
            .or_default()
            .extend_from_slice(frame.payload);
        if frame.last {
            a.remove(&key)
        } else {
            None
        }
    });
    let Some(bytes) = whole else {
        return;
    };
    stats::CLUSTER_PARTS.add(1);
    match Request::decode(&bytes) {
        Some(request) => slices::start(
            ctx,
            PartWork {
                coordinator: key.0,
                id: key.1,
                stage: Stage::Start(Box::new(request)),
            },
        ),
        None => answer_error(
            ctx,
            &key.0,
            key.1,
            "ERR a node sent a damaged request".into(),
        ),
    }
}

/// The coordinator no longer waits for part `id`.
pub fn cancel(sender: &str, id: u64) {
    ARRIVING.with(|a| a.borrow_mut().remove(&(sender.to_string(), id)));
    CANCELLED.with(|c| {
        let mut c = c.borrow_mut();
        c.retain(|_, at| at.elapsed() < Duration::from_secs(600));
        c.insert((sender.to_string(), id), Instant::now());
    });
}

fn cancelled(key: &Key) -> bool {
    CANCELLED.with(|c| c.borrow_mut().remove(key).is_some())
}

/// Answers part `id` with a head alone (an error, or a part whose whole
/// answer is its head).
fn answer_head(ctx: &Context, coordinator: &str, id: u64, head: &Head) {
    let mut bytes = Vec::new();
    head.encode(&mut bytes);
    let source = Box::new(Bytes { bytes, at: 0 });
    transfer::start(ctx, coordinator, Direction::Answer, id, source);
}

fn answer_error(ctx: &Context, coordinator: &str, id: u64, text: String) {
    answer_head(ctx, coordinator, id, &Head::failed(text));
}

enum Stage {
    Start(Box<Request>),
    /// An INGEST part, applied chunk by chunk.
    Ingesting(Box<PartIngest>),
    Running {
        job: Box<Job>,
        kind: PartKind,
        user: Vec<u8>,
        /// What this node owned when the part started (2 KB: boxed).
        slots: Box<SlotSet>,
    },
    Over,
}

struct PartWork {
    coordinator: String,
    id: u64,
    stage: Stage,
}

/// The slots this node owns now, read afresh.
fn my_slots(ctx: &Context) -> Result<SlotSet> {
    let view = cluster::view(ctx, true)?;
    Ok(view.slots_of(view.me()))
}

fn reader_for<'c>(ctx: &'c Context, user: &[u8]) -> Result<Reader<'c>> {
    Reader::for_user(ctx, Some(user)).map_err(|_| {
        let addr = cluster::view(ctx, false)
            .map(|v| v.addr(v.me()).to_string())
            .unwrap_or_default();
        Error::invalid(format!(
            "user {} does not exist or is disabled on node {addr}: a cluster-wide query runs as its user on every master",
            listingstats_core::error::quote(user)
        ))
    })
}

/// Another master's metric registry: adopted if newer, and the query
/// cache told.
fn adopt(ctx: &Context, request: &Request) -> Result<()> {
    let (version, defs) = from_args(&request.args)
        .ok_or_else(|| Error::invalid("a node sent a damaged metric registry"))?;
    if metric_registry::adopt(ctx, &version, &defs)? {
        index_upkeep::metrics_changed(ctx);
    }
    Ok(())
}

/// Plans the part as the command would, with the coordinator's share of
/// the listings in place of the set.
fn begin(ctx: &Context, request: Request) -> Result<Stage> {
    let settings = config::current();
    let reader = reader_for(ctx, &request.user)?;
    let slots = my_slots(ctx)?;
    let registry = current_registry(ctx, &settings.keys)?;
    let args: Vec<&[u8]> = request.args.iter().map(Vec::as_slice).collect();
    // The coordinator sent absolute bounds: the clock matters not.
    let at = At {
        now_secs: crate::redis::context::now_ms().div_euclid(1000),
        tz: settings.timezone,
    };
    let share = request
        .listings
        .as_ref()
        .map(|ids| Listings::Ids(ids.iter().map(Vec::as_slice).collect()));
    let mut asked = match request.kind {
        PartKind::Query => Asked::query(parse_query_at(&args, &at)?, &registry)?,
        PartKind::Top => Asked::top(parse_top_at(&args, &at)?, &registry)?,
        PartKind::Registry | PartKind::Ingest => {
            return Err(Error::invalid("internal: not a query"))
        }
    };
    if let Some(share) = share {
        asked.listings = share;
    }
    let job = asked.job(ctx, &reader, settings, registry)?;
    Ok(Stage::Running {
        job: Box::new(job.into_part()),
        kind: request.kind,
        user: request.user,
        slots: Box::new(slots),
    })
}

/// The answer of a complete part: its head, then its groups, a frame at a
/// time (the job stays alive until the last frame is made).
struct Answer {
    head: Option<Vec<u8>>,
    groups: Groups,
    next: usize,
}

enum Groups {
    /// QUERY: the job's groups, in output order.
    Job { job: Box<Job>, order: Vec<usize> },
    /// TOP: the part's winners, with sums laid out as the plan's.
    Top(Vec<(Vec<u8>, Vec<i64>)>),
}

impl Groups {
    fn len(&self) -> usize {
        match self {
            Groups::Job { order, .. } => order.len(),
            Groups::Top(rows) => rows.len(),
        }
    }
}

impl Source for Answer {
    fn next_frame(&mut self, max: usize) -> (Vec<u8>, bool) {
        let mut out = self.head.take().unwrap_or_default();
        let total = self.groups.len();
        while self.next < total {
            let (day, listing, sums) = match &self.groups {
                Groups::Job { job, order } => job.part_result().0.group_record(order[self.next]),
                Groups::Top(rows) => {
                    let (listing, sums) = &rows[self.next];
                    (i32::MIN, Some(listing.as_slice()), sums.as_slice())
                }
            };
            if !out.is_empty() && out.len() + group_len(listing, sums.len()) > max {
                break;
            }
            put_group(&mut out, day, listing, sums);
            self.next += 1;
        }
        (out, self.next == total)
    }
}

/// The part is complete: checks that this node kept its slots throughout,
/// then starts its answer.
fn answer(ctx: &Context, mut job: Box<Job>, kind: PartKind, slots: SlotSet) -> Result<Answer> {
    if my_slots(ctx)? != slots {
        return Err(Error::Cluster(
            "TRYAGAIN this node's slots changed while its part ran".into(),
        ));
    }
    let ranked = job.take_ranked();
    let (agg, plan, examined) = job.part_result();
    let mut head = Head {
        error: None,
        fields: plan.names().to_vec(),
        slots,
        examined,
        bad: None,
    };
    let groups = match (kind, ranked) {
        (PartKind::Query, _) => {
            let order = agg.order();
            Groups::Job { job, order }
        }
        (PartKind::Top, Some(picker)) => {
            if let Some((listing, numerator, denominator)) = picker.first_bad(agg, plan) {
                head.bad = Some(Bad {
                    listing: listing.to_vec(),
                    numerator,
                    denominator,
                });
                Groups::Top(Vec::new())
            } else {
                let (num_at, den_at) = plan
                    .first_slots()
                    .ok_or_else(|| Error::invalid("TOP needs a metric"))?;
                // As wide as the aggregation: with COMPARE, the compared
                // period's sums in the second half.
                let (width, half) = (agg.width(), plan.width());
                let rows = picker
                    .finish(agg, plan)?
                    .into_iter()
                    .map(|r| {
                        let mut sums = vec![0; width];
                        sums[den_at] = r.row.denominator;
                        sums[num_at] = r.row.numerator;
                        if let Some(p) = r.row.previous {
                            sums[den_at + half] = p.denominator;
                            sums[num_at + half] = p.numerator;
                        }
                        (r.row.listing.unwrap_or_default(), sums)
                    })
                    .collect();
                Groups::Top(rows)
            }
        }
        (PartKind::Top, None) | (PartKind::Registry | PartKind::Ingest, _) => {
            return Err(Error::invalid("internal: a part without its result"))
        }
    };
    let mut bytes = Vec::new();
    head.encode(&mut bytes);
    Ok(Answer {
        head: Some(bytes),
        groups,
        next: 0,
    })
}

impl PartWork {
    fn advance(&mut self, ctx: &Context, deadline: Instant) -> Result<Step> {
        match std::mem::replace(&mut self.stage, Stage::Over) {
            Stage::Start(request) if request.kind == PartKind::Ingest => {
                self.stage = Stage::Ingesting(Box::new(PartIngest::new(&request)?));
                self.advance(ctx, deadline)
            }
            Stage::Ingesting(mut part) => match part.step(ctx, deadline) {
                Ok(Some(head)) => {
                    answer_head(ctx, &self.coordinator, self.id, &head);
                    Ok(Step::Done)
                }
                Ok(None) => {
                    self.stage = Stage::Ingesting(part);
                    Ok(Step::More)
                }
                // What earlier slices applied is answered as applied; the
                // rest is refused with why.
                Err(e) => {
                    let text = e.reply_text();
                    let head = part.stop(text.strip_prefix("ERR ").unwrap_or(&text));
                    answer_head(ctx, &self.coordinator, self.id, &head);
                    Ok(Step::Done)
                }
            },
            Stage::Start(request) if request.kind == PartKind::Registry => {
                adopt(ctx, &request)?;
                let ok = Head {
                    error: None,
                    fields: Vec::new(),
                    slots: SlotSet::default(),
                    examined: 0,
                    bad: None,
                };
                answer_head(ctx, &self.coordinator, self.id, &ok);
                Ok(Step::Done)
            }
            Stage::Start(request) => {
                // Planned and, when it fits, run to its end in this slice.
                self.stage = begin(ctx, *request)?;
                self.advance(ctx, deadline)
            }
            Stage::Running {
                mut job,
                kind,
                user,
                slots,
            } => {
                // Its turn under max-query-memory, as any query's.
                let waits = !job.admitted()?;
                let reader = reader_for(ctx, &user)?;
                if waits || !job.part_step(ctx, &reader, deadline)? {
                    let step = if waits { Step::Wait } else { Step::More };
                    self.stage = Stage::Running {
                        job,
                        kind,
                        user,
                        slots,
                    };
                    return Ok(step);
                }
                let answer = answer(ctx, job, kind, *slots)?;
                transfer::start(
                    ctx,
                    &self.coordinator,
                    Direction::Answer,
                    self.id,
                    Box::new(answer),
                );
                Ok(Step::Done)
            }
            Stage::Over => Ok(Step::Done),
        }
    }
}

impl Sliced for PartWork {
    fn slice_len(&self) -> Duration {
        match &self.stage {
            Stage::Ingesting(_) => PART_INGEST_SLICE,
            Stage::Start(r) if r.kind == PartKind::Ingest => PART_INGEST_SLICE,
            _ => QUERY_SLICE,
        }
    }

    fn what(&self) -> &'static str {
        "a cluster-wide query's part"
    }

    fn run(&mut self, ctx: &Context, deadline: Instant) -> Step {
        if cancelled(&(self.coordinator.clone(), self.id)) {
            return Step::Done;
        }
        stats::SLICES.add(1);
        match self.advance(ctx, deadline) {
            Ok(step) => step,
            Err(e) => {
                answer_error(ctx, &self.coordinator, self.id, e.reply_text());
                Step::Done
            }
        }
    }

    fn failed(&mut self, ctx: &Context) {
        answer_error(
            ctx,
            &self.coordinator,
            self.id,
            "ERR listingstats internal error on another node, see its log".into(),
        );
    }

    fn ready(&self) -> bool {
        match &self.stage {
            Stage::Running { job, .. } => job.could_start(),
            _ => true,
        }
    }

    /// INGEST parts and metric registries write; query parts only read
    /// (they run during a write pause, as native reads do).
    fn writes(&self) -> bool {
        match &self.stage {
            Stage::Ingesting(_) => true,
            Stage::Start(r) => matches!(r.kind, PartKind::Ingest | PartKind::Registry),
            Stage::Running { .. } | Stage::Over => false,
        }
    }

    /// A part waits while writes are paused (its coordinator waits up to
    /// `cluster-timeout`, then cancels it); on a node that is no longer a
    /// master, the events not applied are answered `TRYAGAIN`, which the
    /// coordinator sends again to their new owner.
    fn held(&mut self, ctx: &Context, why: Hold) -> Step {
        if cancelled(&(self.coordinator.clone(), self.id)) {
            return Step::Done;
        }
        if why != Hold::Replica {
            return Step::Wait;
        }
        let head = match std::mem::replace(&mut self.stage, Stage::Over) {
            Stage::Ingesting(mut part) => part.stop(&not_master(ctx)),
            Stage::Start(request) if request.kind == PartKind::Ingest => {
                match PartIngest::new(&request) {
                    Ok(mut part) => part.stop(&not_master(ctx)),
                    Err(e) => Head::failed(e.reply_text()),
                }
            }
            // A replica follows its own master's registry.
            _ => Head {
                error: None,
                fields: Vec::new(),
                slots: SlotSet::default(),
                examined: 0,
                bad: None,
            },
        };
        answer_head(ctx, &self.coordinator, self.id, &head);
        Step::Done
    }
}

/// Why a part's events were not applied on a node demoted meanwhile.
fn not_master(ctx: &Context) -> String {
    let addr = cluster::view(ctx, false)
        .map(|v| v.addr(v.me()).to_string())
        .unwrap_or_default();
    format!("TRYAGAIN node {addr} is no longer a master; not applied there")
}
