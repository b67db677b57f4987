//! The integration tests: one binary, a module per area. Each test works in its own
//! temporary folder with its own store; the plugin_* modules start the real servers
//! they talk to (scripts/*.sh) on 127.0.0.1 and stop them by PID.

mod api;
mod audience;
mod bundles;
mod cli;
mod daemon;
mod daemon_crash;
mod feedback;
mod fuzz_callbacks;
mod fuzz_inputs;
mod fuzz_templates;
mod import;
mod layering;
mod listener;
mod long;
mod plugin_cli;
mod plugin_email;
mod plugin_sandbox;
mod plugin_shop;
mod plugin_sms;
mod plugin_support;
mod predict;
mod profiles;
mod public;
mod report;
mod rules;
mod store;
mod support;
