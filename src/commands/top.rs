//! `LISTINGSTATS.TOP metric start end n [LISTINGS ids|*] [MINDENOM k]`

use redis_module::{Context, RedisValue};

use super::query::{COMPARE_ARG, MAXAGE_ARG, TZ_ARG};
use crate::config;
use crate::engine::Asked;
use crate::fanout;
use crate::metric_registry::current_registry;
use crate::redis::command::{Arg, Command, Docs, Kind};
use crate::redis::context::now_ms;
use crate::share;
use listingstats_core::query::{parse_top_at, At, TopArgs};
use listingstats_core::Result;
use std::ops::ControlFlow;

pub struct Top;

impl Command for Top {
    const NAME: &'static str = "listingstats.top";
    const FLAGS: &'static str = "readonly";
    const ACL: &'static str = "read hash slow";
    const DOCS: Docs = Docs {
        summary: "Ranks listings by a metric over a date range; returns the best n.",
        complexity: "O(D * L + L log n)",
        since: "0.1.0",
        arity: -5,
        args: &[
            Arg::string("metric"),
            Arg::string("start"),
            Arg::string("end"),
            Arg::integer("n"),
            Arg::string("listings").token("LISTINGS").optional(),
            Arg::integer("k").token("MINDENOM").optional(),
            Arg::new(
                "rank",
                Kind::OneOf(&[
                    Arg::flag("VALUE"),
                    Arg::new("confidence", Kind::Double).token("WILSON"),
                ]),
            )
            .token("RANK")
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
        let args = parse_top_at(raw, &at)?;
        let registry = current_registry(ctx, &settings.keys)?;
        // Identical calls share one computation (MAXAGE: a recent answer).
        let what = TopArgs {
            max_age: None,
            ..args.clone()
        };
        let slot = match share::take(ctx, &what, &registry, &settings.keys, args.max_age) {
            ControlFlow::Break(reply) => return reply,
            ControlFlow::Continue(slot) => slot,
        };
        let asked = Asked::top(args, &registry)?;
        fanout::answer(ctx, raw, settings, registry, asked, slot)
    }
}
