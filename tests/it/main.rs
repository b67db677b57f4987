//! The integration tests: one binary, a module per area. Each test works in its own
//! temporary folder with its own store.

mod api;
mod audience;
mod bundles;
mod cli;
mod daemon;
mod import;
mod long;
mod predict;
mod profiles;
mod report;
mod rules;
mod support;
