//! The `rekindle plugin` subcommands (placeholder until written).
pub(crate) fn placeholder() {}
