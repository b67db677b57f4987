//! Channel plugins: outreach leaves rekindle only through these sandboxed WebAssembly components.
//!
//! *Architecture invariant*: this is the only module that names wasmtime. A
//! plugin holds one provider's logic and nothing else; the host does all its
//! I/O (HTTP, SMTP, one granted folder) under the operator's grants and limits,
//! and the import list of a plugin is exactly what it may do.
//!
//! *API boundary*: [`ChannelHost`] — load every `[channels.NAME]`
//! ([`ChannelConfig`]) once, then [`ChannelHost::send`] and
//! [`ChannelHost::parse_callback`] from the dispatcher and the callback
//! endpoint; [`cli`] holds `rekindle plugin new|check|send`. The contract with
//! plugin authors is the WIT in `plugins/sdk/wit` (see PLUGINS.md).

mod bounds;
mod cache;
pub mod cli;
pub mod config;
mod files;
mod host;
mod http;
mod http_cache;
pub mod manifest;
mod smtp;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::ChannelConfig;
use crate::domain::{Consent, ConsentNeeds};
/// What a status update says (one definition, shared with the store).
pub use crate::domain::DeliveryState;

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// Email address, E.164 number or platform customer id, as the channel expects.
    pub address: String,
    pub name: Option<String>,
    pub member_id: String,
}

/// A rendered message for one recipient, as the dispatcher hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub recipient: Recipient,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    /// Same key on every retry of the same (member, campaign, step).
    pub idempotency_key: String,
    pub channel_data: Vec<(String, String)>,
    pub metadata: Vec<(String, String)>,
}

/// A message the provider accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub provider_id: String,
    pub metadata: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// Try again later.
    Retryable,
    /// Give up: a bad address, a refused message, a plugin fault.
    Permanent,
}

/// A failed send and whether a retry may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} send error: {reason}", match .kind { SendErrorKind::Retryable => "retryable", SendErrorKind::Permanent => "permanent" })]
pub struct SendError {
    pub kind: SendErrorKind,
    pub reason: String,
}

impl SendError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        SendError { kind: SendErrorKind::Retryable, reason: reason.into() }
    }
    pub fn permanent(reason: impl Into<String>) -> Self {
        SendError { kind: SendErrorKind::Permanent, reason: reason.into() }
    }
    pub fn is_retryable(&self) -> bool {
        self.kind == SendErrorKind::Retryable
    }
}

/// A provider's webhook request, as received by rekindle's callback endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRequest {
    pub method: String,
    /// Path below the channel's callback root, with the query string.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One status change a provider reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub provider_id: Option<String>,
    pub recipient: Option<String>,
    pub state: DeliveryState,
    pub reason: Option<String>,
}

/// Errors loading plugins or reaching them; every message names the channel or file.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read plugin {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("plugin {} is rejected: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("channel `{channel}`: {}", problems.join("; "))]
    Config { channel: String, problems: Vec<String> },
    #[error("channel `{channel}`: {source}")]
    InChannel { channel: String, source: Box<PluginError> },
    #[error("no channel named `{0}` is configured")]
    UnknownChannel(String),
    /// A callback the plugin refused as not authentic (a missing or bad provider
    /// signature): the caller answers 403.
    #[error("channel `{channel}`: callback not authentic: {reason}")]
    Unauthenticated { channel: String, reason: String },
    /// A callback the plugin could not finish within a limit a later try may pass
    /// (its wall-clock deadline, its host calls, a full instance pool): the caller
    /// answers 503, so the provider sends it again.
    #[error("channel `{channel}`: callback not handled now: {reason}")]
    Busy { channel: String, reason: String },
    #[error("plugin engine: {0}")]
    Engine(String),
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl PluginError {
    fn in_channel(self, channel: &str) -> Self {
        PluginError::InChannel { channel: channel.to_string(), source: Box::new(self) }
    }
}

