//! The wasmtime host: loads channel plugins, runs one call per message in a fresh sandbox.
//!
//! It owns the engine (pooling allocator, epoch interruption with a ticker
//! thread), the compiled-code cache, the import check at load, and the call
//! path: every message gets a new `Store` instantiated from a pre-instantiated
//! component, with its own memory limit, CPU deadline and host-I/O bounds, so
//! recipients never share state and a trapped instance is never reused. The
//! host implementations of the WIT imports live here and delegate I/O to
//! `http` and `smtp`. This is the only place, with `cache`, that names wasmtime.
//!
//! Calls are async (wasmtime runs the guest on a fiber): a plugin's HTTP or
//! SMTP call awaits the I/O on the task that called `send`, with no thread
//! handoff. A blocking thread per call (spawn_blocking, then block_on for each
//! host call) cost several cross-thread wakes per message, each a scheduling
//! delay on a busy machine. The guest's own CPU time still runs on the calling
//! worker, bounded by the channel's `cpu_ms`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, UpdateDeadline};

use super::config::{ChannelConfig, Limits};
use super::http::{HttpCapability, HttpFailure};
use super::http_cache::GetCache;
use super::manifest::{Capabilities, PluginManifest};
use super::smtp::{SmtpFailure, SmtpRelay};
use super::{
    CallbackRequest, Delivery, DeliveryState, OutboundMessage, PluginError, SendError, StatusUpdate,
};

mod bindings {
    wasmtime::component::bindgen!({
        path: "plugins/sdk/wit",
        world: "plugin",
        imports: {
            "rekindle:channel/http.send": async,
            "rekindle:channel/smtp.submit": async,
        },
        exports: { default: async },
    });
}

use bindings::rekindle::channel as wit;
use bindings::{Plugin, PluginPre};

/// How often the epoch ticker advances the engine's epoch.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Plugin calls that may run at once; the pooling allocator is sized for it.
pub(crate) const MAX_CONCURRENT_CALLS: u32 = 128;
/// Largest memory limit an operator may set (the pool reserves this much address space per slot).
pub(crate) const MAX_MEMORY_MIB: u32 = 1024;
/// Memory of a pooled slot kept mapped between instances (see `SandboxEngine::new`).
const KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;
/// Longest log line kept from a plugin.
const MAX_LOG_LINE: usize = 2_048;

