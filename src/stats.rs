//! Counters for `INFO listingstats`.
//!
//! Relaxed atomics, so any code may count without a context or a lock:
//! exact totals, no order. A leaf: it imports nothing of the module.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct Stat {
    name: &'static str,
    value: AtomicU64,
}

impl Stat {
    const fn new(name: &'static str) -> Self {
        Stat {
            name,
            value: AtomicU64::new(0),
        }
    }

    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// Keeps the largest value seen.
    pub fn max(&self, n: u64) {
        self.value.fetch_max(n, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        self.value.store(0, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

pub static CALLS: Stat = Stat::new("calls");
pub static ERRORS: Stat = Stat::new("errors");
pub static INCREMENTS: Stat = Stat::new("increments_applied");
pub static EVENTS: Stat = Stat::new("events_applied");
pub static DUPLICATES: Stat = Stat::new("duplicates_skipped");
pub static REJECTED: Stat = Stat::new("events_rejected");
pub static KEYS_EXAMINED: Stat = Stat::new("keys_examined");
pub static SCANS: Stat = Stat::new("scans");
pub static INDEX_REBUILDS: Stat = Stat::new("index_rebuilds");
pub static SLICED_QUERIES: Stat = Stat::new("sliced_queries");
pub static SLICES: Stat = Stat::new("slices");
pub static FOLLOWED_ENTRIES: Stat = Stat::new("followed_entries");
pub static CACHE_HITS: Stat = Stat::new("cache_hits");
pub static CACHE_MISSES: Stat = Stat::new("cache_misses");
pub static CLUSTER_QUERIES: Stat = Stat::new("cluster_queries");
pub static CLUSTER_PARTS: Stat = Stat::new("cluster_parts_served");
pub static CLUSTER_RETRIES: Stat = Stat::new("cluster_retries");
pub static CLUSTER_TIMEOUTS: Stat = Stat::new("cluster_timeouts");
pub static CLUSTER_WAIT_US: Stat = Stat::new("cluster_wait_usec");
/// The longest slice of background work (queries, FOLLOW, a cluster
/// part, index upkeep): how long the module held the event loop at once.
/// `CONFIG RESETSTAT` does not reset it.
pub static LONGEST_SLICE_US: Stat = Stat::new("longest_slice_usec");
/// The most CPU time one such slice used: above it, `longest_slice_usec`
/// is time the server waited for a core (a busy machine), not module work.
pub static LONGEST_SLICE_CPU_US: Stat = Stat::new("longest_slice_cpu_usec");
/// With `listingstats.watch-event-loop yes`: the longest pass of the
/// server's event loop (module work or not), wall time.
pub static LONGEST_PASS_US: Stat = Stat::new("longest_loop_pass_usec");
/// ... and the most CPU one pass used.
pub static LONGEST_PASS_CPU_US: Stat = Stat::new("longest_loop_pass_cpu_usec");

/// Days a `*` query by date or in total took from the days' totals
/// instead of their day hashes.
pub static TOTALS_DAYS: Stat = Stat::new("totals_days");

/// QUERY and TOP calls answered by an identical computation (under way
/// or recent enough) instead of their own.
pub static SHARED_ANSWERS: Stat = Stat::new("shared_answers");

/// Slices of background work that did not run because this node could
/// not write then (paused, a replica, loading): see `redis::slices`.
pub static WRITE_HOLDS: Stat = Stat::new("write_holds");

static ALL: [&Stat; 26] = [
    &CALLS,
    &ERRORS,
    &INCREMENTS,
    &EVENTS,
    &DUPLICATES,
    &REJECTED,
    &KEYS_EXAMINED,
    &SCANS,
    &INDEX_REBUILDS,
    &SLICED_QUERIES,
    &SLICES,
    &FOLLOWED_ENTRIES,
    &CACHE_HITS,
    &CACHE_MISSES,
    &CLUSTER_QUERIES,
    &CLUSTER_PARTS,
    &CLUSTER_RETRIES,
    &CLUSTER_TIMEOUTS,
    &CLUSTER_WAIT_US,
    &LONGEST_SLICE_US,
    &LONGEST_SLICE_CPU_US,
    &LONGEST_PASS_US,
    &LONGEST_PASS_CPU_US,
    &WRITE_HOLDS,
    &TOTALS_DAYS,
    &SHARED_ANSWERS,
];

/// Every counter: `(name, value)`, for INFO.
pub fn all() -> impl Iterator<Item = (&'static str, u64)> {
    ALL.iter().map(|s| (s.name, s.get()))
}
