//! FOLLOW on a cluster: a batch of a followed stream spread over the
//! masters that own its events' listings (the plan is the core's
//! `follow_cluster`). Other masters' parts go first, over the transport of
//! cluster-wide INGEST, each event with an id (its own or one derived from
//! the stream and entry); this node's part is applied last, in the slice
//! that stores the new position. Until every part was counted the
//! position stays where it is: a part that failed (a master stopped, a
//! slot moving, a failover) is planned again with a fresh slot reading
//! every [`RETRY`], and FOLLOWING shows what the stream waits for.

use std::cell::RefCell;
use std::time::Duration;

use redis_module::Context;
use rustc_hash::{FxHashMap, FxHashSet};

use super::local::{next_entries, store_position};
use super::{
    count_here, forget as forget_stream, parse_entries, plain, reject_entries, rejected_entries,
    state_of, tally, wake, Progress,
};
use crate::budget::FOLLOW_CLUSTER_BATCH;
use crate::dedup_upkeep;
use crate::fanout::ingest::{send_parts, Answers};
use crate::redis::cluster as topology;
use crate::redis::context::now_ms;
use crate::redis::store::RedisStore;
use listingstats_core::cluster::{key_slot, ClusterView, Route};
use listingstats_core::follow::{FollowState, StreamId};
use listingstats_core::follow_cluster::{derived_id, Item, Plan, Spread};
use listingstats_core::ingest::{self, Event, Outcome, Report};
use listingstats_core::settings::Settings;

/// How long a stream waits before a failed part is planned again.
const RETRY: Duration = Duration::from_millis(100);

type Key = (i32, Vec<u8>);

/// One batch of one stream, between reading its entries and storing the
/// position past them.
struct Flight {
    token: u64,
    spread: Spread,
    /// The stored state when the batch was read (and the loss it found).
    state: FollowState,
    position: StreamId,
    /// The entries' ids, each event's entry, and the entries refused
    /// before anything moved.
    ids: Vec<StreamId>,
    owner: Vec<usize>,
    rejected: Vec<(usize, String)>,
    /// The parts out, by node (while `out`, the answers are awaited).
    sent: Vec<(u16, Vec<(usize, Event)>)>,
    out: bool,
}

#[derive(Default)]
struct Flights {
    by_stream: FxHashMap<Key, Flight>,
    /// What a stream waits for (FOLLOWING), until its batch is stored.
    notes: FxHashMap<Key, String>,
    /// Streams with a retry timer pending (one at a time).
    retrying: FxHashSet<Key>,
    next_token: u64,
    /// This node's slots when last looked at.
    slots: Option<(usize, u64, usize)>,
}

resident! {
    static FLIGHTS: RefCell<Flights> = RefCell::default();
}

fn with<R>(f: impl FnOnce(&mut Flights) -> R) -> R {
    FLIGHTS.with(|s| f(&mut s.borrow_mut()))
}

/// One step of `stream`'s pump on a cluster node.
pub(super) fn step(ctx: &Context, settings: &Settings, db: i32, stream: &[u8]) -> Progress {
    let key: Key = (db, stream.to_vec());
    let view = match topology::view(ctx, true) {
        Ok(view) => view,
        Err(e) => return wait(ctx, key, e.to_string()),
    };
    let slot = key_slot(stream);
    match view.route(slot) {
        Route::Here => {}
        Route::Moving => {
            let why = format!("TRYAGAIN the stream's slot {slot} is being resharded");
            return wait(ctx, key, why);
        }
        // Its slot (and the position with it) went to another master.
        Route::Moved(_) | Route::Unassigned => {
            forget_stream(db, stream);
            return Progress::Idle;
        }
    }
    let flight = match with(|s| s.by_stream.remove(&key)) {
        Some(f) if f.out => {
            with(|s| s.by_stream.insert(key, f));
            return Progress::Idle;
        }
        Some(f) => f,
        None => match begin(ctx, settings, db, stream) {
            Some(f) => f,
            None => {
                with(|s| s.notes.remove(&key));
                return Progress::Idle;
            }
        },
    };
    advance(ctx, settings, &view, key, flight)
}

