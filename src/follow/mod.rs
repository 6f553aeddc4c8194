//! Following Redis Streams: the pump behind `LISTINGSTATS.FOLLOW`.
//!
//! The module applies every entry of a followed stream as an INGEST event
//! (its field `event`), in id order. Each followed stream's position and
//! counts live in a hash (field: the stream's name) — on one node
//! `<prefix>listingstats:following`, on a cluster one per slot in the
//! stream's own slot (`following:<slot>:{tag}`), so a position moves,
//! fails over and restarts with its stream. The position is written in
//! the same slice as the counters of the entries it covers: Redis
//! propagates what one timer callback writes as one MULTI/EXEC, so the
//! AOF and replicas get the counters and the new position together or not
//! at all. A replica applies nothing itself: it receives those effects,
//! and a promoted replica continues from the replicated position.
//!
//! The pump runs in slices (`redis::slices`): started by FOLLOW, by an
//! `xadd` on a followed stream (keyspace notifications, no polling), at
//! load, at the end of loading, when this server becomes a master, and on
//! a cluster when this node's slots change. On a cluster, events whose
//! listings live on other masters go there as parts (`cluster.rs`).
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | which streams are followed, the pump, positions |
//! | `local.rs` | a batch applied on one node |
//! | `cluster.rs` | a batch spread over the masters of a cluster |

mod cluster;
mod local;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use redis_module::Context;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::budget::FOLLOW_SLICE;
use crate::config;
use crate::redis::cluster as topology;
use crate::redis::context::{is_replica, select_db, selected_db, Hold};
use crate::redis::events::{self, class, KeyEvent, ServerEvent};
use crate::redis::reader::Reader;
use crate::redis::slices::{self, Sliced, Step};
use crate::stats;
use listingstats_core::cluster::key_slot;
use listingstats_core::follow::{entry_event, FollowState, StreamId};
use listingstats_core::ingest;
use listingstats_core::settings::Settings;
use listingstats_core::{Error, Result};

#[derive(Default)]
struct Pump {
    /// database -> followed stream names (mirrors the position hashes).
    followed: FxHashMap<i32, FxHashSet<Vec<u8>>>,
    /// Streams that may have entries to apply.
    dirty: FxHashSet<(i32, Vec<u8>)>,
    running: bool,
    /// Why the pump waits to write, while it does (FOLLOWING's `waiting`).
    held: Option<Hold>,
}

resident! {
    static PUMP: RefCell<Pump> = RefCell::default();
}

fn with_pump<R>(f: impl FnOnce(&mut Pump) -> R) -> R {
    PUMP.with(|p| f(&mut p.borrow_mut()))
}

/// The hash that holds `stream`'s position.
pub fn position_key(settings: &Settings, stream: &[u8]) -> Vec<u8> {
    if topology::enabled() {
        settings.keys.following_key_in(key_slot(stream))
    } else {
        settings.keys.following_key()
    }
}

/// `stream`'s stored state in the selected database, if followed.
pub fn state_of(ctx: &Context, settings: &Settings, stream: &[u8]) -> Result<Option<FollowState>> {
    let pairs = Reader::unchecked(ctx).hash_all(&position_key(settings, stream))?;
    Ok(pairs
        .into_iter()
        .find(|(s, _)| s == stream)
        .and_then(|(_, state)| FollowState::from_stored(&state)))
}

/// The streams FOLLOWING lists, with their states. On a cluster master,
/// those it follows, each read from its own slot's hash: reading every
/// served slot's hash (`registry`) costs milliseconds per call. A stream
/// whose slot was just imported shows once the 1 s slot watch has seen
/// the slot. Elsewhere (one node, a replica): the whole registry.
pub fn listed(ctx: &Context, settings: &Settings) -> Result<Vec<(Vec<u8>, FollowState)>> {
    if !topology::enabled() || is_replica(ctx) {
        return registry(ctx, settings);
    }
    let db = selected_db(ctx);
    let mut streams: Vec<Vec<u8>> =
        with_pump(|p| p.followed.get(&db).map(|s| s.iter().cloned().collect())).unwrap_or_default();
    streams.sort();
    let mut out = Vec::with_capacity(streams.len());
    for stream in streams {
        if let Some(state) = state_of(ctx, settings, &stream)? {
            out.push((stream, state));
        }
    }
    Ok(out)
}

/// Every followed stream of the selected database with its state: on a
/// cluster, those of the slots this node serves.
pub fn registry(ctx: &Context, settings: &Settings) -> Result<Vec<(Vec<u8>, FollowState)>> {
    let reader = Reader::unchecked(ctx);
    let keys: Vec<Vec<u8>> = if topology::enabled() {
        let view = topology::view(ctx, false)?;
        view.served()
            .map(|slot| settings.keys.following_key_in(slot))
            .collect()
    } else {
        vec![settings.keys.following_key()]
    };
    let mut out = Vec::new();
    for key in keys {
        for (stream, state) in reader.hash_all(&key)? {
            if let Some(s) = FollowState::from_stored(&state) {
                out.push((stream, s));
            }
        }
    }
    Ok(out)
}

