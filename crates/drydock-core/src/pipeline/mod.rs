//! TEMPORARY: replaced by branch h-pipeline.
pub mod duration;
mod model;
pub use model::*;
