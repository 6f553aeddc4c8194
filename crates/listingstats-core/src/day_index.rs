//! The per-day index of listings: which listings have a day hash on a day.
//!
//! A `*` query needs the listings present in its range. Scanning the whole
//! keyspace for them costs time proportional to every key in the database;
//! the index answers in time proportional to the answer. It lives in module
//! memory (not in Redis keys), fed by keyspace notifications, so it sees
//! every writer — this module, plain HINCRBY from other tools, keys loaded
//! from an RDB — and needs no persistence or replication of its own: each
//! server, replicas included, builds it from what it loads and what it
//! executes.
//!
//! It may hold entries whose key was since deleted or changed type (a
//! query reads each key and skips it then); it never misses a day hash that
//! a notification announced. Listing ids are interned to `u32`, so an entry
//! costs 4 bytes.
//!
//! It is also the query cache: beside each day's sorted listing numbers it
//! keeps, aligned with them, the values of the *columns* (the counters and
//! patterns the registered metrics read), 8 bytes each, so a query adds
//! numbers from memory instead of opening a hash per cell. The hashes stay
//! the data of record. A row is either exact or [`UNKNOWN`]: every write a
//! notification announces marks its row unknown (the next query re-reads
//! the hash and fills the row), the module's own counter writes set the
//! values they wrote ([`Index::written`]), and a day whose earliest key
//! expiry has passed is re-read whole (a hash past its expiry reads as
//! absent before Redis deletes it).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use rustc_hash::FxHashMap;

use crate::metrics::pattern_of;

/// Interned listing ids, each counted by the index entries that use it.
///
/// An id whose count drops to 0 is freed and its number reused, so memory
/// follows what is indexed: writing then deleting many short-lived
/// listings leaves nothing behind. When fewer than a quarter of the
/// numbers are live, [`Index`] compacts them (see [`Interner::compact`]).
#[derive(Default)]
pub struct Interner {
    ids: FxHashMap<Box<[u8]>, u32>,
    /// By number; an empty name is a free number (ids are never empty).
    names: Vec<Box<[u8]>>,
    uses: Vec<u32>,
    free: Vec<u32>,
}

impl Interner {
    pub fn intern(&mut self, listing: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(listing) {
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = listing.into();
                id
            }
            None => {
                self.names.push(listing.into());
                self.uses.push(0);
                self.names.len() as u32 - 1
            }
        };
        self.ids.insert(listing.into(), id);
        id
    }

    pub fn get(&self, listing: &[u8]) -> Option<u32> {
        self.ids.get(listing).copied()
    }

    pub fn name(&self, id: u32) -> &[u8] {
        &self.names[id as usize]
    }

    fn used(&mut self, id: u32) {
        self.uses[id as usize] += 1;
    }

    /// One use fewer; at 0 frees the number (and says so), unless
    /// `keep`: then the number stays its listing's until [`Interner::release`].
    fn unused(&mut self, id: u32, keep: bool) -> bool {
        let uses = &mut self.uses[id as usize];
        *uses = uses.saturating_sub(1);
        if *uses == 0 && !keep {
            return self.release(id);
        }
        false
    }

    /// Frees a number nothing uses (kept by [`Interner::unused`]); `true`
    /// when it was freed.
    fn release(&mut self, id: u32) -> bool {
        if self.uses[id as usize] != 0 || self.names[id as usize].is_empty() {
            return false;
        }
        let name = std::mem::take(&mut self.names[id as usize]);
        self.ids.remove(&name);
        self.free.push(id);
        true
    }

    /// Room for `more` ids at once (a rebuild knows roughly how many keys
    /// it will see): growing the map of 600,000 ids step by step would
    /// rehash them all in one step.
    fn reserve(&mut self, more: usize) {
        self.ids.reserve(more);
        self.names.reserve(more);
        self.uses.reserve(more);
    }

    /// Gives back what a reservation left unused, when that is cheap (few
    /// ids to rehash) and worth it.
    fn trim(&mut self) {
        if self.ids.len() <= 65_536 && self.ids.capacity() > 4 * self.ids.len() + 1024 {
            self.ids.shrink_to_fit();
            self.names.shrink_to_fit();
            self.uses.shrink_to_fit();
        }
    }

    /// Interned ids now in use.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// True when most numbers are free: worth [`Interner::compact`].
    fn sparse(&self) -> bool {
        self.names.len() > 1024 && self.len() * 4 < self.names.len()
    }

    /// Renumbers the live ids densely, keeping their order (so every
    /// sorted list of numbers stays sorted after [`Interner::compact`]'s
    /// map is applied), and returns the map old -> new (`u32::MAX`: free).
    fn compact(&mut self) -> Vec<u32> {
        let mut map = vec![u32::MAX; self.names.len()];
        let mut names = Vec::with_capacity(self.len());
        let mut uses = Vec::with_capacity(self.len());
        let mut ids = FxHashMap::default();
        ids.reserve(self.len());
        for (old, name) in std::mem::take(&mut self.names).into_iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            map[old] = names.len() as u32;
            ids.insert(name.clone(), names.len() as u32);
            uses.push(self.uses[old]);
            names.push(name);
        }
        *self = Interner {
            ids,
            names,
            uses,
            free: Vec::new(),
        };
        map
    }

    fn heap_bytes(&self) -> usize {
        let names: usize = self.names.iter().map(|n| 2 * n.len()).sum();
        // Slots of names (16) and uses (4); map entries (key 16 + value 4
        // + control byte, about 1/0.875 load); free numbers (4).
        names + self.names.capacity() * 20 + self.ids.capacity() * 24 + self.free.capacity() * 4
    }
}

/// A cached value that is not known: the row must be read from its hash.
/// (A counter that really holds `i64::MIN` is then re-read every time:
/// correct, only not cached.)
pub const UNKNOWN: i64 = i64::MIN;

/// One day: its listing numbers, sorted, and their cached rows.
///
/// Rows are not kept in listing order: `rows[i]` is the row of `ids[i]`
/// in `values`. A new listing in the middle of a day then moves 8 bytes
/// per entry (its number and its row's number), not its whole row: a day
/// of 600,000 listings written in any order stays cheap to add to.
struct Day {
    ids: Vec<u32>,
    /// Empty (nothing cached for this day), or aligned with `ids`.
    rows: Vec<u32>,
    /// `stride` values per row; a row whose first value is [`UNKNOWN`] is
    /// not cached (free rows too).
    values: Vec<i64>,
    /// Rows no listing uses, for the next new one.
    free: Vec<u32>,
    /// The earliest expiry (ms since the epoch) seen among this day's
    /// hashes; `i64::MAX` for none.
    expires: i64,
}