/// The wasmtime engine shared by all channels, with its epoch ticker.
pub(crate) struct SandboxEngine {
    engine: Engine,
    linker: Linker<CallState>,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl SandboxEngine {
    pub(crate) fn new() -> Result<Self, PluginError> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(MAX_CONCURRENT_CALLS)
            .total_core_instances(MAX_CONCURRENT_CALLS * 4)
            .total_memories(MAX_CONCURRENT_CALLS * 2)
            .total_tables(MAX_CONCURRENT_CALLS * 4)
            .max_memory_size(MAX_MEMORY_MIB as usize * 1024 * 1024)
            // Reset a reused slot with memset instead of returning its pages
            // to the kernel: a fresh instance per message then does not
            // page-fault its heap back in every time. With PAGEMAP_SCAN
            // (Linux 6.7+) only the pages the last instance dirtied are reset,
            // not the whole 2 MiB (bare call 33 -> 17 µs when measured).
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(wasmtime::Enabled::Auto)
            // one fiber stack per call in flight
            .total_stacks(MAX_CONCURRENT_CALLS);
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        // Explicit bounds checks instead of guard pages. With guard pages, every
        // instance shrinks its slot back with mprotect and every memory.grow
        // (Rust's allocator grows on its first allocation) opens it again:
        // two mprotect calls per message, each a TLB shootdown across the
        // runtime's threads. Without them a slot stays read/write up to its
        // high-water mark (still reset to zero between instances) and the
        // bare call went from 17 to 12 µs.
        config.signals_based_traps(false);
        config.memory_guard_size(0);
        config.wasm_component_model(true);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|err| PluginError::Engine(format!("{err:#}")))?;
        let mut linker = Linker::new(&engine);
        Plugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)
            .map_err(|err| PluginError::Engine(format!("{err:#}")))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = Arc::clone(&ticker_stop);
            std::thread::Builder::new()
                .name("rekindle-epoch".to_string())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|err| PluginError::Engine(format!("cannot start the epoch ticker: {err}")))?
        };
        Ok(SandboxEngine { engine, linker, ticker_stop, ticker: Some(ticker) })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile (or fetch from the cache) and pre-instantiate one plugin file.
    pub(crate) fn load_file(&self, path: &Path, cache_dir: Option<&Path>) -> Result<LoadedPlugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read { path: path.to_path_buf(), source })?;
        let component = super::cache::compile(&self.engine, &bytes, cache_dir)
            .map_err(|reason| PluginError::Malformed { path: path.to_path_buf(), reason })?;
        let imports = imported_capabilities(&self.engine, &component)
            .map_err(|reason| PluginError::Malformed { path: path.to_path_buf(), reason })?;
        let exports = exported_names(&self.engine, &component);
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|err| PluginError::Malformed {
                path: path.to_path_buf(),
                reason: format!("not a rekindle:channel@0.1.0 plugin: {err:#}"),
            })?;
        let mut plugin = LoadedPlugin {
            pre,
            imports,
            exports,
            manifest: None,
        };
        let manifest_text = complete(async {
            let mut call = plugin.start(&self.engine, Sandbox::for_inspection()).await?;
            call.instance.rekindle_channel_channel().call_describe(&mut call.store).await.map_err(|err| call.fault(&err))
        })
        .map_err(|fault| PluginError::Malformed { path: path.to_path_buf(), reason: format!("describe failed: {}", fault.reason) })?;
        let manifest = PluginManifest::parse(&manifest_text)
            .map_err(|reason| PluginError::Malformed { path: path.to_path_buf(), reason })?;
        plugin.manifest = Some(manifest);
        Ok(plugin)
    }
}

impl Drop for SandboxEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// The capabilities the component imports, refusing any import the host does not provide.
fn imported_capabilities(engine: &Engine, component: &Component) -> Result<Capabilities, String> {
    let mut capabilities = Capabilities::default();
    let mut foreign = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        match name {
            "rekindle:channel/http@0.1.0" => capabilities.http = true,
            "rekindle:channel/smtp@0.1.0" => capabilities.smtp = true,
            "rekindle:channel/files@0.1.0" => capabilities.files = true,
            "rekindle:channel/types@0.1.0" | "rekindle:channel/log@0.1.0" | "rekindle:channel/clock@0.1.0" => {}
            other => foreign.push(other.to_string()),
        }
    }
    if foreign.is_empty() {
        Ok(capabilities)
    } else {
        Err(format!(
            "it imports {}, which rekindle does not provide: a plugin gets no ambient filesystem, network, environment or clock (build it for wasm32-unknown-unknown with the SDK)",
            foreign.join(", ")
        ))
    }
}

fn exported_names(engine: &Engine, component: &Component) -> Vec<String> {
    component.component_type().exports(engine).map(|(name, _)| name.to_string()).collect()
}

/// A compiled, pre-instantiated plugin and what it declares.
pub(crate) struct LoadedPlugin {
    pre: PluginPre<CallState>,
    pub(crate) imports: Capabilities,
    pub(crate) exports: Vec<String>,
    manifest: Option<PluginManifest>,
}

/// What one call may use and reach.
#[derive(Clone)]
pub(crate) struct Sandbox {
    pub(crate) channel: Arc<str>,
    pub(crate) limits: Limits,
    pub(crate) http: Option<Arc<HttpCapability>>,
    /// The channel's opt-in GET cache (see `http_cache`).
    pub(crate) http_cache: Arc<GetCache>,
    pub(crate) smtp: Option<Arc<SmtpRelay>>,
    pub(crate) files: Option<Arc<PathBuf>>,
}

impl Sandbox {
    /// Default limits and no capabilities: enough to call `describe`.
    pub(crate) fn for_inspection() -> Self {
        Sandbox { channel: Arc::from("(inspection)"), limits: Limits::default(), http: None, http_cache: Arc::default(), smtp: None, files: None }
    }
}

