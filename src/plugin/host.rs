//! The wasmtime host: loads channel plugins, runs one call per message in a fresh sandbox.
//!
//! It owns the engine (pooling allocator, fuel, epoch interruption with a ticker
//! thread), the compiled-code cache, the import check at load, and the call
//! path: every message gets a new `Store` instantiated from a pre-instantiated
//! component, with its own memory limit, fuel, wall-clock deadline and host-call
//! count, so recipients never share state and a trapped instance is never reused.
//! The host implementations of the WIT imports live here and delegate I/O to
//! `http`, `smtp` and `files`; every value a plugin hands over is held to the caps
//! of `bounds`. This is the only place, with `cache`, that names wasmtime.
//!
//! The limits of one call, each ending it with the reason: `cpu_ms` is fuel (the
//! guest's own instructions, whatever the machine's load or the host calls);
//! `wall_ms` is a deadline on the epoch ticker while the guest computes and a
//! timeout on every host call it waits in; `max_host_calls` counts imports called.
//!
//! Calls are async (wasmtime runs the guest on a fiber): a plugin's HTTP or
//! SMTP call awaits the I/O on the task that called `send`, with no thread
//! handoff. A blocking thread per call (spawn_blocking, then block_on for each
//! host call) cost several cross-thread wakes per message, each a scheduling
//! delay on a busy machine. Load-time calls (`describe`, `validate-config`) run
//! on a real runtime too, parking the loading thread while they wait.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline};

use super::bounds;
use super::config::{ChannelConfig, Limits, FUEL_PER_CPU_MS, MAX_MEMORY_MIB};
use super::files::FilesCapability;
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
        // every import may trap: a call past its deadline or host-call cap ends there
        imports: {
            "rekindle:channel/http.send": async | trappable,
            "rekindle:channel/smtp.submit": async | trappable,
            default: trappable,
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
/// Memory of a pooled slot kept mapped between instances (see `SandboxEngine::new`).
const KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;

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
        // cpu_ms as fuel, the guest's own work; the epoch for the wall-clock deadline
        config.consume_fuel(true);
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
        let malformed = |reason: String| PluginError::Malformed { path: path.to_path_buf(), reason };
        let manifest_text = block_on(async {
            let mut call = plugin.start(&self.engine, Sandbox::for_inspection()).await?;
            call.instance.rekindle_channel_channel().call_describe(&mut call.store).await.map_err(|err| call.fault(&err))
        })
        .map_err(&malformed)?
        .map_err(|fault| malformed(format!("describe failed: {}", fault.reason)))?;
        bounds::bytes("its manifest", manifest_text.len(), bounds::MAX_MANIFEST).map_err(&malformed)?;
        let manifest = PluginManifest::parse(&manifest_text).map_err(&malformed)?;
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
    pub(crate) files: Option<Arc<FilesCapability>>,
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

    /// A fresh instance under the sandbox's limits, for one call. The fuel and
    /// the wall-clock deadline start now, so instantiation counts too.
    pub(crate) async fn start(&self, engine: &Engine, sandbox: Sandbox) -> Result<Call, Fault> {
        let limits = &sandbox.limits;
        let fuel = u64::from(limits.cpu_ms) * FUEL_PER_CPU_MS;
        let wall = Duration::from_millis(u64::from(limits.wall_ms));
        let memory_limit = limits.memory_mib as usize * 1024 * 1024;
        let mut store = Store::new(
            engine,
            CallState {
                sandbox,
                limiter: MemoryLimiter { limit: memory_limit, exceeded: false },
                deadline: Instant::now() + wall,
                host_calls: 0,
                stopped: None,
                last_error_log: None,
            },
        );
        store.limiter(|state| &mut state.limiter);
        if let Err(err) = store.set_fuel(fuel) {
            return Err(fault(store.data(), &err, true));
        }
        store.set_epoch_deadline(ticks(wall));
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            let left = state.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(state.stop(Stop::Wall))
            } else {
                Ok(UpdateDeadline::Continue(ticks(left)))
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

/// Run a load-time call (`describe`, `validate-config`) to its end on this
/// thread, which parks while the call waits on host I/O: on the runtime the
/// thread belongs to (the daemon loads channels on one of its blocking threads),
/// else on a current-thread runtime of its own. Not for an async worker thread
/// (tokio refuses to block one).
fn block_on<F: Future>(future: F) -> Result<F::Output, String> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => Ok(runtime.block_on(future)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| runtime.block_on(future))
            .map_err(|err| format!("cannot start an async runtime for the plugin: {err}")),
    }
}

