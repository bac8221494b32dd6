//! The engine layer: everything drydock sends to, or asks of, a Docker Engine.
//!
//! [`context`] builds the build context (a filtered, streamed tar and its
//! content digest); [`dockerignore`] is the `.dockerignore` matcher it uses.

pub mod context;
pub mod dockerignore;
