//! Following a Redis Stream: entry ids, and the state kept per followed
//! stream (its position and counts) in the hash
//! `<prefix>listingstats:following`, one field per stream, so the position
//! is data: replicated, persisted, and written in the same atomic step as
//! the counters of the entries it covers.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::{quote, Error, Result};

/// A stream entry id, `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// `ms-seq` or `ms` (seq 0); `0` is the start of every stream.
    pub fn parse(text: &[u8]) -> Option<StreamId> {
        let text = std::str::from_utf8(text).ok()?;
        let (ms, seq) = match text.split_once('-') {
            Some((ms, seq)) => (ms.parse().ok()?, seq.parse().ok()?),
            None => (text.parse().ok()?, 0),
        };
        Some(StreamId { ms, seq })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Where FOLLOW starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// After this id (`0`: the whole stream).
    After(StreamId),
    /// After the stream's last entry now (`$`): only new entries.
    End,
}

/// `LISTINGSTATS.FOLLOW stream [FROM id|0|$]`: the stream and where to start.
pub fn parse_follow(args: &[&[u8]]) -> Result<(Vec<u8>, From)> {
    match args {
        [stream] => Ok((stream.to_vec(), From::After(StreamId::default()))),
        [stream, kw, at] if kw.eq_ignore_ascii_case(b"FROM") => {
            let from = if *at == b"$" {
                From::End
            } else {
                From::After(StreamId::parse(at).ok_or_else(|| {
                    Error::invalid(format!(
                        "FROM must be a stream id, 0 or $, got {}",
                        quote(at)
                    ))
                })?)
            };
            Ok((stream.to_vec(), from))
        }
        [_, other, ..] if !other.eq_ignore_ascii_case(b"FROM") => {
            Err(Error::syntax(format!("unknown option {}", quote(other))))
        }
        _ => Err(Error::wrong_arity("LISTINGSTATS.FOLLOW")),
    }
}

/// One followed stream's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FollowState {
    /// The last entry applied (or rejected): the position.
    pub last: String,
    /// Events applied, duplicates skipped, entries rejected.
    pub applied: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Why the last rejected entry was rejected.
    pub last_reason: String,
    /// Entries after the position were deleted (XTRIM/XDEL) before they
    /// were applied: they are lost to the counters.
    pub trimmed: bool,
    /// How many of the stream's entries ever added (`entries-added`) are
    /// accounted for: applied, rejected, before the start, or lost.
    #[serde(default)]
    pub read: u64,
    /// On a cluster: the last entry whose events' parts may have been sent
    /// to other masters (set before they are sent). A master that takes
    /// the stream over applies its own part of entries up to it with their
    /// derived ids, since they may have been counted where they lived.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sent: String,
}

/// What `XINFO STREAM` tells about a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    pub entries_added: u64,
    pub length: u64,
    pub first: Option<StreamId>,
    pub max_deleted: StreamId,
}

/// Whether entries after `position` were deleted before being applied,
/// and how many entries are accounted for then. Trimming removes the
/// oldest entries: if the stream's first entry is past the position, every
/// entry in it is unapplied, so any more unaccounted entries were lost.
/// XDEL moves `max-deleted-entry-id` past the position.
pub fn detect_loss(position: StreamId, read: u64, info: &StreamInfo) -> (bool, u64) {
    let unaccounted = info.entries_added.saturating_sub(read);
    let trimmed = info.first.is_some_and(|first| first > position) && unaccounted > info.length;
    let deleted = info.max_deleted > position;
    if trimmed {
        (true, info.entries_added - info.length)
    } else {
        (deleted, read)
    }
}

impl FollowState {
    pub fn starting_after(id: StreamId) -> FollowState {
        FollowState {
            last: id.to_string(),
            ..FollowState::default()
        }
    }

    pub fn position(&self) -> StreamId {
        StreamId::parse(self.last.as_bytes()).unwrap_or_default()
    }

    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `None` for a value that does not parse (another tool wrote it).
    pub fn from_stored(text: &[u8]) -> Option<FollowState> {
        serde_json::from_slice(text).ok()
    }

