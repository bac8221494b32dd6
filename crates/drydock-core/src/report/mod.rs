//! Reports built from a run's events: JUnit merging, the results folder,
//! and the root causes of failures ([`cause`]).

pub mod cause;
pub mod junit;
mod results;

pub use results::{ResultsWriter, StepRecord, Summary};
