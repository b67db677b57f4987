//! Who the client is, and its failed attempts on the public routes.
//!
//! The client address is the socket's peer, or, only when that peer is one of
//! `[api] trusted_proxies`, the right-most `X-Forwarded-For` address that is not a trusted
//! proxy (a proxy appends the address it saw; what is left of it came from the client and
//! proves nothing). IPv6 clients count by their /64, which one subscriber usually holds
//! whole.
//!
//! `limit_failures` wraps the public routes (`/u/`, `/callbacks/`): it counts the answers
//! 401 and 403 per client; after `failure_limit` of them within a window of
//! `failure_window_seconds` the client gets 429 with `Retry-After`, without the handler
//! running, until the window ends. Successes are not counted and never throttled.
//! Memory is bounded: at most `MAX_CLIENTS` windows; when all are in use (after dropping
//! ended ones) further clients share one window, so a flood from many addresses is
//! throttled together instead of growing the table.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clients whose failures are counted one by one (about 50 bytes each).
pub(crate) const MAX_CLIENTS: usize = 65_536;

/// An address or network of `[api] trusted_proxies`: `"127.0.0.1"`, `"10.0.0.0/8"`, `"::1"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyNet(pub IpNet);

impl std::str::FromStr for ProxyNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(ProxyNet)
            .map_err(|_| format!("{s:?} is not an IP address or network (like \"127.0.0.1\" or \"10.0.0.0/8\")"))
    }
}

impl<'de> serde::Deserialize<'de> for ProxyNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub(crate) fn new(nets: &[ProxyNet]) -> TrustedProxies {
        TrustedProxies(nets.iter().map(|n| n.0).collect())
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client a request came from (None: no socket, as in router tests).
    pub(crate) fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        if !self.contains(peer) {
            return Some(peer);
        }
        // right to left: every hop a trusted proxy vouches for, until one it does not
        let mut client = peer;
        let values: Vec<&HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
        for value in values.into_iter().rev() {
            let Ok(value) = value.to_str() else { return Some(client) };
            for hop in value.rsplit(',') {
                let Some(ip) = parse_hop(hop) else { return Some(client) };
                client = ip;
                if !self.contains(ip) {
                    return Some(ip);
                }
            }
        }
        Some(client)
    }
}

/// One X-Forwarded-For entry: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>().or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip())).ok().map(|ip| ip.to_canonical())
}

/// What the limits count by: an IPv4 address, or an IPv6 address's /64.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// The failed-attempt windows of the clients.
pub(crate) struct FailureLimits {
    trusted: TrustedProxies,
    /// Failures in a window after which a client is refused (0: no limit).
    limit: u32,
    window: Duration,
    state: Mutex<Windows>,
}

