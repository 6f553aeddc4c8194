//! The query cache kept beside the index: its columns (the terms the
//! registered metrics read), and the rows it holds per day hash.

use super::columns::Columns;
use super::day::Cached;
use super::index::Index;
use super::planner::Pass;
use super::rows::UNKNOWN;

use chrono::NaiveDate;

use crate::metrics::pattern_of;

impl Index {
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

    /// A cell's cached row by listing number (valid in this `id_epoch`).
    /// `next` is the position the caller expects it at (it becomes the
    /// position after it): a reader going through a day's listings in
    /// index order makes no search while it is right (`usize::MAX`: no
    /// guess).
    pub fn cached_near(
        &mut self,
        version: u64,
        db: i32,
        day: NaiveDate,
        id: u32,
        now_ms: i64,
        next: &mut usize,
    ) -> Cached<'_> {
        let stride = self.stride();
        if version != self.columns.version {
            return Cached::Stale;
        }
        let Some((entry, at)) = self
            .dbs
            .get_mut(&db)
            .and_then(|d| d.find_near(day, id, *next))
        else {
            return Cached::Absent;
        };
        *next = at + 1;
        if entry.rows.expires <= now_ms {
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
            Some(id) => {
                let mut next = usize::MAX;
                self.cached_near(version, db, day, id, now_ms, &mut next)
            }
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
        entry.set_row(at, stride, row);
        if let Some(t) = expires {
            entry.rows.expires = entry.rows.expires.min(t);
        }
    }

    /// The module created a day hash with these counters (`(field,
    /// value)` pairs, all it holds): indexed, and on a cached day its row
    /// is known at once (0 for the columns not written), so the day's
    /// totals stay complete. With pattern columns the row stays unknown.
    pub fn created(&mut self, db: i32, day: NaiveDate, listing: &[u8], fields: &[(&[u8], i64)]) {
        self.add(db, day, listing);
        let stride = self.stride();
        if stride == 0 || self.columns.patterns {
            return;
        }
        let Some(id) = self.listings.get(listing) else {
            return;
        };
        let Some((entry, at)) = self.dbs.get_mut(&db).and_then(|d| d.find(day, id)) else {
            return;
        };
        if !entry.cached() {
            return;
        }
        let mut row: smallvec::SmallVec<[i64; 8]> = smallvec::smallvec![0; stride];
        for &(field, value) in fields {
            if let Some(c) = self.columns.terms.iter().position(|t| t == field) {
                row[c] = value;
            }
        }
        entry.set_row(at, stride, &row);
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
        let patterns = self.columns.patterns;
        let terms = &self.columns.terms;
        entry.update_row(at, stride, |row| {
            if row[0] == UNKNOWN {
                return;
            }
            if patterns {
                // A pattern column may sum one of the fields written.
                row[0] = UNKNOWN;
                return;
            }
            for &(field, value) in fields {
                if let Some(c) = terms.iter().position(|t| t == field) {
                    row[c] = value;
                }
            }
        });
    }
}
