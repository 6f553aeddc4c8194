//! The pure core of listingstats: no FFI, no Redis, its own crate so the
//! compiler keeps it that way. Everything here is unit-tested with
//! `cargo test` and no server.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod date;
pub mod day_index;
pub mod dedup;
pub mod error;
pub mod fanout;
pub mod follow;
pub mod follow_cluster;
pub mod hours;
pub mod incr;
pub mod ingest;
pub mod ingest_split;
pub mod keys;
pub mod metrics;
pub mod migrate;
pub mod number;
pub mod query;
pub mod registry_copy;
pub mod settings;
pub mod token;
pub mod write;

pub use error::{Error, Result};
