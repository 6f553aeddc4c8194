//! `LISTINGSTATS.MIGRATE [DRYRUN]`: folds the flat counters of the old
//! layout (`YYYY-MM-DD:<event>_<listing>` strings) into day hashes.

use redis_module::{Context, RedisValue};

use crate::redis::cluster;
use rustc_hash::FxHashSet;

use super::sweep::{self, Visit};
use crate::config;
use crate::metric_registry::current_registry;
use crate::redis::acl::Native;
use crate::redis::command::{Arg, Command, Docs};
use crate::redis::reply::Reply;
use crate::redis::scan::Scanned;
use crate::redis::store::RedisStore;
use listingstats_core::date::check_retained;
use listingstats_core::metrics::Metric;
use listingstats_core::migrate::{field_for, flat_value, parse_flat_key};
use listingstats_core::number::add_counter;
use listingstats_core::settings::Settings;
use listingstats_core::write::CounterStore;
use listingstats_core::{Error, Result};

pub struct Migrate;

impl Command for Migrate {
    const NAME: &'static str = "listingstats.migrate";
    const FLAGS: &'static str = "write deny-oom";
    const ACL: &'static str = "write hash keyspace slow";
    const DOCS: Docs = Docs {
        summary: "Folds the old flat counters (YYYY-MM-DD:<event>_<listing> strings) into day hashes and deletes them; DRYRUN only counts. Replies migrated, keys, skipped and errors.",
        complexity: "O(N): every key of the database, in slices",
        since: "0.1.0",
        arity: -1,
        args: &[Arg::flag("DRYRUN")],
    };

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        if cluster::enabled() {
            return Err(Error::invalid(
                "MIGRATE is not available on Redis Cluster: a flat key and its listing's day hash are in different slots; migrate on a single node, then load the data into the cluster",
            ));
        }
        let dry_run = match args {
            [] => false,
            [flag] if flag.eq_ignore_ascii_case(b"DRYRUN") => true,
            [other] => {
                return Err(Error::syntax(format!(
                    "unknown option {}",
                    listingstats_core::error::quote(other)
                )))
            }
            _ => return Err(Error::wrong_arity(Self::NAME)),
        };
        let settings = config::current();
        let metrics = current_registry(ctx, &settings.keys)?;
        sweep::run(
            ctx,
            Migrating {
                dry_run,
                metrics,
                migrated: 0,
                day_keys: FxHashSet::default(),
                skipped: 0,
                errors: Vec::new(),
            },
        )
    }
}

/// MIGRATE of one flat counter: adds its value to `field` of the day hash
/// `day_key` and deletes it, in one step (replicated as `HINCRBY` and
/// `DEL`); with `dry_run`, only checks that it could. Fails, having changed
/// nothing, when the user may not `GET`/`DEL` the flat key or `HINCRBY` the
/// day hash, the value is not an integer, the day hash is not a hash, or
/// the sum would overflow.
fn migrate_flat(
    store: &mut RedisStore<'_>,
    flat: &[u8],
    day_key: &[u8],
    field: &[u8],
    expire_at: Option<i64>,
    dry_run: bool,
) -> Result<()> {
    for native in [Native::Get, Native::Del] {
        store.check(flat, native)?;
    }
    let text = store
        .read_string(flat)
        .ok_or_else(|| Error::invalid("not a string any more"))?;
    let value = flat_value(&text)?;
    let current = store.counter(day_key, field)?.unwrap_or(0);
    let total = add_counter(current, value)?;
    if dry_run {
        return Ok(());
    }
    store.set_counter(day_key, field, total, value);
    if let Some(at) = expire_at {
        store.expire_at(day_key, at);
    }
    store.delete(flat);
    Ok(())
}

/// Error lines kept for the reply; the count goes on past them.
const MAX_ERRORS: usize = 100;

struct Migrating {
    dry_run: bool,
    metrics: Vec<Metric>,
    migrated: u64,
    day_keys: FxHashSet<Vec<u8>>,
    skipped: u64,
    errors: Vec<String>,
}

impl Migrating {
    fn skip(&mut self, key: &[u8], why: &Error) {
        self.skipped += 1;
        if self.errors.len() < MAX_ERRORS {
            let why = why.to_string();
            self.errors.push(format!(
                "{}: {}",
                key.escape_ascii(),
                why.strip_prefix("ERR ").unwrap_or(&why)
            ));
        }
    }
}

impl Visit for Migrating {
    const WHAT: &'static str = "MIGRATE";

    fn wants(&self, key: &Scanned<'_>, settings: &Settings) -> bool {
        key.is_string() && parse_flat_key(&settings.keys.prefix, key.name).is_some()
    }

    fn visit(&mut self, store: &mut RedisStore<'_>, key: &[u8], settings: &Settings, now_ms: i64) {
        let Some(flat) = parse_flat_key(&settings.keys.prefix, key) else {
            return;
        };
        let result = flat.and_then(|flat| {
            let expire_at =
                check_retained(flat.day, settings.timezone, settings.retention_days, now_ms)?;
            let day_key = settings.keys.day_key(flat.day, flat.listing);
            let field = field_for(flat.event, &self.metrics);
            migrate_flat(store, key, &day_key, &field, expire_at, self.dry_run)?;
            Ok(day_key)
        });
        match result {
            Ok(day_key) => {
                self.migrated += 1;
                self.day_keys.insert(day_key);
            }
            Err(why) => self.skip(key, &why),
        }
    }

    fn reply(&self, out: &mut Reply) {
        out.map(4);
        for (name, n) in [
            ("migrated", self.migrated),
            ("keys", self.day_keys.len() as u64),
            ("skipped", self.skipped),
        ] {
            out.bulk(name.as_bytes());
            out.int(n as i64);
        }
        out.bulk(b"errors");
        let more = self.skipped as usize - self.errors.len();
        out.array(self.errors.len() + usize::from(more > 0));
        for e in &self.errors {
            out.bulk(e.as_bytes());
        }
        if more > 0 {
            out.bulk(format!("... and {more} more").as_bytes());
        }
    }
}
