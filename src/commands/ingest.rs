//! `LISTINGSTATS.INGEST [STRICT] event-json [event-json ...]`

use redis_module::{Context, RedisValue};

use crate::dedup_upkeep;
use crate::fanout::{self, ingest::write_report};
use crate::redis::cluster;
use crate::redis::command::{Arg, Command, Docs};
use crate::redis::context::now_ms;
use crate::redis::reply::Reply;
use crate::redis::store::RedisStore;
use crate::{config, stats};
use listingstats_core::{ingest, Result};

pub struct Ingest;

impl Command for Ingest {
    const NAME: &'static str = "listingstats.ingest";
    const FLAGS: &'static str = "write deny-oom";
    const ACL: &'static str = "write hash slow";
    const DOCS: Docs = Docs {
        summary: "Applies a batch of JSON events (or Kinesis envelopes) with dedup by event id; replies applied, duplicates, rejected and errors.",
        complexity: "O(E + P): E events, P distinct (day, listing, event) counters",
        since: "0.1.0",
        arity: -2,
        args: &[Arg::flag("STRICT"), Arg::string("event-json").multiple()],
    };

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let settings = config::current();
        let (strict, events) = ingest::split_args(args, &settings)?;
        let parsed = ingest::parse_all(events, &settings)?;
        // On a cluster, events with listings on other masters: their parts
        // go there (fanout/ingest.rs).
        if let Some(view) = fanout::ingest::needed(ctx, &parsed)? {
            return fanout::ingest::start(ctx, parsed, strict, settings, &view);
        }
        // Every listing is served here: read now, since a batch writes
        // keys the server did not route.
        let view = cluster::view_if_enabled(ctx, true)?;
        let mut store = RedisStore::new(ctx, &settings.keys);
        let report = ingest::run(
            &mut store,
            parsed,
            strict,
            &settings,
            now_ms(),
            view.as_deref(),
        )?;
        dedup_upkeep::after_write(&mut store);
        stats::EVENTS.add(report.applied as u64);
        stats::DUPLICATES.add(report.duplicates as u64);
        stats::REJECTED.add(report.rejected as u64);
        stats::INCREMENTS.add(report.increments as u64);
        reply(ctx, &report);
        Ok(RedisValue::NoReply)
    }
}

/// The report, as `fanout::ingest::write_report` words it.
fn reply(ctx: &Context, report: &ingest::Report) {
    write_report(&mut Reply::of(ctx), report);
}
