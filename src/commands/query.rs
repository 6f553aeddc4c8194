//! `LISTINGSTATS.QUERY metrics start end listings [GROUPBY g] [FORMAT f]`

use redis_module::{Context, RedisValue};

use crate::config;
use crate::engine::Asked;
use crate::fanout;
use crate::metric_registry::current_registry;
use crate::redis::command::{Arg, Command, Docs, Kind};
use crate::share::{self, Found};
use listingstats_core::query::{parse_query, QueryArgs};
use listingstats_core::Result;

pub struct Query;

impl Command for Query {
    const NAME: &'static str = "listingstats.query";
    const FLAGS: &'static str = "readonly";
    const ACL: &'static str = "read hash slow";
    const DOCS: Docs = Docs {
        summary: "Computes ratio metrics (click-through rates) over a date range and a set of listings, grouped by day, listing, date or in total.",
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
            Arg::integer("ms").token("MAXAGE").optional(),
        ],
    };

    fn run(ctx: &Context, raw: &[&[u8]]) -> Result<RedisValue> {
        let args = parse_query(raw)?;
        let settings = config::current();
        let registry = current_registry(ctx, &settings.keys)?;
        // Identical calls share one computation (MAXAGE: a recent answer).
        let what = QueryArgs {
            max_age: None,
            ..args.clone()
        };
        let slot = match share::find(
            ctx,
            share::key(ctx, &what, &(&registry, &settings.keys)),
            args.max_age,
        ) {
            Found::Answer(answer) => return share::reply_now(ctx, answer),
            Found::Joined => return Ok(RedisValue::NoReply),
            Found::Compute(slot) => slot,
        };
        let asked = Asked::query(args, &registry)?;
        fanout::answer(ctx, raw, settings, registry, asked, slot)
    }
}