/// Why a call failed inside the sandbox (a trap, a limit), as opposed to the
/// plugin returning an error.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) reason: String,
    /// The pool was full or instantiation failed for a resource reason: try later.
    pub(crate) retryable: bool,
}

impl LoadedPlugin {
    pub(crate) fn manifest(&self) -> Option<&PluginManifest> {
        self.manifest.as_ref()
    }

    /// A fresh instance under the sandbox's limits, for one call.
    pub(crate) async fn start(&self, engine: &Engine, sandbox: Sandbox) -> Result<Call, Fault> {
        let cpu_budget = Duration::from_millis(u64::from(sandbox.limits.cpu_ms));
        let memory_limit = sandbox.limits.memory_mib as usize * 1024 * 1024;
        let mut store = Store::new(
            engine,
            CallState {
                sandbox,
                limiter: MemoryLimiter { limit: memory_limit, exceeded: false },
                started: Instant::now(),
                host_time: Duration::ZERO,
                cpu_budget,
                cpu_exceeded: false,
                last_error_log: None,
            },
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(ticks(cpu_budget));
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            let guest_time = state.started.elapsed().saturating_sub(state.host_time);
            if guest_time >= state.cpu_budget {
                state.cpu_exceeded = true;
                Err(wasmtime::format_err!("cpu limit reached"))
            } else {
                Ok(UpdateDeadline::Continue(ticks(state.cpu_budget - guest_time)))
            }
        });
        match self.pre.instantiate_async(&mut store).await {
            Ok(instance) => Ok(Call { store, instance }),
            Err(err) => Err(fault(store.data(), &err, true)),
        }
    }
}

/// One fresh instance and its store; dropped after its one call.
pub(crate) struct Call {
    store: Store<CallState>,
    instance: Plugin,
}

impl Call {
    /// Why the call failed, from what the store recorded (limits, last error log).
    fn fault(&self, err: &wasmtime::Error) -> Fault {
        fault(self.store.data(), err, false)
    }
}

/// Drive a plugin call that does no host I/O (`describe` and
/// `validate-config` at load) to its end on this thread. Such a call never
/// waits on anything: it finishes on its first poll.
fn complete<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}

fn ticks(budget: Duration) -> u64 {
    (budget.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
}

fn fault(state: &CallState, err: &wasmtime::Error, instantiating: bool) -> Fault {
    let limits = &state.sandbox.limits;
    if state.cpu_exceeded {
        return Fault { reason: format!("plugin stopped at its cpu limit of {} ms", limits.cpu_ms), retryable: false };
    }
    if state.limiter.exceeded {
        return Fault { reason: format!("plugin stopped at its memory limit of {} MiB", limits.memory_mib), retryable: false };
    }
    let mut reason = if instantiating {
        format!("plugin could not be instantiated: {err:#}")
    } else {
        format!("plugin trapped: {}", trap_text(err))
    };
    if let Some(line) = &state.last_error_log {
        reason.push_str(&format!(" (its last error log: {line})"));
    }
    Fault { reason, retryable: instantiating }
}

fn trap_text(err: &wasmtime::Error) -> String {
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}").lines().next().unwrap_or_default().to_string(),
    }
}

/// The memory limit of one call; a refused growth traps with a flag set, so
/// the error says why.
pub(crate) struct MemoryLimiter {
    limit: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Err(wasmtime::format_err!("memory limit of {} bytes reached (wanted {desired})", self.limit));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The store data of one call: its sandbox and what the limits track.
pub(crate) struct CallState {
    sandbox: Sandbox,
    limiter: MemoryLimiter,
    started: Instant,
    /// Time spent in host calls; it does not count against the CPU budget.
    host_time: Duration,
    cpu_budget: Duration,
    cpu_exceeded: bool,
    last_error_log: Option<String>,
}

impl CallState {
    /// Run host I/O outside the CPU budget: its wall time is host time.
    /// `Err` when no async runtime drives this call (at load), where I/O has
    /// nothing to run on.
    async fn host_io<F: Future>(&mut self, io: F) -> Result<F::Output, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("no runtime for host i/o in this context".to_string());
        }
        let started = Instant::now();
        let output = io.await;
        self.host_time += started.elapsed();
        Ok(output)
    }
}

