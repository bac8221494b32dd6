//! `drydock deploy`: run the image a channel points to as a long-lived
//! application behind a stable address, switch versions without dropping
//! requests, and roll back automatically when a new version is unhealthy.
//! See `docs/deploy.md`.

pub mod config;
