//! rekindle: a self-hosted repeat-customer marketing engine.
//!
//! The modules are the stages of ARCHITECTURE.md's layering, earliest first: each
//! imports only the ones above it (`tests/it/layering.rs` checks it). `config` sits near
//! the top because it assembles every stage's own settings into the checked `Config`.

/// Domain values: days, cents, identifiers and their strict parsers.
pub mod domain;
/// Counters and histograms for `/metrics`.
pub mod metrics;
/// The sled store: key layout, codec, format version, atomic import batches.
pub mod store;
/// CSV / NDJSON import with bad-row reports.
pub mod ingest;
/// The channel plugin host: the only module that names wasmtime; sandbox, grants, HTTP
/// and SMTP capabilities, compiled-code cache.
pub mod plugin;
/// Association rules from purchases, cross-sell offers and "who will buy X" (pure).
pub mod bundles;
/// Predicted member value: BG/NBD and Gamma-Gamma (pure).
pub mod predict;
/// Member metrics as of a date (pure).
pub mod profile;
/// Profiles of the whole member base: export and stats.
pub mod population;
/// Transactions for mining from the store, and the mined rules it keeps.
pub mod basket;
/// Campaign rules: the TOML language, diagnostics, conditions, templates.
pub mod rules;
/// Planning a run: audiences, consent, caps, holdout, priority, offers (pure).
pub mod plan;
/// Learning from providers: delivery reports, bounces, complaints and opt-outs.
pub mod feedback;
/// Dispatch: the outbox through the channel plugins, with rate limits, retries and
/// dead letters.
pub mod dispatch;
/// Reports: sends, conversions and revenue against the holdout group.
pub mod report;
/// The daemon's HTTP API: unsubscribe links, admin endpoints, metrics.
pub mod api;
/// The operator's `config.toml`: each stage's own settings, parsed strictly and checked.
pub mod config;
/// When each rule fires: croner computes every firing, tokio-cron-scheduler keeps the time.
pub mod schedule;
/// The daemon: schedules, runs, hot reload, signals.
pub mod daemon;
/// Deterministic sample data for the demo and the tests.
pub mod generate;
