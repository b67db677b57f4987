//! The daemon's HTTP API on 127.0.0.1 (axum).
//!
//! Public: `/healthz`; one-click unsubscribe links (RFC 8058: GET shows a confirmation
//! page, POST unsubscribes); provider callbacks at `/callbacks/{channel}/{secret}[/...]`,
//! checked against the channel's secret, then handed to the channel plugin's
//! parse-callback and applied as delivery feedback. The links and callbacks count failed
//! attempts per client (`limit`); the listener (`serve`) bounds header and body time,
//! body size and connections.
//!
//! Behind the bearer token of `[api] token`: NDJSON ingest, rules (list, check, preview,
//! run now), runs and reports, the outbox and its dead letters (list, retry), members
//! (profile, explain), the channels' callback URLs and `/metrics` (Prometheus text
//! format). Token checks are constant-time; request bodies are capped; member ids never
//! reach logs above debug.

use crate::dispatch::Observers;
use crate::plan::links::Links;
use crate::plugin::ChannelHost;
use crate::store::outbox::MessageId;
use crate::store::Store;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

mod callbacks;
mod limit;
mod request;
mod serve;
mod unsubscribe;

pub use limit::ProxyNet;
pub use request::{DaemonRequest, RequestError, RunSummary};
pub use serve::serve;

/// `[api]` in config.toml.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where the API listens; keep it on loopback behind a reverse proxy.
    pub listen: String,
    /// Bearer token of the admin endpoints (the REKINDLE_API_TOKEN environment variable
    /// overrides it). Empty: only the public endpoints are served.
    pub token: String,
    /// The token read from this file instead (config.rs: `*_file` keys).
    pub token_file: Option<std::path::PathBuf>,
    /// A read-only bearer token accepted on `/metrics` alone, for a Prometheus scraper
    /// (the REKINDLE_METRICS_TOKEN environment variable overrides it). The admin token
    /// is accepted there too.
    pub metrics_token: String,
    pub metrics_token_file: Option<std::path::PathBuf>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client (addresses or networks);
    /// from anyone else the header is ignored.
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<ProxyNet>,
    /// Failed attempts (401, 403) on the public routes within `failure_window_seconds`
    /// after which a client gets 429 until the window ends (0: no limit).
    pub failure_limit: u32,
    pub failure_window_seconds: f64,
    /// Time a client has to send a request's headers, counted from the accept or the end
    /// of the previous response (so also the idle keep-alive timeout).
    pub header_timeout_seconds: f64,
    /// Time a client has to send a request's body once its headers are in.
    pub body_timeout_seconds: f64,
    /// Open connections at most; more wait to be accepted.
    pub max_connections: u32,
    /// Open connections of one client address (an IPv6 /64) at most, trusted proxies
    /// excepted; more are closed at once (0: no limit).
    pub max_connections_per_client: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8787".into(),
            token: String::new(),
            token_file: None,
            metrics_token: String::new(),
            metrics_token_file: None,
            max_body_bytes: 16 << 20,
            trusted_proxies: Vec::new(),
            failure_limit: 20,
            failure_window_seconds: 600.0,
            header_timeout_seconds: 10.0,
            body_timeout_seconds: 30.0,
            max_connections: 1024,
            max_connections_per_client: 64,
        }
    }
}

impl ApiConfig {
    pub fn token(&self) -> Option<String> {
        token_or_env(&self.token, "REKINDLE_API_TOKEN")
    }

    pub fn metrics_token(&self) -> Option<String> {
        token_or_env(&self.metrics_token, "REKINDLE_METRICS_TOKEN")
    }

    /// The read-only token must not open the admin API: checked once the secret files
    /// and the environment are read.
    pub fn check_tokens(&self) -> Result<(), String> {
        match self.metrics_token() {
            Some(m) if Some(&m) == self.token().as_ref() => Err("api.metrics_token: must differ from api.token (it is the read-only one)".into()),
            _ => Ok(()),
        }
    }

