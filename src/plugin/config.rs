//! The operator's configuration of one channel: `[channels.NAME]` in config.toml.
//!
//! It owns what the operator decides for a plugin: which .wasm file, which
//! settings and secrets it gets, what it may reach (grants), how much it may
//! use (limits) and, for email, the SMTP relay with its credentials, which the
//! plugin never sees. Parsed strictly (`deny_unknown_fields`) so a typo is an
//! error that names the key, not a silently ignored setting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::domain::Consent;

/// `[channels.NAME]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// The plugin: a WebAssembly component, or a core module built with the
    /// SDK for wasm32-unknown-unknown (componentized at load). Relative paths
    /// are taken from the folder of config.toml.
    pub plugin: PathBuf,
    /// Plain settings passed to the plugin on every call (sender address,
    /// gateway URL, opt-out text).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Secrets (API keys, signing keys) passed only to this channel's plugin. A key
    /// `NAME_file` is read from that file as the secret `NAME` when config.toml is loaded.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// What the plugin may reach.
    #[serde(default)]
    pub grants: Grants,
    /// How much one call may use.
    #[serde(default)]
    pub limits: Limits,
    /// The SMTP relay for plugins that submit mail. Its presence grants SMTP.
    #[serde(default)]
    pub smtp: Option<SmtpRelayConfig>,
    /// The consent the channel's messages need (`email`, `sms`, or `none` to message
    /// members without asking); it also picks the member's address (email, phone,
    /// member id). Default: the plugin's kind or the channel's name when either is
    /// `email` or `sms`; any other channel must say.
    #[serde(default)]
    pub consent: Option<Consent>,
}

impl ChannelConfig {
    /// The consent `[channels.NAME]` needs, given its plugin's kind (when known): the
    /// declared one, else what the name and the kind say when they agree.
    pub fn consent(&self, name: &str, kind: Option<&str>) -> Result<Consent, String> {
        if let Some(declared) = self.consent {
            return Ok(declared);
        }
        match (Consent::named(name), kind.and_then(Consent::named)) {
            (Some(a), Some(b)) if a != b => Err(format!(
                "[channels.{name}] consent: the channel's name and its plugin's kind `{}` disagree; set consent = \"email\" or \"sms\"",
                kind.unwrap_or_default()
            )),
            (Some(c), _) | (None, Some(c)) => Ok(c),
            (None, None) => Err(format!(
                "[channels.{name}] consent: say which consent this channel's messages need: \"email\", \"sms\", or \"none\" to message members without asking{}",
                kind.map(|k| format!(" (its plugin is of kind `{k}`)")).unwrap_or_default()
            )),
        }
    }
}

/// `[channels.NAME.grants]`: capabilities beyond logging and the clock.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// HTTP(S) origins the plugin may call: `"https://api.example.com"`,
    /// `"http://127.0.0.1:8080"` or `"host:port"` (either scheme). A host
    /// name reaches only public addresses; a private or loopback address is
    /// reachable only when named here literally (`127.0.0.1`, `localhost`).
    #[serde(default)]
    pub http: Vec<String>,
    /// The one folder the plugin may write files into.
    #[serde(default)]
    pub files: Option<PathBuf>,
}

/// `[channels.NAME.limits]`: per-call bounds; a call over any of them fails
/// that one call and nothing else.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory of one plugin instance, MiB.
    pub memory_mib: u32,
    /// The plugin's own computation per call, milliseconds, counted in wasmtime
    /// fuel ([`FUEL_PER_CPU_MS`] units a millisecond), so neither host calls nor a
    /// busy machine's scheduling delay count against it. Over it: permanent.
    pub cpu_ms: u32,
    /// Wall-clock deadline of one call (send, validate-config, parse-callback),
    /// host calls and waiting included. Over it: retryable.
    pub wall_ms: u32,
    /// Host calls (http, smtp, files, log, clock) one call may make. Over it: retryable.
    pub max_host_calls: u32,
    /// Wall-clock bound on one host I/O call (HTTP request, SMTP submission).
    pub io_timeout_ms: u32,
    /// Largest HTTP response handed to the plugin, headers and body, bytes.
    pub http_max_response_bytes: u32,
    /// Bytes the granted folder may hold (`files.write`; files already there count).
    pub files_max_bytes: u64,
    /// Files the granted folder may hold.
    pub files_max_count: u32,
}

/// Fuel (about one WebAssembly instruction a unit) per millisecond of `cpu_ms`:
/// what a tight loop in a plugin burns in a millisecond of CPU on the benchmark
/// machine when it is quiet (BENCHMARKS.md, "Plugin sandbox limits").
pub const FUEL_PER_CPU_MS: u64 = 7_000_000;

/// Largest memory limit an operator may set (the pool reserves this much address space per slot).
pub(crate) const MAX_MEMORY_MIB: u32 = 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 32,
            cpu_ms: 1_000,
            wall_ms: 30_000,
            max_host_calls: 100,
            io_timeout_ms: 10_000,
            http_max_response_bytes: 1 << 20,
            files_max_bytes: 256 << 20,
            files_max_count: 20_000,
        }
    }
}

