//! What travels between nodes: frames, a part's request, a part's answer.
//!
//! All integers are little-endian. A frame is a 16-byte header and a
//! payload; a transfer (one request, or one answer) is a run of frames
//! numbered from 0, the last one flagged. Records never straddle frames,
//! so each frame is read as it arrives.

use super::slots::{SlotSet, SLOT_SET_BYTES};

/// The most bytes of one frame, header included: small enough that the
/// cluster bus never carries a large module message ahead of its gossip.
pub const MAX_FRAME: usize = 64 * 1024;
/// Frames of one transfer sent and not yet acknowledged, at most.
pub const WINDOW: u32 = 4;
/// Bytes of a frame header.
pub const HEADER: usize = 16;
const VERSION: u8 = 1;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Part of a transfer.
    Data,
    /// The receiver got frame `seq` of a transfer: the sender may send one more.
    Ack,
    /// The coordinator no longer wants the answer.
    Cancel,
}

/// Which way a transfer goes: a request to a part, or its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Request,
    Answer,
}

/// One frame, borrowed from what arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: Kind,
    pub dir: Direction,
    /// The coordinator's number for the query (with the coordinator's node
    /// id, unique).
    pub id: u64,
    pub seq: u32,
    pub last: bool,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.payload.len());
        out.push(VERSION);
        out.push(match self.kind {
            Kind::Data => 1,
            Kind::Ack => 2,
            Kind::Cancel => 3,
        });
        out.push(match self.dir {
            Direction::Request => 1,
            Direction::Answer => 2,
        });
        out.push(u8::from(self.last));
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(self.payload);
        out
    }

    /// `None` for anything that is not a frame of this version.
    pub fn decode(bytes: &[u8]) -> Option<Frame<'_>> {
        if bytes.len() < HEADER || bytes[0] != VERSION {
            return None;
        }
        let kind = match bytes[1] {
            1 => Kind::Data,
            2 => Kind::Ack,
            3 => Kind::Cancel,
            _ => return None,
        };
        let dir = match bytes[2] {
            1 => Direction::Request,
            2 => Direction::Answer,
            _ => return None,
        };
        Some(Frame {
            kind,
            dir,
            last: bytes[3] != 0,
            seq: u32::from_le_bytes(bytes[4..8].try_into().ok()?),
            id: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
            payload: &bytes[HEADER..],
        })
    }
}

/// Reads what [`put_bytes`] and friends wrote.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Which command a part runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    Query,
    Top,
    /// A master's metric registry, for the others to adopt if newer
    /// (arguments: see `registry_copy::to_args`).
    Registry,
    /// Events of an INGEST whose listings this master owns (arguments:
    /// see `ingest_split::encode_event`); answered with each event's
    /// outcome in the head's `fields`.
    Ingest,
}

/// What a coordinator asks of one master: the command's arguments as the
/// client sent them (after the command name), the user to run them as,
/// and for an explicit set, the listings this master owns (which replace
/// the set in the arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: PartKind,
    pub user: Vec<u8>,
    pub args: Vec<Vec<u8>>,
    pub listings: Option<Vec<Vec<u8>>>,
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(match self.kind {
            PartKind::Query => 0,
            PartKind::Top => 1,
            PartKind::Registry => 2,
            PartKind::Ingest => 3,
        });
        put_bytes(&mut out, &self.user);
        out.extend_from_slice(&(self.args.len() as u32).to_le_bytes());
        for a in &self.args {
            put_bytes(&mut out, a);
        }
        match &self.listings {
            None => out.push(0),
            Some(ids) => {
                out.push(1);
                out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                for id in ids {
                    put_bytes(&mut out, id);
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Request> {
        let mut c = Cursor { bytes, pos: 0 };
        let kind = match c.u8()? {
            0 => PartKind::Query,
            1 => PartKind::Top,
            2 => PartKind::Registry,
            3 => PartKind::Ingest,
            _ => return None,
        };
        let user = c.bytes()?.to_vec();
        let argc = c.u32()? as usize;
        let mut args = Vec::with_capacity(argc.min(1024));
        for _ in 0..argc {
            args.push(c.bytes()?.to_vec());
        }
        let listings = match c.u8()? {
            0 => None,
            1 => {
                let n = c.u32()? as usize;
                let mut ids = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    ids.push(c.bytes()?.to_vec());
                }
                Some(ids)
            }
            _ => return None,
        };
        c.done().then_some(Request {
            kind,
            user,
            args,
            listings,
        })
    }
}

/// Under `RANK WILSON`, a part's first listing (in listing order) that is
/// not a proportion: the whole ranking is then an error naming the first
/// such listing of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub listing: Vec<u8>,
    pub numerator: i64,
    pub denominator: i64,
}

/// The first record of a part's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The part failed: the error's whole reply text.
    pub error: Option<String>,
    /// The counters the part summed (the plan's terms), in its order: the
    /// coordinator checks they are its own.
    pub fields: Vec<Vec<u8>>,
    /// The slots the part's node owned from start to end.
    pub slots: SlotSet,
    /// Day hashes examined.
    pub examined: u64,
    pub bad: Option<Bad>,
}