impl wit::types::Host for CallState {}

impl wit::http::Host for CallState {
    async fn send(&mut self, request: wit::http::Request) -> Result<wit::http::Response, wit::http::HttpError> {
        let Some(http) = self.sandbox.http.clone() else {
            return Err(wit::http::HttpError::Denied("this channel has no http grant".to_string()));
        };
        let wit::http::Request { method, url, mut headers, body } = request;
        let keep = GetCache::wanted(&method, &mut headers);
        if let Some((headers, body)) = keep.and_then(|_| self.sandbox.http_cache.get(&url)) {
            return Ok(wit::http::Response { status: 200, headers, body });
        }
        let outcome = self
            .host_io(http.send(&method, &url, &headers, body))
            .await
            .unwrap_or_else(|why| Err(HttpFailure::Transport(why)));
        match outcome {
            Ok(response) => {
                if let Some(keep) = keep.filter(|_| response.status == 200) {
                    self.sandbox.http_cache.put(&url, keep, &(response.headers.clone(), response.body.clone()));
                }
                Ok(wit::http::Response { status: response.status, headers: response.headers, body: response.body })
            }
            Err(HttpFailure::Denied(why)) => {
                tracing::warn!(channel = %self.sandbox.channel, %why, "plugin http request refused");
                Err(wit::http::HttpError::Denied(why))
            }
            Err(HttpFailure::Timeout(why)) => Err(wit::http::HttpError::Timeout(why)),
            Err(HttpFailure::Transport(why)) => Err(wit::http::HttpError::Transport(why)),
            Err(HttpFailure::TooLarge(why)) => Err(wit::http::HttpError::TooLarge(why)),
        }
    }
}

impl wit::smtp::Host for CallState {
    async fn submit(&mut self, mail_from: String, rcpt_to: Vec<String>, message: Vec<u8>) -> Result<String, wit::smtp::SmtpError> {
        let Some(relay) = self.sandbox.smtp.clone() else {
            return Err(wit::smtp::SmtpError::Denied("this channel has no smtp relay".to_string()));
        };
        let outcome = self
            .host_io(relay.submit(&mail_from, &rcpt_to, &message))
            .await
            .unwrap_or_else(|why| Err(SmtpFailure::Transient(why)));
        match outcome {
            Ok(reply) => Ok(reply),
            Err(SmtpFailure::Transient(why)) => Err(wit::smtp::SmtpError::Transient(why)),
            Err(SmtpFailure::Permanent(why)) => Err(wit::smtp::SmtpError::Permanent(why)),
        }
    }
}

impl wit::files::Host for CallState {
    fn write(&mut self, name: String, contents: Vec<u8>) -> Result<(), String> {
        let Some(folder) = self.sandbox.files.clone() else {
            return Err("this channel has no files grant".to_string());
        };
        check_file_name(&name)?;
        let started = Instant::now();
        let result = write_atomically(&folder, &name, &contents);
        self.host_time += started.elapsed();
        result
    }
}

/// A plain file name: no separators, no `..`, no hidden files.
fn check_file_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
    if valid {
        Ok(())
    } else {
        Err(format!("`{name}` is not a plain file name (letters, digits, . _ - @ +; no folders)"))
    }
}

/// Write through a temporary file and rename, so a reader never sees half a message.
fn write_atomically(folder: &Path, name: &str, contents: &[u8]) -> Result<(), String> {
    let temporary = folder.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, contents)
        .and_then(|()| std::fs::rename(&temporary, folder.join(name)))
        .map_err(|err| format!("cannot write `{name}`: {err}"))
}

impl wit::log::Host for CallState {
    fn log(&mut self, level: wit::log::Level, message: String) {
        let mut line = message;
        if line.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        let channel = &self.sandbox.channel;
        match level {
            wit::log::Level::Debug => tracing::debug!(%channel, "{line}"),
            wit::log::Level::Info => tracing::info!(%channel, "{line}"),
            wit::log::Level::Warn => tracing::warn!(%channel, "{line}"),
            wit::log::Level::Error => {
                tracing::error!(%channel, "{line}");
                self.last_error_log = Some(line);
            }
        }
    }
}

