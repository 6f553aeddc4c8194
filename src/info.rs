//! What `INFO listingstats` shows: the counters of `stats`, the index's
//! size, and whether dedup state is safe from eviction.

use crate::{eviction, fanout, index_upkeep, stats};

pub fn fields() -> Vec<(&'static str, u64)> {
    let size = index_upkeep::size();
    let (waiting, transfers) = fanout::under_way();
    let (held, queued) = crate::redis::slices::waiting();
    let (query_bytes, query_line) = crate::engine::inflight::usage();
    let (answers, answer_bytes) = crate::share::cached();
    let mut all: Vec<(&'static str, u64)> = stats::all().collect();
    all.extend([
        ("index_entries", size.entries as u64),
        ("index_bytes", size.bytes as u64),
        ("index_building", u64::from(size.building)),
        ("cache_warming", u64::from(size.warming)),
        ("cache_columns", size.cache_columns as u64),
        ("cache_bytes", size.cache_bytes as u64),
        (
            "dedup_safe_under_eviction",
            u64::from(eviction::dedup_safe()),
        ),
        ("followed_streams", crate::follow::followed_streams() as u64),
        ("cluster_queries_waiting", waiting as u64),
        ("cluster_transfers", transfers as u64),
        ("works_waiting_for_writes", held as u64),
        ("works_waiting_for_memory", queued as u64),
        ("query_memory_reserved", query_bytes),
        ("queries_waiting_for_memory", query_line as u64),
        ("answers_cached", answers as u64),
        ("answer_cache_bytes", answer_bytes as u64),
    ]);
    all
}
