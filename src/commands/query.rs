//! `LISTINGSTATS.QUERY metrics start end listings [GROUPBY g] [FORMAT f]`

use redis_module::{Context, RedisValue};

use super::job::{self, Finish, Job, Span};
use super::metric::current_registry;
use crate::config;
use crate::redis::command::Command;
use crate::redis::store::Reader;
use listingstats_core::metrics::resolve;
use listingstats_core::query::{parse_query, FieldPlan};
use listingstats_core::Result;

pub struct Query;

impl Command for Query {
    const NAME: &'static str = "listingstats.query";
    const FLAGS: &'static str = "readonly";
    const ACL: &'static str = "read hash slow";

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let args = parse_query(args)?;
        let settings = config::current();
        let reader = Reader::new(ctx);
        let plan = FieldPlan::new(resolve(
            &current_registry(&reader, &settings.keys)?,
            &args.metrics,
        )?);
        let span = Span {
            start: args.start,
            end: args.end,
            listings: &args.listings,
        };
        let job = Job::plan(
            ctx,
            &reader,
            settings,
            plan,
            &span,
            args.group,
            Finish::Query(args.format),
        )?;
        job::run(ctx, &reader, job, &span)
    }
}
