//! A query's time range: days or hours, in a zone, given as dates, hours
//! or words relative to now; and the period a comparison looks back to.
//!
//! Bounds (the query's `start` and `end`, both included):
//!
//! | bound | means |
//! |---|---|
//! | `YYYY-MM-DD` | that day |
//! | `YYYY-MM-DDTHH` | that hour (local, in the query's zone) |
//! | `YYYY-MM-DDTHHZ` | that hour of UTC |
//! | `today`, `yesterday` | the day, in the query's zone |
//! | `-Nd` | the day N days before today |
//! | `now` | the current hour |
//! | `-Nh` | the hour N hours before the current one |
//!
//! Two day bounds make a range of whole days. Any hour bound makes a range
//! of absolute hours (`[from, to)` in hours since the epoch): hours are UTC
//! hours, so a local hour named at a DST change is never ambiguous in the
//! answer (a local hour that occurs twice names its first occurrence, one
//! that does not occur the hour after the gap).

use chrono::{Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use chrono_tz::Tz;

use crate::date::{day_of, day_string, parse_day};
use crate::error::{quote, Error, Result};
use crate::hours::epoch_hour;

/// One end of a range, as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Day(NaiveDate),
    Hour(NaiveDate, u32),
    /// An hour of UTC, in hours since the epoch.
    UtcHour(i64),
    Today,
    Yesterday,
    DaysAgo(u32),
    Now,
    HoursAgo(u32),
}

impl Bound {
    fn is_hour(self) -> bool {
        matches!(
            self,
            Bound::Hour(..) | Bound::UtcHour(_) | Bound::Now | Bound::HoursAgo(_)
        )
    }
}

/// Reads a bound (`what`: its name for errors).
pub fn parse_bound(what: &str, text: &[u8]) -> Result<Bound> {
    let lower = text.to_ascii_lowercase();
    let number = |digits: &[u8]| -> Option<u32> {
        std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok())
            .filter(|&n| n <= 1_000_000)
    };
    let bound = match lower.as_slice() {
        b"today" => Some(Bound::Today),
        b"yesterday" => Some(Bound::Yesterday),
        b"now" => Some(Bound::Now),
        [b'-', digits @ .., b'h'] => number(digits).map(Bound::HoursAgo),
        [b'-', digits @ .., b'd'] => number(digits).map(Bound::DaysAgo),
        [date @ .., b't', h1, h2] if date.len() == 10 => parse_day(date).and_then(|d| {
            let hh = number(&[*h1, *h2])?;
            (hh < 24).then_some(Bound::Hour(d, hh))
        }),
        [date @ .., b't', h1, h2, b'z'] if date.len() == 10 => parse_day(date).and_then(|d| {
            let hh = number(&[*h1, *h2])?;
            (hh < 24).then(|| Bound::UtcHour(crate::hours::first_hour(d) + i64::from(hh)))
        }),
        _ => parse_day(text).map(Bound::Day),
    };
    bound.ok_or_else(|| {
        Error::invalid(format!(
            "{what} must be a date (YYYY-MM-DD), an hour (YYYY-MM-DDTHH), today, yesterday, \
             now, -Nd or -Nh, got {}",
            quote(text)
        ))
    })
}

/// Where a query's range lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The days (in `tz`) the range touches, both included.
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// A range of hours: `[from, to)` in hours since the epoch. `None`:
    /// whole days, `start` to `end`.
    pub hours: Option<(i64, i64)>,
}

/// The absolute hour a local day starts at, in `tz`; an error when local
/// midnight is not on a UTC hour (a zone such as +05:30): its days are
/// not sums of hour buckets.
pub fn day_start_hour(day: NaiveDate, tz: Tz) -> Result<i64> {
    let at = local_instant(NaiveDateTime::new(day, NaiveTime::MIN), tz);
    if at.rem_euclid(3600) != 0 {
        return Err(not_whole(tz, day));
    }
    Ok(at.div_euclid(3600))
}

fn not_whole(tz: Tz, day: NaiveDate) -> Error {
    Error::invalid(format!(
        "TZ {}: its offset from UTC on {} is not a whole number of hours, so its days \
         and hours are not sums of the module's hour buckets (UTC hours)",
        tz.name(),
        day_string(day)
    ))
}

