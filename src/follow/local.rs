//! A batch of a followed stream applied on one node: the entries' events
//! as one INGEST, then the new position, in the same slice.

use redis_module::Context;

use super::{
    count, forget, parse_entries, plain, reject, reject_entries, rejected_entries, state_of,
    Progress,
};
use crate::budget::FOLLOW_BATCH;
use crate::dedup_upkeep;
use crate::redis::context::now_ms;
use crate::redis::store::RedisStore;
use crate::redis::stream::{self, Read};
use crate::stats;
use listingstats_core::follow::{detect_loss, entry_event, FollowState, StreamId};
use listingstats_core::ingest;
use listingstats_core::settings::Settings;

/// Reads `stream`'s next entries from its position and what they mean
/// for its state: `None` when there is nothing to do (caught up,
/// unfollowed, or the stream is gone: then it is forgotten).
pub(super) fn next_entries(
    ctx: &Context,
    settings: &Settings,
    db: i32,
    stream: &[u8],
    batch: usize,
) -> Option<(FollowState, Vec<stream::Entry>)> {
    let Ok(found) = state_of(ctx, settings, stream) else {
        return None;
    };
    let Some(mut state) = found else {
        forget(db, stream);
        return None; // Unfollowed meanwhile.
    };
    let position = state.position();
    let entries = match stream::read_after(ctx, stream, position, batch) {
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
            if let Ok(mut store) = RedisStore::for_user(ctx, &settings.keys, None) {
                let _ = store.hash_del(&super::position_key(settings, stream), stream);
            }
            forget(db, stream);
            return None;
        }
    };
    if entries.is_empty() {
        return None;
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
    Some((state, entries))
}

/// Moves `state` past `entries` and stores it (in the caller's slice,
/// with the counters it covers).
pub(super) fn store_position(
    store: &mut RedisStore<'_>,
    settings: &Settings,
    stream: &[u8],
    state: &mut FollowState,
    entries: usize,
    last: StreamId,
) {
    state.last = last.to_string();
    state.read += entries as u64;
    stats::FOLLOWED_ENTRIES.add(entries as u64);
    let _ = store.hash_set(
        &super::position_key(settings, stream),
        stream,
        state.to_stored().as_bytes(),
    );
}

/// Applies up to [`FOLLOW_BATCH`] entries of `stream` and stores the new
/// position.
pub(super) fn apply_batch(ctx: &Context, settings: &Settings, db: i32, stream: &[u8]) -> Progress {
    let Some((mut state, entries)) = next_entries(ctx, settings, db, stream, FOLLOW_BATCH) else {
        return Progress::Idle;
    };
    let Ok(mut store) = RedisStore::for_user(ctx, &settings.keys, None) else {
        return Progress::Idle;
    };
    let now = now_ms();
    apply_entries(&mut store, settings, &mut state, &entries, now);
    dedup_upkeep::after_write(&mut store);
    let last = entries.last().map(|e| e.id).unwrap_or_default();
    store_position(
        &mut store,
        settings,
        stream,
        &mut state,
        entries.len(),
        last,
    );
    if entries.len() == FOLLOW_BATCH {
        Progress::More
    } else {
        Progress::Idle
    }
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
    let parsed = parse_entries(entries, settings);
    let mut rejected = parsed.rejected;
    match ingest::run(store, parsed.parsed, false, settings, now, None) {
        Ok(report) => {
            count(state, &report);
            rejected_entries(&report, &parsed.owner, &mut rejected);
        }
        Err(_) => {
            for entry in entries {
                apply_entry(store, settings, state, entry, now);
            }
            return;
        }
    }
    let ids: Vec<StreamId> = entries.iter().map(|e| e.id).collect();
    reject_entries(state, &ids, rejected);
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
