//! Paired per-message cost of two email plugin builds in one process:
//! `cargo run --release --example email_ab -- A.wasm B.wasm PORT [MESSAGES] [ROUNDS]`
//! against a running SMTP sink on 127.0.0.1:PORT (scripts/smtp-sink.sh ... --engine postfix).
//! Alternates A and B in blocks; prints the rate and this process's CPU per message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rekindle::plugin::{ChannelConfig, ChannelHost, HostOptions, OutboundMessage, Recipient};

fn cpu_seconds() -> f64 {
    rekindle::metrics::process_cpu_seconds().expect("/proc/self/stat")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (a, b, port) = (&args[1], &args[2], &args[3]);
    let messages: usize = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.get(5).and_then(|n| n.parse().ok()).unwrap_or(3);
    let channel = |plugin: &str| -> ChannelConfig {
        toml::from_str(&format!(
            "plugin = {plugin:?}\nsettings = {{ from_address = \"news@tea.example\", from_name = \"茶馆 Tea House\" }}\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\npool_size = 8\n"
        ))
        .expect("channel config")
    };
    let channels: BTreeMap<String, ChannelConfig> = [("a".to_string(), channel(a)), ("b".to_string(), channel(b))].into_iter().collect();
    let host = Arc::new(ChannelHost::load(&channels, &HostOptions::default()).expect("load"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    for round in 1..=rounds {
        for arm in ["a", "b"] {
            let (cpu0, started) = (cpu_seconds(), Instant::now());
            runtime.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for sender in 0..8 {
                    let host = Arc::clone(&host);
                    tasks.spawn(async move {
                        let mut n = sender;
                        while n < messages {
                            host.send(arm, message(n)).await.expect("send");
                            n += 8;
                        }
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done.expect("task");
                }
            });
            let (wall, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
            println!("round {round} {arm}: {:.0}/s, {:.1} µs CPU per message", messages as f64 / wall, cpu * 1e6 / messages as f64);
        }
    }
}

/// smtp_bench.rs's message (an example cannot import another's), so their per-message
/// figures compare.
fn message(n: usize) -> OutboundMessage {
    OutboundMessage {
        recipient: Recipient { address: format!("c{n}@example.org"), name: Some("李雷".into()), member_id: format!("m-{n}") },
        subject: Some("好久不见！您常买的龙井新茶到了".into()),
        text: "您好，上次的龙井喝完了吗？这周回购享九折。\n\nReply STOP to opt out.".repeat(8),
        html: Some("<p>您好，上次的<b>龙井</b>喝完了吗？这周回购享九折。</p>".repeat(8)),
        idempotency_key: format!("winback:1:m-{n}:email"),
        channel_data: vec![("unsubscribe_url".into(), format!("https://tea.example/u/m-{n}"))],
        metadata: vec![("campaign".into(), "winback".into())],
    }
}
