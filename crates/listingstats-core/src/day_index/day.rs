//! One database's days: each day's sorted listing numbers, and beside them
//! the cached rows of those that have one (`rows.rs`).

use std::collections::BTreeMap;

use super::rows::{grow, DayRows};
use chrono::{Datelike, NaiveDate};

/// One day: its listing numbers, sorted, and (the query cache's part,
/// [`DayRows`]) the cached rows of those that have one.
#[derive(Default)]
pub(super) struct Day {
    pub(super) ids: Vec<u32>,
    pub(super) rows: DayRows,
}

impl Day {
    pub(super) fn cached(&self) -> bool {
        self.rows.is_on()
    }

    /// The values of the listing at position `at`, if it has a row.
    pub(super) fn row(&self, at: usize, stride: usize) -> Option<&[i64]> {
        self.rows.row(at, stride)
    }

    /// Changes the row at `at`, if it has one (see [`DayRows::update`]).
    pub(super) fn update_row(&mut self, at: usize, stride: usize, f: impl FnOnce(&mut [i64])) {
        self.rows.update(at, stride, f);
    }

    /// Marks the row at `at` unknown.
    pub(super) fn forget(&mut self, at: usize, stride: usize) {
        self.rows.forget(at, stride);
    }

    /// Every row unknown (see [`DayRows::forget_all`]).
    pub(super) fn forget_all(&mut self, stride: usize) {
        self.rows.forget_all(stride);
    }

    /// Starts caching this day: no listing has a row yet.
    pub(super) fn start_cache(&mut self, stride: usize) {
        self.rows.start(self.ids.len(), stride);
    }

    /// Stops caching this day.
    fn drop_cache(&mut self) {
        self.rows.clear();
    }

    /// Sets the row of the listing at `at` (made if it has none).
    pub(super) fn set_row(&mut self, at: usize, stride: usize, values: &[i64]) {
        self.rows.set(at, stride, values);
    }

    /// A new listing at position `at` of a cached day: no row until read.
    fn insert_row(&mut self, at: usize) {
        self.rows.insert(at);
    }

    /// The listing at position `at` is gone (the day is cached).
    fn remove_row(&mut self, at: usize, stride: usize) {
        self.rows.remove(at, stride);
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
    pub(super) days: BTreeMap<i32, Day>,
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
    pub(super) fn find(&mut self, day: NaiveDate, listing: u32) -> Option<(&mut Day, usize)> {
        self.find_near(day, listing, usize::MAX)
    }

    /// [`DayIndex::find`] that first tries position `hint` (a reader going
    /// through a day's listings in order passes the position after the
    /// last it found: no search then).
    pub(super) fn find_near(
        &mut self,
        day: NaiveDate,
        listing: u32,
        hint: usize,
    ) -> Option<(&mut Day, usize)> {
        let entry = self.days.get_mut(&day.num_days_from_ce())?;
        let at = if entry.ids.get(hint) == Some(&listing) {
            hint
        } else {
            entry.ids.binary_search(&listing).ok()?
        };
        Some((entry, at))
    }

    /// Drops every cached value (the columns changed, or the cache is off).
    pub(super) fn drop_values(&mut self) {
        for day in self.days.values_mut() {
            day.drop_cache();
        }
    }

    /// Every listing number of every day, for forgetting a database.
    pub(super) fn all(&self) -> impl Iterator<Item = u32> + '_ {
        self.days.values().flat_map(|d| d.ids.iter().copied())
    }

    /// Applies a monotonic renumbering (see `Interner::compact`): the
    /// order, and so the rows' alignment, is kept.
    pub(super) fn renumber(&mut self, map: &[u32]) {
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

    /// How many (day, listing) there are from `start` to `end`: O(days).
    pub fn count_in_range(&self, start: NaiveDate, end: NaiveDate) -> usize {
        self.days
            .range(start.num_days_from_ce()..=end.num_days_from_ce())
            .map(|(_, d)| d.ids.len())
            .sum()
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
        self.days.values().map(|d| d.rows.heap_bytes()).sum()
    }
}
