//! FOLLOW on Redis Cluster: one batch of a followed stream's events whose
//! listings live on several masters, carried until every listing of every
//! event was counted by its owner exactly once.
//!
//! The master that follows the stream sends each other master its part and
//! keeps its own part for last: it applies it in the same step that moves
//! the stream's position, so its counters and the position reach the AOF
//! and replicas together. A part sent to another master carries an id for
//! each event: the event's own, or one derived from (stream, entry id,
//! event number), remembered per slot by the owner like any id. Should the
//! following master fail before its position moved, its successor sends
//! the same parts again and their owners recognise them.
//!
//! A part that could not be delivered (a master stopped, a slot moving, a
//! failover) is planned again with a fresh slot reading: never skipped.

use crate::cluster::{key_slot, ClusterView, Route};
use crate::ingest::{Event, Outcome, Report};
use crate::ingest_split::{merge, EventOutcome, PartAnswer};
use crate::token::{token, Listings};

/// The id a part carries for an event of stream `stream`, entry `entry`,
/// that has none of its own: `~f:<64-bit hash of the stream>:<entry>:<k>`
/// (`k`: the event's number in the entry, an entry may hold an array).
pub fn derived_id(stream: &[u8], entry: &str, k: usize) -> Vec<u8> {
    // FNV-1a: stable across builds and nodes (the std hasher is neither).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in stream {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("~f:{h:016x}:{entry}:{k}").into_bytes()
}

/// Whether a part's reason for not applying an event is about where the
/// listing lives or whether its master answered (the part is sent again),
/// rather than about the event (it is rejected, as one node would).
pub fn transient(why: &str) -> bool {
    [
        "MOVED",
        "ASK",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "TIMEOUT",
        "LOADING",
        "MASTERDOWN",
    ]
    .iter()
    .any(|p| why.starts_with(p))
}

/// A batch's event as [`Spread::new`] takes it.
pub struct Item {
    /// Its index in the batch.
    pub index: usize,
    pub event: Event,
    /// The id its parts carry when it has none of its own.
    pub derived: Option<Vec<u8>>,
    /// Its entry is one whose parts may have gone to other masters before
    /// (by this node or by whoever followed the stream before: the stored
    /// `sent` mark): applied here it keeps its derived id too.
    pub maybe_sent: bool,
}

struct Pending {
    index: usize,
    /// The listings not counted yet.
    event: Event,
    /// The id comes from the event itself (kept everywhere).
    own_id: bool,
    /// Some of its listings were sent to another master: applied here it
    /// keeps its derived id (that master may have counted them before its
    /// slot moved here).
    sent: bool,
}

/// What to do next with a batch.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// A listing's slot is moving or not served: plan again later.
    Wait(String),
    /// Send each master (a node index of the view) its events.
    Send(Vec<(u16, Vec<(usize, Event)>)>),
    /// Only this node's events remain: apply them with the new position.
    Commit(Vec<(usize, Event)>),
}

/// One batch in flight: `n` events (by their index in the batch).
pub struct Spread {
    n: usize,
    pending: Vec<Pending>,
    settled: Vec<EventOutcome>,
    increments: usize,
}

impl Spread {
    /// `events`: the batch's valid events, each with its index and, when
    /// it has no id of its own, the id its parts carry.
    pub fn new(n: usize, events: Vec<Item>) -> Spread {
        let pending = events
            .into_iter()
            .map(|item| {
                let mut event = item.event;
                let own_id = event.id.is_some();
                if !own_id {
                    event.id = item.derived.as_deref().map(token);
                }
                Pending {
                    index: item.index,
                    event,
                    own_id,
                    sent: item.maybe_sent,
                }
            })
            .collect();
        Spread {
            n,
            pending,
            settled: Vec::new(),
            increments: 0,
        }
    }

    /// Records an event refused before anything moved (it is reported
    /// as one node would).
    pub fn reject(&mut self, index: usize, why: String) {
        self.settled.push((index, Outcome::Rejected, Some(why)));
    }

