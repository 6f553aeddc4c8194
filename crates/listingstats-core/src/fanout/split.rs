//! Which masters a cluster-wide query asks, and for which listings.

use crate::cluster::{key_slot, ClusterView, SLOTS};
use crate::error::{Error, Result};

/// One master's share of a query: `None` for `*` (its own listings),
/// else the listings it owns, in the order given.
#[derive(Debug, PartialEq, Eq)]
pub struct Share<'a> {
    pub node: u16,
    pub listings: Option<Vec<&'a [u8]>>,
}

fn unserved(slot: u16, what: &str) -> Error {
    Error::Cluster(format!("CLUSTERDOWN Hash slot {slot} ({what}) not served"))
}

/// `*`: every master that owns a slot, in node order. Every slot must have
/// an owner (else the server's own `CLUSTERDOWN`).
pub fn split_star(view: &ClusterView) -> Result<Vec<Share<'static>>> {
    if let Some(slot) = (0..SLOTS as u16).find(|&s| view.owner(s).is_none()) {
        return Err(unserved(slot, "'*'"));
    }
    Ok(view
        .masters()
        .into_iter()
        .map(|node| Share {
            node,
            listings: None,
        })
        .collect())
}

/// An explicit set: the listings of each owner, shares in node order,
/// listings in the order given.
pub fn split_ids<'a>(view: &ClusterView, ids: &[&'a [u8]]) -> Result<Vec<Share<'a>>> {
    let mut shares: Vec<Share<'a>> = Vec::new();
    for &id in ids {
        let slot = key_slot(id);
        let owner = view
            .owner(slot)
            .ok_or_else(|| unserved(slot, &format!("listing {}", String::from_utf8_lossy(id))))?;
        match shares.iter_mut().find(|s| s.node == owner) {
            Some(share) => share.listings.get_or_insert_with(Vec::new).push(id),
            None => shares.push(Share {
                node: owner,
                listings: Some(vec![id]),
            }),
        }
    }
    shares.sort_by_key(|s| s.node);
    Ok(shares)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
aaa 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-5460
bbb 127.0.0.1:3@4 master - 0 0 2 connected 5461-10922
ccc 127.0.0.1:5@6 master - 0 0 3 connected 10923-16383
ddd 127.0.0.1:7@8 slave aaa 0 0 1 connected
";

    #[test]
    fn star_asks_every_master_once() {
        let view = ClusterView::parse(NODES).unwrap();
        let shares = split_star(&view).unwrap();
        let ids: Vec<&str> = shares.iter().map(|s| view.id(s.node)).collect();
        assert_eq!(ids, ["aaa", "bbb", "ccc"]);
        let partial = ClusterView::parse(&NODES.replace(" 10923-16383", "")).unwrap();
        assert!(split_star(&partial)
            .unwrap_err()
            .to_string()
            .starts_with("CLUSTERDOWN Hash slot 10923"));
    }

    #[test]
    fn ids_go_to_their_owners_in_order() {
        let view = ClusterView::parse(NODES).unwrap();
        // Slots: "1" 9842 (bbb), "2" 5649 (bbb), "3" 1584 (aaa), "4" 14039 (ccc).
        let ids: Vec<&[u8]> = vec![b"1", b"2", b"3", b"4"];
        let shares = split_ids(&view, &ids).unwrap();
        let got: Vec<(&str, Vec<&[u8]>)> = shares
            .iter()
            .map(|s| (view.id(s.node), s.listings.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("aaa", vec![&b"3"[..]]),
                ("bbb", vec![&b"1"[..], &b"2"[..]]),
                ("ccc", vec![&b"4"[..]]),
            ]
        );
        assert_eq!(view.slots_of(view.me()).len(), 5461);
        assert_eq!(view.masters(), [0, 1, 2], "the replica owns nothing");
        assert!(view.elsewhere(b"1") && !view.elsewhere(b"3"));
        assert_eq!(view.addr(1), "127.0.0.1:3");
    }
}
