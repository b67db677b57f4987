//! Email throughput through the host's SMTP: `cargo run --example smtp_bench [-- MESSAGES]`.
//!
//! Starts Postfix's `smtp-sink` on 127.0.0.1 with `scripts/smtp-sink.sh
//! --engine postfix` (a C sink that keeps up with ~7,000 messages/s here, so it
//! is not the bottleneck), then measures messages/s in one run:
//! (1) the email plugin through the host's pooled SMTP connections (TCP_NODELAY);
//! (2) the same adapter compiled natively (`rekindle_plugin_email::render`)
//!     over one lettre `AsyncSmtpConnection` per sender with TCP_NODELAY, which
//!     is what the host does without the plugin boundary;
//! (3) a plain lettre `AsyncSmtpTransport` with its connection pool, as an
//!     application would use it (lettre never sets TCP_NODELAY, so it waits on
//!     Nagle's algorithm; fewer messages, or it would take minutes).
//! At the end the sink's dump files are counted against the messages sent.
//! Build plugins first: scripts/build-plugins.sh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rekindle::plugin::{ChannelConfig, ChannelHost, HostOptions, OutboundMessage, Recipient};

const FROM: &str = "news@tea.example";

fn main() {
    let messages: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sink = Sink::start(repo);
    let port = sink.port;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let channel: ChannelConfig = toml::from_str(&format!(
        "plugin = {:?}\nsettings = {{ from_address = \"{FROM}\", from_name = \"茶馆 Tea House\", unsubscribe_mailto = \"unsub@tea.example\" }}\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\npool_size = 8\n",
        repo.join("target/plugins/email.wasm").display().to_string()
    ))
    .expect("channel config");
    let channels: BTreeMap<String, ChannelConfig> = [("mail".to_string(), channel)].into_iter().collect();
    let host = Arc::new(ChannelHost::load(&channels, &HostOptions::default()).expect("load the email plugin"));
    let mut sent = 0;
    let sample = rekindle_plugin_email::render(&native_config(), &to_sdk(message(0)), 0).expect("render").0;
    println!("smtp-sink on 127.0.0.1:{port}; message size {} bytes", sample.len());

    for senders in [1usize, 8] {
        let plugin_rate = runtime.block_on(throughput(senders, messages, |_sender| {
            let host = Arc::clone(&host);
            async move {
                move |n: usize| {
                    let host = Arc::clone(&host);
                    async move { host.send("mail", message(n)).await.map(|_| ()).map_err(|e| e.to_string()) }
                }
            }
        }));
        let native_rate = runtime.block_on(throughput(senders, messages, |_sender| async move {
            let connection = Arc::new(tokio::sync::Mutex::new(nodelay_connection(port).await));
            move |n: usize| {
                let connection = Arc::clone(&connection);
                async move {
                    let (bytes, envelope) = native_render(n)?;
                    connection.lock().await.send(&envelope, &bytes).await.map(|_| ()).map_err(|e| e.to_string())
                }
            }
        }));
        sent += 2 * messages;
        let lettre_messages = messages.min(100 * senders);
        let _in_runtime = runtime.enter(); // lettre's pool spawns its reaper task on build
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .pool_config(PoolConfig::new().max_size(senders as u32))
            .build();
        let lettre_rate = runtime.block_on(throughput(senders, lettre_messages, |_sender| {
            let transport = transport.clone();
            async move {
                move |n: usize| {
                    let transport = transport.clone();
                    async move {
                        let (bytes, envelope) = native_render(n)?;
                        transport.send_raw(&envelope, &bytes).await.map(|_| ()).map_err(|e| e.to_string())
                    }
                }
            }
        }));
        sent += lettre_messages;
        println!(
            "{senders} sender(s): plugin {plugin_rate:.0}/s ({messages} msgs), native adapter on nodelay lettre {native_rate:.0}/s ({messages} msgs), ratio {:.2}; plain lettre pooled transport {lettre_rate:.0}/s ({lettre_messages} msgs)",
            plugin_rate / native_rate
        );
    }
    let stored = sink.wait_for_count(sent, Duration::from_secs(30));
    println!("sink stored {stored} of {sent} messages sent");
    assert_eq!(stored, sent, "the sink did not store every message");
}

