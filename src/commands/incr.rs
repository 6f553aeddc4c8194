//! `LISTINGSTATS.INCR listing event [BY n] [DATE d | AT t] [ID id]`

use redis_module::{Context, RedisValue};

use crate::redis::command::Command;
use crate::redis::context::now_ms;
use crate::redis::store::RedisStore;
use crate::{config, stats};
use listingstats_core::{incr, Result};

pub struct Incr;

impl Command for Incr {
    const NAME: &'static str = "listingstats.incr";
    const FLAGS: &'static str = "write deny-oom";
    const ACL: &'static str = "write hash fast";

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let args = incr::parse(args)?;
        let settings = config::current();
        let plan = incr::plan(&args, &settings, now_ms())?;
        let outcome = incr::run(&mut RedisStore::new(ctx, &settings.keys), &plan)?;
        if outcome.duplicate {
            stats::DUPLICATES.add(1);
        } else {
            stats::INCREMENTS.add(1);
        }
        Ok(RedisValue::Integer(outcome.value))
    }
}
