//! Migrating the flat counters that came before day hashes: one string
//! per (day, event, listing), `<prefix>YYYY-MM-DD:<event>_<listing>`
//! holding an integer, e.g. `2015-12-17:cart::checkoutnow:impression_2276`
//! = "455". Each is added to the field `<event>` of the day hash of
//! `<listing>` and deleted (`LISTINGSTATS.MIGRATE`).

use chrono::NaiveDate;

use super::date::parse_day;
use super::error::{quote, Error, Result};
use super::keys::{check_event, check_listing};
use super::metrics::{pattern_of, Metric};
use super::number::parse_i64;

/// A flat counter key, taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct Flat<'a> {
    pub day: NaiveDate,
    pub event: &'a [u8],
    pub listing: &'a [u8],
}

/// Takes apart a flat counter key under `prefix`. `None` when the name
/// does not have the shape (a day hash, the module's own keys, anything
/// else): those are not flat counters. `Some(Err)` when it has the shape
/// (`YYYY-MM-DD:` after the prefix) but an impossible date, no listing,
/// or an invalid event or listing: reported, left untouched.
pub fn parse_flat_key<'a>(prefix: &str, key: &'a [u8]) -> Option<Result<Flat<'a>>> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    let (date, tail) = (rest.get(..10)?, rest.get(10..)?);
    let shaped = date.iter().enumerate().all(|(i, &b)| {
        if i == 4 || i == 7 {
            b == b'-'
        } else {
            b.is_ascii_digit()
        }
    });
    let body = tail.strip_prefix(b":")?;
    if !shaped {
        return None;
    }
    Some((|| {
        let day = parse_day(date)
            .ok_or_else(|| Error::invalid(format!("impossible date {}", quote(date))))?;
        let at = body
            .iter()
            .rposition(|&b| b == b'_')
            .ok_or_else(|| Error::invalid("no '_<listing>' at the end"))?;
        let (event, listing) = (&body[..at], &body[at + 1..]);
        check_event(event)?;
        check_listing(listing)?;
        Ok(Flat {
            day,
            event,
            listing,
        })
    })())
}

/// The field a flat counter's event goes to: the old pipeline wrote event
/// names lower-cased, so when one equals (ignoring case) an event a
/// registered metric reads, that metric's spelling is used, and the
/// built-in metrics see migrated data.
pub fn field_for(event: &[u8], metrics: &[Metric]) -> Vec<u8> {
    metrics
        .iter()
        .flat_map(|m| [&m.numerator, &m.denominator])
        .filter(|term| pattern_of(term).is_none())
        .find(|term| term.eq_ignore_ascii_case(event))
        .map_or_else(|| event.to_vec(), |term| term.clone())
}

/// A flat counter's value: an integer, as INCR wrote it.
pub fn flat_value(value: &[u8]) -> Result<i64> {
    parse_i64(value)
        .ok_or_else(|| Error::invalid(format!("value {} is not an integer", quote(value))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::builtins;

    #[test]
    fn flat_keys_are_recognised_and_taken_apart() {
        let f = parse_flat_key("", b"2015-12-17:cart::checkoutnow:impression_2276")
            .unwrap()
            .unwrap();
        assert_eq!(f.day, parse_day(b"2015-12-17").unwrap());
        assert_eq!(f.event, b"cart::checkoutnow:impression");
        assert_eq!(f.listing, b"2276");
        // The listing is after the last '_'; the event may hold '_'.
        let f = parse_flat_key("ls:", b"ls:2015-12-17:a_b:click_sku-1")
            .unwrap()
            .unwrap();
        assert_eq!((f.event, f.listing), (&b"a_b:click"[..], &b"sku-1"[..]));
        // Not flat counters at all.
        for other in [
            &b"2015-12-17_2276"[..],
            b"listingstats:metrics",
            b"ls:2015-12-17:x_1",
            b"2015-12-1:x_1",
            b"x",
        ] {
            assert!(parse_flat_key("", other).is_none(), "{other:?}");
        }
        assert!(
            parse_flat_key("ls:", b"2015-12-17:x_1").is_none(),
            "another prefix"
        );
        // Shaped, but bad: reported.
        for (bad, why) in [
            (&b"2015-13-45:x_1"[..], "impossible date"),
            (b"2015-12-17:x", "no '_<listing>'"),
            (b"2015-12-17:x_", "invalid listing"),
            (b"2015-12-17:_1", "invalid event"),
        ] {
            let e = parse_flat_key("", bad).unwrap().unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn registered_spellings_win_and_values_must_be_integers() {
        let all = builtins();
        assert_eq!(
            field_for(b"cart::checkoutnow:click", &all),
            b"cart::checkoutNow:click"
        );
        assert_eq!(
            field_for(b"ldp:sellpanel:addtocart:impression", &all),
            b"ldp:sellPanel:addToCart:impression"
        );
        assert_eq!(field_for(b"other:event", &all), b"other:event");
        assert_eq!(flat_value(b"455").unwrap(), 455);
        assert!(flat_value(b"4.5").is_err() && flat_value(b"").is_err());
    }
}
