//! The daemon's HTTP API on 127.0.0.1 (axum): public one-click unsubscribe links (RFC
//! 8058: GET shows a confirmation page, POST unsubscribes) and `/healthz`; behind the
//! bearer token of `[api] token`: runs, reports, the outbox and `/metrics` (Prometheus).
//! Token checks are constant-time; request bodies are capped; member ids never reach
//! logs above debug level.

use crate::plan::offer::Links;
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

/// `[api]` in config.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where the API listens; keep it on loopback behind a reverse proxy.
    pub listen: String,
    /// Bearer token of the admin endpoints (the REKINDLE_API_TOKEN environment variable
    /// overrides it). Empty: only the public endpoints are served.
    pub token: String,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: "127.0.0.1:8787".into(), token: String::new(), max_body_bytes: 16 << 20 }
    }
}

impl ApiConfig {
    pub fn token(&self) -> Option<String> {
        match std::env::var("REKINDLE_API_TOKEN") {
            Ok(t) if !t.is_empty() => Some(t),
            _ => (!self.token.is_empty()).then(|| self.token.clone()),
        }
    }
}

struct Api {
    store: Store,
    links: Links,
    token: Option<String>,
    attribution_days: u32,
}

/// The router; `serve` binds it.
pub fn router(store: Store, links: Links, config: &crate::config::Config) -> Router {
    let api = Arc::new(Api { store, links, token: config.api.token(), attribution_days: config.campaigns.attribution_days });
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/u/{token}", get(unsubscribe_page).post(unsubscribe))
        .route("/api/runs", get(runs))
        .route("/api/outbox", get(outbox))
        .route("/api/report/{run_or_rule}", get(report))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(config.api.max_body_bytes))
        .with_state(api)
}

fn authorized(api: &Api, headers: &HeaderMap) -> Result<(), Response> {
    use subtle::ConstantTimeEq;
    let Some(token) = &api.token else {
        return Err((StatusCode::NOT_FOUND, "the admin API is off: set [api] token\n").into_response());
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    // compare digests so the time does not depend on where the strings differ, nor on length
    let digest = |s: &str| -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(s.as_bytes()).into()
    };
    if bool::from(digest(given).ct_eq(&digest(token))) {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a valid bearer token is required\n").into_response())
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("api: {e}");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
}

async fn unsubscribe_page(State(api): State<Arc<Api>>, Path(token): Path<String>) -> Response {
    if api.links.verify(&token).is_none() {
        return (StatusCode::FORBIDDEN, Html("<p>This link is not valid.</p>")).into_response();
    }
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>\
         <form method=post action=\"/u/{token}\"><p>Stop these messages?</p><button type=submit>Unsubscribe</button></form>"
    ))
    .into_response()
}

/// RFC 8058 one-click (`List-Unsubscribe=One-Click` body) and the page's form both land here.
async fn unsubscribe(State(api): State<Arc<Api>>, Path(token): Path<String>) -> Response {
    let Some((member, channel)) = api.links.verify(&token) else {
        return (StatusCode::FORBIDDEN, Html("<p>This link is not valid.</p>")).into_response();
    };
    let store = api.store.clone();
    let now = chrono::Utc::now().timestamp();
    let ch = channel.clone();
    match tokio::task::spawn_blocking(move || store.suppress(&member, &ch, now)).await {
        Ok(Ok(())) => {
            tracing::info!(channel = %channel, "unsubscribed");
            tracing::debug!(token = %token, "unsubscribe token");
            Html("<p>You are unsubscribed. You will not get these messages any more.</p>").into_response()
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn runs(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&api, &headers) {
        return r;
    }
    let runs: Result<Vec<_>, _> = api.store.runs().collect();
    match runs {
        Ok(runs) => {
            let out: Vec<serde_json::Value> = runs
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.id, "at": r.at, "catch_up": r.catch_up,
                        "rules": r.rules.iter().map(|x| serde_json::json!({"rule": x.rule.as_str(), "messages": x.messages, "held_out": x.held_out.len(), "funnel": x.funnel})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            axum::Json(out).into_response()
        }
        Err(e) => internal(e),
    }
}

async fn outbox(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&api, &headers) {
        return r;
    }
    match api.store.outbox_counts(chrono::Utc::now().timestamp()) {
        Ok((queued, due, dead)) => axum::Json(serde_json::json!({"queued": queued, "due": due, "dead_letters": dead})).into_response(),
        Err(e) => internal(e),
    }
}

async fn report(State(api): State<Arc<Api>>, headers: HeaderMap, Path(which): Path<String>) -> Response {
    if let Err(r) = authorized(&api, &headers) {
        return r;
    }
    let store = api.store.clone();
    let window = api.attribution_days;
    let result = tokio::task::spawn_blocking(move || crate::report::report_for(&store, &which, window)).await;
    match result {
        Ok(Ok(r)) if r.is_empty() => (StatusCode::NOT_FOUND, "no such run or rule\n").into_response(),
        Ok(Ok(r)) => axum::Json(r).into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn metrics(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&api, &headers) {
        return r;
    }
    let (queued, due, dead) = match api.store.outbox_counts(chrono::Utc::now().timestamp()) {
        Ok(c) => c,
        Err(e) => return internal(e),
    };
    let mut runs = 0u64;
    let mut planned = 0u64;
    for r in api.store.runs().flatten() {
        runs += 1;
        planned += r.rules.iter().map(|x| u64::from(x.messages)).sum::<u64>();
    }
    let body = format!(
        "# HELP rekindle_outbox_queued Messages waiting in the outbox.\n# TYPE rekindle_outbox_queued gauge\nrekindle_outbox_queued {queued}\n\
         # HELP rekindle_outbox_due Messages due now.\n# TYPE rekindle_outbox_due gauge\nrekindle_outbox_due {due}\n\
         # HELP rekindle_dead_letters Messages whose retries ran out.\n# TYPE rekindle_dead_letters gauge\nrekindle_dead_letters {dead}\n\
         # HELP rekindle_runs_total Runs written to the outbox.\n# TYPE rekindle_runs_total counter\nrekindle_runs_total {runs}\n\
         # HELP rekindle_messages_planned_total Messages planned by all runs.\n# TYPE rekindle_messages_planned_total counter\nrekindle_messages_planned_total {planned}\n"
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
