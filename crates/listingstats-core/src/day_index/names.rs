//! The listing ids of a query, packed in one buffer.

/// Listing ids packed in one buffer: the names of a query (600,000 for a
/// big day) cost two allocations, not one each, to make and to free.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListingNames {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl ListingNames {
    /// Room for `names` more names of `bytes` bytes in all.
    pub fn reserve(&mut self, names: usize, bytes: usize) {
        self.ends.reserve(names);
        self.bytes.reserve(bytes);
    }

    /// Adds a name; returns its position.
    pub fn push(&mut self, name: &[u8]) -> u32 {
        self.bytes.extend_from_slice(name);
        self.ends.push(self.bytes.len());
        (self.ends.len() - 1) as u32
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl std::ops::Index<usize> for ListingNames {
    type Output = [u8];
    fn index(&self, i: usize) -> &[u8] {
        self.get(i)
    }
}

impl<'a> FromIterator<&'a [u8]> for ListingNames {
    fn from_iter<I: IntoIterator<Item = &'a [u8]>>(iter: I) -> Self {
        let mut names = ListingNames::default();
        for name in iter {
            names.push(name);
        }
        names
    }
}
