//! A job that continues after its command: its client blocked, one slice
//! of [`QUERY_SLICE`] per timer pass, the reply written to the blocked
//! client and sent when it is unblocked.

use std::time::{Duration, Instant};

use redis_module::{Context, RedisValue};

use super::{Job, Progress, State};
use crate::budget::QUERY_SLICE;
use crate::redis::blocked::BlockedReply;
use crate::redis::context::{caller_name, select_db, selected_db};
use crate::redis::reader::Reader;
use crate::redis::slices::{self, Sliced, Step};
use crate::stats;
use listingstats_core::{Error, Result};

/// A job running in slices, its client blocked until the reply is done.
struct Running {
    blocked: BlockedReply,
    db: i32,
    user: Option<Vec<u8>>,
    job: Job,
}

/// Blocks the job's client and runs the rest of the job in slices.
pub(super) fn start(ctx: &Context, job: Job) -> Result<RedisValue> {
    let blocked = BlockedReply::block(ctx)
        .ok_or_else(|| Error::invalid("cannot block the client for a long query"))?;
    slices::start(
        ctx,
        Running {
            blocked,
            db: selected_db(ctx),
            user: caller_name(ctx),
            job,
        },
    );
    stats::SLICED_QUERIES.add(1);
    Ok(RedisValue::NoReply)
}

/// Renders a job whose client is already blocked (a cluster-wide answer
/// whose parts are merged): the rest in slices.
/// What fits in this slice (until `deadline`) is done now.
pub fn continue_blocked(ctx: &Context, blocked: BlockedReply, job: Job, deadline: Instant) {
    let mut running = Running {
        blocked,
        db: job.db,
        user: None,
        job,
    };
    loop {
        if running.run(ctx, deadline) == Step::Done {
            return;
        }
        if Instant::now() >= deadline {
            return slices::start(ctx, running);
        }
    }
}

impl Running {
    /// Nobody waits for the answer: its client left, and no identical
    /// call joined it.
    fn gone(&self) -> bool {
        self.blocked.client_gone() && !self.job.has_waiters()
    }

    /// One slice of whatever state the job is in. Reading needs the
    /// caller's permissions (looked up again: the user may have changed);
    /// writing the reply needs only the blocked client.
    fn advance(&mut self, ctx: &Context, deadline: Instant) -> Result<Step> {
        let job = &mut self.job;
        let progress = match job.state {
            State::Planning(_) | State::Reading(_) | State::Scanning | State::ReadingHours(_) => {
                let reader = Reader::for_user(ctx, self.user.as_deref())?;
                job.step(ctx, Some(&reader), None, Some(deadline))?
            }
            State::Ordering(_) => job.step(ctx, None, None, Some(deadline))?,
            State::Ranking(_) | State::Rendering(_) | State::Done => {
                job.step(ctx, None, Some(&mut self.blocked.reply()), Some(deadline))?
            }
        };
        Ok(match progress {
            Progress::More => Step::More,
            Progress::Done => Step::Done,
        })
    }
}

impl Sliced for Running {
    fn slice_len(&self) -> Duration {
        QUERY_SLICE
    }

    fn what(&self) -> &'static str {
        "a query slice"
    }

    fn ready(&self) -> bool {
        self.gone() || self.job.could_start()
    }

    fn run(&mut self, ctx: &Context, deadline: Instant) -> Step {
        if self.gone() {
            return Step::Done; // Nobody to answer: stop reading.
        }
        match self.job.admitted() {
            Ok(true) => {}
            // Its turn under max-query-memory has not come.
            Ok(false) => return Step::Wait,
            Err(e) => {
                stats::ERRORS.add(1);
                self.blocked.reply().error(&e.reply_text());
                self.job.fail_shared(&e.reply_text());
                return Step::Done;
            }
        }
        stats::SLICES.add(1);
        select_db(ctx, self.db);
        // Counted as the blocked command's time (SLOWLOG, latency).
        let measuring = self.blocked.measure();
        let step = self.advance(ctx, deadline);
        drop(measuring);
        match step {
            Ok(step) => step,
            Err(e) => {
                stats::ERRORS.add(1);
                self.blocked.reply().error(&e.reply_text());
                self.job.fail_shared(&e.reply_text());
                Step::Done
            }
        }
    }

    fn failed(&mut self, _ctx: &Context) {
        stats::ERRORS.add(1);
        let text = "ERR listingstats internal error, see the server log";
        self.blocked.reply().error(text);
        self.job.fail_shared(text);
    }
}
