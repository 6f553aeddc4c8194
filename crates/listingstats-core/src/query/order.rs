//! Listing order, and the stepwise sorts that put a `*` query's cells in
//! output order without holding the server.

use std::cmp::Ordering;

use chrono::{Datelike, NaiveDate};

use crate::day_index::ListingNames;

/// A listing id's place in [`listing_cmp`]'s order, computed once: derived
/// `Ord` compares the fields in order. Numeric ids come first (class 0), by
/// their digits without leading zeros (shorter is smaller; up to 38 digits
/// as a number, longer ones by their digits), then by the whole id; the
/// others (class 1) by their bytes.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListingKey<'a> {
    class: u8,
    digits: usize,
    value: u128,
    stripped: &'a [u8],
    whole: &'a [u8],
}

impl<'a> ListingKey<'a> {
    pub fn of(id: &'a [u8]) -> ListingKey<'a> {
        if id.iter().all(u8::is_ascii_digit) {
            let zeros = id.iter().take_while(|&&d| d == b'0').count();
            let stripped = &id[zeros..];
            let value = if stripped.len() <= 38 {
                stripped
                    .iter()
                    .fold(0u128, |v, &d| v * 10 + u128::from(d - b'0'))
            } else {
                0
            };
            ListingKey {
                class: 0,
                digits: stripped.len(),
                value,
                stripped,
                whole: id,
            }
        } else {
            ListingKey {
                class: 1,
                digits: 0,
                value: 0,
                stripped: &[],
                whole: id,
            }
        }
    }
}

/// Listing order: numeric ids by number, then the others byte-wise.
pub fn listing_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let numeric = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match (numeric(a), numeric(b)) {
        (true, true) => {
            let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&d| d == b'0').count() };
            let (ta, tb) = (&a[strip(a)..], &b[strip(b)..]);
            ta.len()
                .cmp(&tb.len())
                .then_with(|| ta.cmp(tb))
                .then_with(|| a.cmp(b))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

/// [`CellOrdering`] in one go (tests: the reference it is checked against).
#[cfg(test)]
pub fn order_cells(names: &ListingNames, cells: &mut [(NaiveDate, u32)]) {
    let mut ordering = CellOrdering::new(names.len(), cells.len());
    while !ordering.step(names, cells, usize::MAX) {}
}

/// A merge sort that runs in bounded steps: sorted runs of 1,024
/// items first, then bottom-up merges, each step doing about `budget`
/// items of work, so a sort of 600,000 items never holds the server.
pub struct SlicedSort<T> {
    items: Vec<T>,
    buf: Vec<T>,
    /// Initial runs sorted so far.
    runs: usize,
    /// Merge width, the pair being merged (from `lo`), and where in it.
    width: usize,
    lo: usize,
    i: usize,
    j: usize,
}

const RUN: usize = 1024;

impl<T: Copy> SlicedSort<T> {
    pub fn new(items: Vec<T>) -> Self {
        SlicedSort {
            buf: items.clone(),
            items,
            runs: 0,
            width: RUN,
            lo: 0,
            i: 0,
            j: RUN,
        }
    }

    /// About `budget` items of work; `true` when sorted.
    pub fn step(&mut self, budget: usize, less: impl Fn(&T, &T) -> bool) -> bool {
        let n = self.items.len();
        let mut work = 0usize;
        while self.runs * RUN < n {
            let a = self.runs * RUN;
            let b = (a + RUN).min(n);
            self.items[a..b].sort_unstable_by(|x, y| {
                if less(x, y) {
                    std::cmp::Ordering::Less
                } else if less(y, x) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            });
            self.runs += 1;
            work += (b - a) * 12;
            if work >= budget {
                return false;
            }
        }
        while self.width < n {
            let mid = (self.lo + self.width).min(n);
            let hi = (self.lo + 2 * self.width).min(n);
            while self.i < mid && self.j < hi {
                let k = self.i + self.j - mid;
                if less(&self.items[self.j], &self.items[self.i]) {
                    self.buf[k] = self.items[self.j];
                    self.j += 1;
                } else {
                    self.buf[k] = self.items[self.i];
                    self.i += 1;
                }
                work += 1;
                if work >= budget {
                    return false;
                }
            }
            let k = self.i + self.j - mid;
            let rest = if self.i < mid {
                self.i..mid
            } else {
                self.j..hi
            };
            let len = rest.len();
            self.buf[k..k + len].copy_from_slice(&self.items[rest]);
            work += len / 8;
            self.lo = hi;
            if self.lo >= n {
                std::mem::swap(&mut self.items, &mut self.buf);
                self.width *= 2;
                self.lo = 0;
            }
            self.i = self.lo;
            self.j = (self.lo + self.width).min(n);
        }
        true
    }

