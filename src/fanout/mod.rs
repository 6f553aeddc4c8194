//! Cluster-wide QUERY, TOP, METRIC and INGEST: any node answers for the
//! whole cluster.
//!
//! The node a client asks (the coordinator) finds the masters that own the
//! listings (every master for `*`), sends each its part over the cluster
//! bus, and blocks the client. Each master runs its part with the ordinary
//! engine, in slices, as the user who asked, and sends back its groups'
//! sums in bounded frames. The coordinator checks that the parts covered
//! every slot exactly once, adds the sums (ratios of sums, never averages
//! of ratios), and renders the answer as one node holding all the data
//! would. The pure half (frames, splitting, coverage, merging) is the
//! core's `fanout`.
//!
//! | file | what |
//! |---|---|
//! | `gather.rs` | the coordinator: asking, waiting, checking, merging |
//! | `announce.rs` | metric definitions sent to every master, and kept in step |
//! | `ingest.rs` | INGEST of events whose listings live on several masters |
//! | `part.rs` | a master's part: running it, answering |
//! | `transfer.rs` | frames with flow control over the bus |

mod announce;
mod gather;
pub mod ingest;
mod part;
mod transfer;

use redis_module::Context;

use crate::redis::bus;
use crate::redis::cluster;
use listingstats_core::fanout::{Direction, Frame, Kind};

pub use announce::{announce, Answer};
use std::sync::Arc;

use redis_module::RedisValue;

use crate::engine::{self, Asked};
use crate::redis::reader::Reader;
use listingstats_core::metrics::Metric;
use listingstats_core::settings::Settings;
use listingstats_core::Result;

/// Answers a QUERY or TOP (`raw`: its arguments as sent): on a cluster,
/// when other masters hold some of its listings, by asking them
/// (`gather.rs`); otherwise here. `share`: identical calls may take the
/// answer (`crate::share`).
pub fn answer(
    ctx: &Context,
    raw: &[&[u8]],
    settings: Arc<Settings>,
    registry: Vec<Metric>,
    asked: Asked<'_>,
    share: Option<crate::share::Slot>,
) -> Result<RedisValue> {
    if gather::needed(ctx, &asked.listings)? {
        return gather::start(ctx, raw, settings, asked, share);
    }
    let reader = Reader::new(ctx);
    let mut job = asked.job(ctx, &reader, settings, registry)?;
    job.share_with(share);
    engine::run(ctx, &reader, job)
}

use std::cell::Cell;

thread_local! {
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
}

/// A number for a new request of this node (with its node id, unique).
fn next_id() -> u64 {
    NEXT_ID.with(|n| n.replace(n.get() + 1))
}

/// The module's receiver of bus messages.
pub struct Bus;

impl bus::Receiver for Bus {
    fn receive(ctx: &Context, sender: &str, bytes: &[u8]) {
        let Some(frame) = Frame::decode(bytes) else {
            return;
        };
        match (frame.kind, frame.dir) {
            (Kind::Data, dir) => {
                transfer::control(ctx, sender, Kind::Ack, dir, frame.id, frame.seq);
                match dir {
                    Direction::Request => part::on_request(ctx, sender, &frame),
                    Direction::Answer => {
                        if !gather::on_answer(ctx, sender, &frame)
                            && !ingest::on_answer(ctx, sender, &frame)
                        {
                            announce::on_answer(sender, &frame);
                        }
                    }
                }
            }
            (Kind::Ack, dir) => {
                if !transfer::acked(ctx, sender, dir, frame.id) && dir == Direction::Request {
                    gather::unreachable(ctx, sender, frame.id);
                }
            }
            (Kind::Cancel, _) => {
                part::cancel(sender, frame.id);
                transfer::stop(sender, Direction::Answer, frame.id);
            }
        }
    }
}

/// On a cluster node, starts listening to the other nodes (at load).
pub fn init(ctx: &Context) {
    if cluster::enabled() {
        bus::init::<Bus>(ctx);
        announce::start_sync(ctx);
    }
}

/// Cluster-wide queries waiting for parts, and transfers under way (INFO).
pub fn under_way() -> (usize, usize) {
    (gather::waiting(), transfer::under_way())
}
