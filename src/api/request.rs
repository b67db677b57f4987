//! What the API asks of the daemon loop, which owns the member base and the rules in
//! force, and what a run it asks for reports back. Defined here, where the requests are
//! made, so the daemon imports the API and never the other way round.

use tokio::sync::oneshot;

/// The result of one run, for the operator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub run: u64,
    pub catch_up: bool,
    pub rules: Vec<(String, Vec<(&'static str, usize)>)>,
    pub messages: usize,
    /// Planning and writing the run, seconds.
    pub seconds: f64,
}

/// What the API asks of the daemon loop, which owns the member base and the rules in
/// force. Each carries the channel its answer goes back on.
pub enum DaemonRequest {
    /// Run these rules now (enabled or not: the operator asked), like a scheduled firing.
    RunNow { rules: Vec<String>, reply: oneshot::Sender<Result<RunSummary, String>> },
    /// The rules in force, with schedule, next and last run.
    Rules { reply: oneshot::Sender<serde_json::Value> },
    /// `rules preview` as text, as of today.
    Preview { rule: String, sample: usize, reply: oneshot::Sender<Result<String, String>> },
    /// `explain` as text: why the member is or is not in each rule (or one rule).
    Explain { member: String, rule: Option<String>, reply: oneshot::Sender<Result<String, String>> },
    /// A member's profile as of today, unsubscribes, stopped addresses and contacts.
    Member { id: String, reply: oneshot::Sender<Result<serde_json::Value, String>> },
    /// The ingest API changed members, orders or events: reload the base before the
    /// next run.
    StoreChanged,
}
