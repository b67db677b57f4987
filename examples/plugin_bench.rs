//! Benchmark of the plugin boundary: `cargo run --example plugin_bench [-- MESSAGES [PHASE...]]`.
//!
//! Measures, in one run on this machine, each phase naming itself (`call`,
//! `get`, `shop`, `throughput`, `cpu`, `spin`; all by default): the per-message cost of a
//! plugin call with no I/O (fresh Store, instantiate, call, return); one GET
//! through a plugin's HTTP capability against the same GET natively (the
//! difference is the boundary overhead: host -> plugin -> host capability ->
//! plugin -> host); the shop plugin's per-message latency against the same
//! adapter compiled natively; and messages/s through the shop plugin with
//! concurrent senders, against the native adapter; and (`cpu`) how long a
//! plugin spinning in a tight loop runs, in wall-clock and process CPU time,
//! before its `cpu_ms` of fuel is gone (the calibration of
//! `FUEL_PER_CPU_MS`); and (`spin`) the time a plugin takes for a fixed count of
//! loop iterations, which is where fuel metering costs most. Latencies are timed inside
//! a task on the runtime, where the daemon's dispatcher sends. The sink is a
//! minimal keep-alive HTTP responder in this process on 127.0.0.1, so the
//! figure is not capped by a Python server. Build plugins first:
//! scripts/build-plugins.sh.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rekindle::plugin::{ChannelConfig, ChannelHost, HostOptions, OutboundMessage, Recipient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "bench-secret";