impl Default for Day {
    fn default() -> Self {
        Day {
            ids: Vec::new(),
            rows: Vec::new(),
            values: Vec::new(),
            free: Vec::new(),
            expires: i64::MAX,
        }
    }
}

/// A listing of a cached day that has no row yet.
const NO_ROW: u32 = u32::MAX;

impl Day {
    fn cached(&self) -> bool {
        !self.rows.is_empty()
    }

    /// The values of the listing at position `at`, if it has a row.
    fn row(&self, at: usize, stride: usize) -> Option<&[i64]> {
        let r = *self.rows.get(at)?;
        if r == NO_ROW {
            return None;
        }
        let r = r as usize;
        self.values.get(r * stride..(r + 1) * stride)
    }

    fn row_mut(&mut self, at: usize, stride: usize) -> Option<&mut [i64]> {
        let r = *self.rows.get(at)?;
        if r == NO_ROW {
            return None;
        }
        let r = r as usize;
        self.values.get_mut(r * stride..(r + 1) * stride)
    }

    /// Marks the row at `at` unknown.
    fn forget(&mut self, at: usize, stride: usize) {
        if let Some(row) = self.row_mut(at, stride) {
            row[0] = UNKNOWN;
        }
    }

    /// Every row unknown: after its earliest expiry passed, each hash is
    /// read again (and reports its own expiry then).
    fn forget_all(&mut self, stride: usize) {
        for row in self.values.chunks_exact_mut(stride.max(1)) {
            row[0] = UNKNOWN;
        }
        self.expires = i64::MAX;
    }

    /// Starts caching this day: no listing has a row yet. The values get
    /// room for every listing, untouched until filled: a day of 600,000
    /// listings starts in one small step.
    fn start_cache(&mut self, stride: usize) {
        self.rows = vec![NO_ROW; self.ids.len()];
        self.values = Vec::with_capacity(self.ids.len() * stride);
        self.free = Vec::new();
    }

    /// Stops caching this day.
    fn drop_cache(&mut self) {
        self.rows = Vec::new();
        self.values = Vec::new();
        self.free = Vec::new();
        self.expires = i64::MAX;
    }

    /// The row of the listing at `at`, made (unknown) if it has none.
    fn make_row(&mut self, at: usize, stride: usize) -> &mut [i64] {
        if self.rows[at] == NO_ROW {
            self.rows[at] = match self.free.pop() {
                Some(r) => r,
                None => {
                    grow(&mut self.values, stride);
                    self.values.extend(std::iter::repeat_n(UNKNOWN, stride));
                    (self.values.len() / stride.max(1) - 1) as u32
                }
            };
        }
        let r = self.rows[at] as usize;
        &mut self.values[r * stride..(r + 1) * stride]
    }

    /// A new listing at position `at` of a cached day: no row until read.
    fn insert_row(&mut self, at: usize) {
        grow(&mut self.rows, 1);
        self.rows.insert(at, NO_ROW);
    }

    /// Frees the row of the listing at position `at` (the day is cached).
    /// When most rows are free, the day stops caching: queries refill it.
    fn remove_row(&mut self, at: usize, stride: usize) {
        let r = self.rows.remove(at);
        if r == NO_ROW {
            return;
        }
        if let Some(v) = self.values.get_mut(r as usize * stride) {
            *v = UNKNOWN;
        }
        self.free.push(r);
        if self.free.len() > 64 && self.free.len() > self.rows.len() {
            self.drop_cache();
        }
    }
}

/// Makes room for `extra` more items, growing by a sixteenth instead of
/// doubling: a day's lists are its memory, and a doubled list of 600,000
/// rows would leave megabytes unused. Still amortised O(1) per item.
fn grow<T>(list: &mut Vec<T>, extra: usize) {
    if list.len() + extra > list.capacity() {
        list.reserve_exact(list.len() / 16 + extra.max(16));
    }
}

/// The outcome of looking a cell up in the cache.
#[derive(Debug, PartialEq)]
pub enum Cached<'a> {
    /// The row's columns, exact.
    Row(&'a [i64]),
    /// Indexed, but its values must be read from the hash, then filled.
    Unknown,
    /// No day hash is indexed for it: when the index is current, there is
    /// none.
    Absent,
    /// The columns changed since the reader planned: read the hash, fill
    /// nothing.
    Stale,
}

/// One database's days, each with its sorted listing numbers.
#[derive(Default)]
pub struct DayIndex {
    days: BTreeMap<i32, Day>,
    entries: usize,
}

impl DayIndex {
    /// True when the entry is new; an existing entry's row becomes unknown
    /// (something wrote its hash).
    pub fn insert(&mut self, day: NaiveDate, listing: u32, stride: usize) -> bool {
        let entry = self.days.entry(day.num_days_from_ce()).or_default();
        match entry.ids.binary_search(&listing) {
            Ok(at) => {
                entry.forget(at, stride);
                false
            }
            Err(at) => {
                grow(&mut entry.ids, 1);
                entry.ids.insert(at, listing);
                if entry.cached() {
                    entry.insert_row(at);
                }
                self.entries += 1;
                true
            }
        }
    }

    /// True when the entry was there.
    pub fn remove(&mut self, day: NaiveDate, listing: u32, stride: usize) -> bool {
        let key = day.num_days_from_ce();
        let Some(entry) = self.days.get_mut(&key) else {
            return false;
        };
        let Ok(at) = entry.ids.binary_search(&listing) else {
            return false;
        };
        entry.ids.remove(at);
        if entry.cached() {
            entry.remove_row(at, stride);
        }
        self.entries -= 1;
        if entry.ids.is_empty() {
            self.days.remove(&key);
        } else if entry.ids.len() * 4 < entry.ids.capacity() && entry.ids.capacity() > 64 {
            entry.ids.shrink_to(entry.ids.len() * 2);
            entry.rows.shrink_to(entry.ids.len() * 2);
        }
        true
    }

    /// The day and position of an entry.
    fn find(&mut self, day: NaiveDate, listing: u32) -> Option<(&mut Day, usize)> {
        let entry = self.days.get_mut(&day.num_days_from_ce())?;
        let at = entry.ids.binary_search(&listing).ok()?;
        Some((entry, at))
    }

    /// Drops every cached value (the columns changed, or the cache is off).
    fn drop_values(&mut self) {
        for day in self.days.values_mut() {
            day.drop_cache();
        }
    }

