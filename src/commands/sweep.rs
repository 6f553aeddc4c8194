//! Commands that walk every key of the caller's database (RETAIN,
//! MIGRATE): in slices of a few milliseconds, the client blocked, so other
//! clients are served meanwhile; at once inside MULTI/EXEC or a script.
//!
//! Each batch of the scan is collected first and acted on after the scan
//! call returns (the keyspace is never changed from inside a scan
//! callback). Each key is acted on atomically: one slice never leaves a key
//! half done. Keys created or renamed during a sweep may be seen or not, as
//! with SCAN.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_module::{Context, RedisValue};

use crate::budget::SWEEP_SLICE;
use crate::config;
use crate::redis::blocked::BlockedReply;
use crate::redis::context::{caller_name, can_block, now_ms, select_db, selected_db, Hold};
use crate::redis::reply::Reply;
use crate::redis::scan::{Cursor, Scanned};
use crate::redis::slices::{self, Sliced, Step};
use crate::redis::store::RedisStore;
use crate::stats;
use listingstats_core::settings::Settings;
use listingstats_core::{Error, Result};

/// What one sweep does.
pub trait Visit: Sized + 'static {
    /// For the log.
    const WHAT: &'static str;
    /// Whether the sweep acts on this key (from its name and type).
    fn wants(&self, key: &Scanned<'_>, settings: &Settings) -> bool;
    /// Acts on one key.
    fn visit(&mut self, store: &mut RedisStore<'_>, key: &[u8], settings: &Settings, now_ms: i64);
    /// The reply, once the whole database was walked.
    fn reply(&self, out: &mut Reply);
}

struct Sweep<V: Visit> {
    visitor: V,
    settings: Arc<Settings>,
    db: i32,
    user: Option<Vec<u8>>,
    cursor: Cursor,
    blocked: Option<BlockedReply>,
}

/// Runs `visitor` over the caller's database: in slices, or at once when
/// the caller cannot be blocked.
pub fn run<V: Visit>(ctx: &Context, visitor: V) -> Result<RedisValue> {
    let mut sweep = Sweep {
        visitor,
        settings: config::current(),
        db: selected_db(ctx),
        user: caller_name(ctx),
        cursor: Cursor::new(),
        blocked: None,
    };
    if can_block(ctx) {
        sweep.blocked = Some(
            BlockedReply::block(ctx)
                .ok_or_else(|| Error::invalid("cannot block the client for a sweep"))?,
        );
        slices::start(ctx, sweep);
        return Ok(RedisValue::NoReply);
    }
    // Inside MULTI/EXEC or a script: the whole database now.
    while sweep.step(ctx, None)? == Step::More {}
    sweep.visitor.reply(&mut Reply::of(ctx));
    Ok(RedisValue::NoReply)
}

impl<V: Visit> Sweep<V> {
    fn step(&mut self, ctx: &Context, deadline: Option<Instant>) -> Result<Step> {
        let original = selected_db(ctx);
        select_db(ctx, self.db);
        let result = self.batches(ctx, deadline);
        select_db(ctx, original);
        result
    }

    fn batches(&mut self, ctx: &Context, deadline: Option<Instant>) -> Result<Step> {
        let mut store = RedisStore::for_user(ctx, &self.settings.keys, self.user.as_deref())?;
        loop {
            let mut wanted: Vec<Vec<u8>> = Vec::new();
            let (visitor, settings) = (&self.visitor, &self.settings);
            let more = self.cursor.scan_batch(ctx, |k| {
                if visitor.wants(&k, settings) {
                    wanted.push(k.name.to_vec());
                }
            });
            let now = now_ms();
            for key in &wanted {
                self.visitor.visit(&mut store, key, &self.settings, now);
            }
            if !more {
                return Ok(Step::Done);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Step::More);
            }
        }
    }
}

impl<V: Visit> Sliced for Sweep<V> {
    fn slice_len(&self) -> Duration {
        SWEEP_SLICE
    }

    fn what(&self) -> &'static str {
        V::WHAT
    }

    fn run(&mut self, ctx: &Context, deadline: Instant) -> Step {
        if self.blocked.as_ref().is_some_and(BlockedReply::client_gone) {
            return Step::Done;
        }
        stats::SLICES.add(1);
        let measuring = self.blocked.as_ref().map(BlockedReply::measure);
        let step = self.step(ctx, Some(deadline));
        drop(measuring);
        let Some(blocked) = self.blocked.as_mut() else {
            return Step::Done;
        };
        match step {
            Ok(Step::More | Step::Wait) => Step::More,
            Ok(Step::Done) => {
                self.visitor.reply(&mut blocked.reply());
                Step::Done
            }
            Err(e) => {
                stats::ERRORS.add(1);
                blocked.reply().error(&e.reply_text());
                Step::Done
            }
        }
    }

    fn writes(&self) -> bool {
        true
    }

    /// Waits while writes are paused or the server loads; on a node that
    /// became a replica meanwhile (Redis usually disconnects the client
    /// then), ends with what was done so far.
    fn held(&mut self, _ctx: &Context, why: Hold) -> Step {
        let Some(blocked) = self.blocked.as_mut() else {
            return Step::Done;
        };
        if blocked.client_gone() {
            return Step::Done;
        }
        if why == Hold::Replica {
            stats::ERRORS.add(1);
            blocked.reply().error(
                "READONLY this node became a replica during the walk; what was done so far stays",
            );
            return Step::Done;
        }
        Step::Wait
    }

    fn failed(&mut self, _ctx: &Context) {
        stats::ERRORS.add(1);
        if let Some(blocked) = self.blocked.as_mut() {
            blocked
                .reply()
                .error("ERR listingstats internal error, see the server log");
        }
    }
}
