//! Summing day hashes into groups and making rows: ratios of sums, never
//! averages of ratios.

use super::args::GroupBy;
use super::fields::FieldPlan;
use super::order::listing_cmp;
use std::cmp::Ordering;

use rustc_hash::FxHashMap;

use chrono::NaiveDate;

use crate::day_index::ListingNames;
use crate::error::{quote, Error, Result};

/// One output row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub metric: usize,
    pub date: Option<NaiveDate>,
    /// GROUPBY HOUR: the hour (hours since the epoch); `date` is `None`.
    pub hour: Option<i64>,
    pub listing: Option<Vec<u8>>,
    pub numerator: i64,
    pub denominator: i64,
    /// `None` when the denominator is 0.
    pub value: Option<f64>,
    /// With COMPARE: the same group in the period compared with.
    pub previous: Option<Previous>,
}

/// A row's sums in the period it is compared with, and the change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Previous {
    pub numerator: i64,
    pub denominator: i64,
    pub value: Option<f64>,
    /// `value / previous value - 1`: `None` when either is undefined or
    /// the previous is 0.
    pub change: Option<f64>,
}

/// A [`Row`] that borrows its listing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowView<'a> {
    pub metric: usize,
    pub date: Option<NaiveDate>,
    pub hour: Option<i64>,
    pub listing: Option<&'a [u8]>,
    pub numerator: i64,
    pub denominator: i64,
    pub value: Option<f64>,
    pub previous: Option<Previous>,
}

impl RowView<'_> {
    pub fn to_row(&self) -> Row {
        Row {
            metric: self.metric,
            date: self.date,
            hour: self.hour,
            listing: self.listing.map(<[u8]>::to_vec),
            numerator: self.numerator,
            denominator: self.denominator,
            value: self.value,
            previous: self.previous,
        }
    }
}

impl Row {
    pub fn view(&self) -> RowView<'_> {
        RowView {
            metric: self.metric,
            date: self.date,
            hour: self.hour,
            listing: self.listing.as_deref(),
            numerator: self.numerator,
            denominator: self.denominator,
            value: self.value,
            previous: self.previous,
        }
    }
}

/// Sums of counters per group.
pub struct Aggregator {
    group: GroupBy,
    width: usize,
    /// Listing number by the hash of its id (no allocation per listing:
    /// 600,000 of them would cost as many frees in one step at the end);
    /// ids whose hash another id took first are in `collisions`.
    listing_ids: FxHashMap<u64, u32>,
    collisions: FxHashMap<Vec<u8>, u32>,
    listings: ListingNames,
    /// (day number or -1, listing index or u32::MAX) -> index into `sums`.
    groups: FxHashMap<(i32, u32), usize>,
    /// GROUPBY LISTING: index into `sums` by listing index (listing
    /// indexes are dense), so no group key is hashed per day hash.
    by_listing: Vec<usize>,
    pub(super) keys: Vec<(i32, u32)>,
    sums: Vec<i64>,
    fields: Vec<Vec<u8>>,
    /// The listing index of each caller's position (see `add_at`).
    at_positions: Vec<u32>,
    /// Whether groups were created in output order (the command layer
    /// feeds day hashes in that order), so no sort is needed at the end.
    pub(super) in_order: bool,
    /// With COMPARE: each group's sums are the plan's terms for the period
    /// asked, then the same for the period compared with (`width` is twice
    /// the plan's).
    compare: bool,
}

const NO_DAY: i32 = i32::MIN;
const NO_LISTING: u32 = u32::MAX;
const NO_GROUP: usize = usize::MAX;

impl Aggregator {
    pub fn new(plan: &FieldPlan, group: GroupBy) -> Aggregator {
        Aggregator {
            group,
            width: plan.width(),
            listing_ids: FxHashMap::default(),
            collisions: FxHashMap::default(),
            listings: ListingNames::default(),
            groups: FxHashMap::default(),
            by_listing: Vec::new(),
            keys: Vec::new(),
            sums: Vec::new(),
            fields: plan.names.clone(),
            at_positions: Vec::new(),
            in_order: true,
            compare: false,
        }
    }

    /// Sums a compared period beside the one asked (COMPARE): values given
    /// to `add`, `add_at` and `merge_group` are then twice the plan's
    /// width, the period asked first.
    pub fn comparing(mut self) -> Aggregator {
        if !self.compare {
            self.compare = true;
            self.width *= 2;
        }
        self
    }

    /// Values per group (twice the plan's with COMPARE).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Makes room for `groups` groups (of `listings` listings) at once:
    /// the maps of a big answer then never rehash in one long step.
    pub fn reserve(&mut self, groups: usize, listings: usize) {
        if self.group == GroupBy::Listing {
            self.by_listing.reserve(listings);
        }
        if matches!(self.group, GroupBy::Day | GroupBy::Listing) {
            if self.group == GroupBy::Day {
                self.groups.reserve(groups);
            }
            self.keys.reserve(groups);
            self.sums.reserve(groups * self.width);
            self.listing_ids.reserve(listings);
        }
    }

