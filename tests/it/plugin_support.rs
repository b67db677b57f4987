//! Shared helpers of the plugin modules: building the plugins once, writing
//! channel configs, starting the project's test servers (scripts/) by PID and
//! reading back what they recorded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rekindle::plugin::{ChannelConfig, OutboundMessage, Recipient};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Build every plugin (once per test binary); returns target/plugins.
pub fn plugins_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(repo().join("scripts/build-plugins.sh"))
            .current_dir(repo())
            .status()
            .expect("run scripts/build-plugins.sh");
        assert!(status.success(), "scripts/build-plugins.sh failed");
        repo().join("target/plugins")
    })
}

pub fn plugin(name: &str) -> PathBuf {
    plugins_dir().join(format!("{name}.wasm"))
}

/// One channel config from TOML text, with `{plugin}` replaced by the path of `name`.wasm.
pub fn channel(name: &str, toml_text: &str) -> ChannelConfig {
    let text = format!("plugin = {:?}\n{toml_text}", plugin(name).display().to_string());
    toml::from_str(&text).unwrap_or_else(|err| panic!("channel config: {err}\n{text}"))
}

pub fn channels(entries: Vec<(&str, ChannelConfig)>) -> BTreeMap<String, ChannelConfig> {
    entries.into_iter().map(|(name, config)| (name.to_string(), config)).collect()
}

pub fn message(address: &str, key: &str) -> OutboundMessage {
    OutboundMessage {
        recipient: Recipient { address: address.to_string(), name: None, member_id: "m-1".to_string() },
        subject: None,
        text: "hello".to_string(),
        html: None,
        idempotency_key: key.to_string(),
        channel_data: Vec::new(),
        metadata: Vec::new(),
    }
}

/// The async runtime the host's `send` runs on, as in the daemon.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

/// The requests a recording HTTP server (scripts/http_sink.py) stored, one JSON value each.
pub fn requests(state: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("requests.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("request line"))
        .collect()
}

pub fn python() -> String {
    std::env::var("REKINDLE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A server started by one of the project's scripts/ (start STATE [args]),
/// stopped by the same script (stop STATE) when dropped.
pub struct ScriptServer {
    script: PathBuf,
    pub state: tempfile::TempDir,
}

impl ScriptServer {
    pub fn start(script: &str, args: &[&str]) -> Self {
        let state = tempfile::tempdir().expect("state dir");
        let script = repo().join("scripts").join(script);
        let status = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(state.path())
            .args(args)
            .env("REKINDLE_PYTHON", python())
            .stdout(Stdio::null())
            .status()
            .expect("start script");
        assert!(status.success(), "{} start failed", script.display());
        ScriptServer { script, state }
    }

    pub fn path(&self) -> &Path {
        self.state.path()
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(&self.script).arg("stop").arg(self.state.path()).status();
    }
}

/// Held by each test that runs a Kannel gateway: two gateways at once would compete for
/// ports and for a loaded machine's patience.
pub fn kannel_lock() -> std::sync::MutexGuard<'static, ()> {
    static KANNEL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    KANNEL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A base port for a Kannel gateway (it listens on base..=base+13): below the kernel's
/// ephemeral range (32768 and up), where the client sockets and TIME_WAITs of a busy
/// parallel test run live, and with every one of its ports free right now.
pub fn kannel_base() -> u16 {
    let start = (std::process::id() % 220) as u16;
    (0..220u16)
        .map(|i| 10_000 + ((start + i) % 220) * 100)
        .find(|base| (*base..=base + 13).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()))
        .expect("no free block of 14 ports between 10000 and 32000")
}

/// Wait until `probe` returns Some, or panic after `limit`.
pub fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(started.elapsed() < limit, "gave up waiting after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