/// The config entry the host adds for every channel it has a callback URL for: the
/// channel's secret callback URL (providers report there).
pub const CALLBACK_URL: &str = "callback_url";
/// The start of a parse-callback error that means "not authentic" (the SDK's
/// `unauthenticated`).
const UNAUTHENTICATED: &str = "unauthenticated: ";

/// Config keys only the host provides: an operator's setting or secret of that name is
/// refused, so a plugin cannot be configured to report somewhere else.
pub const HOST_PROVIDED: &[&str] = &[CALLBACK_URL];

/// Where the host finds relative plugin paths and keeps compiled code, and what it hands
/// to each channel's plugin besides its settings.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Folder relative `plugin` and `grants.files` paths are taken from (config.toml's folder).
    pub base_dir: PathBuf,
    /// Compiled-code cache; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    /// Each channel's secret callback URL, handed to its plugin as [`CALLBACK_URL`]
    /// (none: the plugin asks providers for no reports).
    pub callback_urls: BTreeMap<String, String>,
}

/// Every configured channel, loaded and checked, ready to send.
pub struct ChannelHost {
    engine: host::SandboxEngine,
    channels: BTreeMap<String, Arc<host::LoadedChannel>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl ChannelHost {
    /// Load and check every channel. Fails on the first channel with a
    /// problem, listing all of that channel's problems. Compiling takes a
    /// while on a cold cache, and each plugin's `describe` and `validate-config`
    /// run to their end (within the channel's limits) on the runtime this thread
    /// belongs to, or on one of their own: call it on a blocking thread
    /// (`spawn_blocking`) or before starting a runtime, never on an async worker
    /// (tokio panics when asked to block one).
    pub fn load(channels: &BTreeMap<String, ChannelConfig>, options: &HostOptions) -> Result<Self, PluginError> {
        let engine = host::SandboxEngine::new()?;
        let mut loaded = BTreeMap::new();
        for (name, config) in channels {
            let channel = host::LoadedChannel::load(&engine, name, config, options)?;
            loaded.insert(name.clone(), Arc::new(channel));
        }
        Ok(ChannelHost {
            engine,
            channels: loaded,
            permits: Arc::new(tokio::sync::Semaphore::new(host::MAX_CONCURRENT_CALLS as usize)),
        })
    }

    /// Names of the loaded channels.
    pub fn channel_names(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    /// The manifest of a loaded channel's plugin.
    pub fn manifest(&self, channel: &str) -> Option<&manifest::PluginManifest> {
        self.channels.get(channel).and_then(|loaded| loaded.plugin.manifest())
    }

    /// The kind of a loaded channel's plugin (email, sms, ...).
    pub fn kind(&self, channel: &str) -> Option<&str> {
        self.manifest(channel).map(|m| m.kind.as_str())
    }

    /// The consent a loaded channel needs (None: not loaded, or it cannot say).
    pub fn consent(&self, channel: &str) -> Option<Consent> {
        self.channels.get(channel).and_then(|loaded| loaded.consent.as_ref().ok().copied())
    }

    /// The consent each loaded channel needs; a channel that cannot say (not email or
    /// sms by name or kind, no `consent` key) is a configuration error naming the key.
    pub fn consents(&self) -> Result<ConsentNeeds, PluginError> {
        let mut by_channel = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, loaded) in &self.channels {
            match &loaded.consent {
                Ok(consent) => {
                    by_channel.insert(name.clone(), *consent);
                }
                Err(problem) => problems.push(problem.clone()),
            }
        }
        if problems.is_empty() {
            Ok(ConsentNeeds { by_channel })
        } else {
            Err(PluginError::Usage(problems.join("\n")))
        }
    }

    /// Send one message through `channel`. A plugin that loops, eats memory,
    /// traps or panics fails this one send (permanent, with the reason); one past
    /// its wall-clock deadline or host-call cap fails it as retryable, so the
    /// message follows the retry and dead-letter path. The host and the other
    /// channels go on. The plugin runs on the calling task
    /// (its CPU time, at most the channel's `cpu_ms`, on this worker) and its
    /// HTTP and SMTP calls are awaited there.
    pub async fn send(&self, channel: &str, message: OutboundMessage) -> Result<Delivery, SendError> {
        let loaded = self
            .channels
            .get(channel)
            .cloned()
            .ok_or_else(|| SendError::permanent(format!("no channel named `{channel}` is configured")))?;
        let _permit = self.permits.acquire().await.map_err(|_| SendError::retryable("plugin host is shutting down"))?;
        loaded.send(self.engine.engine(), message).await
    }

    /// Turn a provider's webhook into status updates. An error means the
    /// request was not one of this provider's (or the plugin failed).
    pub async fn parse_callback(&self, channel: &str, request: CallbackRequest) -> Result<Vec<StatusUpdate>, PluginError> {
        let loaded = self.channels.get(channel).cloned().ok_or_else(|| PluginError::UnknownChannel(channel.to_string()))?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PluginError::Engine("plugin host is shutting down".to_string()))?;
        let outcome = loaded.parse_callback(self.engine.engine(), request).await;
        outcome.map_err(|fault| match fault.reason.strip_prefix(UNAUTHENTICATED) {
            _ if fault.retryable => PluginError::Busy { channel: channel.to_string(), reason: fault.reason },
            Some(why) => PluginError::Unauthenticated { channel: channel.to_string(), reason: why.to_string() },
            None => PluginError::Config { channel: channel.to_string(), problems: vec![format!("callback rejected: {}", fault.reason)] },
        })
    }

