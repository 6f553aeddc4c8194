//! The commands: one file per command family. Each declares its name,
//! flags, ACL categories and summary next to its code (the `Command` trait
//! of `redis::command`), parses its arguments with the core, reads and
//! writes through `redis::store`, and replies.

use redis_module::{Context, Status};

use crate::redis::command::{add_own_category, register, register_container, register_sub};

pub mod follow;
pub mod get;
pub mod incr;
pub mod ingest;
pub mod metric;
pub mod migrate;
pub mod query;
pub mod retain;
pub mod sweep;
pub mod top;

/// Every command of the module.
pub fn register_all(ctx: &Context) -> Status {
    add_own_category(ctx);
    let all = [
        register::<incr::Incr>,
        register::<ingest::Ingest>,
        register::<get::Get>,
        register::<query::Query>,
        register::<top::Top>,
        register::<metric::MetricSet>,
        register::<metric::MetricDel>,
        register::<metric::MetricList>,
        register::<retain::Retain>,
        register::<migrate::Migrate>,
        register::<follow::Follow>,
        register::<follow::Unfollow>,
        register::<follow::Following>,
    ];
    // METRIC SET/DEL/LIST as subcommands of LISTINGSTATS.METRIC (as Redis
    // has CONFIG GET, CLIENT LIST); the dotted names above stay as aliases.
    let metric = "listingstats.metric";
    let ok = all.iter().all(|reg| reg(ctx) == Status::Ok)
        && register_container(ctx, metric, "Defines, removes and lists ratio metrics.")
            == Status::Ok
        && register_sub::<metric::MetricSet>(ctx, metric, "set") == Status::Ok
        && register_sub::<metric::MetricDel>(ctx, metric, "del") == Status::Ok
        && register_sub::<metric::MetricList>(ctx, metric, "list") == Status::Ok;
    if ok {
        Status::Ok
    } else {
        Status::Err
    }
}
