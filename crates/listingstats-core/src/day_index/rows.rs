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

/// One day's cached rows.
///
/// Rows are not kept in listing order: `rows[i]` is the row of the day's
/// `i`-th listing in `values`. A new listing in the middle of a day then
/// moves 8 bytes per entry (its number and its row's number), not its whole
/// row: a day of 600,000 listings written in any order stays cheap to add
/// to.
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
}

impl Default for DayRows {
    fn default() -> Self {
        DayRows {
            rows: Vec::new(),
            values: Vec::new(),
            free: Vec::new(),
            expires: i64::MAX,
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

    pub(super) fn row_mut(&mut self, at: usize, stride: usize) -> Option<&mut [i64]> {
        let r = *self.rows.get(at)?;
        if r == NO_ROW {
            return None;
        }
        let r = r as usize;
        self.values.get_mut(r * stride..(r + 1) * stride)
    }

    /// Marks the row at `at` unknown.
    pub(super) fn forget(&mut self, at: usize, stride: usize) {
        if let Some(row) = self.row_mut(at, stride) {
            row[0] = UNKNOWN;
        }
    }

    /// Every row unknown: after its earliest expiry passed, each hash is
    /// read again (and reports its own expiry then).
    pub(super) fn forget_all(&mut self, stride: usize) {
        for row in self.values.chunks_exact_mut(stride.max(1)) {
            row[0] = UNKNOWN;
        }
        self.expires = i64::MAX;
    }

    /// Starts caching a day of `listings` listings: none has a row yet. The
    /// values get room for every listing, untouched until filled: a day of
    /// 600,000 listings starts in one small step.
    pub(super) fn start(&mut self, listings: usize, stride: usize) {
        self.rows = vec![NO_ROW; listings];
        self.values = Vec::with_capacity(listings * stride);
        self.free = Vec::new();
    }

    /// Stops caching.
    pub(super) fn clear(&mut self) {
        self.rows = Vec::new();
        self.values = Vec::new();
        self.free = Vec::new();
        self.expires = i64::MAX;
    }

    /// The row of the listing at `at`, made (unknown) if it has none.
    pub(super) fn make_row(&mut self, at: usize, stride: usize) -> &mut [i64] {
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
        let r = self.rows[at] as usize;
        &mut self.values[r * stride..(r + 1) * stride]
    }

    /// A new listing at position `at`: no row until read.
    pub(super) fn insert(&mut self, at: usize) {
        grow(&mut self.rows, 1);
        self.rows.insert(at, NO_ROW);
    }

    /// Frees the row of the listing at position `at`. When most rows are
    /// free, the day stops caching: queries refill it.
    pub(super) fn remove(&mut self, at: usize, stride: usize) {
        let r = self.rows.remove(at);
        if r == NO_ROW {
            return;
        }
        if let Some(v) = self.values.get_mut(r as usize * stride) {
            *v = UNKNOWN;
        }
        self.free.push(r);
        if self.free.len() > 64 && self.free.len() > self.rows.len() {
            self.clear();
        }
    }

    pub(super) fn shrink_to(&mut self, len: usize) {
        self.rows.shrink_to(len);
    }

    /// Heap bytes: values, row numbers, free rows.
    pub(super) fn heap_bytes(&self) -> usize {
        self.values.capacity() * 8 + (self.rows.capacity() + self.free.capacity()) * 4
    }
}
