//! The engine layer: the only code that talks to the Docker Engine (through
//! bollard). Everything else speaks drydock's own types.

mod build;
mod buildkit;
mod client;
mod container;
pub mod context;
pub mod dockerignore;
mod error;
mod image;
pub mod labels;
mod network;
mod sweep;

pub use build::{split_tag, strip_ansi, BuildProgress, BuildRequest, Built, LineBuffer};
pub use buildkit::{choose_builder, Builder, BuilderPreference, BUILDER_ENV};
pub use client::{Engine, DEFAULT_HOST};
pub use container::{BindMount, ContainerSpec, ContainerState, ExecOutput, LogChunk, LogStream};
pub use error::EngineError;
pub use image::ImageInfo;
pub use sweep::Leftover;
