//! Hour buckets (`hours yes`): each event also counted in its absolute
//! hour, in an hour key beside its day hash (see `keys::push_hour_key`):
//! one hash per (UTC date, listing), a field `HH:<event>` per hour and
//! event. Hours are UTC hours, so an hour is never ambiguous, whatever
//! daylight-saving change the module's or a query's zone has; the days of
//! any zone whose offset is whole hours are exact sums of them.

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};

use crate::keys::hour_field;
use crate::settings::Settings;
use crate::write::Increment;

/// Hours since 1970-01-01T00:00Z of a unix time in seconds.
pub fn epoch_hour(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(3600)
}

/// The UTC date and hour of day (0-23) of an epoch hour.
pub fn date_and_hour(hour: i64) -> (NaiveDate, u32) {
    let date = NaiveDate::from_ymd_opt(1970, 1, 1)
        .unwrap_or_default()
        .checked_add_signed(Duration::days(hour.div_euclid(24)))
        .unwrap_or_default();
    (date, hour.rem_euclid(24) as u32)
}

/// The first epoch hour of UTC date `date`.
pub fn first_hour(date: NaiveDate) -> i64 {
    NaiveDateTime::new(date, NaiveTime::MIN)
        .and_utc()
        .timestamp()
        .div_euclid(3600)
}

/// The absolute expiry (unix ms) of the hour key of UTC date `date`:
/// `days` days after that day ends; `None` when `days` is 0 (kept).
pub fn expiry_ms(date: NaiveDate, days: i64) -> Option<i64> {
    (days > 0).then(|| (first_hour(date) + 24 * (days + 1)) * 3_600_000)
}

/// What counting `delta` of `event` for `listing` in epoch hour `hour`
/// writes: `None` when hours are off, or the hour key would already be past
/// `hour-retention-days` (its day counters still count).
pub fn increment(
    settings: &Settings,
    listing: &[u8],
    event: &[u8],
    hour: i64,
    delta: i64,
    now_ms: i64,
) -> Option<Increment> {
    if !settings.hours {
        return None;
    }
    let (date, of_day) = date_and_hour(hour);
    let expire_at = expiry_ms(date, settings.hour_retention_days);
    if expire_at.is_some_and(|at| at <= now_ms) {
        return None;
    }
    Some(Increment {
        key: settings.keys.hour_key_token(date, listing),
        field: hour_field(of_day, event),
        delta,
        expire_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::date::parse_day;

    #[test]
    fn hours_are_utc_and_absolute() {
        // 2015-12-22T13:30:00Z
        let h = epoch_hour(1450791000);
        assert_eq!(date_and_hour(h), (parse_day(b"2015-12-22").unwrap(), 13));
        assert_eq!(first_hour(parse_day(b"2015-12-22").unwrap()), h - 13);
        assert_eq!(date_and_hour(-1), (parse_day(b"1969-12-31").unwrap(), 23));
        // Kept 30 days after the day ends: 2016-01-22T00:00Z.
        assert_eq!(
            expiry_ms(parse_day(b"2015-12-22").unwrap(), 30),
            Some(1453420800000)
        );
        assert_eq!(expiry_ms(parse_day(b"2015-12-22").unwrap(), 0), None);
    }

    #[test]
    fn an_hour_counts_in_its_key_and_field_unless_off_or_past_retention() {
        let mut s = Settings::default();
        let h = epoch_hour(1450791000);
        assert!(increment(&s, b"2155", b"click", h, 1, 0).is_none());
        s.hours = true;
        let inc = increment(&s, b"2155", b"click", h, 2, 1_450_791_000_000).unwrap();
        assert_eq!(&inc.key[..], b"2015-12-22h_2155");
        assert_eq!(&inc.field[..], b"13:click");
        assert_eq!(inc.delta, 2);
        assert_eq!(inc.expire_at, Some(1453420800000));
        // Asked 31 days later: past retention, not counted in hours.
        assert!(increment(&s, b"2155", b"click", h, 2, 1453420800000).is_none());
    }
}