    /// Every listing number of every day, for forgetting a database.
    fn all(&self) -> impl Iterator<Item = u32> + '_ {
        self.days.values().flat_map(|d| d.ids.iter().copied())
    }

    /// Applies a monotonic renumbering (see `Interner::compact`): the
    /// order, and so the rows' alignment, is kept.
    fn renumber(&mut self, map: &[u32]) {
        for day in self.days.values_mut() {
            for l in day.ids.iter_mut() {
                *l = map[*l as usize];
            }
        }
    }

    /// Every (day, listing) from `start` to `end`, both included.
    pub fn in_range(
        &self,
        start: NaiveDate,
        end: NaiveDate,
    ) -> impl Iterator<Item = (NaiveDate, u32)> + '_ {
        self.days
            .range(start.num_days_from_ce()..=end.num_days_from_ce())
            .flat_map(|(&d, entry)| {
                let day = NaiveDate::from_num_days_from_ce_opt(d).unwrap_or_default();
                entry.ids.iter().map(move |&l| (day, l))
            })
    }

    pub fn entries(&self) -> usize {
        self.entries
    }

    pub fn days(&self) -> usize {
        self.days.len()
    }

    /// Heap bytes used, roughly: list capacity plus map nodes, without
    /// the cached values.
    pub fn heap_bytes(&self) -> usize {
        self.days.values().map(|d| d.ids.capacity() * 4 + 64).sum()
    }

    /// Heap bytes of the cache: values, row numbers, free rows.
    pub fn cache_bytes(&self) -> usize {
        self.days
            .values()
            .map(|d| d.values.capacity() * 8 + (d.rows.capacity() + d.free.capacity()) * 4)
            .sum()
    }
}

/// Listing ids packed in one buffer: the names of a query (600,000 for a
/// big day) cost two allocations, not one each, to make and to free.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListingNames {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl ListingNames {
    /// Room for `names` more names of `bytes` bytes in all.
    pub fn reserve(&mut self, names: usize, bytes: usize) {
        self.ends.reserve(names);
        self.bytes.reserve(bytes);
    }

    /// Adds a name; returns its position.
    pub fn push(&mut self, name: &[u8]) -> u32 {
        self.bytes.extend_from_slice(name);
        self.ends.push(self.bytes.len());
        (self.ends.len() - 1) as u32
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl std::ops::Index<usize> for ListingNames {
    type Output = [u8];
    fn index(&self, i: usize) -> &[u8] {
        self.get(i)
    }
}

impl<'a> FromIterator<&'a [u8]> for ListingNames {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(iter: I) -> Self {
        let mut names = ListingNames::default();
        for name in iter {
            names.push(name);
        }
        names
    }
}

/// The cached columns: the terms (event names, then `/pattern/`s) the
/// registered metrics read, in the order of a [`crate::query::FieldPlan`]
/// of all of them.
#[derive(Default)]
struct Columns {
    /// Names this set of columns among all sets ever made in the process
    /// (0: none), so a query planned against one set never reads rows of
    /// another.
    version: u64,
    terms: Vec<Vec<u8>>,
    /// Whether any term is a pattern: a counter write then cannot tell
    /// which sums it changed, and marks its row unknown.
    patterns: bool,
}

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
    local: Local,
    pub names: ListingNames,
    pub cells: Vec<(NaiveDate, u32)>,
}

const NOT_MET: u32 = u32::MAX;

/// Listing number -> planner's number: a table by number (no hashing per
/// cell) when the query covers a good part of the numbers, else a map
/// (a small query in a big index allocates little).
enum Local {
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

