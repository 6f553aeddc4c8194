//! On Redis Cluster, a batch whose events' listings live on several
//! masters: split by owner (an event becomes one part per master holding
//! some of its listings, each part keeping the event's id: ids are
//! remembered per slot, so each part counts once however often it is
//! sent), the parts' events on the wire, and the parts' outcomes merged
//! event by event into the reply one node would give.

use crate::cluster::{key_slot, ClusterView, Route};
use crate::date::{check_retained, parse_day, push_day};
use crate::error::{Error, Result};
use crate::ingest::{Event, Outcome, Parsed, Report};
use crate::settings::Settings;
use crate::token::{token, Listings};

/// An event's outcome in a part: its index in the batch, the outcome,
/// and why when rejected.
pub type EventOutcome = (usize, Outcome, Option<String>);

/// A part's answer: its events' outcomes and the counters it wrote, or
/// why no answer came.
pub type PartAnswer = std::result::Result<(Vec<EventOutcome>, usize), String>;

/// The events of one master, each with its index in the caller's batch
/// and only the listings that master owns.
pub type Share = (u16, Vec<(usize, Event)>);

/// A batch split by master, and the events refused before anything moved.
#[derive(Debug, Default)]
pub struct Split {
    pub shares: Vec<Share>,
    pub rejected: Vec<(usize, String)>,
    /// Valid events a listing of which is in a slot no master serves now,
    /// or one being resharded here (a failover or a reshard under way),
    /// with why: nothing of them moved; the caller may place them again
    /// with a later slot reading.
    pub unplaced: Vec<(usize, Event, String)>,
}

/// Validates every event (parsed, retained, every listing's slot served
/// by some master and not moving here) and splits the valid ones by
/// master. Under `strict` one invalid event refuses the batch: nothing is
/// sent anywhere.
pub fn split(
    parsed: Parsed,
    view: &ClusterView,
    settings: &Settings,
    now_ms: i64,
    strict: bool,
) -> Result<Split> {
    let mut out = Split::default();
    for (index, event) in parsed.into_iter().enumerate() {
        let checked = event.and_then(|e| {
            check_retained(e.day, settings.timezone, settings.retention_days, now_ms)
                .map_err(|why| reason(&why))?;
            Ok(e)
        });
        let placed = checked.map(|e| {
            let owners = owners(&e, view);
            (e, owners)
        });
        match placed {
            Ok((event, Ok(owners))) => share_out(&mut out.shares, index, &event, owners),
            Err(why) | Ok((_, Err(why))) if strict => {
                return Err(Error::invalid(format!(
                    "STRICT batch refused, nothing written: event {index}: {why}"
                )))
            }
            Ok((event, Err(why))) => out.unplaced.push((index, event, why)),
            Err(why) => out.rejected.push((index, why)),
        }
    }
    out.shares.sort_by_key(|(node, _)| *node);
    Ok(out)
}

/// Events not applied where they went (their master was demoted, a slot
/// moved: a retryable reason) or not placed yet, split again by a fresh
/// slot reading; those still without a master are `unplaced` again.
pub fn resplit(events: Vec<(usize, Event)>, view: &ClusterView) -> Split {
    let mut out = Split::default();
    for (index, event) in events {
        match owners(&event, view) {
            Ok(owners) => share_out(&mut out.shares, index, &event, owners),
            Err(why) => out.unplaced.push((index, event, why)),
        }
    }
    out.shares.sort_by_key(|(node, _)| *node);
    out
}

/// The masters that own `e`'s listings, each with its listings; `Err` (a
/// cluster error's text) when a slot is moving or served by no master.
fn owners(e: &Event, view: &ClusterView) -> std::result::Result<Vec<(u16, Listings)>, String> {
    let mut owners: Vec<(u16, Listings)> = Vec::new();
    for listing in &e.listings {
        let slot = key_slot(listing);
        let owner = match (view.owner(slot), view.route(slot)) {
            (_, Route::Moving) => return Err(reason(&view.check_listing(listing).unwrap_err())),
            (Some(owner), _) => owner,
            (None, route) => {
                let what = format!("listing {}", String::from_utf8_lossy(listing));
                return Err(reason(&route.check(slot, &what).unwrap_err()));
            }
        };
        match owners.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, ls)) => ls.push(listing.clone()),
            None => owners.push((owner, smallvec::smallvec![listing.clone()])),
        }
    }
    Ok(owners)
}

