//! Interned listing ids: numbers of 4 bytes, freed and reused as entries go.

use rustc_hash::FxHashMap;

/// Interned listing ids, each counted by the index entries that use it.
///
/// An id whose count drops to 0 is freed and its number reused, so memory
/// follows what is indexed: writing then deleting many short-lived
/// listings leaves nothing behind. When fewer than a quarter of the
/// numbers are live, [`Index`](super::Index) compacts them (see `Interner::compact`).
#[derive(Default)]
pub struct Interner {
    ids: FxHashMap<Box<[u8]>, u32>,
    /// By number; an empty name is a free number (ids are never empty).
    pub(super) names: Vec<Box<[u8]>>,
    pub(super) uses: Vec<u32>,
    free: Vec<u32>,
}

impl Interner {
    pub fn intern(&mut self, listing: &[u8]) -> u32 {
        if let Some(&id) = self.ids.get(listing) {
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = listing.into();
                id
            }
            None => {
                self.names.push(listing.into());
                self.uses.push(0);
                self.names.len() as u32 - 1
            }
        };
        self.ids.insert(listing.into(), id);
        id
    }

    pub fn get(&self, listing: &[u8]) -> Option<u32> {
        self.ids.get(listing).copied()
    }

    pub fn name(&self, id: u32) -> &[u8] {
        &self.names[id as usize]
    }

    pub(super) fn used(&mut self, id: u32) {
        self.uses[id as usize] += 1;
    }

    /// One use fewer; at 0 frees the number (and says so), unless
    /// `keep`: then the number stays its listing's until [`Interner::release`].
    pub(super) fn unused(&mut self, id: u32, keep: bool) -> bool {
        let uses = &mut self.uses[id as usize];
        *uses = uses.saturating_sub(1);
        if *uses == 0 && !keep {
            return self.release(id);
        }
        false
    }

    /// Frees a number nothing uses (kept by [`Interner::unused`]); `true`
    /// when it was freed.
    pub(super) fn release(&mut self, id: u32) -> bool {
        if self.uses[id as usize] != 0 || self.names[id as usize].is_empty() {
            return false;
        }
        let name = std::mem::take(&mut self.names[id as usize]);
        self.ids.remove(&name);
        self.free.push(id);
        true
    }

    /// Room for `more` ids at once (a rebuild knows roughly how many keys
    /// it will see): growing the map of 600,000 ids step by step would
    /// rehash them all in one step.
    pub(super) fn reserve(&mut self, more: usize) {
        self.ids.reserve(more);
        self.names.reserve(more);
        self.uses.reserve(more);
    }

    /// Gives back what a reservation left unused, when that is cheap (few
    /// ids to rehash) and worth it.
    pub(super) fn trim(&mut self) {
        if self.ids.len() <= 65_536 && self.ids.capacity() > 4 * self.ids.len() + 1024 {
            self.ids.shrink_to_fit();
            self.names.shrink_to_fit();
            self.uses.shrink_to_fit();
        }
    }

    /// Interned ids now in use.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// True when most numbers are free: worth [`Interner::compact`].
    pub(super) fn sparse(&self) -> bool {
        self.names.len() > 1024 && self.len() * 4 < self.names.len()
    }

    /// Renumbers the live ids densely, keeping their order (so every
    /// sorted list of numbers stays sorted after [`Interner::compact`]'s
    /// map is applied), and returns the map old -> new (`u32::MAX`: free).
    pub(super) fn compact(&mut self) -> Vec<u32> {
        let mut map = vec![u32::MAX; self.names.len()];
        let mut names = Vec::with_capacity(self.len());
        let mut uses = Vec::with_capacity(self.len());
        let mut ids = FxHashMap::default();
        ids.reserve(self.len());
        for (old, name) in std::mem::take(&mut self.names).into_iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            map[old] = names.len() as u32;
            ids.insert(name.clone(), names.len() as u32);
            uses.push(self.uses[old]);
            names.push(name);
        }
        *self = Interner {
            ids,
            names,
            uses,
            free: Vec::new(),
        };
        map
    }

    pub(super) fn heap_bytes(&self) -> usize {
        let names: usize = self.names.iter().map(|n| 2 * n.len()).sum();
        // Slots of names (16) and uses (4); map entries (key 16 + value 4
        // + control byte, about 1/0.875 load); free numbers (4).
        names + self.names.capacity() * 20 + self.ids.capacity() * 24 + self.free.capacity() * 4
    }
}