    /// Output order of two group keys: date, then listing.
    fn key_cmp(&self, a: (i32, u32), b: (i32, u32)) -> Ordering {
        let listing = |i: u32| (i != NO_LISTING).then(|| &self.listings[i as usize]);
        a.0.cmp(&b.0)
            .then_with(|| match (listing(a.1), listing(b.1)) {
                (Some(la), Some(lb)) => listing_cmp(la, lb),
                _ => Ordering::Equal,
            })
    }

    pub(super) fn listing_index(&mut self, listing: &[u8]) -> u32 {
        use std::hash::BuildHasher;
        self.listing_index_hashed(listing, rustc_hash::FxBuildHasher.hash_one(listing))
    }

    pub(super) fn listing_index_hashed(&mut self, listing: &[u8], hash: u64) -> u32 {
        match self.listing_ids.get(&hash) {
            Some(&i) if &self.listings[i as usize] == listing => return i,
            Some(_) => {
                if let Some(&i) = self.collisions.get(listing) {
                    return i;
                }
                let i = self.listings.push(listing);
                self.collisions.insert(listing.to_vec(), i);
                return i;
            }
            None => {}
        }
        let i = self.listings.push(listing);
        self.listing_ids.insert(hash, i);
        i
    }

    /// Adds one existing day hash: `values[i]` is the counter of
    /// `plan.fields[i]` (0 when absent).
    pub fn add(&mut self, day: NaiveDate, listing: &[u8], values: &[i64]) -> Result<()> {
        let li = match self.group {
            GroupBy::Day | GroupBy::Listing | GroupBy::Hour => self.listing_index(listing),
            GroupBy::Date | GroupBy::Total => NO_LISTING,
        };
        self.add_group(day, li, values)
    }

    /// [`Aggregator::add`] for a caller that numbers its listings
    /// (`position`, one number per listing, as [`ListingNames`] does):
    /// the listing is found by its number, not hashed on every call.
    pub fn add_at(
        &mut self,
        day: NaiveDate,
        position: u32,
        listing: &[u8],
        values: &[i64],
    ) -> Result<()> {
        let li = match self.group {
            GroupBy::Day | GroupBy::Listing | GroupBy::Hour => {
                let p = position as usize;
                if p >= self.at_positions.len() {
                    self.at_positions.resize(p + 1, NO_LISTING);
                }
                match self.at_positions[p] {
                    NO_LISTING => {
                        let li = self.listing_index(listing);
                        self.at_positions[p] = li;
                        li
                    }
                    li => li,
                }
            }
            GroupBy::Date | GroupBy::Total => NO_LISTING,
        };
        self.add_group(day, li, values)
    }

    fn add_group(&mut self, day: NaiveDate, li: u32, values: &[i64]) -> Result<()> {
        let day_num = chrono::Datelike::num_days_from_ce(&day);
        self.add_key(day_num, li, values)
    }

    /// Adds another aggregation's group (of the same plan and grouping),
    /// as [`Aggregator::group_record`] gave it: another node's part of a
    /// cluster-wide answer.
    pub fn merge_group(&mut self, day: i32, listing: Option<&[u8]>, sums: &[i64]) -> Result<()> {
        if sums.len() != self.width {
            return Err(Error::invalid(
                "a node answered with other counters than this one plans",
            ));
        }
        let li = match (self.group, listing) {
            (GroupBy::Day | GroupBy::Listing | GroupBy::Hour, Some(l)) => self.listing_index(l),
            _ => NO_LISTING,
        };
        self.add_key(day, li, sums)
    }

    /// Group `g` as [`Aggregator::merge_group`] takes it: its day number
    /// (`i32::MIN` when grouped away), its listing, its sums.
    pub fn group_record(&self, g: usize) -> (i32, Option<&[u8]>, &[i64]) {
        let (day, li) = self.keys[g];
        let listing = (li != NO_LISTING).then(|| &self.listings[li as usize]);
        (day, listing, self.group_sums(g))
    }