impl Limits {
    /// Every bad value of `[channels.NAME.limits]`, each naming its key.
    pub fn problems(&self, channel: &str) -> Vec<String> {
        let key = |name: &str| format!("[channels.{channel}.limits] {name}");
        let mut problems = Vec::new();
        if self.memory_mib == 0 || self.memory_mib > MAX_MEMORY_MIB {
            problems.push(format!("{} must be 1..={}, got {}", key("memory_mib"), MAX_MEMORY_MIB, self.memory_mib));
        }
        for (name, value) in [("cpu_ms", self.cpu_ms), ("wall_ms", self.wall_ms), ("io_timeout_ms", self.io_timeout_ms)] {
            if value == 0 {
                problems.push(format!("{} must be above 0", key(name)));
            }
        }
        if self.wall_ms < self.cpu_ms {
            problems.push(format!("{} must be at least cpu_ms ({}), got {}", key("wall_ms"), self.cpu_ms, self.wall_ms));
        }
        problems
    }
}

/// `[channels.NAME.smtp]`: the relay the host submits mail to.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpRelayConfig {
    pub host: String,
    pub port: u16,
    /// `none`, `starttls` (required when set) or `implicit` (SMTPS: TLS
    /// from the first byte, port 465 style).
    #[serde(default)]
    pub tls: SmtpTls,
    /// AUTH credentials (PLAIN or LOGIN); only sent over TLS.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The password read from this file instead (resolved when config.toml is loaded).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Root certificates (PEM) trusted besides the public web roots, for a
    /// relay with its own CA (starttls and implicit alike).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name checked against the relay's certificate; default `host`.
    #[serde(default)]
    pub tls_name: Option<String>,
    /// Name sent in EHLO; default `localhost`.
    #[serde(default)]
    pub hello_name: Option<String>,
    /// Idle connections kept open to the relay.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_pool_size() -> usize {
    4
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    None,
    Starttls,
    Implicit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_channel_and_rejects_unknown_keys() {
        let full = r#"
            plugin = "target/plugins/email.wasm"
            settings = { from_address = "news@shop.example" }
            secrets = { api_key = "k" }
            [grants]
            http = ["https://api.example.com"]
            files = "out"
            [limits]
            memory_mib = 16
            [smtp]
            host = "localhost"
            port = 2525
            tls = "starttls"
            username = "shop"
            password = "s3cret"
        "#;
        let config: ChannelConfig = toml::from_str(full).expect("valid channel config");
        assert_eq!(config.limits.memory_mib, 16);
        assert_eq!(config.limits.cpu_ms, Limits::default().cpu_ms);
        assert_eq!(config.smtp.as_ref().map(|s| s.tls), Some(SmtpTls::Starttls));
        assert_eq!(config.smtp.as_ref().map(|s| s.pool_size), Some(4));

        assert_eq!(config.consent("mail", Some("email")), Ok(Consent::Email), "from the plugin's kind");
        assert_eq!(config.consent("sms", Some("file")), Ok(Consent::Sms), "from the channel's name");
        let err = config.consent("shop", Some("shop")).unwrap_err();
        assert!(err.contains("[channels.shop] consent"), "{err}");
        assert!(config.consent("sms", Some("email")).unwrap_err().contains("disagree"));
        let declared: ChannelConfig = toml::from_str("plugin = \"x.wasm\"\nconsent = \"none\"\n").unwrap();
        assert_eq!(declared.consent("shop", Some("shop")), Ok(Consent::None));
        assert!(toml::from_str::<ChannelConfig>("plugin = \"x.wasm\"\nconsent = \"maybe\"\n").is_err());

        assert!(config.limits.problems("full").is_empty(), "{:?}", config.limits.problems("full"));
        let bad_limits = [
            ("memory_mib = 0", "[channels.x.limits] memory_mib must be 1..=1024, got 0"),
            ("memory_mib = 2048", "[channels.x.limits] memory_mib must be 1..=1024, got 2048"),
            ("cpu_ms = 0", "[channels.x.limits] cpu_ms must be above 0"),
            ("wall_ms = 0", "[channels.x.limits] wall_ms must be above 0"),
            ("io_timeout_ms = 0", "[channels.x.limits] io_timeout_ms must be above 0"),
            ("cpu_ms = 5000\nwall_ms = 4000", "[channels.x.limits] wall_ms must be at least cpu_ms (5000), got 4000"),
        ];
        for (limits, expected) in bad_limits {
            let config: ChannelConfig = toml::from_str(&format!("plugin = \"x.wasm\"\n[limits]\n{limits}\n")).expect(limits);
            assert!(config.limits.problems("x").iter().any(|p| p == expected), "{limits}: {:?}", config.limits.problems("x"));
        }

        let typo = "plugin = \"x.wasm\"\n[limits]\nmemory_mb = 16\n";
        let err = toml::from_str::<ChannelConfig>(typo).expect_err("unknown key");
        assert!(err.to_string().contains("memory_mb"), "{err}");
    }
}
