//! The HTTP capability: outbound requests a plugin makes, checked against its grant.
//!
//! It owns the allowlist match (parsed scheme, host and port of the URL, again
//! on every redirect hop), the DNS filter that keeps a granted host name from
//! resolving to a private or loopback address (only a literal grant such as
//! `127.0.0.1:8080` or `localhost` reaches those), the per-request wall-clock
//! timeout and the response size cap. One reqwest client per channel, with
//! TCP_NODELAY, so connections are reused across that channel's messages.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

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

/// An address a host name may resolve to: public unicast only.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
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
            let headers = response
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
                .collect();
            if response.content_length().is_some_and(|len| len > self.max_response_bytes as u64) {
                return Err(self.too_large());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > self.max_response_bytes {
                    return Err(self.too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpResponse { status, headers, body })
        };
        // The client's own timeout covers connect, headers and the whole body.
        exchange.await
    }

    fn too_large(&self) -> HttpFailure {
        HttpFailure::TooLarge(format!("response body over the cap of {} bytes", self.max_response_bytes))
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

    #[test]
    fn only_public_addresses_count_as_public() {
        let cases = [
            ("93.184.216.34", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("2606:2800:220:1:248:1893:25c8:1946", true),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
        ];
        for (ip, expected) in cases {
            let parsed: IpAddr = ip.parse().expect("test ip");
            assert_eq!(is_public(parsed), expected, "{ip}");
        }
    }
}