/// Reads the next batch and makes its plan.
fn begin(ctx: &Context, settings: &Settings, db: i32, stream: &[u8]) -> Option<Flight> {
    let (state, entries) = next_entries(ctx, settings, db, stream, FOLLOW_CLUSTER_BATCH)?;
    let ids: Vec<StreamId> = entries.iter().map(|e| e.id).collect();
    let parsed = parse_entries(&entries, settings);
    let n = parsed.parsed.len();
    let sent = StreamId::parse(state.sent.as_bytes());
    let mut events = Vec::with_capacity(n);
    let mut refused = Vec::new();
    let mut k = 0;
    for (i, event) in parsed.parsed.into_iter().enumerate() {
        let entry = parsed.owner[i];
        k = if i > 0 && parsed.owner[i - 1] == entry {
            k + 1
        } else {
            0
        };
        match event {
            Ok(e) => events.push(Item {
                index: i,
                event: e,
                derived: Some(derived_id(stream, &ids[entry].to_string(), k)),
                maybe_sent: sent.is_some_and(|mark| ids[entry] <= mark),
            }),
            Err(why) => refused.push((i, why)),
        }
    }
    let mut spread = Spread::new(n, events);
    for (i, why) in refused {
        spread.reject(i, why);
    }
    let token = with(|s| {
        s.next_token += 1;
        s.next_token
    });
    Some(Flight {
        token,
        spread,
        position: state.position(),
        state,
        ids,
        owner: parsed.owner,
        rejected: parsed.rejected,
        sent: Vec::new(),
        out: false,
    })
}

fn advance(
    ctx: &Context,
    settings: &Settings,
    view: &ClusterView,
    key: Key,
    mut flight: Flight,
) -> Progress {
    match flight.spread.plan(view) {
        Plan::Wait(why) => {
            with(|s| s.by_stream.insert(key.clone(), flight));
            wait(ctx, key, why)
        }
        Plan::Send(shares) => {
            if !mark_sent(ctx, settings, &key.1, &mut flight) {
                return wait(ctx, key, "could not store the stream's state".into());
            }
            let token = flight.token;
            let to = key.clone();
            let done = Box::new(move |ctx: &Context, answers: Answers| {
                answered(ctx, to, token, answers);
            });
            match send_parts(ctx, view, &shares, settings.cluster_timeout, done) {
                Ok(()) => {
                    flight.sent = shares;
                    flight.out = true;
                    with(|s| s.by_stream.insert(key, flight));
                    Progress::Idle
                }
                Err(answers) => {
                    flight.sent = shares;
                    flight.out = true;
                    with(|s| s.by_stream.insert(key.clone(), flight));
                    answered(ctx, key, token, answers);
                    Progress::Idle
                }
            }
        }
        Plan::Commit(local) => commit(ctx, settings, view, key, flight, &local),
    }
}

/// Before parts of a batch leave: stores that entries up to its last may
/// have been counted elsewhere (`FollowState::sent`), so whoever takes
/// the stream over keeps their ids. `false` when it could not be stored.
fn mark_sent(ctx: &Context, settings: &Settings, stream: &[u8], f: &mut Flight) -> bool {
    let last = f.ids.last().copied().unwrap_or_default();
    if StreamId::parse(f.state.sent.as_bytes()).is_some_and(|mark| mark >= last) {
        return true;
    }
    f.state.sent = last.to_string();
    let Ok(mut store) = RedisStore::for_user(ctx, &settings.keys, None) else {
        return false;
    };
    store
        .hash_set(
            &super::position_key(settings, stream),
            stream,
            f.state.to_stored().as_bytes(),
        )
        .is_ok()
}

/// The other masters answered (or did not, within `cluster-timeout`).
fn answered(ctx: &Context, key: Key, token: u64, answers: Answers) {
    let again = with(|s| {
        let f = s.by_stream.get_mut(&key).filter(|f| f.token == token)?;
        f.out = false;
        let mut again: Option<String> = None;
        for (node, answer) in answers {
            let Some((_, events)) = f.sent.iter().find(|(n, _)| *n == node) else {
                continue;
            };
            if let Some(why) = f.spread.settle(events, answer) {
                again = again.or(Some(why));
            }
        }
        f.sent.clear();
        Some(again)
    });
    match again {
        None => {} // Forgotten or replaced meanwhile.
        Some(None) => wake(ctx, key.0, key.1),
        Some(Some(why)) => {
            wait(ctx, key, why);
        }
    }
}