    /// Plans up to `budget` more cells.
    pub fn step(&mut self, ix: &mut Index, budget: usize) -> Planned {
        if self.pinned != Some(ix.instance) {
            if self.pinned.is_some() {
                // Another index now: what was planned named the old one.
                *self = Planner::new_raw(self.db, self.start, self.end);
            }
            ix.pin();
            self.pinned = Some(ix.instance);
        }
        let mut taken = 0;
        if let Some(days) = ix.dbs.get(&self.db) {
            if self.cells.is_empty() {
                // Room for every cell now: a list of 600,000 grown step by
                // step would be copied whole in one step.
                let cells: usize = days
                    .days
                    .range(self.start..=self.end)
                    .map(|(_, e)| e.ids.len())
                    .sum();
                let names = cells.min(ix.listings.len());
                self.cells.reserve(cells);
                self.names.reserve(names, names * 8);
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
                for &global in &entry.ids[from..] {
                    if taken == budget {
                        self.day = d;
                        self.next_id = global;
                        return Planned::More;
                    }
                    let names = &mut self.names;
                    let at = self.local.get_or(global, ix.listings.names.len(), || {
                        names.push(ix.listings.name(global))
                    });
                    self.cells.push((day, at));
                    taken += 1;
                }
            }
        }
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
            cells: Vec::new(),
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

/// Where a pass over every indexed day hash is (see
/// [`Index::unknown_rows`]): a database, a day, the next listing number.
/// Nothing is pinned: if numbers are renumbered meanwhile, a pass may
/// visit some day hashes twice or not at all, which only a best-effort
/// pass (warming the cache) may accept.
#[derive(Debug, Clone)]
pub struct Pass {
    db: i32,
    day: i32,
    next_id: u32,
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

/// The index of every database.
pub struct Index {
    pub listings: Interner,
    dbs: FxHashMap<i32, DayIndex>,
    columns: Columns,
    /// Changes whenever a listing number may stop naming its listing (a
    /// number freed, renumbered, or the index replaced): a reader that
    /// remembered numbers forgets them then. Unique in the process.
    id_epoch: u64,
    /// Names this index among all made in the process (see [`Planner`]).
    instance: u64,
    /// Planners under way: while any is, no number is freed or renumbered
    /// (numbers whose last entry goes wait in `kept`).
    pins: u32,
    kept: Vec<u32>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            listings: Interner::default(),
            dbs: FxHashMap::default(),
            columns: Columns::default(),
            id_epoch: next_epoch(),
            instance: next_epoch(),
            pins: 0,
            kept: Vec::new(),
        }
    }
}

fn next_epoch() -> u64 {
    static EPOCHS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    EPOCHS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Index {
    /// Indexes a day hash, or (already indexed) marks its row unknown: a
    /// notification says it was written.
    pub fn add(&mut self, db: i32, day: NaiveDate, listing: &[u8]) {
        let stride = self.stride();
        let id = self.listings.intern(listing);
        if self.dbs.entry(db).or_default().insert(day, id, stride) {
            self.listings.used(id);
        }
    }

    pub fn remove(&mut self, db: i32, day: NaiveDate, listing: &[u8]) {
        let stride = self.stride();
        if let (Some(id), Some(days)) = (self.listings.get(listing), self.dbs.get_mut(&db)) {
            if days.remove(day, id, stride) {
                self.unused(id);
                self.compact_if_sparse();
            }
        }
    }

    /// Values per cached row; 0 when nothing is cached.
    fn stride(&self) -> usize {
        self.columns.terms.len()
    }

    /// Makes the cache hold exactly the terms `terms`, in any order (when
    /// `enabled`), or nothing. Columns are only ever replaced whole: a
    /// changed set drops every cached value (rows fill again as queries
    /// read them).
    /// `true` when the columns changed.
    pub fn set_columns(&mut self, enabled: bool, terms: &[Vec<u8>]) -> bool {
        let keep = if enabled {
            terms.len() == self.columns.terms.len()
                && terms.iter().all(|t| self.columns.terms.contains(t))
        } else {
            self.columns.terms.is_empty()
        };
        if keep {
            return false;
        }
        for days in self.dbs.values_mut() {
            days.drop_values();
        }
        static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        self.columns = if enabled {
            Columns {
                version: VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                terms: terms.to_vec(),
                patterns: terms.iter().any(|t| pattern_of(t).is_some()),
            }
        } else {
            Columns::default()
        };
        true
    }

    /// The cached column of a term.
    pub fn column(&self, term: &[u8]) -> Option<usize> {
        self.columns.terms.iter().position(|t| t == term)
    }

    /// The cached terms, in column order.
    pub fn columns(&self) -> &[Vec<u8>] {
        &self.columns.terms
    }

    /// The version of the current columns (0: none).
    pub fn columns_version(&self) -> u64 {
        self.columns.version
    }

    /// Appends to `out` up to `limit` more day hashes `(db, day, listing)`
    /// whose row is not cached, from `pass` on, looking at no more than
    /// `limit * 16` entries; `false` when the pass has reached the end.
    pub fn unknown_rows(
        &self,
        pass: &mut Pass,
        limit: usize,
        out: &mut Vec<(i32, NaiveDate, Vec<u8>)>,
    ) -> bool {
        let stride = self.stride();
        let mut dbs: Vec<i32> = self
            .dbs
            .keys()
            .copied()
            .filter(|&db| db >= pass.db)
            .collect();
        dbs.sort_unstable();
        let mut looked = 0usize;
        let start = out.len();
        for db in dbs {
            if db != pass.db {
                *pass = Pass {
                    db,
                    day: i32::MIN,
                    next_id: 0,
                };
            }
            for (&d, entry) in self.dbs[&db].days.range(pass.day..) {
                let from = if d == pass.day {
                    entry.ids.partition_point(|&id| id < pass.next_id)
                } else {
                    0
                };
                for (at, &id) in entry.ids.iter().enumerate().skip(from) {
                    if out.len() - start >= limit || looked >= limit.saturating_mul(16) {
                        pass.day = d;
                        pass.next_id = id;
                        return true;
                    }
                    looked += 1;
                    if entry.row(at, stride).is_none_or(|row| row[0] == UNKNOWN) {
                        let day = NaiveDate::from_num_days_from_ce_opt(d).unwrap_or_default();
                        out.push((db, day, self.listings.name(id).to_vec()));
                    }
                }
            }
            pass.db = db.saturating_add(1);
            pass.day = i32::MIN;
            pass.next_id = 0;
        }
        false
    }

    /// See the field `id_epoch`.
    pub fn id_epoch(&self) -> u64 {
        self.id_epoch
    }

    /// A cell's cached row by listing number (valid in this `id_epoch`).
    pub fn cached_at(
        &mut self,
        version: u64,
        db: i32,
        day: NaiveDate,
        id: u32,
        now_ms: i64,
    ) -> Cached<'_> {
        let stride = self.stride();
        if version != self.columns.version {
            return Cached::Stale;
        }
        let Some((entry, at)) = self.dbs.get_mut(&db).and_then(|d| d.find(day, id)) else {
            return Cached::Absent;
        };
        if entry.expires <= now_ms {
            entry.forget_all(stride);
        }
        match entry.row(at, stride) {
            Some(row) if stride > 0 && row[0] != UNKNOWN => Cached::Row(row),
            _ => Cached::Unknown,
        }
    }

    /// A cell's cached row, at time `now_ms`, for a reader of the columns
    /// of `version`.
    pub fn cached(
        &mut self,
        version: u64,
        db: i32,
        day: NaiveDate,
        listing: &[u8],
        now_ms: i64,
    ) -> Cached<'_> {
        match self.listings.get(listing) {
            Some(id) => self.cached_at(version, db, day, id, now_ms),
            None if version != self.columns.version => Cached::Stale,
            None => Cached::Absent,
        }
    }

    /// Stores a row just read from its hash (all columns of `version`, in
    /// order), and the hash's expiry.
    pub fn fill(
        &mut self,
        version: u64,
        db: i32,
        day: NaiveDate,
        listing: &[u8],
        row: &[i64],
        expires: Option<i64>,
    ) {
        let stride = self.stride();
        if stride == 0 || row.len() != stride || version != self.columns.version {
            return;
        }
        let Some(id) = self.listings.get(listing) else {
            return;
        };
        let Some((entry, at)) = self.dbs.get_mut(&db).and_then(|d| d.find(day, id)) else {
            return;
        };
        if !entry.cached() {
            entry.start_cache(stride);
        }
        entry.make_row(at, stride).copy_from_slice(row);
        if let Some(t) = expires {
            entry.expires = entry.expires.min(t);
        }
    }

    /// The module wrote counters of an indexed day hash (`(field, new
    /// value)` pairs): a cached row takes the values of its columns, or,
    /// when a pattern may sum one of them, becomes unknown.
    pub fn written(&mut self, db: i32, day: NaiveDate, listing: &[u8], fields: &[(&[u8], i64)]) {
        let stride = self.stride();
        if stride == 0 {
            return;
        }
        let Some(id) = self.listings.get(listing) else {
            return;
        };
        let Some((entry, at)) = self.dbs.get_mut(&db).and_then(|d| d.find(day, id)) else {
            return;
        };
        let Some(row) = entry.row_mut(at, stride) else {
            return;
        };
        if row[0] == UNKNOWN {
            return;
        }
        if self.columns.patterns {
            row[0] = UNKNOWN;
            return;
        }
        for &(field, value) in fields {
            if let Some(c) = self.columns.terms.iter().position(|t| t == field) {
                row[c] = value;
            }
        }
        if row[0] == UNKNOWN {
            // The first column really holds i64::MIN: not cacheable.
            row.fill(UNKNOWN);
        }
    }

