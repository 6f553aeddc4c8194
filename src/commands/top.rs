//! `LISTINGSTATS.TOP metric start end n [LISTINGS ids|*] [MINDENOM k]`

use redis_module::{Context, RedisValue};

use super::metric::current_registry;
use super::query::{aggregate, reply_rows, Span};
use super::Command;
use crate::config;
use crate::core::metrics::resolve;
use crate::core::query::{parse_top, top, FieldPlan, GroupBy};
use crate::core::Result;
use crate::store::Reader;

pub struct Top;

impl Command for Top {
    const NAME: &'static str = "listingstats.top";
    const FLAGS: &'static str = "readonly";

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
        let (rows, _) = aggregate(&reader, &settings, &plan, &span, GroupBy::Listing)?;
        let ranked = top(rows, args.n, args.min_denominator);
        // [listing, numerator, denominator, value]
        reply_rows(ctx, &ranked, 4, |out, row| {
            out.listing(row.listing.as_deref());
            out.counts_and_value(row);
        });
        Ok(RedisValue::NoReply)
    }
}
