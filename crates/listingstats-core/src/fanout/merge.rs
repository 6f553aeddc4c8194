//! Putting the parts' answers together: sums added group by group, in
//! output order, a bounded number per step.

use std::cmp::Ordering;
use std::collections::VecDeque;

use super::wire::{read_groups, Bad, Head};
use crate::error::{Error, Result};
use crate::query::{listing_cmp, Aggregator};

/// A group of a part's answer, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    day: i32,
    listing: Option<Vec<u8>>,
    sums: Vec<i64>,
}

/// One part's answer as it arrived: its head, then its frames.
#[derive(Debug)]
pub struct PartAnswer {
    pub head: Head,
    /// Each frame's payload and where its groups start in it.
    frames: VecDeque<(Vec<u8>, usize)>,
    pending: VecDeque<Owned>,
}

impl PartAnswer {
    /// The answer's first frame; `None` when it is not one.
    pub fn first(payload: Vec<u8>) -> Option<PartAnswer> {
        let (head, start) = Head::decode(&payload)?;
        let mut frames = VecDeque::new();
        frames.push_back((payload, start));
        Some(PartAnswer {
            head,
            frames,
            pending: VecDeque::new(),
        })
    }

    /// A later frame.
    pub fn push(&mut self, payload: Vec<u8>) {
        self.frames.push_back((payload, 0));
    }

    /// The next group, decoding a frame when needed.
    fn front(&mut self, width: usize) -> Result<Option<&Owned>> {
        while self.pending.is_empty() {
            let Some((bytes, start)) = self.frames.pop_front() else {
                return Ok(None);
            };
            let groups = read_groups(&bytes, start, width)
                .ok_or_else(|| Error::invalid("a node sent a damaged part of the answer"))?;
            self.pending.extend(groups.into_iter().map(|g| Owned {
                day: g.day,
                listing: g.listing.map(<[u8]>::to_vec),
                sums: g.sums,
            }));
        }
        Ok(self.pending.front())
    }
}

/// Adds the groups of every part into one aggregation. With `ordered`
/// (each part's groups came in output order, and no group is in two parts:
/// GROUPBY DAY and LISTING), the parts are merged so the aggregation stays
/// in output order and needs no sort; otherwise part after part.
pub struct Merger {
    parts: Vec<PartAnswer>,
    ordered: bool,
    width: usize,
}

impl Merger {
    pub fn new(parts: Vec<PartAnswer>, ordered: bool, width: usize) -> Merger {
        Merger {
            parts,
            ordered,
            width,
        }
    }

    /// Adds up to `count` groups to `agg`; `true` once every group is in.
    pub fn step(&mut self, agg: &mut Aggregator, count: usize) -> Result<bool> {
        for _ in 0..count {
            let mut best: Option<usize> = None;
            for i in 0..self.parts.len() {
                if self.parts[i].front(self.width)?.is_none() {
                    continue;
                }
                if !self.ordered {
                    best = Some(i);
                    break;
                }
                let better = match best {
                    None => true,
                    Some(b) => {
                        let (x, y) = (&self.parts[i].pending[0], &self.parts[b].pending[0]);
                        group_cmp(x, y) == Ordering::Less
                    }
                };
                if better {
                    best = Some(i);
                }
            }
            let Some(b) = best else {
                return Ok(true);
            };
            let g = self.parts[b].pending.pop_front().expect("front was read");
            agg.merge_group(g.day, g.listing.as_deref(), &g.sums)?;
        }
        Ok(false)
    }
}

fn group_cmp(a: &Owned, b: &Owned) -> Ordering {
    a.day
        .cmp(&b.day)
        .then_with(|| match (&a.listing, &b.listing) {
            (Some(x), Some(y)) => listing_cmp(x, y),
            _ => Ordering::Equal,
        })
}

/// Of the parts' first non-proportions under `RANK WILSON`, the first in
/// listing order: the one a single node would name.
pub fn first_bad<'a>(bads: impl IntoIterator<Item = &'a Bad>) -> Option<&'a Bad> {
    bads.into_iter()
        .min_by(|a, b| listing_cmp(&a.listing, &b.listing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::{put_group, SlotSet};
    use crate::metrics::resolve;
    use crate::query::{FieldPlan, GroupBy};

    type Spec<'a> = (i32, Option<&'a [u8]>, [i64; 2]);

    fn answer(groups: &[Spec<'_>], per_frame: usize) -> PartAnswer {
        let head = Head {
            error: None,
            fields: vec![],
            slots: SlotSet::default(),
            examined: 0,
            bad: None,
        };
        let mut first = Vec::new();
        head.encode(&mut first);
        let mut frames = vec![first];
        for (i, (day, listing, sums)) in groups.iter().enumerate() {
            if i > 0 && i % per_frame == 0 {
                frames.push(Vec::new());
            }
            put_group(frames.last_mut().unwrap(), *day, *listing, sums);
        }
        let mut frames = frames.into_iter();
        let mut part = PartAnswer::first(frames.next().unwrap()).unwrap();
        frames.for_each(|f| part.push(f));
        part
    }

    #[test]
    fn parts_merge_in_output_order() {
        let registry = crate::metrics::builtins();
        let plan = FieldPlan::new(resolve(&registry, &["cart_to_checkout_ctr"]).unwrap()).unwrap();
        let mut agg = Aggregator::new(&plan, GroupBy::Day);
        let a = answer(
            &[
                (1, Some(b"2"), [1, 10]),
                (1, Some(b"10"), [2, 20]),
                (2, Some(b"2"), [3, 30]),
            ],
            2,
        );
        let b = answer(&[(1, Some(b"3"), [4, 40]), (3, Some(b"3"), [5, 50])], 1);
        let mut m = Merger::new(vec![a, b], true, 2);
        assert!(!m.step(&mut agg, 2).unwrap());
        assert!(m.step(&mut agg, 100).unwrap());
        let got: Vec<(i32, Vec<u8>, i64)> = (0..agg.len())
            .map(|g| {
                let (day, listing, sums) = agg.group_record(g);
                (day, listing.unwrap().to_vec(), sums[0])
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, b"2".to_vec(), 1),
                (1, b"3".to_vec(), 4),
                (1, b"10".to_vec(), 2),
                (2, b"2".to_vec(), 3),
                (3, b"3".to_vec(), 5)
            ]
        );
        assert_eq!(agg.order(), [0, 1, 2, 3, 4], "no sort needed");
    }

    #[test]
    fn totals_add_up() {
        let registry = crate::metrics::builtins();
        let plan = FieldPlan::new(resolve(&registry, &["cart_to_checkout_ctr"]).unwrap()).unwrap();
        let mut agg = Aggregator::new(&plan, GroupBy::Total);
        let a = answer(&[(i32::MIN, None, [1, 10])], 1);
        let b = answer(&[(i32::MIN, None, [4, 40])], 1);
        let mut m = Merger::new(vec![a, b], false, 2);
        assert!(m.step(&mut agg, 10).unwrap());
        assert_eq!(agg.len(), 1);
        assert_eq!(agg.group_record(0).2, [5, 50]);
    }

    #[test]
    fn the_first_bad_listing_is_named() {
        let bad = |l: &[u8]| Bad {
            listing: l.to_vec(),
            numerator: 2,
            denominator: 1,
        };
        let bads = [bad(b"10"), bad(b"9"), bad(b"x")];
        assert_eq!(first_bad(&bads).unwrap().listing, b"9");
    }
}
