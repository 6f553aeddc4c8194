//! Reading a stream after a position, with the crate's stream iterator.

use redis_module::key::RedisKey;
use redis_module::{raw, Context, RedisString, RedisValue};

use super::context::reply_text;
use listingstats_core::follow::{StreamId, StreamInfo};

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

/// `XINFO STREAM key` (Redis 7.0+): entries ever added, length, first
/// entry, the largest deleted id. `None` for a missing key, another type,
/// or a name that is not UTF-8.
pub fn info(ctx: &Context, key: &[u8]) -> Option<StreamInfo> {
    let name = std::str::from_utf8(key).ok()?;
    let Ok(RedisValue::Array(info)) = ctx.call("XINFO", &["STREAM", name]) else {
        return None;
    };
    let id = |v: &RedisValue| reply_text(v).and_then(|t| StreamId::parse(t.as_bytes()));
    let mut out = StreamInfo {
        entries_added: 0,
        length: 0,
        first: None,
        max_deleted: StreamId::default(),
    };
    for pair in info.chunks(2) {
        let (Some(name), Some(value)) = (reply_text(&pair[0]), pair.get(1)) else {
            continue;
        };
        match (name.as_str(), value) {
            ("entries-added", RedisValue::Integer(n)) => out.entries_added = *n as u64,
            ("length", RedisValue::Integer(n)) => out.length = *n as u64,
            ("max-deleted-entry-id", v) => out.max_deleted = id(v).unwrap_or_default(),
            ("first-entry", RedisValue::Array(entry)) => out.first = entry.first().and_then(id),
            _ => {}
        }
    }
    Some(out)
}
