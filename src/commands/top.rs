//! `LISTINGSTATS.TOP metric start end n [LISTINGS ids|*] [MINDENOM k]`

use redis_module::{Context, RedisValue};

use super::job::{self, Finish, Job, Span};
use super::metric::current_registry;
use crate::config;
use crate::redis::command::Command;
use crate::redis::store::Reader;
use listingstats_core::metrics::resolve;
use listingstats_core::query::{parse_top, FieldPlan, GroupBy};
use listingstats_core::Result;

pub struct Top;

impl Command for Top {
    const NAME: &'static str = "listingstats.top";
    const FLAGS: &'static str = "readonly";
    const ACL: &'static str = "read hash slow";

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let args = parse_top(args)?;
        let settings = config::current();
        let reader = Reader::new(ctx);
        let plan = FieldPlan::new(resolve(
            &current_registry(&reader, &settings.keys)?,
            &[args.metric],
        )?);
        let span = Span {
            start: args.start,
            end: args.end,
            listings: &args.listings,
        };
        let finish = Finish::Top {
            n: args.n,
            min_denominator: args.min_denominator,
        };
        let job = Job::plan(
            ctx,
            &reader,
            settings,
            plan,
            &span,
            GroupBy::Listing,
            finish,
        )?;
        job::run(ctx, &reader, job, &span)
    }
}
