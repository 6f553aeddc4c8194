//! The per-day index of listings: which listings have a day hash on a day.
//!
//! A `*` query needs the listings present in its range. Scanning the whole
//! keyspace for them costs time proportional to every key in the database;
//! the index answers in time proportional to the answer. It lives in module
//! memory (not in Redis keys), fed by keyspace notifications, so it sees
//! every writer — this module, plain HINCRBY from other tools, keys loaded
//! from an RDB — and needs no persistence or replication of its own: each
//! server, replicas included, builds it from what it loads and what it
//! executes.
//!
//! It may hold entries whose key was since deleted or changed type (a
//! query reads each key and skips it then); it never misses a day hash that
//! a notification announced. Listing ids are interned to `u32`, so an entry
//! costs 4 bytes.
//!
//! It is also the query cache: beside each day's sorted listing numbers it
//! keeps, aligned with them, the values of the *columns* (the counters and
//! patterns the registered metrics read), 8 bytes each, so a query adds
//! numbers from memory instead of opening a hash per cell. The hashes stay
//! the data of record. A row is either exact or [`UNKNOWN`]: every write a
//! notification announces marks its row unknown (the next query re-reads
//! the hash and fills the row), the module's own counter writes set the
//! values they wrote ([`Index::written`]), and a day whose earliest key
//! expiry has passed is re-read whole (a hash past its expiry reads as
//! absent before Redis deletes it).
//!
//! One file a concern: `interner` (listing numbers), `day` (a database's
//! days), `index` (every database), `cache` (the rows kept beside the
//! index), `planner` (a `*` query's cells, in steps), `names`.

mod cache;
mod columns;
mod day;
mod index;
mod interner;
mod names;
mod planner;
mod rows;
#[cfg(test)]
mod tests;

pub use day::*;
pub use index::*;
pub use interner::*;
pub use names::*;
pub use planner::*;
pub use rows::UNKNOWN;
