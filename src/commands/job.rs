//! Running QUERY and TOP: which day hashes to read, reading them, replying.
//!
//! A job's work is a list of cells (day, listing), each one day hash to
//! read: an explicit listing set gives days × listings; `*` gives what the
//! per-day index holds for the range. A job runs to completion at once when
//! it is small or when its caller cannot be blocked (inside MULTI/EXEC or a
//! script). Otherwise it blocks only its own client and runs in slices of
//! about [`SLICE`] from a timer, so every other client is served between
//! slices; the reply is sent when the last slice is done.
//!
//! Between slices other clients may write. Each day hash is read whole in
//! one slice and each cell once; the cells are fixed when the job starts,
//! so a day hash created meanwhile is not counted, one changed meanwhile is
//! read as it is when its slice comes.
//!
//! The reply is written in slices too (a thread-safe context bound to the
//! blocked client collects it, and Redis sends it on unblock): rendering
//! tens of thousands of rows, or their JSON, would otherwise hold the server
//! at the end. Cells are ordered at plan time by (day, listing order), so
//! the rows come out of the aggregator already sorted.
//!
//! With `star-source scan`, `*` takes the simple path instead: one scan of
//! the whole keyspace, inside the command.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use redis_module::{Context, RedisValue};

use crate::index_feed;
use crate::index_feed::{CacheUse, Lookup};
use crate::redis::blocked::BlockedReply;
use crate::redis::cluster;
use crate::redis::context::{caller_name, can_block, is_resp3, now_ms, select_db, selected_db};
use crate::redis::reply::Reply;
use crate::redis::slices::{self, Sliced, Step};
use crate::redis::store::{FieldNames, Reader};
use crate::stats;
use listingstats_core::date::push_day;
use listingstats_core::day_index::ListingNames;
use listingstats_core::day_index::{Cached, Planned, Planner};
use listingstats_core::metrics::Metric;
use listingstats_core::query::{
    check_cells, json_tail, push_json_row, push_legacy_line, Aggregator, CellOrdering, Cells,
    FieldPlan, Format, GroupBy, Listings, Rank, Ranked, RowView, TopPicker, JSON_HEAD,
};
use listingstats_core::settings::{Settings, StarSource};
use listingstats_core::{Error, Result};

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

/// A job's use of the cache: the column of each of its terms, and every
/// column's term, to read a whole row when the cache misses one.
struct CacheRead {
    columns: CacheUse,
    all: FieldPlan,
    row: Vec<i64>,
    /// Where each of the job's terms is in a row read with `all`.
    in_row: Vec<usize>,
    /// The index's number of each of the job's listings (by position in
    /// its names; [`NO_ID`]: not looked up yet), valid in `epoch`.
    ids: Vec<u32>,
    epoch: u64,
}

const NO_ID: u32 = u32::MAX;

/// Cells served from the cache per borrow of the index.
const RUN: usize = 256;

/// The names of a job's terms, and of every cached column's.
struct Fields {
    own: FieldNames,
    all: Option<FieldNames>,
}

