//! Benchmark of bundle-rule mining against pyfim and mlxtend on the same baskets.
//!
//! Reads an orders.csv (DATA.md), builds the transactions of one scope, mines
//! pair rules with rekindle (best of --repeat runs), then writes the same transactions
//! to a temp file and times pyfim (Borgelt's C code) and mlxtend through
//! scripts/bundles_reference.py, each on baskets already in memory. Prints times, ratios,
//! peak memory of each mining step, whether the rule sets agree, and the confidence of
//! the planted pairs when a planted_pairs.csv sits next to orders.csv.
//!
//!   cargo run --release --example bench_bundles -- ORDERS.csv [--scope basket|member]
//!       [--min-support 0.001] [--min-confidence 0.1] [--repeat 3] [--no-mlxtend]

use anyhow::{bail, Context, Result};
use clap::Parser;
use rekindle::bundles::{mine, AssocRule, MineParams, Transactions, TransactionsBuilder};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Time rekindle's rule mining against pyfim and mlxtend on one orders.csv")]
struct Args {
    /// orders.csv in the format of DATA.md
    orders: PathBuf,
    /// basket (one order) or member (all a member bought)
    #[arg(long, default_value = "basket")]
    scope: String,
    #[arg(long, default_value_t = 0.001)]
    min_support: f64,
    #[arg(long, default_value_t = 0.1)]
    min_confidence: f64,
    /// Also mine {A,B} -> C
    #[arg(long)]
    two_item_antecedents: bool,
    /// Runs per engine; the best time counts (mlxtend always runs once)
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Python with pyfim and mlxtend (scripts/requirements-bundles.txt)
    #[arg(long, env = "REKINDLE_PYTHON", default_value = "python3")]
    python: String,
    #[arg(long)]
    no_mlxtend: bool,
    /// Read the baskets from this rekindle store (every order line up to today) instead of
    /// the CSV; the CSV path is still where the reference engines' input goes.
    #[arg(long)]
    db: Option<PathBuf>,
    #[arg(long)]
    no_pyfim: bool,
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resets the peak-RSS mark so the next reading covers only what follows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn read_transactions(path: &Path, member_scope: bool) -> Result<Transactions> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("open {}", path.display()))?;
    let headers = reader.byte_headers()?.clone();
    let column = |name: &str| -> Result<usize> {
        headers
            .iter()
            .position(|h| h == name.as_bytes())
            .with_context(|| format!("{}: no column {name}", path.display()))
    };
    let key_col = column(if member_scope {
        "member_id"
    } else {
        "order_id"
    })?;
    let sku_col = column("sku")?;
    let mut builder = TransactionsBuilder::new();
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record)? {
        let key = std::str::from_utf8(record.get(key_col).unwrap_or_default())?;
        let sku = std::str::from_utf8(record.get(sku_col).unwrap_or_default())?;
        builder.add(key, sku)?;
    }
    Ok(builder.build())
}

struct Reference {
    mine_s: f64,
    load_s: f64,
    peak_mib: f64,
    rules: BTreeMap<String, (u32, f64, f64)>,
}

fn rule_key(antecedent: &[String], consequent: &str) -> String {
    format!("{}->{}", antecedent.join("+"), consequent)
}