    /// A notification that is not a hash write touched an indexed name
    /// (overwritten by another type, say): its row becomes unknown.
    pub fn forget(&mut self, db: i32, day: NaiveDate, listing: &[u8]) {
        let stride = self.stride();
        let Some(id) = self.listings.get(listing) else {
            return;
        };
        if let Some((entry, at)) = self.dbs.get_mut(&db).and_then(|d| d.find(day, id)) {
            entry.forget(at, stride);
        }
    }

    /// A day hash got an expiry: once it passes, the day is re-read.
    pub fn expires(&mut self, db: i32, day: NaiveDate, at_ms: i64) {
        if let Some(entry) = self
            .dbs
            .get_mut(&db)
            .and_then(|d| d.days.get_mut(&day.num_days_from_ce()))
        {
            entry.expires = entry.expires.min(at_ms);
        }
    }

    /// Renumbers the listings densely when most numbers are free: costs
    /// one pass over the entries, which are then few (under a quarter of
    /// the numbers), so its cost is paid for by the removals before it.
    fn compact_if_sparse(&mut self) {
        if self.pins == 0 && self.listings.sparse() {
            self.id_epoch = next_epoch();
            let map = self.listings.compact();
            for days in self.dbs.values_mut() {
                days.renumber(&map);
            }
        }
    }

    /// One entry fewer for listing number `id`.
    fn unused(&mut self, id: u32) {
        let pinned = self.pins > 0;
        if self.listings.unused(id, pinned) {
            self.id_epoch = next_epoch();
        } else if pinned && self.listings.uses[id as usize] == 0 {
            self.kept.push(id);
        }
    }

    fn pin(&mut self) {
        self.pins += 1;
    }

    /// The last planner done: numbers kept meanwhile are freed now (those
    /// still unused), and a sparse table compacted.
    fn unpin(&mut self) {
        self.pins = self.pins.saturating_sub(1);
        if self.pins > 0 {
            return;
        }
        let mut freed = false;
        for id in std::mem::take(&mut self.kept) {
            freed |= self.listings.release(id);
        }
        if freed {
            self.id_epoch = next_epoch();
        }
        self.compact_if_sparse();
    }

    /// Room for up to `keys` listing ids at once, for a rebuild about to
    /// scan that many keys (growing the map of 600,000 ids step by step
    /// would rehash them all in one step).
    pub fn reserve(&mut self, keys: usize) {
        self.listings.reserve(keys);
    }

    /// A rebuild is done: gives back what [`Index::reserve`] left unused,
    /// when that is cheap.
    pub fn trim(&mut self) {
        self.listings.trim();
    }

    pub fn db(&self, db: i32) -> Option<&DayIndex> {
        self.dbs.get(&db)
    }

    /// Forgets one database, or all (`None`).
    pub fn clear(&mut self, db: Option<i32>) {
        match db {
            Some(db) => {
                if let Some(days) = self.dbs.remove(&db) {
                    for id in days.all() {
                        self.unused(id);
                    }
                    self.compact_if_sparse();
                }
            }
            None => {
                // A new instance: planners pinned to this one start over.
                let columns = std::mem::take(&mut self.columns);
                *self = Index {
                    columns,
                    ..Index::default()
                };
            }
        }
    }

    pub fn swap(&mut self, a: i32, b: i32) {
        let (x, y) = (self.dbs.remove(&a), self.dbs.remove(&b));
        if let Some(x) = x {
            self.dbs.insert(b, x);
        }
        if let Some(y) = y {
            self.dbs.insert(a, y);
        }
    }

    pub fn entries(&self) -> usize {
        self.dbs.values().map(DayIndex::entries).sum()
    }

    pub fn heap_bytes(&self) -> usize {
        self.listings.heap_bytes() + self.dbs.values().map(DayIndex::heap_bytes).sum::<usize>()
    }