    /// The problems of `[api]`, each naming its key.
    pub fn check(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (key, v) in [
            ("failure_window_seconds", self.failure_window_seconds),
            ("header_timeout_seconds", self.header_timeout_seconds),
            ("body_timeout_seconds", self.body_timeout_seconds),
        ] {
            if !(v > 0.0 && Duration::try_from_secs_f64(v).is_ok()) {
                out.push(format!("api.{key}: must be a positive number of seconds, got {v}"));
            }
        }
        if self.max_connections == 0 || self.max_connections as usize > tokio::sync::Semaphore::MAX_PERMITS {
            out.push(format!("api.max_connections: must be at least 1, got {}", self.max_connections));
        }
        if self.max_body_bytes == 0 {
            out.push("api.max_body_bytes: must be at least 1".into());
        }
        out
    }

    /// Checked by `check`; a value it refused reads as a day.
    fn seconds(v: f64) -> Duration {
        Duration::try_from_secs_f64(v).unwrap_or(Duration::from_secs(86_400))
    }

    pub(crate) fn header_timeout(&self) -> Duration {
        Self::seconds(self.header_timeout_seconds)
    }

    pub(crate) fn body_timeout(&self) -> Duration {
        Self::seconds(self.body_timeout_seconds)
    }
}

/// What the handlers share.
pub struct Api {
    store: Store,
    links: Links,
    token: Option<String>,
    metrics_token: Option<String>,
    attribution_days: u32,
    max_body_bytes: usize,
    rules_dir: std::path::PathBuf,
    channel_names: Vec<String>,
    host: Arc<ChannelHost>,
    /// The channels' callback secrets (none: every callback is refused).
    callbacks: crate::feedback::CallbackKeys,
    observers: Observers,
    /// The daemon loop (None: a stand-alone API without scheduling, for tests).
    daemon: Option<mpsc::Sender<DaemonRequest>>,
    /// The region members' phones are read in (`[members] phone_region`).
    phone_region: Option<crate::domain::PhoneRegion>,
    /// One ingest at a time: two requests touching one member must not interleave.
    ingest: tokio::sync::Mutex<()>,
    /// Failed attempts per client on the public routes.
    failures: Arc<limit::FailureLimits>,
}

/// What the API reads of config.toml: its own `[api]` table and the few keys of other
/// tables its handlers need (`config::Config::api_settings` gathers them).
#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    pub api: ApiConfig,
    /// `[campaigns] attribution_days`: the conversion window of `/api/report`.
    pub attribution_days: u32,
    /// `[campaigns] rules_dir`: the folder `/api/rules/check` checks a file against.
    pub rules_dir: std::path::PathBuf,
    /// The configured channels (`[channels.NAME]`), the ones a rule may name.
    pub channel_names: Vec<String>,
    /// `[members] phone_region`: the region phones without a country code are read in.
    pub phone_region: Option<crate::domain::PhoneRegion>,
}

impl Api {
    pub fn new(store: Store, links: Links, settings: &ApiSettings, host: Arc<ChannelHost>, observers: Observers, daemon: Option<mpsc::Sender<DaemonRequest>>) -> Api {
        let config = &settings.api;
        Api {
            store,
            links,
            token: config.token(),
            metrics_token: config.metrics_token(),
            attribution_days: settings.attribution_days,
            max_body_bytes: config.max_body_bytes,
            rules_dir: settings.rules_dir.clone(),
            channel_names: settings.channel_names.clone(),
            host,
            callbacks: Default::default(),
            observers,
            daemon,
            phone_region: settings.phone_region,
            ingest: tokio::sync::Mutex::new(()),
            failures: Arc::new(limit::FailureLimits::new(
                limit::TrustedProxies::new(&config.trusted_proxies),
                config.failure_limit,
                ApiConfig::seconds(config.failure_window_seconds),
            )),
        }
    }

    /// The callback secrets the public `/callbacks/` endpoints check.
    pub fn with_callbacks(self, callbacks: crate::feedback::CallbackKeys) -> Api {
        Api { callbacks, ..self }
    }
}

fn token_or_env(configured: &str, env: &str) -> Option<String> {
    match std::env::var(env) {
        Ok(t) if !t.is_empty() => Some(t),
        _ => (!configured.is_empty()).then(|| configured.to_string()),
    }
}