struct Windows {
    /// By client key; None is the window clients share once the table is full (and
    /// requests without a socket).
    clients: HashMap<Option<IpAddr>, Window>,
    swept: Instant,
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

impl FailureLimits {
    pub(crate) fn new(trusted: TrustedProxies, limit: u32, window: Duration) -> FailureLimits {
        FailureLimits { trusted, limit, window, state: Mutex::new(Windows { clients: HashMap::new(), swept: Instant::now() }) }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, Windows> {
        // the windows stay consistent whatever panicked while holding the lock
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `client` must wait, if its window holds `limit` failures.
    fn refused_for(&self, client: Option<IpAddr>, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let w = self.windows();
        let key = if w.clients.contains_key(&client) || w.clients.len() < MAX_CLIENTS { client } else { None };
        let window = w.clients.get(&key)?;
        let ends = window.start + self.window;
        (window.failures >= self.limit && ends > now).then(|| ends - now)
    }

    /// Counts a failure of `client`.
    fn failed(&self, client: Option<IpAddr>, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let mut w = self.windows();
        let mut key = client;
        if !w.clients.contains_key(&key) && w.clients.len() >= MAX_CLIENTS {
            if now.duration_since(w.swept) >= Duration::from_secs(1) {
                let window = self.window;
                w.clients.retain(|_, x| now.duration_since(x.start) < window);
                w.swept = now;
            }
            if w.clients.len() >= MAX_CLIENTS {
                key = None;
            }
        }
        let entry = w.clients.entry(key).or_insert(Window { start: now, failures: 0 });
        if now.duration_since(entry.start) >= self.window {
            *entry = Window { start: now, failures: 0 };
        }
        entry.failures += 1;
        if entry.failures == self.limit {
            match key {
                Some(ip) => tracing::warn!(client = %ip, failures = self.limit, "too many failed attempts on the public endpoints: refused until the window ends"),
                None => tracing::warn!(failures = self.limit, "too many failed attempts from clients past the tracked ones: all of them refused until the window ends"),
            }
        }
    }
}

/// The middleware of the public routes: 429 for a client over its failures, and every
/// 401 or 403 answer counted.
pub(crate) async fn limit_failures(State(limits): State<Arc<FailureLimits>>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let client = limits.trusted.client(peer, request.headers()).map(client_key);
    if let Some(wait) = limits.refused_for(client, Instant::now()) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs.max(1).to_string())], "too many failed attempts: try again later\n").into_response();
    }
    let response = next.run(request).await;
    if matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        limits.failed(client, Instant::now());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&list.iter().map(|s| s.parse().unwrap()).collect::<Vec<ProxyNet>>())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let none = proxies(&[]);
        assert_eq!(none.client(Some(ip("127.0.0.1")), &forwarded(&["127.0.0.9"])), Some(ip("127.0.0.1")));
        let local = proxies(&["127.0.0.1", "::1"]);
        assert_eq!(local.client(Some(ip("127.0.0.2")), &forwarded(&["127.0.0.9"])), Some(ip("127.0.0.2")), "127.0.0.2 is no proxy of ours");
    }

    #[test]
    fn the_client_is_the_right_most_address_no_trusted_proxy_claims() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = Some(ip("127.0.0.1"));
        assert_eq!(p.client(peer, &forwarded(&["127.0.0.9"])), Some(ip("127.0.0.9")));
        // the client wrote the first two itself; the proxies appended the rest
        assert_eq!(p.client(peer, &forwarded(&["1.1.1.1, 127.0.0.5, 127.0.0.9, 10.1.2.3"])), Some(ip("127.0.0.9")));
        assert_eq!(p.client(peer, &forwarded(&["1.1.1.1", "127.0.0.9:4711, 10.0.0.7"])), Some(ip("127.0.0.9")), "several headers, a port");
        assert_eq!(p.client(peer, &forwarded(&["[2001:db8::7]:443"])), Some(ip("2001:db8::7")));
        assert_eq!(p.client(peer, &forwarded(&["::ffff:127.0.0.9"])), Some(ip("127.0.0.9")), "v4-mapped is the v4 address");
        assert_eq!(p.client(peer, &HeaderMap::new()), Some(ip("127.0.0.1")), "no header: the proxy itself");
        assert_eq!(p.client(peer, &forwarded(&["10.0.0.8, 10.0.0.9"])), Some(ip("10.0.0.8")), "only proxies: the left-most");
        assert_eq!(p.client(peer, &forwarded(&["127.0.0.9, garbage"])), Some(ip("127.0.0.1")), "garbage a proxy vouches for ends the walk");
        assert_eq!(p.client(None, &forwarded(&["127.0.0.9"])), None);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("127.0.0.7")), ip("127.0.0.7"));
        assert_eq!(client_key(ip("::ffff:127.0.0.7")), ip("127.0.0.7"));
    }

    #[test]
    fn trusted_proxies_parse_addresses_and_networks_and_refuse_the_rest() {
        assert_eq!("127.0.0.1".parse::<ProxyNet>().unwrap().0, "127.0.0.1/32".parse::<IpNet>().unwrap());
        assert!("fd00::/8".parse::<ProxyNet>().is_ok());
        let e = "localhost".parse::<ProxyNet>().unwrap_err();
        assert!(e.contains("\"localhost\" is not an IP address or network"), "{e}");
    }

    #[test]
    fn a_client_is_refused_after_the_limit_until_its_window_ends() {
        let l = FailureLimits::new(TrustedProxies::default(), 3, Duration::from_secs(60));
        let (a, b) = (Some(ip("127.0.0.2")), Some(ip("127.0.0.3")));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.refused_for(a, t0), None);
            l.failed(a, t0);
        }
        assert_eq!(l.refused_for(a, t0 + Duration::from_secs(10)), Some(Duration::from_secs(50)));
        assert_eq!(l.refused_for(b, t0), None, "another client is not affected");
        assert_eq!(l.refused_for(a, t0 + Duration::from_secs(60)), None, "the window ended");
        l.failed(a, t0 + Duration::from_secs(61));
        assert_eq!(l.refused_for(a, t0 + Duration::from_secs(61)), None, "a new window starts from nothing");
    }

    #[test]
    fn a_flood_from_many_addresses_shares_one_window_past_the_table() {
        let l = FailureLimits::new(TrustedProxies::default(), 2, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..MAX_CLIENTS as u32 {
            l.failed(Some(IpAddr::V4(i.into())), t0);
        }
        let (late, later) = (Some(ip("127.0.0.2")), Some(ip("127.0.0.3")));
        l.failed(late, t0);
        assert_eq!(l.refused_for(later, t0), None);
        l.failed(later, t0);
        assert_eq!(l.windows().clients.len(), MAX_CLIENTS + 1, "the table does not grow past its bound (plus the shared window)");
        assert!(l.refused_for(Some(ip("127.0.0.4")), t0).is_some(), "clients past the table are throttled together");
        assert_eq!(l.refused_for(Some(IpAddr::V4(7u32.into())), t0), None, "a tracked client keeps its own window");
        // once the windows end they are swept and new clients get their own again
        let t1 = t0 + Duration::from_secs(61);
        l.failed(late, t1);
        assert_eq!(l.windows().clients.len(), 1);
        assert_eq!(l.refused_for(Some(ip("127.0.0.4")), t1), None);
    }
}