    /// The next step under the slot reading `view`.
    pub fn plan(&mut self, view: &ClusterView) -> Plan {
        let mut shares: Vec<(u16, Vec<(usize, Event)>)> = Vec::new();
        let mut local: Vec<(usize, Event)> = Vec::new();
        for p in &self.pending {
            let mut here = Listings::new();
            for listing in &p.event.listings {
                let slot = key_slot(listing);
                let owner = match view.route(slot) {
                    Route::Here => {
                        here.push(listing.clone());
                        continue;
                    }
                    Route::Moved(_) => view.owner(slot),
                    Route::Moving | Route::Unassigned => None,
                };
                let Some(owner) = owner else {
                    let what = format!("listing {}", String::from_utf8_lossy(listing));
                    let why = view
                        .route(slot)
                        .check(slot, &what)
                        .err()
                        .map_or_else(String::new, |e| e.to_string());
                    return Plan::Wait(why);
                };
                let share = match shares.iter_mut().find(|(o, _)| *o == owner) {
                    Some((_, events)) => events,
                    None => {
                        shares.push((owner, Vec::new()));
                        &mut shares.last_mut().expect("pushed").1
                    }
                };
                match share.last_mut() {
                    Some((i, e)) if *i == p.index => e.listings.push(listing.clone()),
                    _ => share.push((
                        p.index,
                        Event {
                            listings: smallvec::smallvec![listing.clone()],
                            ..p.event.clone()
                        },
                    )),
                }
            }
            if !here.is_empty() {
                let mut event = Event {
                    listings: here,
                    ..p.event.clone()
                };
                if !p.own_id && !p.sent {
                    event.id = None;
                }
                local.push((p.index, event));
            }
        }
        if shares.is_empty() {
            return Plan::Commit(local);
        }
        for p in &mut self.pending {
            let remote = shares
                .iter()
                .any(|(_, events)| events.iter().any(|(i, _)| *i == p.index));
            p.sent |= remote;
        }
        shares.sort_by_key(|(node, _)| *node);
        Plan::Send(shares)
    }

    /// A master's answer to the part `events` it was sent: its outcomes
    /// (event index, outcome, reason), or why none came. Listings it
    /// counted (or refused for a reason of the event's own) are settled;
    /// the rest stay pending. The first transient reason, if any.
    pub fn settle(&mut self, events: &[(usize, Event)], answer: PartAnswer) -> Option<String> {
        let (outcomes, increments) = match answer {
            Ok(a) => a,
            Err(why) => return Some(why),
        };
        self.increments += increments;
        let mut again = None;
        for (index, outcome, why) in outcomes {
            if outcome == Outcome::Rejected && why.as_deref().is_some_and(transient) {
                again = again.or(why);
                continue;
            }
            let Some((_, sent)) = events.iter().find(|(i, _)| *i == index) else {
                continue;
            };
            if let Some(p) = self.pending.iter_mut().find(|p| p.index == index) {
                p.event.listings.retain(|l| !sent.listings.contains(l));
            }
            self.settled.push((index, outcome, why));
        }
        self.pending.retain(|p| !p.event.listings.is_empty());
        again
    }

    /// The batch's report once this node applied its own part (`local`:
    /// that part's events, `report`: what applying them did).
    pub fn finish(mut self, local: &[(usize, Event)], report: &Report) -> Report {
        for (e, (index, _)) in report.outcomes.iter().zip(local) {
            let why = report.errors.iter().find_map(|text| {
                let (i, why) = text.split_once(": ")?;
                let i: usize = i.parse().ok()?;
                (local.get(i).map(|(index, _)| *index) == Some(*index)).then(|| why.to_string())
            });
            self.settled.push((*index, *e, why));
        }
        merge(self.n, self.settled, self.increments + report.increments)
    }

