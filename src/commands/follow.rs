//! `LISTINGSTATS.FOLLOW stream [FROM id|0|$]`, `LISTINGSTATS.UNFOLLOW
//! stream`, `LISTINGSTATS.FOLLOWING`. The pump that applies the entries,
//! on one node and on a cluster, is `crate::follow`.

use redis_module::{Context, RedisValue};

use crate::config;
use crate::follow::{self, listed, position_key, state_of};
use crate::redis::acl::Native;
use crate::redis::command::{Arg, Command, Docs};
use crate::redis::context::{is_replica, selected_db};
use crate::redis::reader::Reader;
use crate::redis::reply::Reply;
use crate::redis::store::RedisStore;
use crate::redis::stream::{self, Read};
use listingstats_core::follow::{parse_follow, FollowState, From, StreamId};
use listingstats_core::{Error, Result};

pub struct Follow;

impl Command for Follow {
    const NAME: &'static str = "listingstats.follow";
    const FLAGS: &'static str = "write deny-oom";
    const ACL: &'static str = "write stream slow";
    const KEYS: (i32, i32, i32) = (1, 1, 1);
    const DOCS: Docs = Docs {
        summary: "Applies every entry of a stream (its field 'event', as INGEST takes) as it arrives, exactly once; FROM 0 (default) starts at the beginning, $ at the end.",
        complexity: "O(1); the entries are applied in the background, in slices",
        since: "0.1.0",
        arity: -2,
        args: &[
            Arg::string("stream"),
            Arg::string("id").token("FROM").optional(),
        ],
    };

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let (stream, from) = parse_follow(args)?;
        if is_replica(ctx) {
            return Err(Error::invalid(
                "this server is a replica: FOLLOW on its master",
            ));
        }
        let settings = config::current();
        if !Reader::new(ctx).may(&stream, Native::Xrange) {
            return Err(Error::invalid(format!(
                "NOPERM this user has no permissions to read the stream '{}'",
                stream.escape_ascii()
            )));
        }
        if state_of(ctx, &settings, &stream)?.is_some() {
            return Err(Error::invalid(format!(
                "'{}' is followed already: LISTINGSTATS.UNFOLLOW it first",
                stream.escape_ascii()
            )));
        }
        let start = match stream::read_after(ctx, &stream, StreamId::default(), 0) {
            Read::Missing => {
                return Err(Error::invalid(format!(
                    "no stream '{}': XADD to it first (or XGROUP CREATE ... MKSTREAM)",
                    stream.escape_ascii()
                )))
            }
            Read::NotStream => return Err(Error::WrongType),
            Read::Entries(_) => match from {
                From::After(id) => id,
                From::End => stream::last_id(ctx, &stream).unwrap_or_default(),
            },
        };
        // Entries up to the start count as accounted for (see detect_loss).
        let info = stream::info(ctx, &stream);
        let added = info.map_or(0, |i| i.entries_added);
        let after = match from {
            From::End => 0,
            From::After(id) if id == StreamId::default() => info.map_or(0, |i| i.length),
            // An explicit id: count once what follows it (O(entries after)).
            From::After(_) => stream::count_after(ctx, &stream, start, usize::MAX) as u64,
        };
        let mut state = FollowState::starting_after(start);
        state.read = added.saturating_sub(after);
        let mut store = RedisStore::for_user(ctx, &settings.keys, None)?;
        store.hash_set(
            &position_key(&settings, &stream),
            &stream,
            state.to_stored().as_bytes(),
        )?;
        follow::started(ctx, stream);
        Ok(RedisValue::SimpleStringStatic("OK"))
    }
}

pub struct Unfollow;

impl Command for Unfollow {
    const NAME: &'static str = "listingstats.unfollow";
    const FLAGS: &'static str = "write";
    const ACL: &'static str = "write stream fast";
    const KEYS: (i32, i32, i32) = (1, 1, 1);
    const DOCS: Docs = Docs {
        summary: "Stops following a stream; what was applied stays.",
        complexity: "O(1)",
        since: "0.1.0",
        arity: 2,
        args: &[Arg::string("stream")],
    };

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        let [stream] = args else {
            return Err(Error::wrong_arity(Self::NAME));
        };
        let settings = config::current();
        let mut store = RedisStore::for_user(ctx, &settings.keys, None)?;
        if !store.hash_del(&position_key(&settings, stream), stream)? {
            return Err(Error::invalid(format!(
                "'{}' is not followed",
                stream.escape_ascii()
            )));
        }
        follow::forget(selected_db(ctx), stream);
        Ok(RedisValue::SimpleStringStatic("OK"))
    }
}

pub struct Following;

impl Command for Following {
    const NAME: &'static str = "listingstats.following";
    const FLAGS: &'static str = "readonly";
    const ACL: &'static str = "read stream slow";
    const DOCS: Docs = Docs {
        summary: "Lists each followed stream: last applied id, entries behind, applied, duplicates, rejected, the last rejection's reason, and whether entries were trimmed before being applied.",
        complexity: "O(S): S followed streams",
        since: "0.1.0",
        arity: 1,
        args: &[],
    };

    fn run(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue> {
        if !args.is_empty() {
            return Err(Error::wrong_arity(Self::NAME));
        }
        let settings = config::current();
        let all = listed(ctx, &settings)?;
        let db = selected_db(ctx);
        let mut out = Reply::of(ctx);
        out.array(all.len());
        for (stream, state) in &all {
            // Entries ever added that are not accounted for yet: O(1), as
            // consumer groups compute their lag.
            let lag =
                stream::info(ctx, stream).map_or(0, |i| i.entries_added.saturating_sub(state.read));
            let waiting = follow::waiting(db, stream).unwrap_or_default();
            out.map(9);
            out.bulk(b"stream");
            out.bulk(stream);
            out.bulk(b"last-id");
            out.bulk(state.last.as_bytes());
            out.bulk(b"lag");
            out.int(lag as i64);
            out.bulk(b"applied");
            out.int(state.applied as i64);
            out.bulk(b"duplicates");
            out.int(state.duplicates as i64);
            out.bulk(b"rejected");
            out.int(state.rejected as i64);
            out.bulk(b"last-rejection");
            out.bulk(state.last_reason.as_bytes());
            out.bulk(b"trimmed");
            out.int(i64::from(state.trimmed));
            out.bulk(b"waiting");
            out.bulk(waiting.as_bytes());
        }
        Ok(RedisValue::NoReply)
    }
}