    /// Heap bytes of cached values.
    pub fn cache_bytes(&self) -> usize {
        self.dbs.values().map(DayIndex::cache_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::date::parse_day;

    fn d(s: &str) -> NaiveDate {
        parse_day(s.as_bytes()).unwrap()
    }

    #[test]
    fn adds_removes_and_ranges() {
        let mut ix = Index::default();
        ix.add(0, d("2015-12-31"), b"2155");
        ix.add(0, d("2015-12-31"), b"2155");
        ix.add(0, d("2016-01-01"), b"sku-a");
        ix.add(0, d("2015-12-30"), b"2155");
        ix.add(1, d("2015-12-31"), b"7");
        assert_eq!(ix.entries(), 4);
        let got: Vec<_> = ix
            .db(0)
            .unwrap()
            .in_range(d("2015-12-31"), d("2016-01-31"))
            .map(|(day, l)| (day, ix.listings.name(l).to_vec()))
            .collect();
        assert_eq!(
            got,
            [
                (d("2015-12-31"), b"2155".to_vec()),
                (d("2016-01-01"), b"sku-a".to_vec())
            ]
        );
        ix.remove(0, d("2015-12-31"), b"2155");
        ix.remove(0, d("2015-12-31"), b"unknown");
        assert_eq!(
            ix.db(0)
                .unwrap()
                .in_range(d("2015-12-31"), d("2015-12-31"))
                .count(),
            0
        );
        assert_eq!(ix.db(0).unwrap().days(), 2);
        ix.swap(0, 1);
        assert_eq!(ix.db(0).unwrap().entries(), 1);
        ix.clear(Some(1));
        assert!(ix.db(1).is_none());
        ix.clear(None);
        assert_eq!(ix.entries(), 0);
    }

    #[test]
    fn cells_name_each_listing_once() {
        let mut ix = Index::default();
        for (day, l) in [
            ("2015-12-31", "b"),
            ("2015-12-31", "a"),
            ("2016-01-01", "b"),
            ("2016-01-02", "c"),
        ] {
            ix.add(0, d(day), l.as_bytes());
        }
        ix.add(1, d("2015-12-31"), b"other-db");
        let cells_of = |ix: &mut Index, db| {
            let mut p = Planner::new(db, d("2015-12-31"), d("2016-01-01"));
            while p.step(ix, 1000) == Planned::More {}
            (p.names, p.cells)
        };
        let (names, cells) = cells_of(&mut ix, 0);
        let named: Vec<(NaiveDate, &[u8])> = cells
            .iter()
            .map(|&(day, i)| (day, &names[i as usize]))
            .collect();
        assert_eq!(names.len(), 2);
        assert_eq!(cells.len(), 3);
        assert!(named.contains(&(d("2016-01-01"), &b"b"[..])));
        assert!(!named.iter().any(|(_, n)| *n == b"c" || *n == b"other-db"));
        assert_eq!(cells_of(&mut ix, 7), (ListingNames::default(), vec![]));
    }

    #[test]
    fn memory_follows_what_is_indexed() {
        let mut ix = Index::default();
        let baseline = ix.heap_bytes();
        let day = d("2016-01-01");
        for i in 0..100_000 {
            ix.add(0, day, format!("short-lived-{i}").as_bytes());
        }
        ix.add(0, d("2016-01-02"), b"keeper");
        ix.add(1, day, b"short-lived-7");
        let peak = ix.heap_bytes();
        assert!(peak > 3_000_000, "{peak}");
        for i in 0..100_000 {
            ix.remove(0, day, format!("short-lived-{i}").as_bytes());
        }
        // Only "keeper" (db 0) and "short-lived-7" (db 1) are left.
        assert_eq!(ix.entries(), 2);
        assert_eq!(ix.listings.len(), 2);
        // What is left is bounded by a constant: compaction stops once the
        // table has at most 1024 numbers (~20 bytes each), whatever the peak.
        let after = ix.heap_bytes();
        assert!(after < baseline + 32 * 1024, "peak {peak}, after {after}");
        // Numbers were compacted; names and ranges still agree.
        let got: Vec<_> = ix
            .db(1)
            .unwrap()
            .in_range(day, day)
            .map(|(_, l)| ix.listings.name(l).to_vec())
            .collect();
        assert_eq!(got, [b"short-lived-7".to_vec()]);
        ix.clear(Some(1));
        assert_eq!(ix.listings.len(), 1);
        assert_eq!(
            ix.listings
                .get(b"keeper")
                .map(|id| ix.listings.name(id).to_vec()),
            Some(b"keeper".to_vec())
        );
    }

    #[test]
    fn compaction_keeps_every_list_sorted_and_named() {
        let mut ix = Index::default();
        let day = d("2016-01-01");
        let keep: Vec<String> = (0..3000)
            .filter(|i| i % 7 == 0)
            .map(|i| format!("l{i}"))
            .collect();
        for i in 0..3000 {
            ix.add(0, day, format!("l{i}").as_bytes());
            ix.add(0, d("2016-01-02"), format!("l{i}").as_bytes());
        }
        for i in (0..3000).filter(|i| i % 7 != 0) {
            ix.remove(0, day, format!("l{i}").as_bytes());
            ix.remove(0, d("2016-01-02"), format!("l{i}").as_bytes());
        }
        for day in [day, d("2016-01-02")] {
            let ids: Vec<u32> = ix
                .db(0)
                .unwrap()
                .in_range(day, day)
                .map(|(_, l)| l)
                .collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            let mut names: Vec<String> = ids
                .iter()
                .map(|&l| String::from_utf8(ix.listings.name(l).to_vec()).unwrap())
                .collect();
            names.sort();
            let mut want = keep.clone();
            want.sort();
            assert_eq!(names, want);
        }
        // Freed numbers are reused before the table grows.
        let before = ix.listings.names.len();
        ix.add(0, day, b"new-one");
        assert!(ix.listings.names.len() <= before.max(ix.listings.len()));
    }

    /// A small deterministic generator (no dependency for one test).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn terms(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    /// The cache against a plain model, through every kind of change:
    /// a row is served only when the model knows it, and exactly.
    #[test]
    fn cache_agrees_with_a_model_through_every_change() {
        use std::collections::HashMap;
        #[derive(Clone, Debug, PartialEq)]
        enum Model {
            Known(Vec<i64>),
            Unknown,
        }
        let cols = terms(&["imp", "clk", "atc", "buy"]);
        let mut ix = Index::default();
        ix.set_columns(true, &cols);
        let mut model: HashMap<(i32, NaiveDate, String), Model> = HashMap::new();
        let mut rng = Lcg(7);
        let base = d("2016-01-01");
        for step in 0..60_000u64 {
            let db = rng.next(2) as i32;
            let day = base + chrono::Days::new(rng.next(4));
            let listing = format!("l{}", rng.next(1500));
            let key = (db, day, listing.clone());
            match rng.next(10) {
                0..=2 => {
                    ix.add(db, day, listing.as_bytes());
                    model.insert(key, Model::Unknown);
                }
                3 => {
                    ix.remove(db, day, listing.as_bytes());
                    model.remove(&key);
                }
                4..=6 => {
                    let row: Vec<i64> = (0..4).map(|_| rng.next(1000) as i64).collect();
                    ix.fill(
                        ix.columns_version(),
                        db,
                        day,
                        listing.as_bytes(),
                        &row,
                        None,
                    );
                    if model.contains_key(&key) {
                        model.insert(key, Model::Known(row));
                    }
                }
                7 => {
                    let value = rng.next(1000) as i64;
                    let field = ["clk", "other", "buy"][rng.next(3) as usize];
                    ix.written(db, day, listing.as_bytes(), &[(field.as_bytes(), value)]);
                    if let Some(Model::Known(row)) = model.get_mut(&key) {
                        if let Some(c) = cols.iter().position(|t| t == field.as_bytes()) {
                            row[c] = value;
                        }
                    }
                }
                8 => {
                    ix.forget(db, day, listing.as_bytes());
                    if model.contains_key(&key) {
                        model.insert(key, Model::Unknown);
                    }
                }
                _ => {
                    // Many removals in a row: compaction renumbers.
                    for i in 0..rng.next(400) {
                        let l = format!("l{}", (i * 7 + step) % 1500);
                        ix.remove(db, day, l.as_bytes());
                        model.remove(&(db, day, l));
                    }
                }
            }
            if step % 5000 == 0 || step == 59_999 {
                for db in 0..2 {
                    for k in 0..4 {
                        let day = base + chrono::Days::new(k);
                        for l in 0..1500 {
                            let listing = format!("l{l}");
                            let got =
                                ix.cached(ix.columns_version(), db, day, listing.as_bytes(), 0);
                            let want = model.get(&(db, day, listing.clone()));
                            match (got, want) {
                                (Cached::Row(row), Some(Model::Known(w))) => {
                                    assert_eq!(row, &w[..])
                                }
                                (Cached::Unknown, Some(Model::Unknown)) => {}
                                (Cached::Absent, None) => {}
                                (got, want) => panic!("{db} {day} {listing}: {got:?} vs {want:?}"),
                            }
                        }
                    }
                }
                assert_eq!(ix.entries(), model.len());
            }
        }
    }

    /// What the cache holds for listing "a" on 2016-01-01 of db 0, read
    /// with the current columns.
    fn cached_a(ix: &mut Index) -> Cached<'_> {
        let v = ix.columns_version();
        ix.cached(v, 0, d("2016-01-01"), b"a", 0)
    }

    fn fill_a(ix: &mut Index, row: &[i64]) {
        let v = ix.columns_version();
        ix.fill(v, 0, d("2016-01-01"), b"a", row, None);
    }

    #[test]
    fn columns_change_only_for_a_new_term() {
        let mut ix = Index::default();
        ix.set_columns(true, &terms(&["imp", "clk"]));
        ix.add(0, d("2016-01-01"), b"a");
        fill_a(&mut ix, &[10, 2]);
        // The same terms, in any order, keep what is cached.
        ix.set_columns(true, &terms(&["clk", "imp"]));
        assert_eq!(cached_a(&mut ix), Cached::Row(&[10, 2]));
        assert_eq!(ix.column(b"clk"), Some(1));
        // A new term replaces the columns and drops the values; a reader
        // that planned with the old columns is told to read the hash, and
        // fills nothing.
        let old = ix.columns_version();
        ix.set_columns(true, &terms(&["imp", "clk", "/c.*/"]));
        assert_eq!(ix.cached(old, 0, d("2016-01-01"), b"a", 0), Cached::Stale);
        ix.fill(old, 0, d("2016-01-01"), b"a", &[1, 1, 1], None);
        assert_eq!(cached_a(&mut ix), Cached::Unknown);
        fill_a(&mut ix, &[10, 2, 12]);
        // With a pattern column, a counter write cannot be applied.
        ix.written(0, d("2016-01-01"), b"a", &[(b"clk", 3)]);
        assert_eq!(cached_a(&mut ix), Cached::Unknown);
        fill_a(&mut ix, &[10, 3, 13]);
        assert_eq!(cached_a(&mut ix), Cached::Row(&[10, 3, 13]));
        // Off: nothing cached, nothing kept.
        ix.set_columns(false, &[]);
        assert_eq!(cached_a(&mut ix), Cached::Unknown);
        assert_eq!(ix.cache_bytes(), 0);
        fill_a(&mut ix, &[1, 2, 3]);
        assert_eq!(ix.cache_bytes(), 0);
    }

    #[test]
    fn a_day_past_its_earliest_expiry_is_read_again() {
        let mut ix = Index::default();
        ix.set_columns(true, &terms(&["imp", "clk"]));
        let day = d("2016-01-01");
        for l in [&b"a"[..], b"b"] {
            ix.add(0, day, l);
            ix.fill(ix.columns_version(), 0, day, l, &[5, 1], None);
        }
        ix.fill(ix.columns_version(), 0, day, b"a", &[5, 1], Some(1_000));
        assert_eq!(
            ix.cached(ix.columns_version(), 0, day, b"b", 999),
            Cached::Row(&[5, 1])
        );
        // At 1000 both rows are unknown; the re-read of "b" (no expiry)
        // makes it cached again, "a" (gone) stays unknown.
        assert_eq!(
            ix.cached(ix.columns_version(), 0, day, b"b", 1_000),
            Cached::Unknown
        );
        assert_eq!(
            ix.cached(ix.columns_version(), 0, day, b"a", 1_000),
            Cached::Unknown
        );
        ix.fill(ix.columns_version(), 0, day, b"b", &[6, 1], None);
        assert_eq!(
            ix.cached(ix.columns_version(), 0, day, b"b", 5_000),
            Cached::Row(&[6, 1])
        );
        // An expiry set later (EXPIRE) counts too.
        ix.expires(0, day, 9_000);
        assert_eq!(
            ix.cached(ix.columns_version(), 0, day, b"b", 9_000),
            Cached::Unknown
        );
    }

    #[test]
    fn the_cache_costs_at_most_40_bytes_per_day_hash_for_four_counters() {
        let mut ix = Index::default();
        ix.set_columns(true, &terms(&["a", "b", "c", "d"]));
        for day in 0..10 {
            let day = d("2016-01-01") + chrono::Days::new(day);
            for l in 0..10_000 {
                let name = format!("{l}");
                ix.add(0, day, name.as_bytes());
                ix.fill(
                    ix.columns_version(),
                    0,
                    day,
                    name.as_bytes(),
                    &[1, 2, 3, 4],
                    None,
                );
            }
        }
        // Written as the worst case: every row cached as it arrives, so
        // every list grew step by step.
        let per_entry = |bytes: usize| bytes as f64 / ix.entries() as f64;
        let cache = per_entry(ix.cache_bytes());
        assert!(cache <= 40.0, "{cache}");
        // The index's own number per entry comes on top.
        let index = per_entry(ix.dbs.values().map(DayIndex::heap_bytes).sum::<usize>());
        assert!(index <= 6.0, "{index}");
    }

    #[test]
    fn the_id_epoch_changes_whenever_a_number_may_name_another_listing() {
        let mut ix = Index::default();
        let day = d("2016-01-01");
        ix.add(0, day, b"a");
        let e = ix.id_epoch();
        // New numbers and new entries keep every remembered number right.
        ix.add(0, day, b"b");
        ix.add(0, d("2016-01-02"), b"a");
        assert_eq!(ix.id_epoch(), e);
        // "a" still has an entry: its number stays.
        ix.remove(0, day, b"a");
        assert_eq!(ix.id_epoch(), e);
        // "b" is gone: its number may be reused.
        ix.remove(0, day, b"b");
        let e2 = ix.id_epoch();
        assert_ne!(e2, e);
        ix.clear(Some(0));
        assert_ne!(ix.id_epoch(), e2);
        let e3 = ix.id_epoch();
        ix.clear(None);
        assert_ne!(ix.id_epoch(), e3);
        // A compaction renumbers: the epoch moves too.
        for i in 0..3000 {
            ix.add(0, day, format!("l{i}").as_bytes());
        }
        let before = ix.id_epoch();
        for i in 0..2900 {
            ix.remove(0, day, format!("l{i}").as_bytes());
        }
        assert_ne!(ix.id_epoch(), before);
        let id = ix.listings.get(b"l2999").unwrap();
        let v = ix.columns_version();
        assert_eq!(ix.cached_at(v, 0, day, id, 0), Cached::Unknown);
    }

    #[test]
    fn rows_are_reused_and_a_mostly_free_day_stops_caching() {
        let mut ix = Index::default();
        ix.set_columns(true, &terms(&["a", "b"]));
        let v = ix.columns_version();
        let day = d("2016-01-01");
        let name = |i: i64| format!("{i:04}");
        for i in 0..200 {
            ix.add(0, day, name(i).as_bytes());
            ix.fill(v, 0, day, name(i).as_bytes(), &[i, -i], None);
        }
        // Removing some frees their rows; new listings (in the middle of
        // the order) take them, unknown until read.
        for i in (0..200).step_by(4) {
            ix.remove(0, day, name(i).as_bytes());
        }
        let bytes = ix.cache_bytes();
        for i in (0..200).step_by(4) {
            let late = format!("{i:04}x");
            ix.add(0, day, late.as_bytes());
            assert_eq!(ix.cached(v, 0, day, late.as_bytes(), 0), Cached::Unknown);
            ix.fill(v, 0, day, late.as_bytes(), &[7, 7], None);
        }
        assert_eq!(ix.cache_bytes(), bytes, "freed rows were not reused");
        for i in (1..200).filter(|i| i % 4 != 0) {
            assert_eq!(
                ix.cached(v, 0, day, name(i).as_bytes(), 0),
                Cached::Row(&[i, -i])
            );
        }
        assert_eq!(ix.cached(v, 0, day, b"0004x", 0), Cached::Row(&[7, 7]));
        // Most rows freed: the day stops caching, its entries stay.
        for i in 1..200 {
            ix.remove(0, day, name(i).as_bytes());
        }
        assert_eq!(ix.cached(v, 0, day, b"0004x", 0), Cached::Unknown);
        assert_eq!(ix.entries(), 50);
        ix.fill(v, 0, day, b"0004x", &[8, 8], None);
        assert_eq!(ix.cached(v, 0, day, b"0004x", 0), Cached::Row(&[8, 8]));
    }

    fn planned(p: &Planner) -> Vec<(NaiveDate, String)> {
        let mut v: Vec<_> = p
            .cells
            .iter()
            .map(|&(day, at)| {
                (
                    day,
                    String::from_utf8(p.names[at as usize].to_vec()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_planner_takes_each_cell_once_whatever_is_written_between_steps() {
        let mut ix = Index::default();
        let (a, b) = (d("2016-01-01"), d("2016-01-02"));
        for i in 0..100 {
            ix.add(0, a, format!("l{i}").as_bytes());
            ix.add(0, b, format!("l{i}").as_bytes());
        }
        ix.add(0, b, b"only-b");
        ix.add(1, a, b"other-db");
        let mut p = Planner::new(0, a, b);
        assert_eq!(p.step(&mut ix, 30), Planned::More);
        let epoch = ix.id_epoch();
        // Between steps: "only-b" loses its last entry (its number is kept
        // while pinned), "l5" leaves day b, a new listing arrives.
        ix.remove(0, b, b"only-b");
        ix.remove(0, b, b"l5");
        ix.add(0, b, b"new");
        for i in 0..60 {
            ix.remove(0, a, format!("l{i}").as_bytes());
        }
        assert_eq!(ix.id_epoch(), epoch, "a number was freed while pinned");
        while p.step(&mut ix, 30) == Planned::More {}
        assert!(!p.is_pinned());
        let got = planned(&p);
        let mut unique = got.clone();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "a cell was planned twice");
        // The first 30 cells (l0..l29 of day a) were taken before l0..l59
        // left day a: l60..l99 follow; day b
        // is taken after them: l5 and only-b are gone, "new" is there.
        assert_eq!(got.iter().filter(|(day, _)| *day == a).count(), 30 + 40);
        assert!(got.contains(&(b, "new".to_string())));
        assert!(!got.contains(&(b, "only-b".to_string())));
        assert!(!got.contains(&(b, "l5".to_string())));
        assert_eq!(got.iter().filter(|(day, _)| *day == b).count(), 100);
        // Unpinned: the kept number is freed now.
        assert_ne!(ix.id_epoch(), epoch);
        assert_eq!(ix.listings.get(b"only-b"), None);
    }

    #[test]
    fn a_planner_starts_over_on_a_new_index_and_releases_its_pin() {
        let mut ix = Index::default();
        let a = d("2016-01-01");
        for i in 0..50 {
            ix.add(0, a, format!("l{i}").as_bytes());
        }
        let mut p = Planner::new(0, a, a);
        assert_eq!(p.step(&mut ix, 10), Planned::More);
        ix.clear(None);
        ix.add(0, a, b"after-flush");
        while p.step(&mut ix, 10) == Planned::More {}
        assert_eq!(planned(&p), [(a, "after-flush".to_string())]);
        // Abandoned midway: release unpins, and frees wait no longer.
        for i in 0..50 {
            ix.add(0, a, format!("m{i}").as_bytes());
        }
        let mut q = Planner::new(0, a, a);
        q.step(&mut ix, 5);
        ix.remove(0, a, b"m1");
        assert!(ix.listings.get(b"m1").is_some());
        q.release(&mut ix);
        assert!(ix.listings.get(b"m1").is_none());
        assert!(!q.is_pinned());
    }

    #[test]
    fn a_small_query_in_a_big_index_plans_through_a_map() {
        let mut ix = Index::default();
        let (a, b) = (d("2016-01-01"), d("2016-01-02"));
        for i in 0..10_000 {
            ix.add(0, a, format!("l{i}").as_bytes());
        }
        for name in ["l9999", "l5", "zz"] {
            ix.add(0, b, name.as_bytes());
        }
        let mut p = Planner::new(0, b, b);
        while p.step(&mut ix, 2) == Planned::More {}
        assert!(matches!(p.local, Local::Map(_)));
        let got: Vec<String> = planned(&p).into_iter().map(|(_, n)| n).collect();
        assert_eq!(got, ["l5", "l9999", "zz"]);
    }

    #[test]
    fn a_pass_finds_every_row_not_cached() {
        let mut ix = Index::default();
        ix.set_columns(true, &terms(&["a", "b"]));
        let v = ix.columns_version();
        let mut want = Vec::new();
        for db in [0, 3] {
            for k in 0..3 {
                let day = d("0000-01-01") + chrono::Days::new(k * 1000 * 365);
                for i in 0..50 {
                    let name = format!("l{i}");
                    ix.add(db, day, name.as_bytes());
                    if i % 3 == 0 {
                        ix.fill(v, db, day, name.as_bytes(), &[1, 2], None);
                    } else {
                        want.push((db, day, name.into_bytes()));
                    }
                }
            }
        }
        let mut pass = Pass::default();
        let mut got = Vec::new();
        let mut calls = 0;
        while ix.unknown_rows(&mut pass, 7, &mut got) {
            calls += 1;
        }
        assert!(calls > 10, "{calls}");
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }
}
