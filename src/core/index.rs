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

/// Interned listing ids.
#[derive(Default)]
pub struct Interner {
    ids: FxHashMap<Box<[u8]>, u32>,
    names: Vec<Box<[u8]>>,
}

impl Interner {
    pub fn intern(&mut self, listing: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(listing) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(listing.into(), id);
        self.names.push(listing.into());
        id
    }

    pub fn get(&self, listing: &[u8]) -> Option<u32> {
        self.ids.get(listing).copied()
    }

    pub fn name(&self, id: u32) -> &[u8] {
        &self.names[id as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One database's days, each with its sorted listing numbers.
#[derive(Default)]
pub struct DayIndex {
    days: BTreeMap<i32, Vec<u32>>,
    entries: usize,
}

impl DayIndex {
    pub fn insert(&mut self, day: NaiveDate, listing: u32) {
        let list = self.days.entry(day.num_days_from_ce()).or_default();
        if let Err(at) = list.binary_search(&listing) {
            list.insert(at, listing);
            self.entries += 1;
        }
    }

    pub fn remove(&mut self, day: NaiveDate, listing: u32) {
        let key = day.num_days_from_ce();
        if let Some(list) = self.days.get_mut(&key) {
            if let Ok(at) = list.binary_search(&listing) {
                list.remove(at);
                self.entries -= 1;
                if list.is_empty() {
                    self.days.remove(&key);
                }
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

/// The index of every database.
#[derive(Default)]
pub struct Index {
    pub listings: Interner,
    dbs: FxHashMap<i32, DayIndex>,
}

impl Index {
    pub fn add(&mut self, db: i32, day: NaiveDate, listing: &[u8]) {
        let id = self.listings.intern(listing);
        self.dbs.entry(db).or_default().insert(day, id);
    }

    pub fn remove(&mut self, db: i32, day: NaiveDate, listing: &[u8]) {
        if let (Some(id), Some(days)) = (self.listings.get(listing), self.dbs.get_mut(&db)) {
            days.remove(day, id);
        }
    }

    pub fn db(&self, db: i32) -> Option<&DayIndex> {
        self.dbs.get(&db)
    }

    /// Forgets one database, or all (`None`).
    pub fn clear(&mut self, db: Option<i32>) {
        match db {
            Some(db) => {
                self.dbs.remove(&db);
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
        let names: usize = self.listings.names.iter().map(|n| n.len() + 16 + 24).sum();
        names + self.dbs.values().map(DayIndex::heap_bytes).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::date::parse_day;

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
}
