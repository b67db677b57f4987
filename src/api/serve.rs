//! The listener: hyper's HTTP/1 server on the daemon's socket, with the limits a public
//! endpoint needs and `axum::serve` does not offer.
//!
//! - A request's headers must arrive within `header_timeout_seconds` (hyper's header-read
//!   timeout). hyper starts that clock whenever a connection waits for a request, new or
//!   kept alive, so it is also the idle keep-alive timeout.
//! - A request's body must arrive within `body_timeout_seconds` of its headers, and be at
//!   most `max_body_bytes` (the body is read whole before the handler runs: 408, 413).
//! - At most `max_connections` connections are open; the next waits in the kernel's
//!   backlog until one closes. One client address (an IPv6 /64) holds at most
//!   `max_connections_per_client` of them, the trusted proxies excepted; past that its
//!   connection is closed at once.
//!
//! Stopping: no new connections, idle ones close, requests in flight get the grace period,
//! then what is left is closed.

use super::limit::{client_key, TrustedProxies};
use super::ApiConfig;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Serves `app` on `listener` until `stop` completes; connections still open `grace`
/// after that are closed.
pub async fn serve(listener: TcpListener, app: Router, config: ApiConfig, stop: impl Future<Output = ()>, grace: Duration) {
    let body = BodyLimits { timeout: config.body_timeout(), max_bytes: config.max_body_bytes };
    let app = app.layer(axum::middleware::from_fn_with_state(body, read_body_in_time));
    let header_timeout = config.header_timeout();
    let open = Arc::new(Semaphore::new(config.max_connections as usize));
    let per_client = Arc::new(ClientConnections {
        trusted: TrustedProxies::new(&config.trusted_proxies),
        limit: config.max_connections_per_client,
        open: Mutex::new(HashMap::new()),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = open.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        while connections.try_join_next().is_some() {}
        let Some(slot) = per_client.take(peer.ip()) else {
            tracing::debug!(client = %peer.ip(), "too many connections from one client: closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("api connection: {e}");
            }
            drop((permit, slot));
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(connections = connections.len(), "API connections still open after the grace period are closed");
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
}

/// Like `axum::serve`: a connection error is the client's; anything else (out of file
/// descriptors) waits a second before the next accept.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        tracing::error!("api: accepting a connection: {e}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Open connections per client address (entries only while a connection is open, so at
/// most `max_connections` of them).
struct ClientConnections {
    trusted: TrustedProxies,
    /// 0: no limit.
    limit: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// A client's claim on one of its connections, given back when dropped.
struct Slot(Option<(Arc<ClientConnections>, IpAddr)>);

impl ClientConnections {
    /// A slot for a new connection from `ip`; None when the client has all its own.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        if self.limit == 0 || self.trusted.contains(ip) {
            return Some(Slot(None));
        }
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot(Some((self.clone(), key))))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((clients, key)) = self.0.take() {
            let mut open = clients.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = open.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct BodyLimits {
    timeout: Duration,
    max_bytes: usize,
}

/// Reads the whole body within the deadline before the handler runs: a body that
/// trickles is cut off with 408, one over the size limit gets 413.
async fn read_body_in_time(State(limits): State<BodyLimits>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(limits.timeout, axum::body::to_bytes(body, limits.max_bytes)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(e)) if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) => {
            (StatusCode::PAYLOAD_TOO_LARGE, [(header::CONNECTION, "close")], format!("the request body is over {} bytes\n", limits.max_bytes)).into_response()
        }
        Ok(Err(_)) => (StatusCode::BAD_REQUEST, [(header::CONNECTION, "close")], "the request body could not be read\n").into_response(),
        Err(_) => (StatusCode::REQUEST_TIMEOUT, [(header::CONNECTION, "close")], "the request body did not arrive in time\n").into_response(),
    }
}
