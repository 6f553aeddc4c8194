//! `LISTINGSTATS.INGEST [STRICT] event-json [event-json ...]` — parsing
//! events and stream-consumer envelopes, dedup, pre-aggregation.
//!
//! A batch goes through four steps, none of which writes until the last:
//! parse every argument into events (malformed ones are reported, or fail
//! the batch under STRICT); drop events whose id was seen (earlier in the
//! batch or within the dedup window); sum equal (key, field) increments so
//! each is written and replicated once; then the shared validate-then-write
//! path ([`apply`]).

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use chrono::{DateTime, NaiveDate};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use smallvec::{smallvec, SmallVec};

use super::cluster::{key_slot, ClusterView};
use super::date::{check_retained, day_of, retention_expiry_ms};
use super::dedup::{Generations, Marker};
use super::error::{Error, Result};
use super::keys::{check_event, check_event_id, check_listing};
use super::settings::Settings;
use super::token::{int_token, token, Listings, Token};
use super::write::{apply, CounterStore, Increment};

/// A JSON string or integer: listing ids and event ids come as either.
#[derive(Debug)]
enum Scalar<'a> {
    Int(i64),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
                Err(E::custom(format!(
                    "expected a string or an integer, got {v}"
                )))
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

impl Scalar<'_> {
    /// Its text, in place when short (no allocation for an integer id).
    fn token(&self) -> Token {
        match self {
            Scalar::Int(n) => int_token(*n),
            Scalar::Text(t) => token(t.as_bytes()),
        }
    }
}

/// An event object or an envelope, as it arrives. Unknown fields are
/// ignored (`quantities`, `visitor_id`, `details`, ...).
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "listingIds")]
    listing_ids: Option<SmallVec<[Scalar<'a>; 4]>>,
    #[serde(borrow, default, rename = "listingId")]
    listing_id_camel: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    listing_id: Option<Scalar<'a>>,
    #[serde(default)]
    message_date: Option<i64>,
    #[serde(borrow, default)]
    timestamp: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    id: Option<Scalar<'a>>,
    #[serde(default)]
    count: Option<i64>,
    #[serde(borrow, default, rename = "Records")]
    records: Option<Vec<RawRecord<'a>>>,
}

#[derive(Deserialize)]
struct RawRecord<'a> {
    #[serde(borrow, default)]
    kinesis: Option<RawKinesis<'a>>,
}

#[derive(Deserialize)]
struct RawKinesis<'a> {
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
}

/// One well-formed event. Its names are [`Token`]s: a batch of events
/// allocates nothing for them when they are short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<Token>,
    pub name: Token,
    /// Every occurrence counts: `[2156, 2156, 2152]` adds twice to 2156.
    pub listings: Listings,
    pub day: NaiveDate,
    /// The event's hour, in hours since 1970-01-01T00:00Z (absolute, so
    /// never ambiguous at a DST change); `None` when only its day is known
    /// (INCR ... DATE). Counted only with `hours yes`.
    pub hour: Option<i64>,
    pub count: i64,
}

/// Each event of a batch, in order: envelope records count one each.
pub type Parsed = Vec<std::result::Result<Event, String>>;

fn json_error(e: &serde_json::Error) -> String {
    // serde's text names the field type problem; the position helps with
    // long lines.
    format!("invalid JSON: {e}")
}

