//! Redis Cluster: hash slots, slot tags, and which slots this node serves.
//!
//! On a cluster every key the module writes must be in a slot this node
//! owns. Day hashes use the `tagged` layout, so a listing's days share the
//! slot of the listing id. The module's own keys are kept per slot too: a
//! key named with a *slot tag* (`{tag}` where `key_slot(tag) == slot`) lives
//! in that slot and moves with it when the cluster is resharded.
//!
//! [`ClusterView`] is this node's reading of `CLUSTER NODES`: who owns each
//! slot, and which slots are being migrated from or imported to this node.

use std::sync::OnceLock;

use rustc_hash::FxHashMap;

use super::error::{Error, Result};

pub const SLOTS: usize = 16384;

static XMODEM: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The hash slot of a key, as Redis computes it: CRC16 (XMODEM) of the key,
/// or of the first non-empty `{...}` in it, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let len = rest.iter().position(|&b| b == b'}')?;
            (len > 0).then(|| &rest[..len])
        })
        .unwrap_or(key);
    XMODEM.checksum(hashed) & 0x3fff
}

/// The shortest string (digits and lower-case letters, first in that
/// order) that hashes to `slot`. Part of stored key names, so the order of
/// the search must never change; a test pins values.
pub fn slot_tag(slot: u16) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut tags: Vec<Option<String>> = vec![None; SLOTS];
        let mut left = SLOTS;
        let mut word: Vec<u8> = Vec::new();
        'lengths: for len in 1..=5 {
            word.clear();
            word.resize(len, 0);
            loop {
                let text: Vec<u8> = word.iter().map(|&i| ALPHABET[i as usize]).collect();
                let slot = usize::from(key_slot(&text));
                if tags[slot].is_none() {
                    tags[slot] = Some(String::from_utf8(text).unwrap_or_default());
                    left -= 1;
                    if left == 0 {
                        break 'lengths;
                    }
                }
                // The next word of this length, as an odometer.
                let mut i = len;
                loop {
                    if i == 0 {
                        continue 'lengths;
                    }
                    i -= 1;
                    word[i] += 1;
                    if usize::from(word[i]) < ALPHABET.len() {
                        break;
                    }
                    word[i] = 0;
                }
            }
        }
        tags.into_iter().map(Option::unwrap_or_default).collect()
    });
    &tags[usize::from(slot) % SLOTS]
}

/// How one slot stands on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Owned here and not moving: read and write.
    Here,
    /// Owned by the node at this address.
    Moved(String),
    /// Being migrated from this node, or imported into it: its keys are
    /// split between two nodes until the reshard finishes.
    Moving,
    /// No node owns it.
    Unassigned,
}

impl Route {
    /// `Ok` for [`Route::Here`]; otherwise the error the server itself
    /// would give, with its code first (`MOVED slot host:port`,
    /// `TRYAGAIN ...`, `CLUSTERDOWN ...`) so cluster clients recognise it.
    pub fn check(&self, slot: u16, what: &str) -> Result<()> {
        match self {
            Route::Here => Ok(()),
            Route::Moved(addr) => Err(Error::Cluster(format!("MOVED {slot} {addr}"))),
            Route::Moving => Err(Error::Cluster(format!(
                "TRYAGAIN slot {slot} ({what}) is being resharded; retry when it has moved"
            ))),
            Route::Unassigned => Err(Error::Cluster(format!(
                "CLUSTERDOWN Hash slot {slot} ({what}) not served"
            ))),
        }
    }
}

/// This node's reading of `CLUSTER NODES`.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Index into `addrs` per slot; `u16::MAX` when unassigned.
    owner: Vec<u16>,
    addrs: Vec<String>,
    /// Node ids (40 hex characters), as `addrs`.
    ids: Vec<String>,
    me: u16,
    /// The node whose data this one holds: itself, or its master when it
    /// is a replica.
    data_of: u16,
    /// Slots being migrated from or imported to this node.
    moving: FxHashMap<u16, ()>,
}