/// The unix seconds of a local time in `tz`: the first of two (a DST fall
/// back), or the one just after a gap (spring forward).
fn local_instant(local: NaiveDateTime, tz: Tz) -> i64 {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp(),
        LocalResult::None => {
            // In a gap: the first instant after it.
            let mut probe = local;
            for _ in 0..8 {
                probe += Duration::minutes(30);
                if let LocalResult::Single(t) | LocalResult::Ambiguous(t, _) =
                    tz.from_local_datetime(&probe)
                {
                    return t.timestamp() - t.timestamp().rem_euclid(3600);
                }
            }
            local.and_utc().timestamp()
        }
    }
}

/// The day, in `tz`, of absolute hour `hour`.
pub fn day_of_hour(hour: i64, tz: Tz) -> NaiveDate {
    day_of(hour * 3600, tz).unwrap_or_default()
}

/// The local time of absolute hour `hour` in `tz`, ISO 8601 with its
/// offset: `2015-12-22T13:00+01:00` (`Z` for UTC).
pub fn hour_label(hour: i64, tz: Tz) -> String {
    match tz.timestamp_opt(hour * 3600, 0) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
            let offset = t.offset().fix().local_minus_utc();
            if offset == 0 && tz.name() == "UTC" {
                t.format("%Y-%m-%dT%H:%MZ").to_string()
            } else {
                t.format("%Y-%m-%dT%H:%M%:z").to_string()
            }
        }
        LocalResult::None => hour.to_string(),
    }
}

/// [`hour_label`]s of rows in hour order: the last label is kept, so the
/// rows of one hour (one a listing) format it once.
pub struct HourLabels {
    tz: Tz,
    last: Option<(i64, String)>,
}

impl HourLabels {
    pub fn new(tz: Tz) -> HourLabels {
        HourLabels { tz, last: None }
    }

    /// The label of `hour` (hours since the epoch) in the zone.
    pub fn get(&mut self, hour: i64) -> &str {
        if self.last.as_ref().is_none_or(|(h, _)| *h != hour) {
            self.last = Some((hour, hour_label(hour, self.tz)));
        }
        self.last.as_ref().map_or("", |(_, label)| label.as_str())
    }
}

/// Resolves `from` and `to` in `tz` at `now_secs`.
pub fn resolve(from: Bound, to: Bound, tz: Tz, now_secs: i64) -> Result<Span> {
    let today = day_of(now_secs, tz)?;
    let now_h = epoch_hour(now_secs);
    let day = |b: Bound| -> Option<NaiveDate> {
        match b {
            Bound::Day(d) => Some(d),
            Bound::Today => Some(today),
            Bound::Yesterday => today.pred_opt(),
            Bound::DaysAgo(n) => today.checked_sub_signed(Duration::days(i64::from(n))),
            _ => None,
        }
    };
    let hour = |b: Bound, end: bool| -> Result<i64> {
        let h = match b {
            Bound::Hour(d, hh) => {
                let at = local_instant(
                    NaiveDateTime::new(
                        d,
                        NaiveTime::from_hms_opt(hh, 0, 0).unwrap_or(NaiveTime::MIN),
                    ),
                    tz,
                );
                if at.rem_euclid(3600) != 0 {
                    return Err(not_whole(tz, d));
                }
                at.div_euclid(3600)
            }
            Bound::UtcHour(h) => h,
            Bound::Now => now_h,
            Bound::HoursAgo(n) => now_h - i64::from(n),
            other => {
                let d = day(other).ok_or_else(|| Error::invalid("date out of range"))?;
                let d = if end { d.succ_opt().unwrap_or(d) } else { d };
                return day_start_hour(d, tz);
            }
        };
        Ok(if end { h + 1 } else { h })
    };
    if !from.is_hour() && !to.is_hour() {
        let (start, end) = (day(from), day(to));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(Error::invalid("date out of range"));
        };
        if start > end {
            return Err(Error::invalid(format!(
                "start date {} is after end date {}",
                day_string(start),
                day_string(end)
            )));
        }
        return Ok(Span {
            start,
            end,
            hours: None,
        });
    }
    let (from_h, to_h) = (hour(from, false)?, hour(to, true)?);
    if from_h >= to_h {
        return Err(Error::invalid(format!(
            "start {} is after end {}",
            hour_label(from_h, tz),
            hour_label(to_h - 1, tz)
        )));
    }
    Ok(Span {
        start: day_of_hour(from_h, tz),
        end: day_of_hour(to_h - 1, tz),
        hours: Some((from_h, to_h)),
    })
}