fn run_reference(args: &Args, engine: &str, input: &Path, repeat: usize) -> Result<Reference> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bundles_reference.py");
    let output = input.with_extension(format!("{engine}.jsonl"));
    let out = Command::new(&args.python)
        .arg(&script)
        .args(["--engine", engine, "--input"])
        .arg(input)
        .arg("--output")
        .arg(&output)
        .args(["--min-support", &args.min_support.to_string()])
        .args(["--min-confidence", &args.min_confidence.to_string()])
        .args([
            "--max-antecedent",
            if args.two_item_antecedents { "2" } else { "1" },
        ])
        .args(["--repeat", &repeat.to_string()])
        .output()
        .with_context(|| format!("run {}", args.python))?;
    if !out.status.success() {
        bail!("{engine} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).context("summary JSON")?;
    let mut rules = BTreeMap::new();
    for line in std::fs::read_to_string(&output)?.lines() {
        let r: serde_json::Value = serde_json::from_str(line)?;
        let ante: Vec<String> = serde_json::from_value(r["antecedent"].clone())?;
        let cons = r["consequent"].as_str().unwrap_or_default();
        let count = r["count"].as_u64().unwrap_or_default() as u32;
        let conf = r["confidence"].as_f64().unwrap_or(f64::NAN);
        let lift = r["lift"].as_f64().unwrap_or(f64::NAN);
        rules.insert(rule_key(&ante, cons), (count, conf, lift));
    }
    let _ = std::fs::remove_file(&output);
    let num = |k: &str| summary[k].as_f64().unwrap_or(f64::NAN);
    Ok(Reference {
        mine_s: num("mine_s"),
        load_s: num("load_s"),
        peak_mib: num("peak_rss_mib"),
        rules,
    })
}

fn agreement(ours: &[AssocRule], theirs: &BTreeMap<String, (u32, f64, f64)>) -> String {
    if ours.len() != theirs.len() {
        return format!("DIFFERENT: {} vs {} rules", ours.len(), theirs.len());
    }
    let mut worst = 0.0f64;
    for r in ours {
        match theirs.get(&rule_key(&r.antecedent, &r.consequent)) {
            Some(&(count, conf, lift)) if count == r.count => {
                worst = worst
                    .max((conf - r.confidence).abs())
                    .max((lift - r.lift).abs());
            }
            _ => {
                return format!(
                    "DIFFERENT: rule {} differs",
                    rule_key(&r.antecedent, &r.consequent)
                )
            }
        }
    }
    format!("same {} rules, max |diff| {worst:.1e}", ours.len())
}

fn planted_report(orders: &Path, rules: &[AssocRule]) {
    let Some(path) = orders
        .parent()
        .map(|d| d.join("planted_pairs.csv"))
        .filter(|p| p.exists())
    else {
        return;
    };
    let Ok(mut reader) = csv::Reader::from_path(&path) else {
        return;
    };
    println!("\nplanted pairs ({}):", path.display());
    for rec in reader.records().flatten() {
        let (a, b) = (
            rec.get(0).unwrap_or_default(),
            rec.get(1).unwrap_or_default(),
        );
        match rules
            .iter()
            .find(|r| r.antecedent.len() == 1 && r.antecedent[0] == a && r.consequent == b)
        {
            Some(r) => println!(
                "  {a} -> {b}: confidence {:.6} ({}/{}), lift {:.3}",
                r.confidence, r.count, r.antecedent_count, r.lift
            ),
            None => println!("  {a} -> {b}: NOT FOUND"),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let member_scope = match args.scope.as_str() {
        "basket" => false,
        "member" => true,
        other => bail!("--scope must be basket or member, not {other}"),
    };
    let params = MineParams {
        min_support: args.min_support,
        min_confidence: args.min_confidence,
        min_lift: None,
        two_item_antecedents: args.two_item_antecedents,
    };
    println!("threads: {}", rayon::current_num_threads());

    let t0 = Instant::now();
    let tx = match &args.db {
        Some(db) => {
            let store = rekindle::store::Store::open(db, 256)?;
            let scope = if member_scope { rekindle::basket::Scope::Member } else { rekindle::basket::Scope::Basket };
            let today = rekindle::domain::day_of(chrono::Utc::now().timestamp());
            rekindle::basket::transactions(&store, scope, today, None)?
        }
        None => read_transactions(&args.orders, member_scope)?,
    };
    let load_s = t0.elapsed().as_secs_f64();
    let load_peak = peak_rss_mib();
    println!(
        "{}: {} transactions ({} scope), {} distinct (transaction, sku) entries, {} skus; read + build {load_s:.2} s, peak RSS {load_peak:.0} MiB",
        args.db.as_ref().map_or(args.orders.display().to_string(), |d| format!("store {}", d.display())),
        tx.len(),
        args.scope,
        tx.entry_count(),
        tx.item_names().len()
    );

    reset_peak_rss();
    let before = peak_rss_mib();
    let mut times = Vec::new();
    let mut rules = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        rules = mine(&tx, &params)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let mine_peak = peak_rss_mib();
    println!(
        "rekindle: {} rules in {best:.3} s (best of {:.3?} s), peak RSS {mine_peak:.0} MiB ({before:.0} MiB held before mining)",
        rules.len(),
        times
    );

    let input =
        std::env::temp_dir().join(format!("rekindle-bench-bundles-{}.tsv", std::process::id()));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input)?);
        for t in 0..tx.len() {
            let items: Vec<&str> = tx.item_names_of(t).collect();
            writeln!(f, "{}", items.join("\t"))?;
        }
        f.flush()?;
    }
    drop(tx);

    println!("\n| engine | rule induction | ratio vs rekindle | peak RSS during induction | baskets to memory | rules |");
    println!("|---|---|---|---|---|---|");
    println!("| rekindle | {best:.3} s | 1.0 | {mine_peak:.0} MiB | {load_s:.2} s (CSV read + build) | {} |", rules.len());
    let mut engines = Vec::new();
    if !args.no_pyfim {
        engines.push(("pyfim", args.repeat.max(1)));
    }
    if !args.no_mlxtend {
        engines.push(("mlxtend", 1));
    }
    let mut notes = Vec::new();
    for (engine, repeat) in engines {
        match run_reference(&args, engine, &input, repeat) {
            Ok(r) => {
                println!(
                    "| {engine} | {:.3} s | {:.1}x slower | {:.0} MiB | {:.2} s | {} |",
                    r.mine_s,
                    r.mine_s / best,
                    r.peak_mib,
                    r.load_s,
                    r.rules.len()
                );
                notes.push(format!(
                    "{engine} vs rekindle: {}",
                    agreement(&rules, &r.rules)
                ));
            }
            Err(e) => notes.push(format!("{engine}: {e:#}")),
        }
    }
    let _ = std::fs::remove_file(&input);
    for n in notes {
        println!("{n}");
    }
    planted_report(&args.orders, &rules);
    Ok(())
}
