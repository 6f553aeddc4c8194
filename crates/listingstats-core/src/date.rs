//! Calendar days: strict `YYYY-MM-DD` parsing, formatting, and the day an
//! instant falls on in a time zone.
//!
//! Day hashes are named by the day, so the textual form must be canonical:
//! `2015-1-5` or `2015-13-40` would name keys no other tool writes. We accept
//! exactly four digits, a dash, two digits, a dash, two digits, and a date
//! that exists in the proleptic Gregorian calendar.

use chrono::{Datelike, NaiveDate, TimeZone};
pub use chrono_tz::Tz;

use super::error::{quote, Error, Result};
use super::token::ByteSink;

/// Parses `YYYY-MM-DD` strictly. `None` when the text is not such a date.
pub fn parse_day(text: &[u8]) -> Option<NaiveDate> {
    if text.len() != 10 || text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        text[range].iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)
}

/// Like [`parse_day`], with an error that names the argument.
pub fn parse_day_arg(what: &str, text: &[u8]) -> Result<NaiveDate> {
    parse_day(text).ok_or_else(|| {
        Error::invalid(format!(
            "{what} must be a date as YYYY-MM-DD, got {}",
            quote(text)
        ))
    })
}

/// Appends the canonical `YYYY-MM-DD` form. Only years 0..=9999 exist here:
/// every constructor in this module refuses others.
pub fn push_day(out: &mut impl ByteSink, day: NaiveDate) {
    let (y, m, d) = (day.year() as u32, day.month(), day.day());
    out.put(&[
        b'0' + (y / 1000 % 10) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
        b'0' + (m / 10) as u8,
        b'0' + (m % 10) as u8,
        b'-',
        b'0' + (d / 10) as u8,
        b'0' + (d % 10) as u8,
    ]);
}

pub fn day_string(day: NaiveDate) -> String {
    let mut out = Vec::with_capacity(10);
    push_day(&mut out, day);
    // push_day writes ASCII digits and dashes only.
    String::from_utf8(out).unwrap_or_default()
}

/// The calendar day, in `tz`, of the instant `unix_seconds`.
pub fn day_of(unix_seconds: i64, tz: Tz) -> Result<NaiveDate> {
    let out_of_range = || {
        Error::invalid(format!(
            "timestamp {unix_seconds} is outside years 0000-9999"
        ))
    };
    let instant = tz
        .timestamp_opt(unix_seconds, 0)
        .single()
        .ok_or_else(out_of_range)?;
    let day = instant.date_naive();
    if (0..=9999).contains(&day.year()) {
        Ok(day)
    } else {
        Err(out_of_range())
    }
}

