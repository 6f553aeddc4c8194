//! `LISTINGSTATS.INCR listing event [BY n] [DATE d | AT t] [ID id]`

use redis_module::{Context, RedisValue};

use crate::dedup_upkeep;
use crate::redis::cluster;
use crate::redis::command::{Arg, Command, Docs, Kind};
use crate::redis::context::now_ms;
use crate::redis::store::RedisStore;
use crate::{config, stats};
use listingstats_core::{incr, Result};

pub struct Incr;

impl Command for Incr {
    const NAME: &'static str = "listingstats.incr";
    const FLAGS: &'static str = "write deny-oom";
    const ACL: &'static str = "write hash fast";
    const DOCS: Docs = Docs {
        summary: "Adds n (default 1) to an event's counter in a listing's day hash; with ID, counts a retried event once.",
        complexity: "O(1)",
        since: "0.1.0",
        arity: -3,
        args: &[
            Arg::string("listing"),
            Arg::string("event"),
            Arg::integer("n").token("BY").optional(),
            Arg::new(
                "when",
                Kind::OneOf(&[
                    Arg::string("yyyy-mm-dd").token("DATE"),
                    Arg::new("unix-seconds", Kind::UnixTime).token("AT"),
                ]),
            )
            .optional(),
            Arg::string("event-id").token("ID").optional(),
        ],
    };

    const ROUTE_BY: Option<i32> = Some(1);

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let args = incr::parse(args)?;
        cluster::check_listing(ctx, args.listing)?;
        let settings = config::current();
        let plan = incr::plan(&args, &settings, now_ms())?;
        let mut store = RedisStore::new(ctx, &settings.keys);
        let outcome = incr::run(&mut store, &plan)?;
        dedup_upkeep::after_write(&mut store);
        if outcome.duplicate {
            stats::DUPLICATES.add(1);
        } else {
            stats::INCREMENTS.add(1);
        }
        Ok(RedisValue::Integer(outcome.value))
    }
}
