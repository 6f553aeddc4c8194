//! Copying a `*` query's cells out of the index in bounded steps; a pass
//! over every indexed day hash.

use super::index::Index;
use super::names::ListingNames;
use super::rows::UNKNOWN;

use chrono::{Datelike, NaiveDate};
use rustc_hash::FxHashMap;

/// Copies a `*` query's cells out of the index a bounded number at a time,
/// so a day of 600,000 listings is planned in slices: between slices the
/// index pins its numbers (none is freed or renumbered), so the planner's
/// cursor and its map of numbers stay right whatever is written meanwhile.
/// A day hash added meanwhile is planned when it lies ahead of the cursor.
/// If the index is replaced (FLUSHALL, a rebuild), planning starts over.
pub struct Planner {
    db: i32,
    start: i32,
    end: i32,
    /// Where the next step resumes: a day, and the first listing number
    /// not yet taken on it.
    day: i32,
    next_id: u32,
    /// The index instance pinned, while planning.
    pinned: Option<u64>,
    /// The planner's number of each listing number met so far. Numbers
    /// are pinned, so this stays right across steps.
    pub(super) local: Local,
    pub names: ListingNames,
    /// The index's number of each listing of `names`, valid while the
    /// index's `id_epoch` is `id_epoch` (a reader need not look them up).
    pub ids: Vec<u32>,
    pub id_epoch: u64,
    pub cells: Vec<(NaiveDate, u32)>,
    /// With [`Planner::with_totals`]: whole days taken from their totals.
    totals: Option<TotalsUse>,
    /// The days whose every day hash has a known row: their sums per
    /// cache column, and how many day hashes they cover, in place of
    /// their cells.
    pub day_totals: Vec<(NaiveDate, Vec<i128>, usize)>,
    /// With [`Planner::with_rows`]: the columns summed per listing.
    rows: Option<RowsUse>,
    /// With [`Planner::with_rows`]: per listing of `names` (by position),
    /// the sums of the columns asked over its day hashes whose rows were
    /// known, in place of their cells (`row_sums[at * k ..][.. k]`), and
    /// how many day hashes each sum covers.
    pub row_sums: Vec<i64>,
    pub summed: Vec<u32>,
    /// Day hashes summed into `row_sums`, all listings together.
    pub summed_cells: usize,
}

/// A planner's summing of known rows (see [`Planner::with_rows`]).
#[derive(Debug, Clone)]
struct RowsUse {
    version: u64,
    now_ms: i64,
    columns: Vec<usize>,
}

/// A planner's use of the days' totals: the cache columns' version the
/// caller reads with, and the time (a day past its earliest expiry is
/// read again).
#[derive(Debug, Clone, Copy)]
struct TotalsUse {
    version: u64,
    now_ms: i64,
}

const NOT_MET: u32 = u32::MAX;

/// Listing number -> planner's number: a table by number (no hashing per
/// cell) when the query covers a good part of the numbers, else a map
/// (a small query in a big index allocates little).
pub(super) enum Local {
    Table(Vec<u32>),
    Map(FxHashMap<u32, u32>),
}

impl Local {
    fn get_or(&mut self, global: u32, table_len: usize, new: impl FnOnce() -> u32) -> u32 {
        match self {
            Local::Table(table) => {
                let g = global as usize;
                if g >= table.len() {
                    table.resize(table_len.max(g + 1), NOT_MET);
                }
                if table[g] == NOT_MET {
                    table[g] = new();
                }
                table[g]
            }
            Local::Map(map) => *map.entry(global).or_insert_with(new),
        }
    }
}

/// What a planning step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Planned {
    /// Every cell is planned (and the index unpinned).
    Done,
    /// More to plan.
    More,
}

impl Planner {
    pub fn new(db: i32, start: NaiveDate, end: NaiveDate) -> Planner {
        Planner::new_raw(db, start.num_days_from_ce(), end.num_days_from_ce())
    }

    /// Takes a day whose every day hash has a known cached row (of the
    /// columns of `version`) from the day's totals instead of its cells:
    /// for a query that sums the day whole (by date, in total) for a
    /// caller who may read every day hash. O(days) for a range of such
    /// days, whatever the listings.
    pub fn with_totals(mut self, version: u64, now_ms: i64) -> Planner {
        self.totals = Some(TotalsUse { version, now_ms });
        self
    }

    /// Sums the known rows of each listing (the cache columns `columns`,
    /// of `version`) as it plans, instead of planning their cells: for a
    /// query that sums each listing over its days whatever the day (TOP),
    /// for a caller who may read every day hash. A day hash whose row is
    /// not known, or would overflow the sum, is planned as a cell.
    pub fn with_rows(mut self, version: u64, now_ms: i64, columns: Vec<usize>) -> Planner {
        self.rows = Some(RowsUse {
            version,
            now_ms,
            columns,
        });
        self
    }

    /// Day hashes planned so far: cells and rows summed.
    pub fn planned(&self) -> usize {
        self.cells.len() + self.summed_cells
    }

    /// The totals of a day, when it is taken whole from them.
    fn whole(&self, ix: &Index, entry: &super::day::Day) -> Option<Vec<i128>> {
        let t = self.totals?;
        if t.version != ix.columns.version {
            return None;
        }
        entry
            .rows
            .totals(entry.ids.len(), t.now_ms)
            .map(<[i128]>::to_vec)
    }

