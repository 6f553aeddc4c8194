//! On Redis Cluster, what a node's copy of the metric registry holds: the
//! stored definitions and a version, so every master converges on the
//! newest registry whoever changed it and whenever it rejoins.
//!
//! A version is `(counter, node id)`: a change made on a node takes the
//! counter after the highest it knows, and node ids break ties, so two
//! registries are always ordered and every node adopts the same newest
//! one (a change made concurrently on two nodes: the later version wins
//! whole). The version is stored in the copy under [`VERSION_FIELD`], which
//! is not a valid metric name, so reading definitions ignores it.

use crate::metrics::check_name;

/// The field holding a copy's version: `<counter> <node id>`.
pub const VERSION_FIELD: &[u8] = b"~version";

/// A registry's version; the default (0, "") is older than any change.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub counter: u64,
    pub node: String,
}

impl Version {
    pub fn parse(text: &[u8]) -> Option<Version> {
        let text = std::str::from_utf8(text).ok()?;
        let (counter, node) = text.split_once(' ')?;
        Some(Version {
            counter: counter.parse().ok()?,
            node: node.to_string(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.counter, self.node).into_bytes()
    }

    /// The version of a change made on `node` after this one.
    pub fn next(&self, node: &str) -> Version {
        Version {
            counter: self.counter + 1,
            node: node.to_string(),
        }
    }
}

/// Stored definitions: (metric name, stored definition), as the registry
/// hash holds them.
pub type Definitions = Vec<(Vec<u8>, Vec<u8>)>;

/// A copy's definitions (fields that are metric names) and its version.
pub fn read_copy(fields: &[(Vec<u8>, Vec<u8>)]) -> (Definitions, Version) {
    let mut defs = Vec::new();
    let mut version = Version::default();
    for (f, v) in fields {
        if f == VERSION_FIELD {
            version = Version::parse(v).unwrap_or_default();
        } else if check_name(f).is_ok() {
            defs.push((f.clone(), v.clone()));
        }
    }
    defs.sort();
    (defs, version)
}

/// `defs` with `name` set to `value`, or removed (`None`); and whether it
/// had a definition before.
pub fn changed(mut defs: Definitions, name: &[u8], value: Option<&[u8]>) -> (Definitions, bool) {
    let had = defs.iter().any(|(f, _)| f == name);
    defs.retain(|(f, _)| f != name);
    if let Some(v) = value {
        defs.push((name.to_vec(), v.to_vec()));
    }
    defs.sort();
    (defs, had)
}

/// A registry as the arguments of a message between nodes: the version's
/// counter and node, then name and definition pairs.
pub fn to_args(version: &Version, defs: &Definitions) -> Vec<Vec<u8>> {
    let mut out = vec![
        version.counter.to_string().into_bytes(),
        version.node.as_bytes().to_vec(),
    ];
    for (f, v) in defs {
        out.push(f.clone());
        out.push(v.clone());
    }
    out
}

/// What [`to_args`] made; `None` when malformed.
pub fn from_args(args: &[Vec<u8>]) -> Option<(Version, Definitions)> {
    let [counter, node, pairs @ ..] = args else {
        return None;
    };
    if pairs.len() % 2 != 0 {
        return None;
    }
    let version = Version {
        counter: std::str::from_utf8(counter).ok()?.parse().ok()?,
        node: String::from_utf8(node.clone()).ok()?,
    };
    let mut defs: Definitions = pairs
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    defs.sort();
    Some((version, defs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_by_counter_then_node() {
        let a = Version::parse(b"3 aaa").unwrap();
        let b = Version::parse(b"3 bbb").unwrap();
        let c = Version::parse(b"4 aaa").unwrap();
        assert!(Version::default() < a && a < b && b < c);
        assert_eq!(a.next("zzz"), Version::parse(b"4 zzz").unwrap());
        assert_eq!(Version::parse(&c.encode()), Some(c));
        assert_eq!(Version::parse(b"x aaa"), None);
    }

    #[test]
    fn copies_read_and_change() {
        let fields = vec![
            (b"~copy".to_vec(), b"note".to_vec()),
            (VERSION_FIELD.to_vec(), b"7 n1".to_vec()),
            (b"b_ctr".to_vec(), b"x|y|100".to_vec()),
            (b"a_ctr".to_vec(), b"p|q|100".to_vec()),
        ];
        let (defs, version) = read_copy(&fields);
        assert_eq!(version, Version::parse(b"7 n1").unwrap());
        assert_eq!(
            defs.iter().map(|d| d.0.as_slice()).collect::<Vec<_>>(),
            [&b"a_ctr"[..], b"b_ctr"]
        );
        let (set, had) = changed(defs.clone(), b"c_ctr", Some(b"1|2|3"));
        assert!(!had && set.len() == 3);
        let (gone, had) = changed(set, b"a_ctr", None);
        assert!(had && gone.len() == 2);
        let args = to_args(&version, &gone);
        assert_eq!(from_args(&args), Some((version, gone)));
        assert_eq!(from_args(&args[..3]), None);
    }
}