/// How a job uses the cache: `None` when it is off.
fn cache_for(enabled: bool, registry: Vec<Metric>, plan: &FieldPlan) -> Result<Option<CacheRead>> {
    let all = FieldPlan::new(registry)?;
    let Some(columns) = index_feed::use_cache(enabled, all.terms(), plan.terms()) else {
        return Ok(None);
    };
    // Every term of the plan is a registered metric's, so in `all`.
    let Some(in_row) = plan
        .terms()
        .iter()
        .map(|t| all.terms().iter().position(|a| a == t))
        .collect::<Option<Vec<usize>>>()
    else {
        return Ok(None);
    };
    Ok(Some(CacheRead {
        row: vec![0; all.width()],
        columns,
        all,
        in_row,
        ids: Vec::new(),
        epoch: 0,
    }))
}

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
            cache_for(settings.cache, registry, &plan)?
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

    /// Reads cells until all are read (`Ok(true)`) or `deadline` passes.
    fn step(
        &mut self,
        reader: &Reader<'_>,
        fields: &Fields,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        let everything = reader.reads_everything();
        let now = now_ms();
        while self.next < self.cells.len() {
            if everything {
                self.run_cached(now)?;
                if self.next == self.cells.len() {
                    break;
                }
            }
            self.read_one(reader, fields, everything, now)?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        Ok(self.next == self.cells.len())
    }

    /// Serves up to [`RUN`] cells from the cache in one borrow of the
    /// index, stopping at the first it cannot (a miss, an absent cell).
    /// Only for a caller who may read every key: no check is needed.
    fn run_cached(&mut self, now: i64) -> Result<()> {
        let Some(cache) = self.cache.as_mut() else {
            return Ok(());
        };
        let end = (self.next + RUN).min(self.cells.len());
        let start = self.next;
        let mut gone = 0u64;
        let result = index_feed::with_index(|ix, current| {
            if cache.epoch != ix.id_epoch() || cache.ids.len() != self.names.len() {
                cache.ids.clear();
                cache.ids.resize(self.names.len(), NO_ID);
                cache.epoch = ix.id_epoch();
            }
            while self.next < end {
                let (day, at) = self.cells.get(self.next);
                let listing = &self.names[at as usize];
                let id = match cache.ids[at as usize] {
                    NO_ID => ix.listings.get(listing),
                    id => Some(id),
                };
                let cached = match id {
                    Some(id) => {
                        cache.ids[at as usize] = id;
                        ix.cached_at(cache.columns.version, self.db, day, id, now)
                    }
                    None => Cached::Absent,
                };
                match cached {
                    Cached::Row(row) => {
                        for (v, &c) in self.values.iter_mut().zip(&cache.columns.columns) {
                            *v = row[c];
                        }
                        self.agg.add_at(day, at, listing, &self.values)?;
                    }
                    // The index is current and holds no such day hash.
                    Cached::Absent if current => gone += 1,
                    _ => return Ok(()),
                }
                self.next += 1;
            }
            Ok(())
        });
        let served = (self.next - start) as u64;
        // An explicit set counts every key it names; `*` the day hashes
        // found.
        self.examined += if self.skip_unreadable {
            served - gone
        } else {
            served
        };
        stats::CACHE_HITS.add(served - gone);
        result
    }

    /// Reads the next cell: its permission first, then from the cache, or
    /// from its hash (filling the cache).
    fn read_one(
        &mut self,
        reader: &Reader<'_>,
        fields: &Fields,
        everything: bool,
        now: i64,
    ) -> Result<()> {
        let scheme = &self.settings.keys;
        let (day, at) = self.cells.get(self.next);
        let listing = &self.names[at as usize];
        self.next += 1;
        let mut checked = None;
        if !everything {
            let name = scheme.day_key(day, listing);
            if self.skip_unreadable {
                if !reader.may_read(&name) {
                    return Ok(());
                }
            } else {
                reader.check_read(&name)?;
            }
            checked = Some(name);
        }
        let key =
            |checked: Option<Vec<u8>>| checked.unwrap_or_else(|| scheme.day_key(day, listing));
        let found = match (&mut self.cache, &fields.all) {
            (Some(cache), Some(all)) => {
                match index_feed::cached(
                    &cache.columns,
                    self.db,
                    day,
                    listing,
                    now,
                    &mut self.values,
                ) {
                    Lookup::Hit => {
                        stats::CACHE_HITS.add(1);
                        true
                    }
                    Lookup::Miss => {
                        stats::CACHE_MISSES.add(1);
                        match reader.row(&key(checked), all, &mut cache.row)? {
                            Some(expires) => {
                                index_feed::fill(
                                    &cache.columns,
                                    self.db,
                                    day,
                                    listing,
                                    &cache.row,
                                    expires,
                                );
                                for (v, &at) in self.values.iter_mut().zip(&cache.in_row) {
                                    *v = cache.row[at];
                                }
                                true
                            }
                            None => false,
                        }
                    }
                    Lookup::Gone => false,
                    Lookup::Read => reader
                        .row(&key(checked), &fields.own, &mut self.values)?
                        .is_some(),
                }
            }
            _ => reader
                .row(&key(checked), &fields.own, &mut self.values)?
                .is_some(),
        };
        if found {
            self.agg.add_at(day, at, listing, &self.values)?;
        }
        // An explicit set counts every key it names; `*` counts the day
        // hashes found, as the scan path does (the index may name keys
        // deleted or retyped since).
        if found || !self.skip_unreadable {
            self.examined += 1;
        }
        Ok(())
    }

    /// The field names a slice reads with (made once per slice).
    fn fields(&self, reader: &Reader<'_>) -> Fields {
        Fields {
            own: reader.field_names(&self.plan),
            all: self.cache.as_ref().map(|c| reader.field_names(&c.all)),
        }
    }

    /// The simple path for `*`: one scan of the whole keyspace.
    fn scan(&mut self, reader: &Reader<'_>, span: &Span<'_>) -> Result<()> {
        let fields = reader.field_names(&self.plan);
        let scheme = &self.settings.keys;
        let max = u64::try_from(self.settings.max_query_cells).unwrap_or(0);
        let in_range = |name: &[u8]| matches!(scheme.parse_day_key(name), Some((d, _)) if d >= span.start && d <= span.end);
        let mut found = 0u64;
        let agg = &mut self.agg;
        reader.scan(&fields, in_range, |name, values| {
            found += 1;
            if found > max {
                return Err(Error::invalid(format!(
                    "query matches more than max-query-cells {max} day hashes"
                )));
            }
            match scheme.parse_day_key(name) {
                Some((day, listing)) => agg.add(day, listing, values),
                None => Ok(()),
            }
        })?;
        stats::SCANS.add(1);
        self.examined = found;
        Ok(())
    }

    /// Writes the reply to `ctx` (a command's or a thread-safe one), or as
    /// much of it as fits before `deadline`; `true` when it is complete.
    /// Rows are made group by group as they are written, and the array
    /// length is set at the end, so no step holds the server for long.
    fn render(&mut self, out: &mut Reply, deadline: Option<Instant>) -> bool {
        if self.order.is_none() {
            if !self.counted {
                stats::KEYS_EXAMINED.add(self.examined);
                self.counted = true;
            }
            let order = if let Finish::Top {
                n,
                min_denominator,
                rank,
            } = self.finish
            {
                // TOP ranks a chunk of groups per check of the deadline,
                // and makes rows for its winners only: no order of every
                // group, no row per listing.
                debug_assert_eq!(self.group, GroupBy::Listing);
                let scale = self.plan.metrics[0].scale;
                let mut picker = self
                    .picker
                    .take()
                    .unwrap_or_else(|| TopPicker::new(n, min_denominator, rank, scale));
                while !picker.feed(&self.agg, &self.plan, 4096) {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        self.picker = Some(picker);
                        return false;
                    }
                }
                match picker.finish(&self.agg, &self.plan) {
                    Ok(rows) => self.top_rows = rows,
                    Err(e) => {
                        // Nothing is written yet: the reply is the error.
                        stats::ERRORS.add(1);
                        out.error(&e.reply_text());
                        return true;
                    }
                }
                Vec::new()
            } else {
                self.agg.order()
            };
            self.order = Some(order);
            match self.finish {
                Finish::Query(Format::Json) => {
                    // About 100 bytes a row: one allocation, not a doubling
                    // (and a copy of tens of megabytes) in one step.
                    self.json
                        .reserve(self.agg.len() * self.plan.metrics.len() * 100);
                    self.json.extend_from_slice(JSON_HEAD.as_bytes());
                }
                _ => out.array_of_unknown_len(),
            }
            if deadline.is_some() {
                return false;
            }
        }
        let mut out = RowWriter {
            out,
            resp3: self.resp3,
            day: Vec::with_capacity(10),
            text: String::with_capacity(24),
        };
        let (plan, scheme) = (&self.plan, &self.settings.keys);
        let groups = self.order.as_deref().unwrap_or_default();
        if let Finish::Top { .. } = self.finish {
            for ranked in &self.top_rows {
                // [listing, numerator, denominator, value(, wilson bound)]
                out.out.array(if ranked.bound.is_some() { 5 } else { 4 });
                out.listing(ranked.row.listing.as_deref());
                out.counts_and_value(&ranked.row.view());
                if let Some(bound) = ranked.bound {
                    out.value(Some(bound));
                }
            }
            self.rendered = self.top_rows.len();
            self.next_group = groups.len();
        }
        let (finish, json, rendered) = (&self.finish, &mut self.json, &mut self.rendered);
        let mut line = Vec::with_capacity(64);
        while self.next_group < groups.len() {
            self.agg
                .group_views(plan, groups[self.next_group], |row| match finish {
                    Finish::Query(Format::Resp) => {
                        // [metric, date, listing, numerator, denominator, value]
                        out.out.array(6);
                        out.bulk(plan.metrics[row.metric].name.as_bytes());
                        out.date(row.date);
                        out.listing(row.listing);
                        out.counts_and_value(&row);
                        *rendered += 1;
                    }
                    Finish::Query(Format::Legacy) => {
                        line.clear();
                        if push_legacy_line(&mut line, &row, plan, scheme) {
                            out.bulk(&line);
                            *rendered += 1;
                        }
                    }
                    Finish::Query(Format::Json) => {
                        if *rendered > 0 {
                            json.push(b',');
                        }
                        push_json_row(json, &row, plan);
                        *rendered += 1;
                    }
                    Finish::Top { .. } => {}
                });
            self.next_group += 1;
            if self.next_group.is_multiple_of(128) && deadline.is_some_and(|d| Instant::now() >= d)
            {
                return false;
            }
        }
        match self.finish {
            Finish::Query(Format::Json) => {
                self.json
                    .extend_from_slice(json_tail(self.examined).as_bytes());
                out.bulk(&self.json);
            }
            _ => out.out.set_array_len(self.rendered),
        }
        true
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

/// Writes rows straight to the client: a reply of thousands of rows would
/// otherwise be built as a tree of values and strings first, only to be
/// copied and freed.
pub struct RowWriter<'a> {
    out: &'a mut Reply,
    resp3: bool,
    /// Reused buffers for a date and a number's text.
    day: Vec<u8>,
    text: String,
}

