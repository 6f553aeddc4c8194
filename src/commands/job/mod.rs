//! Running QUERY and TOP: which day hashes to read, reading them, replying.
//!
//! A job's work is a list of cells (day, listing), each one day hash to
//! read: an explicit listing set gives days × listings (a grid, never
//! listed); `*` gives what the per-day index holds for the range, copied
//! out by a planner a bounded number at a time. A job goes through phases:
//! planning and ordering (`*` only), reading ([`read`]: from the query cache
//! or the hashes), rendering ([`render`]). It does what fits in
//! [`AT_ONCE`] inside its command; the rest runs in slices of about
//! [`SLICE`] from a timer with only its own client blocked, so every other
//! client is served between slices. Inside MULTI/EXEC or a script it runs to
//! the end at once.
//!
//! Between slices other clients may write. Each day hash is read whole in
//! one slice and each cell once; a day hash created meanwhile is counted
//! only if the planner had not passed it, one changed meanwhile is read as
//! it is when its slice comes.
//!
//! The reply is written in slices too (a thread-safe context bound to the
//! blocked client collects it, and Redis sends it on unblock). Cells are
//! read in output order where rows follow them (DAY, LISTING), so rows come
//! out of the aggregator already sorted.
//!
//! With `star-source scan`, `*` takes the simple path instead: one scan of
//! the whole keyspace, inside the command.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use redis_module::{Context, RedisValue};

use crate::index_feed;
use crate::redis::blocked::BlockedReply;
use crate::redis::cluster;
use crate::redis::context::{caller_name, can_block, is_resp3, select_db, selected_db};
use crate::redis::reply::Reply;
use crate::redis::slices::{self, Sliced, Step};
use crate::redis::store::Reader;
use crate::stats;
use listingstats_core::day_index::ListingNames;
use listingstats_core::day_index::{Planned, Planner};
use listingstats_core::metrics::Metric;
use listingstats_core::query::{
    check_cells, Aggregator, CellOrdering, Cells, FieldPlan, Format, GroupBy, Listings, Rank,
    Ranked, TopPicker,
};
use listingstats_core::settings::{Settings, StarSource};

mod read;
mod render;

use listingstats_core::{Error, Result};
use read::{cache_for, CacheRead};

/// How long one slice may hold the server.
pub const SLICE: Duration = Duration::from_millis(2);
/// How long a job reads inside its command before it continues in slices:
/// cached cells cost ~0.1 µs, so most queries end here, with no timer
/// round trip; a cold one reads ~2,000 hashes first.
const AT_ONCE: Duration = Duration::from_millis(3);
/// Replies of at most this many rows are written inside the command.
const RENDER_AT_ONCE: usize = 4096;

/// What the reply is.
pub enum Finish {
    Query(Format),
    Top {
        n: usize,
        min_denominator: i64,
        rank: Rank,
    },
}

/// The days and listings a query covers.
pub struct Span<'a> {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub listings: &'a Listings<'a>,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A `*` job copying its cells out of the index, in steps (or waiting
    /// for the index to be rebuilt).
    Planning,
    /// Putting a `*` job's cells in output order, in steps.
    Ordering,
    /// Reading its cells.
    Reading,
    /// Writing its reply.
    Rendering,
}