impl Head {
    pub fn failed(error: String) -> Head {
        Head {
            error: Some(error),
            fields: Vec::new(),
            slots: SlotSet::default(),
            examined: 0,
            bad: None,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match &self.error {
            Some(e) => {
                out.push(1);
                put_bytes(out, e.as_bytes());
            }
            None => {
                out.push(0);
                out.extend_from_slice(&(self.fields.len() as u32).to_le_bytes());
                for f in &self.fields {
                    put_bytes(out, f);
                }
                self.slots.to_bytes(out);
                out.extend_from_slice(&self.examined.to_le_bytes());
                match &self.bad {
                    None => out.push(0),
                    Some(b) => {
                        out.push(1);
                        put_bytes(out, &b.listing);
                        out.extend_from_slice(&b.numerator.to_le_bytes());
                        out.extend_from_slice(&b.denominator.to_le_bytes());
                    }
                }
            }
        }
    }

    /// The head at the start of an answer's first frame, and where its
    /// groups start.
    pub fn decode(bytes: &[u8]) -> Option<(Head, usize)> {
        let mut c = Cursor { bytes, pos: 0 };
        let head = match c.u8()? {
            1 => Head::failed(String::from_utf8_lossy(c.bytes()?).into_owned()),
            0 => {
                let n = c.u32()? as usize;
                let mut fields = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    fields.push(c.bytes()?.to_vec());
                }
                let slots = SlotSet::from_bytes(c.take(SLOT_SET_BYTES)?)?;
                let examined = c.i64()? as u64;
                let bad = match c.u8()? {
                    0 => None,
                    _ => Some(Bad {
                        listing: c.bytes()?.to_vec(),
                        numerator: c.i64()?,
                        denominator: c.i64()?,
                    }),
                };
                Head {
                    error: None,
                    fields,
                    slots,
                    examined,
                    bad,
                }
            }
            _ => return None,
        };
        Some((head, c.pos))
    }
}

/// One group of a part's answer: its day number (`i32::MIN`: none), its
/// listing (none when grouped away) and its sums, one per plan term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<'a> {
    pub day: i32,
    pub listing: Option<&'a [u8]>,
    pub sums: Vec<i64>,
}

/// Bytes one group record takes.
pub fn group_len(listing: Option<&[u8]>, width: usize) -> usize {
    1 + 4 + 4 + listing.map_or(0, <[u8]>::len) + 8 * width
}

/// Appends one group record.
pub fn put_group(out: &mut Vec<u8>, day: i32, listing: Option<&[u8]>, sums: &[i64]) {
    out.push(b'G');
    out.extend_from_slice(&day.to_le_bytes());
    match listing {
        Some(l) => put_bytes(out, l),
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
    for s in sums {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

/// The group records of one frame's payload (from `start`), `width` sums
/// each; `None` when the payload is damaged.
pub fn read_groups(bytes: &[u8], start: usize, width: usize) -> Option<Vec<Group<'_>>> {
    let mut c = Cursor { bytes, pos: start };
    let mut out = Vec::new();
    while !c.done() {
        if c.u8()? != b'G' {
            return None;
        }
        let day = c.i32()?;
        let listing = match c.u32()? {
            u32::MAX => None,
            n => Some(c.take(n as usize)?),
        };
        let mut sums = Vec::with_capacity(width);
        for _ in 0..width {
            sums.push(c.i64()?);
        }
        out.push(Group { day, listing, sums });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = Frame {
            kind: Kind::Data,
            dir: Direction::Answer,
            id: 0x0102_0304_0506_0708,
            seq: 7,
            last: true,
            payload: b"abc",
        };
        let bytes = f.encode();
        assert_eq!(bytes.len(), HEADER + 3);
        assert_eq!(Frame::decode(&bytes), Some(f));
        assert_eq!(Frame::decode(&bytes[..10]), None);
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert_eq!(Frame::decode(&wrong), None, "another version");
    }

    #[test]
    fn requests_round_trip() {
        let r = Request {
            kind: PartKind::Top,
            user: b"alice".to_vec(),
            args: vec![b"ctr".to_vec(), b"2015-12-01".to_vec()],
            listings: Some(vec![b"1".to_vec(), b"22".to_vec()]),
        };
        let bytes = r.encode();
        assert_eq!(Request::decode(&bytes), Some(r.clone()));
        assert_eq!(Request::decode(&bytes[..bytes.len() - 1]), None);
        let star = Request {
            listings: None,
            ..r
        };
        assert_eq!(Request::decode(&star.encode()), Some(star));
    }

    #[test]
    fn answers_round_trip() {
        let mut slots = SlotSet::default();
        slots.insert(5);
        let head = Head {
            error: None,
            fields: vec![b"click".to_vec(), b"/x/".to_vec()],
            slots,
            examined: 42,
            bad: Some(Bad {
                listing: b"7".to_vec(),
                numerator: 3,
                denominator: 2,
            }),
        };
        let mut out = Vec::new();
        head.encode(&mut out);
        let start = out.len();
        put_group(&mut out, 735_000, Some(b"12"), &[1, -2]);
        put_group(&mut out, i32::MIN, None, &[3, 4]);
        assert_eq!(
            out.len() - start,
            group_len(Some(b"12"), 2) + group_len(None, 2)
        );
        let (back, at) = Head::decode(&out).unwrap();
        assert_eq!((back, at), (head, start));
        let groups = read_groups(&out, start, 2).unwrap();
        assert_eq!(
            groups,
            [
                Group {
                    day: 735_000,
                    listing: Some(b"12"),
                    sums: vec![1, -2]
                },
                Group {
                    day: i32::MIN,
                    listing: None,
                    sums: vec![3, 4]
                },
            ]
        );
        assert_eq!(read_groups(&out[..out.len() - 1], start, 2), None);
        let failed = Head::failed("ERR no".into());
        let mut out = Vec::new();
        failed.encode(&mut out);
        assert_eq!(Head::decode(&out).unwrap().0, failed);
    }
}
