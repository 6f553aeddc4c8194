//! TOP: the best `n` listings by value or by Wilson bound, picked in chunks.

use super::aggregate::{Aggregator, Row};
use super::args::Rank;
use super::fields::FieldPlan;
use super::order::listing_cmp;
use super::wilson::wilson_lower;
use std::cmp::Ordering;

use crate::error::{Error, Result};

/// TOP: the `n` listings with the highest value, among those whose
/// denominator is at least `min_denominator`; ties by listing order.
/// Rows must come from a GROUPBY LISTING aggregation of one metric.
/// A row of TOP: the metric's row and, with `RANK WILSON`, its bound
/// (scaled like the metric).
pub struct Ranked {
    pub row: Row,
    pub bound: Option<f64>,
}

/// The best `n` rows by `rank`, ties by listing order. With `RANK WILSON`
/// every row must be a proportion (numerator <= denominator): one that is
/// not makes the whole ranking an error, naming it. The plain statement of
/// TOP, kept as the reference [`TopPicker`] is tested against; the command
/// runs the picker.
#[cfg(test)]
pub fn top(
    rows: Vec<Row>,
    n: usize,
    min_denominator: i64,
    rank: Rank,
    scale: f64,
) -> Result<Vec<Ranked>> {
    let mut ranked: Vec<Ranked> = Vec::with_capacity(rows.len());
    for row in rows {
        if row.denominator < min_denominator || row.value.is_none() {
            continue;
        }
        let bound = match rank {
            Rank::Value => None,
            Rank::Wilson { z } => Some(
                wilson_lower(row.numerator, row.denominator, z).ok_or_else(|| {
                    Error::invalid(format!(
                        "RANK WILSON needs a proportion (0 <= numerator <= denominator); listing {} has {}/{}",
                        crate::error::quote(row.listing.as_deref().unwrap_or_default()),
                        row.numerator,
                        row.denominator
                    ))
                })? * scale,
            ),
        };
        ranked.push(Ranked { row, bound });
    }
    ranked.sort_by(|a, b| {
        let key = |r: &Ranked| r.bound.or(r.row.value).unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a)).then_with(|| {
            listing_cmp(
                a.row.listing.as_deref().unwrap_or_default(),
                b.row.listing.as_deref().unwrap_or_default(),
            )
        })
    });
    ranked.truncate(n);
    Ok(ranked)
}

/// The error of a `RANK WILSON` ranking that met a listing whose metric is
/// not a proportion.
pub fn not_a_proportion(listing: &[u8], numerator: i64, denominator: i64) -> Error {
    Error::invalid(format!(
        "RANK WILSON needs a proportion (0 <= numerator <= denominator); listing {} has {}/{}",
        crate::error::quote(listing),
        numerator,
        denominator
    ))
}

/// TOP over an aggregation without building every row: the groups are
/// considered a chunk at a time (the command layer feeds chunks between
/// slices, so a day of 600,000 listings never holds the server for long),
/// and only the best are kept; rows are made for the `n` winners alone.
/// Gives exactly what the reference `top` gives on every row (a test
/// compares).
pub struct TopPicker {
    n: usize,
    min_denominator: i64,
    rank: Rank,
    scale: f64,
    /// The next group to consider.
    next: usize,
    /// (rank key, group) of the best seen so far; trimmed back to `n`
    /// whenever it doubles.
    kept: Vec<(f64, usize)>,
    /// The first group in listing order that is not a proportion, under
    /// `RANK WILSON` (the whole ranking is then an error naming it).
    bad: Option<usize>,
}

impl TopPicker {
    pub fn new(n: usize, min_denominator: i64, rank: Rank, scale: f64) -> TopPicker {
        TopPicker {
            n,
            min_denominator,
            rank,
            scale,
            next: 0,
            kept: Vec::new(),
            bad: None,
        }
    }

    /// Considers up to `count` more groups of `agg` (a GROUPBY LISTING
    /// aggregation of one metric); `true` once every group is considered.
    pub fn feed(&mut self, agg: &Aggregator, plan: &FieldPlan, count: usize) -> bool {
        let Some(&(num_at, den_at)) = plan.slots.first() else {
            self.next = agg.keys.len();
            return true;
        };
        let end = agg.keys.len().min(self.next.saturating_add(count));
        for g in self.next..end {
            let sums = agg.group_sums(g);
            let (numerator, denominator) = (sums[num_at], sums[den_at]);
            if denominator < self.min_denominator || denominator == 0 {
                continue;
            }
            let key = match self.rank {
                Rank::Value => numerator as f64 / denominator as f64 * self.scale,
                Rank::Wilson { z } => match wilson_lower(numerator, denominator, z) {
                    Some(bound) => bound * self.scale,
                    None => {
                        let earlier = self.bad.is_some_and(|b| {
                            listing_cmp(agg.group_listing(b), agg.group_listing(g))
                                != Ordering::Greater
                        });
                        if !earlier {
                            self.bad = Some(g);
                        }
                        continue;
                    }
                },
            };
            self.kept.push((key, g));
            if self.kept.len() >= self.n.max(1).saturating_mul(2).max(1024) {
                self.trim(agg);
            }
        }
        self.next = end;
        self.next == agg.keys.len()
    }

    /// Best first: the higher key, then the earlier listing.
    fn order(agg: &Aggregator, a: &(f64, usize), b: &(f64, usize)) -> Ordering {
        b.0.total_cmp(&a.0)
            .then_with(|| listing_cmp(agg.group_listing(a.1), agg.group_listing(b.1)))
    }

    fn trim(&mut self, agg: &Aggregator) {
        if self.kept.len() > self.n {
            if self.n > 0 {
                self.kept
                    .select_nth_unstable_by(self.n - 1, |a, b| TopPicker::order(agg, a, b));
            }
            self.kept.truncate(self.n);
        }
    }

    /// Under `RANK WILSON`, the first listing (in listing order) that is
    /// not a proportion, with its sums: the ranking is then an error.
    pub fn first_bad<'a>(
        &self,
        agg: &'a Aggregator,
        plan: &FieldPlan,
    ) -> Option<(&'a [u8], i64, i64)> {
        let g = self.bad?;
        let sums = agg.group_sums(g);
        let (num_at, den_at) = plan.slots[0];
        Some((agg.group_listing(g), sums[num_at], sums[den_at]))
    }

    /// The ranking, once [`TopPicker::feed`] said every group was seen.
    pub fn finish(mut self, agg: &Aggregator, plan: &FieldPlan) -> Result<Vec<Ranked>> {
        if let Some((listing, numerator, denominator)) = self.first_bad(agg, plan) {
            return Err(not_a_proportion(listing, numerator, denominator));
        }
        self.trim(agg);
        self.kept.sort_by(|a, b| TopPicker::order(agg, a, b));
        let mut out = Vec::with_capacity(self.kept.len());
        let mut rows = Vec::new();
        for &(key, g) in &self.kept {
            rows.clear();
            agg.group_rows(plan, g, &mut rows);
            if let Some(row) = rows.pop() {
                let bound = matches!(self.rank, Rank::Wilson { .. }).then_some(key);
                out.push(Ranked { row, bound });
            }
        }
        Ok(out)
    }
}