    fn add_key(&mut self, day_num: i32, li: u32, values: &[i64]) -> Result<()> {
        let key = match self.group {
            GroupBy::Day | GroupBy::Hour => (day_num, li),
            GroupBy::Listing => (NO_DAY, li),
            GroupBy::Date => (day_num, NO_LISTING),
            GroupBy::Total => (NO_DAY, NO_LISTING),
        };
        let width = self.width;
        let known = if self.group == GroupBy::Listing {
            self.by_listing
                .get(li as usize)
                .copied()
                .filter(|&at| at != NO_GROUP)
        } else {
            self.groups.get(&key).copied()
        };
        let at = match known {
            Some(at) => at,
            None => {
                if let Some(&last) = self.keys.last() {
                    if self.in_order && self.key_cmp(last, key) == Ordering::Greater {
                        self.in_order = false;
                    }
                }
                let at = self.sums.len();
                self.sums.resize(at + width, 0);
                if self.group == GroupBy::Listing {
                    let l = li as usize;
                    if l >= self.by_listing.len() {
                        self.by_listing.resize(l + 1, NO_GROUP);
                    }
                    self.by_listing[l] = at;
                } else {
                    self.groups.insert(key, at);
                }
                self.keys.push(key);
                at
            }
        };
        for (i, (sum, &v)) in self.sums[at..at + width].iter_mut().zip(values).enumerate() {
            *sum = sum.checked_add(v).ok_or_else(|| {
                Error::invalid(format!(
                    "the sum of {} overflows a 64-bit integer",
                    quote(&self.fields[i])
                ))
            })?;
        }
        Ok(())
    }

    /// The groups in output order: date, then listing.
    pub fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.keys.len()).collect();
        if self.in_order {
            return order;
        }
        // Each listing's place in listing order, found once (L log L id
        // comparisons): the groups then sort by two integers, not by
        // comparing ids (48,000 rows by hour are 1,000 listings).
        let mut by_listing: Vec<u32> = (0..self.listings.len() as u32).collect();
        by_listing.sort_unstable_by(|&a, &b| {
            listing_cmp(&self.listings[a as usize], &self.listings[b as usize])
        });
        let mut rank = vec![0u32; self.listings.len()];
        for (r, &li) in by_listing.iter().enumerate() {
            rank[li as usize] = r as u32;
        }
        let place = |li: u32| {
            if li == NO_LISTING {
                0
            } else {
                rank[li as usize]
            }
        };
        // Group keys are distinct: an unstable sort gives the one order.
        order.sort_unstable_by_key(|&g| {
            let (day, li) = self.keys[g];
            (day, place(li))
        });
        order
    }

    /// Appends group `g`'s rows (metrics in the order asked): a row appears
    /// when its numerator or denominator is non-zero.
    pub fn group_rows(&self, plan: &FieldPlan, g: usize, out: &mut Vec<Row>) {
        self.group_views(plan, g, |v| out.push(v.to_row()));
    }

    /// Group `g`'s rows as views that borrow the listing (no allocation
    /// per row): what the reply is written from.
    pub fn group_views(&self, plan: &FieldPlan, g: usize, mut f: impl FnMut(RowView<'_>)) {
        let (day_num, li) = self.keys[g];
        let sums = self.group_sums(g);
        let hourly = self.group == GroupBy::Hour;
        let date = (day_num != NO_DAY && !hourly)
            .then(|| NaiveDate::from_num_days_from_ce_opt(day_num))
            .flatten();
        let hour = hourly.then_some(i64::from(day_num));
        let listing = (li != NO_LISTING).then(|| &self.listings[li as usize]);
        let half = plan.width();
        for (m, (metric, &(n, d))) in plan.metrics.iter().zip(&plan.slots).enumerate() {
            let (numerator, denominator) = (sums[n], sums[d]);
            if numerator == 0 && denominator == 0 {
                continue;
            }
            let ratio = |n: i64, d: i64| (d != 0).then(|| n as f64 / d as f64 * metric.scale);
            let value = ratio(numerator, denominator);
            let previous = self.compare.then(|| {
                let (pn, pd) = (sums[n + half], sums[d + half]);
                let before = ratio(pn, pd);
                Previous {
                    numerator: pn,
                    denominator: pd,
                    value: before,
                    change: match (value, before) {
                        (Some(v), Some(b)) if b != 0.0 => Some(v / b - 1.0),
                        _ => None,
                    },
                }
            });
            f(RowView {
                metric: m,
                date,
                hour,
                listing,
                numerator,
                denominator,
                value,
                previous,
            });
        }
    }

    /// The sums of group `g` (groups are numbered as they were created).
    pub(super) fn group_sums(&self, g: usize) -> &[i64] {
        let at = g * self.width;
        &self.sums[at..at + self.width]
    }

    /// The listing of group `g` (empty when grouped away).
    pub(super) fn group_listing(&self, g: usize) -> &[u8] {
        let li = self.keys[g].1;
        if li == NO_LISTING {
            return &[];
        }
        &self.listings[li as usize]
    }

    /// How many groups there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every row, in the spec's order: date, listing, then metrics as asked
    /// (tests; the command renders group by group).
    #[cfg(test)]
    pub fn rows(&self, plan: &FieldPlan) -> Vec<Row> {
        let mut rows = Vec::new();
        for g in self.order() {
            self.group_rows(plan, g, &mut rows);
        }
        rows
    }
}
