//! The public provider callbacks `/callbacks/CHANNEL/SECRET[/...]`: the channel's secret
//! (`feedback::CallbackKeys`, compared in constant time) is checked before the body is
//! read or any plugin code runs, then the channel's plugin reads the request
//! (parse-callback) and `feedback::apply` records what it reports. A missing or wrong
//! secret, or a request the plugin finds not authentic (a bad provider signature), is
//! 403 and changes nothing; one it cannot read is 400; a flood of reports the store
//! cannot park is 429.

use super::{blocking, problem, Api};
use crate::plugin::CallbackRequest;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// The channel, the secret and the path below them (with the query) of a callback URI.
fn split(uri: &axum::http::Uri) -> (&str, &str, String) {
    let rest = uri.path().strip_prefix("/callbacks/").unwrap_or("");
    let (channel, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let (secret, below) = rest.split_once('/').map(|(s, r)| (s, format!("/{r}"))).unwrap_or((rest, "/".to_string()));
    let path = match uri.query() {
        Some(q) => format!("{below}?{q}"),
        None => below,
    };
    (channel, secret, path)
}

/// A provider's webhook: the channel's plugin reads it, rekindle applies what it says.
pub(super) async fn callback(State(api): State<Arc<Api>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (channel, secret, path) = split(&parts.uri);
    let channel = channel.to_string();
    let Some(kind) = api.host.kind(&channel).map(str::to_string) else {
        return problem(StatusCode::NOT_FOUND, format_args!("no channel {channel:?}"));
    };
    // the secret first: a request without it reads nothing, runs nothing, changes nothing
    let now = chrono::Utc::now().timestamp();
    if !api.callbacks.accepts(&channel, secret, now) {
        tracing::debug!(channel = %channel, "callback refused: missing or wrong secret");
        return problem(StatusCode::FORBIDDEN, format_args!("not a valid callback URL of channel {channel:?} (see `rekindle plugin callback-url {channel}`)"));
    }
    let body = match axum::body::to_bytes(body, api.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::PAYLOAD_TOO_LARGE, e),
    };
    let headers = parts.headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
    let request = CallbackRequest { method: parts.method.as_str().to_string(), path, headers, body: body.to_vec() };
    let mut updates = match api.host.parse_callback(&channel, request).await {
        Ok(u) => u,
        Err(e @ crate::plugin::PluginError::Unauthenticated { .. }) => {
            tracing::warn!(channel = %channel, "callback refused: {e}");
            return problem(StatusCode::FORBIDDEN, e);
        }
        Err(e @ crate::plugin::PluginError::Busy { .. }) => {
            tracing::warn!(channel = %channel, "callback not handled: {e}");
            return problem(StatusCode::SERVICE_UNAVAILABLE, e);
        }
        Err(e) => {
            tracing::warn!(channel = %channel, "callback refused: {e}");
            return problem(StatusCode::BAD_REQUEST, e);
        }
    };
    // a number a gateway reports without its country code (Kannel's `from`) is the number
    // rekindle sent to, as members' phones are stored in E.164
    let texts = api.host.consent(&channel) == Some(crate::domain::Consent::Sms);
    if let Some(region) = api.phone_region.filter(|_| texts) {
        for r in updates.iter_mut().filter_map(|u| u.recipient.as_mut()) {
            if let Some(e164) = region.e164(r) {
                *r = e164;
            }
        }
    }
    for u in &updates {
        api.observers.metrics.observe_feedback(&channel, u.state.name());
    }
    // a report that beats the dispatcher's record of the send is parked, and applied by
    // the dispatcher when it records the send
    let (store, settings) = (api.store.clone(), api.observers.feedback.clone());
    let name = channel.clone();
    match blocking(move || crate::feedback::apply(&store, &name, &kind, &updates, &settings, now)).await {
        Ok(applied) if applied.refused > 0 => {
            tracing::warn!(channel = %channel, refused = applied.refused, "callback reports refused: as many are parked as [feedback] allows");
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "60")], Json(applied)).into_response()
        }
        Ok(applied) => Json(applied).into_response(),
        Err(r) => r,
    }
}

/// Every channel's callback URL, secret included (admin only): what to give providers.
pub(super) async fn urls(State(api): State<Arc<Api>>) -> Response {
    Json(api.callbacks.urls()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_uri_splits_into_channel_secret_and_the_path_below() {
        let cases = [
            ("/callbacks/sms/abc/dlr?id=1", ("sms", "abc", "/dlr?id=1")),
            ("/callbacks/sms/abc", ("sms", "abc", "/")),
            ("/callbacks/sms/abc/", ("sms", "abc", "/")),
            ("/callbacks/sms", ("sms", "", "/")),
            ("/callbacks/sms?status=1", ("sms", "", "/?status=1")),
        ];
        for (uri, (channel, secret, path)) in cases {
            let uri: axum::http::Uri = uri.parse().unwrap();
            assert_eq!(split(&uri), (channel, secret, path.to_string()), "{uri}");
        }
    }
}
