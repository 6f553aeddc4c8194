//! Transfers between nodes over the cluster bus, with flow control: at
//! most [`WINDOW`] frames of one transfer are sent and not yet
//! acknowledged, and each frame is made only when it may be sent, so a
//! large answer is never built (nor queued on the bus) in one step.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use redis_module::Context;
use rustc_hash::FxHashMap;

use super::Bus;
use crate::redis::bus;
use listingstats_core::fanout::{Direction, Frame, Kind, HEADER, MAX_FRAME, WINDOW};

/// Makes the frames of one transfer, one when asked.
pub trait Source: 'static {
    /// The next frame's payload (at most `max` bytes) and whether it is
    /// the last.
    fn next_frame(&mut self, max: usize) -> (Vec<u8>, bool);
}

/// A whole payload known up front (a request, an error).
pub struct Bytes {
    pub bytes: Vec<u8>,
    pub at: usize,
}

impl Source for Bytes {
    fn next_frame(&mut self, max: usize) -> (Vec<u8>, bool) {
        let end = self.bytes.len().min(self.at + max);
        let out = self.bytes[self.at..end].to_vec();
        self.at = end;
        (out, end == self.bytes.len())
    }
}

struct Outgoing {
    source: Box<dyn Source>,
    next_seq: u32,
    in_flight: u32,
    finished: bool,
    touched: Instant,
}

type Key = (String, Direction, u64);

resident! {
    static OUT: RefCell<FxHashMap<Key, Outgoing>> = RefCell::default();
}

/// A transfer nobody acknowledged for this long is dropped (its receiver
/// is gone): what it holds, a part's sums, is freed.
const ABANDONED: Duration = Duration::from_secs(1200);

/// Sends frame `seq` or a control frame to `peer`; `false` when the bus
/// has no link to it.
pub fn control(ctx: &Context, peer: &str, kind: Kind, dir: Direction, id: u64, seq: u32) -> bool {
    let frame = Frame {
        kind,
        dir,
        id,
        seq,
        last: false,
        payload: &[],
    };
    bus::send::<Bus>(ctx, peer, frame.encode())
}

/// Starts sending `source` to `peer`; `false` when the first frames could
/// not be sent (no link to the node).
pub fn start(ctx: &Context, peer: &str, dir: Direction, id: u64, source: Box<dyn Source>) -> bool {
    OUT.with(|out| {
        out.borrow_mut()
            .retain(|_, o| o.touched.elapsed() < ABANDONED)
    });
    let key = (peer.to_string(), dir, id);
    let outgoing = Outgoing {
        source,
        next_seq: 0,
        in_flight: 0,
        finished: false,
        touched: Instant::now(),
    };
    pump(ctx, key, outgoing)
}

/// Sends what the window allows, then keeps the transfer until its last
/// frame is acknowledged.
fn pump(ctx: &Context, key: Key, mut o: Outgoing) -> bool {
    while !o.finished && o.in_flight < WINDOW {
        let (payload, last) = o.source.next_frame(MAX_FRAME - HEADER);
        let frame = Frame {
            kind: Kind::Data,
            dir: key.1,
            id: key.2,
            seq: o.next_seq,
            last,
            payload: &payload,
        };
        if !bus::send::<Bus>(ctx, &key.0, frame.encode()) {
            return false;
        }
        o.next_seq += 1;
        o.in_flight += 1;
        o.finished = last;
    }
    o.touched = Instant::now();
    if !(o.finished && o.in_flight == 0) {
        OUT.with(|out| out.borrow_mut().insert(key, o));
    }
    true
}

/// `peer` acknowledged a frame: one more may go. `false` when sending it
/// failed.
pub fn acked(ctx: &Context, peer: &str, dir: Direction, id: u64) -> bool {
    let key = (peer.to_string(), dir, id);
    let Some(mut o) = OUT.with(|out| out.borrow_mut().remove(&key)) else {
        return true;
    };
    o.in_flight = o.in_flight.saturating_sub(1);
    pump(ctx, key, o)
}

/// Stops a transfer (its receiver no longer wants it).
pub fn stop(peer: &str, dir: Direction, id: u64) {
    OUT.with(|out| out.borrow_mut().remove(&(peer.to_string(), dir, id)));
}

/// Transfers under way (INFO).
pub fn under_way() -> usize {
    OUT.with(|out| out.borrow().len())
}
