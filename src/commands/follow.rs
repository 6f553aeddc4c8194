//! Following Redis Streams: `LISTINGSTATS.FOLLOW stream [FROM id|0|$]`,
//! `LISTINGSTATS.UNFOLLOW stream`, `LISTINGSTATS.FOLLOWING`.
//!
//! The module applies every entry of a followed stream as an INGEST event
//! (its field `event`), in id order. Each followed stream's position and
//! counts live in the hash `<prefix>listingstats:following` (field: the
//! stream's name), written in the same slice as the counters of the
//! entries it covers: Redis propagates what one timer callback writes as
//! one MULTI/EXEC, so the AOF and replicas get the counters and the new
//! position together or not at all. A replica applies nothing itself: it
//! receives those effects, and a promoted replica continues from the
//! replicated position.
//!
//! The pump runs in slices (`redis::slices`): started by FOLLOW, by an
//! `xadd` on a followed stream (keyspace notifications, no polling), at
//! load, at the end of loading, and when this server becomes a master.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use redis_module::{Context, RedisValue};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::budget::{FOLLOW_BATCH, FOLLOW_SLICE};
use crate::config;
use crate::dedup_upkeep;
use crate::redis::acl::Native;
use crate::redis::cluster;
use crate::redis::command::{Arg, Command, Docs};
use crate::redis::context::{is_replica, now_ms, select_db, selected_db};
use crate::redis::events::{self, class, KeyEvent, ServerEvent};
use crate::redis::reader::Reader;
use crate::redis::reply::Reply;
use crate::redis::slices::{self, Sliced, Step};
use crate::redis::store::RedisStore;
use crate::redis::stream::{self, Read};
use crate::stats;
use listingstats_core::follow::{
    detect_loss, entry_event, parse_follow, FollowState, From, StreamId,
};
use listingstats_core::ingest;
use listingstats_core::settings::Settings;
use listingstats_core::{Error, Result};

#[derive(Default)]
struct Pump {
    /// database -> followed stream names (mirrors the registry hashes).
    followed: FxHashMap<i32, FxHashSet<Vec<u8>>>,
    /// Streams that may have entries to apply.
    dirty: FxHashSet<(i32, Vec<u8>)>,
    running: bool,
}

thread_local! {
    static PUMP: RefCell<Pump> = RefCell::default();
}

fn with_pump<R>(f: impl FnOnce(&mut Pump) -> R) -> R {
    PUMP.with(|p| f(&mut p.borrow_mut()))
}

/// The registry of the selected database: stream -> state.
fn registry(ctx: &Context, settings: &Settings) -> Result<Vec<(Vec<u8>, FollowState)>> {
    let pairs = Reader::unchecked(ctx).hash_all(&settings.keys.following_key())?;
    Ok(pairs
        .into_iter()
        .filter_map(|(stream, state)| FollowState::from_stored(&state).map(|s| (stream, s)))
        .collect())
}

/// Reads every database's registry, marks every followed stream to be
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