    /// [`ChannelHost::send`] on the calling thread, which must not be an
    /// async worker (for benchmarks and tools).
    pub fn send_blocking(&self, channel: &str, runtime: tokio::runtime::Handle, message: OutboundMessage) -> Result<Delivery, SendError> {
        runtime.block_on(self.send(channel, message))
    }
}

/// The consent each configured channel needs, without loading the channels: the
/// declared one or the channel's name, else the plugin's kind (read from its manifest,
/// through the compiled-code cache). Every channel that cannot say is a problem.
pub fn consents(channels: &BTreeMap<String, ChannelConfig>, options: &HostOptions) -> Result<ConsentNeeds, PluginError> {
    let mut by_channel = BTreeMap::new();
    let mut problems = Vec::new();
    let mut engine = None;
    for (name, config) in channels {
        let consent = match config.consent(name, None) {
            Ok(consent) => Ok(consent),
            Err(_) => {
                let engine = match &mut engine {
                    Some(engine) => engine,
                    None => engine.insert(host::SandboxEngine::new()?),
                };
                let plugin = engine.load_file(&options.base_dir.join(&config.plugin), options.cache_dir.as_deref()).map_err(|e| e.in_channel(name))?;
                config.consent(name, plugin.manifest().map(|m| m.kind.as_str()))
            }
        };
        match consent {
            Ok(consent) => {
                by_channel.insert(name.clone(), consent);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(ConsentNeeds { by_channel })
    } else {
        Err(PluginError::Usage(problems.join("\n")))
    }
}

/// What `rekindle plugin check` reports about a plugin file.
#[derive(Debug, Clone)]
pub struct PluginReport {
    pub manifest: manifest::PluginManifest,
    pub imports: manifest::Capabilities,
    pub exports: Vec<String>,
    /// Problems found (undeclared imports); empty when the plugin is sound.
    pub problems: Vec<String>,
}

/// Load one plugin file outside any channel and report what it is.
pub fn inspect(path: &Path) -> Result<PluginReport, PluginError> {
    let engine = host::SandboxEngine::new()?;
    let plugin = engine.load_file(path, None)?;
    let manifest = plugin
        .manifest()
        .cloned()
        .ok_or_else(|| PluginError::Malformed { path: path.to_path_buf(), reason: "no manifest".to_string() })?;
    let problems = manifest.undeclared(plugin.imports);
    Ok(PluginReport { manifest, imports: plugin.imports, exports: plugin.exports.clone(), problems })
}