fn event_from(raw: RawEvent<'_>, settings: &Settings) -> std::result::Result<Event, String> {
    let name = raw.name.ok_or("missing name")?;
    check_event(name.as_bytes()).map_err(|e| reason(&e))?;

    let listings: SmallVec<[Scalar<'_>; 4]> =
        match (raw.listing_ids, raw.listing_id_camel, raw.listing_id) {
            (Some(ids), None, None) => ids,
            (None, Some(id), None) | (None, None, Some(id)) => smallvec![id],
            (None, None, None) => {
                return Err("missing listings: give listingIds, listingId or listing_id".into())
            }
            _ => return Err("give only one of listingIds, listingId, listing_id".into()),
        };
    if listings.is_empty() {
        return Err("listingIds is empty".into());
    }
    let mut ids = Listings::with_capacity(listings.len());
    for l in &listings {
        let text = l.token();
        check_listing(&text).map_err(|e| reason(&e))?;
        ids.push(text);
    }

    let seconds = match (raw.message_date, raw.timestamp) {
        (Some(secs), _) => secs,
        (None, Some(Scalar::Int(ms))) => ms.div_euclid(1000),
        (None, Some(Scalar::Text(text))) => DateTime::parse_from_rfc3339(&text)
            .map_err(|_| {
                format!(
                    "timestamp '{}' is not RFC 3339 (e.g. 2015-12-11T17:45:06Z)",
                    text.escape_default()
                )
            })?
            .timestamp(),
        (None, None) => {
            return Err("missing time: give message_date (unix seconds) or timestamp".into())
        }
    };
    let day = day_of(seconds, settings.timezone).map_err(|e| reason(&e))?;

    let id = match raw.id {
        Some(id) => {
            let text = id.token();
            check_event_id(&text).map_err(|e| reason(&e))?;
            Some(text)
        }
        None => None,
    };
    Ok(Event {
        id,
        name: token(name.as_bytes()),
        listings: ids,
        day,
        hour: Some(seconds.div_euclid(3600)),
        count: raw.count.unwrap_or(1),
    })
}

/// The text of a core error, without the `ERR ` code, for the errors list.
fn reason(e: &Error) -> String {
    let text = e.to_string();
    text.strip_prefix("ERR ").unwrap_or(&text).to_string()
}

/// One event or envelope. Text that is valid UTF-8 as a whole (nearly
/// always) is checked once here, so the parser does not check each string
/// again; other bytes go to the slice parser, which reports where.
fn from_json(bytes: &[u8]) -> serde_json::Result<RawEvent<'_>> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// Parses one argument: an event, or an envelope of base64 events.
fn parse_arg(arg: &[u8], settings: &Settings, out: &mut Parsed) {
    let raw: RawEvent<'_> = match from_json(arg) {
        Ok(raw) => raw,
        Err(e) => return out.push(Err(json_error(&e))),
    };
    let Some(records) = raw.records else {
        return out.push(event_from(raw, settings));
    };
    for record in records {
        let data = match record.kinesis.and_then(|k| k.data) {
            Some(data) => data,
            None => {
                out.push(Err("record without kinesis.data".into()));
                continue;
            }
        };
        let decoded = match base64::engine::general_purpose::STANDARD.decode(data.as_bytes()) {
            Ok(bytes) => bytes,
            Err(_) => {
                out.push(Err("kinesis.data is not valid base64".into()));
                continue;
            }
        };
        out.push(match from_json(&decoded) {
            Ok(inner) if inner.records.is_some() => {
                Err("a record must hold an event, not an envelope".into())
            }
            Ok(inner) => event_from(inner, settings),
            Err(e) => Err(json_error(&e)),
        });
    }
}

/// Splits off `STRICT` and checks the batch size before any parsing.
pub fn split_args<'a, 'b>(
    args: &'b [&'a [u8]],
    settings: &Settings,
) -> Result<(bool, &'b [&'a [u8]])> {
    let (strict, events) = match args.split_first() {
        Some((first, rest)) if first.eq_ignore_ascii_case(b"STRICT") => (true, rest),
        _ => (false, args),
    };
    if events.is_empty() {
        return Err(Error::wrong_arity("LISTINGSTATS.INGEST"));
    }
    check_batch_size(events.len(), settings)?;
    Ok((strict, events))
}

fn check_batch_size(n: usize, settings: &Settings) -> Result<()> {
    if n as u64 > u64::try_from(settings.max_batch).unwrap_or(0) {
        return Err(Error::invalid(format!(
            "batch of {n} events is over max-batch {}",
            settings.max_batch
        )));
    }
    Ok(())
}

