//! Integers as Redis writes and reads them.
//!
//! Counters are what `HINCRBY` stores: a canonical decimal 64-bit integer.
//! We accept exactly what Redis's own `string2ll` accepts (no `+`, no
//! leading zeros, no spaces), so a value we call an integer is one `HINCRBY`
//! would also increment, and the reverse.

use super::error::{quote, Error, Result};

pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, text),
    };
    match digits {
        [] => return None,
        [b'0'] => return (!negative).then_some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    if digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Accumulate negatively so i64::MIN is reachable.
    let mut value: i64 = 0;
    for &d in digits {
        value = value.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// Parses an integer argument, naming it in the error.
pub fn parse_i64_arg(what: &str, text: &[u8]) -> Result<i64> {
    parse_i64(text).ok_or_else(|| {
        Error::invalid(format!(
            "{what} must be a 64-bit integer, got {}",
            quote(text)
        ))
    })
}

/// A stored counter, or an error naming where the bad value is.
pub fn parse_counter(key: &[u8], field: &[u8], value: &[u8]) -> Result<i64> {
    parse_i64(value).ok_or_else(|| {
        Error::invalid(format!(
            "value of field {} in key {} is not an integer",
            quote(field),
            quote(key)
        ))
    })
}

/// The error for a stored value already known not to be an integer (the
/// server's own parse refused it): [`parse_counter`]'s.
pub fn counter_error(key: &[u8], field: &[u8], value: &[u8]) -> Error {
    match parse_counter(key, field, value) {
        Err(e) => e,
        Ok(_) => Error::invalid("internal error: integer check disagrees"),
    }
}

/// `current + delta`, or the error `HINCRBY` gives.
pub fn add_counter(current: i64, delta: i64) -> Result<i64> {
    current
        .checked_add(delta)
        .ok_or_else(|| Error::invalid("increment or decrement would overflow"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_redis_accepts() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"42"), Some(42));
        assert_eq!(parse_i64(b"-7"), Some(-7));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"+1",
            b"01",
            b" 1",
            b"1 ",
            b"1.0",
            b"1e3",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
            b"abc",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn bad_counters_name_key_and_field() {
        assert_eq!(parse_counter(b"k", b"f", b"12").unwrap(), 12);
        assert_eq!(
            parse_counter(b"2015-12-22_2155", b"cart::checkoutNow:click", b"1.5")
                .unwrap_err()
                .to_string(),
            "ERR value of field 'cart::checkoutNow:click' in key '2015-12-22_2155' is not an integer"
        );
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(add_counter(1, 2).unwrap(), 3);
        assert_eq!(add_counter(i64::MAX, -1).unwrap(), i64::MAX - 1);
        assert_eq!(
            add_counter(i64::MAX, 1).unwrap_err().to_string(),
            "ERR increment or decrement would overflow"
        );
        assert!(add_counter(i64::MIN, -1).is_err());
    }
}
