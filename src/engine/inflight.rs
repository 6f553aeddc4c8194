//! The memory bound on queries in flight (`max-query-memory`).
//!
//! A query that continues after its command holds memory between its
//! slices: its cells, its groups' sums, and the reply written so far (kept
//! by the server until the client is unblocked). Before it does any work a
//! query reserves what it will hold at most, estimated from the index in
//! O(days) ([`Need`]); the reservations of all queries together stay
//! within `max-query-memory`. A query that does not fit waits its turn,
//! its client blocked and holding next to nothing; turns are first come,
//! first served, so a big query is never passed forever by small ones. A
//! query that alone would hold more than the setting is refused with an
//! error naming it. Queries too small to matter ([`SMALL`]) take no ticket:
//! what they hold is bounded by what fits in a command's few milliseconds.
//!
//! Cluster parts reserve on their master like any query; a coordinator's
//! merged answer is counted once its parts arrived (it cannot wait then).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use listingstats_core::{Error, Result};

/// Estimates under this many bytes need no ticket.
pub const SMALL: u64 = 256 << 10;

/// Bytes reserved by the queries admitted now.
static HELD: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static NEXT: Cell<u64> = const { Cell::new(1) };
}

resident! {
    /// The numbers of the queries waiting for their turn, in order.
    static LINE: RefCell<BTreeSet<u64>> = RefCell::default();
}

/// A query's reservation, given back when it is dropped.
pub struct Ticket {
    bytes: u64,
}

impl Ticket {
    /// Counts `bytes` at once, whatever the bound (a merged answer whose
    /// parts already arrived).
    fn force(bytes: u64) -> Ticket {
        HELD.fetch_add(bytes, Ordering::Relaxed);
        Ticket { bytes }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        HELD.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

enum Place {
    /// Not asked yet.
    New,
    Waiting(u64),
    /// Admitted, holding its ticket (none for a small query) until dropped.
    Admitted(#[allow(dead_code)] Option<Ticket>),
}

/// What a query will hold at most, and its place.
pub struct Need {
    bytes: u64,
    place: Place,
}

impl Need {
    pub fn new(bytes: u64) -> Need {
        Need {
            bytes,
            place: Place::New,
        }
    }

    /// Counted at once, whatever the bound.
    pub fn forced(bytes: u64) -> Need {
        Need {
            bytes,
            place: Place::Admitted(Some(Ticket::force(bytes))),
        }
    }

    /// Whether the query may work now, taking its ticket when its turn
    /// came and it fits under `cap`; `Err` when it alone holds more than
    /// `cap`.
    pub fn admitted(&mut self, cap: i64) -> Result<bool> {
        let cap = cap.max(0) as u64;
        let number = match self.place {
            Place::Admitted(_) => return Ok(true),
            _ if self.bytes < SMALL => {
                self.place = Place::Admitted(None);
                return Ok(true);
            }
            _ if self.bytes > cap => return Err(too_big(self.bytes, cap)),
            Place::New => None,
            Place::Waiting(n) => Some(n),
        };
        let first = LINE.with(|l| l.borrow().first().copied());
        let my_turn = match number {
            Some(n) => first == Some(n),
            None => first.is_none(),
        };
        if my_turn && fits(self.bytes, cap) {
            if let Some(n) = number {
                LINE.with(|l| l.borrow_mut().remove(&n));
            }
            HELD.fetch_add(self.bytes, Ordering::Relaxed);
            self.place = Place::Admitted(Some(Ticket { bytes: self.bytes }));
            return Ok(true);
        }
        if number.is_none() {
            let n = NEXT.with(|c| c.replace(c.get() + 1));
            LINE.with(|l| l.borrow_mut().insert(n));
            self.place = Place::Waiting(n);
        }
        Ok(false)
    }

    /// Whether [`Need::admitted`] could admit it now (a cheap look, for a
    /// waiting query: is it worth running?).
    pub fn could_start(&self, cap: i64) -> bool {
        match self.place {
            Place::Waiting(n) => {
                LINE.with(|l| l.borrow().first() == Some(&n)) && fits(self.bytes, cap as u64)
                    || self.bytes > cap.max(0) as u64
            }
            _ => true,
        }
    }
}

impl Drop for Need {
    fn drop(&mut self) {
        if let Place::Waiting(n) = self.place {
            LINE.with(|l| l.borrow_mut().remove(&n));
        }
    }
}

fn fits(bytes: u64, cap: u64) -> bool {
    HELD.load(Ordering::Relaxed).saturating_add(bytes) <= cap
}

fn too_big(bytes: u64, cap: u64) -> Error {
    Error::invalid(format!(
        "this query would hold about {} MB while it runs, more than max-query-memory ({} MB): \
         narrow its dates or listings, or raise listingstats.max-query-memory",
        bytes.div_ceil(1 << 20),
        cap >> 20
    ))
}

/// Bytes reserved by queries now, and queries waiting for their turn (INFO).
pub fn usage() -> (u64, usize) {
    (
        HELD.load(Ordering::Relaxed),
        LINE.with(|l| l.borrow().len()),
    )
}
