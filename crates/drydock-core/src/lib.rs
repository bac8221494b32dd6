//! drydock-core: run a product's CI pipeline inside containers on a Docker Engine.
//!
//! Data flows one way: a pipeline file is parsed and validated ([`pipeline`]),
//! executed on an [`engine`] by the [`run`] executor, which emits typed
//! [`events`] that reporters ([`report`]) consume. What each deploy channel
//! pointed to, and rollbacks of it, are kept in the [`release`] ledger.

pub mod bootstrap;
pub mod deploy;
pub mod engine;
pub mod events;
pub mod pipeline;
pub mod release;
pub mod report;
pub mod run;
pub mod trust;
