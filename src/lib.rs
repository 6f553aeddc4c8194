//! listingstats: per-day, per-listing event counters in plain Redis hashes,
//! and click-through-rate queries over them, as a Redis module.
//!
//! * `listingstats_core` (crates/listingstats-core): every rule, pure Rust,
//!   no FFI, no unsafe.
//! * `redis/`: the one layer that calls the module API (every `unsafe`),
//!   safe wrappers that decide nothing.
//! * `commands/`: one file per command: parse with the core, act, reply.
//! * `engine/`: runs QUERY and TOP from their plan to their reply, in
//!   slices (one state at a time).
//! * `fanout/`: on a cluster, QUERY and TOP for the whole cluster: parts
//!   asked of every master over the cluster bus, merged here.
//! * `index_upkeep/` keeps the `*` index and the query cache current;
//!   `metric_registry.rs` holds the metric definitions; `share.rs` lets
//!   identical queries share one computation; `dedup_upkeep.rs`
//!   the dedup generations; `budget.rs` every time budget; `config.rs` the
//!   settings; `eviction.rs` watches the eviction policy; `stats.rs` and
//!   `info.rs` are INFO.
//!
//! `docs/internals.md` has the whole map.

#[macro_use]
mod redis;

mod alloc;
mod budget;
mod commands;
mod config;
mod dedup_upkeep;
mod engine;
mod eviction;
mod fanout;
mod follow;
mod index_upkeep;
mod info;
mod metric_registry;
mod share;
mod stats;

use redis_module::{redis_module, Context, RedisString, Status};

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    let missing = redis::context::missing_7_0_api();
    if !missing.is_empty() {
        ctx.log_warning(&format!(
            "listingstats: refusing to load: this server lacks the Redis 7.0 module API \
             (missing {}); listingstats needs Redis 7.0+ or Valkey 7.2+",
            missing.join(", ")
        ));
        return Status::Err;
    }
    redis::cluster::init(ctx);
    fanout::init(ctx);
    if let Err(reason) = config::init(ctx, args).and_then(|()| index_upkeep::init(ctx)) {
        ctx.log_warning(&format!("listingstats: refusing to load: {reason}"));
        return Status::Err;
    }
    if let Err(reason) = metric_registry::init(ctx) {
        ctx.log_warning(&format!("listingstats: refusing to load: {reason}"));
        return Status::Err;
    }
    eviction::init(ctx);
    redis::info::register(ctx, info::fields);
    if commands::register_all(ctx) == Status::Err {
        return Status::Err;
    }
    match follow::init(ctx) {
        Ok(()) => Status::Ok,
        Err(reason) => {
            ctx.log_warning(&format!("listingstats: refusing to load: {reason}"));
            Status::Err
        }
    }
}

redis_module! {
    name: "listingstats",
    version: 1,
    allocator: (crate::alloc::ModuleAlloc, crate::alloc::ModuleAlloc),
    data_types: [],
    init: init,
}
