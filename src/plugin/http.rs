//! The HTTP capability: outbound requests a plugin makes, checked against its grant.
//!
//! It owns the allowlist match (parsed scheme, host and port of the URL, again
//! on every redirect hop), the DNS filter that keeps a granted host name from
//! resolving to a private or loopback address (only a literal grant such as
//! `127.0.0.1:8080` or `localhost` reaches those), the per-request wall-clock
//! timeout and the response size cap. One reqwest client per channel, with
//! TCP_NODELAY, so connections are reused across that channel's messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use super::bounds;

/// One `grants.http` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllowedOrigin {
    /// `None`: either http or https.
    scheme: Option<String>,
    host: String,
    /// `None`: the scheme's default port.
    port: Option<u16>,
}

impl AllowedOrigin {
    /// Parse `https://host[:port]`, `http://host[:port]` or `host[:port]`.
    pub(crate) fn parse(entry: &str) -> Result<Self, String> {
        let trimmed = entry.trim();
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme == "http" || scheme == "https" => (Some(scheme.to_string()), rest),
            Some((scheme, _)) => return Err(format!("grants.http entry `{entry}`: scheme `{scheme}` is not http or https")),
            None => (None, trimmed),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(':') && rest.ends_with(':') {
            return Err(format!("grants.http entry `{entry}` has no host"));
        }
        let url = Url::parse(&format!("http://{rest}"))
            .map_err(|err| format!("grants.http entry `{entry}` is not a host[:port]: {err}"))?;
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
            return Err(format!("grants.http entry `{entry}` must name an origin only, without a path"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("grants.http entry `{entry}` has no host"))?
            .to_ascii_lowercase();
        Ok(AllowedOrigin { scheme, host, port: url.port() })
    }

    fn allows(&self, url: &Url) -> bool {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return false;
        }
        if self.scheme.as_deref().is_some_and(|allowed| allowed != scheme) {
            return false;
        }
        let Some(host) = url.host_str() else { return false };
        let default_port = if scheme == "https" { 443 } else { 80 };
        host.eq_ignore_ascii_case(&self.host)
            && url.port_or_known_default() == Some(self.port.unwrap_or(default_port))
    }
}

/// Whether any entry of `allowlist` admits `url`.
pub(crate) fn is_allowed(allowlist: &[AllowedOrigin], url: &Url) -> bool {
    allowlist.iter().any(|origin| origin.allows(url))
}

/// IPv4 networks no granted host name may resolve to: IANA's special-purpose
/// address registry (private, shared, loopback, link-local, protocol assignments,
/// documentation, benchmarking, AS112, AMT, the old 6to4 relay), multicast and the
/// reserved 240.0.0.0/4 with the broadcast address.
const SPECIAL_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(192, 31, 196, 0), 24),
    (Ipv4Addr::new(192, 52, 193, 0), 24),
    (Ipv4Addr::new(192, 88, 99, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(192, 175, 48, 0), 24),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// Global unicast IPv6 (2000::/3) networks of IANA's special-purpose registry that
/// are still not for plugins: IETF protocol assignments (Teredo 2001::/32,
/// benchmarking, ORCHID, AMT, AS112), documentation (2001:db8::/32, 3fff::/20),
/// 6to4 (2002::/16, which tunnels to any IPv4 address) and direct AS112.
const SPECIAL_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
    (Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0), 48),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
];
const GLOBAL_UNICAST_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);
/// NAT64's well-known prefix (RFC 6052): the last 32 bits are the IPv4 address the
/// translator reaches, so the address is as public as that one. On an IPv6-only
/// host with DNS64 every IPv4-only API resolves into it.
const NAT64_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// An address a host name may resolve to: public unicast only. IPv6 must be
/// global unicast outside the special networks; IPv4-mapped and NAT64 addresses
/// are judged by the IPv4 address inside, and everything else (IPv4-compatible
/// `::a.b.c.d`, local-use NAT64 64:ff9b:1::/48, discard-only, ULA, link-local,
/// site-local, multicast, SRv6) is refused.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !SPECIAL_V4.iter().any(|&(net, len)| (u32::from(v4) ^ u32::from(net)).checked_shr(32 - u32::from(len)).unwrap_or(0) == 0),
        IpAddr::V6(v6) => {
            let within = |(net, len): (Ipv6Addr, u8)| (u128::from(v6) ^ u128::from(net)).checked_shr(128 - u32::from(len)).unwrap_or(0) == 0;
            if let Some(v4) = v6.to_ipv4_mapped() {
                is_public(IpAddr::V4(v4))
            } else if within(NAT64_V6) {
                is_public(IpAddr::V4(Ipv4Addr::from(u128::from(v6) as u32)))
            } else {
                within(GLOBAL_UNICAST_V6) && !SPECIAL_V6.iter().any(|&special| within(special))
            }
        }
    }
}

