//! drydock-core: run a product's CI pipeline inside containers on a Docker Engine.
//!
//! Data flows one way: a pipeline file is parsed and validated ([`pipeline`]),
//! planned, executed on an [`engine`] and reported as typed events.

pub mod engine;
pub mod pipeline;