pub struct Job {
    start: NaiveDate,
    end: NaiveDate,
    phase: Phase,
    settings: Arc<Settings>,
    plan: FieldPlan,
    group: GroupBy,
    finish: Finish,
    /// Listing ids the cells refer to.
    names: ListingNames,
    cells: Cells,
    next: usize,
    /// `*` passes over keys the user may not read; an explicit set fails.
    skip_unreadable: bool,
    agg: Aggregator,
    /// Groups in output order, once reading is done (TOP: its rows).
    order: Option<Vec<usize>>,
    top_rows: Vec<Ranked>,
    /// TOP's ranking while it runs (a chunk of groups per step).
    picker: Option<TopPicker>,
    /// Whether the keys examined were counted in INFO yet.
    counted: bool,
    /// Whether the client speaks RESP3 (real doubles) or RESP2.
    resp3: bool,
    /// Groups rendered so far, rows written so far, the JSON text so far.
    next_group: usize,
    rendered: usize,
    json: Vec<u8>,
    examined: u64,
    values: Vec<i64>,
    /// The database the job reads.
    db: i32,
    /// Where its terms are in the cache, when the cache is on.
    cache: Option<CacheRead>,
    /// A `*` job's planning, while under way.
    planner: Option<Planner>,
    /// A `*` job's ordering of its cells, while under way.
    ordering: Option<CellOrdering>,
}

impl Drop for Job {
    fn drop(&mut self) {
        // A job abandoned while planning (its client gone, an error)
        // unpins the index.
        if let Some(planner) = &mut self.planner {
            index_feed::release(planner);
        }
    }
}

/// Groups an answer makes room for at once (see `Aggregator::reserve`):
/// an explicit set's cells may be millions, mostly absent.
const RESERVE_MAX: usize = 1 << 20;

/// Cells a planning step copies out of the index (about 1 ms).
const PLAN_STEP: usize = 2048;

/// Whether reading the cells in output order pays: rows per day hash or
/// per listing come out in the order they were read, with no sort at the
/// end. DATE and TOTAL have a few groups, and TOP ranks without ordering,
/// so their cells are read as they come: sorting 600,000 listing ids of a
/// big day would hold the server for a second.
fn rows_follow_cells(group: GroupBy, finish: &Finish) -> bool {
    !matches!(finish, Finish::Top { .. }) && matches!(group, GroupBy::Day | GroupBy::Listing)
}

/// On Redis Cluster a node answers for its own listings only: every listing
/// named must be served here (else the server's own `MOVED`/`TRYAGAIN`),
/// and `*` (this node's listings) waits while a slot is moving in or out,
/// since its day hashes are then split between two nodes.
fn check_cluster(ctx: &Context, span: &Span<'_>) -> Result<()> {
    let Some(view) = cluster::view_if_enabled(ctx, true)? else {
        return Ok(());
    };
    match span.listings {
        Listings::Ids(ids) => ids.iter().try_for_each(|id| view.check_listing(id)),
        Listings::All => match cluster::split_slot(ctx, &view) {
            Some(slot) => Err(Error::Cluster(format!(
                "TRYAGAIN slot {slot} is being resharded on this node; '*' answers when it has moved"
            ))),
            None => Ok(()),
        },
    }
}

