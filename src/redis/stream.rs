//! Reading a stream after a position, with the crate's stream iterator.

use redis_module::key::RedisKey;
use redis_module::{raw, Context, RedisString, RedisValue};

use listingstats_core::follow::StreamId;

/// One entry: its id and fields.
pub struct Entry {
    pub id: StreamId,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a stream key holds.
pub enum Read {
    /// No such key.
    Missing,
    /// A key of another type.
    NotStream,
    /// Entries after the position, oldest first (at most the asked number).
    Entries(Vec<Entry>),
}

fn raw_id(id: StreamId) -> raw::RedisModuleStreamID {
    raw::RedisModuleStreamID {
        ms: id.ms,
        seq: id.seq,
    }
}

fn open(ctx: &Context, key: &[u8]) -> Result<RedisKey, Read> {
    let name = RedisString::create_from_slice(ctx.ctx, key);
    let k = RedisKey::open(ctx.ctx, &name);
    if k.is_null() {
        return Err(Read::Missing);
    }
    match k.key_type() {
        raw::KeyType::Stream => Ok(k),
        raw::KeyType::Empty => Err(Read::Missing),
        _ => Err(Read::NotStream),
    }
}

/// Up to `max` entries after `after`.
pub fn read_after(ctx: &Context, key: &[u8], after: StreamId, max: usize) -> Read {
    let k = match open(ctx, key) {
        Ok(k) => k,
        Err(read) => return read,
    };
    let Ok(iter) = k.get_stream_range_iterator(Some(raw_id(after)), None, true, false) else {
        return Read::Entries(Vec::new());
    };
    Read::Entries(
        iter.take(max)
            .map(|r| Entry {
                id: StreamId {
                    ms: r.id.ms,
                    seq: r.id.seq,
                },
                fields: r
                    .fields
                    .iter()
                    .map(|(f, v)| (f.as_slice().to_vec(), v.as_slice().to_vec()))
                    .collect(),
            })
            .collect(),
    )
}

/// How many entries follow `after`, counting at most `cap`.
pub fn count_after(ctx: &Context, key: &[u8], after: StreamId, cap: usize) -> usize {
    let Ok(k) = open(ctx, key) else { return 0 };
    k.get_stream_range_iterator(Some(raw_id(after)), None, true, false)
        .map_or(0, |iter| iter.take(cap).count())
}

/// The stream's last entry id, `None` for an empty or missing stream.
pub fn last_id(ctx: &Context, key: &[u8]) -> Option<StreamId> {
    let k = open(ctx, key).ok()?;
    let mut iter = k.get_stream_iterator(true).ok()?;
    iter.next().map(|r| StreamId {
        ms: r.id.ms,
        seq: r.id.seq,
    })
}

/// Whether entries after `after` were deleted (XTRIM, XDEL) from the
/// stream: `max-deleted-entry-id` of `XINFO STREAM` (Redis 7.0+) is past
/// it. Streams named with non-UTF-8 bytes are not checked.
pub fn deleted_after(ctx: &Context, key: &[u8], after: StreamId) -> bool {
    let Ok(name) = std::str::from_utf8(key) else {
        return false;
    };
    let Ok(RedisValue::Array(info)) = ctx.call("XINFO", &["STREAM", name]) else {
        return false;
    };
    let text = |v: &RedisValue| match v {
        RedisValue::SimpleString(s) | RedisValue::BulkString(s) => Some(s.clone()),
        RedisValue::BulkRedisString(s) => Some(s.to_string_lossy()),
        RedisValue::StringBuffer(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    info.chunks(2).any(|pair| {
        text(&pair[0]).as_deref() == Some("max-deleted-entry-id")
            && pair
                .get(1)
                .and_then(text)
                .and_then(|t| StreamId::parse(t.as_bytes()))
                .is_some_and(|deleted| deleted > after)
    })
}
