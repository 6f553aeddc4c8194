//! Key names and the identifiers inside them.
//!
//! A day hash is `<prefix><YYYY-MM-DD>_<listing>` (`date_listing`, the layout
//! production data already has) or `<prefix><YYYY-MM-DD>_{<listing>}`
//! (`tagged`: every day of a listing in one Redis Cluster slot). The module's
//! own keys live under `<prefix>listingstats:` and can never be mistaken for a
//! day hash, because a day hash starts with a digit after the prefix.

use chrono::NaiveDate;

use super::cluster::slot_tag;
use super::date::{parse_day, push_day};
use super::error::{quote, Error, Result};
use super::token::{ByteSink, Token};

pub const MAX_LISTING_LEN: usize = 64;
pub const MAX_EVENT_LEN: usize = 256;
pub const MAX_ID_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    DateListing,
    Tagged,
}

impl KeyFormat {
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "date_listing" => Ok(KeyFormat::DateListing),
            "tagged" => Ok(KeyFormat::Tagged),
            _ => Err(Error::invalid(format!(
                "key-format must be date_listing or tagged, got '{text}'"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyFormat::DateListing => "date_listing",
            KeyFormat::Tagged => "tagged",
        }
    }
}

fn is_listing_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Printable ASCII without whitespace: what an event name or id may hold.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic()
}

pub fn is_valid_listing(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_LISTING_LEN && id.iter().all(|&b| is_listing_byte(b))
}

pub fn check_listing(id: &[u8]) -> Result<()> {
    if is_valid_listing(id) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid listing id {}: use 1-{MAX_LISTING_LEN} characters of A-Z a-z 0-9 . _ -",
            quote(id)
        )))
    }
}

/// Event names and event ids share one rule: 1-`max` bytes of printable
/// ASCII without whitespace.
fn check_token(what: &str, text: &[u8], max: usize) -> Result<()> {
    if !text.is_empty() && text.len() <= max && text.iter().all(|&b| is_token_byte(b)) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid {what} {}: use 1-{max} printable ASCII characters without spaces",
            quote(text)
        )))
    }
}

pub fn check_event(name: &[u8]) -> Result<()> {
    check_token("event name", name, MAX_EVENT_LEN)
}

pub fn check_event_id(id: &[u8]) -> Result<()> {
    check_token("event id", id, MAX_ID_LEN)
}

/// How keys are named under one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyScheme {
    pub prefix: String,
    pub format: KeyFormat,
}

impl Default for KeyScheme {
    fn default() -> Self {
        KeyScheme {
            prefix: String::new(),
            format: KeyFormat::DateListing,
        }
    }
}

/// [`KeyScheme::may_concern`] for a scheme with `prefix`.
/// The field of an hour key that counts `event` in hour `hour` (0-23,
/// UTC) of its day: `HH:<event>`, e.g. `13:ldp:sellPanel:addToCart:click`.
pub fn hour_field(hour: u32, event: &[u8]) -> Token {
    let mut field = Token::new();
    field.put(&[b'0' + (hour / 10) as u8, b'0' + (hour % 10) as u8, b':']);
    field.put(event);
    field
}

/// The hour (0-23) and event of an hour key's field, or `None`.
pub fn parse_hour_field(field: &[u8]) -> Option<(u32, &[u8])> {
    let [h1, h2, b':', event @ ..] = field else {
        return None;
    };
    if !h1.is_ascii_digit() || !h2.is_ascii_digit() || event.is_empty() {
        return None;
    }
    let hour = u32::from(h1 - b'0') * 10 + u32::from(h2 - b'0');
    (hour < 24).then_some((hour, event))
}

pub fn may_concern(prefix: &[u8], key: &[u8]) -> bool {
    let Some(rest) = key.strip_prefix(prefix) else {
        return false;
    };
    (rest.len() >= 12
        && rest[4] == b'-'
        && rest[7] == b'-'
        && (rest[10] == b'_' || (rest[10] == b'h' && rest.get(11) == Some(&b'_'))))
        || rest.starts_with(b"listingstats:metrics")
}

