//! `LISTINGSTATS.GET listing date` — every counter of one day hash.

use redis_module::redisvalue::RedisValueKey;
use redis_module::{Context, RedisValue};

use crate::redis::cluster;
use crate::redis::command::{Arg, Command, Docs};
use crate::redis::reader::Reader;
use crate::{config, stats};
use listingstats_core::date::parse_day_arg;
use listingstats_core::keys::check_listing;
use listingstats_core::number::parse_counter;
use listingstats_core::{Error, Result};

pub struct Get;

impl Command for Get {
    const NAME: &'static str = "listingstats.get";
    const FLAGS: &'static str = "readonly";
    const ACL: &'static str = "read hash fast";
    const DOCS: Docs = Docs {
        summary: "Returns every event counter of a listing on one day.",
        complexity: "O(F): F events counted that day",
        since: "0.1.0",
        arity: 3,
        args: &[Arg::string("listing"), Arg::string("date")],
    };

    const ROUTE_BY: Option<i32> = Some(1);

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let [listing, date] = args else {
            return Err(Error::wrong_arity(Self::NAME));
        };
        check_listing(listing)?;
        cluster::check_listing(ctx, listing)?;
        let day = parse_day_arg("date", date)?;
        let key = config::current().keys.day_key(day, listing);
        let pairs = Reader::new(ctx).hash_all(&key)?;
        stats::KEYS_EXAMINED.add(1);
        let mut map = std::collections::BTreeMap::new();
        for (field, value) in pairs {
            let n = parse_counter(&key, &field, &value)?;
            map.insert(RedisValueKey::BulkString(field), RedisValue::Integer(n));
        }
        Ok(RedisValue::OrderedMap(map))
    }
}
