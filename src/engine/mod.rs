//! The query engine: runs a QUERY or TOP from its plan to its reply.
//!
//! A job's work is a list of cells (day, listing), each one day hash to
//! read: an explicit listing set gives days × listings (a grid, never
//! listed); `*` gives what the per-day index holds for the range, copied
//! out by a planner a bounded number at a time. A job is always in exactly
//! one [`State`], which owns what that state works on:
//!
//! ```text
//! Planning (`*`) -> Ordering (`*`, rows follow cells) -> Reading -> Ranking (TOP) -> Rendering
//!                                      Scanning (`star-source scan`) -^
//! ```
//!
//! [`plan`] (this file) makes the cells; [`order`](self) orders a `*`
//! job's; `read` reads them (from the query cache or the hashes); `render`
//! ranks (TOP) and writes the reply; `sliced` runs what is left after the
//! command in slices of [`QUERY_SLICE`], its client blocked, so every other
//! client is served between slices. Inside MULTI/EXEC or a script a job
//! runs to its end at once. Budgets are in [`crate::budget`].
//!
//! Between slices other clients may write. Each day hash is read whole in
//! one slice and each cell once; a day hash created meanwhile is counted
//! only if the planner had not passed it, one changed meanwhile is read as
//! it is when its slice comes.
//!
//! Cells are read in output order where rows follow them (DAY, LISTING), so
//! rows come out of the aggregator already sorted.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Datelike, NaiveDate};
use redis_module::{Context, RedisValue};

use crate::budget::{QUERY_AT_ONCE, QUERY_RENDER_AT_ONCE, QUERY_SLICE};
use crate::index_upkeep;
use crate::redis::cluster;
use crate::redis::context::{can_block, is_resp3, selected_db};
use crate::redis::reader::Reader;
use crate::redis::reply::Reply;
use listingstats_core::date::Tz;
use listingstats_core::day_index::ListingNames;
use listingstats_core::fanout::PartKind;
use listingstats_core::metrics::{resolve, Metric};
use listingstats_core::query::span::Periods;
use listingstats_core::query::{
    check_cells, Aggregator, Cells, FieldPlan, Format, GroupBy, Listings, QueryArgs, Rank, TopArgs,
    TopPicker, When,
};
use listingstats_core::settings::{Settings, StarSource};
use listingstats_core::{Error, Result};

mod hours;
pub mod inflight;
mod order;
mod read;
mod render;
mod sliced;

pub use sliced::continue_blocked;

use hours::HourReading;
use order::{Ordering, Planning};
use read::{cache_for, Reading};
use render::Renderer;

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

/// A parsed QUERY or TOP with its metrics planned: what a command, and a
/// master's part of a cluster-wide one, run.
pub struct Asked<'a> {
    pub kind: PartKind,
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// The range in full: hours, zone, comparison.
    pub when: When,
    pub listings: Listings<'a>,
    pub plan: FieldPlan,
    pub group: GroupBy,
    pub finish: Finish,
}