/// Applies this node's part and stores the position past the batch, in
/// this one slice.
fn commit(
    ctx: &Context,
    settings: &Settings,
    view: &ClusterView,
    key: Key,
    mut f: Flight,
    local: &[(usize, Event)],
) -> Progress {
    let stream = key.1.as_slice();
    // Unfollowed, or followed again from elsewhere, meanwhile: read anew.
    match state_of(ctx, settings, stream) {
        Ok(Some(stored)) if stored.position() == f.position => {}
        _ => return Progress::More,
    }
    let Ok(mut store) = RedisStore::for_user(ctx, &settings.keys, None) else {
        return Progress::Idle;
    };
    let now = now_ms();
    let events: ingest::Parsed = local.iter().map(|(_, e)| Ok(e.clone())).collect();
    let report = match ingest::run(&mut store, events, false, settings, now, Some(view)) {
        Ok(report) => report,
        Err(_) => one_by_one(&mut store, settings, local, now, view),
    };
    // INFO counts this node's part (the other masters count theirs); the
    // stream's state counts the merged batch.
    count_here(&report);
    let merged = f.spread.finish(local, &report);
    tally(&mut f.state, &merged);
    let mut rejected = std::mem::take(&mut f.rejected);
    rejected_entries(&merged, &f.owner, &mut rejected);
    reject_entries(&mut f.state, &f.ids, rejected);
    dedup_upkeep::after_write(&mut store);
    let last = f.ids.last().copied().unwrap_or_default();
    store_position(
        &mut store,
        settings,
        stream,
        &mut f.state,
        f.ids.len(),
        last,
    );
    with(|s| s.notes.remove(&key));
    // Entries added while the parts were out woke nobody: look again.
    Progress::More
}

/// This node's part failed as a whole (nothing of it written): each event
/// on its own, so one bad event never blocks the stream.
fn one_by_one(
    store: &mut RedisStore<'_>,
    settings: &Settings,
    local: &[(usize, Event)],
    now: i64,
    view: &ClusterView,
) -> Report {
    let mut report = Report::default();
    for (i, (_, event)) in local.iter().enumerate() {
        match ingest::run(
            store,
            vec![Ok(event.clone())],
            false,
            settings,
            now,
            Some(view),
        ) {
            Ok(one) => {
                let outcome = one.outcomes.first().copied().unwrap_or(Outcome::Rejected);
                report.applied += one.applied;
                report.duplicates += one.duplicates;
                report.rejected += one.rejected;
                report.increments += one.increments;
                if let Some(first) = one.errors.first() {
                    let why = first.split_once(": ").map_or(first.as_str(), |(_, w)| w);
                    report.errors.push(format!("{i}: {why}"));
                }
                report.outcomes.push(outcome);
            }
            Err(e) => {
                report.rejected += 1;
                report.errors.push(format!("{i}: {}", plain(&e)));
                report.outcomes.push(Outcome::Rejected);
            }
        }
    }
    report
}

/// Notes why `key` waits and looks at it again after [`RETRY`].
fn wait(ctx: &Context, key: Key, why: String) -> Progress {
    let first = with(|s| {
        s.notes.insert(key.clone(), why);
        s.retrying.insert(key.clone())
    });
    if first {
        ctx.create_timer(RETRY, retry, key);
    }
    Progress::Idle
}

fn retry(ctx: &Context, key: Key) {
    with(|s| s.retrying.remove(&key));
    wake(ctx, key.0, key.1);
}

/// What `stream` of `db` waits for, if anything.
pub(super) fn waiting(db: i32, stream: &[u8]) -> Option<String> {
    with(|s| s.notes.get(&(db, stream.to_vec())).cloned())
}

/// `stream` is no longer followed here: its batch is dropped (its parts
/// out, if any, carry ids: whoever follows it next sends them again).
pub(super) fn forget(db: i32, stream: &[u8]) {
    let key = (db, stream.to_vec());
    with(|s| {
        s.by_stream.remove(&key);
        s.notes.remove(&key);
    });
}

/// Keeps the batches of the streams in `followed` only.
pub(super) fn forget_all_except(followed: &FxHashMap<i32, FxHashSet<Vec<u8>>>) {
    let kept = |(db, stream): &Key| followed.get(db).is_some_and(|s| s.contains(stream));
    with(|s| {
        s.by_stream.retain(|k, _| kept(k));
        s.notes.retain(|k, _| kept(k));
    });
}

/// Every second: when this node's slots changed (a failover made it a
/// master, a reshard moved a stream here), the positions are read again.
pub(super) fn watch_slots(ctx: &Context) {
    ctx.create_timer(Duration::from_secs(1), look_at_slots, ());
}

fn look_at_slots(ctx: &Context, (): ()) {
    if let Ok(view) = topology::view(ctx, false) {
        let owned: Vec<u16> = view.owned().collect();
        let sum = owned
            .iter()
            .fold(0u64, |h, &s| h.wrapping_mul(31).wrapping_add(u64::from(s)));
        let now = Some((owned.len(), sum, view.moving().len()));
        if with(|s| std::mem::replace(&mut s.slots, now)) != now {
            super::reload(ctx);
        }
    }
    watch_slots(ctx);
}
