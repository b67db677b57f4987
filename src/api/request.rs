//! What the API asks of the daemon loop, which owns the member base and the rules in
//! force, and what a run it asks for reports back. Defined here, where the requests are
//! made, so the daemon imports the API and never the other way round.
//!
//! [`RequestError`] is the one error vocabulary where the two meet: the daemon says what
//! went wrong (not found, invalid, internal), the API alone turns it into a status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
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
    RunNow { rules: Vec<String>, reply: oneshot::Sender<Result<RunSummary, RequestError>> },
    /// The rules in force, with schedule, next and last run.
    Rules { reply: oneshot::Sender<serde_json::Value> },
    /// `rules preview` as text, as of today.
    Preview { rule: String, sample: usize, reply: oneshot::Sender<Result<String, RequestError>> },
    /// `explain` as text (or JSON): why the member is or is not in each rule (or one rule).
    Explain { member: String, rule: Option<String>, json: bool, reply: oneshot::Sender<Result<String, RequestError>> },
    /// A member's profile as of today, unsubscribes, stopped addresses and contacts.
    Member { id: String, reply: oneshot::Sender<Result<serde_json::Value, RequestError>> },
    /// The ingest API changed members, orders or events: reload the base before the
    /// next run.
    StoreChanged,
}

/// Why the daemon could not do what the API asked.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The rule or member the request names does not exist: 404 with the message.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be done as asked (no rule is enabled): 422 with the message.
    #[error("{0}")]
    Invalid(String),
    /// The daemon failed doing it (the store, a render, writing the run): 500; the cause
    /// is logged, not sent.
    #[error("{0}")]
    Internal(String),
    /// No daemon behind this API, or it is stopping: 503 with the message.
    #[error("{0}")]
    Unavailable(&'static str),
}

impl RequestError {
    /// An internal failure, kept with its cause for the log.
    pub fn internal(e: impl std::fmt::Display) -> RequestError {
        RequestError::Internal(e.to_string())
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let status = match &self {
            RequestError::NotFound(_) => StatusCode::NOT_FOUND,
            RequestError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RequestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Internal(cause) => {
                tracing::error!("api: {cause}");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
            }
        };
        (status, Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_status_and_an_internal_cause_stays_in_the_log() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let answer = |e: RequestError| {
            let response = e.into_response();
            let status = response.status().as_u16();
            let body = rt.block_on(axum::body::to_bytes(response.into_body(), 1 << 16)).unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        };
        assert_eq!(answer(RequestError::NotFound("no member \"x\"".into())), (404, r#"{"error":"no member \"x\""}"#.into()));
        assert_eq!(answer(RequestError::Invalid("no rule is enabled".into())), (422, r#"{"error":"no rule is enabled"}"#.into()));
        assert_eq!(answer(RequestError::Unavailable("the daemon is stopping")), (503, r#"{"error":"the daemon is stopping"}"#.into()));
        assert_eq!(answer(RequestError::internal("store i/o failed: disk full")), (500, "internal error\n".into()));
    }
}
