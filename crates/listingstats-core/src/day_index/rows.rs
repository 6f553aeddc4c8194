//! The query cache's part of one day: the cached rows of its listings,
//! aligned with the day's sorted listing numbers (see `day.rs`).

/// Makes room for `extra` more items, growing by a sixteenth instead of
/// doubling: a day's lists (`day.rs`) and rows are its memory, and a
/// doubled list of 600,000 rows would leave megabytes unused. Still
/// amortised O(1) per item.
pub(super) fn grow<T>(list: &mut Vec<T>, extra: usize) {
    if list.len() + extra > list.capacity() {
        list.reserve_exact(list.len() / 16 + extra.max(16));
    }
}

/// A cached value that is not known: the row must be read from its hash.
/// (A counter that really holds `i64::MIN` is then re-read every time:
/// correct, only not cached.)
pub const UNKNOWN: i64 = i64::MIN;

/// A listing of a cached day that has no row yet.
const NO_ROW: u32 = u32::MAX;

/// One day's cached rows, and their totals.
///
/// Rows are not kept in listing order: `rows[i]` is the row of the day's
/// `i`-th listing in `values`. A new listing in the middle of a day then
/// moves 8 bytes per entry (its number and its row's number), not its whole
/// row: a day of 600,000 listings written in any order stays cheap to add
/// to.
///
/// **Totals** (analytics on write): per column, the sum of the day's known
/// rows, kept by every change of a row (filled, written, forgotten,
/// removed). When every listing of the day has a known row, the totals
/// are the day's site-wide sums, exact: a `*` query by date or in total
/// takes them instead of reading the day's hashes.
pub(super) struct DayRows {
    /// Empty (nothing cached for this day), or aligned with the day's ids.
    rows: Vec<u32>,
    /// `stride` values per row; a row whose first value is [`UNKNOWN`] is
    /// not cached (free rows too).
    values: Vec<i64>,
    /// Rows no listing uses, for the next new one.
    free: Vec<u32>,
    /// The earliest expiry (ms since the epoch) seen among this day's
    /// hashes; `i64::MAX` for none.
    pub(super) expires: i64,
    /// Per column, the sum of the known rows (no sum of `i64`s a day can
    /// hold overflows an `i128`).
    totals: Vec<i128>,
    /// How many rows are known.
    known: usize,
}

impl Default for DayRows {
    fn default() -> Self {
        DayRows {
            rows: Vec::new(),
            values: Vec::new(),
            free: Vec::new(),
            expires: i64::MAX,
            totals: Vec::new(),
            known: 0,
        }
    }
}

impl DayRows {
    pub(super) fn is_on(&self) -> bool {
        !self.rows.is_empty()
    }

    /// The values of the listing at position `at`, if it has a row.
    pub(super) fn row(&self, at: usize, stride: usize) -> Option<&[i64]> {
        let r = *self.rows.get(at)?;
        if r == NO_ROW {
            return None;
        }
        let r = r as usize;
        self.values.get(r * stride..(r + 1) * stride)
    }

    /// Takes row `r` out of the totals (`sign` -1) or puts it in (+1), if
    /// it is known.
    fn count(&mut self, r: usize, stride: usize, sign: i128) {
        let Some(row) = self.values.get(r * stride..(r + 1) * stride) else {
            return;
        };
        if stride == 0 || row[0] == UNKNOWN {
            return;
        }
        for (t, &v) in self.totals.iter_mut().zip(row) {
            *t += sign * i128::from(v);
        }
        if sign > 0 {
            self.known += 1;
        } else {
            self.known -= 1;
        }
    }

    /// Changes the row of the listing at `at`, if it has one, keeping the
    /// totals: `f` may set values, or make the row unknown (its first
    /// value [`UNKNOWN`]; a row whose first value really is `i64::MIN` is
    /// not cacheable and becomes unknown whole).
    pub(super) fn update(&mut self, at: usize, stride: usize, f: impl FnOnce(&mut [i64])) {
        let Some(&r) = self.rows.get(at) else {
            return;
        };
        if r == NO_ROW {
            return;
        }
        let r = r as usize;
        self.count(r, stride, -1);
        let row = &mut self.values[r * stride..(r + 1) * stride];
        f(row);
        if row[0] == UNKNOWN {
            row.fill(UNKNOWN);
        }
        self.count(r, stride, 1);
    }

    /// Marks the row at `at` unknown.
    pub(super) fn forget(&mut self, at: usize, stride: usize) {
        self.update(at, stride, |row| row[0] = UNKNOWN);
    }

    /// Every row unknown: after its earliest expiry passed, each hash is
    /// read again (and reports its own expiry then).
    pub(super) fn forget_all(&mut self, stride: usize) {
        for row in self.values.chunks_exact_mut(stride.max(1)) {
            row[0] = UNKNOWN;
        }
        self.totals.iter_mut().for_each(|t| *t = 0);
        self.known = 0;
        self.expires = i64::MAX;
    }

    /// Starts caching a day of `listings` listings: none has a row yet. The
    /// values get room for every listing, untouched until filled: a day of
    /// 600,000 listings starts in one small step.
    pub(super) fn start(&mut self, listings: usize, stride: usize) {
        self.rows = vec![NO_ROW; listings];
        self.values = Vec::with_capacity(listings * stride);
        self.free = Vec::new();
        self.totals = vec![0; stride];
        self.known = 0;
    }

    /// Stops caching.
    pub(super) fn clear(&mut self) {
        self.rows = Vec::new();
        self.values = Vec::new();
        self.free = Vec::new();
        self.expires = i64::MAX;
        self.totals = Vec::new();
        self.known = 0;
    }

    /// Sets the row of the listing at `at` (made if it has none).
    pub(super) fn set(&mut self, at: usize, stride: usize, values: &[i64]) {
        if self.rows[at] == NO_ROW {
            self.rows[at] = match self.free.pop() {
                Some(r) => r,
                None => {
                    grow(&mut self.values, stride);
                    self.values.extend(std::iter::repeat_n(UNKNOWN, stride));
                    (self.values.len() / stride.max(1) - 1) as u32
                }
            };
        }
        self.update(at, stride, |row| row.copy_from_slice(values));
    }

    /// A new listing at position `at`: no row until read.
    pub(super) fn insert(&mut self, at: usize) {
        grow(&mut self.rows, 1);
        self.rows.insert(at, NO_ROW);
    }

    /// Frees the row of the listing at position `at`. When most rows are
    /// free, the day stops caching: queries refill it.
    pub(super) fn remove(&mut self, at: usize, stride: usize) {
        self.forget(at, stride);
        let r = self.rows.remove(at);
        if r == NO_ROW {
            return;
        }
        self.free.push(r);
        if self.free.len() > 64 && self.free.len() > self.rows.len() {
            self.clear();
        }
    }

    pub(super) fn shrink_to(&mut self, len: usize) {
        self.rows.shrink_to(len);
    }

    /// The day's sums per column when every one of its `listings` listings
    /// has a known row (and none has expired by `now_ms`); else `None`.
    pub(super) fn totals(&self, listings: usize, now_ms: i64) -> Option<&[i128]> {
        (self.is_on() && self.known == listings && listings > 0 && self.expires > now_ms)
            .then_some(&self.totals[..])
    }

    /// Heap bytes: values, row numbers, free rows.
    pub(super) fn heap_bytes(&self) -> usize {
        self.values.capacity() * 8 + (self.rows.capacity() + self.free.capacity()) * 4
    }
}