/// Adds event `index` to each owner's share, with that owner's listings.
fn share_out(shares: &mut Vec<Share>, index: usize, event: &Event, owners: Vec<(u16, Listings)>) {
    for (owner, listings) in owners {
        let part = Event {
            listings,
            ..event.clone()
        };
        match shares.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, events)) => events.push((index, part)),
            None => shares.push((owner, vec![(index, part)])),
        }
    }
}

/// Whether a part's reason for not applying an event says that nothing
/// of it was applied there and that its listings live elsewhere now (a
/// demoted master, a moved slot): the asking node sends it again.
pub fn not_applied_there(why: &str) -> bool {
    ["MOVED ", "ASK ", "TRYAGAIN "]
        .iter()
        .any(|p| why.starts_with(p))
}

fn reason(e: &Error) -> String {
    let text = e.to_string();
    text.strip_prefix("ERR ").unwrap_or(&text).to_string()
}

/// One event of a part as one argument: fields separated by NUL (no
/// field can hold one: ids, names and listings are printable tokens).
pub fn encode_event(index: usize, e: &Event) -> Vec<u8> {
    let mut out = index.to_string().into_bytes();
    out.push(0);
    match &e.id {
        Some(id) => {
            out.push(b'i');
            out.extend_from_slice(id);
        }
        None => out.push(b'-'),
    }
    out.push(0);
    out.extend_from_slice(&e.name);
    out.push(0);
    push_day(&mut out, e.day);
    out.push(0);
    out.extend_from_slice(e.count.to_string().as_bytes());
    out.push(0);
    out.extend_from_slice(&e.listings.join(&b","[..]));
    out.push(0);
    match e.hour {
        Some(h) => out.extend_from_slice(h.to_string().as_bytes()),
        None => out.push(b'-'),
    }
    out
}

/// What [`encode_event`] made; `None` when damaged.
pub fn decode_event(bytes: &[u8]) -> Option<(usize, Event)> {
    let mut f = bytes.split(|&b| b == 0);
    let index = std::str::from_utf8(f.next()?).ok()?.parse().ok()?;
    let id = match f.next()? {
        [b'i', id @ ..] => Some(token(id)),
        b"-" => None,
        _ => return None,
    };
    let name = token(f.next()?);
    let day = parse_day(f.next()?)?;
    let count = std::str::from_utf8(f.next()?).ok()?.parse().ok()?;
    let listings: Listings = f.next()?.split(|&b| b == b',').map(token).collect();
    let hour = match f.next()? {
        b"-" => None,
        h => Some(std::str::from_utf8(h).ok()?.parse::<i64>().ok()?),
    };
    if f.next().is_some() || listings.iter().any(|l| l.is_empty()) {
        return None;
    }
    Some((
        index,
        Event {
            id,
            name,
            listings,
            day,
            hour,
            count,
        },
    ))
}

/// A part's outcomes as arguments, one per event: `<caller index> a|d|r
/// [reason]`; `indices[i]` is the caller's index of the part's event `i`.
pub fn encode_outcomes(report: &Report, indices: &[usize]) -> Vec<Vec<u8>> {
    let mut reasons: Vec<Option<&str>> = vec![None; indices.len()];
    for e in &report.errors {
        if let Some((i, why)) = e.split_once(": ") {
            if let Some(slot) = i.parse::<usize>().ok().and_then(|i| reasons.get_mut(i)) {
                *slot = Some(why);
            }
        }
    }
    indices
        .iter()
        .zip(&report.outcomes)
        .zip(&reasons)
        .map(|((index, outcome), why)| {
            let code = match outcome {
                Outcome::Applied => "a",
                Outcome::Duplicate => "d",
                Outcome::Rejected => "r",
            };
            match why {
                Some(why) => format!("{index} {code} {why}").into_bytes(),
                None => format!("{index} {code}").into_bytes(),
            }
        })
        .collect()
}

/// One outcome that [`encode_outcomes`] made.
pub fn decode_outcome(bytes: &[u8]) -> Option<(usize, Outcome, Option<String>)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(3, ' ');
    let index = parts.next()?.parse().ok()?;
    let outcome = match parts.next()? {
        "a" => Outcome::Applied,
        "d" => Outcome::Duplicate,
        "r" => Outcome::Rejected,
        _ => return None,
    };
    Some((index, outcome, parts.next().map(str::to_string)))
}

