//! Sets of hash slots, and the check that parts covered each slot once.

use crate::cluster::SLOTS;

/// A set of the 16,384 hash slots, as a bitmap.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotSet([u64; SLOTS / 64]);

impl std::fmt::Debug for SlotSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlotSet({} slots)", self.len())
    }
}

impl Default for SlotSet {
    fn default() -> Self {
        SlotSet([0; SLOTS / 64])
    }
}

/// Bytes of a [`SlotSet`] on the wire.
pub const SLOT_SET_BYTES: usize = SLOTS / 8;

impl SlotSet {
    pub fn insert(&mut self, slot: u16) {
        let s = usize::from(slot) % SLOTS;
        self.0[s / 64] |= 1 << (s % 64);
    }

    pub fn contains(&self, slot: u16) -> bool {
        let s = usize::from(slot) % SLOTS;
        self.0[s / 64] & (1 << (s % 64)) != 0
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn to_bytes(&self, out: &mut Vec<u8>) {
        for w in &self.0 {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<SlotSet> {
        if bytes.len() != SLOT_SET_BYTES {
            return None;
        }
        let mut set = SlotSet::default();
        for (w, chunk) in set.0.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_le_bytes(chunk.try_into().ok()?);
        }
        Some(set)
    }
}

/// How the parts' slots cover the cluster.
#[derive(Debug, PartialEq, Eq)]
pub enum Coverage {
    /// Every slot exactly once.
    Exact,
    /// A slot no part covered (moved away meanwhile, or unassigned).
    Missing(u16),
    /// A slot two parts covered (moved between them meanwhile).
    Twice(u16),
}

/// Whether `parts` cover every slot exactly once (a `*` answer).
pub fn coverage<'a>(parts: impl IntoIterator<Item = &'a SlotSet>) -> Coverage {
    let mut seen = [0u64; SLOTS / 64];
    for part in parts {
        for (i, (s, p)) in seen.iter_mut().zip(part.0.iter()).enumerate() {
            let twice = *s & p;
            if twice != 0 {
                return Coverage::Twice((i * 64 + twice.trailing_zeros() as usize) as u16);
            }
            *s |= p;
        }
    }
    match seen.iter().position(|&w| w != u64::MAX) {
        Some(i) => Coverage::Missing((i * 64 + (!seen[i]).trailing_zeros() as usize) as u16),
        None => Coverage::Exact,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: u16, to: u16) -> SlotSet {
        let mut s = SlotSet::default();
        (from..=to).for_each(|n| s.insert(n));
        s
    }

    #[test]
    fn exact_missing_twice() {
        let (a, b, c) = (range(0, 5460), range(5461, 10922), range(10923, 16383));
        assert_eq!(coverage([&a, &b, &c]), Coverage::Exact);
        assert_eq!(coverage([&a, &c]), Coverage::Missing(5461));
        let b2 = range(5000, 10922);
        assert_eq!(coverage([&a, &b2, &c]), Coverage::Twice(5000));
        assert_eq!(a.len(), 5461);
        let mut bytes = Vec::new();
        b.to_bytes(&mut bytes);
        assert_eq!(bytes.len(), SLOT_SET_BYTES);
        assert_eq!(SlotSet::from_bytes(&bytes), Some(b));
        assert_eq!(SlotSet::from_bytes(&bytes[1..]), None);
    }
}
