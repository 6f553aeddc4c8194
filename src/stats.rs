//! Counters for `INFO listingstats`.
//!
//! Commands run on Redis's main thread, but background work (issue: scans)
//! may touch these too, so they are relaxed atomics: exact totals, no order.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::raw;

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

static ALL: [&Stat; 11] = [
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
];

/// The module's INFO callback: one section named `listingstats`, whose
/// fields Redis prefixes with `listingstats_`.
pub extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    // SAFETY: Redis calls this with a valid info context; the API pointers
    // exist on every server version we load on (Redis 6.0+).
    unsafe {
        let Some(add_section) = raw::RedisModule_InfoAddSection else {
            return;
        };
        let Some(add_field) = raw::RedisModule_InfoAddFieldULongLong else {
            return;
        };
        if add_section(ctx, std::ptr::null_mut()) != raw::REDISMODULE_OK as c_int {
            return;
        }
        for stat in ALL {
            let mut name = stat.name.as_bytes().to_vec();
            name.push(0);
            add_field(ctx, name.as_ptr().cast(), stat.get());
        }
        let (entries, bytes, building) = crate::index::size();
        add_field(ctx, c"index_entries".as_ptr(), entries as u64);
        add_field(ctx, c"index_bytes".as_ptr(), bytes as u64);
        add_field(ctx, c"index_building".as_ptr(), u64::from(building));
        add_field(
            ctx,
            c"dedup_safe_under_eviction".as_ptr(),
            u64::from(crate::eviction::dedup_safe()),
        );
    }
}
