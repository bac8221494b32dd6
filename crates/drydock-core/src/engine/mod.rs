//! The engine layer: the only code that talks to the Docker Engine (through
//! bollard). Everything else speaks drydock's own types.

mod build;
mod builder;
mod buildkit;
mod client;
mod container;
pub mod context;
mod copy;
pub(crate) mod dockerfile;
pub mod dockerignore;
pub mod endpoint;
mod error;
mod filesync;
mod image;
pub mod labels;
mod network;
mod registry;
mod request;
mod session;
mod ssh;
mod sweep;
pub mod terminal;
mod trustplan;
mod volume;

pub use builder::{choose_builder, Builder, BuilderPreference, BUILDER_ENV};
pub use client::{flavour_of, Engine, Flavour, DEFAULT_HOST};
pub use container::{
    BindMount, ContainerSpec, ContainerState, ExecAttached, ExecOutput, LogChunk, LogStream,
};
pub use endpoint::{Endpoint, EndpointError, EndpointSource};
pub use error::EngineError;
pub use image::ImageInfo;
pub use registry::{
    registry_host, CredentialsError, PushFailure, RegistryAuth, ENV_PASSWORD, ENV_PASSWORD_FILE,
    ENV_USER,
};
pub use request::{split_tag, BuildProgress, BuildRequest, Built};
pub use sweep::{owner_alive, Leftover};
pub use terminal::{render_lines, strip_ansi, LineBuffer};
pub use trustplan::NOTE_PREFIX;
