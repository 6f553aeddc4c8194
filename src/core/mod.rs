//! The pure core: no FFI, no Redis. Everything here is unit-tested with
//! `cargo test` and no server.

pub mod date;
pub mod dedup;
pub mod error;
pub mod incr;
pub mod index;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod number;
pub mod query;
pub mod settings;
pub mod write;

pub use error::{Error, Result};
