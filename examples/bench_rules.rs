//! Benchmark of rule evaluation: every rule in a folder over a store's whole member base,
//! including the population cut points (RFM, price tiers), then the full plan (consent,
//! caps, holdout, priority, offers) of all of them firing together. Optionally runs DuckDB
//! on the same CSV data for the sleeping win-back audience, in the same run, and checks
//! both counted the same members.
//!
//!   cargo run --release --example bench_rules -- --db STORE --rules rules --as-of 2026-11-01
//!       [--repeat 5] [--duckdb DATA_DIR --python .venv/bin/python]

use anyhow::{Context, Result};
use clap::Parser;
use rekindle::config::Config;
use rekindle::domain::{parse_date, Day};
use rekindle::plan::{plan, MemberBase, Profiles};
use rekindle::rules::{ChannelNames, Rule};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Time the evaluation of every rule over the whole member base")]
struct Args {
    #[arg(long)]
    db: PathBuf,
    #[arg(long, default_value = "rules")]
    rules: PathBuf,
    #[arg(long, value_parser = parse_date)]
    as_of: Day,
    /// Timed repetitions; the median and the best are reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Also answer the sleeping win-back audience with DuckDB from the CSVs in this folder.
    #[arg(long)]
    duckdb: Option<PathBuf>,
    #[arg(long, default_value = "python3")]
    python: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let config = Config::default();
    let set = rekindle::rules::load(&args.rules, &ChannelNames { configured: vec![] })?;
    anyhow::ensure!(set.errors() == 0, "the rules have errors; run `rekindle rules check`");
    let rules: Vec<&Rule> = set.rules.iter().collect();
    let store = rekindle::store::Store::open(&args.db, 256)?;
    let t = Instant::now();
    let mut base = MemberBase::load(&store, Default::default(), rules.iter().any(|r| r.audience.uses_events()), &|_| {})?;
    // as the shipped config.toml declares the shop's inbox
    base.consent.by_channel.insert("shop".into(), rekindle::domain::Consent::None);
    let load_s = t.elapsed().as_secs_f64();
    let events = base.events.len();
    println!("member base: {} members, {} events loaded in {load_s:.2} s (once per daemon start)", base.len(), events);
    let settings = config.plan_settings(b"bench".to_vec());
    let now = i64::from(args.as_of) * 86_400 + 12 * 3600;

    let (mut profile_t, mut audience_t, mut plan_t, mut sleeping_t) = (vec![], vec![], vec![], vec![]);
    let mut sizes: Vec<(String, usize)> = Vec::new();
    let mut sleeping_count = 0;
    // the daemon keeps its profile buffer from run to run; so does the benchmark
    let mut profiles = Profiles::compute(&base, args.as_of, &settings, rekindle::plan::Extras::of(&rules));
    for _ in 0..args.repeat {
        let t = Instant::now();
        profiles.recompute(&base, args.as_of, &settings);
        profile_t.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        sizes = rules.iter().zip(base.audiences(&rules, &profiles)).map(|(r, a)| (r.id.clone(), a.len())).collect();
        audience_t.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let plans = plan(&base, &profiles, &rules, now, &settings);
        plan_t.push(t.elapsed().as_secs_f64());
        std::hint::black_box(&plans);
        if let Some(r) = rules.iter().find(|r| r.id == "sleeping-winback") {
            let t = Instant::now();
            profiles.recompute(&base, args.as_of, &settings);
            sleeping_count = base.audience(r, &profiles).len();
            sleeping_t.push(t.elapsed().as_secs_f64());
        }
    }
    for (id, n) in &sizes {
        println!("  {id:<26} {n:>9} matched");
    }
    let (p, a, pl) = (median(profile_t.clone()), median(audience_t.clone()), median(plan_t.clone()));
    println!("profiles + cut points       median {p:.3} s");
    println!("all {} audiences            median {a:.3} s", rules.len());
    println!("evaluate all rules          median {:.3} s (profiles, cut points and every audience)", p + a);
    println!("plan all rules together     median {pl:.3} s (audiences, consent, caps, holdout, priority, offers)");
    if !sleeping_t.is_empty() {
        let s = median(sleeping_t);
        println!("sleeping win-back alone     median {s:.3} s ({sleeping_count} members, profiles included)");
        if let Some(data) = &args.duckdb {
            let out = Command::new(&args.python)
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_rules_duckdb.py"))
                .arg(data)
                .arg(rekindle::domain::DayFmt(args.as_of).to_string())
                .output()
                .context("running scripts/bench_rules_duckdb.py")?;
            anyhow::ensure!(out.status.success(), "duckdb: {}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8_lossy(&out.stdout);
            println!("duckdb: {}", text.trim());
            let field = |k: &str| text.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.parse::<f64>().ok());
            if let (Some(q), Some(n)) = (field("audience_s="), field("audience=")) {
                println!("ratio: duckdb {q:.3} s / rekindle {s:.3} s = {:.1}x; same members: {}", q / s, n as usize == sleeping_count);
            }
        }
    }
    Ok(())
}
