//! `LISTINGSTATS.METRIC.SET / DEL / LIST`: define, remove and list ratio
//! metrics. The registry itself (where definitions live, how they are read
//! and written on one node and on a cluster) is `metric_registry.rs`; a
//! change also tells the query cache, whose columns follow the definitions.

use redis_module::{Context, RedisValue};

use crate::config;
use crate::fanout::{self, Answer};
use crate::index_upkeep;
use crate::metric_registry::{change, listed_registry};
use crate::redis::command::{Arg, Command, Docs, Kind};
use crate::redis::context::is_resp3;
use listingstats_core::metrics::{check_name, is_builtin, parse_set};
use listingstats_core::{Error, Result};

pub struct MetricSet;

impl Command for MetricSet {
    const NAME: &'static str = "listingstats.metric.set";
    const FLAGS: &'static str = "write deny-oom";
    const ACL: &'static str = "write hash fast";
    const DOCS: Docs = Docs {
        summary:
            "Defines (or overrides) a ratio metric: numerator event / denominator event * scale.",
        complexity: "O(1)",
        since: "0.1.0",
        arity: -4,
        args: &[
            Arg::string("name"),
            Arg::string("numerator-event"),
            Arg::string("denominator-event"),
            Arg::new("s", Kind::Double).token("SCALE").optional(),
        ],
    };

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let metric = parse_set(args)?;
        let change = change(ctx, &metric.name, Some(metric.to_stored().as_bytes()))?;
        index_upkeep::metrics_changed(ctx);
        match change.cluster {
            Some((version, defs)) => fanout::announce(ctx, version, defs, Answer::Ok),
            None => Ok(RedisValue::SimpleStringStatic("OK")),
        }
    }
}

pub struct MetricDel;

impl Command for MetricDel {
    const NAME: &'static str = "listingstats.metric.del";
    const FLAGS: &'static str = "write";
    const ACL: &'static str = "write hash fast";
    const DOCS: Docs = Docs {
        summary: "Removes a stored metric definition (a built-in metric's default comes back).",
        complexity: "O(1)",
        since: "0.1.0",
        arity: 2,
        args: &[Arg::string("name")],
    };

    /// 1 when a stored definition was removed (a built-in's default comes
    /// back), 0 for a built-in that was not overridden.
    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let [name] = args else {
            return Err(Error::wrong_arity(Self::NAME));
        };
        let name = check_name(name)?;
        let change = change(ctx, name, None)?;
        if !change.had && !is_builtin(name) {
            return Err(Error::invalid(format!("unknown metric '{name}'")));
        }
        index_upkeep::metrics_changed(ctx);
        let removed = i64::from(change.had);
        match change.cluster {
            Some((version, defs)) => fanout::announce(ctx, version, defs, Answer::Int(removed)),
            None => Ok(RedisValue::Integer(removed)),
        }
    }
}

pub struct MetricList;

impl Command for MetricList {
    const NAME: &'static str = "listingstats.metric.list";
    const FLAGS: &'static str = "readonly";
    const ACL: &'static str = "read hash fast";
    const DOCS: Docs = Docs {
        summary: "Lists every metric: name, numerator event, denominator event, scale.",
        complexity: "O(M): M metrics",
        since: "0.1.0",
        arity: 1,
        args: &[],
    };

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        if !args.is_empty() {
            return Err(Error::wrong_arity(Self::NAME));
        }
        let all = listed_registry(ctx, &config::current().keys)?;
        let resp3 = is_resp3(ctx);
        Ok(RedisValue::Array(
            all.into_iter()
                .map(|m| {
                    RedisValue::Array(vec![
                        RedisValue::BulkString(m.name),
                        RedisValue::StringBuffer(m.numerator),
                        RedisValue::StringBuffer(m.denominator),
                        // As QUERY sends values: a double in RESP3, else the
                        // shortest text that reads back as the same number
                        // (0.1, not Redis's %.17g 0.10000000000000001).
                        if resp3 {
                            RedisValue::Float(m.scale)
                        } else {
                            RedisValue::BulkString(m.scale.to_string())
                        },
                    ])
                })
                .collect(),
        ))
    }
}
