//! rekindle: a self-hosted repeat-customer marketing engine.
//!
//! The modules follow the pipeline; each imports only the ones above it and `domain`.

/// Domain values: days, cents, identifiers and their strict parsers.
pub mod domain;
/// The operator's `config.toml`, parsed strictly and checked.
pub mod config;
/// The sled store: key layout, codec, format version, atomic import batches.
pub mod store;
/// CSV / NDJSON import with bad-row reports.
pub mod ingest;
/// Member metrics as of a date (pure).
pub mod profile;
/// Profiles of the whole member base: export and stats.
pub mod population;
/// Association rules from purchases, cross-sell offers and "who will buy X" (pure).
pub mod bundles;
/// Transactions for mining from the store, and the mined rules it keeps.
pub mod basket;
/// Predicted member value: BG/NBD and Gamma-Gamma (pure).
pub mod predict;
/// Campaign rules: the TOML language, diagnostics, conditions, templates.
pub mod rules;
/// Planning a run: audiences, consent, caps, holdout, priority, offers (pure).
pub mod plan;
/// Dispatch: the outbox through the channel plugins, with rate limits, retries and
/// dead letters.
pub mod dispatch;
/// Learning from providers: delivery reports, bounces, complaints and opt-outs.
pub mod feedback;
/// Counters and histograms for `/metrics`.
pub mod metrics;
/// When each rule fires: croner computes every firing, tokio-cron-scheduler keeps the time.
pub mod schedule;
/// The daemon: schedules, runs, hot reload, signals.
pub mod daemon;
/// The daemon's HTTP API: unsubscribe links, admin endpoints, metrics.
pub mod api;
/// Reports: sends, conversions and revenue against the holdout group.
pub mod report;
/// The channel plugin host: the only module that names wasmtime; sandbox, grants, HTTP
/// and SMTP capabilities, compiled-code cache.
pub mod plugin;
/// Deterministic sample data for the demo and the tests.
pub mod generate;
