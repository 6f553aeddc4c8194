//! A query's cells: the day hashes it reads, a grid or a list.

use super::order::ListingKey;

use chrono::{Datelike, NaiveDate};

use crate::day_index::ListingNames;

/// A query's cells: `(day, listing position)` per day hash to read, in
/// the order they are read.
pub enum Cells {
    /// A `*` query's, copied out of the index.
    List(Vec<(NaiveDate, u32)>),
    /// An explicit set's: every listing on every day, day by day, the
    /// listings in listing order. Never made into a list: 10 listings over
    /// the years 0000-9999 are 36.5 million cells, and a query's memory
    /// follows its answer, not the cells it covers.
    Grid {
        first: i32,
        days: usize,
        order: Vec<u32>,
    },
}

impl Default for Cells {
    fn default() -> Self {
        Cells::List(Vec::new())
    }
}

impl Cells {
    /// Every listing of `names` on every day from `start` to `end`.
    pub fn grid(start: NaiveDate, end: NaiveDate, names: &ListingNames) -> Cells {
        let mut order: Vec<u32> = (0..names.len() as u32).collect();
        order.sort_by(|&a, &b| {
            ListingKey::of(&names[a as usize]).cmp(&ListingKey::of(&names[b as usize]))
        });
        Cells::Grid {
            first: start.num_days_from_ce(),
            days: usize::try_from(end.num_days_from_ce() - start.num_days_from_ce() + 1)
                .unwrap_or(0),
            order,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Cells::List(list) => list.len(),
            Cells::Grid { days, order, .. } => days * order.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cell `i` (`i < len()`).
    pub fn get(&self, i: usize) -> (NaiveDate, u32) {
        match self {
            Cells::List(list) => list[i],
            Cells::Grid { first, order, .. } => {
                let day = *first + (i / order.len()) as i32;
                (
                    NaiveDate::from_num_days_from_ce_opt(day).unwrap_or_default(),
                    order[i % order.len()],
                )
            }
        }
    }
}