/// When a day hash of `day` expires under `retention_days` (0: never):
/// the local midnight (in `tz`) that ends the day, `retention_days` days
/// later, as unix milliseconds. Counted in calendar days, so a DST change
/// in between does not shift it by an hour.
pub fn retention_expiry_ms(day: NaiveDate, tz: Tz, retention_days: i64) -> Option<i64> {
    if retention_days <= 0 {
        return None;
    }
    let end = day.checked_add_days(chrono::Days::new(retention_days as u64 + 1))?;
    let midnight = end.and_hms_opt(0, 0, 0)?;
    // A midnight that a DST jump skips takes the first instant after it.
    let instant = tz.from_local_datetime(&midnight).earliest().or_else(|| {
        tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(instant.timestamp_millis())
}

/// Refuses a write for `day` when its day hash would already be expired.
pub fn check_retained(
    day: NaiveDate,
    tz: Tz,
    retention_days: i64,
    now_ms: i64,
) -> Result<Option<i64>> {
    match retention_expiry_ms(day, tz, retention_days) {
        Some(at) if at <= now_ms => Err(Error::invalid(format!(
            "day {} is past retention (retention-days {retention_days}): nothing written",
            day_string(day)
        ))),
        at => Ok(at),
    }
}

/// An IANA time zone name such as `UTC` or `Europe/London`.
pub fn parse_timezone(name: &str) -> Result<Tz> {
    name.parse::<Tz>().map_err(|_| {
        Error::invalid(format!(
            "unknown time zone '{name}': use an IANA name such as UTC or Europe/London"
        ))
    })
}

/// Every day from `start` to `end`, both included.
pub fn days_between(start: NaiveDate, end: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    start.iter_days().take_while(move |d| *d <= end)
}

/// How many days `start..=end` holds (0 when reversed).
pub fn day_count(start: NaiveDate, end: NaiveDate) -> u64 {
    u64::try_from((end - start).num_days() + 1).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    #[test]
    fn parses_only_canonical_existing_dates() {
        assert_eq!(parse_day(b"2015-12-22"), Some(d(2015, 12, 22)));
        assert_eq!(parse_day(b"2016-02-29"), Some(d(2016, 2, 29)));
        assert_eq!(parse_day(b"0000-01-01"), Some(d(0, 1, 1)));
        for bad in [
            &b"2015-02-29"[..],
            b"2015-13-40",
            b"2015-1-05",
            b"2015-01-5",
            b"15-01-05",
            b"2015/01/05",
            b"2015-01-05 ",
            b"+015-01-05",
            b"2015-00-10",
            b"2015-01-00",
            b"",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_day(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["0001-01-01", "2015-12-31", "9999-12-31", "2020-02-29"] {
            assert_eq!(day_string(parse_day(text.as_bytes()).unwrap()), text);
        }
    }

    #[test]
    fn day_of_follows_the_zone() {
        let utc = parse_timezone("UTC").unwrap();
        let la = parse_timezone("America/Los_Angeles").unwrap();
        let tokyo = parse_timezone("Asia/Tokyo").unwrap();
        // 2015-12-11T17:45:06Z, from the seed's Presto table.
        assert_eq!(day_of(1449855906, utc).unwrap(), d(2015, 12, 11));
        assert_eq!(day_of(1449855906, tokyo).unwrap(), d(2015, 12, 12));
        // 2016-01-01T05:00:00Z is still New Year's Eve on the US west coast.
        assert_eq!(day_of(1451624400, la).unwrap(), d(2015, 12, 31));
        assert_eq!(day_of(-1, utc).unwrap(), d(1969, 12, 31));
        assert!(day_of(i64::MAX, utc).is_err());
        assert!(day_of(253_402_300_800, utc).is_err(), "year 10000");
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(parse_timezone("Europe/London").is_ok());
        let err = parse_timezone("Mars/Olympus").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("ERR unknown time zone 'Mars/Olympus'"));
    }

    #[test]
    fn ranges_cross_months_and_years() {
        let days: Vec<_> = days_between(d(2015, 12, 30), d(2016, 1, 2)).collect();
        assert_eq!(days.len(), 4);
        assert_eq!(day_count(d(2015, 12, 30), d(2016, 1, 2)), 4);
        assert_eq!(day_count(d(2016, 1, 2), d(2015, 12, 30)), 0);
        assert_eq!(days[3], d(2016, 1, 2));
    }

    #[test]
    fn retention_ends_at_local_midnight_n_days_after_the_day() {
        let d = |t: &str| parse_day(t.as_bytes()).unwrap();
        let utc = parse_timezone("UTC").unwrap();
        // 2015-12-22 + 30 days: the day ends 2015-12-23T00:00Z, expiry 2016-01-22T00:00Z.
        assert_eq!(
            retention_expiry_ms(d("2015-12-22"), utc, 30),
            Some(1_453_420_800_000)
        );
        assert_eq!(retention_expiry_ms(d("2015-12-22"), utc, 0), None);
        let london = parse_timezone("Europe/London").unwrap();
        // Across the March DST change: still local midnight (23:00Z in summer).
        let at = retention_expiry_ms(d("2016-03-20"), london, 10).unwrap();
        assert_eq!(
            at, 1_459_378_800_000,
            "2016-03-30T23:00:00Z = 2016-03-31 00:00 BST"
        );
        assert!(check_retained(d("2015-12-22"), utc, 30, 1_453_420_800_000).is_err());
        let e = check_retained(d("2015-12-22"), utc, 30, 1_453_420_800_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("day 2015-12-22 is past retention"), "{e}");
        assert_eq!(
            check_retained(d("2015-12-22"), utc, 30, 1_453_420_799_999).unwrap(),
            Some(1_453_420_800_000)
        );
        assert_eq!(
            check_retained(d("2015-12-22"), utc, 0, i64::MAX).unwrap(),
            None
        );
    }
}
