//! `LISTINGSTATS.QUERY metrics start end listings [GROUPBY g] [FORMAT f]`

use std::os::raw::{c_char, c_long};

use chrono::NaiveDate;
use redis_module::{raw, Context, RedisValue};

use super::metric::current_registry;
use super::Command;
use crate::core::date::{days_between, push_day};
use crate::core::metrics::resolve;
use crate::core::query::{
    check_cells, json, legacy_lines, parse_query, Aggregator, FieldPlan, Format, GroupBy, Listings,
    Row,
};
use crate::core::settings::Settings;
use crate::core::{Error, Result};
use crate::store::Reader;
use crate::{config, stats};

pub struct Query;

impl Command for Query {
    const NAME: &'static str = "listingstats.query";
    const FLAGS: &'static str = "readonly";

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let args = parse_query(args)?;
        let settings = config::current();
        let reader = Reader::new(ctx);
        let metrics = resolve(&current_registry(&reader, &settings.keys)?, &args.metrics)?;
        let plan = FieldPlan::new(metrics);
        let span = Span {
            start: args.start,
            end: args.end,
            listings: &args.listings,
        };
        let (rows, examined) = aggregate(&reader, &settings, &plan, &span, args.group)?;
        Ok(match args.format {
            Format::Resp => {
                // [metric, date, listing, numerator, denominator, value]
                reply_rows(ctx, &rows, 6, |out, row| {
                    out.bulk(plan.metrics[row.metric].name.as_bytes());
                    out.date(row.date);
                    out.listing(row.listing.as_deref());
                    out.counts_and_value(row);
                });
                RedisValue::NoReply
            }
            Format::Legacy => RedisValue::Array(
                legacy_lines(&rows, &plan, &settings.keys)
                    .into_iter()
                    .map(RedisValue::BulkString)
                    .collect(),
            ),
            Format::Json => RedisValue::BulkString(json(&rows, &plan, examined)),
        })
    }
}

/// The days and listings a query or TOP covers.
pub struct Span<'a> {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub listings: &'a Listings<'a>,
}

/// Reads every day hash in `span` and aggregates it. Returns the rows and
/// how many day hashes were looked at: each (day, listing) of an explicit
/// set, or each day hash in the range that a `*` scan found.
pub fn aggregate(
    reader: &Reader<'_>,
    settings: &Settings,
    plan: &FieldPlan,
    span: &Span<'_>,
    group: GroupBy,
) -> Result<(Vec<Row>, u64)> {
    let mut agg = Aggregator::new(plan, group);
    let names = reader.field_names(&plan.fields);
    let scheme = &settings.keys;
    let examined = match span.listings {
        Listings::Ids(ids) => {
            check_cells(span.start, span.end, ids.len(), settings.max_query_cells)?;
            let mut values = vec![0; plan.fields.len()];
            let mut looked = 0u64;
            for day in days_between(span.start, span.end) {
                for id in ids {
                    looked += 1;
                    if reader.counters(&scheme.day_key(day, id), &names, &mut values)? {
                        agg.add(day, id, &values)?;
                    }
                }
            }
            looked
        }
        Listings::All => {
            let max = u64::try_from(settings.max_query_cells).unwrap_or(0);
            let in_range = |name: &[u8]| matches!(scheme.parse_day_key(name), Some((d, _)) if d >= span.start && d <= span.end);
            let mut found = 0u64;
            reader.scan(&names, in_range, |name, values| {
                found += 1;
                if found > max {
                    return Err(Error::invalid(format!(
                        "query matches more than max-query-cells {max} day hashes"
                    )));
                }
                match scheme.parse_day_key(name) {
                    Some((day, listing)) => agg.add(day, listing, values),
                    None => Ok(()),
                }
            })?;
            stats::SCANS.add(1);
            found
        }
    };
    stats::KEYS_EXAMINED.add(examined);
    Ok((agg.rows(plan), examined))
}

/// Writes rows straight to the client: a reply of thousands of rows would
/// otherwise be built as a tree of values and strings first, only to be
/// copied and freed.
pub struct RowWriter<'c> {
    ctx: &'c Context,
    day: Vec<u8>,
}

impl RowWriter<'_> {
    pub fn bulk(&mut self, bytes: &[u8]) {
        raw::reply_with_string_buffer(self.ctx.ctx, bytes.as_ptr().cast::<c_char>(), bytes.len());
    }

    pub fn date(&mut self, date: Option<NaiveDate>) {
        match date {
            Some(d) => {
                self.day.clear();
                push_day(&mut self.day, d);
                raw::reply_with_string_buffer(
                    self.ctx.ctx,
                    self.day.as_ptr().cast::<c_char>(),
                    self.day.len(),
                );
            }
            None => self.bulk(b"*"),
        }
    }

    pub fn listing(&mut self, listing: Option<&[u8]>) {
        self.bulk(listing.unwrap_or(b"*"));
    }

    /// numerator, denominator, value (a double, or null when undefined).
    pub fn counts_and_value(&mut self, row: &Row) {
        raw::reply_with_long_long(self.ctx.ctx, row.numerator);
        raw::reply_with_long_long(self.ctx.ctx, row.denominator);
        match row.value {
            Some(v) => raw::reply_with_double(self.ctx.ctx, v),
            None => raw::reply_with_null(self.ctx.ctx),
        };
    }
}

/// Replies an array with one array of `width` elements per row, each
/// written by `fields`.
pub fn reply_rows(
    ctx: &Context,
    rows: &[Row],
    width: c_long,
    mut fields: impl FnMut(&mut RowWriter<'_>, &Row),
) {
    let mut out = RowWriter {
        ctx,
        day: Vec::with_capacity(10),
    };
    raw::reply_with_array(ctx.ctx, rows.len() as c_long);
    for row in rows {
        raw::reply_with_array(ctx.ctx, width);
        fields(&mut out, row);
    }
}
