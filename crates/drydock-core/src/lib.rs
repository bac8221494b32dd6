//! drydock-core: run a product's CI pipeline inside containers on a Docker Engine.
//!
//! Data flows one way: a pipeline file is parsed and validated ([`pipeline`]),
//! executed on an [`engine`] by the [`run`] executor, which emits typed
//! [`events`] that reporters ([`report`]) consume. What each deploy channel
//! pointed to, and rollbacks of it, are kept in the [`release`] ledger.

#[cfg(test)]
mod architecture_tests;
pub mod bootstrap;
pub mod cache;
pub mod deploy;
pub mod engine;
pub mod events;
pub mod pipeline;
pub mod plan;
pub mod release;
pub mod report;
pub mod reuse;
pub mod run;
pub mod runtime;
pub mod secrets;
pub mod session;
pub mod trust;
pub mod watch;

/// The position-keeping YAML tree the pipeline loader is built on, for other
/// configuration files that want `file:line:col` diagnostics (the runner's
/// configuration, for one).
///
/// [`yaml::parse`] gives a [`yaml::Node`] tree (or `None` for an empty
/// document); every node carries its 1-based [`yaml::Pos`]; scalars resolve
/// to YAML 1.2 core-schema types with [`yaml::Node::scalar_type`]. A stream
/// with several documents is refused.
///
/// Read files with [`yaml::read_limited`] and parse their bytes with
/// [`yaml::parse_bytes`]: UTF-16/32, invalid UTF-8, control characters (NUL
/// included: a YAML parser would silently stop there), stray byte order
/// marks and files over [`yaml::MAX_FILE_BYTES`] are refused with a
/// position, a leading byte order mark is skipped, and the tree is bounded by
/// [`yaml::MAX_DEPTH`], [`yaml::MAX_NODES`] (alias copies included),
/// [`yaml::MAX_ENTRIES`] and [`yaml::MAX_SCALAR_BYTES`].
pub mod yaml {
    pub use crate::pipeline::text::{check_bytes, check_text, read_limited, MAX_FILE_BYTES};
    pub use crate::pipeline::tree::{
        parse, parse_bytes, Kind, Node, Pos, ScalarType, SyntaxError, MAX_DEPTH, MAX_ENTRIES,
        MAX_NODES, MAX_SCALAR_BYTES,
    };
}
