//! `LISTINGSTATS.INGEST [STRICT] event-json [event-json ...]`

use std::os::raw::{c_char, c_long};

use redis_module::{raw, Context, RedisValue};

use super::Command;
use crate::store::{now_ms, RedisStore};
use crate::{config, stats};
use listingstats_core::{ingest, Result};

pub struct Ingest;

impl Command for Ingest {
    const NAME: &'static str = "listingstats.ingest";
    const FLAGS: &'static str = "write deny-oom";
    const ACL: &'static str = "write hash slow";

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let settings = config::current();
        let (strict, events) = ingest::split_args(args, &settings)?;
        let parsed = ingest::parse_all(events, &settings)?;
        let report = ingest::run(
            &mut RedisStore::new(ctx),
            parsed,
            strict,
            &settings,
            now_ms(),
        )?;
        stats::EVENTS.add(report.applied as u64);
        stats::DUPLICATES.add(report.duplicates as u64);
        stats::REJECTED.add(report.rejected as u64);
        stats::INCREMENTS.add(report.increments as u64);
        reply(ctx, &report);
        Ok(RedisValue::NoReply)
    }
}

/// `applied n duplicates n rejected n errors [...]`, a map in this order
/// (RESP2 clients see the flat array).
fn reply(ctx: &Context, report: &ingest::Report) {
    let key = |k: &str| {
        raw::reply_with_string_buffer(ctx.ctx, k.as_ptr().cast::<c_char>(), k.len());
    };
    raw::reply_with_map(ctx.ctx, 4);
    for (name, n) in [
        ("applied", report.applied),
        ("duplicates", report.duplicates),
        ("rejected", report.rejected),
    ] {
        key(name);
        raw::reply_with_long_long(ctx.ctx, n as i64);
    }
    key("errors");
    raw::reply_with_array(ctx.ctx, report.errors.len() as c_long);
    for e in &report.errors {
        raw::reply_with_string_buffer(ctx.ctx, e.as_ptr().cast::<c_char>(), e.len());
    }
}
