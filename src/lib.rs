//! rekindle: a self-hosted repeat-customer marketing engine.
//!
//! The modules follow the pipeline, each importing only the ones above it:
pub mod domain;
pub mod config;
pub mod plugin;