/// The reply for a batch of `n` events from every part's outcomes: an
/// event is rejected when any part of it was (the first reason is
/// reported), applied when any part counted, a duplicate when every part
/// was one. `increments`: the parts' distinct counters written.
pub fn merge(
    n: usize,
    outcomes: impl IntoIterator<Item = (usize, Outcome, Option<String>)>,
    increments: usize,
) -> Report {
    let mut each: Vec<Option<(Outcome, Option<String>)>> = vec![None; n];
    for (index, outcome, why) in outcomes {
        let Some(slot) = each.get_mut(index) else {
            continue;
        };
        *slot = Some(match (slot.take(), outcome) {
            (Some((Outcome::Rejected, w)), _) => (Outcome::Rejected, w),
            (_, Outcome::Rejected) => (Outcome::Rejected, why),
            (Some((Outcome::Applied, _)), _) | (_, Outcome::Applied) => (Outcome::Applied, None),
            _ => (Outcome::Duplicate, None),
        });
    }
    let mut report = Report {
        increments,
        ..Report::default()
    };
    for (index, e) in each.into_iter().enumerate() {
        let (outcome, why) = e.unwrap_or((
            Outcome::Rejected,
            Some("no node reported this event".to_string()),
        ));
        match outcome {
            Outcome::Applied => report.applied += 1,
            Outcome::Duplicate => report.duplicates += 1,
            Outcome::Rejected => {
                report.rejected += 1;
                report
                    .errors
                    .push(format!("{index}: {}", why.unwrap_or_default()));
            }
        }
        report.outcomes.push(outcome);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse_all;

    use crate::cluster::THREE_MASTERS as NODES;

    #[test]
    fn events_split_by_owner_keeping_ids() {
        let view = ClusterView::parse(NODES).unwrap();
        let settings = Settings::default();
        // Slots: "1" 9842 (bbb), "2" 5649 (bbb), "3" 1584 (aaa), "4" 14039 (ccc).
        let args: Vec<&[u8]> = vec![
            br#"{"id":"e1","name":"click","listingIds":[1,3,4,2],"message_date":1450742400}"#,
            br#"{"name":"view","listingId":3,"message_date":1450742400,"count":2}"#,
            br#"{"name":"bad"}"#,
        ];
        let parsed = parse_all(&args, &settings).unwrap();
        let out = split(parsed, &view, &settings, 1_450_742_400_000, false).unwrap();
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].0, 2);
        type Summary<'a> = Vec<(u16, Vec<(usize, Vec<&'a [u8]>)>)>;
        let summary: Summary<'_> = out
            .shares
            .iter()
            .map(|(n, evs)| {
                (
                    *n,
                    evs.iter()
                        .map(|(i, e)| (*i, e.listings.iter().map(|l| &l[..]).collect()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, vec![(0, vec![&b"3"[..]]), (1, vec![&b"3"[..]])]),
                (1, vec![(0, vec![&b"1"[..], &b"2"[..]])]),
                (2, vec![(0, vec![&b"4"[..]])]),
            ]
        );
        assert!(out.shares.iter().all(|(_, evs)| evs
            .iter()
            .all(|(i, e)| *i != 0 || e.id.as_deref() == Some(b"e1"))));
        let parsed = parse_all(&args, &settings).unwrap();
        assert!(split(parsed, &view, &settings, 1_450_742_400_000, true)
            .unwrap_err()
            .to_string()
            .contains("STRICT batch refused, nothing written: event 2"));
    }

    #[test]
    fn events_not_applied_there_split_again_by_a_fresh_reading() {
        let view = ClusterView::parse(NODES).unwrap();
        let e = |listings: &[&[u8]]| Event {
            id: None,
            name: token(b"click"),
            listings: listings.iter().map(|l| token(l)).collect(),
            day: parse_day(b"2015-12-22").unwrap(),
            hour: None,
            count: 1,
        };
        // "1" and "2" on bbb (node 1), "3" on aaa (node 0), "4" on ccc (2).
        let out = resplit(vec![(7, e(&[b"1", b"3"])), (9, e(&[b"4"]))], &view);
        assert!(out.rejected.is_empty() && out.unplaced.is_empty());
        let summary: Vec<(u16, Vec<usize>)> = out
            .shares
            .iter()
            .map(|(n, evs)| (*n, evs.iter().map(|(i, _)| *i).collect()))
            .collect();
        assert_eq!(summary, vec![(0, vec![7]), (1, vec![7]), (2, vec![9])]);
        // bbb demoted, its slots not yet taken over: "1" and "2" unplaced.
        let gap = ClusterView::parse(
            "aaa 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-5460\n\
             bbb 127.0.0.1:3@4 slave ccc 0 0 2 connected\n\
             ccc 127.0.0.1:5@6 master - 0 0 3 connected 10923-16383\n",
        )
        .unwrap();
        let out = resplit(vec![(7, e(&[b"1", b"3"])), (9, e(&[b"4"]))], &gap);
        assert_eq!(out.shares.len(), 1);
        assert_eq!(out.unplaced.len(), 1);
        assert_eq!(out.unplaced[0].0, 7);
        assert!(out.unplaced[0].2.starts_with("CLUSTERDOWN Hash slot 9842"));
        // The same event in a client's batch: unplaced, not rejected.
        let args: Vec<&[u8]> =
            vec![br#"{"name":"click","listingIds":[1,3],"message_date":1450742400}"#];
        let settings = Settings::default();
        let parsed = parse_all(&args, &settings).unwrap();
        let out = split(parsed, &gap, &settings, 1_450_742_400_000, false).unwrap();
        assert!(out.rejected.is_empty() && out.shares.is_empty());
        assert_eq!(out.unplaced.len(), 1);
        let parsed = parse_all(&args, &settings).unwrap();
        assert!(split(parsed, &gap, &settings, 1_450_742_400_000, true).is_err());
        assert!(not_applied_there(
            "TRYAGAIN node 127.0.0.1:7001 is no longer a master"
        ));
        assert!(not_applied_there("MOVED 5 127.0.0.1:3"));
        assert!(!not_applied_there("TIMEOUT no answer from node x"));
        assert!(!not_applied_there("day 2015-12-22 is past retention"));
    }

    #[test]
    fn events_and_outcomes_round_trip() {
        let e = Event {
            id: Some(token(b"x-1")),
            name: token(b"cart::checkoutNow:click"),
            listings: [token(b"7"), token(b"sku-2")].into(),
            day: parse_day(b"2015-12-22").unwrap(),
            hour: Some(402_789),
            count: 3,
        };
        assert_eq!(decode_event(&encode_event(12, &e)), Some((12, e.clone())));
        let plain = Event {
            id: None,
            hour: None,
            ..e
        };
        assert_eq!(decode_event(&encode_event(0, &plain)), Some((0, plain)));
        assert_eq!(decode_event(b"1\0-\0n"), None);
        let report = Report {
            errors: vec!["1: MOVED 5 127.0.0.1:3".into()],
            outcomes: vec![Outcome::Applied, Outcome::Rejected, Outcome::Duplicate],
            ..Report::default()
        };
        let encoded = encode_outcomes(&report, &[4, 7, 9]);
        let decoded: Vec<_> = encoded.iter().map(|b| decode_outcome(b).unwrap()).collect();
        assert_eq!(
            decoded,
            [
                (4, Outcome::Applied, None),
                (7, Outcome::Rejected, Some("MOVED 5 127.0.0.1:3".into())),
                (9, Outcome::Duplicate, None)
            ]
        );
    }

    #[test]
    fn outcomes_merge_event_by_event() {
        let r = merge(
            4,
            [
                (0, Outcome::Applied, None),
                (0, Outcome::Duplicate, None),
                (1, Outcome::Duplicate, None),
                (1, Outcome::Duplicate, None),
                (2, Outcome::Applied, None),
                (2, Outcome::Rejected, Some("TIMEOUT node x".into())),
                (3, Outcome::Rejected, Some("invalid".into())),
            ],
            9,
        );
        assert_eq!(
            (r.applied, r.duplicates, r.rejected, r.increments),
            (1, 1, 2, 9)
        );
        assert_eq!(r.errors, ["2: TIMEOUT node x", "3: invalid"]);
    }
}
