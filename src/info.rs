//! What `INFO listingstats` shows: the counters of `stats`, the index's
//! size, and whether dedup state is safe from eviction.

use crate::{commands, eviction, index_feed, stats};

pub fn fields() -> Vec<(&'static str, u64)> {
    let (entries, bytes, building) = index_feed::size();
    let mut all: Vec<(&'static str, u64)> = stats::all().collect();
    all.extend([
        ("index_entries", entries as u64),
        ("index_bytes", bytes as u64),
        ("index_building", u64::from(building)),
        (
            "dedup_safe_under_eviction",
            u64::from(eviction::dedup_safe()),
        ),
        (
            "followed_streams",
            commands::follow::followed_streams() as u64,
        ),
    ]);
    all
}
