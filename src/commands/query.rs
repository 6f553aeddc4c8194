//! `LISTINGSTATS.QUERY metrics start end listings [GROUPBY g] [FORMAT f]`

use redis_module::{Context, RedisValue};

use crate::config;
use crate::engine::Asked;
use crate::fanout;
use crate::metric_registry::current_registry;
use crate::redis::command::{Arg, Command, Docs, Kind};
use crate::redis::context::now_ms;
use crate::share;
use listingstats_core::query::{parse_query_at, At, QueryArgs};
use listingstats_core::Result;
use std::ops::ControlFlow;

pub struct Query;

/// The options QUERY and TOP share, as COMMAND DOCS shows them.
pub(super) const TZ_ARG: Arg = Arg::string("zone").token("TZ").optional();
pub(super) const COMPARE_ARG: Arg = Arg::new(
    "compare",
    Kind::OneOf(&[Arg::flag("PREVIOUS"), Arg::flag("WEEK")]),
)
.token("COMPARE")
.optional();
pub(super) const MAXAGE_ARG: Arg = Arg::integer("ms").token("MAXAGE").optional();

impl Command for Query {
    const NAME: &'static str = "listingstats.query";
    const FLAGS: &'static str = "readonly";
    const ACL: &'static str = "read hash slow";
    const DOCS: Docs = Docs {
        summary: "Computes ratio metrics (click-through rates) over a date or hour range and a set of listings, grouped by day, listing, date, hour or in total; in any zone; compared with the previous period.",
        complexity: "O(D * L): day hashes read (D days, L listings; with * the listings indexed on those days)",
        since: "0.1.0",
        arity: -5,
        args: &[
            Arg::string("metrics"),
            Arg::string("start"),
            Arg::string("end"),
            Arg::string("listings"),
            Arg::new(
                "grouping",
                Kind::OneOf(&[
                    Arg::flag("DAY"),
                    Arg::flag("LISTING"),
                    Arg::flag("DATE"),
                    Arg::flag("TOTAL"),
                    Arg::flag("HOUR"),
                ]),
            )
            .token("GROUPBY")
            .optional(),
            Arg::new(
                "format",
                Kind::OneOf(&[Arg::flag("RESP"), Arg::flag("LEGACY"), Arg::flag("JSON")]),
            )
            .token("FORMAT")
            .optional(),
            TZ_ARG,
            COMPARE_ARG,
            MAXAGE_ARG,
        ],
    };

    fn run(ctx: &Context, raw: &[&[u8]]) -> Result<RedisValue> {
        let settings = config::current();
        let at = At {
            now_secs: now_ms().div_euclid(1000),
            tz: settings.timezone,
        };
        let args = parse_query_at(raw, &at)?;
        let registry = current_registry(ctx, &settings.keys)?;
        // Identical calls share one computation (MAXAGE: a recent answer).
        let what = QueryArgs {
            max_age: None,
            ..args.clone()
        };
        let slot = match share::take(ctx, &what, &registry, &settings.keys, args.max_age) {
            ControlFlow::Break(reply) => return reply,
            ControlFlow::Continue(slot) => slot,
        };
        let asked = Asked::query(args, &registry)?;
        fanout::answer(ctx, raw, settings, registry, asked, slot)
    }
}
