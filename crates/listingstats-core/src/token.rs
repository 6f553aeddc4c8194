//! Short byte strings kept inline: listing ids, event names and ids, and
//! the day-hash names and fields built from them. A batch of events parsed
//! and summed this way allocates nothing for its names in the usual case
//! (every name up to [`INLINE`] bytes): inside Redis each allocation goes
//! through `RedisModule_Alloc`, about 280 instructions with its free.

use smallvec::SmallVec;

/// Bytes held in place before a [`Token`] spills to the heap.
pub const INLINE: usize = 40;

/// A listing id, event name, event id, key or field.
pub type Token = SmallVec<[u8; INLINE]>;

/// An event's listings: two in place (an event usually names one or two).
pub type Listings = SmallVec<[Token; 2]>;

/// The token of these bytes.
pub fn token(bytes: &[u8]) -> Token {
    Token::from_slice(bytes)
}

/// The decimal text of `n` as a token (a listing or event id given as a
/// JSON integer).
pub fn int_token(n: i64) -> Token {
    token(itoa::Buffer::new().format(n).as_bytes())
}

/// Where bytes can be appended: a `Vec<u8>` or a [`Token`] (key names are
/// written into either).
pub trait ByteSink {
    fn put(&mut self, bytes: &[u8]);
}

impl ByteSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl<const N: usize> ByteSink for SmallVec<[u8; N]> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tokens_stay_inline_and_long_ones_spill() {
        assert!(!token(&[b'a'; INLINE]).spilled());
        assert!(token(&[b'a'; INLINE + 1]).spilled());
        assert_eq!(&int_token(-42)[..], b"-42");
        assert_eq!(&int_token(i64::MAX)[..], b"9223372036854775807");
        let mut key = token(b"2015-12-22");
        key.put(b"_7");
        let mut v = Vec::new();
        v.put(&key);
        assert_eq!(v, b"2015-12-22_7");
    }
}
