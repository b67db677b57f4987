//! A plain SMTP client for the daemon benchmark (`scripts/bench_daemon.sh`), the
//! comparison without rekindle: no store, no plugin, no rendering. It sends MESSAGES mails
//! of the benchmark campaign's size to 127.0.0.1:PORT over CONNECTIONS connections, each a
//! tokio TCP stream with TCP_NODELAY handed to lettre's `AsyncSmtpConnection` (what the
//! plugin host does), and prints `plain client: N messages in S s, R messages/s`.
//!
//!   cargo run --release --example smtp_blast -- PORT MESSAGES CONNECTIONS

use std::time::Instant;

use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::extension::ClientId;
use lettre::Address;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let [port, messages, connections] = args[..] else {
        eprintln!("usage: smtp_blast PORT MESSAGES CONNECTIONS");
        std::process::exit(2);
    };
    let (Ok(port), connections) = (u16::try_from(port), connections.max(1)) else {
        eprintln!("bad port {port}");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let started = Instant::now();
    let sent: usize = runtime.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..connections {
            let share = messages / connections + usize::from(c < messages % connections);
            let first = c * (messages / connections) + c.min(messages % connections);
            tasks.push(tokio::spawn(send_share(port, first, share)));
        }
        let mut sent = 0;
        for task in tasks {
            match task.await {
                Ok(Ok(n)) => sent += n,
                Ok(Err(e)) => eprintln!("connection failed: {e}"),
                Err(e) => eprintln!("task failed: {e}"),
            }
        }
        sent
    });
    let seconds = started.elapsed().as_secs_f64();
    println!("plain client: {sent} messages in {seconds:.2} s, {:.0} messages/s ({connections} connections)", sent as f64 / seconds);
    if sent != messages {
        std::process::exit(1);
    }
}

/// Sends mails `first..first + count` on one connection.
async fn send_share(port: u16, first: usize, count: usize) -> Result<usize, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let hello = ClientId::Domain("localhost".into());
    let mut connection = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello).await.map_err(|e| e.to_string())?;
    let from: Address = "news@shop.example".parse().map_err(|e| format!("{e}"))?;
    for i in first..first + count {
        let to: Address = format!("p{i:07}@example.com").parse().map_err(|e| format!("{e}"))?;
        let envelope = Envelope::new(Some(from.clone()), vec![to]).map_err(|e| e.to_string())?;
        connection.send(&envelope, mail(i).as_bytes()).await.map_err(|e| e.to_string())?;
    }
    connection.quit().await.map_err(|e| e.to_string())?;
    Ok(count)
}

/// A mail shaped like the benchmark campaign's (headers, base64 text part).
fn mail(i: usize) -> String {
    format!(
        "From: \"Shop\" <news@shop.example>\r\nTo: \"Member {i}\" <p{i:07}@example.com>\r\nSubject: Hello Member {i}\r\n\
         Date: Tue, 24 Nov 2026 20:31:22 +0000\r\nMessage-ID: <plain.{i}@shop.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         RGVhciBNZW1iZXIgMiwgdGhpcyBtZXNzYWdlIGlzIHRoZSBiZW5jaG1hcmsgY2FtcGFpZ24ncy4gVGhhbmsgeW91IGZvciBzaG9wcGluZyB3aXRoIHVzLg==\r\n"
    )
}