fn ticks(budget: Duration) -> u64 {
    (budget.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
}

fn fault(state: &CallState, err: &wasmtime::Error, instantiating: bool) -> Fault {
    let limits = &state.sandbox.limits;
    match state.stopped {
        Some(Stop::Wall) => {
            return Fault {
                reason: format!("plugin stopped at its wall-clock limit of {} ms (after {} host calls)", limits.wall_ms, state.host_calls),
                retryable: true,
            }
        }
        Some(Stop::HostCalls) => {
            return Fault { reason: format!("plugin stopped at its limit of {} host calls", limits.max_host_calls), retryable: true }
        }
        None => {}
    }
    if err.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) {
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
    /// The end of the call's `wall_ms`.
    deadline: Instant,
    host_calls: u32,
    /// The limit that stopped the call, if one did (fuel and memory say so themselves).
    stopped: Option<Stop>,
    last_error_log: Option<String>,
}

/// A limit the host enforces by trapping the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Wall,
    HostCalls,
}

impl CallState {
    /// Record why the call stops; the trap to raise.
    fn stop(&mut self, why: Stop) -> wasmtime::Error {
        self.stopped = Some(why);
        wasmtime::format_err!("{why:?} limit reached")
    }

    /// Count a host call; trap past the cap or the deadline.
    fn enter(&mut self) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if self.host_calls > self.sandbox.limits.max_host_calls {
            return Err(self.stop(Stop::HostCalls));
        }
        if Instant::now() >= self.deadline {
            return Err(self.stop(Stop::Wall));
        }
        Ok(())
    }

    /// Host I/O within what is left of the call's deadline; trap when it runs out.
    async fn host_io<F: Future>(&mut self, io: F) -> wasmtime::Result<F::Output> {
        match tokio::time::timeout_at(self.deadline.into(), io).await {
            Ok(output) => Ok(output),
            Err(_) => Err(self.stop(Stop::Wall)),
        }
    }
}

impl wit::types::Host for CallState {}

impl wit::http::Host for CallState {
    async fn send(&mut self, request: wit::http::Request) -> wasmtime::Result<Result<wit::http::Response, wit::http::HttpError>> {
        self.enter()?;
        let Some(http) = self.sandbox.http.clone() else {
            return Ok(Err(wit::http::HttpError::Denied("this channel has no http grant".to_string())));
        };
        let wit::http::Request { method, url, mut headers, body } = request;
        let keep = GetCache::wanted(&method, &mut headers);
        if let Some((headers, body)) = keep.and_then(|_| self.sandbox.http_cache.get(&url)) {
            return Ok(Ok(wit::http::Response { status: 200, headers, body }));
        }
        let outcome = self.host_io(http.send(&method, &url, &headers, body)).await?;
        Ok(match outcome {
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
        })
    }
}

impl wit::smtp::Host for CallState {
    async fn submit(&mut self, mail_from: String, rcpt_to: Vec<String>, message: Vec<u8>) -> wasmtime::Result<Result<String, wit::smtp::SmtpError>> {
        self.enter()?;
        let Some(relay) = self.sandbox.smtp.clone() else {
            return Ok(Err(wit::smtp::SmtpError::Denied("this channel has no smtp relay".to_string())));
        };
        let within_caps = bounds::bytes("an envelope sender", mail_from.len(), bounds::MAX_ADDRESS)
            .and_then(|()| bounds::count("envelope recipients", rcpt_to.len(), bounds::MAX_RECIPIENTS))
            .and_then(|()| rcpt_to.iter().try_for_each(|rcpt| bounds::bytes("an envelope recipient", rcpt.len(), bounds::MAX_ADDRESS)))
            .and_then(|()| bounds::bytes("a message", message.len(), bounds::MAX_MAIL));
        if let Err(why) = within_caps {
            return Ok(Err(wit::smtp::SmtpError::Permanent(why)));
        }
        Ok(match self.host_io(relay.submit(&mail_from, &rcpt_to, &message)).await? {
            Ok(reply) => Ok(reply),
            Err(SmtpFailure::Transient(why)) => Err(wit::smtp::SmtpError::Transient(why)),
            Err(SmtpFailure::Permanent(why)) => Err(wit::smtp::SmtpError::Permanent(why)),
        })
    }
}

impl wit::files::Host for CallState {
    fn write(&mut self, name: String, contents: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        self.enter()?;
        Ok(match &self.sandbox.files {
            Some(files) => files.write(&name, &contents),
            None => Err("this channel has no files grant".to_string()),
        })
    }
}

impl wit::log::Host for CallState {
    fn log(&mut self, level: wit::log::Level, message: String) -> wasmtime::Result<()> {
        self.enter()?;
        let line = bounds::clip(message, bounds::MAX_LOG_LINE);
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
        Ok(())
    }
}