/// The router; `serve` runs it.
pub fn router(api: Api) -> Router {
    let max_body = api.max_body_bytes;
    let admin = Router::new()
        .route("/api/ingest", post(ingest))
        .route("/api/rules", get(rules))
        .route("/api/rules/check", post(rules_check))
        .route("/api/rules/{id}/preview", get(rules_preview))
        .route("/api/rules/{id}/run", post(rules_run))
        .route("/api/runs", get(runs))
        .route("/api/report/{run_or_rule}", get(report))
        .route("/api/outbox", get(outbox))
        .route("/api/outbox/dead-letters", get(dead_letters))
        .route("/api/outbox/retry", post(retry))
        .route("/api/members/{id}", get(member))
        .route("/api/members/{id}/explain", get(explain))
        .route("/api/callbacks", get(callbacks::urls))
        .route_layer(axum::middleware::from_fn_with_state(Arc::new(Vec::from_iter(api.token.clone())), require_token));
    let scrape = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(Arc::new(Vec::from_iter(api.token.clone().into_iter().chain(api.metrics_token.clone()))), require_token));
    let public = Router::new()
        .route("/u/{token}", get(unsubscribe::unsubscribe_page).post(unsubscribe::unsubscribe))
        .route("/callbacks/{channel}", any(callbacks::callback))
        .route("/callbacks/{channel}/{*rest}", any(callbacks::callback))
        .route_layer(axum::middleware::from_fn_with_state(api.failures.clone(), limit::limit_failures));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(public)
        .merge(admin)
        .merge(scrape)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(Arc::new(api))
}

/// Lets a request through if its bearer token is one of `accepted`.
async fn require_token(State(accepted): State<Arc<Vec<String>>>, request: Request, next: axum::middleware::Next) -> Response {
    use subtle::ConstantTimeEq;
    if accepted.is_empty() {
        return (StatusCode::NOT_FOUND, "the admin API is off: set [api] token (/metrics also takes [api] metrics_token)\n").into_response();
    }
    let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    // compare digests so the time does not depend on where the strings differ, nor on length
    let digest = |s: &str| -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(s.as_bytes()).into()
    };
    let given = digest(given);
    // every token is compared, so the time does not tell which one matched
    if accepted.iter().fold(subtle::Choice::from(0), |ok, token| ok | given.ct_eq(&digest(token))).into() {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a valid bearer token is required\n").into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!("api: {e}");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
}

fn problem(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(serde_json::json!({ "error": message.to_string() }))).into_response()
}

/// Runs store work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(internal(e)),
        Err(e) => Err(internal(e)),
    }
}

/// Asks the daemon loop; 503 when the API runs without one.
async fn ask<T>(api: &Api, make: impl FnOnce(oneshot::Sender<T>) -> DaemonRequest) -> Result<T, RequestError> {
    let Some(daemon) = &api.daemon else { return Err(RequestError::Unavailable("no daemon behind this API")) };
    let (tx, rx) = oneshot::channel();
    daemon.send(make(tx)).await.map_err(|_| RequestError::Unavailable("the daemon is stopping"))?;
    rx.await.map_err(|_| RequestError::Unavailable("the daemon is stopping"))
}

/// Asks the daemon loop for something that can fail.
async fn ask_result<T>(api: &Api, make: impl FnOnce(oneshot::Sender<Result<T, RequestError>>) -> DaemonRequest) -> Result<T, RequestError> {
    ask(api, make).await?
}

#[derive(Deserialize)]
struct IngestQuery {
    kind: Option<String>,
}

/// NDJSON members, orders, events or products (kind from `?kind=` or the first line's
/// keys), with the import command's validation: bad lines are reported by line and
/// reason and skipped, every good line is stored (atomically per batch) and durable when
/// the answer comes.
async fn ingest(State(api): State<Arc<Api>>, Query(q): Query<IngestQuery>, body: Bytes) -> Response {
    use crate::ingest::rows::Kind;
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => match [Kind::Members, Kind::Orders, Kind::Events, Kind::Products].into_iter().find(|x| x.name() == k) {
            Some(kind) => Some(kind),
            None => return problem(StatusCode::BAD_REQUEST, format_args!("kind {k:?} is not members, orders, events or products")),
        },
    };
    let _one_at_a_time = api.ingest.lock().await;
    let (store, phone_region) = (api.store.clone(), api.phone_region);
    let result = tokio::task::spawn_blocking(move || {
        let mut bad = Vec::new();
        let summary = crate::ingest::import_ndjson(&store, std::io::Cursor::new(body), "request", kind, phone_region, &mut |b| {
            if bad.len() < 1000 {
                bad.push(serde_json::json!({ "line": b.line, "reason": b.reason }));
            }
        })?;
        store.flush()?;
        Ok::<_, crate::ingest::IngestError>((summary, bad))
    })
    .await;
    match result {
        Ok(Ok((s, bad))) => {
            api.observers.metrics.observe_ingest(s.kind.name(), s.imported, s.bad);
            if s.imported > 0 {
                if let Some(d) = &api.daemon {
                    let _ = d.send(DaemonRequest::StoreChanged).await;
                }
            }
            Json(serde_json::json!({
                "kind": s.kind.name(), "lines": s.rows, "imported": s.imported, "bad": s.bad, "bad_lines": bad,
                "unknown_fields": s.unknown_columns, "seconds": s.elapsed.as_secs_f64(),
            }))
            .into_response()
        }
        Ok(Err(crate::ingest::IngestError::Store(e))) => internal(e),
        Ok(Err(e)) => problem(StatusCode::BAD_REQUEST, e),
        Err(e) => internal(e),
    }
}

