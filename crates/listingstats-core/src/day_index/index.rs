//! The index of every database: adding, removing, numbering, memory.

use super::columns::Columns;
use super::day::DayIndex;
use super::interner::Interner;

use chrono::{Datelike, NaiveDate};
use rustc_hash::FxHashMap;

/// The index of every database.
pub struct Index {
    pub listings: Interner,
    pub(super) dbs: FxHashMap<i32, DayIndex>,
    pub(super) columns: Columns,
    /// Changes whenever a listing number may stop naming its listing (a
    /// number freed, renumbered, or the index replaced): a reader that
    /// remembered numbers forgets them then. Unique in the process.
    pub(super) id_epoch: u64,
    /// Names this index among all made in the process (see [`Planner`]).
    pub(super) instance: u64,
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
    /// See the field `id_epoch`.
    pub fn id_epoch(&self) -> u64 {
        self.id_epoch
    }

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
    pub(super) fn stride(&self) -> usize {
        self.columns.terms.len()
    }
}

impl Index {
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
            entry.rows.expires = entry.rows.expires.min(at_ms);
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
    pub(super) fn unused(&mut self, id: u32) {
        let pinned = self.pins > 0;
        if self.listings.unused(id, pinned) {
            self.id_epoch = next_epoch();
        } else if pinned && self.listings.uses[id as usize] == 0 {
            self.kept.push(id);
        }
    }

    pub(super) fn pin(&mut self) {
        self.pins += 1;
    }

    /// The last planner done: numbers kept meanwhile are freed now (those
    /// still unused), and a sparse table compacted.
    pub(super) fn unpin(&mut self) {
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