/// DNS for plugin requests: a granted name must resolve to public addresses,
/// except `localhost`, which names loopback and resolves only to it.
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let wants_loopback = host == "localhost";
            let usable: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| if wants_loopback { addr.ip().is_loopback() } else { is_public(addr.ip()) })
                .collect();
            if usable.is_empty() {
                return Err(format!("`{host}` resolves to no address a plugin may reach (private or loopback addresses need a literal grant)").into());
            }
            let addrs: Addrs = Box::new(usable.into_iter());
            Ok(addrs)
        })
    }
}

/// A failed plugin request, mapped onto the WIT `http-error` by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HttpFailure {
    Denied(String),
    Timeout(String),
    Transport(String),
    TooLarge(String),
}

pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// The HTTP capability of one channel.
pub(crate) struct HttpCapability {
    client: reqwest::Client,
    allowlist: Arc<Vec<AllowedOrigin>>,
    max_response_bytes: usize,
}

impl HttpCapability {
    pub(crate) fn new(entries: &[String], timeout: Duration, max_response_bytes: usize) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut allowlist = Vec::new();
        for entry in entries {
            match AllowedOrigin::parse(entry) {
                Ok(origin) => allowlist.push(origin),
                Err(problem) => problems.push(problem),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let allowlist = Arc::new(allowlist);
        let redirect_allowlist = Arc::clone(&allowlist);
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .dns_resolver(Arc::new(PublicOnlyResolver))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("more than 5 redirects")
                } else if is_allowed(&redirect_allowlist, attempt.url()) {
                    attempt.follow()
                } else {
                    let denied = format!("redirect to {} leaves the channel's http grant", attempt.url());
                    attempt.error(denied)
                }
            }))
            .build()
            .map_err(|err| vec![format!("cannot build the http client: {err}")])?;
        Ok(HttpCapability { client, allowlist, max_response_bytes })
    }

    /// Check `url` without sending anything.
    pub(crate) fn check(&self, url: &str) -> Result<Url, HttpFailure> {
        let parsed = Url::parse(url).map_err(|err| HttpFailure::Transport(format!("bad url `{url}`: {err}")))?;
        if is_allowed(&self.allowlist, &parsed) {
            Ok(parsed)
        } else {
            Err(HttpFailure::Denied(format!(
                "{} is not in this channel's http grant",
                parsed.origin().ascii_serialization()
            )))
        }
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<HttpResponse, HttpFailure> {
        check_request(url, headers, &body).map_err(HttpFailure::Denied)?;
        let url = self.check(url)?;
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| HttpFailure::Transport(format!("bad http method `{method}`")))?;
        let mut request = self.client.request(method, url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let exchange = async {
            let mut response = request.body(body).send().await.map_err(classify)?;
            let status = response.status().as_u16();
            let headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
                .collect();
            // headers count toward the cap: a name, ": ", a value and CRLF each
            let header_bytes: usize = headers.iter().map(|(name, value)| name.len() + value.len() + 4).sum();
            let body_cap = self.max_response_bytes.checked_sub(header_bytes).ok_or_else(|| self.too_large(header_bytes))?;
            if response.content_length().is_some_and(|len| len > body_cap as u64) {
                return Err(self.too_large(header_bytes.saturating_add(response.content_length().unwrap_or(0) as usize)));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > body_cap {
                    return Err(self.too_large(header_bytes + body.len() + chunk.len()));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpResponse { status, headers, body })
        };
        // The client's own timeout covers connect, headers and the whole body.
        exchange.await
    }

    /// The response was `at_least` bytes (headers and body) or more.
    fn too_large(&self, at_least: usize) -> HttpFailure {
        HttpFailure::TooLarge(format!(
            "response of at least {at_least} bytes (headers and body) over the cap of {} bytes",
            self.max_response_bytes
        ))
    }
}

/// Headers the host writes itself: the connection's own (RFC 9110 7.6.1), the
/// target host and the body's framing. A plugin that sets one is refused, so it can
/// neither aim a granted connection at another virtual host nor smuggle a request.
const HOST_OWNED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

/// The request's size caps (`bounds`) and the headers only the host sets.
fn check_request(url: &str, headers: &[(String, String)], body: &[u8]) -> Result<(), String> {
    bounds::bytes("a request url", url.len(), bounds::MAX_URL)?;
    bounds::count("request headers", headers.len(), bounds::MAX_HEADERS)?;
    let header_bytes = headers.iter().map(|(name, value)| name.len() + value.len()).sum();
    bounds::bytes("request headers", header_bytes, bounds::MAX_HEADER_BYTES)?;
    bounds::bytes("a request body", body.len(), bounds::MAX_HTTP_BODY)?;
    match headers.iter().find(|(name, _)| HOST_OWNED_HEADERS.iter().any(|owned| name.trim().eq_ignore_ascii_case(owned))) {
        Some((name, _)) => Err(format!("the `{}` header is the host's to set", name.trim().to_ascii_lowercase())),
        None => Ok(()),
    }
}

fn classify(err: reqwest::Error) -> HttpFailure {
    let text = error_chain(&err);
    if err.is_timeout() {
        HttpFailure::Timeout(text)
    } else if err.is_redirect() && text.contains("leaves the channel's http grant") {
        HttpFailure::Denied(text)
    } else {
        HttpFailure::Transport(text)
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_scheme_host_and_port() {
        let allowlist: Vec<AllowedOrigin> = ["https://api.example.com", "127.0.0.1:8080", "http://LocalHost:9000"]
            .iter()
            .map(|entry| AllowedOrigin::parse(entry).expect("valid entry"))
            .collect();
        let cases = [
            ("https://api.example.com/v1/messages", true),
            ("https://api.example.com:443/x", true),
            ("http://api.example.com/v1", false),
            ("https://api.example.com:8443/v1", false),
            ("https://api.example.com.evil.test/v1", false),
            ("https://user@api.example.com/v1", true),
            ("http://127.0.0.1:8080/hook", true),
            ("https://127.0.0.1:8080/hook", true),
            ("http://127.0.0.1:8081/hook", false),
            ("http://127.0.0.2:8080/hook", false),
            ("http://localhost:9000/", true),
            ("http://localhost:8080/", false),
            ("ftp://127.0.0.1:8080/", false),
            ("file:///etc/passwd", false),
        ];
        for (url, expected) in cases {
            let parsed = Url::parse(url).expect("test url");
            assert_eq!(is_allowed(&allowlist, &parsed), expected, "{url}");
        }
        for bad in ["ftp://x", "https://x/path", "", "http://"] {
            assert!(AllowedOrigin::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    /// IANA's IPv4 and IPv6 special-purpose registries, row by row, with public
    /// neighbours on either side of the edges.
    #[test]
    fn only_public_addresses_count_as_public() {
        let cases = [
            ("93.184.216.34", true),
            ("8.8.8.8", true),
            ("0.1.2.3", false),
            ("10.1.2.3", false),
            ("100.63.255.255", true),
            ("100.64.0.1", false),
            ("100.127.255.255", false),
            ("100.128.0.0", true),
            ("127.0.0.1", false),
            ("169.254.169.254", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("172.32.0.0", true),
            ("192.0.0.9", false),
            ("192.0.0.170", false),
            ("192.0.1.1", true),
            ("192.0.2.1", false),
            ("192.31.196.1", false),
            ("192.52.193.1", false),
            ("192.88.99.1", false),
            ("192.168.1.1", false),
            ("192.175.48.1", false),
            ("198.17.255.255", true),
            ("198.18.0.1", false),
            ("198.19.255.255", false),
            ("198.20.0.0", true),
            ("198.51.100.7", false),
            ("203.0.113.7", false),
            ("224.0.0.1", false),
            ("239.255.255.255", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            ("2606:2800:220:1:248:1893:25c8:1946", true),
            ("2a00:1450:4001:80b::200e", true),
            ("::", false),
            ("::1", false),
            ("::127.0.0.1", false),
            ("::8.8.8.8", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("::ffff:0:8.8.8.8", false),
            ("64:ff9b::7f00:1", false),
            ("64:ff9b::a00:1", false),
            ("64:ff9b::c612:1", false),
            ("64:ff9b::808:808", true),
            ("64:ff9b:1::808:808", false),
            ("100::1", false),
            ("2001::1", false),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", false),
            ("2001:2::1", false),
            ("2001:1ff::1", false),
            ("2001:200::1", true),
            ("2001:db8::1", false),
            ("2002:7f00:1::1", false),
            ("2002:808:808::1", false),
            ("2620:4f:8000::1", false),
            ("2620:4f:8001::1", true),
            ("3fff::1", false),
            ("3fff:fff:ffff::1", false),
            ("3fff:1000::1", true),
            ("5f00::1", false),
            ("fc00::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("fec0::1", false),
            ("ff02::1", false),
            ("ff0e::1", false),
        ];
        for (ip, expected) in cases {
            let parsed: IpAddr = ip.parse().expect("test ip");
            assert_eq!(is_public(parsed), expected, "{ip}");
        }
    }

    #[test]
    fn requests_over_a_cap_or_setting_a_host_owned_header_are_refused() {
        let header = |name: &str, value: &str| vec![(name.to_string(), value.to_string())];
        let long_url = format!("https://api.example.com/{}", "a".repeat(bounds::MAX_URL));
        let many: Vec<(String, String)> = (0..=bounds::MAX_HEADERS).map(|i| (format!("x-{i}"), "v".to_string())).collect();
        // url, headers, body bytes, and a piece of the refusal (None: allowed)
        type Case<'a> = (&'a str, Vec<(String, String)>, usize, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("https://api.example.com/", header("content-type", "application/json"), 10, None),
            ("https://api.example.com/", header("authorization", "Bearer x"), 0, None),
            (&long_url, vec![], 0, Some("a request url of")),
            ("https://api.example.com/", many, 0, Some("65 request headers are over the cap of 64")),
            ("https://api.example.com/", header("x-big", &"v".repeat(bounds::MAX_HEADER_BYTES)), 0, Some("request headers of")),
            ("https://api.example.com/", vec![], bounds::MAX_HTTP_BODY + 1, Some("a request body of")),
            ("https://api.example.com/", header("Host", "169.254.169.254"), 0, Some("the `host` header is the host's to set")),
            ("https://api.example.com/", header("content-length", "0"), 0, Some("`content-length`")),
            ("https://api.example.com/", header(" Transfer-Encoding", "chunked"), 0, Some("`transfer-encoding`")),
            ("https://api.example.com/", header("connection", "close"), 0, Some("`connection`")),
            ("https://api.example.com/", header("upgrade", "h2c"), 0, Some("`upgrade`")),
        ];
        for (url, headers, body, refused) in cases {
            let outcome = check_request(url, &headers, &vec![0; body]);
            match refused {
                None => assert_eq!(outcome, Ok(()), "{headers:?}"),
                Some(why) => assert!(outcome.as_ref().is_err_and(|e| e.contains(why)), "{headers:?}: {outcome:?}"),
            }
        }
    }
}