fn main() {
    let messages: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let only: Vec<String> = std::env::args().skip(2).collect();
    let runs = |phase: &str| only.is_empty() || only.iter().any(|p| p == phase);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let port = runtime.block_on(start_sink());
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/plugins");
    let channel = |name: &str, rest: String| -> ChannelConfig {
        toml::from_str(&format!(
            "plugin = {:?}\n{rest}",
            plugins.join(format!("{name}.wasm")).display().to_string()
        ))
        .expect("config")
    };
    let channels: BTreeMap<String, ChannelConfig> = [
        ("noop".to_string(), channel("faulty", "settings = { mode = \"ok\" }\n[grants]\nhttp = [\"127.0.0.1:9\"]\nfiles = \"target/bench-files\"\n".into())),
        (
            "get".to_string(),
            channel(
                "faulty",
                format!("settings = {{ mode = \"http\", url = \"http://127.0.0.1:{port}/ping\" }}\n[grants]\nhttp = [\"127.0.0.1:{port}\"]\nfiles = \"target/bench-files\"\n"),
            ),
        ),
        (
            "loop".to_string(),
            channel("faulty", format!("settings = {{ mode = \"loop\" }}\n[grants]\nhttp = [\"127.0.0.1:9\"]\nfiles = \"target/bench-files\"\n[limits]\ncpu_ms = {LOOP_CPU_MS}\nwall_ms = 60000\n")),
        ),
        (
            "spin".to_string(),
            channel("faulty", format!("settings = {{ mode = \"spin\", iterations = \"{SPIN_ITERATIONS}\" }}\n[grants]\nhttp = [\"127.0.0.1:9\"]\nfiles = \"target/bench-files\"\n[limits]\ncpu_ms = 10000\nwall_ms = 60000\n")),
        ),
        (
            "shop".to_string(),
            channel(
                "shop",
                format!("settings = {{ endpoint = \"http://127.0.0.1:{port}/v1/messages\" }}\nsecrets = {{ signing_secret = \"{SECRET}\" }}\n[grants]\nhttp = [\"127.0.0.1:{port}\"]\n"),
            ),
        ),
    ]
    .into_iter()
    .collect();
    let started = Instant::now();
    let host = Arc::new(ChannelHost::load(&channels, &HostOptions::default()).expect("load plugins"));
    if runs("cpu") {
        // a tight loop until its fuel runs out, 10 times: wall and process CPU time
        let mut wall = Vec::new();
        let mut cpu = Vec::new();
        for n in 0..10 {
            let cpu_before = process_cpu();
            let host = Arc::clone(&host);
            wall.push(timed(&runtime, async move {
                match host.send("loop", message(n)).await {
                    Err(err) if err.reason.contains("cpu limit") => Ok(()),
                    other => Err(format!("expected the cpu limit, got {other:?}")),
                }
            }));
            cpu.push(process_cpu() - cpu_before);
        }
        let wall = report(&format!("tight loop stopped at cpu_ms = {LOOP_CPU_MS}, wall"), &mut wall);
        let cpu = report(&format!("tight loop stopped at cpu_ms = {LOOP_CPU_MS}, process cpu"), &mut cpu);
        let fuel = u64::from(LOOP_CPU_MS) * rekindle::plugin::config::FUEL_PER_CPU_MS;
        println!(
            "fuel a cpu millisecond of a tight loop burns: {:.0} by wall time, {:.0} by cpu time (FUEL_PER_CPU_MS = {})",
            fuel as f64 / (wall.as_secs_f64() * 1e3),
            fuel as f64 / (cpu.as_secs_f64() * 1e3),
            rekindle::plugin::config::FUEL_PER_CPU_MS
        );
    }
    println!("load (compile) of 2 plugins: {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);

    // (0b) a fixed amount of guest work: what fuel metering costs the plugin's own code
    if runs("spin") {
        let mut samples = Vec::new();
        for n in 0..20 {
            let host = Arc::clone(&host);
            samples.push(timed(&runtime, async move { host.send("spin", message(n)).await.map(|_| ()).map_err(|e| e.to_string()) }));
        }
        let median = report(&format!("plugin spinning {SPIN_ITERATIONS} loop iterations"), &mut samples);
        println!("spin: {:.2} ns an iteration", median.as_secs_f64() * 1e9 / SPIN_ITERATIONS as f64);
    }

    // (1) call overhead, no I/O
    if runs("call") {
        let mut samples = Vec::with_capacity(messages);
        for n in 0..messages.min(20_000) {
            let host = Arc::clone(&host);
            samples.push(timed(&runtime, async move { host.send("noop", message(n)).await.map(|_| ()).map_err(|e| e.to_string()) }));
        }
        report("plugin call, no I/O (fresh instance per message)", &mut samples);
    }

    // (1b) one host capability call: a GET through the plugin vs the same GET natively
    let client = reqwest::Client::builder().tcp_nodelay(true).build().expect("client");
    if runs("get") {
        let ping = format!("http://127.0.0.1:{port}/ping");
        let mut plugin_get = Vec::new();
        let mut native_get = Vec::new();
        for n in 0..messages.min(10_000) {
            let host = Arc::clone(&host);
            plugin_get.push(timed(&runtime, async move { host.send("get", message(n)).await.map(|_| ()).map_err(|e| e.to_string()) }));
            let (client, ping) = (client.clone(), ping.clone());
            native_get.push(timed(&runtime, async move {
                let response = client.get(&ping).send().await.map_err(|e| e.to_string())?;
                response.bytes().await.map(|_| ()).map_err(|e| e.to_string())
            }));
        }
        let plugin_get = report("GET via plugin (host -> plugin -> http capability -> plugin -> host)", &mut plugin_get);
        let native_get = report("GET native", &mut native_get);
        println!(
            "boundary overhead with one capability call (median): {:.1} us",
            (plugin_get.as_secs_f64() - native_get.as_secs_f64()) * 1e6
        );
    }

    // (2) shop latency: plugin vs native, one sender
    let url = format!("http://127.0.0.1:{port}/v1/messages");
    if runs("shop") {
        let latency_runs = messages.min(10_000);
        let mut plugin_samples = Vec::with_capacity(latency_runs);
        let mut native_samples = Vec::with_capacity(latency_runs);
        for n in 0..latency_runs {
            let host = Arc::clone(&host);
            plugin_samples.push(timed(&runtime, async move { host.send("shop", message(n)).await.map(|_| ()).map_err(|e| e.to_string()) }));
            let (client, url) = (client.clone(), url.clone());
            native_samples.push(timed(&runtime, async move { native_send(&client, &url, message(n)).await }));
        }
        let plugin_median = report("shop via plugin, 1 sender", &mut plugin_samples);
        let native_median = report("shop native adapter, 1 sender", &mut native_samples);
        println!(
            "boundary overhead (median plugin - native): {:.1} us; ratio {:.2}x",
            (plugin_median.as_secs_f64() - native_median.as_secs_f64()) * 1e6,
            plugin_median.as_secs_f64() / native_median.as_secs_f64()
        );
    }

    // (3) throughput with concurrent senders
    for senders in [8usize, 32].into_iter().filter(|_| runs("throughput")) {
        let plugin_rate = runtime.block_on(throughput(senders, messages, {
            let host = Arc::clone(&host);
            move |n| {
                let host = Arc::clone(&host);
                async move { host.send("shop", message(n)).await.map(|_| ()).map_err(|e| e.to_string()) }
            }
        }));
        let native_rate = runtime.block_on(throughput(senders, messages, {
            let client = client.clone();
            let url = url.clone();
            move |n| {
                let client = client.clone();
                let url = url.clone();
                async move { native_send(&client, &url, message(n)).await }
            }
        }));
        println!(
            "shop throughput, {senders} senders, {messages} messages: plugin {plugin_rate:.0}/s, native {native_rate:.0}/s, ratio {:.2}",
            plugin_rate / native_rate
        );
    }
}

/// The `cpu_ms` of the `cpu` phase's looping plugin.
const LOOP_CPU_MS: u32 = 200;
/// Loop iterations of the `spin` phase's plugin.
const SPIN_ITERATIONS: u64 = 20_000_000;

/// CPU time this process has used, user and system (Linux, 10 ms resolution).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<u64> = after_name.split_whitespace().skip(11).take(2).map(|f| f.parse().unwrap_or(0)).collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

fn message(n: usize) -> OutboundMessage {
    OutboundMessage {
        recipient: Recipient {
            address: format!("cust-{n}"),
            name: None,
            member_id: format!("m-{n}"),
        },
        subject: None,
        text: "好久不见！您常买的龙井新茶到了，本周回购九折。".to_string(),
        html: None,
        idempotency_key: format!("m-{n}/bench/1"),
        channel_data: vec![("template".into(), "winback_v2".into())],
        metadata: vec![("campaign".into(), "bench".into())],
    }
}

/// The same adapter logic as the plugin (the shop crate compiled natively), over reqwest directly.
async fn native_send(client: &reqwest::Client, url: &str, message: OutboundMessage) -> Result<(), String> {
    let to_sdk = rekindle_plugin_sdk::OutboundMessage {
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
    };
    let body = rekindle_plugin_shop::request_body(&to_sdk);
    let timestamp = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs())
    .to_string();
    let signature = rekindle_plugin_shop::signature(SECRET.as_bytes(), &timestamp, &body);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-rekindle-timestamp", timestamp)
        .header("x-rekindle-signature", signature)
        .header("idempotency-key", to_sdk.idempotency_key.as_str())
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    rekindle_plugin_shop::interpret(status, &bytes)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

async fn throughput<F, Fut>(senders: usize, messages: usize, send: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..senders {
        let send = send.clone();
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

/// Time one send inside a task on the runtime's workers, where the daemon's
/// dispatcher runs its sends (the hop from main into the runtime is not counted).
fn timed<F>(runtime: &tokio::runtime::Runtime, send: F) -> Duration
where
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let task = runtime.spawn(async move {
        let started = Instant::now();
        send.await.expect("send");
        started.elapsed()
    });
    runtime.block_on(task).expect("timed task")
}

fn report(label: &str, samples: &mut [Duration]) -> Duration {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "{label}: n={} median {:.1} us, p90 {:.1} us, p99 {:.1} us",
        samples.len(),
        at(0.5).as_secs_f64() * 1e6,
        at(0.9).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    );
    at(0.5)
}

/// A minimal keep-alive HTTP/1.1 responder on 127.0.0.1: reads one request
/// (headers, then Content-Length bytes), answers 200 `{"id":"msg-1"}`.
async fn start_sink() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buffer = Vec::with_capacity(8192);
                let mut chunk = [0u8; 8192];
                loop {
                    let header_end = loop {
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let headers = String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
                    let length: usize = headers
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    while buffer.len() < header_end + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buffer.drain(..header_end + length);
                    let body = b"{\"id\":\"msg-1\"}";
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let mut out = response.into_bytes();
                    out.extend_from_slice(body);
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}
