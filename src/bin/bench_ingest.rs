//! Load test of the ingest API: order lines pushed as NDJSON over real HTTP on 127.0.0.1
//! by concurrent clients into a fresh store, then counted back from the store (no line
//! may be lost). In the same run, the same lines go through `import` (the CLI path, no
//! HTTP) into another fresh store, for the ratio.
//!
//!   cargo run --release --bin bench_ingest -- --orders DATA/orders.csv
//!       [--clients 4] [--batch 10000] [--limit 1000000]

use anyhow::{ensure, Context, Result};
use clap::Parser;
use rekindle::dispatch::Observers;
use rekindle::ingest::{import_file, ImportOptions};
use rekindle::plan::links::Links;
use rekindle::store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Push order lines through the ingest API and count them back")]
struct Args {
    /// An orders.csv (rekindle generate, or ../shared/bench/gen_data.py).
    #[arg(long)]
    orders: PathBuf,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Lines per request.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Use at most this many lines of the file.
    #[arg(long)]
    limit: Option<usize>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // the request bodies, built before the clock starts (the shop's side of the work)
    let mut reader = csv::Reader::from_path(&args.orders).with_context(|| format!("reading {}", args.orders.display()))?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let (mut body, mut in_body, mut lines) = (Vec::new(), 0, 0usize);
    for record in reader.records() {
        let record = record?;
        let obj: serde_json::Map<String, serde_json::Value> = header.iter().zip(record.iter()).map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_string()))).collect();
        serde_json::to_writer(&mut body, &obj)?;
        body.push(b'\n');
        in_body += 1;
        lines += 1;
        if in_body == args.batch {
            bodies.push(std::mem::take(&mut body));
            in_body = 0;
        }
        if args.limit.is_some_and(|l| lines >= l) {
            break;
        }
    }
    if in_body > 0 {
        bodies.push(body);
    }
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    println!("{lines} order lines in {} requests of up to {} lines ({:.1} MiB of NDJSON), {} clients", bodies.len(), args.batch, bytes as f64 / (1 << 20) as f64, args.clients);

    let work = tempfile::tempdir()?;
    let store = Store::open(&work.path().join("api.sled"), 256)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (port, sent_s) = runtime.block_on(async {
        let mut config = rekindle::config::Config::default();
        config.api.token = "bench".into();
        config.api.max_body_bytes = 64 << 20;
        let host = Arc::new(rekindle::plugin::ChannelHost::load(&Default::default(), &Default::default())?);
        let links = Links { public_url: String::new(), key: b"bench".to_vec() };
        let app = rekindle::api::router(rekindle::api::Api::new(store.clone(), links, &config.api_settings(), host, Observers::default(), None));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let queue = Arc::new(std::sync::Mutex::new(bodies));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..args.clients {
            let (client, queue) = (client.clone(), queue.clone());
            tasks.push(tokio::spawn(async move {
                let mut imported = 0u64;
                loop {
                    let Some(body) = queue.lock().unwrap().pop() else { return Ok::<u64, anyhow::Error>(imported) };
                    let answer = client.post(format!("http://127.0.0.1:{port}/api/ingest?kind=orders")).bearer_auth("bench").body(body).send().await?;
                    ensure!(answer.status().is_success(), "ingest answered {}", answer.status());
                    let summary: serde_json::Value = serde_json::from_slice(&answer.bytes().await?)?;
                    ensure!(summary["bad"] == 0, "bad lines: {summary}");
                    imported += summary["imported"].as_u64().unwrap_or(0);
                }
            }));
        }
        let mut imported = 0;
        for t in tasks {
            imported += t.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        ensure!(imported as usize == lines, "the API acknowledged {imported} of {lines} lines");
        Ok::<_, anyhow::Error>((port, secs))
    })?;
    let stored: usize = store.scan_histories().map(|h| h.map(|(_, h)| h.lines.len())).sum::<Result<usize, _>>()?;
    println!("api  : {lines} lines over HTTP (127.0.0.1:{port}) in {sent_s:.2} s = {:.0} lines/s; {stored} lines in the store", lines as f64 / sent_s);
    ensure!(stored == lines, "lost lines: sent {lines}, stored {stored}");

    // the same lines through the import command's path, for the ratio
    let csv_copy = work.path().join("orders.csv");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv_copy)?);
        let mut reader = csv::Reader::from_path(&args.orders)?;
        let mut out = csv::Writer::from_writer(&mut w);
        out.write_record(reader.headers()?)?;
        for record in reader.records().take(lines) {
            out.write_record(&record?)?;
        }
        out.flush()?;
    }
    let direct = Store::open(&work.path().join("cli.sled"), 256)?;
    let started = Instant::now();
    let s = import_file(&direct, &csv_copy, &ImportOptions { progress: false, ..Default::default() }, &mut |_| {})?;
    direct.flush()?;
    let cli_s = started.elapsed().as_secs_f64();
    println!("cli  : {} lines by `import` in {cli_s:.2} s = {:.0} lines/s", s.imported, s.imported as f64 / cli_s);
    println!("ratio: the API reaches {:.2} of the import command's rate", cli_s / sent_s);
    Ok(())
}
