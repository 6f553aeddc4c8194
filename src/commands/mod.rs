//! The commands: one file per command family. Each declares its name,
//! flags, ACL categories and summary next to its code (the `Command` trait
//! of `redis::command`), parses its arguments with the core, reads and
//! writes through `redis::store`, and replies.

use redis_module::{Context, Status};

use crate::redis::command::{add_own_category, register};

pub mod get;
pub mod incr;
pub mod ingest;
pub mod job;
pub mod metric;
pub mod query;
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
    ];
    if all.iter().all(|reg| reg(ctx) == Status::Ok) {
        Status::Ok
    } else {
        Status::Err
    }
}
