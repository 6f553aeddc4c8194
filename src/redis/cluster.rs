//! Redis Cluster: whether the server runs as a cluster node, and which
//! slots it serves (`CLUSTER NODES`, read through `RedisModule_Call`).
//!
//! The reading is cached. Slots start or stop moving only through
//! `CLUSTER SETSLOT` (and friends) sent to this node, so a command filter
//! drops the cache whenever a `CLUSTER` command arrives. Ownership can also
//! change through the cluster bus (a failover, another node's `SETSLOT`):
//! commands that write computed keys therefore ask for a fresh reading
//! ([`view`] with `fresh`), and any other reading older than a second is
//! refreshed.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis_module::{raw, Context};

use super::context::reply_text;
use super::filter;
use listingstats_core::cluster::{key_slot, ClusterView, Route};
use listingstats_core::{Error, Result};

static CLUSTER: AtomicBool = AtomicBool::new(false);
const MAX_AGE: Duration = Duration::from_secs(1);

/// Whether the server runs with `cluster-enabled yes` (read once at load).
pub fn enabled() -> bool {
    CLUSTER.load(Ordering::Relaxed)
}

/// A number that changes whenever a `CLUSTER` command reached this node.
pub fn changes() -> u64 {
    filter::cluster_changes()
}

/// Reads the cluster flag (OnLoad, before settings), and on a cluster
/// installs the command filter that notices slot changes (`filter.rs`).
pub fn init(ctx: &Context) -> bool {
    // SAFETY: live context.
    let flags = unsafe { api!(RedisModule_GetContextFlags)(ctx.ctx) as u32 };
    let on = flags & raw::REDISMODULE_CTX_FLAGS_CLUSTER != 0;
    CLUSTER.store(on, Ordering::Relaxed);
    if on {
        // Only a cluster node has slots to watch.
        filter::init(ctx);
    }
    on
}

struct Cached {
    view: Rc<ClusterView>,
    at: Instant,
    changes: u64,
}

resident! {
    static CACHE: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// This node's slots; `fresh` reads `CLUSTER NODES` now, otherwise a
/// reading is reused while no `CLUSTER` command came and it is under a
/// second old. An error when the server does not answer (not a cluster).
pub fn view(ctx: &Context, fresh: bool) -> Result<Rc<ClusterView>> {
    let changes = changes();
    if !fresh {
        let hit = CACHE.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|c| c.changes == changes && c.at.elapsed() < MAX_AGE)
                .map(|c| Rc::clone(&c.view))
        });
        if let Some(view) = hit {
            return Ok(view);
        }
    }
    let view = ctx
        .call("CLUSTER", &["NODES"])
        .ok()
        .as_ref()
        .and_then(reply_text)
        .and_then(|text| ClusterView::parse(&text))
        .map(Rc::new)
        .ok_or_else(|| Error::Cluster("CLUSTERDOWN cannot read CLUSTER NODES".into()))?;
    CACHE.with(|c| {
        *c.borrow_mut() = Some(Cached {
            view: Rc::clone(&view),
            at: Instant::now(),
            changes,
        })
    });
    Ok(view)
}

/// On a cluster, the slot reading for a command that writes or reads
/// computed keys; `None` on a single node.
pub fn view_if_enabled(ctx: &Context, fresh: bool) -> Result<Option<Rc<ClusterView>>> {
    if enabled() {
        view(ctx, fresh).map(Some)
    } else {
        Ok(None)
    }
}

/// For INCR and GET, which the server routes by the listing (a `NOT_KEY`
/// key spec): refuses a listing whose slot is being resharded here
/// (`TRYAGAIN`: its day hashes are split between two nodes, and the server
/// sends every such command to the importing node with `ASK`, since no key
/// is named after the listing). The cached reading suffices for the common
/// case; anything but "served here" is read again before refusing.
pub fn check_listing(ctx: &Context, listing: &[u8]) -> Result<()> {
    if !enabled() {
        return Ok(());
    }
    if view(ctx, false)?.route(key_slot(listing)) == Route::Here {
        return Ok(());
    }
    view(ctx, true)?.check_listing(listing)
}

/// The first slot marked as moving on this node whose keys may be split
/// between this node and another: one it owns (being migrated out), or one
/// it does not own but holds keys of (being imported). A slot merely marked
/// importing, with no key here yet, splits nothing here; Valkey 8+ can
/// also leave such a mark behind on a replica that missed the end of a
/// migration (valkey-io/valkey#998), which must not stall `*` forever.
pub fn split_slot(ctx: &Context, view: &ClusterView) -> Option<u16> {
    view.moving()
        .into_iter()
        .find(|&(slot, owned)| owned || keys_in_slot(ctx, slot) > 0)
        .map(|(slot, _)| slot)
}

/// `CLUSTER COUNTKEYSINSLOT slot` (O(1) on Redis 7+ and Valkey).
fn keys_in_slot(ctx: &Context, slot: u16) -> i64 {
    match ctx.call("CLUSTER", &["COUNTKEYSINSLOT", &slot.to_string()]) {
        Ok(redis_module::RedisValue::Integer(n)) => n,
        // Unknown: assume keys, so nothing is answered from a split slot.
        _ => 1,
    }
}