impl Job {
    /// Plans a job: the cells, checked against max-query-cells before any
    /// key is read.
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        ctx: &Context,
        reader: &Reader<'_>,
        settings: Arc<Settings>,
        registry: Vec<Metric>,
        plan: FieldPlan,
        span: &Span<'_>,
        group: GroupBy,
        finish: Finish,
    ) -> Result<Job> {
        check_cluster(ctx, span)?;
        let mut names = ListingNames::default();
        let mut cells = Cells::default();
        let skip_unreadable = matches!(span.listings, Listings::All);
        match span.listings {
            Listings::Ids(ids) => {
                check_cells(span.start, span.end, ids.len(), settings.max_query_cells)?;
                names = ids.iter().copied().collect();
                // Day by day, listings in listing order: the output order.
                cells = Cells::grid(span.start, span.end, &names);
            }
            // The scan path finds its keys as it goes (see `scan`); the
            // index path fills its cells below.
            Listings::All => {}
        }
        let values = vec![0; plan.width()];
        let mut agg = Aggregator::new(&plan, group);
        agg.reserve(cells.len().min(RESERVE_MAX), names.len());
        let from_index =
            matches!(span.listings, Listings::All) && settings.star_source == StarSource::Index;
        let scans = matches!(span.listings, Listings::All) && !from_index;
        let cache = if scans {
            None
        } else {
            cache_for(ctx, settings.cache, registry, &plan)?
        };
        let mut job = Job {
            start: span.start,
            end: span.end,
            phase: if from_index {
                Phase::Planning
            } else {
                Phase::Reading
            },
            settings,
            plan,
            group,
            finish,
            names,
            cells,
            next: 0,
            skip_unreadable,
            agg,
            order: None,
            top_rows: Vec::new(),
            picker: None,
            counted: false,
            resp3: is_resp3(ctx),
            next_group: 0,
            rendered: 0,
            json: Vec::new(),
            examined: 0,
            values,
            db: selected_db(ctx),
            cache,
            planner: None,
            ordering: None,
        };
        if from_index {
            job.plan_from_index(ctx, reader, Some(Instant::now() + SLICE))?;
        }
        Ok(job)
    }

    /// Takes a `*` job's cells from the index, [`PLAN_STEP`] at a time
    /// until `deadline` (`None`: to the end): `Ok(false)` while there is
    /// more, or while the index is being rebuilt (the job waits for it).
    /// Keys the caller may not read do not exist for a `*` query, in its
    /// limits and its errors too.
    fn plan_from_index(
        &mut self,
        ctx: &Context,
        reader: &Reader<'_>,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        let max = usize::try_from(self.settings.max_query_cells).unwrap_or(0);
        let (db, start, end) = (selected_db(ctx), self.start, self.end);
        let planner = self
            .planner
            .get_or_insert_with(|| Planner::new(db, start, end));
        loop {
            match index_feed::plan_step(ctx, planner, PLAN_STEP) {
                None => return Ok(false),
                Some(Planned::Done) => break,
                Some(Planned::More) => {
                    if planner.cells.len() > max && reader.reads_everything() {
                        return Err(Error::invalid(format!(
                            "query matches more than max-query-cells {max} day hashes"
                        )));
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(false);
                    }
                }
            }
        }
        let Some(planner) = self.planner.take() else {
            return Ok(false);
        };
        let (names, mut cells) = (planner.names, planner.cells);
        if cells.len() > max {
            // Over the limit only if the caller may read that many: keep
            // the readable cells (the usual case, an unrestricted user,
            // never pays for these checks).
            let scheme = &self.settings.keys;
            cells.retain(|&(day, at)| reader.may_read(&scheme.day_key(day, &names[at as usize])));
            if cells.len() > max {
                return Err(Error::invalid(format!(
                    "query matches {} day hashes, more than max-query-cells {max}",
                    cells.len()
                )));
            }
        }
        self.phase = if rows_follow_cells(self.group, &self.finish) {
            self.ordering = Some(CellOrdering::new(names.len(), cells.len()));
            Phase::Ordering
        } else {
            Phase::Reading
        };
        self.agg.reserve(cells.len().min(RESERVE_MAX), names.len());
        self.names = names;
        self.cells = Cells::List(cells);
        Ok(true)
    }

    /// Orders a `*` job's cells until `deadline` (`None`: to the end);
    /// `true` when they are in order.
    fn order(&mut self, deadline: Option<Instant>) -> bool {
        let Some(ordering) = &mut self.ordering else {
            self.phase = Phase::Reading;
            return true;
        };
        let Cells::List(cells) = &mut self.cells else {
            self.ordering = None;
            self.phase = Phase::Reading;
            return true;
        };
        loop {
            if ordering.step(&self.names, cells, PLAN_STEP) {
                self.ordering = None;
                self.phase = Phase::Reading;
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
        }
    }
}