/// Parses every argument; enforces max-batch again on the events that
/// envelopes unpacked to.
pub fn parse_all(args: &[&[u8]], settings: &Settings) -> Result<Parsed> {
    let mut out = Parsed::with_capacity(args.len());
    for arg in args {
        parse_arg(arg, settings, &mut out);
    }
    check_batch_size(out.len(), settings)?;
    Ok(out)
}

/// What became of one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Rejected,
}

/// What a batch did, as the reply reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub applied: usize,
    pub duplicates: usize,
    pub rejected: usize,
    /// `"index: reason"` per rejected event, index counting from 0.
    pub errors: Vec<String>,
    /// Distinct (key, field) increments written.
    pub increments: usize,
    /// Each event's outcome, by its index (a cluster-wide batch merges the
    /// parts' outcomes event by event).
    pub outcomes: Vec<Outcome>,
}

/// Dedup, aggregate and write a parsed batch. `view`: on Redis Cluster,
/// which slots this node serves; an event with a listing served elsewhere
/// (or being resharded) is rejected with the server's own redirection text
/// (`MOVED slot host:port`, `TRYAGAIN ...`) and nothing of it is written.
pub fn run<S: CounterStore>(
    store: &mut S,
    parsed: Parsed,
    strict: bool,
    settings: &Settings,
    now_ms: i64,
    view: Option<&ClusterView>,
) -> Result<Report> {
    let mut report = Report {
        outcomes: vec![Outcome::Applied; parsed.len()],
        ..Report::default()
    };
    let mut events = Vec::with_capacity(parsed.len());
    let mut indices: Vec<usize> = Vec::with_capacity(parsed.len());
    for (index, event) in parsed.into_iter().enumerate() {
        // A day already past retention is an invalid event like any other.
        let event = event.and_then(|e| {
            check_retained(e.day, settings.timezone, settings.retention_days, now_ms)
                .and_then(|_| match view {
                    Some(view) => check_served(view, &e),
                    None => Ok(()),
                })
                .map(|_| e)
                .map_err(|why| why.to_string().trim_start_matches("ERR ").to_string())
        });
        match event {
            Ok(e) => {
                events.push(e);
                indices.push(index);
            }
            Err(why) if strict => {
                return Err(Error::invalid(format!(
                    "STRICT batch refused, nothing written: event {index}: {why}"
                )))
            }
            Err(why) => {
                report.errors.push(format!("{index}: {why}"));
                report.outcomes[index] = Outcome::Rejected;
            }
        }
    }
    report.rejected = report.errors.len();

    // An id counts once: the first time in this batch, unless remembered.
    let dedup = settings.dedup_window > 0;
    let mut batch_ids: FxHashSet<&[u8]> = FxHashSet::default();
    let mut markers: Vec<Marker> = Vec::new();
    let generations = dedup.then(|| Generations::at(&settings.keys, settings.dedup_window, now_ms));
    let mut accepted: Vec<&Event> = Vec::with_capacity(events.len());
    // On a cluster an id is remembered per slot, in the slot of the
    // listings it counted for, so a retry routed anywhere after a reshard
    // still finds it. Listings in slots that remember the id are dropped;
    // an event left with none is a duplicate.
    let mut batch_slot_ids: FxHashSet<(&[u8], u16)> = FxHashSet::default();
    let mut narrowed: Vec<Event> = Vec::new();
    for (event, &index) in events.iter().zip(&indices) {
        match (&generations, event.id.as_deref()) {
            (Some(generations), Some(id)) if settings.cluster => {
                let mut fresh: Vec<u16> = Vec::new();
                let mut seen: Vec<u16> = Vec::new();
                for listing in &event.listings {
                    let slot = key_slot(listing);
                    if fresh.contains(&slot) || seen.contains(&slot) {
                        continue;
                    }
                    if !batch_slot_ids.insert((id, slot)) {
                        seen.push(slot);
                        continue;
                    }
                    let m = generations.marker_in(&settings.keys, id, slot);
                    if store.is_remembered(&m)? {
                        seen.push(slot);
                    } else {
                        fresh.push(slot);
                        markers.push(m);
                    }
                }
                if fresh.is_empty() {
                    report.duplicates += 1;
                    report.outcomes[index] = Outcome::Duplicate;
                } else if seen.is_empty() {
                    accepted.push(event);
                } else {
                    let mut part = event.clone();
                    part.listings.retain(|l| fresh.contains(&key_slot(l)));
                    narrowed.push(part);
                }
            }
            (Some(generations), Some(id)) => {
                if !batch_ids.insert(id) {
                    report.duplicates += 1;
                    report.outcomes[index] = Outcome::Duplicate;
                    continue;
                }
                let m = generations.marker(id);
                if store.is_remembered(&m)? {
                    report.duplicates += 1;
                    report.outcomes[index] = Outcome::Duplicate;
                    continue;
                }
                markers.push(m);
                accepted.push(event);
            }
            _ => accepted.push(event),
        }
    }
    accepted.extend(narrowed.iter());

    let mut increments = aggregate(&accepted, settings)?;
    if settings.hours {
        increments.extend(aggregate_hours(&accepted, settings, now_ms)?);
    }
    apply(store, &increments, &markers)?;
    report.applied = accepted.len();
    report.increments = increments.len();
    Ok(report)
}