async fn rules(State(api): State<Arc<Api>>) -> Response {
    match ask(&api, |reply| DaemonRequest::Rules { reply }).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct CheckQuery {
    /// The file name the diagnostics show (with an uploaded body).
    file: Option<String>,
}

/// Checks an uploaded rule file (the body), or with an empty body the rules folder:
/// every diagnostic with file, line and column, and the rendered snippet.
async fn rules_check(State(api): State<Arc<Api>>, Query(q): Query<CheckQuery>, body: Bytes) -> Response {
    let channels = crate::rules::ChannelNames { configured: api.channel_names.clone() };
    let set = if body.is_empty() {
        match crate::rules::load(&api.rules_dir, &channels) {
            Ok(set) => set,
            Err(e) => return internal(e),
        }
    } else {
        let Ok(text) = String::from_utf8(body.to_vec()) else { return problem(StatusCode::BAD_REQUEST, "the rule file is not UTF-8") };
        // read as if it sat in the rules folder: the files it names are looked up there
        // (and confined to it), whatever folder `file` names
        let name = q.file.unwrap_or_default();
        let name = std::path::Path::new(&name).file_name().unwrap_or("uploaded.toml".as_ref());
        let mut set = crate::rules::RuleSet { rules: Vec::new(), diagnostics: Vec::new(), sources: Default::default(), failed: Vec::new() };
        crate::rules::add_file(&mut set, &api.rules_dir.join(name), text, &channels);
        set
    };
    let diagnostics: Vec<serde_json::Value> = set
        .diagnostics
        .iter()
        .map(|d| {
            let (line, column) = set.sources.line_col(d.file, d.span.start);
            serde_json::json!({
                "severity": d.severity, "file": set.sources.name(d.file), "line": line, "column": column,
                "message": d.message, "help": d.help, "rendered": set.sources.render(d),
            })
        })
        .collect();
    let errors = set.errors();
    Json(serde_json::json!({ "valid": set.rules.iter().map(|r| &r.id).collect::<Vec<_>>(), "errors": errors, "diagnostics": diagnostics }))
        .into_response()
}

#[derive(Deserialize)]
struct PreviewQuery {
    sample: Option<usize>,
}

async fn rules_preview(State(api): State<Arc<Api>>, Path(rule): Path<String>, Query(q): Query<PreviewQuery>) -> Response {
    match ask_result(&api, |reply| DaemonRequest::Preview { rule, sample: q.sample.unwrap_or(3), reply }).await {
        Ok(text) => text.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn rules_run(State(api): State<Arc<Api>>, Path(rule): Path<String>) -> Response {
    let rules = if rule == "enabled" { Vec::new() } else { vec![rule] };
    match ask_result(&api, |reply| DaemonRequest::RunNow { rules, reply }).await {
        Ok(summary) => Json(summary).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn runs(State(api): State<Arc<Api>>) -> Response {
    let store = api.store.clone();
    match blocking(move || store.runs().collect::<Result<Vec<_>, _>>()).await {
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
            Json(out).into_response()
        }
        Err(r) => r,
    }
}

async fn outbox(State(api): State<Arc<Api>>) -> Response {
    let store = api.store.clone();
    match blocking(move || Ok((store.outbox_counts(chrono::Utc::now().timestamp())?, store.next_due()?))).await {
        Ok(((queued, due, dead), next_due)) => Json(serde_json::json!({"queued": queued, "due": due, "dead_letters": dead, "next_due": next_due})).into_response(),
        Err(r) => r,
    }
}

async fn dead_letters(State(api): State<Arc<Api>>) -> Response {
    let store = api.store.clone();
    let list = blocking(move || {
        store
            .dead_letters()
            .map(|r| {
                r.map(|(id, m)| {
                    let channel = m.channels.get(m.current as usize).map(|c| c.channel.to_string()).unwrap_or_default();
                    serde_json::json!({"id": id.to_string(), "rule": m.rule.as_str(), "member": m.member.as_str(), "channel": channel, "attempts": m.attempts, "errors": m.errors})
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    match list {
        Ok(list) => Json(list).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    all: bool,
}

/// Queues dead letters again: `{"ids": ["12-345"]}` or `{"all": true}`.
async fn retry(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let body: RetryBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, format_args!("the body is not {{\"ids\": [...]}} or {{\"all\": true}}: {e}")),
    };
    let ids: Result<Vec<MessageId>, String> = body.ids.iter().map(|s| s.parse()).collect();
    let ids = match (ids, body.all) {
        (Ok(ids), false) if !ids.is_empty() => Some(ids),
        (Ok(ids), true) if ids.is_empty() => None,
        (Err(e), _) => return problem(StatusCode::BAD_REQUEST, e),
        _ => return problem(StatusCode::BAD_REQUEST, "give either ids or all: true"),
    };
    let store = api.store.clone();
    match tokio::task::spawn_blocking(move || store.retry_dead_letters(ids.as_deref(), chrono::Utc::now().timestamp())).await {
        Ok(Ok(n)) => Json(serde_json::json!({"queued": n})).into_response(),
        Ok(Err(crate::store::outbox::RetryError::Store(e))) => internal(e),
        Ok(Err(e)) => problem(StatusCode::BAD_REQUEST, e),
        Err(e) => internal(e),
    }
}

async fn member(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match ask_result(&api, |reply| DaemonRequest::Member { id, reply }).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct ExplainQuery {
    rule: Option<String>,
    /// `json` for one JSON document; text otherwise.
    format: Option<String>,
}

async fn explain(State(api): State<Arc<Api>>, Path(member): Path<String>, Query(q): Query<ExplainQuery>) -> Response {
    let json = match q.format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => return problem(StatusCode::BAD_REQUEST, format!("format {other:?}: text or json")),
    };
    match ask_result(&api, |reply| DaemonRequest::Explain { member, rule: q.rule, json, reply }).await {
        Ok(body) if json => ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(text) => text.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn report(State(api): State<Arc<Api>>, Path(which): Path<String>) -> Response {
    let store = api.store.clone();
    let window = api.attribution_days;
    match blocking(move || crate::report::report_for(&store, &which, window)).await {
        Ok(r) if r.is_empty() => problem(StatusCode::NOT_FOUND, "no such run or rule"),
        Ok(r) => Json(r).into_response(),
        Err(r) => r,
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let store = api.store.clone();
    let counts = blocking(move || {
        let (queued, due, dead) = store.outbox_counts(chrono::Utc::now().timestamp())?;
        let mut runs = 0u64;
        let mut planned = 0u64;
        for r in store.runs() {
            let r = r?;
            runs += 1;
            planned += r.rules.iter().map(|x| u64::from(x.messages)).sum::<u64>();
        }
        Ok((queued, due, dead, runs, planned))
    })
    .await;
    let (queued, due, dead, runs, planned) = match counts {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut body = format!(
        "# HELP rekindle_outbox_queued Messages waiting in the outbox.\n# TYPE rekindle_outbox_queued gauge\nrekindle_outbox_queued {queued}\n\
         # HELP rekindle_outbox_due Messages due now.\n# TYPE rekindle_outbox_due gauge\nrekindle_outbox_due {due}\n\
         # HELP rekindle_dead_letters Messages whose retries ran out.\n# TYPE rekindle_dead_letters gauge\nrekindle_dead_letters {dead}\n\
         # HELP rekindle_runs_total Runs written to the outbox.\n# TYPE rekindle_runs_total counter\nrekindle_runs_total {runs}\n\
         # HELP rekindle_messages_planned_total Messages planned by all runs.\n# TYPE rekindle_messages_planned_total counter\nrekindle_messages_planned_total {planned}\n"
    );
    api.observers.metrics.render(&mut body);
    crate::metrics::render_process(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
