//! The pipeline file: YAML model, validation with file:line:col, interpolation.