impl wit::clock::Host for CallState {
    fn now_unix_ms(&mut self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// A loaded channel: its plugin, settings and capabilities.
pub(crate) struct LoadedChannel {
    pub(crate) plugin: LoadedPlugin,
    pub(crate) sandbox: Sandbox,
    /// Settings and secrets, as handed to the plugin.
    pub(crate) config: Vec<(String, String)>,
    /// The consent the channel's messages need, or why it cannot say (refused where
    /// messages are planned, not at load: a test send needs no consent).
    pub(crate) consent: Result<crate::domain::Consent, String>,
}

impl LoadedChannel {
    /// Load one `[channels.NAME]`: compile, check the manifest against the
    /// grants, build the capabilities, let the plugin validate its settings.
    pub(crate) fn load(
        sandbox_engine: &SandboxEngine,
        name: &str,
        config: &ChannelConfig,
        options: &super::HostOptions,
    ) -> Result<Self, PluginError> {
        let (base_dir, cache_dir) = (options.base_dir.as_path(), options.cache_dir.as_deref());
        let config_problem = |problems: Vec<String>| PluginError::Config { channel: name.to_string(), problems };
        let path = base_dir.join(&config.plugin);
        let plugin = sandbox_engine.load_file(&path, cache_dir).map_err(|err| err.in_channel(name))?;
        let Some(manifest) = plugin.manifest() else {
            return Err(config_problem(vec!["plugin has no manifest".to_string()]));
        };
        let mut problems = manifest.undeclared(plugin.imports);
        problems.extend(manifest.problems_with(name, config));
        let consent = config.consent(name, Some(&manifest.kind));
        if config.limits.memory_mib == 0 || config.limits.memory_mib > MAX_MEMORY_MIB {
            problems.push(format!("[channels.{name}.limits] memory_mib must be 1..={MAX_MEMORY_MIB}"));
        }
        if config.limits.cpu_ms == 0 || config.limits.io_timeout_ms == 0 {
            problems.push(format!("[channels.{name}.limits] cpu_ms and io_timeout_ms must be above 0"));
        }
        for key in config.secrets.keys() {
            if config.settings.contains_key(key) {
                problems.push(format!("[channels.{name}] `{key}` is both a setting and a secret"));
            }
        }
        for key in super::HOST_PROVIDED {
            if config.settings.contains_key(*key) || config.secrets.contains_key(*key) {
                problems.push(format!("[channels.{name}] `{key}` is provided by rekindle and cannot be set"));
            }
        }
        let io_timeout = Duration::from_millis(u64::from(config.limits.io_timeout_ms));
        let http = if (manifest.capabilities.http || manifest.optional_capabilities.http) && !config.grants.http.is_empty() {
            match HttpCapability::new(&config.grants.http, io_timeout, config.limits.http_max_response_bytes as usize) {
                Ok(http) => Some(Arc::new(http)),
                Err(more) => {
                    problems.extend(more.into_iter().map(|p| format!("[channels.{name}] {p}")));
                    None
                }
            }
        } else {
            None
        };
        let smtp = match (&config.smtp, manifest.capabilities.smtp) {
            (Some(relay), true) => match SmtpRelay::new(relay, io_timeout) {
                Ok(relay) => Some(Arc::new(relay)),
                Err(problem) => {
                    problems.push(format!("[channels.{name}] {problem}"));
                    None
                }
            },
            _ => None,
        };
        let files = match (&config.grants.files, manifest.capabilities.files) {
            (Some(folder), true) => {
                let folder = base_dir.join(folder);
                match std::fs::create_dir_all(&folder) {
                    Ok(()) => Some(Arc::new(folder)),
                    Err(err) => {
                        problems.push(format!("[channels.{name}] grants.files {}: {err}", folder.display()));
                        None
                    }
                }
            }
            _ => None,
        };
        if !problems.is_empty() {
            return Err(config_problem(problems));
        }
        let plugin_config: Vec<(String, String)> = config
            .settings
            .iter()
            .chain(config.secrets.iter())
            .map(|(key, value)| (key.clone(), value.clone()))
            .chain(options.callback_urls.get(name).map(|url| (super::CALLBACK_URL.to_string(), url.clone())))
            .collect();
        let sandbox = Sandbox { channel: Arc::from(name), limits: config.limits.clone(), http, http_cache: Arc::default(), smtp, files };
        let channel = LoadedChannel { plugin, sandbox, config: plugin_config, consent };
        let verdict = complete(async {
            let mut call = channel.plugin.start(sandbox_engine.engine(), channel.sandbox.clone()).await?;
            let outcome = call.instance.rekindle_channel_channel().call_validate_config(&mut call.store, &channel.config).await;
            outcome.map_err(|err| call.fault(&err))
        })
        .map_err(|fault| config_problem(vec![format!("validate-config failed: {}", fault.reason)]))?;
        verdict.map_err(config_problem)?;
        Ok(channel)
    }

    /// Send one message in a fresh instance.
    pub(crate) async fn send(&self, engine: &Engine, message: OutboundMessage) -> Result<Delivery, SendError> {
        let message = to_wit_message(message);
        let outcome = async {
            let mut call = self.plugin.start(engine, self.sandbox.clone()).await?;
            let outcome = call.instance.rekindle_channel_channel().call_send(&mut call.store, &self.config, &message).await;
            outcome.map_err(|err| call.fault(&err))
        };
        match outcome.await {
            Ok(Ok(delivery)) => Ok(Delivery { provider_id: delivery.provider_id, metadata: delivery.metadata }),
            Ok(Err(wit::types::SendError::Retryable(reason))) => Err(SendError::retryable(reason)),
            Ok(Err(wit::types::SendError::Permanent(reason))) => Err(SendError::permanent(reason)),
            Err(fault) if fault.retryable => Err(SendError::retryable(fault.reason)),
            Err(fault) => Err(SendError::permanent(fault.reason)),
        }
    }

    /// Parse one provider callback in a fresh instance.
    pub(crate) async fn parse_callback(&self, engine: &Engine, request: CallbackRequest) -> Result<Vec<StatusUpdate>, String> {
        let request = wit::types::CallbackRequest {
            method: request.method,
            path: request.path,
            headers: request.headers,
            body: request.body,
        };
        let outcome = async {
            let mut call = self.plugin.start(engine, self.sandbox.clone()).await?;
            let outcome =
                call.instance.rekindle_channel_channel().call_parse_callback(&mut call.store, &self.config, &request).await;
            outcome.map_err(|err| call.fault(&err))
        };
        match outcome.await {
            Ok(Ok(updates)) => Ok(updates.into_iter().map(from_wit_update).collect()),
            Ok(Err(reason)) => Err(reason),
            Err(fault) => Err(fault.reason),
        }
    }
}

fn to_wit_message(message: OutboundMessage) -> wit::types::OutboundMessage {
    wit::types::OutboundMessage {
        recipient: wit::types::Recipient {
            address: message.recipient.address,
            name: message.recipient.name,
            member_id: message.recipient.member_id,
        },
        subject: message.subject,
        text: message.text,
        html: message.html,
        idempotency_key: message.idempotency_key,
        channel_data: message.channel_data,
        metadata: message.metadata,
    }
}

fn from_wit_update(update: wit::types::StatusUpdate) -> StatusUpdate {
    StatusUpdate {
        provider_id: update.provider_id,
        recipient: update.recipient,
        state: match update.state {
            wit::types::DeliveryState::Accepted => DeliveryState::Accepted,
            wit::types::DeliveryState::Delivered => DeliveryState::Delivered,
            wit::types::DeliveryState::Failed => DeliveryState::Failed,
            wit::types::DeliveryState::Complained => DeliveryState::Complained,
            wit::types::DeliveryState::OptedOut => DeliveryState::OptedOut,
        },
        reason: update.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_plain() {
        for good in ["msg-1.eml", "a_b.json", "x@y+z.eml"] {
            assert!(check_file_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../etc/passwd", "a/b", ".hidden", "a\\b", "ü.eml", &"x".repeat(201)] {
            assert!(check_file_name(bad).is_err(), "{bad}");
        }
    }
}
