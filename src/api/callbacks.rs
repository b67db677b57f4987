//! The public provider callbacks `/callbacks/CHANNEL[/...]`: the channel's plugin reads
//! the request (parse-callback), `feedback::apply` records what it reports.

use super::{blocking, problem, Api};
use crate::plugin::CallbackRequest;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// A provider's webhook: the channel's plugin reads it, rekindle applies what it says.
pub(super) async fn callback(State(api): State<Arc<Api>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let rest = parts.uri.path().strip_prefix("/callbacks/").unwrap_or("");
    let (channel, below) = rest.split_once('/').map(|(c, r)| (c, format!("/{r}"))).unwrap_or((rest, "/".to_string()));
    let channel = channel.to_string();
    let Some(kind) = api.host.kind(&channel).map(str::to_string) else {
        return problem(StatusCode::NOT_FOUND, format_args!("no channel {channel:?}"));
    };
    let body = match axum::body::to_bytes(body, api.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::PAYLOAD_TOO_LARGE, e),
    };
    let path = match parts.uri.query() {
        Some(q) => format!("{below}?{q}"),
        None => below,
    };
    let headers = parts.headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
    let request = CallbackRequest { method: parts.method.as_str().to_string(), path, headers, body: body.to_vec() };
    let updates = match api.host.parse_callback(&channel, request).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(channel = %channel, "callback refused: {e}");
            return problem(StatusCode::BAD_REQUEST, e);
        }
    };
    for u in &updates {
        api.observers.metrics.observe_feedback(&channel, crate::store::feedback::DeliveryState::from(u.state).name());
    }
    // a report that beats the dispatcher's record of the send is parked, and applied by
    // the dispatcher when it records the send
    let (store, settings) = (api.store.clone(), api.observers.feedback.clone());
    let now = chrono::Utc::now().timestamp();
    match blocking(move || crate::feedback::apply(&store, &channel, &kind, &updates, &settings, now)).await {
        Ok(applied) => Json(applied).into_response(),
        Err(r) => r,
    }
}