/// Stops tracking `stream` of database `db` (unfollowed or gone).
fn forget(db: i32, stream: &[u8]) {
    with_pump(|p| {
        if let Some(s) = p.followed.get_mut(&db) {
            s.remove(stream);
        }
        p.dirty.remove(&(db, stream.to_vec()));
    });
    if followed_streams() == 0 {
        events::close_streams();
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
    let followed = with_pump(|p| {
        let hit = p.followed.get(&e.db).is_some_and(|s| s.contains(e.key));
        if hit {
            p.dirty.insert((e.db, e.key.to_vec()));
        }
        hit
    });
    if followed {
        kick(ctx);
    }
}

fn on_server_event(ctx: &Context, e: &ServerEvent<'_>) {
    match e {
        ServerEvent::Loading { ended: true } | ServerEvent::BecameMaster => reload(ctx),
        ServerEvent::Flush(_) | ServerEvent::SwapDb(..) => reload(ctx),
        _ => {}
    }
}

/// Subscribes and picks up what the registry holds (MODULE LOAD on a
/// server with data).
pub fn init(ctx: &Context) -> std::result::Result<(), String> {
    events::on_keyspace(ctx, class::ALL, on_key_event)?;
    events::on_server_events(ctx, on_server_event);
    reload(ctx);
    Ok(())
}

/// The pump: applies dirty streams' entries until none is left.
struct PumpWork;

impl PumpWork {
    fn step(&mut self, ctx: &Context, deadline: Instant) -> Step {
        if is_replica(ctx) {
            // Replicas receive the effects; they never apply entries.
            with_pump(|p| {
                p.dirty.clear();
                p.running = false;
            });
            return Step::Done;
        }
        let settings = config::current();
        let original = selected_db(ctx);
        loop {
            let Some((db, stream)) = with_pump(|p| p.dirty.iter().next().cloned()) else {
                with_pump(|p| p.running = false);
                select_db(ctx, original);
                return Step::Done;
            };
            select_db(ctx, db);
            let more = apply_batch(ctx, &settings, db, &stream);
            if !more {
                with_pump(|p| p.dirty.remove(&(db, stream)));
            }
            if Instant::now() >= deadline {
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
        self.step(ctx, deadline)
    }

    fn failed(&mut self, _ctx: &Context) {
        with_pump(|p| p.running = false);
    }
}

/// Applies up to [`FOLLOW_BATCH`] entries of `stream` and stores the new
/// position; `true` when more may follow.
fn apply_batch(ctx: &Context, settings: &Settings, db: i32, stream: &[u8]) -> bool {
    let key = settings.keys.following_key();
    let Ok(all) = registry(ctx, settings) else {
        return false;
    };
    let Some(mut state) = all.into_iter().find(|(s, _)| s == stream).map(|(_, s)| s) else {
        forget(db, stream);
        return false; // Unfollowed meanwhile.
    };
    let Ok(mut store) = RedisStore::for_user(ctx, &settings.keys, None) else {
        return false;
    };
    let position = state.position();
    let entries = match stream::read_after(ctx, stream, position, FOLLOW_BATCH) {
        Read::Entries(entries) => entries,
        gone => {
            let why = if matches!(gone, Read::Missing) {
                "the key was deleted"
            } else {
                "the key is no longer a stream"
            };
            ctx.log_warning(&format!(
                "listingstats: stopped following '{}': {why}",
                String::from_utf8_lossy(stream)
            ));
            let _ = store.hash_del(&key, stream);
            forget(db, stream);
            return false;
        }
    };
    if entries.is_empty() {
        return false;
    }
    if let Some(info) = stream::info(ctx, stream) {
        let (lost, read) = detect_loss(position, state.read, &info);
        state.read = read;
        if lost && !state.trimmed {
            state.trimmed = true;
            ctx.log_warning(&format!(
                "listingstats: entries of '{}' after {position} were deleted before they were applied",
                String::from_utf8_lossy(stream)
            ));
        }
    }
    let now = now_ms();
    let full = entries.len() == FOLLOW_BATCH;
    apply_entries(&mut store, settings, &mut state, &entries, now);
    dedup_upkeep::after_write(&mut store);
    if let Some(last) = entries.last() {
        state.last = last.id.to_string();
    }
    state.read += entries.len() as u64;
    stats::FOLLOWED_ENTRIES.add(entries.len() as u64);
    // The position, in the same unit as the counters above.
    let _ = store.hash_set(&key, stream, state.to_stored().as_bytes());
    full
}

/// Applies a batch of entries as one INGEST (one dedup pass, one write
/// phase), each event remembering its entry so rejections are per entry.
/// Should the batch fail as a whole (a day hash of another type, an
/// overflow), nothing of it was written: the entries are then applied one
/// by one, so one bad entry never blocks the stream.
fn apply_entries(
    store: &mut RedisStore<'_>,
    settings: &Settings,
    state: &mut FollowState,
    entries: &[stream::Entry],
    now: i64,
) {
    let mut parsed: ingest::Parsed = Vec::with_capacity(entries.len());
    let mut owner: Vec<usize> = Vec::with_capacity(entries.len());
    let mut rejected: Vec<(usize, String)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let payload = match entry_event(&entry.fields) {
            Ok(p) => p,
            Err(why) => {
                rejected.push((i, why.to_string()));
                continue;
            }
        };
        match ingest::parse_all(&[payload], settings) {
            Ok(events) => {
                owner.extend(std::iter::repeat_n(i, events.len()));
                parsed.extend(events);
            }
            Err(e) => rejected.push((i, plain(&e))),
        }
    }
    match ingest::run(store, parsed, false, settings, now, None) {
        Ok(report) => {
            count(state, &report);
            for e in &report.errors {
                if let Some((index, why)) = e.split_once(": ") {
                    if let Some(&i) = index.parse::<usize>().ok().and_then(|n| owner.get(n)) {
                        rejected.push((i, why.to_string()));
                    }
                }
            }
        }
        Err(_) => {
            for entry in entries {
                apply_entry(store, settings, state, entry, now);
            }
            return;
        }
    }
    // One rejection per entry, in entry order.
    rejected.sort_by_key(|(i, _)| *i);
    rejected.dedup_by_key(|(i, _)| *i);
    for (i, why) in rejected {
        reject(state, entries[i].id, &why);
    }
}

fn plain(e: &Error) -> String {
    let text = e.reply_text();
    text.strip_prefix("ERR ").unwrap_or(&text).to_string()
}

fn count(state: &mut FollowState, report: &ingest::Report) {
    state.applied += report.applied as u64;
    state.duplicates += report.duplicates as u64;
    stats::EVENTS.add(report.applied as u64);
    stats::DUPLICATES.add(report.duplicates as u64);
    stats::INCREMENTS.add(report.increments as u64);
}

fn apply_entry(
    store: &mut RedisStore<'_>,
    settings: &Settings,
    state: &mut FollowState,
    entry: &stream::Entry,
    now: i64,
) {
    let payload = match entry_event(&entry.fields) {
        Ok(p) => p,
        Err(why) => return reject(state, entry.id, why),
    };
    let outcome = ingest::parse_all(&[payload], settings)
        .and_then(|parsed| ingest::run(store, parsed, false, settings, now, None));
    match outcome {
        Ok(report) => {
            count(state, &report);
            if let Some(first) = report.errors.first() {
                let why = first.split_once(": ").map_or(first.as_str(), |(_, w)| w);
                reject(state, entry.id, why);
            }
        }
        Err(e) => reject(state, entry.id, &plain(&e)),
    }
}

fn reject(state: &mut FollowState, id: StreamId, why: &str) {
    stats::REJECTED.add(1);
    state.reject(id, why);
}

pub struct Follow;

impl Command for Follow {
    const NAME: &'static str = "listingstats.follow";
    const FLAGS: &'static str = "write deny-oom";
    const ACL: &'static str = "write stream slow";
    const KEYS: (i32, i32, i32) = (1, 1, 1);
    const DOCS: Docs = Docs {
        summary: "Applies every entry of a stream (its field 'event', as INGEST takes) as it arrives, exactly once; FROM 0 (default) starts at the beginning, $ at the end.",
        complexity: "O(1); the entries are applied in the background, in slices",
        since: "0.1.0",
        arity: -2,
        args: &[
            Arg::string("stream"),
            Arg::string("id").token("FROM").optional(),
        ],
    };

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let (stream, from) = parse_follow(args)?;
        if cluster::enabled() {
            return Err(Error::invalid(
                "FOLLOW is not available on Redis Cluster: a stream lives on one node and its events' listings on all; consume it with the listingstats client (INGEST splits by node)",
            ));
        }
        if is_replica(ctx) {
            return Err(Error::invalid(
                "this server is a replica: FOLLOW on its master",
            ));
        }
        let settings = config::current();
        if !Reader::new(ctx).may(&stream, Native::Xrange) {
            return Err(Error::invalid(format!(
                "NOPERM this user has no permissions to read the stream '{}'",
                stream.escape_ascii()
            )));
        }
        if registry(ctx, &settings)?.iter().any(|(s, _)| *s == stream) {
            return Err(Error::invalid(format!(
                "'{}' is followed already: LISTINGSTATS.UNFOLLOW it first",
                stream.escape_ascii()
            )));
        }
        let start = match stream::read_after(ctx, &stream, StreamId::default(), 0) {
            Read::Missing => {
                return Err(Error::invalid(format!(
                    "no stream '{}': XADD to it first (or XGROUP CREATE ... MKSTREAM)",
                    stream.escape_ascii()
                )))
            }
            Read::NotStream => return Err(Error::WrongType),
            Read::Entries(_) => match from {
                From::After(id) => id,
                From::End => stream::last_id(ctx, &stream).unwrap_or_default(),
            },
        };
        // Entries up to the start count as accounted for (see detect_loss).
        let info = stream::info(ctx, &stream);
        let added = info.map_or(0, |i| i.entries_added);
        let after = match from {
            From::End => 0,
            From::After(id) if id == StreamId::default() => info.map_or(0, |i| i.length),
            // An explicit id: count once what follows it (O(entries after)).
            From::After(_) => stream::count_after(ctx, &stream, start, usize::MAX) as u64,
        };
        let mut state = FollowState::starting_after(start);
        state.read = added.saturating_sub(after);
        let mut store = RedisStore::for_user(ctx, &settings.keys, None)?;
        store.hash_set(
            &settings.keys.following_key(),
            &stream,
            state.to_stored().as_bytes(),
        )?;
        let db = selected_db(ctx);
        with_pump(|p| {
            p.followed.entry(db).or_default().insert(stream.clone());
            p.dirty.insert((db, stream));
        });
        watch_followed(ctx);
        kick(ctx);
        Ok(RedisValue::SimpleStringStatic("OK"))
    }
}

pub struct Unfollow;

impl Command for Unfollow {
    const NAME: &'static str = "listingstats.unfollow";
    const FLAGS: &'static str = "write";
    const ACL: &'static str = "write stream fast";
    const KEYS: (i32, i32, i32) = (1, 1, 1);
    const DOCS: Docs = Docs {
        summary: "Stops following a stream; what was applied stays.",
        complexity: "O(1)",
        since: "0.1.0",
        arity: 2,
        args: &[Arg::string("stream")],
    };

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let [stream] = args else {
            return Err(Error::wrong_arity(Self::NAME));
        };
        let settings = config::current();
        let mut store = RedisStore::for_user(ctx, &settings.keys, None)?;
        if !store.hash_del(&settings.keys.following_key(), stream)? {
            return Err(Error::invalid(format!(
                "'{}' is not followed",
                stream.escape_ascii()
            )));
        }
        let db = selected_db(ctx);
        forget(db, stream);
        Ok(RedisValue::SimpleStringStatic("OK"))
    }
}

