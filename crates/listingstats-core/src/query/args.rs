//! QUERY and TOP arguments: parsing and the limits checked before any work.

use super::span::{parse_bound, resolve, Bound, Compare, Span};
use super::wilson::{wilson_z, WILSON_CONFIDENCE};
use chrono_tz::Tz;

use rustc_hash::FxHashSet;

use chrono::NaiveDate;

use crate::date::day_count;
use crate::error::{quote, Error, Result};
use crate::keys::check_listing;
use crate::metrics::check_name;
use crate::number::parse_i64_arg;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Listing,
    Date,
    Total,
    /// One row per (hour, listing): hour buckets (`hours yes`).
    Hour,
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

/// Where and when a query looks: its range resolved in its zone, the
/// zone, whether `TZ` named it, and the comparison asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct When {
    pub span: Span,
    pub tz: Tz,
    pub tz_given: bool,
    pub compare: Option<Compare>,
}

/// The clock and zone bounds are resolved with: the server's time and
/// the module's `timezone`.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub now_secs: i64,
    pub tz: Tz,
}

impl Default for At {
    fn default() -> Self {
        At {
            now_secs: 0,
            tz: Tz::UTC,
        }
    }
}

fn parse_bounds(start: &[u8], end: &[u8]) -> Result<(Bound, Bound)> {
    Ok((parse_bound("start", start)?, parse_bound("end", end)?))
}

fn resolve_when(
    (start, end): (Bound, Bound),
    tz: Option<Tz>,
    compare: Option<Compare>,
    at: &At,
) -> Result<When> {
    let zone = tz.unwrap_or(at.tz);
    Ok(When {
        span: resolve(start, end, zone, at.now_secs)?,
        tz: zone,
        tz_given: tz.is_some_and(|t| t != at.tz),
        compare,
    })
}

fn parse_tz(value: &[u8]) -> Result<Tz> {
    let name = std::str::from_utf8(value).map_err(|_| Error::invalid("TZ must be ASCII"))?;
    crate::date::parse_timezone(name)
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueryArgs<'a> {
    pub metrics: Vec<&'a str>,
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// The range in full (hours, zone, comparison); `start`/`end` are its
    /// days.
    pub when: When,
    pub listings: Listings<'a>,
    pub group: GroupBy,
    pub format: Format,
    /// `MAXAGE ms`: an answer computed at most this long ago will do.
    pub max_age: Option<u64>,
}

/// The longest `MAXAGE`: a day.
pub const MAX_AGE_LIMIT: u64 = 86_400_000;

fn parse_max_age(value: &[u8]) -> Result<u64> {
    let ms = parse_i64_arg("MAXAGE", value)?;
    u64::try_from(ms)
        .ok()
        .filter(|&ms| ms <= MAX_AGE_LIMIT)
        .ok_or_else(|| {
            Error::invalid(format!(
                "MAXAGE must be between 0 and {MAX_AGE_LIMIT} milliseconds, got {ms}"
            ))
        })
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

/// [`parse_query_at`] at the epoch, in UTC (tests).
#[cfg(test)]
pub fn parse_query<'a>(args: &[&'a [u8]]) -> Result<QueryArgs<'a>> {
    parse_query_at(args, &At::default())
}

/// `LISTINGSTATS.QUERY metrics start end listings [GROUPBY g] [FORMAT f]
/// [TZ zone] [COMPARE PREVIOUS|WEEK] [MAXAGE ms]`, relative bounds resolved at `at`.
pub fn parse_query_at<'a>(args: &[&'a [u8]], at: &At) -> Result<QueryArgs<'a>> {
    let [metrics, start, end, listings, options @ ..] = args else {
        return Err(Error::wrong_arity("LISTINGSTATS.QUERY"));
    };
    let metrics = parse_metric_names(metrics)?;
    let bounds = parse_bounds(start, end)?;
    let listings = parse_listings(listings)?;
    let mut group = GroupBy::Day;
    let mut format = Format::Resp;
    let mut max_age = None;
    let mut tz = None;
    let mut compare = None;
    parse_options(options, |name, value| {
        let v = value.to_ascii_uppercase();
        match name {
            "MAXAGE" => max_age = Some(parse_max_age(value)?),
            "TZ" => tz = Some(parse_tz(value)?),
            "COMPARE" => compare = Some(Compare::parse(value)?),
            "GROUPBY" => {
                group = match v.as_slice() {
                    b"DAY" => GroupBy::Day,
                    b"LISTING" => GroupBy::Listing,
                    b"DATE" => GroupBy::Date,
                    b"TOTAL" => GroupBy::Total,
                    b"HOUR" => GroupBy::Hour,
                    _ => {
                        return Err(Error::syntax(format!(
                            "GROUPBY takes DAY, LISTING, DATE, TOTAL or HOUR, got {}",
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
    if format == Format::Legacy && (compare.is_some() || tz.is_some()) {
        return Err(Error::invalid(
            "FORMAT LEGACY takes neither COMPARE nor TZ: the old output has neither",
        ));
    }
    let when = resolve_when(bounds, tz, compare, at)?;
    Ok(QueryArgs {
        metrics,
        start: when.span.start,
        end: when.span.end,
        when,
        listings,
        group,
        format,
        max_age,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopArgs<'a> {
    pub metric: &'a str,
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// The range in full (see [`QueryArgs::when`]).
    pub when: When,
    pub n: usize,
    pub listings: Listings<'a>,
    pub min_denominator: i64,
    pub rank: Rank,
    /// `MAXAGE ms` (see [`QueryArgs::max_age`]).
    pub max_age: Option<u64>,
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

/// [`parse_top_at`] at the epoch, in UTC (tests).
#[cfg(test)]
pub fn parse_top<'a>(args: &[&'a [u8]]) -> Result<TopArgs<'a>> {
    parse_top_at(args, &At::default())
}

/// `LISTINGSTATS.TOP metric start end n [LISTINGS ids|*] [MINDENOM k]
/// [RANK ...] [TZ zone] [COMPARE PREVIOUS|WEEK] [MAXAGE ms]`
pub fn parse_top_at<'a>(args: &[&'a [u8]], at: &At) -> Result<TopArgs<'a>> {
    let [metric, start, end, n, options @ ..] = args else {
        return Err(Error::wrong_arity("LISTINGSTATS.TOP"));
    };
    let metric = check_name(metric)?;
    let bounds = parse_bounds(start, end)?;
    let n = parse_i64_arg("n", n)?;
    let n =
        usize::try_from(n).map_err(|_| Error::invalid(format!("n must be 0 or more, got {n}")))?;
    let mut listings = Listings::All;
    let mut min_denominator = 1;
    let mut max_age = None;
    let mut tz = None;
    let mut compare = None;
    let (rank, options) = take_rank(options)?;
    parse_options(&options, |name, value| {
        match name {
            "LISTINGS" => listings = parse_listings(value)?,
            "MAXAGE" => max_age = Some(parse_max_age(value)?),
            "TZ" => tz = Some(parse_tz(value)?),
            "COMPARE" => compare = Some(Compare::parse(value)?),
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
    let when = resolve_when(bounds, tz, compare, at)?;
    Ok(TopArgs {
        metric,
        start: when.span.start,
        end: when.span.end,
        when,
        n,
        listings,
        min_denominator,
        rank,
        max_age,
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
