//! QUERY and TOP: argument parsing, aggregation of day hashes into rows,
//! ordering, and the LEGACY and JSON renderings.
//!
//! The command layer feeds [`Aggregator::add`] one day hash at a time (the
//! counters of the fields the metrics need); everything after that —
//! grouping, sums, ratios, row rules, order — happens here.
//!
//! Ratios are always ratios of sums (sum of clicks / sum of impressions over
//! the group), never averages of per-day ratios.

use std::cmp::Ordering;

use rustc_hash::{FxHashMap, FxHashSet};

use chrono::{Datelike, NaiveDate};

use super::date::{day_count, day_string, parse_day_arg};
use super::day_index::ListingNames;
use super::error::{quote, Error, Result};
use super::keys::{check_listing, KeyScheme};
use super::metrics::{check_name, compile_pattern, pattern_of, Metric};
use super::number::parse_i64_arg;
use regex::bytes::Regex;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Listing,
    Date,
    Total,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Resp,
    Legacy,
    Json,
}

/// Which listings a query covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listings<'a> {
    /// `*`: every listing with a day hash in the range.
    All,
    /// An explicit set, validated, duplicates removed, in the order given.
    Ids(Vec<&'a [u8]>),
}

fn parse_listings(text: &[u8]) -> Result<Listings<'_>> {
    if text == b"*" {
        return Ok(Listings::All);
    }
    let mut ids: Vec<&[u8]> = Vec::new();
    let mut seen = FxHashSet::default();
    for id in text.split(|&b| b == b',') {
        check_listing(id)?;
        if seen.insert(id) {
            ids.push(id);
        }
    }
    Ok(Listings::Ids(ids))
}

fn parse_metric_names(text: &[u8]) -> Result<Vec<&str>> {
    let mut names = Vec::new();
    for name in text.split(|&b| b == b',') {
        let name = check_name(name)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

fn parse_range(start: &[u8], end: &[u8]) -> Result<(NaiveDate, NaiveDate)> {
    let start = parse_day_arg("start", start)?;
    let end = parse_day_arg("end", end)?;
    if start > end {
        return Err(Error::invalid(format!(
            "start date {} is after end date {}",
            day_string(start),
            day_string(end)
        )));
    }
    Ok((start, end))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryArgs<'a> {
    pub metrics: Vec<&'a str>,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub listings: Listings<'a>,
    pub group: GroupBy,
    pub format: Format,
}

/// Reads `NAME value` options, each at most once, through `accept`.
fn parse_options<'a>(
    options: &[&'a [u8]],
    mut accept: impl FnMut(&str, &'a [u8]) -> Result<bool>,
) -> Result<()> {
    let mut seen: Vec<String> = Vec::new();
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let name = option.to_ascii_uppercase().escape_ascii().to_string();
        let value = rest
            .next()
            .ok_or_else(|| Error::syntax(format!("option {name} needs a value")))?;
        if seen.contains(&name) {
            return Err(Error::syntax(format!("{name} given more than once")));
        }
        if !accept(&name, value)? {
            return Err(Error::syntax(format!("unknown option '{name}'")));
        }
        seen.push(name);
    }
    Ok(())
}

/// `LISTINGSTATS.QUERY metrics start end listings [GROUPBY g] [FORMAT f]`
pub fn parse_query<'a>(args: &[&'a [u8]]) -> Result<QueryArgs<'a>> {
    let [metrics, start, end, listings, options @ ..] = args else {
        return Err(Error::wrong_arity("LISTINGSTATS.QUERY"));
    };
    let metrics = parse_metric_names(metrics)?;
    let (start, end) = parse_range(start, end)?;
    let listings = parse_listings(listings)?;
    let mut group = GroupBy::Day;
    let mut format = Format::Resp;
    parse_options(options, |name, value| {
        let v = value.to_ascii_uppercase();
        match name {
            "GROUPBY" => {
                group = match v.as_slice() {
                    b"DAY" => GroupBy::Day,
                    b"LISTING" => GroupBy::Listing,
                    b"DATE" => GroupBy::Date,
                    b"TOTAL" => GroupBy::Total,
                    _ => {
                        return Err(Error::syntax(format!(
                            "GROUPBY takes DAY, LISTING, DATE or TOTAL, got {}",
                            quote(value)
                        )))
                    }
                }
            }
            "FORMAT" => {
                format = match v.as_slice() {
                    b"RESP" => Format::Resp,
                    b"LEGACY" => Format::Legacy,
                    b"JSON" => Format::Json,
                    _ => {
                        return Err(Error::syntax(format!(
                            "FORMAT takes RESP, LEGACY or JSON, got {}",
                            quote(value)
                        )))
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if format == Format::Legacy && group != GroupBy::Day {
        return Err(Error::invalid(
            "FORMAT LEGACY needs GROUPBY DAY: the old output has one line per day hash",
        ));
    }
    Ok(QueryArgs {
        metrics,
        start,
        end,
        listings,
        group,
        format,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopArgs<'a> {
    pub metric: &'a str,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub n: usize,
    pub listings: Listings<'a>,
    pub min_denominator: i64,
    pub rank: Rank,
}

/// How TOP orders listings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rank {
    /// By the metric's value (numerator / denominator × scale).
    Value,
    /// By the lower bound of the Wilson score interval of numerator /
    /// denominator at the normal quantile `z`, scaled like the metric: a
    /// listing with 1 click in 1 impression no longer beats 90 in 100.
    Wilson { z: f64 },
}

/// The default confidence of `RANK WILSON`.
pub const WILSON_CONFIDENCE: f64 = 0.95;

/// The two-sided normal quantile for `confidence` (0.95 -> 1.959964).
pub fn wilson_z(confidence: f64) -> Result<f64> {
    use statrs::distribution::{ContinuousCDF, Normal};
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(Error::invalid(format!(
            "RANK WILSON confidence must be between 0 and 1 (e.g. 0.95), got {confidence}"
        )));
    }
    let normal = Normal::standard();
    Ok(normal.inverse_cdf(1.0 - (1.0 - confidence) / 2.0))
}

/// The lower bound of the Wilson score interval for `numerator` successes
/// in `denominator` trials at quantile `z`, in 0..=1; `None` when the pair
/// is not a proportion (numerator above denominator, or negative).
pub fn wilson_lower(numerator: i64, denominator: i64, z: f64) -> Option<f64> {
    if denominator <= 0 || numerator < 0 || numerator > denominator {
        return None;
    }
    if numerator == 0 {
        return Some(0.0); // Exactly; the formula leaves rounding residue.
    }
    let n = denominator as f64;
    let p = numerator as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - spread) / (1.0 + z2 / n)).max(0.0))
}

/// Takes `RANK VALUE | RANK WILSON [confidence]` out of TOP's options.
fn take_rank<'a>(options: &[&'a [u8]]) -> Result<(Rank, Vec<&'a [u8]>)> {
    let mut rank = None;
    let mut rest = Vec::with_capacity(options.len());
    let mut i = 0;
    while i < options.len() {
        if !options[i].eq_ignore_ascii_case(b"RANK") {
            rest.push(options[i]);
            if let Some(&value) = options.get(i + 1) {
                rest.push(value);
            }
            i += 2;
            continue;
        }
        if rank.is_some() {
            return Err(Error::syntax("RANK given more than once"));
        }
        let how = options
            .get(i + 1)
            .ok_or_else(|| Error::syntax("option RANK needs VALUE or WILSON"))?;
        i += 2;
        rank = Some(if how.eq_ignore_ascii_case(b"VALUE") {
            Rank::Value
        } else if how.eq_ignore_ascii_case(b"WILSON") {
            // An optional confidence: the next word, when it is a number.
            let confidence = options
                .get(i)
                .and_then(|w| std::str::from_utf8(w).ok())
                .and_then(|w| w.parse::<f64>().ok());
            if confidence.is_some() {
                i += 1;
            }
            Rank::Wilson {
                z: wilson_z(confidence.unwrap_or(WILSON_CONFIDENCE))?,
            }
        } else {
            return Err(Error::syntax(format!(
                "RANK must be VALUE or WILSON, got {}",
                crate::error::quote(how)
            )));
        });
    }
    Ok((rank.unwrap_or(Rank::Value), rest))
}