impl ClusterView {
    /// Parses `CLUSTER NODES` output; `None` when it names no `myself`.
    pub fn parse(text: &str) -> Option<ClusterView> {
        let mut view = ClusterView {
            owner: vec![u16::MAX; SLOTS],
            ..ClusterView::default()
        };
        let mut mine: Option<u16> = None;
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_ascii_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() >= 8)
            .collect();
        for fields in &lines {
            let index = u16::try_from(view.addrs.len()).ok()?;
            // `ip:port@cport[,hostname]`: clients connect to ip:port.
            let addr = fields[1].split(['@', ',']).next().unwrap_or_default();
            view.addrs.push(addr.to_string());
            view.ids.push(fields[0].to_string());
            if fields[2].split(',').any(|f| f == "myself") {
                mine = Some(index);
            }
        }
        view.me = mine?;
        view.data_of = view.me;
        if let Some(master) = lines.get(usize::from(view.me)).map(|f| f[3]) {
            if let Some(i) = view.ids.iter().position(|id| id == master) {
                view.data_of = i as u16;
            }
        }
        for (index, fields) in lines.iter().enumerate() {
            let index = u16::try_from(index).ok()?;
            for slot in &fields[8..] {
                if let Some(inner) = slot.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                    // `[slot->-id]` migrating, `[slot-<-id]` importing.
                    let number = inner.split('-').next().and_then(|n| n.parse::<u16>().ok());
                    if let Some(n) = number.filter(|&n| usize::from(n) < SLOTS) {
                        if index == view.me {
                            view.moving.insert(n, ());
                        }
                    }
                    continue;
                }
                let (from, to) = match slot.split_once('-') {
                    Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
                    None => {
                        let n = slot.parse::<usize>().ok()?;
                        (n, n)
                    }
                };
                for n in from..=to.min(SLOTS - 1) {
                    view.owner[n] = index;
                }
            }
        }
        Some(view)
    }

    pub fn route(&self, slot: u16) -> Route {
        let slot = usize::from(slot) % SLOTS;
        match self.owner.get(slot).copied() {
            Some(owner) if owner == self.me => {
                if self.moving.contains_key(&(slot as u16)) {
                    Route::Moving
                } else {
                    Route::Here
                }
            }
            // Importing into this node: its keys are not all here yet.
            _ if self.moving.contains_key(&(slot as u16)) => Route::Moving,
            Some(owner) if owner != u16::MAX => self
                .addrs
                .get(usize::from(owner))
                .map_or(Route::Unassigned, |a| Route::Moved(a.clone())),
            _ => Route::Unassigned,
        }
    }

    /// The node that owns `slot`, if any (an index for [`ClusterView::id`]).
    pub fn owner(&self, slot: u16) -> Option<u16> {
        self.owner
            .get(usize::from(slot))
            .copied()
            .filter(|&o| o != u16::MAX)
    }

    /// Every node that owns a slot (the masters), in node order.
    pub fn masters(&self) -> Vec<u16> {
        let mut out: Vec<u16> = Vec::new();
        for &o in &self.owner {
            if o != u16::MAX && !out.contains(&o) {
                out.push(o);
            }
        }
        out.sort_unstable();
        out
    }

    /// This node's index.
    pub fn me(&self) -> u16 {
        self.me
    }

    /// The id of node `node` (40 hex characters).
    pub fn id(&self, node: u16) -> &str {
        self.ids.get(usize::from(node)).map_or("", String::as_str)
    }

    /// The address clients use for node `node` (`ip:port`).
    pub fn addr(&self, node: u16) -> &str {
        self.addrs.get(usize::from(node)).map_or("", String::as_str)
    }

    /// The slots node `node` owns.
    pub fn slots_of(&self, node: u16) -> crate::fanout::SlotSet {
        let mut set = crate::fanout::SlotSet::default();
        for (slot, &o) in self.owner.iter().enumerate() {
            if o == node {
                set.insert(slot as u16);
            }
        }
        set
    }

    /// Whether `listing` is not served here but by another master (or by
    /// none): a query or batch naming it must ask the others.
    pub fn elsewhere(&self, listing: &[u8]) -> bool {
        matches!(
            self.route(key_slot(listing)),
            Route::Moved(_) | Route::Unassigned
        )
    }

    /// Whether this node owns `slot` (moving or not).
    pub fn owns(&self, slot: u16) -> bool {
        self.owner.get(usize::from(slot)) == Some(&self.me)
    }

    /// The slots this node owns, ascending.
    pub fn owned(&self) -> impl Iterator<Item = u16> + '_ {
        (0..SLOTS as u16).filter(|&s| self.owns(s))
    }

    /// The slots whose keys this node holds: its own, or on a replica its
    /// master's.
    pub fn served(&self) -> impl Iterator<Item = u16> + '_ {
        (0..SLOTS as u16).filter(|&s| self.owner.get(usize::from(s)) == Some(&self.data_of))
    }

    /// The slots marked as moving out of or into this node, ascending, each
    /// with whether this node owns it.
    pub fn moving(&self) -> Vec<(u16, bool)> {
        let mut out: Vec<(u16, bool)> = self.moving.keys().map(|&s| (s, self.owns(s))).collect();
        out.sort_unstable();
        out
    }

    /// Whether `listing`'s slot is served here: the server's own
    /// redirection, naming the listing, when it is not (see [`Route::check`]).
    pub fn check_listing(&self, listing: &[u8]) -> Result<()> {
        let slot = key_slot(listing);
        self.route(slot).check(
            slot,
            &format!("listing {}", String::from_utf8_lossy(listing)),
        )
    }
}