impl wit::clock::Host for CallState {
    fn now_unix_ms(&mut self) -> wasmtime::Result<i64> {
        self.enter()?;
        Ok(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0))
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
        problems.extend(config.limits.problems(name));
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
        let smtp = match (&config.smtp, manifest.capabilities.smtp || manifest.optional_capabilities.smtp) {
            (Some(relay), true) => match SmtpRelay::new(relay, io_timeout) {
                Ok(relay) => Some(Arc::new(relay)),
                Err(problem) => {
                    problems.push(format!("[channels.{name}] {problem}"));
                    None
                }
            },
            _ => None,
        };
        let files = match (&config.grants.files, manifest.capabilities.files || manifest.optional_capabilities.files) {
            (Some(folder), true) => {
                let (max_bytes, max_count) = (config.limits.files_max_bytes, config.limits.files_max_count);
                match FilesCapability::new(base_dir.join(folder), name, max_bytes, max_count) {
                    Ok(files) => Some(Arc::new(files)),
                    Err(problem) => {
                        problems.push(format!("[channels.{name}] {problem}"));
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
        let verdict = block_on(async {
            let mut call = channel.plugin.start(sandbox_engine.engine(), channel.sandbox.clone()).await?;
            let outcome = call.instance.rekindle_channel_channel().call_validate_config(&mut call.store, &channel.config).await;
            outcome.map_err(|err| call.fault(&err))
        })
        .map_err(|why| config_problem(vec![why]))?
        .map_err(|fault| config_problem(vec![format!("validate-config failed: {}", fault.reason)]))?;
        verdict.map_err(|problems| config_problem(bounded_problems(problems)))?;
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
            Ok(Ok(delivery)) => bounded_delivery(delivery).map_err(|why| SendError::permanent(format!("plugin broke the contract: {why}"))),
            Ok(Err(wit::types::SendError::Retryable(reason))) => Err(SendError::retryable(bounds::clip(reason, bounds::MAX_TEXT))),
            Ok(Err(wit::types::SendError::Permanent(reason))) => Err(SendError::permanent(bounds::clip(reason, bounds::MAX_TEXT))),
            Err(fault) if fault.retryable => Err(SendError::retryable(fault.reason)),
            Err(fault) => Err(SendError::permanent(fault.reason)),
        }
    }

    /// Parse one provider callback in a fresh instance. A limit that a later try may
    /// pass (wall clock, host calls, a full pool) is a [`Fault`] with `retryable`.
    pub(crate) async fn parse_callback(&self, engine: &Engine, request: CallbackRequest) -> Result<Vec<StatusUpdate>, Fault> {
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
        let refused = |reason: String| Fault { reason, retryable: false };
        match outcome.await {
            Ok(Ok(updates)) => bounded_updates(updates).map_err(|why| refused(format!("plugin broke the contract: {why}"))),
            Ok(Err(reason)) => Err(refused(bounds::clip(reason, bounds::MAX_TEXT))),
            Err(fault) => Err(fault),
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

/// A plugin's delivery within the caps of `bounds`, or what is over one.
fn bounded_delivery(delivery: wit::types::Delivery) -> Result<Delivery, String> {
    bounds::bytes("a provider id", delivery.provider_id.len(), bounds::MAX_ID)?;
    bounds::count("metadata entries", delivery.metadata.len(), bounds::MAX_METADATA)?;
    for (key, value) in &delivery.metadata {
        bounds::bytes("a metadata key", key.len(), bounds::MAX_KEY)?;
        bounds::bytes(&format!("metadata `{key}`"), value.len(), bounds::MAX_TEXT)?;
    }
    Ok(Delivery { provider_id: delivery.provider_id, metadata: delivery.metadata })
}

/// A callback's status updates within the caps of `bounds` (reasons cut), or what is over one.
fn bounded_updates(updates: Vec<wit::types::StatusUpdate>) -> Result<Vec<StatusUpdate>, String> {
    bounds::count("status updates", updates.len(), bounds::MAX_UPDATES)?;
    updates
        .into_iter()
        .map(|update| {
            for id in update.provider_id.iter().chain(&update.recipient) {
                bounds::bytes("a status update's provider id or recipient", id.len(), bounds::MAX_ID)?;
            }
            Ok(from_wit_update(update))
        })
        .collect()
}

/// validate-config's problems, at most `MAX_PROBLEMS` of them, each cut to `MAX_TEXT`.
fn bounded_problems(problems: Vec<String>) -> Vec<String> {
    let more = problems.len().saturating_sub(bounds::MAX_PROBLEMS);
    let mut shown: Vec<String> = problems.into_iter().take(bounds::MAX_PROBLEMS).map(|p| bounds::clip(p, bounds::MAX_TEXT)).collect();
    if more > 0 {
        shown.push(format!("and {more} more problems"));
    }
    shown
}

fn from_wit_update(update: wit::types::StatusUpdate) -> StatusUpdate {
    StatusUpdate {
        provider_id: update.provider_id,
        recipient: update.recipient,
        reason: update.reason.map(|reason| bounds::clip(reason, bounds::MAX_TEXT)),
        state: match update.state {
            wit::types::DeliveryState::Accepted => DeliveryState::Accepted,
            wit::types::DeliveryState::Delivered => DeliveryState::Delivered,
            wit::types::DeliveryState::Failed => DeliveryState::Failed,
            wit::types::DeliveryState::Complained => DeliveryState::Complained,
            wit::types::DeliveryState::OptedOut => DeliveryState::OptedOut,
        },
    }
}
