//! Reading a job's cells: from the query cache when it holds them, from
//! their hashes otherwise (filling the cache), and the `star-source scan`
//! path.

use std::time::Instant;

use super::Job;
use crate::budget::CACHE_RUN;
use crate::index_upkeep::{self, CacheUse, Lookup};
use crate::redis::context::now_ms;
use crate::redis::key::FieldNames;
use crate::redis::reader::Reader;
use crate::stats;
use listingstats_core::day_index::{Cached, ListingNames};
use listingstats_core::metrics::Metric;
use listingstats_core::query::{Cells, FieldPlan};
use listingstats_core::{Error, Result};

/// A job's use of the cache: the column of each of its terms, and every
/// column's term, to read a whole row when the cache misses one.
pub(super) struct CacheRead {
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

/// A job reading its cells: the listings they name, the cells, how far it
/// is, and its use of the cache.
pub(super) struct Reading {
    /// Listing ids the cells refer to.
    pub(super) names: ListingNames,
    pub(super) cells: Cells,
    next: usize,
    /// Where its terms are in the cache, when the cache is on.
    cache: Option<CacheRead>,
    /// One cell's values (the plan's terms).
    values: Vec<i64>,
}

impl Reading {
    pub(super) fn new(
        names: ListingNames,
        cells: Cells,
        cache: Option<CacheRead>,
        width: usize,
    ) -> Reading {
        Reading {
            names,
            cells,
            next: 0,
            cache,
            values: vec![0; width],
        }
    }
}

impl CacheRead {
    /// The version of the cache columns it reads.
    pub(super) fn version(&self) -> u64 {
        self.columns.version
    }

    /// The cache column of each of the job's terms.
    pub(super) fn term_columns(&self) -> &[usize] {
        &self.columns.columns
    }