impl<'a> Asked<'a> {
    /// QUERY's parsed arguments, its metrics planned against `registry`.
    pub fn query(a: QueryArgs<'a>, registry: &[Metric]) -> Result<Asked<'a>> {
        Ok(Asked {
            kind: PartKind::Query,
            plan: FieldPlan::new(resolve(registry, &a.metrics)?)?,
            start: a.start,
            end: a.end,
            when: a.when,
            listings: a.listings,
            group: a.group,
            finish: Finish::Query(a.format),
        })
    }

    /// TOP's parsed arguments, its metric planned against `registry`.
    pub fn top(a: TopArgs<'a>, registry: &[Metric]) -> Result<Asked<'a>> {
        Ok(Asked {
            kind: PartKind::Top,
            plan: FieldPlan::new(resolve(registry, &[a.metric])?)?,
            start: a.start,
            end: a.end,
            when: a.when,
            listings: a.listings,
            group: GroupBy::Listing,
            finish: Finish::Top {
                n: a.n,
                min_denominator: a.min_denominator,
                rank: a.rank,
            },
        })
    }

    /// Plans the job that answers it here.
    pub fn job(
        self,
        ctx: &Context,
        reader: &Reader<'_>,
        settings: Arc<Settings>,
        registry: Vec<Metric>,
    ) -> Result<Job> {
        let span = Span {
            start: self.start,
            end: self.end,
            listings: &self.listings,
        };
        Job::plan(
            ctx,
            reader,
            settings,
            registry,
            self.plan,
            &span,
            &self.when,
            self.group,
            self.finish,
        )
    }
}

/// Where a job is; each state owns its data, so no impossible combination
/// can be written. One per job, moved once per step: its size (the
/// largest variant, ~640 bytes) does not matter.
#[allow(clippy::large_enum_variant)]
enum State {
    /// A `*` job copying its cells out of the index, in steps (or waiting
    /// for the index to be rebuilt).
    Planning(Planning),
    /// A `*` job putting its cells in output order, in steps.
    Ordering(Ordering),
    /// Reading its cells.
    Reading(Reading),
    /// Reading its hour keys (after its day hashes, if any).
    ReadingHours(HourReading),
    /// `star-source scan`: one scan of the whole keyspace, at once.
    Scanning,
    /// TOP ranking its groups, a chunk per step.
    Ranking(TopPicker),
    /// Writing the reply.
    Rendering(Renderer),
    /// The reply is complete (or the job failed).
    Done,
}

/// What a step of a job says.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// There is more to do; the deadline passed or a state ended.
    More,
    /// The reply is complete.
    Done,
}

/// A QUERY or TOP under way: what does not change while it runs, the sums
/// so far, and its [`State`].
pub struct Job {
    start: NaiveDate,
    end: NaiveDate,
    settings: Arc<Settings>,
    plan: FieldPlan,
    group: GroupBy,
    finish: Finish,
    /// `*` passes over keys the user may not read; an explicit set fails.
    skip_unreadable: bool,
    /// Whether the client speaks RESP3 (real doubles) or RESP2.
    resp3: bool,
    /// The database the job reads.
    db: i32,
    agg: Aggregator,
    /// Day hashes examined (INFO, and the JSON answer's `keys_examined`).
    examined: u64,
    state: State,
    /// Another node's part of a cluster-wide answer (see `crate::fanout`):
    /// the job stops after reading (QUERY) or ranking (TOP), and its sums
    /// are sent instead of a reply.
    part: bool,
    /// A part's TOP ranking, once every group is ranked.
    ranked: Option<TopPicker>,
    /// What it will hold at most, and its turn under `max-query-memory`.
    need: inflight::Need,
    /// When identical calls may take its answer: the recording of its
    /// reply, published when complete (see `crate::share`).
    share: Option<crate::share::Slot>,
    /// More than whole days of the module's zone: what is read from day
    /// hashes and hour keys, for which period and group (`None`: plain).
    periods: Option<Periods>,
    /// The hour keys to read once the day hashes are read.
    pending_hours: Option<HourReading>,
    /// The zone the answer's hours are written in.
    tz: Tz,
    /// A cell's values placed in the half of its period (COMPARE).
    scratch: Vec<i64>,
}

/// Bytes a job holds per cell it reads (its place in a `*` job's list,
/// and that list's ordering).
const CELL_BYTES: u64 = 16;
/// Bytes per group, beside its sums (its key, its place in the maps, its
/// listing's name).
const GROUP_BYTES: u64 = 64;
/// Bytes per row of the reply the server keeps until the client is
/// unblocked (RESP: the row's array, its names and numbers).
const ROW_BYTES: u64 = 96;

/// What a job answering `span` grouped by `group` holds at most while it
/// runs: its cells, its groups and its reply. From the index in O(days);
/// while the index is being built, from the number of keys.
fn estimate(
    ctx: &Context,
    span: &Span<'_>,
    group: GroupBy,
    plan: &FieldPlan,
    finish: &Finish,
) -> u64 {
    let days = (span.end - span.start).num_days().max(0) as u64 + 1;
    let indexed = index_upkeep::cells_in(selected_db(ctx), span.start, span.end)
        .map_or_else(|| crate::redis::context::db_size(ctx), |n| n as u64);
    let cells = match span.listings {
        Listings::Ids(ids) => (ids.len() as u64).saturating_mul(days).min(indexed),
        Listings::All => indexed,
    };
    let groups = match group {
        GroupBy::Day | GroupBy::Listing => cells,
        GroupBy::Hour => cells.saturating_mul(24),
        GroupBy::Date => days.min(cells),
        GroupBy::Total => 1,
    };
    let rows = match finish {
        Finish::Query(_) => groups * plan.metrics.len() as u64,
        Finish::Top { n, .. } => (*n as u64).min(groups),
    };
    let width = plan.width() as u64;
    cells * CELL_BYTES + groups * (GROUP_BYTES + 8 * width) + rows * ROW_BYTES
}

/// Values per group: the plan's, twice with a comparison.
fn agg_width(plan: &FieldPlan, periods: &Option<Periods>) -> usize {
    if periods.as_ref().is_some_and(Periods::compares) {
        plan.width() * 2
    } else {
        plan.width()
    }
}

/// Hour keys may be read: hours are on, and the hours asked are not past
/// `hour-retention-days`.
fn check_hours(settings: &Settings, periods: &Periods) -> Result<()> {
    if !settings.hours {
        return Err(Error::invalid(
            "this query needs hour buckets (GROUPBY HOUR, an hour bound, or TZ of another \
             zone), and hours are off: CONFIG SET listingstats.hours yes counts events in \
             their hour from then on",
        ));
    }
    let first = periods.hours.iter().map(|h| h.0).min().unwrap_or(0);
    let now_h = crate::redis::context::now_ms().div_euclid(3_600_000);
    let kept = settings.hour_retention_days;
    if kept > 0 && first < now_h - 24 * (kept + 1) {
        return Err(Error::invalid(format!(
            "this query needs hours from {}, past hour-retention-days {kept}: hour keys that old \
             are gone",
            listingstats_core::query::span::hour_label(first, periods.tz)
        )));
    }
    Ok(())
}

/// Groups an answer makes room for at once (see `Aggregator::reserve`):
/// an explicit set's cells may be millions, mostly absent.
const RESERVE_MAX: usize = 1 << 20;

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
        when: &When,
        group: GroupBy,
        finish: Finish,
    ) -> Result<Job> {
        check_cluster(ctx, span)?;
        let periods = Periods::plan(when, group, settings.timezone)?;
        if let Some(p) = periods.as_ref().filter(|p| !p.hours.is_empty()) {
            check_hours(&settings, p)?;
        }
        // The days read from day hashes: all of the range, or what the
        // periods read whole.
        let day_range = match &periods {
            None => Some((span.start, span.end)),
            Some(p) => p.day_span(),
        };
        let own_span;
        let span = match day_range {
            Some((start, end)) => {
                own_span = Span {
                    start,
                    end,
                    listings: span.listings,
                };
                &own_span
            }
            None => span,
        };
        let mut need = inflight::Need::new(estimate(ctx, span, group, &plan, &finish));
        // Refused here (nothing done) when it alone passes the bound.
        let admitted = need.admitted(crate::config::current().max_query_memory)?;
        let star = matches!(span.listings, Listings::All);
        // Periods read through the index (the scan knows days only).
        let scans = star && settings.star_source == StarSource::Scan && periods.is_none();
        let cache = if scans {
            None
        } else {
            cache_for(settings.cache, registry, &plan)?
        };
        let mut agg = Aggregator::new(&plan, group);
        if periods.as_ref().is_some_and(Periods::compares) {
            agg = agg.comparing();
        }
        let width = agg_width(&plan, &periods);
        let hour_reading = periods
            .as_ref()
            .filter(|p| !p.hours.is_empty())
            .map(|p| p.utc_dates());
        if let (Some(dates), Listings::Ids(ids)) = (&hour_reading, span.listings) {
            // An hour key per UTC date and listing.
            check_cells(
                dates[0],
                *dates.last().unwrap_or(&dates[0]),
                ids.len(),
                settings.max_query_cells,
            )?;
        }
        let hour_reading =
            hour_reading.map(|dates| HourReading::new(selected_db(ctx), dates, span.listings));
        let state = match span.listings {
            // Nothing read from day hashes: the hour keys at once.
            _ if day_range.is_none() => State::Done,
            Listings::Ids(ids) => {
                check_cells(span.start, span.end, ids.len(), settings.max_query_cells)?;
                let names: ListingNames = ids.iter().copied().collect();
                // Day by day, listings in listing order: the output order.
                let cells = Cells::grid(span.start, span.end, &names);
                agg.reserve(cells.len().min(RESERVE_MAX), names.len());
                State::Reading(Reading::new(names, cells, cache, plan.width()))
            }
            Listings::All if scans => State::Scanning,
            Listings::All => {
                // Summed whole by day or in total, for a caller who may
                // read every day hash: complete days from their totals.
                let totals = matches!(finish, Finish::Query(_))
                    && matches!(group, GroupBy::Date | GroupBy::Total)
                    && cache.is_some()
                    && reader.may_read_everything();
                // Ranked per listing whatever the day: each listing's known
                // rows summed as they are planned.
                let rows = matches!(finish, Finish::Top { .. })
                    && group == GroupBy::Listing
                    && periods.is_none()
                    && cache.is_some()
                    && reader.may_read_everything();
                State::Planning(Planning::new(
                    selected_db(ctx),
                    span.start,
                    span.end,
                    cache,
                    totals,
                    rows,
                ))
            }
        };
        let mut job = Job {
            start: span.start,
            end: span.end,
            settings,
            plan,
            group,
            finish,
            skip_unreadable: star,
            resp3: is_resp3(ctx),
            db: selected_db(ctx),
            agg,
            examined: 0,
            state,
            part: false,
            ranked: None,
            need,
            share: None,
            scratch: vec![0; width],
            periods,
            pending_hours: hour_reading,
            tz: when.tz,
        };
        if matches!(job.state, State::Done) {
            job.state = match job.pending_hours.take() {
                Some(h) => State::ReadingHours(h),
                None => job.after_reading()?,
            };
        }
        if admitted && matches!(job.state, State::Planning(_)) {
            // The first planning step runs inside the command.
            job.step(ctx, Some(reader), None, Some(Instant::now() + QUERY_SLICE))?;
        }
        Ok(job)
    }

    /// Works on the current state until `deadline` (`None`: to its end),
    /// moving to the next state when it ends. `reader` is needed while
    /// planning, reading or scanning; `out` while ranking and rendering
    /// (nothing else writes to the client).
    fn step(
        &mut self,
        ctx: &Context,
        reader: Option<&Reader<'_>>,
        out: Option<&mut Reply>,
        deadline: Option<Instant>,
    ) -> Result<Progress> {
        let state = std::mem::replace(&mut self.state, State::Done);
        // What is written to the client is recorded for identical calls.
        let mut share = self.share.take();
        let mut out = out;
        if let (Some(slot), Some(out)) = (share.as_mut(), out.as_deref_mut()) {
            slot.attach(out);
        }
        let stepped = self.step_state(ctx, state, reader, out.as_deref_mut(), deadline);
        if let (Some(slot), Some(out)) = (share.as_mut(), out) {
            slot.detach(out);
        }
        self.share = share;
        let (next, progress) = stepped?;
        self.state = next;
        if progress == Progress::Done {
            if let Some(slot) = self.share.take() {
                slot.publish(ctx);
            }
        }
        Ok(progress)
    }

    /// Lets identical calls take this job's answer (see `crate::share`).
    pub fn share_with(&mut self, slot: Option<crate::share::Slot>) {
        self.share = slot;
    }

    /// Whether other calls wait for this job's answer.
    fn has_waiters(&self) -> bool {
        self.share
            .as_ref()
            .is_some_and(crate::share::Slot::has_waiters)
    }

    /// The job failed with `text`: the calls that wait for it get it too.
    fn fail_shared(&mut self, text: &str) {
        if let Some(slot) = self.share.take() {
            slot.fail(text);
        }
    }

    fn step_state(
        &mut self,
        ctx: &Context,
        state: State,
        reader: Option<&Reader<'_>>,
        out: Option<&mut Reply>,
        deadline: Option<Instant>,
    ) -> Result<(State, Progress)> {
        let need_reader =
            || reader.ok_or_else(|| Error::invalid("internal: a step without a reader"));
        let next = match state {
            State::Planning(mut planning) => {
                match self.plan_from_index(ctx, need_reader()?, &mut planning, deadline)? {
                    Some(next) => next,
                    None => State::Planning(planning),
                }
            }
            State::Ordering(mut ordering) => {
                if ordering.step(deadline) {
                    State::Reading(ordering.into_reading())
                } else {
                    State::Ordering(ordering)
                }
            }
            State::Reading(mut reading) => {
                if self.read(&mut reading, need_reader()?, deadline)? {
                    self.after_reading()?
                } else {
                    State::Reading(reading)
                }
            }
            State::Scanning => {
                self.scan(need_reader()?)?;
                self.after_reading()?
            }
            State::ReadingHours(mut hours) => {
                if self.read_hours(ctx, &mut hours, need_reader()?, deadline)? {
                    self.after_reading()?
                } else {
                    State::ReadingHours(hours)
                }
            }
            State::Ranking(mut picker) => {
                if !self.rank(&mut picker, deadline) {
                    State::Ranking(picker)
                } else if self.part {
                    self.ranked = Some(picker);
                    State::Done
                } else {
                    State::Rendering(Renderer::top(picker.finish(&self.agg, &self.plan)?))
                }
            }
            State::Rendering(mut renderer) => {
                let out = out.ok_or_else(|| Error::invalid("internal: a step without a reply"))?;
                if self.render(&mut renderer, out, deadline) {
                    return Ok((State::Done, Progress::Done));
                }
                State::Rendering(renderer)
            }
            State::Done => return Ok((State::Done, Progress::Done)),
        };
        Ok((next, Progress::More))
    }

    /// Adds one day hash's values (the plan's terms) to its group: as they
    /// are for a plain query; for periods, in the group and half of the
    /// period its day is in (none: not counted). `cell`: its listing's
    /// position and name; `None` for a whole day's totals (by date, in
    /// total).
    fn count(&mut self, day: NaiveDate, cell: Option<(u32, &[u8])>, values: &[i64]) -> Result<()> {
        let (day, values) = match &self.periods {
            None => (day, values),
            Some(periods) => {
                let Some((group_day, previous)) = periods.day(day) else {
                    return Ok(());
                };
                if self.scratch.len() == values.len() {
                    (group_day, values)
                } else {
                    let half = values.len();
                    self.scratch.iter_mut().for_each(|v| *v = 0);
                    let at = if previous { half } else { 0 };
                    self.scratch[at..at + half].copy_from_slice(values);
                    (group_day, &self.scratch[..])
                }
            }
        };
        match cell {
            Some((at, listing)) => self.agg.add_at(day, at, listing, values),
            None => self.agg.merge_group(day.num_days_from_ce(), None, values),
        }
    }

    /// Rows the answer will have, once its cells are read.
    fn rows(&self) -> usize {
        self.agg.len() * self.plan.metrics.len()
    }

    /// A job whose groups other nodes summed (a cluster-wide answer, see
    /// `crate::fanout`): it starts where reading ends.
    #[allow(clippy::too_many_arguments)]
    pub fn merged(
        span: (NaiveDate, NaiveDate),
        when: &When,
        settings: Arc<Settings>,
        plan: FieldPlan,
        group: GroupBy,
        finish: Finish,
        resp3: bool,
        agg: Aggregator,
        examined: u64,
    ) -> Result<Job> {
        let groups = agg.len() as u64;
        let rows = match finish {
            Finish::Query(_) => groups * plan.metrics.len() as u64,
            Finish::Top { n, .. } => (n as u64).min(groups),
        };
        // Its parts arrived already: counted, it does not wait.
        let need = inflight::Need::forced(
            groups * (GROUP_BYTES + 8 * plan.width() as u64) + rows * ROW_BYTES,
        );
        let mut job = Job {
            start: span.0,
            end: span.1,
            settings,
            plan,
            group,
            finish,
            skip_unreadable: false,
            resp3,
            db: 0,
            agg,
            examined,
            state: State::Done,
            part: false,
            ranked: None,
            need,
            share: None,
            scratch: Vec::new(),
            periods: None,
            pending_hours: None,
            tz: when.tz,
        };
        job.state = job.after_reading()?;
        Ok(job)
    }

    /// Makes this job another node's part of a cluster-wide answer.
    pub fn into_part(mut self) -> Job {
        self.part = true;
        self
    }

    /// Runs a part until `deadline`; `true` once it is complete (its sums,
    /// or its ranking, are then ready).
    pub fn part_step(
        &mut self,
        ctx: &Context,
        reader: &Reader<'_>,
        deadline: Instant,
    ) -> Result<bool> {
        loop {
            if self.step(ctx, Some(reader), None, Some(deadline))? == Progress::Done {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// A complete part's sums, its plan, and the day hashes it examined.
    pub fn part_result(&self) -> (&Aggregator, &FieldPlan, u64) {
        (&self.agg, &self.plan, self.examined)
    }

    /// A complete TOP part's ranking.
    pub fn take_ranked(&mut self) -> Option<TopPicker> {
        self.ranked.take()
    }

    /// Whether the job may work now under `max-query-memory` (it takes its
    /// turn when it comes); `Err` when it alone passes the bound.
    pub fn admitted(&mut self) -> Result<bool> {
        self.need
            .admitted(crate::config::current().max_query_memory)
    }

    /// Whether a waiting job could start now (worth a slice).
    pub fn could_start(&self) -> bool {
        self.need
            .could_start(crate::config::current().max_query_memory)
    }

    /// Whether the job is past reading (only the reply is left).
    fn replying(&self) -> bool {
        matches!(self.state, State::Ranking(_) | State::Rendering(_))
    }
}

/// Runs a job: at once, or in slices with the client blocked.
pub fn run(ctx: &Context, reader: &Reader<'_>, mut job: Job) -> Result<RedisValue> {
    let mut out = Reply::of(ctx);
    if !can_block(ctx) {
        // MULTI/EXEC or a script cannot wait: complete the rebuild (and
        // the whole job) now.
        if matches!(job.state, State::Planning(_)) {
            index_upkeep::finish_rebuild(ctx);
        }
        while job.step(ctx, Some(reader), Some(&mut out), None)? == Progress::More {}
        return Ok(RedisValue::NoReply);
    }
    // A big answer waits its turn under max-query-memory, its client
    // blocked, before doing any work.
    if !job.admitted()? {
        return sliced::start(ctx, job);
    }
    // Work for up to QUERY_AT_ONCE; what is left (planning that waits for
    // the index, cells, or a long reply) continues in slices.
    let deadline = Instant::now() + QUERY_AT_ONCE;
    while !job.replying() {
        // Planning that did not end in its first step (in `Job::plan`)
        // waits for the index or has much to copy: slices.
        if matches!(job.state, State::Planning(_)) || Instant::now() >= deadline {
            return sliced::start(ctx, job);
        }
        job.step(ctx, Some(reader), None, Some(deadline))?;
    }
    if job.rows() > QUERY_RENDER_AT_ONCE {
        return sliced::start(ctx, job);
    }
    while job.step(ctx, None, Some(&mut out), None)? == Progress::More {}
    Ok(RedisValue::NoReply)
}