    pub fn into_sorted(self) -> Vec<T> {
        self.items
    }
}

/// Orders a query's cells by day, then listing order (numeric ids by
/// number...), the order rows are replied in, in bounded steps: the
/// names are sorted (their keys computed as compared), ranked, then the
/// cells sorted as one integer each, day in the high half (offset: year 0
/// is negative days), listing rank in the low half, and written back.
pub struct CellOrdering {
    stage: Stage,
    /// Where the current chunked stage is.
    next: usize,
    names: Option<SlicedSort<u32>>,
    by_order: Vec<u32>,
    rank: Vec<u32>,
    keyed: Vec<u64>,
    cells: Option<SlicedSort<u64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    SortNames,
    Rank,
    Key,
    SortCells,
    Write,
    Done,
}

const DAY_OFFSET: i64 = 1 << 20;

impl CellOrdering {
    pub fn new(names: usize, cells: usize) -> CellOrdering {
        CellOrdering {
            stage: Stage::SortNames,
            next: 0,
            names: Some(SlicedSort::new((0..names as u32).collect())),
            by_order: Vec::new(),
            rank: Vec::new(),
            keyed: Vec::with_capacity(cells),
            cells: None,
        }
    }

    /// About `budget` items of work; `true` when `cells` are in order.
    pub fn step(
        &mut self,
        names: &ListingNames,
        cells: &mut [(NaiveDate, u32)],
        budget: usize,
    ) -> bool {
        // The end of a chunk of `budget` items from `next`, of `len`.
        let chunk = |next: usize, len: usize| next.saturating_add(budget.max(1)).min(len);
        match self.stage {
            Stage::SortNames => {
                let Some(sort) = &mut self.names else {
                    return false;
                };
                let key = |i: &u32| ListingKey::of(&names[*i as usize]);
                if sort.step(budget, |a, b| key(a) < key(b)) {
                    self.by_order = self
                        .names
                        .take()
                        .map(SlicedSort::into_sorted)
                        .unwrap_or_default();
                    self.rank = vec![0u32; self.by_order.len()];
                    self.stage = Stage::Rank;
                    self.next = 0;
                }
            }
            Stage::Rank => {
                let end = chunk(self.next, self.by_order.len());
                for r in self.next..end {
                    self.rank[self.by_order[r] as usize] = r as u32;
                }
                self.next = end;
                if end == self.by_order.len() {
                    self.stage = Stage::Key;
                    self.next = 0;
                }
            }
            Stage::Key => {
                let end = chunk(self.next, cells.len());
                self.keyed
                    .extend(cells[self.next..end].iter().map(|&(day, i)| {
                        (((day.num_days_from_ce() as i64 + DAY_OFFSET) as u64) << 32)
                            | u64::from(self.rank[i as usize])
                    }));
                self.next = end;
                if end == cells.len() {
                    self.cells = Some(SlicedSort::new(std::mem::take(&mut self.keyed)));
                    self.rank = Vec::new();
                    self.stage = Stage::SortCells;
                }
            }
            Stage::SortCells => {
                let Some(sort) = &mut self.cells else {
                    return false;
                };
                if sort.step(budget, |a, b| a < b) {
                    self.keyed = self
                        .cells
                        .take()
                        .map(SlicedSort::into_sorted)
                        .unwrap_or_default();
                    self.stage = Stage::Write;
                    self.next = 0;
                }
            }
            Stage::Write => {
                let end = chunk(self.next, cells.len());
                for (cell, &k) in cells[self.next..end]
                    .iter_mut()
                    .zip(&self.keyed[self.next..end])
                {
                    let day = NaiveDate::from_num_days_from_ce_opt(
                        ((k >> 32) as i64 - DAY_OFFSET) as i32,
                    )
                    .unwrap_or_default();
                    *cell = (day, self.by_order[(k & 0xffff_ffff) as usize]);
                }
                self.next = end;
                if end == cells.len() {
                    self.stage = Stage::Done;
                }
            }
            Stage::Done => {}
        }
        self.stage == Stage::Done
    }
}