    /// Plans up to `budget` more cells.
    pub fn step(&mut self, ix: &mut Index, budget: usize) -> Planned {
        if self.pinned != Some(ix.instance) {
            if self.pinned.is_some() {
                // Another index now: what was planned named the old one.
                let totals = self.totals;
                let rows = self.rows.take();
                *self = Planner::new_raw(self.db, self.start, self.end);
                self.totals = totals;
                self.rows = rows;
            }
            ix.pin();
            self.pinned = Some(ix.instance);
        }
        let mut taken = 0;
        if let Some(days) = ix.dbs.get(&self.db) {
            if self.planned() == 0 {
                // Room for every cell now: a list of 600,000 grown step by
                // step would be copied whole in one step.
                let cells: usize = days
                    .days
                    .range(self.start..=self.end)
                    .filter(|(_, e)| self.whole(ix, e).is_none())
                    .map(|(_, e)| e.ids.len())
                    .sum();
                let names = cells.min(ix.listings.len());
                self.cells.reserve(cells);
                self.names.reserve(names, names * 8);
                self.ids.reserve(names);
                let table = ix.listings.names.len();
                self.local = if names * 8 >= table {
                    Local::Table(vec![NOT_MET; table])
                } else {
                    let mut map = FxHashMap::default();
                    map.reserve(names);
                    Local::Map(map)
                };
            }
            for (&d, entry) in days.days.range(self.day..=self.end) {
                let day = NaiveDate::from_num_days_from_ce_opt(d).unwrap_or_default();
                let from = if d == self.day {
                    entry.ids.partition_point(|&id| id < self.next_id)
                } else {
                    0
                };
                if from == 0 {
                    if let Some(sums) = self.whole(ix, entry) {
                        if !self.day_totals.iter().any(|(t, ..)| *t == day) {
                            self.day_totals.push((day, sums, entry.ids.len()));
                        }
                        continue;
                    }
                }
                // The columns to sum of this day's known rows, if any.
                let stride = ix.stride();
                let sum_rows = self.rows.as_ref().filter(|r| {
                    r.version == ix.columns.version
                        && entry.rows.is_on()
                        && entry.rows.expires > r.now_ms
                        && stride > 0
                });
                for (i, &global) in entry.ids.iter().enumerate().skip(from) {
                    if taken == budget {
                        self.day = d;
                        self.next_id = global;
                        return Planned::More;
                    }
                    let (names, ids) = (&mut self.names, &mut self.ids);
                    let at = self.local.get_or(global, ix.listings.names.len(), || {
                        ids.push(global);
                        names.push(ix.listings.name(global))
                    });
                    taken += 1;
                    if let Some(use_) = sum_rows {
                        let row = entry.rows.row(i, stride).filter(|r| r[0] != UNKNOWN);
                        if let Some(row) = row {
                            if add_row(&mut self.row_sums, &mut self.summed, at, &use_.columns, row)
                            {
                                self.summed_cells += 1;
                                continue;
                            }
                        }
                    }
                    self.cells.push((day, at));
                }
            }
        }
        // Numbers were pinned while planning: the ones taken hold now.
        self.id_epoch = ix.id_epoch();
        self.release(ix);
        self.local = Local::Map(FxHashMap::default());
        Planned::Done
    }

    fn new_raw(db: i32, start: i32, end: i32) -> Planner {
        Planner {
            db,
            start,
            end,
            day: start,
            next_id: 0,
            pinned: None,
            local: Local::Map(FxHashMap::default()),
            names: ListingNames::default(),
            ids: Vec::new(),
            id_epoch: 0,
            cells: Vec::new(),
            totals: None,
            day_totals: Vec::new(),
            rows: None,
            row_sums: Vec::new(),
            summed: Vec::new(),
            summed_cells: 0,
        }
    }

    /// Unpins the index (planning done or abandoned); `ix` is the current
    /// index, which may not be the one pinned.
    pub fn release(&mut self, ix: &mut Index) {
        if self.pinned.take() == Some(ix.instance) {
            ix.unpin();
        }
    }

    /// Whether the index is still pinned by this planner.
    pub fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }
}

/// Adds `row`'s `columns` to the sums of listing `at`; `false` (nothing
/// added) when a sum would overflow: the cell is then read as any other,
/// and the query's sum fails as it would have.
fn add_row(
    sums: &mut Vec<i64>,
    summed: &mut Vec<u32>,
    at: u32,
    columns: &[usize],
    row: &[i64],
) -> bool {
    let (at, k) = (at as usize, columns.len());
    if summed.len() <= at {
        summed.resize(at + 1, 0);
        sums.resize((at + 1) * k, 0);
    }
    let mine = &mut sums[at * k..(at + 1) * k];
    let fits = |(&s, &c): (&i64, &usize)| row.get(c).and_then(|&v| s.checked_add(v)).is_some();
    if !mine.iter().zip(columns).all(fits) {
        return false;
    }
    for (s, &c) in mine.iter_mut().zip(columns) {
        *s += row[c];
    }
    summed[at] += 1;
    true
}

/// Where a pass over every indexed day hash is (see
/// [`Index::unknown_rows`]): a database, a day, the next listing number.
/// Nothing is pinned: if numbers are renumbered meanwhile, a pass may
/// visit some day hashes twice or not at all, which only a best-effort
/// pass (warming the cache) may accept.
#[derive(Debug, Clone)]
pub struct Pass {
    pub(super) db: i32,
    pub(super) day: i32,
    pub(super) next_id: u32,
}

impl Default for Pass {
    fn default() -> Self {
        // Days before year 1 have negative numbers.
        Pass {
            db: i32::MIN,
            day: i32::MIN,
            next_id: 0,
        }
    }
}