/// Reads every database's positions, marks every followed stream to be
/// looked at, and starts the pump.
fn reload(ctx: &Context) {
    let settings = config::current();
    let original = selected_db(ctx);
    let mut followed: FxHashMap<i32, FxHashSet<Vec<u8>>> = FxHashMap::default();
    let mut db = 0;
    while select_db(ctx, db) {
        if let Ok(all) = registry(ctx, &settings) {
            if !all.is_empty() {
                followed.insert(db, all.into_iter().map(|(s, _)| s).collect());
            }
        }
        db += 1;
    }
    select_db(ctx, original);
    cluster::forget_all_except(&followed);
    with_pump(|p| {
        p.dirty = followed
            .iter()
            .flat_map(|(&db, streams)| streams.iter().map(move |s| (db, s.clone())))
            .collect();
        p.followed = followed;
    });
    watch_followed(ctx);
    kick(ctx);
}

/// Stream events reach this module only while some stream is followed.
fn watch_followed(ctx: &Context) {
    events::watch_streams(ctx, followed_streams() > 0);
}

/// Starts following `stream` of the selected database (its position is
/// stored already).
pub fn started(ctx: &Context, stream: Vec<u8>) {
    let db = selected_db(ctx);
    with_pump(|p| {
        p.followed.entry(db).or_default().insert(stream.clone());
        p.dirty.insert((db, stream));
    });
    watch_followed(ctx);
    kick(ctx);
}

/// Stops tracking `stream` of database `db` (unfollowed or gone).
pub fn forget(db: i32, stream: &[u8]) {
    with_pump(|p| {
        if let Some(s) = p.followed.get_mut(&db) {
            s.remove(stream);
        }
        p.dirty.remove(&(db, stream.to_vec()));
    });
    cluster::forget(db, stream);
    if followed_streams() == 0 {
        events::close_streams();
    }
}

/// `stream` of `db` may have entries to apply again.
fn wake(ctx: &Context, db: i32, stream: Vec<u8>) {
    let followed = with_pump(|p| {
        let hit = p.followed.get(&db).is_some_and(|s| s.contains(&stream));
        if hit {
            p.dirty.insert((db, stream));
        }
        hit
    });
    if followed {
        kick(ctx);
    }
}

/// Starts the pump if it is not running and there is work.
fn kick(ctx: &Context) {
    let start = with_pump(|p| {
        let start = !p.running && !p.dirty.is_empty();
        p.running |= start;
        start
    });
    if start {
        slices::start(ctx, PumpWork);
    }
}

fn on_key_event(ctx: &Context, e: &KeyEvent<'_>) {
    wake(ctx, e.db, e.key.to_vec());
}

fn on_server_event(ctx: &Context, e: &ServerEvent<'_>) {
    match e {
        ServerEvent::Loading { ended: true } | ServerEvent::BecameMaster => reload(ctx),
        ServerEvent::Flush(_) | ServerEvent::SwapDb(..) => reload(ctx),
        _ => {}
    }
}

/// Subscribes and picks up what the positions hold (MODULE LOAD on a
/// server with data); on a cluster, also watches this node's slots.
pub fn init(ctx: &Context) -> std::result::Result<(), String> {
    events::on_keyspace(ctx, class::ALL, on_key_event)?;
    events::on_server_events(ctx, on_server_event);
    reload(ctx);
    if topology::enabled() {
        cluster::watch_slots(ctx);
    }
    Ok(())
}

/// What one step did to a stream.
enum Progress {
    /// A full batch was applied: more may follow.
    More,
    /// Nothing more now (caught up, or waiting for other masters: their
    /// answer wakes the stream).
    Idle,
}

/// The pump: applies dirty streams' entries until none is left.
struct PumpWork;

impl PumpWork {
    fn step(&mut self, ctx: &Context, deadline: Instant) -> Step {
        let settings = config::current();
        let original = selected_db(ctx);
        let mut longest = Duration::ZERO;
        loop {
            let at = Instant::now();
            let Some((db, stream)) = with_pump(|p| p.dirty.iter().next().cloned()) else {
                with_pump(|p| p.running = false);
                select_db(ctx, original);
                return Step::Done;
            };
            select_db(ctx, db);
            let progress = if topology::enabled() {
                cluster::step(ctx, &settings, db, &stream)
            } else {
                local::apply_batch(ctx, &settings, db, &stream)
            };
            if matches!(progress, Progress::Idle) {
                with_pump(|p| p.dirty.remove(&(db, stream)));
            }
            // Another step only when one as long as the longest so far
            // still ends by the deadline.
            longest = longest.max(at.elapsed());
            if Instant::now() + longest >= deadline {
                select_db(ctx, original);
                return Step::More;
            }
        }
    }
}