/// Three masters, this node the first (unit tests of the cluster's users).
#[cfg(test)]
pub(crate) const THREE_MASTERS: &str = "\
aaa 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-5460
bbb 127.0.0.1:3@4 master - 0 0 2 connected 5461-10922
ccc 127.0.0.1:5@6 master - 0 0 3 connected 10923-16383
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"2155"), key_slot(b"2015-12-22_{2155}"));
        assert_eq!(key_slot(b"a{}b"), key_slot(b"a{}b"));
        assert_ne!(
            key_slot(b"{}x"),
            key_slot(b"x"),
            "an empty tag hashes the whole key"
        );
        assert_eq!(
            key_slot(b"x{ab}{cd}"),
            key_slot(b"ab"),
            "the first tag counts"
        );
    }

    #[test]
    fn every_slot_has_a_short_tag() {
        for slot in 0..SLOTS as u16 {
            let tag = slot_tag(slot);
            assert!(!tag.is_empty() && tag.len() <= 4, "{slot}: {tag}");
            assert_eq!(key_slot(tag.as_bytes()), slot);
        }
        // Stored key names depend on these: they must never change.
        assert_eq!(slot_tag(key_slot(b"0")), "0");
        assert_eq!(slot_tag(0), "1bz");
        assert_eq!(slot_tag(16383), "hia");
    }

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@40004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922 [10923-<-292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@40003,host-3 master - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5459 5460 [5460->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";

    #[test]
    fn reads_cluster_nodes() {
        let view = ClusterView::parse(NODES).unwrap();
        assert_eq!(view.route(0), Route::Here);
        assert_eq!(view.route(5459), Route::Here);
        assert_eq!(view.route(5460), Route::Moving, "migrating away");
        assert_eq!(view.route(5461), Route::Moved("127.0.0.1:30002".into()));
        assert_eq!(view.route(16383), Route::Moved("127.0.0.1:30003".into()));
        assert_eq!(view.owned().count(), 5461);
        assert_eq!(view.served().count(), 5461);
        let replica = NODES
            .replace("myself,master", "master")
            .replace(" slave e7d1", " myself,slave e7d1");
        let replica = ClusterView::parse(&replica).unwrap();
        assert_eq!(replica.owned().count(), 0);
        assert_eq!(replica.served().count(), 5461, "its master's slots");
        assert_eq!(view.moving(), [(5460, true)]);
        assert!(view.check_listing(b"2155").is_err_and(|e| e
            .to_string()
            .starts_with(&format!("MOVED {} ", key_slot(b"2155")))));
        assert_eq!(
            view.route(5461).check(5461, "x").unwrap_err().to_string(),
            "MOVED 5461 127.0.0.1:30002"
        );
        assert!(view
            .route(5460)
            .check(5460, "listing 7")
            .unwrap_err()
            .to_string()
            .starts_with("TRYAGAIN slot 5460 (listing 7)"));
        assert!(ClusterView::parse("garbage").is_none());
    }

    #[test]
    fn importing_and_unassigned() {
        let text = "\
aaa 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-99 [200-<-bbb]
bbb 127.0.0.1:3@4 master - 0 0 2 connected 200-300
";
        let view = ClusterView::parse(text).unwrap();
        assert_eq!(view.route(200), Route::Moving, "importing");
        assert_eq!(view.route(150), Route::Unassigned);
        assert!(view
            .route(150)
            .check(150, "k")
            .unwrap_err()
            .to_string()
            .starts_with("CLUSTERDOWN"));
        assert!(!view.owns(200));
        assert_eq!(view.moving(), [(200, false)]);
    }
}