/// Whether every listing of `event` is served by this node.
fn check_served(view: &ClusterView, event: &Event) -> Result<()> {
    event
        .listings
        .iter()
        .try_for_each(|l| view.check_listing(l))
}

/// Sums equal (key, field) increments, grouped by key so each key is
/// opened and written once, in the order keys first occur in the batch
/// (no sort: a hash map groups them). Keys are built once per distinct
/// (day, listing), not per occurrence.
fn aggregate(events: &[&Event], settings: &Settings) -> Result<Vec<Increment>> {
    type Group<'e> = (NaiveDate, &'e [u8], SmallVec<[(&'e [u8], i64); 2]>);
    let occurrences: usize = events.iter().map(|e| e.listings.len()).sum();
    let mut index: FxHashMap<(NaiveDate, &[u8]), usize> =
        FxHashMap::with_capacity_and_hasher(occurrences, Default::default());
    let mut groups: Vec<Group<'_>> = Vec::with_capacity(occurrences);
    let mut pairs = 0;
    for event in events {
        for listing in &event.listings {
            let g = *index
                .entry((event.day, listing.as_slice()))
                .or_insert_with(|| {
                    groups.push((event.day, listing.as_slice(), SmallVec::new()));
                    groups.len() - 1
                });
            let fields = &mut groups[g].2;
            let name = event.name.as_slice();
            let sum = match fields.iter().position(|(f, _)| *f == name) {
                Some(i) => &mut fields[i].1,
                None => {
                    pairs += 1;
                    fields.push((name, 0));
                    let last = fields.len() - 1;
                    &mut fields[last].1
                }
            };
            *sum = sum.checked_add(event.count).ok_or_else(|| {
                Error::invalid("the counts of one counter in this batch overflow a 64-bit integer")
            })?;
        }
    }
    let mut increments = Vec::with_capacity(pairs);
    for (day, listing, fields) in groups {
        let key = settings.keys.day_key_token(day, listing);
        let expire_at = retention_expiry_ms(day, settings.timezone, settings.retention_days);
        for (field, delta) in fields {
            increments.push(Increment {
                key: key.clone(),
                field: token(field),
                delta,
                expire_at,
            });
        }
    }
    Ok(increments)
}

/// The events' counts per hour (`hours yes`): one increment per (hour key,
/// `HH:event`) field, summed, grouped by key like [`aggregate`]'s. Events
/// without an hour, or whose hour key is past `hour-retention-days`, count
/// in their day only.
fn aggregate_hours(events: &[&Event], settings: &Settings, now_ms: i64) -> Result<Vec<Increment>> {
    let mut index: FxHashMap<(Token, Token), usize> = FxHashMap::default();
    let mut order: Vec<Vec<usize>> = Vec::new();
    let mut keys: FxHashMap<Token, usize> = FxHashMap::default();
    let mut out: Vec<Increment> = Vec::new();
    for event in events {
        let Some(hour) = event.hour else { continue };
        for listing in &event.listings {
            let Some(inc) =
                crate::hours::increment(settings, listing, &event.name, hour, event.count, now_ms)
            else {
                continue;
            };
            match index.get(&(inc.key.clone(), inc.field.clone())) {
                Some(&at) => {
                    out[at].delta = out[at].delta.checked_add(inc.delta).ok_or_else(|| {
                        Error::invalid(
                            "the counts of one counter in this batch overflow a 64-bit integer",
                        )
                    })?;
                }
                None => {
                    let k = *keys.entry(inc.key.clone()).or_insert_with(|| {
                        order.push(Vec::new());
                        order.len() - 1
                    });
                    index.insert((inc.key.clone(), inc.field.clone()), out.len());
                    order[k].push(out.len());
                    out.push(inc);
                }
            }
        }
    }
    // Increments of one key next to each other (`write::apply` writes a
    // key in one go).
    let mut grouped = Vec::with_capacity(out.len());
    for positions in order {
        for at in positions {
            grouped.push(out[at].clone());
        }
    }
    Ok(grouped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::date::parse_day;
    use crate::write::memory::MemoryStore;

    fn parse(json: &str) -> std::result::Result<Event, String> {
        let mut out = Parsed::new();
        parse_arg(json.as_bytes(), &Settings::default(), &mut out);
        assert_eq!(out.len(), 1);
        out.pop().unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        parse_day(s.as_bytes()).unwrap()
    }

    #[test]
    fn every_field_form() {
        let e = parse(r#"{"id":"e-1","name":"cart::impression","listingIds":[2156,"2152",2156],"message_date":1449855906,"quantities":[1,1,1],"details":{"x":1}}"#).unwrap();
        assert_eq!(
            e.listings.to_vec(),
            [token(b"2156"), token(b"2152"), token(b"2156")]
        );
        assert_eq!(e.day, day("2015-12-11"));
        assert_eq!((e.id.as_deref(), e.count), (Some(&b"e-1"[..]), 1));
        let e = parse(r#"{"name":"a","listingId":7,"timestamp":1449855906000,"count":3,"id":42}"#)
            .unwrap();
        assert_eq!(
            (e.listings[0].as_slice(), e.count, e.id.as_deref()),
            (&b"7"[..], 3, Some(&b"42"[..]))
        );
        assert_eq!(e.day, day("2015-12-11"));
        let e =
            parse(r#"{"name":"a","listing_id":"sku-1","timestamp":"2015-12-12T01:30:00+09:00"}"#)
                .unwrap();
        assert_eq!(e.day, day("2015-12-11"), "the offset is honoured");
        assert_eq!(e.id, None);
    }

    #[test]
    fn malformed_events_say_why() {
        let why = |j: &str| parse(j).unwrap_err();
        assert!(why("not json").starts_with("invalid JSON"));
        assert!(why("[1,2]").starts_with("invalid JSON"));
        assert!(why("42").starts_with("invalid JSON"));
        assert_eq!(
            why(r#"{"listingIds":[1],"message_date":1}"#),
            "missing name"
        );
        assert!(why(r#"{"name":"a","message_date":1}"#).starts_with("missing listings"));
        assert!(why(r#"{"name":"a","listingIds":[],"message_date":1}"#)
            .starts_with("listingIds is empty"));
        assert!(
            why(r#"{"name":"a","listingIds":[1],"listingId":2,"message_date":1}"#)
                .starts_with("give only one")
        );
        assert!(why(r#"{"name":"a","listingIds":[1]}"#).starts_with("missing time"));
        assert!(why(r#"{"name":"a b","listingIds":[1],"message_date":1}"#)
            .starts_with("invalid event name"));
        assert!(why(r#"{"name":"a","listingIds":["x y"],"message_date":1}"#)
            .starts_with("invalid listing id"));
        assert!(why(r#"{"name":"a","listingIds":[1.5],"message_date":1}"#)
            .contains("expected a string or an integer"));
        assert!(
            why(r#"{"name":"a","listingIds":[1],"timestamp":"yesterday"}"#)
                .contains("is not RFC 3339")
        );
        assert!(
            why(r#"{"name":"a","listingIds":[1],"message_date":"1"}"#).starts_with("invalid JSON")
        );
        assert!(
            why(r#"{"name":"a","listingIds":[1],"message_date":99999999999999}"#)
                .contains("outside years")
        );
        assert!(
            why(r#"{"name":"a","listingIds":[1],"message_date":1,"id":""}"#)
                .starts_with("invalid event id")
        );
    }

    #[test]
    fn envelopes_unpack_to_one_event_per_record() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let env = format!(
            r#"{{"Records":[{{"kinesis":{{"data":"{}","partitionKey":"p"}},"eventSource":"aws:kinesis"}},{{"kinesis":{{"data":"%%%"}}}},{{"kinesis":{{}}}},{{"kinesis":{{"data":"{}"}}}}]}}"#,
            b64(r#"{"name":"a","listingIds":[1],"message_date":0}"#),
            b64("not json"),
        );
        let mut out = Parsed::new();
        parse_arg(env.as_bytes(), &Settings::default(), &mut out);
        assert_eq!(out.len(), 4);
        assert!(out[0].is_ok());
        assert_eq!(
            out[1].as_ref().unwrap_err(),
            "kinesis.data is not valid base64"
        );
        assert_eq!(out[2].as_ref().unwrap_err(), "record without kinesis.data");
        assert!(out[3].as_ref().unwrap_err().starts_with("invalid JSON"));
    }

    fn batch(jsons: &[&str]) -> Parsed {
        let args: Vec<&[u8]> = jsons.iter().map(|j| j.as_bytes()).collect();
        parse_all(&args, &Settings::default()).unwrap()
    }

    #[test]
    fn presto_example_counts_every_occurrence() {
        // The twelve cart::impression events of the seed's Presto table.
        let rows: [(i64, &str); 12] = [
            (1449855906, "[2150]"),
            (1449854809, "[2156,2156,2152]"),
            (1449854930, "[2156,2156,2156,2152]"),
            (1449855279, "[2152]"),
            (1449855345, "[2150,2152]"),
            (1449855364, "[2150,2150,2152]"),
            (1449855963, "[2150]"),
            (1449855391, "[2150,2150,2152]"),
            (1449855818, "[2150,2152]"),
            (1449855898, "[2157]"),
            (1449855958, "[2157]"),
            (1449856259, "[2150]"),
        ];
        let jsons: Vec<String> = rows
            .iter()
            .map(|(t, ids)| {
                format!(r#"{{"name":"cart::impression","listingIds":{ids},"message_date":{t}}}"#)
            })
            .collect();
        let refs: Vec<&str> = jsons.iter().map(String::as_str).collect();
        let mut store = MemoryStore::default();
        let report = run(
            &mut store,
            batch(&refs),
            false,
            &Settings::default(),
            0,
            None,
        )
        .unwrap();
        assert_eq!((report.applied, report.increments), (12, 4));
        let count = |l: &str| {
            store.hashes[format!("2015-12-11_{l}").as_bytes()][&b"cart::impression"[..]].clone()
        };
        assert_eq!(
            [count("2156"), count("2152"), count("2150"), count("2157")],
            [b"5".to_vec(), b"7".to_vec(), b"9".to_vec(), b"2".to_vec()]
        );
    }

    #[test]
    fn with_hours_each_event_also_counts_in_its_utc_hour() {
        let mut settings = Settings {
            hours: true,
            ..Settings::default()
        };
        // 13:05Z and 13:59Z (one hour), 14:00Z (the next), and one of
        // another day; two listings, one given twice.
        let jsons = [
            r#"{"name":"click","listingIds":[7,7,8],"message_date":1450789500}"#,
            r#"{"name":"click","listingIds":[7],"message_date":1450792740,"count":3}"#,
            r#"{"name":"click","listingIds":[7],"message_date":1450792800}"#,
            r#"{"name":"view","listingIds":[7],"message_date":1450665000}"#,
        ];
        let mut store = MemoryStore::default();
        let report = run(&mut store, batch(&jsons), false, &settings, 0, None).unwrap();
        assert_eq!(report.applied, 4);
        let h = |key: &str, field: &str| {
            store.hashes[key.as_bytes()]
                .get(field.as_bytes())
                .map(|v| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(h("2015-12-22h_7", "13:click").as_deref(), Some("5"));
        assert_eq!(h("2015-12-22h_7", "14:click").as_deref(), Some("1"));
        assert_eq!(h("2015-12-22h_8", "13:click").as_deref(), Some("1"));
        assert_eq!(h("2015-12-21h_7", "02:view").as_deref(), Some("1"));
        // The day hashes are exactly what they were without hours.
        assert_eq!(h("2015-12-22_7", "click").as_deref(), Some("6"));
        assert_eq!(store.hashes[&b"2015-12-22_7"[..]].len(), 1);
        // Hour keys expire hour-retention-days after their UTC day.
        assert_eq!(store.expiries[&b"2015-12-22h_7"[..]], 1453420800000);
        // Past hour retention: the day counts, the hour does not.
        settings.hour_retention_days = 1;
        let mut store = MemoryStore::default();
        run(
            &mut store,
            batch(&jsons[..1]),
            false,
            &settings,
            1453420800000,
            None,
        )
        .unwrap();
        assert!(store.hashes.contains_key(&b"2015-12-22_7"[..]));
        assert!(!store.hashes.contains_key(&b"2015-12-22h_7"[..]));
    }

    #[test]
    fn long_names_spill_and_count_like_short_ones() {
        // Past the inline size of a token (40 bytes) names live on the heap:
        // the same counts, the same keys.
        let name = "n".repeat(200);
        let listing = "L".repeat(64);
        let id = "i".repeat(100);
        let json = format!(
            r#"{{"id":"{id}","name":"{name}","listingIds":["{listing}","{listing}",7],"message_date":0}}"#
        );
        let e = parse(&json).unwrap();
        assert!(e.name.spilled() && e.listings[0].spilled() && !e.listings[2].spilled());
        let mut store = MemoryStore::default();
        let s = Settings::default();
        let r = run(&mut store, batch(&[&json, &json]), false, &s, 0, None).unwrap();
        assert_eq!((r.applied, r.duplicates, r.increments), (1, 1, 2));
        let key = format!("1970-01-01_{listing}");
        assert_eq!(store.hashes[key.as_bytes()][name.as_bytes()], b"2");
        assert_eq!(store.hashes[&b"1970-01-01_7"[..]][name.as_bytes()], b"1");
    }

    #[test]
    fn bytes_that_are_not_utf8_outside_the_fields_read_are_still_accepted() {
        // The whole argument is checked as UTF-8 once; other text goes to
        // the slice parser, which skips unread strings as before.
        let mut arg = br#"{"name":"a","listingIds":[1],"message_date":0,"details":""#.to_vec();
        arg.extend_from_slice(&[0xff, 0xfe]);
        arg.extend_from_slice(br#""}"#);
        let mut out = Parsed::new();
        parse_arg(&arg, &Settings::default(), &mut out);
        assert_eq!(out[0].as_ref().map(|e| e.count), Ok(1));
        let mut bad = br#"{"name":""#.to_vec();
        bad.extend_from_slice(&[0xff]);
        bad.extend_from_slice(br#"","listingIds":[1],"message_date":0}"#);
        let mut out = Parsed::new();
        parse_arg(&bad, &Settings::default(), &mut out);
        assert!(out[0].as_ref().unwrap_err().starts_with("invalid JSON"));
    }

    #[test]
    fn ids_count_once_within_and_across_batches() {
        let e =
            |id: &str| format!(r#"{{"id":"{id}","name":"a","listingIds":[1],"message_date":0}}"#);
        let (a, b) = (e("a"), e("b"));
        let mut store = MemoryStore::default();
        let s = Settings::default();
        let r = run(&mut store, batch(&[&a, &b, &a, "{}"]), false, &s, 0, None).unwrap();
        assert_eq!((r.applied, r.duplicates, r.rejected), (2, 1, 1));
        assert_eq!(r.errors, ["3: missing name"]);
        let r = run(&mut store, batch(&[&b, &e("c")]), false, &s, 0, None).unwrap();
        assert_eq!((r.applied, r.duplicates), (1, 1));
        assert_eq!(store.hashes[&b"1970-01-01_1"[..]][&b"a"[..]], b"3");
    }

    #[test]
    fn on_a_cluster_ids_are_remembered_per_slot_and_routes_are_checked() {
        use crate::cluster::{key_slot, slot_tag};
        let s = Settings {
            cluster: true,
            keys: crate::keys::KeyScheme {
                format: crate::keys::KeyFormat::Tagged,
                ..Default::default()
            },
            ..Settings::default()
        };
        // Two listings in different slots; this node owns only a's.
        let (a, b) = ("1", "2");
        let (sa, sb) = (key_slot(a.as_bytes()), key_slot(b.as_bytes()));
        assert_ne!(sa, sb);
        let nodes = format!(
            "me 127.0.0.1:7000@17000 myself,master - 0 0 1 connected {sa}\n\
             other 127.0.0.1:7001@17001 master - 0 0 2 connected {sb}\n"
        );
        let view = ClusterView::parse(&nodes).unwrap();
        let event =
            |ids: &str| format!(r#"{{"id":"e","name":"n","listingIds":[{ids}],"message_date":0}}"#);
        let mut store = MemoryStore::default();
        let both = event(&format!("{a},{b}"));
        let r = run(&mut store, batch(&[&both]), false, &s, 0, Some(&view)).unwrap();
        assert_eq!(r.rejected, 1);
        assert_eq!(r.errors, [format!("0: MOVED {sb} 127.0.0.1:7001")]);
        assert_eq!(store.writes, 0);

        // Without a view (one node owning both): a's slot remembers the
        // id first; a retry of the whole event then counts only b.
        let only_a = event(a);
        let r = run(&mut store, batch(&[&only_a]), false, &s, 0, None).unwrap();
        assert_eq!((r.applied, r.duplicates), (1, 0));
        let r = run(&mut store, batch(&[&both, &both]), false, &s, 0, None).unwrap();
        assert_eq!((r.applied, r.duplicates), (1, 1));
        let r = run(&mut store, batch(&[&both]), false, &s, 0, None).unwrap();
        assert_eq!((r.applied, r.duplicates), (0, 1));
        for (listing, slot) in [(a, sa), (b, sb)] {
            let key = format!("1970-01-01_{{{listing}}}");
            assert_eq!(store.hashes[key.as_bytes()][&b"n"[..]], b"1", "{key}");
            let seen = format!("listingstats:seen:0:{slot}:{{{}}}", slot_tag(slot));
            assert!(store
                .markers
                .contains_key(&(seen.into_bytes(), b"e".to_vec())));
        }
    }

    #[test]
    fn strict_is_all_or_nothing() {
        let mut store = MemoryStore::default();
        let good = r#"{"name":"a","listingIds":[1],"message_date":0}"#;
        let err = run(
            &mut store,
            batch(&[good, "oops"]),
            true,
            &Settings::default(),
            0,
            None,
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("ERR STRICT batch refused, nothing written: event 1: invalid JSON"));
        assert_eq!(store.writes, 0);
    }

    #[test]
    fn batch_size_is_checked_before_parsing() {
        let s = Settings {
            max_batch: 2,
            ..Settings::default()
        };
        let args: Vec<&[u8]> = vec![b"STRICT", b"x", b"y", b"z"];
        assert_eq!(
            split_args(&args, &s).unwrap_err().to_string(),
            "ERR batch of 3 events is over max-batch 2"
        );
        assert!(split_args(&[&b"STRICT"[..]], &s)
            .unwrap_err()
            .to_string()
            .contains("wrong number of arguments"));
    }
}
