//! `LISTINGSTATS.QUERY metrics start end listings [GROUPBY g] [FORMAT f]`

use redis_module::{Context, RedisValue};

use crate::config;
use crate::engine::{self, Finish, Job, Span};
use crate::fanout;
use crate::metric_registry::current_registry;
use crate::redis::command::{Arg, Command, Docs, Kind};
use crate::redis::reader::Reader;
use listingstats_core::fanout::PartKind;
use listingstats_core::metrics::resolve;
use listingstats_core::query::{parse_query, FieldPlan};
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
        ],
    };

    fn run(ctx: &Context, raw: &[&[u8]]) -> Result<RedisValue> {
        let args = parse_query(raw)?;
        let settings = config::current();
        let reader = Reader::new(ctx);
        let registry = current_registry(ctx, &settings.keys)?;
        let plan = FieldPlan::new(resolve(&registry, &args.metrics)?)?;
        let finish = Finish::Query(args.format);
        if fanout::needed(ctx, &args.listings)? {
            return fanout::start(
                ctx,
                fanout::Ask {
                    kind: PartKind::Query,
                    args: raw,
                    listings: &args.listings,
                    settings,
                    plan,
                    group: args.group,
                    finish,
                    span: (args.start, args.end),
                },
            );
        }
        let span = Span {
            start: args.start,
            end: args.end,
            listings: &args.listings,
        };
        let job = Job::plan(
            ctx, &reader, settings, registry, plan, &span, args.group, finish,
        )?;
        engine::run(ctx, &reader, job)
    }
}
