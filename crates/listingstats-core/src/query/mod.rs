//! QUERY and TOP: argument parsing, aggregation of day hashes into rows,
//! ordering, and the LEGACY and JSON renderings.
//!
//! The command layer feeds [`Aggregator::add`] one day hash at a time (the
//! counters of the fields the metrics need); everything after that —
//! grouping, sums, ratios, row rules, order — happens here.
//!
//! Ratios are always ratios of sums (sum of clicks / sum of impressions over
//! the group), never averages of per-day ratios.
//!
//! One file a concern: [`args`](self) parsing, `fields` (which counters),
//! `cells` (which day hashes), `order` (listing order and stepwise sorts),
//! `aggregate` (sums and rows), `top` (ranking), `wilson` (its bound),
//! `render` (LEGACY and JSON text).

mod aggregate;
mod args;
mod cells;
mod fields;
mod order;
mod render;
pub mod span;
#[cfg(test)]
mod tests;
mod top;
mod wilson;

pub use aggregate::*;
pub use args::*;
pub use cells::*;
pub use fields::*;
pub use order::*;
pub use render::*;
pub use top::*;
pub use wilson::*;
