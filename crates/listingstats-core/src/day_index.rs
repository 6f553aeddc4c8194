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

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use rustc_hash::FxHashMap;

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

    /// One use fewer; frees the number at 0.
    fn unused(&mut self, id: u32) {
        let uses = &mut self.uses[id as usize];
        *uses = uses.saturating_sub(1);
        if *uses == 0 {
            let name = std::mem::take(&mut self.names[id as usize]);
            self.ids.remove(&name);
            self.free.push(id);
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

/// One database's days, each with its sorted listing numbers.
#[derive(Default)]
pub struct DayIndex {
    days: BTreeMap<i32, Vec<u32>>,
    entries: usize,
}

impl DayIndex {
    /// True when the entry is new.
    pub fn insert(&mut self, day: NaiveDate, listing: u32) -> bool {
        let list = self.days.entry(day.num_days_from_ce()).or_default();
        match list.binary_search(&listing) {
            Ok(_) => false,
            Err(at) => {
                list.insert(at, listing);
                self.entries += 1;
                true
            }
        }
    }

    /// True when the entry was there.
    pub fn remove(&mut self, day: NaiveDate, listing: u32) -> bool {
        let key = day.num_days_from_ce();
        let Some(list) = self.days.get_mut(&key) else {
            return false;
        };
        let Ok(at) = list.binary_search(&listing) else {
            return false;
        };
        list.remove(at);
        self.entries -= 1;
        if list.is_empty() {
            self.days.remove(&key);
        } else if list.len() * 4 < list.capacity() && list.capacity() > 64 {
            list.shrink_to(list.len() * 2);
        }
        true
    }

    /// Every listing number of every day, for forgetting a database.
    fn all(&self) -> impl Iterator<Item = u32> + '_ {
        self.days.values().flatten().copied()
    }

    /// Applies a monotonic renumbering (see `Interner::compact`).
    fn renumber(&mut self, map: &[u32]) {
        for list in self.days.values_mut() {
            for l in list.iter_mut() {
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
            .flat_map(|(&d, list)| {
                let day = NaiveDate::from_num_days_from_ce_opt(d).unwrap_or_default();
                list.iter().map(move |&l| (day, l))
            })
    }

    pub fn entries(&self) -> usize {
        self.entries
    }

    pub fn days(&self) -> usize {
        self.days.len()
    }

    /// Heap bytes used, roughly: list capacity plus map nodes.
    pub fn heap_bytes(&self) -> usize {
        self.days.values().map(|l| l.capacity() * 4 + 48).sum()
    }
}

/// A query's cells: listing ids, and `(day, position in the ids)` per day
/// hash.
pub type Cells = (ListingNames, Vec<(NaiveDate, u32)>);

/// Listing ids packed in one buffer: the names of a query (600,000 for a
/// big day) cost two allocations, not one each, to make and to free.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListingNames {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl ListingNames {
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

/// The index of every database.
#[derive(Default)]
pub struct Index {
    pub listings: Interner,
    dbs: FxHashMap<i32, DayIndex>,
}

impl Index {
    pub fn add(&mut self, db: i32, day: NaiveDate, listing: &[u8]) {
        let id = self.listings.intern(listing);
        if self.dbs.entry(db).or_default().insert(day, id) {
            self.listings.used(id);
        }
    }

    pub fn remove(&mut self, db: i32, day: NaiveDate, listing: &[u8]) {
        if let (Some(id), Some(days)) = (self.listings.get(listing), self.dbs.get_mut(&db)) {
            if days.remove(day, id) {
                self.listings.unused(id);
                self.compact_if_sparse();
            }
        }
    }

    /// Renumbers the listings densely when most numbers are free: costs
    /// one pass over the entries, which are then few (under a quarter of
    /// the numbers), so its cost is paid for by the removals before it.
    fn compact_if_sparse(&mut self) {
        if self.listings.sparse() {
            let map = self.listings.compact();
            for days in self.dbs.values_mut() {
                days.renumber(&map);
            }
        }
    }

    pub fn db(&self, db: i32) -> Option<&DayIndex> {
        self.dbs.get(&db)
    }

    /// The cells of database `db` from `start` to `end`, both included: the
    /// listing ids they name (each once, numbered in order of first
    /// appearance) and `(day, number)` per day hash. A query plans from
    /// these; the index's own numbers never leave it.
    pub fn cells(&self, db: i32, start: NaiveDate, end: NaiveDate) -> Cells {
        let mut names = ListingNames::default();
        let mut cells = Vec::new();
        let mut local: FxHashMap<u32, u32> = FxHashMap::default();
        if let Some(days) = self.dbs.get(&db) {
            for (day, global) in days.in_range(start, end) {
                let at = *local
                    .entry(global)
                    .or_insert_with(|| names.push(self.listings.name(global)));
                cells.push((day, at));
            }
        }
        (names, cells)
    }

    /// Forgets one database, or all (`None`).
    pub fn clear(&mut self, db: Option<i32>) {
        match db {
            Some(db) => {
                if let Some(days) = self.dbs.remove(&db) {
                    for id in days.all() {
                        self.listings.unused(id);
                    }
                    self.compact_if_sparse();
                }
            }
            None => *self = Index::default(),
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
        let (names, cells) = ix.cells(0, d("2015-12-31"), d("2016-01-01"));
        let named: Vec<(NaiveDate, &[u8])> = cells
            .iter()
            .map(|&(day, i)| (day, &names[i as usize]))
            .collect();
        assert_eq!(names.len(), 2);
        assert_eq!(cells.len(), 3);
        assert!(named.contains(&(d("2016-01-01"), &b"b"[..])));
        assert!(!named.iter().any(|(_, n)| *n == b"c" || *n == b"other-db"));
        assert_eq!(
            ix.cells(7, d("2015-12-31"), d("2016-01-01")),
            (ListingNames::default(), vec![])
        );
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
}
