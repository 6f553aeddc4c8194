//! `LISTINGSTATS.RETAIN`: gives every day hash without an expiry the one
//! `retention-days` implies, and deletes those already past it; and the
//! same for hour keys under `hour-retention-days`.

use redis_module::{Context, RedisValue};

use super::sweep::{self, Visit};
use crate::config;
use crate::redis::acl::Native;
use crate::redis::command::{Command, Docs};
use crate::redis::reply::Reply;
use crate::redis::scan::Scanned;
use crate::redis::store::RedisStore;
use listingstats_core::date::retention_expiry_ms;
use listingstats_core::hours::expiry_ms;
use listingstats_core::settings::Settings;
use listingstats_core::{Error, Result};

pub struct Retain;

impl Command for Retain {
    const NAME: &'static str = "listingstats.retain";
    const FLAGS: &'static str = "write";
    const ACL: &'static str = "write keyspace slow";
    const DOCS: Docs = Docs {
        summary: "Gives every day hash (and hour key) without an expiry the one retention-days (hour-retention-days) implies; deletes those already past it. Replies set, deleted and denied.",
        complexity: "O(N): every key of the database, in slices",
        since: "0.1.0",
        arity: 1,
        args: &[],
    };

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        if !args.is_empty() {
            return Err(Error::wrong_arity(Self::NAME));
        }
        let settings = config::current();
        if settings.retention_days == 0 && (settings.hour_retention_days == 0 || !settings.hours) {
            return Err(Error::invalid(
                "retention-days is 0 (day hashes are kept forever): set it first, e.g. CONFIG SET listingstats.retention-days 90",
            ));
        }
        sweep::run(ctx, Retaining::default())
    }
}

/// What RETAIN did to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retained {
    Set,
    Deleted,
    /// Not a hash, or it has an expiry already.
    Untouched,
    Denied,
}

/// RETAIN of one day hash: one without an expiry gets `at_ms`, or is
/// deleted when that is already past (`DEL`, replicated). Keys the user
/// could not `PEXPIREAT`/`DEL` are left alone.
fn retain(store: &mut RedisStore<'_>, key: &[u8], at_ms: i64, now_ms: i64) -> Retained {
    let peek = store.peek(key);
    if !peek.hash || peek.expires_at.is_some() {
        return Retained::Untouched;
    }
    let past = at_ms <= now_ms;
    if !store.may(key, if past { Native::Del } else { Native::Pexpireat }) {
        return Retained::Denied;
    }
    if past {
        store.delete(key);
        return Retained::Deleted;
    }
    store.set_expiry_unchecked(key, at_ms);
    Retained::Set
}

#[derive(Default)]
struct Retaining {
    set: u64,
    deleted: u64,
    denied: u64,
}

impl Visit for Retaining {
    const WHAT: &'static str = "RETAIN";

    fn wants(&self, key: &Scanned<'_>, settings: &Settings) -> bool {
        key.is_hash()
            && (settings.keys.parse_day_key(key.name).is_some()
                || settings.keys.parse_hour_key(key.name).is_some())
    }

    fn visit(&mut self, store: &mut RedisStore<'_>, key: &[u8], settings: &Settings, now_ms: i64) {
        let at = match (
            settings.keys.parse_day_key(key),
            settings.keys.parse_hour_key(key),
        ) {
            (Some((day, _)), _) => {
                retention_expiry_ms(day, settings.timezone, settings.retention_days)
            }
            (None, Some((date, _))) => expiry_ms(date, settings.hour_retention_days),
            (None, None) => None,
        };
        let Some(at) = at else {
            return;
        };
        match retain(store, key, at, now_ms) {
            Retained::Set => self.set += 1,
            Retained::Deleted => self.deleted += 1,
            Retained::Denied => self.denied += 1,
            Retained::Untouched => {}
        }
    }

    fn reply(&self, out: &mut Reply) {
        out.map(3);
        for (name, n) in [
            ("set", self.set),
            ("deleted", self.deleted),
            ("denied", self.denied),
        ] {
            out.bulk(name.as_bytes());
            out.int(n as i64);
        }
    }
}
