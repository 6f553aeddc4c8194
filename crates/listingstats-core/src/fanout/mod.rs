//! Cluster-wide QUERY and TOP: what one node asks the others and how it
//! puts their answers together, without any I/O.
//!
//! The node a client asks (the coordinator) splits the work by slot owner
//! ([`split`]): every master for `*`, the owners of the listings named
//! otherwise. Each master computes its part with the ordinary engine and
//! answers with its groups' sums, never ratios ([`wire`]); the coordinator
//! checks that the parts covered every slot exactly once ([`SlotSet`]),
//! adds the sums ([`merge`]) and renders the answer as one node would.
//!
//! Everything travels in frames of at most [`MAX_FRAME`] bytes, a few in
//! flight per transfer, so the cluster bus that carries them also keeps
//! carrying gossip and failure detection on time.

mod merge;
mod slots;
mod split;
mod wire;

pub use merge::*;
pub use slots::*;
pub use split::*;
pub use wire::*;