    /// Listings not counted yet (FOLLOWING shows what a batch waits for).
    pub fn pending(&self) -> usize {
        self.pending.iter().map(|p| p.event.listings.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse_all;
    use crate::settings::Settings;

    use crate::cluster::THREE_MASTERS as NODES;

    fn events(args: &[&[u8]]) -> Vec<Event> {
        parse_all(args, &Settings::default())
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    fn spread(args: &[&[u8]]) -> Spread {
        spread_of(args.len(), args)
    }

    fn spread_of(n: usize, args: &[&[u8]]) -> Spread {
        let evs = events(args);
        Spread::new(
            n,
            evs.into_iter()
                .enumerate()
                .map(|(i, e)| Item {
                    index: i,
                    event: e,
                    derived: Some(derived_id(b"s", "1-0", i)),
                    maybe_sent: false,
                })
                .collect(),
        )
    }

    fn applied(events: &[(usize, Event)]) -> PartAnswer {
        Ok((
            events
                .iter()
                .map(|(i, _)| (*i, Outcome::Applied, None))
                .collect(),
            events.len(),
        ))
    }

    #[test]
    fn derived_ids_differ_by_stream_entry_and_number() {
        let a = derived_id(b"orders", "1-0", 0);
        assert_eq!(a, derived_id(b"orders", "1-0", 0));
        assert_ne!(a, derived_id(b"orders", "1-0", 1));
        assert_ne!(a, derived_id(b"orders", "1-1", 0));
        assert_ne!(a, derived_id(b"orderz", "1-0", 0));
        assert!(a.starts_with(b"~f:"));
    }

    #[test]
    fn remote_parts_first_then_the_local_part_without_derived_ids() {
        let view = ClusterView::parse(NODES).unwrap();
        // Slots: "1" 9842 (bbb), "3" 1584 (aaa), "4" 14039 (ccc).
        let mut s = spread(&[
            br#"{"name":"click","listingIds":[1,3,4],"message_date":1450742400}"#,
            br#"{"id":"own","name":"view","listingIds":[3],"message_date":1450742400}"#,
        ]);
        let Plan::Send(shares) = s.plan(&view) else {
            panic!("expected parts to send");
        };
        assert_eq!(shares.len(), 2);
        for (_, events) in &shares {
            assert_eq!(events.len(), 1);
            assert_eq!(
                events[0].1.id.as_deref(),
                Some(&derived_id(b"s", "1-0", 0)[..])
            );
        }
        for (_, events) in &shares {
            assert_eq!(s.settle(events, applied(events)), None);
        }
        let Plan::Commit(local) = s.plan(&view) else {
            panic!("expected the local part");
        };
        // Event 0 was partly sent: it keeps its derived id here too; event
        // 1 keeps its own.
        assert_eq!(local.len(), 2);
        assert_eq!(local[0].1.listings, [token(b"3")].into());
        assert!(local[0].1.id.is_some());
        assert_eq!(local[1].1.id.as_deref(), Some(&b"own"[..]));
        let report = Report {
            applied: 2,
            outcomes: vec![Outcome::Applied, Outcome::Applied],
            increments: 2,
            ..Report::default()
        };
        let merged = s.finish(&local, &report);
        assert_eq!((merged.applied, merged.rejected), (2, 0));
        assert_eq!(merged.increments, 4);
    }

    #[test]
    fn events_only_here_lose_their_derived_id() {
        let view = ClusterView::parse(NODES).unwrap();
        let mut s = spread(&[br#"{"name":"click","listingIds":[3],"message_date":1450742400}"#]);
        let Plan::Commit(local) = s.plan(&view) else {
            panic!("expected a commit");
        };
        assert_eq!(local[0].1.id, None);
    }

    #[test]
    fn an_entry_another_follower_may_have_sent_keeps_its_derived_id() {
        let view = ClusterView::parse(NODES).unwrap();
        let e = events(&[br#"{"name":"click","listingIds":[3],"message_date":1450742400}"#]);
        let item = |maybe_sent| Item {
            index: 0,
            event: e[0].clone(),
            derived: Some(b"~f:x".to_vec()),
            maybe_sent,
        };
        for (maybe_sent, id) in [(false, None), (true, Some(b"~f:x".to_vec()))] {
            let mut s = Spread::new(1, vec![item(maybe_sent)]);
            let Plan::Commit(local) = s.plan(&view) else {
                panic!("expected a commit");
            };
            assert_eq!(local[0].1.id.as_deref(), id.as_deref());
        }
    }

    #[test]
    fn a_failed_part_is_planned_again_and_a_moving_slot_waits() {
        let view = ClusterView::parse(NODES).unwrap();
        let mut s = spread(&[br#"{"name":"click","listingIds":[1,4],"message_date":1450742400}"#]);
        let Plan::Send(shares) = s.plan(&view) else {
            panic!("expected parts");
        };
        let (first, second) = (&shares[0].1, &shares[1].1);
        assert_eq!(s.settle(first, applied(first)), None);
        let why = s.settle(second, Err("TIMEOUT no answer".into()));
        assert_eq!(why.as_deref(), Some("TIMEOUT no answer"));
        assert_eq!(s.pending(), 1);
        // A part answered MOVED for its listing: still pending.
        let moved = Ok((
            vec![(0, Outcome::Rejected, Some("MOVED 14039 127.0.0.1:7".into()))],
            0,
        ));
        assert!(s.settle(second, moved).is_some());
        let Plan::Send(again) = s.plan(&view) else {
            panic!("expected the part again");
        };
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1[0].1.listings, [token(b"4")].into());
        // A slot being migrated: wait, send nothing.
        let moving = NODES.replace("0-5460", "0-5460 [14039-<-ccc]");
        let view = ClusterView::parse(&moving).unwrap();
        assert!(matches!(s.plan(&view), Plan::Wait(w) if w.starts_with("TRYAGAIN")));
    }

    #[test]
    fn a_rejection_for_the_event_itself_is_reported() {
        let view = ClusterView::parse(NODES).unwrap();
        let mut s = spread_of(
            3,
            &[
                br#"{"name":"click","listingIds":[1],"message_date":1450742400}"#,
                br#"{"name":"click","listingIds":[1],"message_date":1450742400}"#,
            ],
        );
        s.reject(2, "bad".into());
        let Plan::Send(shares) = s.plan(&view) else {
            panic!("expected a part");
        };
        let events = &shares[0].1;
        let answer = Ok((
            vec![
                (0, Outcome::Rejected, Some("WRONGTYPE day hash".into())),
                (1, Outcome::Duplicate, None),
            ],
            0,
        ));
        assert_eq!(s.settle(events, answer), None);
        let Plan::Commit(local) = s.plan(&view) else {
            panic!("expected a commit");
        };
        assert!(local.is_empty());
        let merged = s.finish(&local, &Report::default());
        assert_eq!(
            (merged.applied, merged.duplicates, merged.rejected),
            (0, 1, 2)
        );
    }
}
