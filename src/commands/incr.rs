//! `LISTINGSTATS.INCR listing event [BY n] [DATE d | AT t] [ID id]`

use redis_module::{Context, RedisValue};

use super::Command;
use crate::store::{now_ms, RedisStore};
use crate::{config, stats};
use listingstats_core::{incr, Result};

pub struct Incr;

impl Command for Incr {
    const NAME: &'static str = "listingstats.incr";
    const FLAGS: &'static str = "write deny-oom";
    const ACL: &'static str = "write hash fast";

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let args = incr::parse(args)?;
        let plan = incr::plan(&args, &config::current(), now_ms())?;
        let outcome = incr::run(&mut RedisStore::new(ctx), &plan)?;
        if outcome.duplicate {
            stats::DUPLICATES.add(1);
        } else {
            stats::INCREMENTS.add(1);
        }
        Ok(RedisValue::Integer(outcome.value))
    }
}