pub struct Following;

impl Command for Following {
    const NAME: &'static str = "listingstats.following";
    const FLAGS: &'static str = "readonly";
    const ACL: &'static str = "read stream slow";
    const DOCS: Docs = Docs {
        summary: "Lists each followed stream: last applied id, entries behind, applied, duplicates, rejected, the last rejection's reason, and whether entries were trimmed before being applied.",
        complexity: "O(S): S followed streams",
        since: "0.1.0",
        arity: 1,
        args: &[],
    };

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        if !args.is_empty() {
            return Err(Error::wrong_arity(Self::NAME));
        }
        let settings = config::current();
        let all = registry(ctx, &settings)?;
        let mut out = Reply::of(ctx);
        out.array(all.len());
        for (stream, state) in &all {
            // Entries ever added that are not accounted for yet: O(1), as
            // consumer groups compute their lag.
            let lag =
                stream::info(ctx, stream).map_or(0, |i| i.entries_added.saturating_sub(state.read));
            out.map(8);
            out.bulk(b"stream");
            out.bulk(stream);
            out.bulk(b"last-id");
            out.bulk(state.last.as_bytes());
            out.bulk(b"lag");
            out.int(lag as i64);
            out.bulk(b"applied");
            out.int(state.applied as i64);
            out.bulk(b"duplicates");
            out.int(state.duplicates as i64);
            out.bulk(b"rejected");
            out.int(state.rejected as i64);
            out.bulk(b"last-rejection");
            out.bulk(state.last_reason.as_bytes());
            out.bulk(b"trimmed");
            out.int(i64::from(state.trimmed));
        }
        Ok(RedisValue::NoReply)
    }
}

/// How many streams this server follows, for INFO.
pub fn followed_streams() -> usize {
    with_pump(|p| p.followed.values().map(FxHashSet::len).sum())
}