/// The hours of `[from, to)` in `tz`, each checked to be a whole number of
/// hours off UTC (so its local day is a union of UTC hours); at most
/// [`MAX_HOURS`] hours.
pub fn check_whole_hours(tz: Tz, from: i64, to: i64) -> Result<()> {
    if to - from > MAX_HOURS {
        return Err(Error::invalid(format!(
            "a range of hours (or in another zone) covers at most {} days",
            MAX_HOURS / 24
        )));
    }
    for h in from..to {
        if let LocalResult::Single(t) = tz.timestamp_opt(h * 3600, 0) {
            if t.offset().fix().local_minus_utc() % 3600 != 0 {
                return Err(not_whole(tz, t.date_naive()));
            }
        }
    }
    Ok(())
}

/// The longest range read from hour buckets: 400 days.
pub const MAX_HOURS: i64 = 400 * 24;

/// `COMPARE PREVIOUS|WEEK`: the period each row is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// The period of equal length just before.
    Previous,
    /// The same days or hours one week earlier.
    Week,
}

impl Compare {
    pub fn parse(text: &[u8]) -> Result<Compare> {
        match text.to_ascii_uppercase().as_slice() {
            b"PREVIOUS" => Ok(Compare::Previous),
            b"WEEK" => Ok(Compare::Week),
            _ => Err(Error::syntax(format!(
                "COMPARE takes PREVIOUS or WEEK, got {}",
                quote(text)
            ))),
        }
    }