fn message(n: usize) -> OutboundMessage {
    OutboundMessage {
        recipient: Recipient { address: format!("c{n}@example.org"), name: Some("李雷".into()), member_id: format!("m-{n}") },
        subject: Some("好久不见！您常买的龙井新茶到了".into()),
        text: "您好，上次的龙井喝完了吗？这周回购享九折。\n\nReply STOP to opt out.".repeat(8),
        html: Some("<p>您好，上次的<b>龙井</b>喝完了吗？这周回购享九折。</p>".repeat(8)),
        idempotency_key: format!("m-{n}/winback/1"),
        channel_data: vec![("unsubscribe_url".into(), format!("https://tea.example/u/m-{n}"))],
        metadata: vec![("campaign".into(), "winback".into())],
    }
}

fn native_config() -> rekindle_plugin_sdk::Config {
    rekindle_plugin_sdk::Config::new(vec![
        ("from_address".into(), FROM.into()),
        ("from_name".into(), "茶馆 Tea House".into()),
        ("unsubscribe_mailto".into(), "unsub@tea.example".into()),
    ])
}

fn to_sdk(message: OutboundMessage) -> rekindle_plugin_sdk::OutboundMessage {
    rekindle_plugin_sdk::OutboundMessage {
        recipient: rekindle_plugin_sdk::Recipient {
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

/// The email adapter compiled natively: the same bytes the plugin submits.
fn native_render(n: usize) -> Result<(Vec<u8>, Envelope), String> {
    let message = to_sdk(message(n));
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_millis() as i64;
    let (bytes, _message_id) = rekindle_plugin_email::render(&native_config(), &message, now_ms).map_err(|e| format!("{e:?}"))?;
    let envelope = Envelope::new(
        Some(FROM.parse().map_err(|e| format!("{e}"))?),
        vec![message.recipient.address.parse().map_err(|e| format!("{e}"))?],
    )
    .map_err(|e| e.to_string())?;
    Ok((bytes, envelope))
}

async fn nodelay_connection(port: u16) -> AsyncSmtpConnection {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect to the sink");
    tcp.set_nodelay(true).expect("nodelay");
    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &ClientId::Domain("localhost".into())).await.expect("smtp greeting")
}

/// Messages/s with `senders` concurrent tasks sending `messages` in all; each
/// task gets its own sender from `make_sender` (a connection, or a handle).
async fn throughput<M, MFut, S, SFut>(senders: usize, messages: usize, make_sender: M) -> f64
where
    M: Fn(usize) -> MFut,
    MFut: std::future::Future<Output = S>,
    S: Fn(usize) -> SFut + Send + 'static,
    SFut: std::future::Future<Output = Result<(), String>> + Send,
{
    let mut per_task = Vec::with_capacity(senders);
    for sender in 0..senders {
        per_task.push(make_sender(sender).await);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (sender, send) in per_task.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut n = sender;
            while n < messages {
                send(n).await.expect("send");
                n += senders;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("sender task");
    }
    messages as f64 / started.elapsed().as_secs_f64()
}

/// Postfix smtp-sink, started and stopped by PID through the project's script.
struct Sink {
    script: PathBuf,
    state: tempfile::TempDir,
    port: u16,
}

impl Sink {
    fn start(repo: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let state = tempfile::tempdir().expect("state dir");
        let script = repo.join("scripts/smtp-sink.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(state.path())
            .arg(port.to_string())
            .args(["--engine", "postfix"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run scripts/smtp-sink.sh");
        assert!(status.success(), "smtp-sink did not start (is Debian's postfix installed? scripts/setup.sh)");
        Sink { script, state, port }
    }

    fn count(&self) -> usize {
        std::fs::read_dir(self.state.path().join("dump")).map(|entries| entries.count()).unwrap_or(0)
    }

    fn wait_for_count(&self, expected: usize, limit: Duration) -> usize {
        let started = Instant::now();
        while self.count() < expected && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.count()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(&self.script).arg("stop").arg(self.state.path()).status();
    }
}