/// `LISTINGSTATS.TOP metric start end n [LISTINGS ids|*] [MINDENOM k]`
pub fn parse_top<'a>(args: &[&'a [u8]]) -> Result<TopArgs<'a>> {
    let [metric, start, end, n, options @ ..] = args else {
        return Err(Error::wrong_arity("LISTINGSTATS.TOP"));
    };
    let metric = check_name(metric)?;
    let (start, end) = parse_range(start, end)?;
    let n = parse_i64_arg("n", n)?;
    let n =
        usize::try_from(n).map_err(|_| Error::invalid(format!("n must be 0 or more, got {n}")))?;
    let mut listings = Listings::All;
    let mut min_denominator = 1;
    let (rank, options) = take_rank(options)?;
    parse_options(&options, |name, value| {
        match name {
            "LISTINGS" => listings = parse_listings(value)?,
            "MINDENOM" => {
                min_denominator = parse_i64_arg("MINDENOM", value)?;
                if min_denominator < 1 {
                    return Err(Error::invalid(format!(
                        "MINDENOM must be 1 or more (a ranking needs a value), got {min_denominator}"
                    )));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(TopArgs {
        metric,
        start,
        end,
        n,
        listings,
        min_denominator,
        rank,
    })
}

/// Refuses a query that would touch more than `max` day hashes, before any
/// work. For `*` the listing count is unknown up front; the scan enforces
/// the same bound on the day hashes it finds.
pub fn check_cells(start: NaiveDate, end: NaiveDate, listings: usize, max: i64) -> Result<()> {
    let cells = day_count(start, end).saturating_mul(listings as u64);
    if cells > u64::try_from(max).unwrap_or(0) {
        return Err(Error::invalid(format!(
            "query covers {cells} day hashes (days x listings), more than max-query-cells {max}"
        )));
    }
    Ok(())
}

/// The counters a set of metrics needs, each read once per day hash.
#[derive(Debug, Clone)]
pub struct FieldPlan {
    pub metrics: Vec<Metric>,
    /// Distinct event names, in first-use order: read one by one.
    pub fields: Vec<Vec<u8>>,
    /// Distinct patterns (`/.../` terms), in first-use order: each sums
    /// every field of a day hash whose name it matches, in one pass over
    /// the hash, only for queries that have any.
    pub patterns: Vec<Regex>,
    /// The terms, as given: `fields` then the patterns' `/.../` text.
    names: Vec<Vec<u8>>,
    /// For each metric, the slot of its numerator and denominator: an
    /// index into the values a day hash gives, `fields` first, then
    /// `patterns`.
    slots: Vec<(usize, usize)>,
}

impl FieldPlan {
    pub fn new(metrics: Vec<Metric>) -> Result<FieldPlan> {
        let mut fields: Vec<Vec<u8>> = Vec::new();
        let mut pattern_texts: Vec<Vec<u8>> = Vec::new();
        for m in &metrics {
            for term in [&m.numerator, &m.denominator] {
                let list = if pattern_of(term).is_some() {
                    &mut pattern_texts
                } else {
                    &mut fields
                };
                if !list.contains(term) {
                    list.push(term.clone());
                }
            }
        }
        let slot = |term: &[u8]| match fields.iter().position(|f| f == term) {
            Some(i) => i,
            None => fields.len() + pattern_texts.iter().position(|p| p == term).unwrap_or(0),
        };
        let slots = metrics
            .iter()
            .map(|m| (slot(&m.numerator), slot(&m.denominator)))
            .collect();
        let patterns = pattern_texts
            .iter()
            .map(|t| compile_pattern(pattern_of(t).unwrap_or_default()))
            .collect::<Result<Vec<_>>>()?;
        let names = fields.iter().chain(&pattern_texts).cloned().collect();
        Ok(FieldPlan {
            metrics,
            fields,
            patterns,
            names,
            slots,
        })
    }

    /// How many values a day hash gives: fields, then patterns.
    pub fn width(&self) -> usize {
        self.names.len()
    }

    /// The terms, in the order of the values a day hash gives.
    pub fn terms(&self) -> &[Vec<u8>] {
        &self.names
    }
}

/// One output row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub metric: usize,
    pub date: Option<NaiveDate>,
    pub listing: Option<Vec<u8>>,
    pub numerator: i64,
    pub denominator: i64,
    /// `None` when the denominator is 0.
    pub value: Option<f64>,
}

/// A [`Row`] that borrows its listing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowView<'a> {
    pub metric: usize,
    pub date: Option<NaiveDate>,
    pub listing: Option<&'a [u8]>,
    pub numerator: i64,
    pub denominator: i64,
    pub value: Option<f64>,
}

impl RowView<'_> {
    pub fn to_row(&self) -> Row {
        Row {
            metric: self.metric,
            date: self.date,
            listing: self.listing.map(<[u8]>::to_vec),
            numerator: self.numerator,
            denominator: self.denominator,
            value: self.value,
        }
    }
}

impl Row {
    pub fn view(&self) -> RowView<'_> {
        RowView {
            metric: self.metric,
            date: self.date,
            listing: self.listing.as_deref(),
            numerator: self.numerator,
            denominator: self.denominator,
            value: self.value,
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
    keys: Vec<(i32, u32)>,
    sums: Vec<i64>,
    fields: Vec<Vec<u8>>,
    /// The listing index of each caller's position (see `add_at`).
    at_positions: Vec<u32>,
    /// Whether groups were created in output order (the command layer
    /// feeds day hashes in that order), so no sort is needed at the end.
    in_order: bool,
}

const NO_DAY: i32 = i32::MIN;
const NO_LISTING: u32 = u32::MAX;

impl Aggregator {
    pub fn new(plan: &FieldPlan, group: GroupBy) -> Aggregator {
        Aggregator {
            group,
            width: plan.width(),
            listing_ids: FxHashMap::default(),
            collisions: FxHashMap::default(),
            listings: ListingNames::default(),
            groups: FxHashMap::default(),
            keys: Vec::new(),
            sums: Vec::new(),
            fields: plan.names.clone(),
            at_positions: Vec::new(),
            in_order: true,
        }
    }

    /// Makes room for `groups` groups (of `listings` listings) at once:
    /// the maps of a big answer then never rehash in one long step.
    pub fn reserve(&mut self, groups: usize, listings: usize) {
        if matches!(self.group, GroupBy::Day | GroupBy::Listing) {
            self.groups.reserve(groups);
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

    fn listing_index(&mut self, listing: &[u8]) -> u32 {
        use std::hash::BuildHasher;
        self.listing_index_hashed(listing, rustc_hash::FxBuildHasher.hash_one(listing))
    }

    fn listing_index_hashed(&mut self, listing: &[u8], hash: u64) -> u32 {
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
            GroupBy::Day | GroupBy::Listing => self.listing_index(listing),
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
            GroupBy::Day | GroupBy::Listing => {
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
        let key = match self.group {
            GroupBy::Day => (day_num, li),
            GroupBy::Listing => (NO_DAY, li),
            GroupBy::Date => (day_num, NO_LISTING),
            GroupBy::Total => (NO_DAY, NO_LISTING),
        };
        let width = self.width;
        let at = match self.groups.get(&key) {
            Some(&at) => at,
            None => {
                if let Some(&last) = self.keys.last() {
                    if self.in_order && self.key_cmp(last, key) == Ordering::Greater {
                        self.in_order = false;
                    }
                }
                let at = self.sums.len();
                self.sums.resize(at + width, 0);
                self.groups.insert(key, at);
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
        if !self.in_order {
            order.sort_by(|&a, &b| self.key_cmp(self.keys[a], self.keys[b]));
        }
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
        let date = (day_num != NO_DAY)
            .then(|| NaiveDate::from_num_days_from_ce_opt(day_num))
            .flatten();
        let listing = (li != NO_LISTING).then(|| &self.listings[li as usize]);
        for (m, (metric, &(n, d))) in plan.metrics.iter().zip(&plan.slots).enumerate() {
            let (numerator, denominator) = (sums[n], sums[d]);
            if numerator == 0 && denominator == 0 {
                continue;
            }
            f(RowView {
                metric: m,
                date,
                listing,
                numerator,
                denominator,
                value: (denominator != 0)
                    .then(|| numerator as f64 / denominator as f64 * metric.scale),
            });
        }
    }

    /// The sums of group `g` (groups are numbered as they were created).
    fn group_sums(&self, g: usize) -> &[i64] {
        let at = g * self.width;
        &self.sums[at..at + self.width]
    }

    /// The listing of group `g` (empty when grouped away).
    fn group_listing(&self, g: usize) -> &[u8] {
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

    /// The ranking, once [`TopPicker::feed`] said every group was seen.
    pub fn finish(mut self, agg: &Aggregator, plan: &FieldPlan) -> Result<Vec<Ranked>> {
        if let Some(g) = self.bad {
            let sums = agg.group_sums(g);
            let (num_at, den_at) = plan.slots[0];
            return Err(Error::invalid(format!(
                "RANK WILSON needs a proportion (0 <= numerator <= denominator); listing {} has {}/{}",
                crate::error::quote(agg.group_listing(g)),
                sums[num_at],
                sums[den_at]
            )));
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

/// [`push_legacy_line`] as a string (tests).
#[cfg(test)]
pub fn legacy_line(row: &RowView<'_>, plan: &FieldPlan, scheme: &KeyScheme) -> Option<String> {
    let mut out = Vec::new();
    push_legacy_line(&mut out, row, plan, scheme)
        .then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Appends the Lua script's line for a row, `metric=>key : 33.33%`, to a
/// reused buffer (no allocation per row); `false` (nothing written) for a
/// row with a zero denominator (the script left those out). GROUPBY DAY
/// rows.
pub fn push_legacy_line(
    out: &mut Vec<u8>,
    row: &RowView<'_>,
    plan: &FieldPlan,
    scheme: &KeyScheme,
) -> bool {
    use std::io::Write;
    let (Some(value), Some(date), Some(listing)) = (row.value, row.date, row.listing) else {
        return false;
    };
    out.extend_from_slice(plan.metrics[row.metric].name.as_bytes());
    out.extend_from_slice(b"=>");
    let start = out.len();
    scheme.push_day_key(out, date, listing);
    if std::str::from_utf8(&out[start..]).is_err() {
        // The key as text, as the script showed it.
        let text = String::from_utf8_lossy(&out[start..]).into_owned();
        out.truncate(start);
        out.extend_from_slice(text.as_bytes());
    }
    let _ = write!(out, " : {value:.2}%");
    true
}

/// [`push_json_row`] as a string (tests).
#[cfg(test)]
pub fn json_row(row: &RowView<'_>, plan: &FieldPlan) -> String {
    let mut out = Vec::new();
    push_json_row(&mut out, row, plan);
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends one row of the JSON form to a reused buffer; `date`/`listing`
/// are `"*"` where grouped away, as in the RESP form; `value` is null when
/// undefined. Serialised straight from the row, with no JSON tree built
/// per row.
pub fn push_json_row(out: &mut Vec<u8>, row: &RowView<'_>, plan: &FieldPlan) {
    #[derive(serde::Serialize)]
    struct JsonRow<'a> {
        metric: &'a str,
        date: &'a str,
        listing: std::borrow::Cow<'a, str>,
        numerator: i64,
        denominator: i64,
        value: Option<f64>,
    }
    let mut day = Vec::with_capacity(10);
    if let Some(d) = row.date {
        crate::date::push_day(&mut day, d);
    }
    let json = JsonRow {
        metric: &plan.metrics[row.metric].name,
        date: if row.date.is_some() {
            std::str::from_utf8(&day).unwrap_or("*")
        } else {
            "*"
        },
        listing: row
            .listing
            .map_or(std::borrow::Cow::Borrowed("*"), String::from_utf8_lossy),
        numerator: row.numerator,
        denominator: row.denominator,
        value: row.value,
    };
    // Writing to a Vec cannot fail; the fields are all serialisable.
    let _ = serde_json::to_writer(out, &json);
}

pub const JSON_HEAD: &str = "{\"rows\":[";

/// Closes the document [`JSON_HEAD`] and the rows opened.
pub fn json_tail(keys_examined: u64) -> String {
    format!("],\"keys_examined\":{keys_examined}}}")
}

/// [`CellOrdering`] in one go (tests: the reference it is checked against).
#[cfg(test)]
pub fn order_cells(names: &ListingNames, cells: &mut [(NaiveDate, u32)]) {
    let mut ordering = CellOrdering::new(names.len(), cells.len());
    while !ordering.step(names, cells, usize::MAX) {}
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::date::parse_day;
    use crate::metrics::{builtins, resolve};

    /// Whole documents from the pieces the command layer writes a slice
    /// at a time (`job.rs`): the same assembly, all at once.
    fn legacy_lines(rows: &[Row], plan: &FieldPlan, scheme: &KeyScheme) -> Vec<String> {
        rows.iter()
            .filter_map(|r| legacy_line(&r.view(), plan, scheme))
            .collect()
    }

    fn json(rows: &[Row], plan: &FieldPlan, keys_examined: u64) -> String {
        let body: Vec<String> = rows.iter().map(|r| json_row(&r.view(), plan)).collect();
        format!("{JSON_HEAD}{}{}", body.join(","), json_tail(keys_examined))
    }

    fn a(words: &[&str]) -> Vec<&'static [u8]> {
        words
            .iter()
            .map(|w| &*Box::leak(w.as_bytes().to_vec().into_boxed_slice()))
            .collect()
    }

    fn day(s: &str) -> NaiveDate {
        parse_day(s.as_bytes()).unwrap()
    }

    fn plan(names: &[&str]) -> FieldPlan {
        FieldPlan::new(resolve(&builtins(), names).unwrap()).unwrap()
    }

    #[test]
    fn listing_order_is_numeric_first() {
        let mut ids: Vec<&[u8]> = vec![b"b", b"10", b"9", b"A", b"0010", b"a-1", b"100", b"010"];
        ids.sort_by(|x, y| listing_cmp(x, y));
        assert_eq!(
            ids,
            [
                &b"9"[..],
                b"0010",
                b"010",
                b"10",
                b"100",
                b"A",
                b"a-1",
                b"b"
            ]
        );
    }

    #[test]
    fn parses_queries() {
        let q = parse_query(&a(&[
            "cart_to_checkout_ctr,ldp_add_to_cart_ctr,cart_to_checkout_ctr",
            "2015-12-30",
            "2016-01-02",
            "2149,2150,2149",
            "format",
            "json",
            "GroupBy",
            "listing",
        ]))
        .unwrap();
        assert_eq!(q.metrics, ["cart_to_checkout_ctr", "ldp_add_to_cart_ctr"]);
        assert_eq!(q.listings, Listings::Ids(vec![b"2149", b"2150"]));
        assert_eq!((q.group, q.format), (GroupBy::Listing, Format::Json));
        assert_eq!(
            parse_query(&a(&["m", "2015-12-30", "2015-12-30", "*"]))
                .unwrap()
                .listings,
            Listings::All
        );
    }

    #[test]
    fn query_errors() {
        let err = |w: &[&str]| parse_query(&a(w)).unwrap_err().to_string();
        assert!(err(&["m", "2015-12-30", "2015-12-31"]).contains("wrong number of arguments"));
        assert_eq!(
            err(&["m", "2016-01-02", "2015-12-30", "1"]),
            "ERR start date 2016-01-02 is after end date 2015-12-30"
        );
        assert!(
            err(&["m", "2015-12-32", "2015-12-30", "1"]).starts_with("ERR start must be a date")
        );
        assert!(err(&["m", "2015-12-30", "x", "1"]).starts_with("ERR end must be a date"));
        assert!(
            err(&["", "2015-12-30", "2015-12-30", "1"]).starts_with("ERR invalid metric name ''")
        );
        assert!(err(&["a,,b", "2015-12-30", "2015-12-30", "1"])
            .starts_with("ERR invalid metric name ''"));
        assert!(
            err(&["m", "2015-12-30", "2015-12-30", ""]).starts_with("ERR invalid listing id ''")
        );
        assert!(err(&["m", "2015-12-30", "2015-12-30", "1,*"])
            .starts_with("ERR invalid listing id '*'"));
        assert!(
            err(&["m", "2015-12-30", "2015-12-30", "1", "GROUPBY", "WEEK"])
                .contains("GROUPBY takes DAY, LISTING, DATE or TOTAL")
        );
        assert!(
            err(&["m", "2015-12-30", "2015-12-30", "1", "FORMAT", "XML"])
                .contains("FORMAT takes RESP, LEGACY or JSON")
        );
        assert!(err(&["m", "2015-12-30", "2015-12-30", "1", "FORMAT"])
            .contains("option FORMAT needs a value"));
        assert!(err(&[
            "m",
            "2015-12-30",
            "2015-12-30",
            "1",
            "FORMAT",
            "JSON",
            "format",
            "RESP"
        ])
        .contains("FORMAT given more than once"));
        assert!(err(&["m", "2015-12-30", "2015-12-30", "1", "LIMIT", "5"])
            .contains("unknown option 'LIMIT'"));
        assert!(err(&[
            "m",
            "2015-12-30",
            "2015-12-30",
            "1",
            "GROUPBY",
            "TOTAL",
            "FORMAT",
            "LEGACY"
        ])
        .starts_with("ERR FORMAT LEGACY needs GROUPBY DAY"));
    }

    #[test]
    fn top_arguments() {
        let t = parse_top(&a(&[
            "m",
            "2015-12-30",
            "2015-12-31",
            "5",
            "MINDENOM",
            "10",
            "LISTINGS",
            "1,2",
        ]))
        .unwrap();
        assert_eq!((t.n, t.min_denominator), (5, 10));
        assert_eq!(t.listings, Listings::Ids(vec![b"1", b"2"]));
        assert_eq!(
            parse_top(&a(&["m", "2015-12-30", "2015-12-31", "5"]))
                .unwrap()
                .listings,
            Listings::All
        );
        let err = |w: &[&str]| parse_top(&a(w)).unwrap_err().to_string();
        assert!(
            err(&["m", "2015-12-30", "2015-12-31", "-1"]).starts_with("ERR n must be 0 or more")
        );
        assert!(err(&["m", "2015-12-30", "2015-12-31", "x"])
            .starts_with("ERR n must be a 64-bit integer"));
        assert!(
            err(&["m", "2015-12-30", "2015-12-31", "1", "MINDENOM", "0"])
                .starts_with("ERR MINDENOM must be 1 or more")
        );
        assert!(
            err(&["m", "2015-12-30", "2015-12-31", "1", "GROUPBY", "DAY"])
                .contains("unknown option 'GROUPBY'")
        );
    }

    #[test]
    fn cell_limit() {
        assert!(check_cells(day("2015-01-01"), day("2015-01-10"), 100, 1000).is_ok());
        let e = check_cells(day("2015-01-01"), day("2015-01-10"), 101, 1000)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "ERR query covers 1010 day hashes (days x listings), more than max-query-cells 1000"
        );
    }

    #[test]
    fn ratios_are_ratios_of_sums_in_every_grouping() {
        // Fields: checkout click, checkout impression (cart_to_checkout_ctr).
        let p = plan(&["cart_to_checkout_ctr"]);
        let data: &[(&str, &str, [i64; 2])] = &[
            ("2015-12-31", "2149", [1, 1]),
            ("2015-12-30", "2149", [1, 4]),
            ("2015-12-30", "10", [0, 5]),
            ("2015-12-30", "x", [0, 0]),
        ];
        let run = |g| {
            let mut agg = Aggregator::new(&p, g);
            for (d, l, v) in data {
                agg.add(day(d), l.as_bytes(), v).unwrap();
            }
            agg.rows(&p)
        };
        let by_day = run(GroupBy::Day);
        let keys: Vec<_> = by_day
            .iter()
            .map(|r| {
                (
                    day_string(r.date.unwrap()),
                    String::from_utf8(r.listing.clone().unwrap()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("2015-12-30".into(), "10".into()),
                ("2015-12-30".into(), "2149".into()),
                ("2015-12-31".to_string(), "2149".to_string())
            ]
        );
        assert_eq!(by_day[0].value, Some(0.0));
        assert_eq!(by_day[1].value, Some(25.0));

        let by_listing = run(GroupBy::Listing);
        assert_eq!(by_listing.len(), 2);
        assert_eq!(by_listing[1].listing.as_deref(), Some(&b"2149"[..]));
        assert_eq!((by_listing[1].numerator, by_listing[1].denominator), (2, 5));
        assert_eq!(
            by_listing[1].value,
            Some(40.0),
            "2/5, not the mean of 100% and 25%"
        );
        assert_eq!(by_listing[1].date, None);

        let total = run(GroupBy::Total);
        assert_eq!((total[0].numerator, total[0].denominator), (2, 10));
        let by_date = run(GroupBy::Date);
        assert_eq!(by_date.len(), 2);
        assert_eq!((by_date[0].numerator, by_date[0].denominator), (1, 9));
    }

    #[test]
    fn order_does_not_depend_on_insertion_order() {
        let p = plan(&["cart_to_checkout_ctr"]);
        let mut sorted = Aggregator::new(&p, GroupBy::Day);
        let mut shuffled = Aggregator::new(&p, GroupBy::Day);
        let data = [
            ("2015-12-30", "9"),
            ("2015-12-30", "10"),
            ("2015-12-31", "2"),
            ("2015-12-31", "a"),
        ];
        for (d, l) in data {
            sorted.add(day(d), l.as_bytes(), &[1, 2]).unwrap();
        }
        for (d, l) in data.iter().rev() {
            shuffled.add(day(d), l.as_bytes(), &[1, 2]).unwrap();
        }
        assert!(sorted.in_order && !shuffled.in_order);
        assert_eq!(sorted.rows(&p), shuffled.rows(&p));
    }

    #[test]
    fn zero_denominator_gives_no_value() {
        let p = plan(&["cart_to_checkout_ctr"]);
        let mut agg = Aggregator::new(&p, GroupBy::Day);
        agg.add(day("2015-12-31"), b"1", &[3, 0]).unwrap();
        let rows = agg.rows(&p);
        assert_eq!(rows[0].value, None);
        assert!(legacy_lines(&rows, &p, &KeyScheme::default()).is_empty());
        let doc: serde_json::Value = serde_json::from_str(&json(&rows, &p, 1)).unwrap();
        assert_eq!(doc["rows"][0]["value"], serde_json::Value::Null);
        assert_eq!(doc["keys_examined"], 1);
        assert_eq!(json(&[], &p, 0), r#"{"rows":[],"keys_examined":0}"#);
    }

    #[test]
    fn sums_that_overflow_are_errors() {
        let p = plan(&["cart_to_checkout_ctr"]);
        let mut agg = Aggregator::new(&p, GroupBy::Total);
        agg.add(day("2015-12-31"), b"1", &[i64::MAX, 1]).unwrap();
        let e = agg
            .add(day("2015-12-31"), b"2", &[1, 1])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "ERR the sum of 'cart::checkoutNow:click' overflows a 64-bit integer"
        );
    }

    #[test]
    fn legacy_matches_the_lua_output() {
        let p = plan(&["cart_to_checkout_ctr", "ldp_add_to_cart_ctr"]);
        // Fields in plan order: checkout click, checkout imp, atc click, atc imp.
        assert_eq!(p.fields.len(), 4);
        let mut agg = Aggregator::new(&p, GroupBy::Day);
        agg.add(day("2015-12-31"), b"2149", &[1, 1, 1, 3]).unwrap();
        let lines = legacy_lines(&agg.rows(&p), &p, &KeyScheme::default());
        assert_eq!(
            lines,
            [
                "cart_to_checkout_ctr=>2015-12-31_2149 : 100.00%",
                "ldp_add_to_cart_ctr=>2015-12-31_2149 : 33.33%"
            ]
        );
    }

    #[test]
    fn top_ranks_by_value_then_listing() {
        let p = plan(&["cart_to_checkout_ctr"]);
        let mut agg = Aggregator::new(&p, GroupBy::Listing);
        for (l, v) in [
            ("5", [1, 2]),
            ("3", [1, 2]),
            ("9", [9, 10]),
            ("7", [1, 1]),
            ("8", [0, 0]),
        ] {
            agg.add(day("2015-12-31"), l.as_bytes(), &v).unwrap();
        }
        let ranked = top(agg.rows(&p), 3, 2, Rank::Value, 100.0).unwrap();
        let ids: Vec<_> = ranked
            .iter()
            .map(|r| String::from_utf8(r.row.listing.clone().unwrap()).unwrap())
            .collect();
        assert_eq!(
            ids,
            ["9", "3", "5"],
            "7 has denominator 1 < MINDENOM 2; 3 and 5 tie"
        );
    }

    #[test]
    fn cells_are_ordered_by_day_then_listing_order() {
        let d = |s: &str| crate::date::parse_day(s.as_bytes()).unwrap();
        let names: ListingNames = ["10", "9", "sku-a", "0009"]
            .iter()
            .map(|n| n.as_bytes())
            .collect();
        let mut cells = vec![
            (d("2016-01-01"), 0),
            (d("0000-01-01"), 2),
            (d("2015-12-31"), 2),
            (d("2016-01-01"), 1),
            (d("2015-12-31"), 0),
            (d("2016-01-01"), 3),
        ];
        order_cells(&names, &mut cells);
        let got: Vec<(String, &str)> = cells
            .iter()
            .map(|&(day, i)| {
                (
                    day.to_string(),
                    std::str::from_utf8(&names[i as usize]).unwrap(),
                )
            })
            .collect();
        let mut want: Vec<(String, &str)> = got.clone();
        want.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| listing_cmp(a.1.as_bytes(), b.1.as_bytes()))
        });
        assert_eq!(got, want);
        assert_eq!(got[0].0, "0000-01-01");
        // Numbers by value before other ids, as the spec orders listings.
        let jan1: Vec<&str> = got
            .iter()
            .filter(|c| c.0 == "2016-01-01")
            .map(|c| c.1)
            .collect();
        assert_eq!(jan1.len(), 3);
        assert_eq!(jan1, {
            let mut v = vec!["10", "9", "0009"];
            v.sort_by(|a, b| listing_cmp(a.as_bytes(), b.as_bytes()));
            v
        });
    }

    #[test]
    fn a_grid_is_the_ordered_list_of_every_cell() {
        let names: ListingNames = ["10", "9", "sku-a", "0009", "2155"]
            .iter()
            .map(|n| n.as_bytes())
            .collect();
        let (start, end) = (day("2015-12-30"), day("2016-01-02"));
        let mut list: Vec<(NaiveDate, u32)> = crate::date::days_between(start, end)
            .flat_map(|d| (0..names.len() as u32).map(move |i| (d, i)))
            .collect();
        order_cells(&names, &mut list);
        let grid = Cells::grid(start, end, &names);
        assert_eq!(grid.len(), list.len());
        let got: Vec<_> = (0..grid.len()).map(|i| grid.get(i)).collect();
        assert_eq!(got, list);
        // The years 0000-9999 for 10 listings: 36.5M cells, no list.
        let grid = Cells::grid(day("0000-01-01"), day("9999-12-31"), &names);
        assert_eq!(grid.len(), 3_652_425 * 5);
        assert_eq!(grid.get(grid.len() - 1), (day("9999-12-31"), 2));
    }

    #[test]
    fn listings_whose_hashes_collide_stay_apart() {
        let p = plan(&["cart_to_checkout_ctr"]);
        let mut agg = Aggregator::new(&p, GroupBy::Listing);
        let a = agg.listing_index_hashed(b"a", 7);
        let b = agg.listing_index_hashed(b"b", 7);
        let c = agg.listing_index_hashed(b"c", 7);
        assert_eq!([a, b, c], [0, 1, 2]);
        assert_eq!(agg.listing_index_hashed(b"b", 7), 1);
        assert_eq!(agg.listing_index_hashed(b"a", 7), 0);
        assert_eq!(agg.listing_index(b"a"), 3, "another hash: another entry");
    }

    #[test]
    fn ordering_in_small_steps_equals_ordering_at_once() {
        let d = |n: i32| NaiveDate::from_num_days_from_ce_opt(735_000 + n).unwrap();
        let mut x: u64 = 88172645463325252;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        // Over several runs (RUN = 4096), numeric and other ids.
        let names: ListingNames = (0..9_000)
            .map(|i| match next(3) {
                0 => format!("{}", next(1_000_000)),
                1 => format!("{:05}", next(100_000)),
                _ => format!("sku-{}-{i}", next(50)),
            })
            .collect::<std::collections::BTreeSet<_>>()
            .iter()
            .map(|s| s.as_bytes())
            .collect();
        let cells: Vec<(NaiveDate, u32)> = (0..20_000)
            .map(|_| (d(next(40) as i32), next(names.len() as u64) as u32))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut shuffled = cells.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, next(i as u64 + 1) as usize);
        }
        let mut want = shuffled.clone();
        want.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| listing_cmp(&names[a.1 as usize], &names[b.1 as usize]))
        });
        for budget in [1, 97, 5_000, usize::MAX] {
            let mut got = shuffled.clone();
            let mut ordering = CellOrdering::new(names.len(), got.len());
            let mut steps = 0;
            while !ordering.step(&names, &mut got, budget) {
                steps += 1;
            }
            assert_eq!(got, want, "budget {budget}");
            if budget < 5_000 {
                assert!(steps > 100, "budget {budget}: {steps} steps");
            }
        }
    }

    #[test]
    fn wilson_bounds_match_the_issue_and_rank_confidently() {
        let z = wilson_z(0.95).unwrap();
        assert!((z - 1.959964).abs() < 1e-6, "{z}");
        let b = |num, den| (wilson_lower(num, den, z).unwrap() * 100.0 * 100.0).round() / 100.0;
        assert_eq!(b(90, 100), 82.56);
        assert_eq!(b(1, 1), 20.65);
        assert_eq!(wilson_lower(0, 10, z), Some(0.0));
        assert_eq!(wilson_lower(5, 3, z), None);
        assert_eq!(wilson_lower(-1, 3, z), None);
        assert!(wilson_z(1.0).is_err() && wilson_z(0.0).is_err());
        assert!(wilson_z(0.99).unwrap() > z);

        let row = |l: &str, num: i64, den: i64| Row {
            metric: 0,
            date: None,
            listing: Some(l.as_bytes().into()),
            numerator: num,
            denominator: den,
            value: Some(num as f64 / den as f64 * 100.0),
        };
        let rows = || vec![row("lucky", 1, 1), row("steady", 90, 100), row("new", 0, 3)];
        let by_value: Vec<_> = top(rows(), 3, 1, Rank::Value, 100.0).unwrap();
        assert_eq!(by_value[0].row.listing.as_deref(), Some(&b"lucky"[..]));
        assert!(by_value[0].bound.is_none());
        let by_wilson = top(rows(), 2, 1, Rank::Wilson { z }, 100.0).unwrap();
        let names: Vec<_> = by_wilson
            .iter()
            .map(|r| r.row.listing.as_deref().unwrap().to_vec())
            .collect();
        assert_eq!(names, [b"steady".to_vec(), b"lucky".to_vec()]);
        assert!((by_wilson[0].bound.unwrap() - 82.56).abs() < 0.01);
        let e = top(vec![row("over", 5, 3)], 1, 1, Rank::Wilson { z }, 100.0)
            .err()
            .unwrap();
        assert!(e.to_string().contains("listing 'over' has 5/3"), "{e}");
    }

    #[test]
    fn listing_keys_order_exactly_as_listing_cmp() {
        let mut ids: Vec<Vec<u8>> = [
            "0",
            "00",
            "000",
            "1",
            "01",
            "001",
            "10",
            "010",
            "9",
            "99",
            "100",
            "a",
            "A",
            "a0",
            "0a",
            "-1",
            "1.5",
            "_",
            "sku-9",
            "sku-10",
            "z",
            "9".repeat(38).as_str(),
            "9".repeat(39).as_str(),
            "1".repeat(64).as_str(),
            &format!("0{}", "9".repeat(38)),
            &format!("1{}", "0".repeat(38)),
            &format!("1{}", "0".repeat(37)),
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let mut x: u64 = 3;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = 1 + (x >> 58) as usize % 45;
            let alphabet: &[u8] = if x & 1 == 0 {
                b"0123456789"
            } else {
                b"0129ab_-."
            };
            let id: Vec<u8> = (0..len)
                .map(|i| alphabet[((x >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            ids.push(id);
        }
        for a in &ids {
            for b in ids.iter().step_by(7) {
                assert_eq!(
                    ListingKey::of(a).cmp(&ListingKey::of(b)),
                    listing_cmp(a, b),
                    "{:?} vs {:?}",
                    String::from_utf8_lossy(a),
                    String::from_utf8_lossy(b)
                );
            }
        }
    }

    #[test]
    fn the_picker_ranks_exactly_as_top_does() {
        let p = plan(&["cart_to_checkout_ctr"]);
        let z = wilson_z(0.95).unwrap();
        // A deterministic pseudo-random aggregation with many ties.
        let mut agg = Aggregator::new(&p, GroupBy::Listing);
        let mut x: u64 = 7;
        for i in 0..5000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let den = (x >> 33) % 12;
            let num = (x >> 40) % (den + 1);
            let listing = if i % 3 == 0 {
                format!("sku-{i}")
            } else {
                format!("{}", i * 7 % 4999)
            };
            agg.add(
                day("2015-12-31"),
                listing.as_bytes(),
                &[num as i64, den as i64],
            )
            .unwrap();
        }
        let names = |v: &[Ranked]| -> Vec<(Vec<u8>, Option<u64>)> {
            v.iter()
                .map(|r| {
                    (
                        r.row.listing.clone().unwrap().to_vec(),
                        r.bound.map(f64::to_bits),
                    )
                })
                .collect()
        };
        for (n, min_den, rank) in [
            (10, 1, Rank::Value),
            (1, 3, Rank::Value),
            (700, 2, Rank::Value),
            (10, 1, Rank::Wilson { z }),
            (3000, 1, Rank::Wilson { z }),
            (0, 1, Rank::Value),
        ] {
            let want = top(agg.rows(&p), n, min_den, rank, 100.0).unwrap();
            for chunk in [1, 97, 100_000] {
                let mut picker = TopPicker::new(n, min_den, rank, 100.0);
                while !picker.feed(&agg, &p, chunk) {}
                let got = picker.finish(&agg, &p).unwrap();
                assert_eq!(
                    names(&got),
                    names(&want),
                    "n {n} min {min_den} chunk {chunk}"
                );
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.row, w.row);
                }
            }
        }
        // A row that is not a proportion: the same error, naming the first
        // such listing in listing order, whatever the chunks.
        agg.add(day("2015-12-31"), b"zz-over", &[5, 3]).unwrap();
        agg.add(day("2015-12-31"), b"aa-over", &[9, 4]).unwrap();
        let want = top(agg.rows(&p), 5, 1, Rank::Wilson { z }, 100.0)
            .err()
            .unwrap();
        let mut picker = TopPicker::new(5, 1, Rank::Wilson { z }, 100.0);
        while !picker.feed(&agg, &p, 13) {}
        let got = picker.finish(&agg, &p).err().unwrap();
        assert_eq!(got, want);
        assert!(got.to_string().contains("'aa-over' has 9/4"), "{got}");
    }

    #[test]
    fn rank_is_parsed_with_an_optional_confidence() {
        let p = |words: &[&str]| {
            let mut args: Vec<&[u8]> = vec![b"m", b"2015-12-01", b"2015-12-31", b"5"];
            args.extend(words.iter().map(|w| w.as_bytes()));
            parse_top(&args).map(|t| (t.rank, t.min_denominator))
        };
        assert_eq!(p(&[]).unwrap(), (Rank::Value, 1));
        assert_eq!(
            p(&["rank", "value", "MINDENOM", "3"]).unwrap(),
            (Rank::Value, 3)
        );
        let Rank::Wilson { z } = p(&["RANK", "WILSON"]).unwrap().0 else {
            panic!()
        };
        assert!((z - 1.959964).abs() < 1e-6);
        let (Rank::Wilson { z }, 2) = p(&["RANK", "WILSON", "0.99", "MINDENOM", "2"]).unwrap()
        else {
            panic!()
        };
        assert!((z - 2.575829).abs() < 1e-6);
        let (Rank::Wilson { .. }, 4) = p(&["MINDENOM", "4", "RANK", "WILSON"]).unwrap() else {
            panic!()
        };
        assert!(p(&["RANK", "WILSON", "1.5"]).is_err());
        assert!(p(&["RANK", "BEST"]).is_err());
        assert!(p(&["RANK"]).is_err());
        assert!(p(&["RANK", "VALUE", "RANK", "WILSON"]).is_err());
    }

    #[test]
    fn plans_put_patterns_after_exact_fields() {
        let m = |name: &str, n: &str, d: &str| Metric {
            name: name.into(),
            numerator: n.as_bytes().to_vec(),
            denominator: d.as_bytes().to_vec(),
            scale: 100.0,
        };
        let plan = FieldPlan::new(vec![
            m("p", "/a:.*/", "imp"),
            m("q", "click", "/a:.*/"),
            m("r", "/b/", "imp"),
        ])
        .unwrap();
        assert_eq!(plan.fields, [b"imp".to_vec(), b"click".to_vec()]);
        assert_eq!(plan.patterns.len(), 2, "each distinct pattern once");
        assert_eq!(plan.width(), 4);
        assert_eq!(plan.slots, [(2, 0), (1, 2), (3, 0)]);
        let mut agg = Aggregator::new(&plan, GroupBy::Total);
        let day = crate::date::parse_day(b"2015-12-31").unwrap();
        agg.add(day, b"1", &[10, 1, 4, 2]).unwrap();
        let rows = agg.rows(&plan);
        assert_eq!(
            rows.iter()
                .map(|r| (r.numerator, r.denominator))
                .collect::<Vec<_>>(),
            [(4, 10), (1, 4), (2, 10)]
        );
    }

    #[test]
    fn json_rows_are_written_as_the_json_tree_would_write_them() {
        let p = plan(&["cart_to_checkout_ctr"]);
        for (date, listing, n, d) in [
            (Some(day("2015-12-31")), Some(&b"2155"[..]), 3, 7),
            (None, Some(&b"sku-\"\xff"[..]), 0, 0),
            (Some(day("2016-01-01")), None, 1, 0),
            (None, None, i64::MAX, 3),
        ] {
            let row = RowView {
                metric: 0,
                date,
                listing,
                numerator: n,
                denominator: d,
                value: (d != 0).then(|| n as f64 / d as f64 * 100.0),
            };
            let tree = serde_json::json!({
                "metric": p.metrics[0].name,
                "date": row.date.map_or_else(|| "*".to_string(), day_string),
                "listing": row.listing.map_or_else(|| "*".to_string(), |l| String::from_utf8_lossy(l).into_owned()),
                "numerator": row.numerator,
                "denominator": row.denominator,
                "value": row.value,
            })
            .to_string();
            assert_eq!(json_row(&row, &p), tree);
        }
    }
}