    /// Records a rejected entry and why.
    pub fn reject(&mut self, id: StreamId, why: &str) {
        self.rejected += 1;
        self.last_reason = format!("entry {id}: {why}");
    }
}

/// The event JSON of an entry: its field `event`.
pub fn entry_event(fields: &[(Vec<u8>, Vec<u8>)]) -> std::result::Result<&[u8], &'static str> {
    fields
        .iter()
        .find(|(f, _)| f == b"event")
        .map(|(_, v)| v.as_slice())
        .ok_or("no field 'event'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_order() {
        assert_eq!(
            StreamId::parse(b"1526919030474-55"),
            Some(StreamId {
                ms: 1_526_919_030_474,
                seq: 55
            })
        );
        assert_eq!(StreamId::parse(b"0"), Some(StreamId::default()));
        assert_eq!(StreamId::parse(b"17"), Some(StreamId { ms: 17, seq: 0 }));
        assert_eq!(StreamId::parse(b"x-1"), None);
        assert_eq!(StreamId::parse(b"1-"), None);
        assert!(StreamId { ms: 1, seq: 9 } < StreamId { ms: 2, seq: 0 });
        assert_eq!(StreamId { ms: 3, seq: 4 }.to_string(), "3-4");
    }

    #[test]
    fn losses_are_detected_by_counting() {
        let id = |ms| StreamId { ms, seq: 0 };
        let info = |added, length, first, deleted| StreamInfo {
            entries_added: added,
            length,
            first,
            max_deleted: id(deleted),
        };
        // 10 added, 3 read (position 3), 7 still there from id 4: nothing lost.
        assert_eq!(
            detect_loss(id(3), 3, &info(10, 7, Some(id(4)), 0)),
            (false, 3)
        );
        // Trimmed to the last 2: 5 unapplied entries are gone.
        assert_eq!(
            detect_loss(id(3), 3, &info(10, 2, Some(id(9)), 0)),
            (true, 8)
        );
        // Trimmed, but only entries already applied: nothing lost.
        assert_eq!(
            detect_loss(id(8), 8, &info(10, 2, Some(id(9)), 0)),
            (false, 8)
        );
        // An XDEL past the position: detected, and the lost entry counted.
        assert_eq!(
            detect_loss(id(3), 3, &info(10, 6, Some(id(4)), 6)),
            (true, 4)
        );
        // An XDEL past the position, the oldest entries still there.
        assert_eq!(
            detect_loss(id(5), 5, &info(10, 9, Some(id(1)), 7)),
            (true, 5)
        );
        // An empty stream after trimming everything.
        assert_eq!(detect_loss(id(3), 3, &info(10, 0, None, 0)), (false, 3));
    }

    #[test]
    fn follow_arguments() {
        assert_eq!(
            parse_follow(&[b"s"]).unwrap(),
            (b"s".to_vec(), From::After(StreamId::default()))
        );
        assert_eq!(parse_follow(&[b"s", b"from", b"$"]).unwrap().1, From::End);
        assert_eq!(
            parse_follow(&[b"s", b"FROM", b"5-1"]).unwrap().1,
            From::After(StreamId { ms: 5, seq: 1 })
        );
        assert!(parse_follow(&[b"s", b"FROM", b"soon"]).is_err());
        assert!(parse_follow(&[b"s", b"AFTER", b"0"]).is_err());
        assert!(parse_follow(&[]).is_err());
    }

    #[test]
    fn state_round_trips_and_entries_need_an_event() {
        let mut s = FollowState::starting_after(StreamId { ms: 5, seq: 0 });
        s.reject(StreamId { ms: 6, seq: 1 }, "bad JSON");
        let back = FollowState::from_stored(s.to_stored().as_bytes()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.position(), StreamId { ms: 5, seq: 0 });
        assert_eq!(back.last_reason, "entry 6-1: bad JSON");
        assert!(FollowState::from_stored(b"nope").is_none());
        let fields = vec![
            (b"x".to_vec(), b"1".to_vec()),
            (b"event".to_vec(), b"{}".to_vec()),
        ];
        assert_eq!(entry_event(&fields), Ok(&b"{}"[..]));
        assert_eq!(entry_event(&fields[..1]), Err("no field 'event'"));
    }
}