impl KeyScheme {
    /// The day hash of `listing` on `day`. `listing` must be valid.
    pub fn day_key(&self, day: NaiveDate, listing: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + 13 + listing.len());
        self.push_day_key(&mut key, day, listing);
        key
    }

    /// Appends the day hash name of `(day, listing)` to `out`.
    pub fn push_day_key(&self, out: &mut impl ByteSink, day: NaiveDate, listing: &[u8]) {
        self.push_key(out, day, b"", listing);
    }

    /// `<prefix>YYYY-MM-DD<infix>_<listing>` (tagged: `..._{<listing>}`):
    /// a day hash's name (no infix) or an hour key's (`h`).
    fn push_key(&self, out: &mut impl ByteSink, day: NaiveDate, infix: &[u8], listing: &[u8]) {
        out.put(self.prefix.as_bytes());
        push_day(out, day);
        out.put(infix);
        match self.format {
            KeyFormat::DateListing => {
                out.put(b"_");
                out.put(listing);
            }
            KeyFormat::Tagged => {
                out.put(b"_{");
                out.put(listing);
                out.put(b"}");
            }
        }
    }

    /// The day hash of `listing` on `day`, as a [`Token`] (in place when
    /// short: INGEST builds one per distinct day and listing).
    pub fn day_key_token(&self, day: NaiveDate, listing: &[u8]) -> Token {
        let mut key = Token::new();
        self.push_day_key(&mut key, day, listing);
        key
    }

    /// Whether `key` could concern the module at all, by a few byte
    /// comparisons and no allocation: a day hash name's shape in this
    /// scheme (prefix, `dddd-dd-dd_`, no date or listing check), or the
    /// metric registry (`<prefix>listingstats:metrics`, and its copies on a
    /// cluster). Run on every
    /// keyspace notification of the server before anything else; a `true`
    /// is then checked in full ([`KeyScheme::parse_day_key`]).
    pub fn may_concern(&self, key: &[u8]) -> bool {
        may_concern(self.prefix.as_bytes(), key)
    }

    /// The day and listing a key names, or `None` when it is not a day hash
    /// name in this scheme (wrong prefix, impossible date, bad listing, other
    /// layouts such as the old `2015-12-12:event_2155`).
    pub fn parse_day_key<'k>(&self, key: &'k [u8]) -> Option<(NaiveDate, &'k [u8])> {
        let rest = key.strip_prefix(self.prefix.as_bytes())?;
        if rest.len() < 12 || rest[10] != b'_' {
            return None;
        }
        let day = parse_day(&rest[..10])?;
        let listing = match self.format {
            KeyFormat::DateListing => &rest[11..],
            KeyFormat::Tagged => rest[11..].strip_prefix(b"{")?.strip_suffix(b"}")?,
        };
        is_valid_listing(listing).then_some((day, listing))
    }

    /// Appends the hour key of `(date, listing)` to `out`: the hash of
    /// `listing`'s counts per hour of the UTC day `date`,
    /// `<prefix>YYYY-MM-DDh_<listing>` (tagged: `..._{<listing>}`, the day
    /// hash's slot). Its fields are [`hour_field`]s. Never a day hash name
    /// (an `h` where the day hash has `_`), and `~2015-12-*` still covers it.
    pub fn push_hour_key(&self, out: &mut impl ByteSink, date: NaiveDate, listing: &[u8]) {
        self.push_key(out, date, b"h", listing);
    }

    pub fn hour_key(&self, date: NaiveDate, listing: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + 14 + listing.len());
        self.push_hour_key(&mut key, date, listing);
        key
    }

    pub fn hour_key_token(&self, date: NaiveDate, listing: &[u8]) -> Token {
        let mut key = Token::new();
        self.push_hour_key(&mut key, date, listing);
        key
    }

    /// The UTC date and listing an hour key names, or `None`.
    pub fn parse_hour_key<'k>(&self, key: &'k [u8]) -> Option<(NaiveDate, &'k [u8])> {
        let rest = key.strip_prefix(self.prefix.as_bytes())?;
        if rest.len() < 13 || rest[10] != b'h' || rest[11] != b'_' {
            return None;
        }
        let day = parse_day(&rest[..10])?;
        let listing = match self.format {
            KeyFormat::DateListing => &rest[12..],
            KeyFormat::Tagged => rest[12..].strip_prefix(b"{")?.strip_suffix(b"}")?,
        };
        is_valid_listing(listing).then_some((day, listing))
    }

    /// The hash that holds user-defined metrics.
    pub fn metrics_key(&self) -> Vec<u8> {
        [self.prefix.as_bytes(), b"listingstats:metrics"].concat()
    }

    /// The hash that remembers the event ids of one dedup generation and
    /// shard (see `dedup`).
    pub fn seen_key(&self, generation: i64, shard: u64) -> Vec<u8> {
        format!("{}listingstats:seen:{generation}:{shard}", self.prefix).into_bytes()
    }

    /// On Redis Cluster: the copy of the metric registry kept in `slot`
    /// (every slot a node owns holds one, so definitions move with slots).
    pub fn metrics_key_in(&self, slot: u16) -> Vec<u8> {
        format!(
            "{}listingstats:metrics:{slot}:{{{}}}",
            self.prefix,
            slot_tag(slot)
        )
        .into_bytes()
    }

    /// On Redis Cluster: the dedup shard of `slot` in one generation; an id
    /// is remembered in the slot of each listing it counted for.
    pub fn seen_key_in(&self, generation: i64, slot: u16) -> Vec<u8> {
        format!(
            "{}listingstats:seen:{generation}:{slot}:{{{}}}",
            self.prefix,
            slot_tag(slot)
        )
        .into_bytes()
    }

    /// On Redis Cluster: the generations that have a shard in `slot`.
    pub fn seen_generations_key_in(&self, slot: u16) -> Vec<u8> {
        format!(
            "{}listingstats:seen:generations:{slot}:{{{}}}",
            self.prefix,
            slot_tag(slot)
        )
        .into_bytes()
    }

    /// The hash holding each followed stream's position and counts.
    pub fn following_key(&self) -> Vec<u8> {
        [self.prefix.as_bytes(), b"listingstats:following"].concat()
    }

    /// On Redis Cluster: the positions of the followed streams of `slot`
    /// (field: the stream), in the streams' own slot so that they move,
    /// fail over and restart with them.
    pub fn following_key_in(&self, slot: u16) -> Vec<u8> {
        format!(
            "{}listingstats:following:{slot}:{{{}}}",
            self.prefix,
            slot_tag(slot)
        )
        .into_bytes()
    }

    /// The hash whose fields are the dedup generations that have shards
    /// (see `dedup`); under the same `listingstats:seen:` prefix, so one ACL
    /// pattern covers all dedup state.
    pub fn seen_generations_key(&self) -> Vec<u8> {
        format!("{}listingstats:seen:generations", self.prefix).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        parse_day(text.as_bytes()).unwrap()
    }

    #[test]
    fn builds_both_layouts_with_prefix() {
        let plain = KeyScheme::default();
        assert_eq!(
            plain.day_key(day("2015-12-22"), b"2155"),
            b"2015-12-22_2155"
        );
        let tagged = KeyScheme {
            prefix: "ls:".into(),
            format: KeyFormat::Tagged,
        };
        assert_eq!(
            tagged.day_key(day("2015-12-22"), b"2155"),
            b"ls:2015-12-22_{2155}"
        );
        assert_eq!(tagged.metrics_key(), b"ls:listingstats:metrics");
        assert_eq!(tagged.seen_key(20_000, 7), b"ls:listingstats:seen:20000:7");
        assert_eq!(tagged.metrics_key_in(0), b"ls:listingstats:metrics:0:{1bz}");
        assert_eq!(
            tagged.seen_key_in(20_000, 0),
            b"ls:listingstats:seen:20000:0:{1bz}"
        );
        for slot in [0, 777, 16383] {
            use crate::cluster::key_slot;
            assert_eq!(key_slot(&tagged.metrics_key_in(slot)), slot);
            assert_eq!(key_slot(&tagged.seen_key_in(-1, slot)), slot);
            assert_eq!(key_slot(&tagged.seen_generations_key_in(slot)), slot);
            assert_eq!(key_slot(&tagged.following_key_in(slot)), slot);
            assert!(!tagged.may_concern(&tagged.following_key_in(slot)));
        }
    }

    #[test]
    fn parses_what_it_builds() {
        for format in [KeyFormat::DateListing, KeyFormat::Tagged] {
            for prefix in ["", "ls:", "2015-"] {
                let scheme = KeyScheme {
                    prefix: prefix.into(),
                    format,
                };
                let key = scheme.day_key(day("2016-01-01"), b"ab.c_d-9");
                assert_eq!(
                    scheme.parse_day_key(&key),
                    Some((day("2016-01-01"), &b"ab.c_d-9"[..]))
                );
            }
        }
    }

    #[test]
    fn may_concern_passes_every_day_hash_and_module_key() {
        for format in [KeyFormat::DateListing, KeyFormat::Tagged] {
            for prefix in ["", "ls:"] {
                let scheme = KeyScheme {
                    prefix: prefix.into(),
                    format,
                };
                let key = scheme.day_key(day("2015-12-22"), b"2155");
                assert!(scheme.may_concern(&key));
                assert!(scheme.may_concern(&scheme.metrics_key()));
                assert!(scheme.may_concern(&scheme.metrics_key_in(7)));
                // Dedup shards and the follow registry: no handler wants them.
                assert!(!scheme.may_concern(&scheme.seen_key(1, 2)));
                assert!(!scheme.may_concern(&scheme.following_key()));
                for other in [
                    &b"key:__rand_int__"[..],
                    b"mylist",
                    b"2015-12-22",
                    b"myhash",
                    b"",
                ] {
                    assert!(
                        !scheme.may_concern(other),
                        "{}",
                        String::from_utf8_lossy(other)
                    );
                }
            }
        }
        let prefixed = KeyScheme {
            prefix: "ls:".into(),
            format: KeyFormat::DateListing,
        };
        assert!(!prefixed.may_concern(b"2015-12-22_2155"));
        assert!(!prefixed.may_concern(b"listingstats:metrics"));
    }

    #[test]
    fn look_alike_keys_are_not_day_hashes() {
        let plain = KeyScheme::default();
        let tagged = KeyScheme {
            prefix: String::new(),
            format: KeyFormat::Tagged,
        };
        for key in [
            &b"2015-13-40_1"[..],
            b"2015-12-12:cart::checkoutnow:impression_2155",
            b"2015-12-12_",
            b"2015-12-12",
            b"2015-12-12_a b",
            b"2015-12-12_{2155}",
            b"x2015-12-12_1",
            b"listingstats:metrics",
        ] {
            assert_eq!(
                plain.parse_day_key(key),
                None,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        assert_eq!(tagged.parse_day_key(b"2015-12-12_2155"), None);
        assert_eq!(tagged.parse_day_key(b"2015-12-12_{}"), None);
        assert_eq!(tagged.parse_day_key(b"2015-12-12_{2155"), None);
        let prefixed = KeyScheme {
            prefix: "ls:".into(),
            format: KeyFormat::DateListing,
        };
        assert_eq!(prefixed.parse_day_key(b"2015-12-12_1"), None);
    }

    #[test]
    fn identifier_rules() {
        assert!(check_listing(b"2155").is_ok());
        assert!(check_listing(b"A-z.0_9").is_ok());
        assert!(check_listing(&[b'1'; 64]).is_ok());
        assert!(check_listing(&[b'1'; 65]).is_err());
        for bad in [&b""[..], b"a b", b"a:b", b"{1}", b"\xc3\xa9", b"a*"] {
            assert!(check_listing(bad).is_err(), "{:?}", bad);
        }
        assert!(check_event(b"ldp:sellPanel:addToCart:click").is_ok());
        assert!(check_event(b"cart::checkoutNow:impression").is_ok());
        assert!(check_event(&[b'x'; 256]).is_ok());
        assert!(check_event(&[b'x'; 257]).is_err());
        for bad in [&b""[..], b"a b", b"a\tb", b"a\nb", b"\x7f", b"\xc3\xa9"] {
            assert!(check_event(bad).is_err(), "{:?}", bad);
        }
        assert!(check_event_id(b"shardId-000000000000:4959").is_ok());
        assert!(check_event_id(b"").is_err());
        let err = check_listing(b"bad id").unwrap_err().to_string();
        assert!(err.starts_with("ERR invalid listing id 'bad id'"), "{err}");
    }

    #[test]
    fn key_format_names() {
        assert_eq!(KeyFormat::parse("TAGGED").unwrap(), KeyFormat::Tagged);
        assert_eq!(
            KeyFormat::parse("date_listing").unwrap().name(),
            "date_listing"
        );
        assert!(KeyFormat::parse("flat").is_err());
    }
}
