//! Which counters a set of metrics reads: each event name once per day hash.

use crate::error::Result;
use crate::metrics::{compile_pattern, pattern_of, Metric};
use regex::bytes::Regex;

/// The counters a set of metrics needs, each read once per day hash.
#[derive(Debug, Clone)]
pub struct FieldPlan {
    pub metrics: Vec<Metric>,
    /// Distinct event names, in first-use order: read one by one.
    pub fields: Vec<Vec<u8>>,
    /// Distinct patterns (`/.../` terms), in first-use order: each sums
    /// every field of a day hash whose name it matches, in one pass over
    /// the hash, only for queries that have any.
    pub patterns: Vec<Regex>,
    /// The terms, as given: `fields` then the patterns' `/.../` text.
    pub(super) names: Vec<Vec<u8>>,
    /// For each metric, the slot of its numerator and denominator: an
    /// index into the values a day hash gives, `fields` first, then
    /// `patterns`.
    pub(super) slots: Vec<(usize, usize)>,
}

impl FieldPlan {
    /// The terms, as given: what a node's part of a cluster-wide answer
    /// sums, compared by the node that asked.
    pub fn names(&self) -> &[Vec<u8>] {
        &self.names
    }

    /// The slots of the first metric's numerator and denominator (TOP's).
    pub fn first_slots(&self) -> Option<(usize, usize)> {
        self.slots.first().copied()
    }

    pub fn new(metrics: Vec<Metric>) -> Result<FieldPlan> {
        let mut fields: Vec<Vec<u8>> = Vec::new();
        let mut pattern_texts: Vec<Vec<u8>> = Vec::new();
        for m in &metrics {
            for term in [&m.numerator, &m.denominator] {
                let list = if pattern_of(term).is_some() {
                    &mut pattern_texts
                } else {
                    &mut fields
                };
                if !list.contains(term) {
                    list.push(term.clone());
                }
            }
        }
        let slot = |term: &[u8]| match fields.iter().position(|f| f == term) {
            Some(i) => i,
            None => fields.len() + pattern_texts.iter().position(|p| p == term).unwrap_or(0),
        };
        let slots = metrics
            .iter()
            .map(|m| (slot(&m.numerator), slot(&m.denominator)))
            .collect();
        let patterns = pattern_texts
            .iter()
            .map(|t| compile_pattern(pattern_of(t).unwrap_or_default()))
            .collect::<Result<Vec<_>>>()?;
        let names = fields.iter().chain(&pattern_texts).cloned().collect();
        Ok(FieldPlan {
            metrics,
            fields,
            patterns,
            names,
            slots,
        })
    }

    /// How many values a day hash gives: fields, then patterns.
    pub fn width(&self) -> usize {
        self.names.len()
    }

    /// The terms, in the order of the values a day hash gives.
    pub fn terms(&self) -> &[Vec<u8>] {
        &self.names
    }
}
