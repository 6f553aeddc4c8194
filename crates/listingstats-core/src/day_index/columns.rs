//! Which counters the query cache holds per day hash.

/// The cached columns: the terms (event names, then `/pattern/`s) the
/// registered metrics read, in the order of a [`crate::query::FieldPlan`]
/// of all of them.
#[derive(Default)]
pub(super) struct Columns {
    /// Names this set of columns among all sets ever made in the process
    /// (0: none), so a query planned against one set never reads rows of
    /// another.
    pub(super) version: u64,
    pub(super) terms: Vec<Vec<u8>>,
    /// Whether any term is a pattern: a counter write then cannot tell
    /// which sums it changed, and marks its row unknown.
    pub(super) patterns: bool,
}
