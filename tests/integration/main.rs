//! The integration tests: one binary (one link step), a module per area.
//! Each test starts real servers with the freshly built module (`common`).

mod common;

mod acl;
mod cache;
mod command_table;
mod config;
mod dashboards;
mod eviction;
mod follow;
mod hours;
mod incr;
mod ingest;
mod migrate;
mod overwrite;
mod query;
mod replication;
mod retention;
mod robustness;
mod scale;
