//! Every time budget in one place: how long a piece of work may hold the
//! server before it yields to other clients, and how much a step does
//! between two looks at the clock.
//!
//! Long work runs in slices from one queue on a module timer
//! (`redis::slices`); a pass of that timer runs slices in turn until it has
//! used [`PASS_BUDGET`]. A client's command read in a pass is answered
//! after that pass's timers, so it may wait for the rest of one pass and
//! the whole next one. The goal the benchmarks check (`scripts/bench.sh
//! bigday`, `star`, `follow_cluster`) is that no client ever waits more
//! than 10 ms.

use std::time::Duration;

/// How long one pass of the slice queue may run, all works together (the
/// first slice of a pass runs whole even when longer).
pub const PASS_BUDGET: Duration = Duration::from_millis(4);

/// How often work that waits (for writes to be allowed again after a
/// pause or a load, or for its turn under `max-query-memory`) is looked
/// at. Writes resume within this of a pause's end.
pub const WAIT_POLL: Duration = Duration::from_millis(10);

/// One slice of a QUERY or TOP that continues after its command.
pub const QUERY_SLICE: Duration = Duration::from_millis(2);

/// One slice of a cluster INGEST part (a followed stream's or a client's
/// batch, applied on the master that owns its listings): most parts end
/// in one slice, since each further slice costs the whole batch a timer
/// hop of a millisecond or more. A chunk that would end past it waits for
/// the next slice.
pub const PART_INGEST_SLICE: Duration = Duration::from_millis(3);

/// How long a QUERY or TOP reads inside its command before it continues in
/// slices with its client blocked: cached cells cost ~0.1 µs, so most
/// queries end here, with no timer round trip; a cold one reads ~2,000
/// hashes first.
pub const QUERY_AT_ONCE: Duration = Duration::from_millis(3);

/// Answers of at most this many rows are written inside the command;
/// longer ones in slices.
pub const QUERY_RENDER_AT_ONCE: usize = 4096;

/// Cells a `*` query's planning copies out of the index, and cells its
/// ordering moves, per look at the clock (about 1 ms).
pub const QUERY_PLAN_STEP: usize = 2048;

/// Groups TOP ranks per look at the clock.
pub const TOP_RANK_STEP: usize = 4096;

/// Groups an answer writes per look at the clock.
pub const RENDER_STEP: usize = 128;

/// Cells a query serves from the cache per borrow of the index (and per
/// look at the clock).
pub const CACHE_RUN: usize = 256;

/// One slice of following streams (`LISTINGSTATS.FOLLOW`).
pub const FOLLOW_SLICE: Duration = Duration::from_millis(2);

/// Stream entries FOLLOW reads per step; a slice takes as many steps as fit.
pub const FOLLOW_BATCH: usize = 100;

/// Stream entries FOLLOW takes per batch on a cluster: each batch waits
/// for the other masters' parts (a round trip over the bus), so batches
/// are larger; its parts are applied in one step on each master.
pub const FOLLOW_CLUSTER_BATCH: usize = 500;

/// Day hashes the cache warm-up takes per look at the index.
pub const WARM_BATCH: usize = 64;

/// One slice of a walk of the whole database (`RETAIN`, `MIGRATE`).
pub const SWEEP_SLICE: Duration = Duration::from_millis(2);

/// One slice of the index rebuild: half a query's, since the timer pass
/// that finishes a rebuild also runs the planning of the queries that
/// waited for it.
pub const REBUILD_SLICE: Duration = Duration::from_millis(1);

/// One slice of the cache warm-up: it is best effort, behind everything.
pub const WARM_SLICE: Duration = Duration::from_millis(1);

/// Groups of other nodes' parts a cluster-wide answer adds per look at the
/// clock (the merge runs in slices of [`QUERY_SLICE`]).
pub const MERGE_STEP: usize = 1024;