/// Runs a job: at once, or in slices with the client blocked.
pub fn run(
    ctx: &Context,
    reader: &Reader<'_>,
    mut job: Job,
    span: &Span<'_>,
) -> Result<RedisValue> {
    if matches!(job.phase, Phase::Planning | Phase::Ordering) && !can_block(ctx) {
        // MULTI/EXEC or a script cannot wait: complete the rebuild (and
        // the planning) now.
        if job.phase == Phase::Planning {
            index_feed::finish_rebuild(ctx);
            job.plan_from_index(ctx, reader, None)?;
        }
        job.order(None);
    }
    if job.phase == Phase::Ordering {
        job.order(Some(Instant::now() + AT_ONCE));
    }
    if matches!(span.listings, Listings::All) && job.settings.star_source == StarSource::Scan {
        job.scan(reader, span)?;
    } else if job.phase != Phase::Reading {
        // Planning or ordering a `*` job goes on in slices.
        return start_slices(ctx, job);
    } else if !can_block(ctx) {
        let fields = job.fields(reader);
        job.step(reader, &fields, None)?;
    } else {
        // Read for up to AT_ONCE; what is left (cells, or a long reply)
        // continues in slices, the client blocked.
        let fields = job.fields(reader);
        if !job.step(reader, &fields, Some(Instant::now() + AT_ONCE))? {
            return start_slices(ctx, job);
        }
        if job.agg.len() * job.plan.metrics.len() > RENDER_AT_ONCE {
            job.phase = Phase::Rendering;
            return start_slices(ctx, job);
        }
    }
    job.render(&mut Reply::of(ctx), None);
    Ok(RedisValue::NoReply)
}

/// A job running in slices, its client blocked until the reply is done.
struct Running {
    blocked: BlockedReply,
    db: i32,
    user: Option<Vec<u8>>,
    job: Job,
}

fn start_slices(ctx: &Context, job: Job) -> Result<RedisValue> {
    let blocked = BlockedReply::block(ctx)
        .ok_or_else(|| Error::invalid("cannot block the client for a long query"))?;
    slices::start(
        ctx,
        Running {
            blocked,
            db: selected_db(ctx),
            user: caller_name(ctx),
            job,
        },
    );
    stats::SLICED_QUERIES.add(1);
    Ok(RedisValue::NoReply)
}

impl Running {
    /// One slice of whatever phase the job is in.
    fn advance(&mut self, ctx: &Context, deadline: Instant) -> Result<Step> {
        let job = &mut self.job;
        match job.phase {
            Phase::Planning => {
                // The index's own slices rebuild it; this one checks on it.
                let reader = Reader::for_user(ctx, self.user.as_deref())?;
                job.plan_from_index(ctx, &reader, Some(deadline))?;
            }
            Phase::Ordering => {
                job.order(Some(deadline));
            }
            Phase::Reading => {
                let reader = Reader::for_user(ctx, self.user.as_deref())?;
                let fields = job.fields(&reader);
                if job.step(&reader, &fields, Some(deadline))? {
                    // Rows are made in the next slice, rendering after them.
                    job.phase = Phase::Rendering;
                }
            }
            Phase::Rendering => {
                if job.render(&mut self.blocked.reply(), Some(deadline)) {
                    return Ok(Step::Done);
                }
            }
        }
        Ok(Step::More)
    }
}

impl Sliced for Running {
    fn slice_len(&self) -> Duration {
        SLICE
    }

    fn what(&self) -> &'static str {
        "a query slice"
    }

    fn run(&mut self, ctx: &Context, deadline: Instant) -> Step {
        if self.blocked.client_gone() {
            return Step::Done; // Nobody to answer: stop reading.
        }
        stats::SLICES.add(1);
        select_db(ctx, self.db);
        // Counted as the blocked command's time (SLOWLOG, latency).
        let measuring = self.blocked.measure();
        let step = self.advance(ctx, deadline);
        drop(measuring);
        match step {
            Ok(step) => step,
            Err(e) => {
                stats::ERRORS.add(1);
                self.blocked.reply().error(&e.reply_text());
                Step::Done
            }
        }
    }

    fn failed(&mut self, _ctx: &Context) {
        stats::ERRORS.add(1);
        self.blocked
            .reply()
            .error("ERR listingstats internal error, see the server log");
    }
}
