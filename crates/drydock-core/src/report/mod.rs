//! Reports built from a run's events: JUnit merging and the results folder.

pub mod junit;
mod results;

pub use results::{OutputLimits, OutputRecord, RawLog, ResultsWriter, StepRecord, Summary};