impl RowWriter<'_> {
    pub fn bulk(&mut self, bytes: &[u8]) {
        self.out.bulk(bytes);
    }

    pub fn date(&mut self, date: Option<NaiveDate>) {
        match date {
            Some(d) => {
                self.day.clear();
                push_day(&mut self.day, d);
                self.out.bulk(&self.day);
            }
            None => self.bulk(b"*"),
        }
    }

    pub fn listing(&mut self, listing: Option<&[u8]>) {
        self.bulk(listing.unwrap_or(b"*"));
    }

    /// numerator, denominator, value (a double, or null when undefined).
    /// RESP2 has no double type: Redis would send `%.17g` text; this sends
    /// the shortest text that reads back as the same double, which costs a
    /// tenth of the time.
    pub fn counts_and_value(&mut self, row: &RowView<'_>) {
        self.out.int(row.numerator);
        self.out.int(row.denominator);
        self.value(row.value);
    }

    /// A value: a double, or null when undefined.
    pub fn value(&mut self, value: Option<f64>) {
        use std::fmt::Write;
        match value {
            Some(v) if self.resp3 => self.out.double(v),
            Some(v) => {
                self.text.clear();
                let _ = write!(self.text, "{v}");
                self.out.bulk(self.text.as_bytes());
            }
            None => self.out.null(),
        }
    }
}
