//! Filling the query cache ahead of queries: after the index is rebuilt
//! (module load, restart, full sync, `DEBUG RELOAD`), when the cached
//! counters change (a metric with new terms), and when `cache` is turned
//! back on, a pass reads every indexed day hash whose values are not
//! cached, in slices of about 1 ms, so the server keeps serving. Queries
//! that come first fill what they read themselves; the pass skips it.
//!
//! The pass is best-effort: it pins nothing, so a day hash renumbered or
//! written meanwhile may be passed over (the next query fills it). One pass
//! at a time: starting one ends the one before.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use redis_module::Context;

use super::{fill, set_columns, with_state, CacheUse};
use crate::budget::{WARM_BATCH, WARM_SLICE};
use crate::config;
use crate::metric_registry::current_registry;
use crate::redis::context::{select_db, selected_db};
use crate::redis::reader::Reader;
use crate::redis::slices::{self, Sliced, Step};
use listingstats_core::day_index::Pass;
use listingstats_core::query::FieldPlan;

/// Starts a pass over every indexed day hash, ending any pass under way.
/// Nothing happens while the cache is off or the index is being rebuilt
/// (the rebuild starts a pass when it ends).
pub fn start(ctx: &Context) {
    begin(ctx, false);
}

/// [`start`] for changed metric definitions: a pass only when the cached
/// counters changed (METRIC SET of a metric with known counters, or the
/// notification of a change already followed, changes nothing).
pub fn follow_metrics(ctx: &Context) {
    begin(ctx, true);
}

fn begin(ctx: &Context, only_if_changed: bool) {
    if !config::current().cache {
        return;
    }
    let Ok(registry) = current_registry(ctx, &config::current().keys) else {
        return;
    };
    let Ok(all) = FieldPlan::new(registry) else {
        return;
    };
    let (changed, Some(cache)) = set_columns(all.terms()) else {
        return;
    };
    if only_if_changed && !changed {
        return;
    }
    let Some(epoch) = with_state(|st| {
        st.built_for.as_ref()?;
        st.warm_epoch += 1;
        st.warming = true;
        Some(st.warm_epoch)
    }) else {
        return;
    };
    slices::start(
        ctx,
        Warm {
            epoch,
            row: vec![0; all.width()],
            all,
            cache,
            pass: Pass::default(),
            batch: Vec::new(),
        },
    );
}

/// Ends any pass under way.
pub fn stop() {
    with_state(|st| {
        st.warm_epoch += 1;
        st.warming = false;
    });
}

struct Warm {
    epoch: u64,
    /// Every cached term, and where each goes in a row.
    all: FieldPlan,
    cache: CacheUse,
    row: Vec<i64>,
    pass: Pass,
    /// Day hashes found not cached, to read.
    batch: Vec<(i32, NaiveDate, Vec<u8>)>,
}

impl Warm {
    /// More day hashes not cached into `batch`: `None` when this pass is
    /// no longer wanted (a newer one, the cache off or its counters
    /// changed, the index being rebuilt), `Some(false)` at the end.
    fn find_more(&mut self) -> Option<bool> {
        with_state(|st| {
            let wanted = st.warm_epoch == self.epoch
                && st.built_for.is_some()
                && st.index.columns_version() == self.cache.version;
            if !wanted {
                return None;
            }
            Some(
                st.index
                    .unknown_rows(&mut self.pass, WARM_BATCH, &mut self.batch),
            )
        })
    }

    fn end(&self) -> Step {
        with_state(|st| {
            if st.warm_epoch == self.epoch {
                st.warming = false;
            }
        });
        Step::Done
    }
}

impl Sliced for Warm {
    fn slice_len(&self) -> Duration {
        WARM_SLICE
    }

    fn what(&self) -> &'static str {
        "a cache warm-up"
    }

    fn failed(&mut self, _ctx: &Context) {
        let _ = self.end();
    }

    fn run(&mut self, ctx: &Context, deadline: Instant) -> Step {
        let scheme = config::current().keys.clone();
        let reader = Reader::unchecked(ctx);
        let fields = reader.field_names(&self.all);
        let original = selected_db(ctx);
        let step = loop {
            if self.batch.is_empty() {
                match self.find_more() {
                    None => break self.end(),
                    Some(false) if self.batch.is_empty() => break self.end(),
                    Some(_) => {}
                }
            }
            // Read outside the state: a read can expire a key, which
            // notifies.
            while let Some((db, day, listing)) = self.batch.pop() {
                if !select_db(ctx, db) {
                    continue;
                }
                let key = scheme.day_key(day, &listing);
                // A value that is not an integer stays uncached: the query
                // that reads it reports it.
                if let Ok(Some(expires)) = reader.row(&key, &fields, &mut self.row) {
                    fill(&self.cache, db, day, &listing, &self.row, expires);
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            if Instant::now() >= deadline {
                break Step::More;
            }
        };
        select_db(ctx, original);
        step
    }
}