impl Sliced for PumpWork {
    fn slice_len(&self) -> Duration {
        FOLLOW_SLICE
    }

    fn what(&self) -> &'static str {
        "following a stream"
    }

    fn run(&mut self, ctx: &Context, deadline: Instant) -> Step {
        stats::SLICES.add(1);
        with_pump(|p| p.held = None);
        self.step(ctx, deadline)
    }

    fn failed(&mut self, _ctx: &Context) {
        with_pump(|p| p.running = false);
    }

    fn writes(&self) -> bool {
        true
    }

    /// While writes are paused or the server loads, the pump waits with
    /// its streams marked; on a replica (or a master just demoted) it
    /// stops: replicas receive the effects and the positions, and a
    /// promoted replica starts its own pump (`BecameMaster`).
    fn held(&mut self, _ctx: &Context, why: Hold) -> Step {
        with_pump(|p| {
            p.held = Some(why);
            if why != Hold::Replica {
                return Step::Wait;
            }
            p.dirty.clear();
            p.running = false;
            p.held = None;
            Step::Done
        })
    }
}

/// A batch of entries as events: the events, the entry each came from,
/// and the entries refused before anything moved (no field `event`, an
/// event that does not parse), with why.
struct Entries {
    parsed: ingest::Parsed,
    owner: Vec<usize>,
    rejected: Vec<(usize, String)>,
}

fn parse_entries(entries: &[crate::redis::stream::Entry], settings: &Settings) -> Entries {
    let mut out = Entries {
        parsed: Vec::with_capacity(entries.len()),
        owner: Vec::with_capacity(entries.len()),
        rejected: Vec::new(),
    };
    for (i, entry) in entries.iter().enumerate() {
        let payload = match entry_event(&entry.fields) {
            Ok(p) => p,
            Err(why) => {
                out.rejected.push((i, why.to_string()));
                continue;
            }
        };
        match ingest::parse_all(&[payload], settings) {
            Ok(events) => {
                out.owner.extend(std::iter::repeat_n(i, events.len()));
                out.parsed.extend(events);
            }
            Err(e) => out.rejected.push((i, plain(&e))),
        }
    }
    out
}

/// A report's rejected events (`"index: why"`) as their entries' indices.
fn rejected_entries(report: &ingest::Report, owner: &[usize], out: &mut Vec<(usize, String)>) {
    for e in &report.errors {
        if let Some((index, why)) = e.split_once(": ") {
            if let Some(&i) = index.parse::<usize>().ok().and_then(|n| owner.get(n)) {
                out.push((i, why.to_string()));
            }
        }
    }
}

/// Records one rejection per entry, in entry order.
fn reject_entries(state: &mut FollowState, ids: &[StreamId], mut rejected: Vec<(usize, String)>) {
    rejected.sort_by_key(|(i, _)| *i);
    rejected.dedup_by_key(|(i, _)| *i);
    for (i, why) in rejected {
        if let Some(&id) = ids.get(i) {
            reject(state, id, &why);
        }
    }
}

fn plain(e: &Error) -> String {
    let text = e.reply_text();
    text.strip_prefix("ERR ").unwrap_or(&text).to_string()
}

/// Counts what a batch applied here: in the stream's state and in INFO.
fn count(state: &mut FollowState, report: &ingest::Report) {
    tally(state, report);
    count_here(report);
}

/// The stream's state: events applied, duplicates skipped.
fn tally(state: &mut FollowState, report: &ingest::Report) {
    state.applied += report.applied as u64;
    state.duplicates += report.duplicates as u64;
}

/// INFO: what this node applied.
fn count_here(report: &ingest::Report) {
    stats::EVENTS.add(report.applied as u64);
    stats::DUPLICATES.add(report.duplicates as u64);
    stats::INCREMENTS.add(report.increments as u64);
}

fn reject(state: &mut FollowState, id: StreamId, why: &str) {
    stats::REJECTED.add(1);
    state.reject(id, why);
}

/// What a followed stream waits for, if anything (FOLLOWING): writes to
/// be allowed again, or on a cluster another master.
pub fn waiting(db: i32, stream: &[u8]) -> Option<String> {
    let held = with_pump(|p| {
        p.held
            .filter(|_| p.dirty.contains(&(db, stream.to_vec())))
            .map(|h| format!("{}: applying resumes when writes are allowed", h.as_str()))
    });
    held.or_else(|| cluster::waiting(db, stream))
}

/// How many streams this server follows, for INFO.
pub fn followed_streams() -> usize {
    with_pump(|p| p.followed.values().map(FxHashSet::len).sum())
}
