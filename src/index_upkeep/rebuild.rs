//! Rebuilding the index by an in-process scan of every database, in
//! slices of [`REBUILD_SLICE`].

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use redis_module::Context;

use super::{invalidate, warm, with_state, Rebuild};
use crate::budget::REBUILD_SLICE;
use crate::redis::context::{db_size, select_db, selected_db};
use crate::redis::scan::Cursor;
use crate::redis::slices::{self, Sliced, Step};
use crate::redis::{events, slices::run_now};
use crate::stats;
use listingstats_core::day_index::Index;
use listingstats_core::keys::KeyScheme;

/// Completes the rebuild under way at once (for callers that cannot wait).
/// Its pending slice then finds the work done and ends.
pub fn finish_rebuild(ctx: &Context) {
    let epoch = with_state(|st| st.rebuild.is_some().then_some(st.epoch));
    if let Some(epoch) = epoch {
        let mut work = RebuildWork::new(epoch);
        run_now(ctx, &mut work);
    }
}

/// Starts rebuilding for `scheme`, ending any other rebuild.
pub(super) fn start_rebuild(ctx: &Context, scheme: KeyScheme) {
    let epoch = with_state(|st| {
        st.built_for = None;
        st.index.clear(None);
        st.epoch += 1;
        st.rebuild = Some(Rebuild {
            scheme,
            partial: Index::default(),
        });
        st.epoch
    });
    slices::start(ctx, RebuildWork::new(epoch));
}

/// The scan of one rebuild: which database, where in it.
struct RebuildWork {
    epoch: u64,
    db: i32,
    cursor: Cursor,
    /// The database whose keys were last reserved room for.
    reserved: i32,
}

impl RebuildWork {
    fn new(epoch: u64) -> RebuildWork {
        RebuildWork {
            epoch,
            db: 0,
            cursor: Cursor::new(),
            reserved: -1,
        }
    }
}

impl Sliced for RebuildWork {
    fn slice_len(&self) -> Duration {
        REBUILD_SLICE
    }

    fn what(&self) -> &'static str {
        "an index rebuild"
    }

    fn failed(&mut self, _ctx: &Context) {
        // The index stays stale; the next query that needs it starts over.
        invalidate();
    }

    fn run(&mut self, ctx: &Context, deadline: Instant) -> Step {
        let Some(scheme) = with_state(|st| {
            (st.epoch == self.epoch)
                .then(|| st.rebuild.as_ref().map(|r| r.scheme.clone()))
                .flatten()
        }) else {
            return Step::Done; // Replaced, completed, or invalidated.
        };
        let original = selected_db(ctx);
        let mut calls = 0u32;
        let mut found: Vec<(i32, NaiveDate, Vec<u8>)> = Vec::new();
        let finished = loop {
            if !select_db(ctx, self.db) {
                break true; // Past the last database.
            }
            let db = self.db;
            if self.reserved != db {
                self.reserved = db;
                // Room for this database's day hashes at once (an upper
                // bound: its keys).
                let keys = usize::try_from(db_size(ctx)).unwrap_or(0);
                with_state(|st| {
                    if let Some(rebuild) = st.rebuild.as_mut() {
                        rebuild.partial.reserve(keys.min(1 << 24));
                    }
                });
            }
            // A scan writes nothing, so no notification borrows the state
            // meanwhile; findings are added after the batch.
            let more = self.cursor.scan_batch(ctx, |k| {
                if k.is_hash() {
                    if let Some((day, listing)) = scheme.parse_day_key(k.name) {
                        found.push((db, day, listing.to_vec()));
                    }
                }
            });
            if !more {
                self.db += 1;
                self.cursor = Cursor::new();
            }
            calls += 1;
            if calls.is_multiple_of(64) && Instant::now() >= deadline {
                break false;
            }
        };
        select_db(ctx, original);
        if !found.is_empty() {
            events::watch_overwrites(ctx);
        }
        let step = with_state(|st| {
            let Some(rebuild) = st.rebuild.as_mut() else {
                return Step::Done;
            };
            for (db, day, listing) in &found {
                rebuild.partial.add(*db, *day, listing);
            }
            if !finished {
                return Step::More;
            }
            if let Some(mut done) = st.rebuild.take() {
                stats::INDEX_REBUILDS.add(1);
                done.partial.trim();
                st.index = done.partial;
                st.built_for = Some(done.scheme);
            }
            Step::Done
        });
        if step == Step::Done {
            // A new index has an empty cache: fill it ahead of queries.
            warm::start(ctx);
        }
        step
    }
}
