//! drydock-core: run a product's CI pipeline inside containers on a Docker Engine.
//!
//! Data flows one way: a pipeline file is parsed and validated ([`pipeline`]),
//! executed on an [`engine`] by the [`run`] executor, which emits typed
//! [`events`] that reporters ([`report`]) consume. What each deploy channel
//! pointed to, and rollbacks of it, are kept in the [`release`] ledger.

pub mod bootstrap;
pub mod cache;
pub mod deploy;
pub mod engine;
pub mod events;
pub mod pipeline;
pub mod plan;
pub mod release;
pub mod report;
pub mod run;
pub mod secrets;
pub mod trust;

/// The position-keeping YAML tree the pipeline loader is built on, for other
/// configuration files that want `file:line:col` diagnostics (the runner's
/// configuration, for one).
///
/// [`yaml::parse`] gives a [`yaml::Node`] tree (or `None` for an empty
/// document); every node carries its 1-based [`yaml::Pos`]; scalars resolve
/// to YAML 1.2 core-schema types with [`yaml::Node::scalar_type`]. A stream
/// with several documents is refused.
pub mod yaml {
    pub use crate::pipeline::tree::{parse, Kind, Node, Pos, ScalarType, SyntaxError};
}