    /// How far back the compared period is: (days, hours).
    pub fn shift(self, span: &Span) -> (i64, i64) {
        match (self, span.hours) {
            (Compare::Week, _) => (7, 168),
            (Compare::Previous, Some((from, to))) => (((to - from) + 23) / 24, to - from),
            (Compare::Previous, None) => {
                let days = (span.end - span.start).num_days() + 1;
                (days, days * 24)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_day(s.as_bytes()).unwrap()
    }

    #[test]
    fn bounds_parse() {
        assert_eq!(
            parse_bound("start", b"2015-12-22").unwrap(),
            Bound::Day(d("2015-12-22"))
        );
        assert_eq!(
            parse_bound("start", b"2015-12-22T13").unwrap(),
            Bound::Hour(d("2015-12-22"), 13)
        );
        assert_eq!(parse_bound("start", b"NOW").unwrap(), Bound::Now);
        assert_eq!(
            parse_bound("start", b"1970-01-02T01Z").unwrap(),
            Bound::UtcHour(25)
        );
        assert_eq!(parse_bound("start", b"-24h").unwrap(), Bound::HoursAgo(24));
        assert_eq!(parse_bound("start", b"-7d").unwrap(), Bound::DaysAgo(7));
        assert_eq!(
            parse_bound("start", b"yesterday").unwrap(),
            Bound::Yesterday
        );
        for bad in [
            &b"2015-12-22T24"[..],
            b"-h",
            b"-3x",
            b"2015-13-01",
            b"soon",
            b"2015-12-22T1",
        ] {
            assert!(parse_bound("start", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn days_and_hours_resolve_in_the_zone() {
        let utc = Tz::UTC;
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2015-12-22T13:30Z
        let now = 1450791000;
        let s = resolve(Bound::Today, Bound::Today, utc, now).unwrap();
        assert_eq!(
            (s.start, s.end, s.hours),
            (d("2015-12-22"), d("2015-12-22"), None)
        );
        let s = resolve(Bound::HoursAgo(2), Bound::Now, utc, now).unwrap();
        let h = epoch_hour(now);
        assert_eq!(s.hours, Some((h - 2, h + 1)));
        // In New York it is 08:30 on the 22nd: today from its midnight (05:00Z).
        let s = resolve(Bound::Today, Bound::Now, ny, now).unwrap();
        assert_eq!(s.hours, Some((h - 8, h + 1)));
        assert_eq!(s.start, d("2015-12-22"));
        // A local hour bound.
        let s = resolve(
            Bound::Hour(d("2015-12-22"), 9),
            Bound::Hour(d("2015-12-22"), 10),
            ny,
            now,
        )
        .unwrap();
        assert_eq!(s.hours, Some((h + 1, h + 3)));
        assert!(resolve(Bound::Now, Bound::HoursAgo(1), utc, now).is_err());
        assert!(resolve(
            Bound::Day(d("2015-12-23")),
            Bound::Day(d("2015-12-22")),
            utc,
            now
        )
        .is_err());
    }

    #[test]
    fn dst_days_have_23_and_25_hours_and_half_hour_zones_are_refused() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let london: Tz = "Europe/London".parse().unwrap();
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let len = |tz: Tz, day: &str| {
            let s = resolve(Bound::Day(d(day)), Bound::Now, tz, 0).map(|_| ());
            drop(s);
            let a = day_start_hour(d(day), tz).unwrap();
            let b = day_start_hour(d(day).succ_opt().unwrap(), tz).unwrap();
            b - a
        };
        assert_eq!(len(ny, "2016-03-13"), 23);
        assert_eq!(len(ny, "2016-11-06"), 25);
        assert_eq!(len(london, "2016-03-27"), 23);
        assert_eq!(len(london, "2016-10-30"), 25);
        assert_eq!(len(london, "2016-06-01"), 24);
        assert!(day_start_hour(d("2016-01-01"), kolkata).is_err());
        assert!(check_whole_hours(kolkata, 400_000, 400_010).is_err());
        assert!(check_whole_hours(ny, 400_000, 400_010).is_ok());
        // The ambiguous 01:00 of a fall-back day names its first occurrence.
        let first = day_start_hour(d("2016-11-06"), ny).unwrap();
        let s = resolve(
            Bound::Hour(d("2016-11-06"), 1),
            Bound::Hour(d("2016-11-06"), 1),
            ny,
            1_500_000_000,
        )
        .unwrap();
        assert_eq!(s.hours, Some((first + 1, first + 2)));
        assert_eq!(hour_label(first + 1, ny), "2016-11-06T01:00-04:00");
        assert_eq!(hour_label(first + 2, ny), "2016-11-06T01:00-05:00");
        assert_eq!(hour_label(402789, Tz::UTC), "2015-12-13T21:00Z");
    }
}

/// What a query reads, when it is more than whole days of the module's
/// zone: whole days from the day hashes, hours from the hour keys, each
/// for the period asked or the one compared with, and which group each
/// falls in.
#[derive(Debug, Clone, PartialEq)]
pub struct Periods {
    /// The zone groups by day are in.
    pub tz: Tz,
    pub group: super::args::GroupBy,
    /// Whole days read from day hashes, both included, and for the compared
    /// period the days it is shifted by.
    pub days: Vec<(NaiveDate, NaiveDate, Option<i64>)>,
    /// Hours `[from, to)` read from hour keys, and for the compared period
    /// the hours it is shifted by.
    pub hours: Vec<(i64, i64, Option<i64>)>,
}

impl Periods {
    /// `None` for a plain query (whole days of the module's zone, no
    /// comparison): the day path as it always was.
    pub fn plan(
        when: &super::args::When,
        group: super::args::GroupBy,
        module_tz: Tz,
    ) -> Result<Option<Periods>> {
        use super::args::GroupBy;
        let span = &when.span;
        let hourly = group == GroupBy::Hour || when.tz_given || span.hours.is_some();
        if !hourly && when.compare.is_none() {
            return Ok(None);
        }
        let shift = when.compare.map(|c| c.shift(span));
        let mut out = Periods {
            tz: when.tz,
            group,
            days: Vec::new(),
            hours: Vec::new(),
        };
        if !hourly {
            out.days.push((span.start, span.end, None));
            if let Some((sd, _)) = shift {
                let back = |d: NaiveDate| d - Duration::days(sd);
                out.days.push((back(span.start), back(span.end), Some(sd)));
            }
            return Ok(Some(out));
        }
        let (from, to) = match span.hours {
            Some(h) => h,
            None => (
                day_start_hour(span.start, when.tz)?,
                day_start_hour(span.end.succ_opt().unwrap_or(span.end), when.tz)?,
            ),
        };
        let mut periods = vec![(from, to, None)];
        if let Some((_, sh)) = shift {
            periods.push((from - sh, to - sh, Some(sh)));
        }
        // Whole days of the module's zone come from the day hashes when
        // the groups are the module's days (or none): not by hour, not in
        // another zone.
        let from_days = group != GroupBy::Hour && !when.tz_given && when.tz == module_tz;
        for (a, b, sh) in periods {
            let mut rest = vec![(a, b)];
            if from_days && sh.is_none_or(|h| h % 24 == 0) {
                if let Some((first, last)) = whole_days(a, b, module_tz)? {
                    out.days.push((first, last, sh.map(|h| h / 24)));
                    let (s, e) = (
                        day_start_hour(first, module_tz)?,
                        day_start_hour(last.succ_opt().unwrap_or(last), module_tz)?,
                    );
                    rest = vec![(a, s), (e, b)];
                }
            }
            for (x, y) in rest.into_iter().filter(|(x, y)| x < y) {
                check_whole_hours(when.tz, x, y)?;
                out.hours.push((x, y, sh));
            }
        }
        Ok(Some(out))
    }

    /// The group day of a day hash's day, and whether it counts for the
    /// compared period; `None` when no period reads it from day hashes.
    pub fn day(&self, day: NaiveDate) -> Option<(NaiveDate, bool)> {
        self.days.iter().find_map(|&(first, last, shift)| {
            (day >= first && day <= last).then(|| match shift {
                Some(sd) => (day + Duration::days(sd), true),
                None => (day, false),
            })
        })
    }

    /// The group key (see `Aggregator::merge_group`) of an hour read from
    /// an hour key, and whether it counts for the compared period; `None`
    /// when no period reads it from hours.
    pub fn hour(&self, hour: i64) -> Option<(i32, bool)> {
        use super::args::GroupBy;
        use chrono::Datelike;
        let (from_shift, previous) = self.hours.iter().find_map(|&(from, to, shift)| {
            (hour >= from && hour < to).then_some((shift.unwrap_or(0), shift.is_some()))
        })?;
        let h = hour + from_shift;
        let key = match self.group {
            GroupBy::Hour => i32::try_from(h).unwrap_or(i32::MAX),
            GroupBy::Day | GroupBy::Date => day_of_hour(h, self.tz).num_days_from_ce(),
            GroupBy::Listing | GroupBy::Total => i32::MIN,
        };
        Some((key, previous))
    }

    /// The days whose day hashes are read (first and last of all periods).
    pub fn day_span(&self) -> Option<(NaiveDate, NaiveDate)> {
        let first = self.days.iter().map(|d| d.0).min()?;
        let last = self.days.iter().map(|d| d.1).max()?;
        Some((first, last))
    }

    /// The UTC dates whose hour keys are read.
    pub fn utc_dates(&self) -> Vec<NaiveDate> {
        let mut dates: Vec<NaiveDate> = Vec::new();
        for &(from, to, _) in &self.hours {
            let mut h = from;
            while h < to {
                let (date, _) = crate::hours::date_and_hour(h);
                if dates.last() != Some(&date) && !dates.contains(&date) {
                    dates.push(date);
                }
                h = crate::hours::first_hour(date) + 24;
            }
        }
        dates.sort();
        dates
    }

    /// Whether a comparison is made (sums are twice the plan's width).
    pub fn compares(&self) -> bool {
        self.days.iter().any(|d| d.2.is_some()) || self.hours.iter().any(|h| h.2.is_some())
    }
}

/// The first and last whole days of `tz` inside the hours `[from, to)`.
fn whole_days(from: i64, to: i64, tz: Tz) -> Result<Option<(NaiveDate, NaiveDate)>> {
    let mut first = day_of_hour(from, tz);
    if day_start_hour(first, tz)? < from {
        first = first.succ_opt().unwrap_or(first);
    }
    let mut last = day_of_hour(to - 1, tz);
    if day_start_hour(last.succ_opt().unwrap_or(last), tz)? > to {
        last = last.pred_opt().unwrap_or(last);
    }
    Ok((first <= last).then_some((first, last)))
}

#[cfg(test)]
mod periods_tests {
    use super::super::args::{GroupBy, When};
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_day(s.as_bytes()).unwrap()
    }

    fn when(span: Span, tz: Tz, tz_given: bool, compare: Option<Compare>) -> When {
        When {
            span,
            tz,
            tz_given,
            compare,
        }
    }

    #[test]
    fn a_range_of_hours_reads_whole_days_from_day_hashes_and_its_ends_from_hours() {
        let utc = Tz::UTC;
        let from = day_start_hour(d("2015-12-20"), utc).unwrap() + 8;
        let to = day_start_hour(d("2015-12-25"), utc).unwrap() + 18;
        let span = Span {
            start: d("2015-12-20"),
            end: d("2015-12-25"),
            hours: Some((from, to)),
        };
        let p = Periods::plan(&when(span, utc, false, None), GroupBy::Date, utc)
            .unwrap()
            .unwrap();
        assert_eq!(p.days, vec![(d("2015-12-21"), d("2015-12-24"), None)]);
        assert_eq!(p.hours, vec![(from, from + 16, None), (to - 18, to, None)]);
        assert_eq!(p.utc_dates(), vec![d("2015-12-20"), d("2015-12-25")]);
        assert_eq!(p.day(d("2015-12-22")), Some((d("2015-12-22"), false)));
        assert_eq!(p.day(d("2015-12-20")), None);
        // By hour: everything from hours.
        let p = Periods::plan(&when(span, utc, false, None), GroupBy::Hour, utc)
            .unwrap()
            .unwrap();
        assert!(p.days.is_empty());
        assert_eq!(p.hours, vec![(from, to, None)]);
        assert_eq!(p.hour(from + 3), Some(((from + 3) as i32, false)));
    }

    #[test]
    fn comparisons_shift_to_the_period_asked() {
        let utc = Tz::UTC;
        let span = Span {
            start: d("2015-12-24"),
            end: d("2015-12-30"),
            hours: None,
        };
        let p = Periods::plan(
            &when(span, utc, false, Some(Compare::Previous)),
            GroupBy::Date,
            utc,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            p.days,
            vec![
                (d("2015-12-24"), d("2015-12-30"), None),
                (d("2015-12-17"), d("2015-12-23"), Some(7))
            ]
        );
        assert_eq!(p.day(d("2015-12-18")), Some((d("2015-12-25"), true)));
        assert!(p.compares());
        assert_eq!(p.day_span(), Some((d("2015-12-17"), d("2015-12-30"))));
        // A zone of its own: hours, days of that zone.
        let ny: Tz = "America/New_York".parse().unwrap();
        let p = Periods::plan(
            &when(span, ny, true, Some(Compare::Week)),
            GroupBy::Date,
            utc,
        )
        .unwrap()
        .unwrap();
        assert!(p.days.is_empty());
        let h = day_start_hour(d("2015-12-24"), ny).unwrap();
        use chrono::Datelike;
        assert_eq!(
            p.hour(h - 168 + 2),
            Some((d("2015-12-24").num_days_from_ce(), true))
        );
        assert_eq!(p.hour(h - 169), None);
        // Plain whole days: the day path.
        assert_eq!(
            Periods::plan(&when(span, utc, false, None), GroupBy::Day, utc).unwrap(),
            None
        );
    }
}

/// A bound that names hour `hour` (of UTC) whatever the zone: what a
/// cluster coordinator sends the masters in place of words relative to now.
pub fn utc_hour_bound(hour: i64) -> String {
    let (date, h) = crate::hours::date_and_hour(hour);
    format!("{}T{h:02}Z", day_string(date))
}