    /// The index's number of each listing (by position), as the planner
    /// took them, valid while the index's id epoch is `epoch`.
    pub(super) fn know_ids(&mut self, ids: Vec<u32>, epoch: u64) {
        self.ids = ids;
        self.epoch = epoch;
    }
}

/// The names of a job's terms, and of every cached column's.
struct Fields {
    own: FieldNames,
    all: Option<FieldNames>,
}

/// How a job uses the cache: `None` when it is off.
pub(super) fn cache_for(
    enabled: bool,
    registry: Vec<Metric>,
    plan: &FieldPlan,
) -> Result<Option<CacheRead>> {
    let all = FieldPlan::new(registry)?;
    let Some(columns) = index_upkeep::use_cache(enabled, all.terms(), plan.terms()) else {
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

impl Job {
    /// Reads cells until all are read (`Ok(true)`) or `deadline` passes.
    pub(super) fn read(
        &mut self,
        r: &mut Reading,
        reader: &Reader<'_>,
        deadline: Option<Instant>,
    ) -> Result<bool> {
        let fields = &Self::fields(r, reader, &self.plan);
        reader.expect_reads(r.cells.len() - r.next);
        let now = now_ms();
        while r.next < r.cells.len() {
            // Becomes true mid-way once the reader learns that the user may
            // read everything (see `Acl`): the rest then takes the fast path.
            let everything = reader.reads_everything();
            let mut stopped_on = None;
            if everything {
                stopped_on = self.run_cached(r, now)?;
                if r.next == r.cells.len() {
                    break;
                }
            }
            self.read_one(r, reader, fields, everything, now, stopped_on)?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        Ok(r.next == r.cells.len())
    }

    /// Serves up to [`CACHE_RUN`] cells from the cache in one borrow of the
    /// index, stopping at the first it cannot, whose look-up it returns (a
    /// miss, or a cell to read from its hash) for [`Job::read_one`]. Only
    /// for a caller who may read every key: no check is needed.
    fn run_cached(&mut self, r: &mut Reading, now: i64) -> Result<Option<Lookup>> {
        let Some(cache) = r.cache.as_mut() else {
            return Ok(None);
        };
        let end = (r.next + CACHE_RUN).min(r.cells.len());
        let start = r.next;
        let mut gone = 0u64;
        // Cells of `*` come day by day in index order: each is found at the
        // position after the one before.
        let mut next = usize::MAX;
        let result = index_upkeep::with_index(|ix, current| {
            if cache.epoch != ix.id_epoch() || cache.ids.len() != r.names.len() {
                cache.ids.clear();
                cache.ids.resize(r.names.len(), NO_ID);
                cache.epoch = ix.id_epoch();
            }
            while r.next < end {
                let (day, at) = r.cells.get(r.next);
                let listing = &r.names[at as usize];
                let id = match cache.ids[at as usize] {
                    NO_ID => ix.listings.get(listing),
                    id => Some(id),
                };
                let cached = match id {
                    Some(id) => {
                        cache.ids[at as usize] = id;
                        ix.cached_near(cache.columns.version, self.db, day, id, now, &mut next)
                    }
                    None => Cached::Absent,
                };
                match index_upkeep::lookup(cached, current, &cache.columns, &mut r.values) {
                    Lookup::Hit => self.count(day, Some((at, listing)), &r.values)?,
                    // The index is current and holds no such day hash.
                    Lookup::Gone => gone += 1,
                    stop => return Ok(Some(stop)),
                }
                r.next += 1;
            }
            Ok(None)
        });
        let served = (r.next - start) as u64;
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
    /// from its hash (filling the cache). `known`: its cache look-up, when
    /// [`Job::run_cached`] made it already.
    fn read_one(
        &mut self,
        r: &mut Reading,
        reader: &Reader<'_>,
        fields: &Fields,
        everything: bool,
        now: i64,
        known: Option<Lookup>,
    ) -> Result<()> {
        let scheme = &self.settings.keys;
        let (day, at) = r.cells.get(r.next);
        let listing = &r.names[at as usize];
        r.next += 1;
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
        let found = match (&mut r.cache, &fields.all) {
            (Some(cache), Some(all)) => {
                let lookup = match known {
                    Some(lookup) => lookup,
                    None => index_upkeep::cached(
                        &cache.columns,
                        self.db,
                        day,
                        listing,
                        now,
                        &mut r.values,
                    ),
                };
                match lookup {
                    Lookup::Hit => {
                        stats::CACHE_HITS.add(1);
                        true
                    }
                    Lookup::Miss => {
                        stats::CACHE_MISSES.add(1);
                        match reader.row(&key(checked), all, &mut cache.row)? {
                            Some(expires) => {
                                index_upkeep::fill(
                                    &cache.columns,
                                    self.db,
                                    day,
                                    listing,
                                    &cache.row,
                                    expires,
                                );
                                for (v, &at) in r.values.iter_mut().zip(&cache.in_row) {
                                    *v = cache.row[at];
                                }
                                true
                            }
                            None => false,
                        }
                    }
                    Lookup::Gone => false,
                    Lookup::Read => reader.counters(&key(checked), &fields.own, &mut r.values)?,
                }
            }
            _ => reader.counters(&key(checked), &fields.own, &mut r.values)?,
        };
        if found {
            self.count(day, Some((at, listing)), &r.values)?;
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
    fn fields(r: &Reading, reader: &Reader<'_>, plan: &FieldPlan) -> Fields {
        Fields {
            own: reader.field_names(plan),
            all: r.cache.as_ref().map(|c| reader.field_names(&c.all)),
        }
    }

    /// The simple path for `*`: one scan of the whole keyspace.
    pub(super) fn scan(&mut self, reader: &Reader<'_>) -> Result<()> {
        let fields = reader.field_names(&self.plan);
        let scheme = &self.settings.keys;
        let max = u64::try_from(self.settings.max_query_cells).unwrap_or(0);
        let in_range = |name: &[u8]| matches!(scheme.parse_day_key(name), Some((d, _)) if d >= self.start && d <= self.end);
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
}
