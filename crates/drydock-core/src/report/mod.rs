//! Reports built from a run's events: JUnit merging and the results folder.

pub mod junit;
mod results;

pub use results::{
    OutputLimits, OutputRecord, RawLog, ResultsWriter, StepRecord, Summary, LOG_TAIL_SEGMENT_BYTES,
    MAX_EVENT_LOG_BYTES, MAX_LOG_HEAD_BYTES, MAX_RAW_BYTES, MAX_RUN_EVENT_LOG_BYTES,
};
