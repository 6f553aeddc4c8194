//! listingstats: per-day, per-listing event counters in plain Redis hashes,
//! and click-through-rate queries over them, as a Redis module.
//!
//! * `listingstats_core` (crates/listingstats-core): every rule, pure Rust,
//!   no FFI.
//! * `redis/`: the one layer that calls the module API (every `unsafe`).
//! * `commands/`: one file per command: parse with the core, act through
//!   `redis/`, reply.
//! * `index_feed.rs` keeps the `*` index current; `config.rs` holds the
//!   settings; `eviction.rs` watches the eviction policy; `stats.rs` and
//!   `info.rs` are INFO.

#[macro_use]
mod redis;

mod alloc;
mod budget;
mod commands;
mod config;
mod engine;
mod eviction;
mod index_feed;
mod info;
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
    if let Err(reason) = config::init(ctx, args).and_then(|()| index_feed::init(ctx)) {
        ctx.log_warning(&format!("listingstats: refusing to load: {reason}"));
        return Status::Err;
    }
    // Another key scheme: the index names other keys. Free it now; the next
    // query that needs it rebuilds it.
    config::on_key_scheme_change(index_feed::invalidate);
    // What the cache warm-up caches: the registered metrics' counters.
    index_feed::warm::registry_from(|ctx| {
        commands::metric::current_registry(ctx, &config::current().keys).ok()
    });
    eviction::init(ctx);
    redis::info::register(ctx, info::fields);
    if commands::register_all(ctx) == Status::Err {
        return Status::Err;
    }
    match commands::follow::init(ctx) {
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
