//! Whether the server's eviction policy can take dedup state.
//!
//! Dedup shards carry no TTL (see `listingstats_core::dedup`), so `volatile-*` policies
//! never evict them; `allkeys-*` policies may evict any key, shards and
//! counters included, and a redelivered event whose id was evicted counts
//! twice. The policy is read at load and again whenever `CONFIG SET`
//! changes it; under `allkeys-*` the log says so once per change, and
//! `INFO listingstats` shows `dedup_safe_under_eviction:0`.

use std::sync::atomic::{AtomicBool, Ordering};

use redis_module::{Context, RedisValue};

use crate::redis::context::reply_text;
use crate::redis::events::{self, ServerEvent};
use listingstats_core::dedup::safe_under_policy;

static SAFE: AtomicBool = AtomicBool::new(true);

/// Whether dedup state is safe from this server's eviction policy.
pub fn dedup_safe() -> bool {
    SAFE.load(Ordering::Relaxed)
}

/// Reads the policy now, and follows `CONFIG SET maxmemory-policy`.
pub fn init(ctx: &Context) {
    refresh(ctx);
    events::on_server_events(ctx, on_server_event);
}

fn on_server_event(ctx: &Context, e: &ServerEvent<'_>) {
    if let ServerEvent::ConfigChanged(names) = e {
        if names.iter().any(|n| *n == b"maxmemory-policy") {
            refresh(ctx);
        }
    }
}
fn refresh(ctx: &Context) {
    let policy = match ctx.call("CONFIG", &["GET", "maxmemory-policy"]) {
        Ok(RedisValue::Array(pair)) => pair.get(1).and_then(reply_text),
        _ => None,
    };
    let Some(policy) = policy else {
        return;
    };
    let safe = safe_under_policy(&policy);
    SAFE.store(safe, Ordering::Relaxed);
    if !safe {
        ctx.log_warning(&format!(
            "listingstats: maxmemory-policy {policy} may evict any key, dedup state and \
             counters included: a redelivered event whose id was evicted counts twice. \
             Use noeviction or a volatile-* policy (dedup state has no TTL)."
        ));
    }
}
