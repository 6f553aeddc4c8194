//! `LISTINGSTATS.TOP metric start end n [LISTINGS ids|*] [MINDENOM k]`

use redis_module::{Context, RedisValue};

use crate::config;
use crate::engine::{self, Finish, Job, Span};
use crate::fanout;
use crate::metric_registry::current_registry;
use crate::redis::command::{Arg, Command, Docs, Kind};
use crate::redis::reader::Reader;
use listingstats_core::fanout::PartKind;
use listingstats_core::metrics::resolve;
use listingstats_core::query::{parse_top, FieldPlan, GroupBy};
use listingstats_core::Result;

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
        ],
    };

    fn run(ctx: &Context, raw: &[&[u8]]) -> Result<RedisValue> {
        let args = parse_top(raw)?;
        let settings = config::current();
        let reader = Reader::new(ctx);
        let registry = current_registry(ctx, &settings.keys)?;
        let plan = FieldPlan::new(resolve(&registry, &[args.metric])?)?;
        let span = Span {
            start: args.start,
            end: args.end,
            listings: &args.listings,
        };
        let finish = Finish::Top {
            n: args.n,
            min_denominator: args.min_denominator,
            rank: args.rank,
        };
        if fanout::needed(ctx, &args.listings)? {
            return fanout::start(
                ctx,
                fanout::Ask {
                    kind: PartKind::Top,
                    args: raw,
                    listings: &args.listings,
                    settings,
                    plan,
                    group: GroupBy::Listing,
                    finish,
                    span: (args.start, args.end),
                },
            );
        }
        let job = Job::plan(
            ctx,
            &reader,
            settings,
            registry,
            plan,
            &span,
            GroupBy::Listing,
            finish,
        )?;
        engine::run(ctx, &reader, job)
    }
}
