//! Benchmark of the predict module: fit BG/NBD + Gamma-Gamma and score every member
//! of a large synthetic population, then time lifetimes (Python) doing the same on
//! the same members in the same run and print the ratio.
//!
//! Members are drawn from the models' own generative process with a fixed seed:
//! λ ~ Gamma(r, 1/alpha) purchases per day, dropout p ~ Beta(a, b) after each repeat purchase,
//! spend per purchase Gamma(p, ν) with ν ~ Gamma(q, 1/v); first purchases uniform over
//! the two years before the as-of day. Purchases become order days, so the histories
//! go through `PurchaseHistory::from_order_days` like real ones.
//!
//! cargo bench --bench predict -- [--members N] [--seed S] [--skip-lifetimes]
//!     [--orders orders.csv --as-of YYYY-MM-DD]   (read a generated data set instead)
//! (lifetimes runs through $REKINDLE_PYTHON, default python3)

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Exp, Gamma};
use rekindle::predict::{fit, DaySpend, FitOptions, PredictOptions, PurchaseHistory, TimeUnit};

/// The true parameters, per day and in currency units (CDNOW's, with alpha in days).
const TRUE_R: f64 = 0.243;
const TRUE_ALPHA_DAYS: f64 = 4.414 * 7.0;
const TRUE_A: f64 = 0.793;
const TRUE_B: f64 = 2.426;
const TRUE_P: f64 = 6.25;
const TRUE_Q: f64 = 3.74;
const TRUE_V: f64 = 15.44;
const AS_OF: i32 = 20_000;
const COHORT_DAYS: i32 = 730;
const HORIZON_DAYS: u32 = 90;

struct Args {
    members: usize,
    seed: u64,
    lifetimes: bool,
    /// An orders.csv (docs' data contract) to read instead of drawing members.
    orders_csv: Option<PathBuf>,
    as_of: i32,
}

fn parse_args() -> Args {
    let mut args = Args {
        members: 1_000_000,
        seed: 8,
        lifetimes: true,
        orders_csv: None,
        as_of: AS_OF,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--members" => {
                args.members = it.next().and_then(|v| v.parse().ok()).expect("--members N")
            }
            "--seed" => args.seed = it.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            "--skip-lifetimes" => args.lifetimes = false,
            "--orders" => args.orders_csv = Some(PathBuf::from(it.next().expect("--orders PATH"))),
            "--as-of" => {
                args.as_of = it
                    .next()
                    .as_deref()
                    .and_then(day_of)
                    .expect("--as-of YYYY-MM-DD")
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// One member's order days drawn from the BG/NBD + Gamma-Gamma process.
fn draw_member(rng: &mut StdRng, orders: &mut Vec<DaySpend>) {
    let rate = Gamma::new(TRUE_R, 1.0 / TRUE_ALPHA_DAYS)
        .expect("valid gamma")
        .sample(rng);
    let dropout = Beta::new(TRUE_A, TRUE_B).expect("valid beta").sample(rng);
    let nu = Gamma::new(TRUE_Q, 1.0 / TRUE_V)
        .expect("valid gamma")
        .sample(rng);
    let spend = Gamma::new(TRUE_P, 1.0 / nu).expect("valid gamma");
    let first = AS_OF - rng.random_range(0..COHORT_DAYS);
    let age = f64::from(AS_OF - first);
    orders.clear();
    orders.push(DaySpend {
        day: first,
        cents: (spend.sample(rng) * 100.0).round() as i64,
    });
    // Alive until a dropout, which can only follow a repeat purchase.
    let mut t = 0.0;
    if rate <= 0.0 {
        return;
    }
    let gap = Exp::new(rate).expect("positive rate");
    loop {
        t += gap.sample(rng);
        if t >= age + 1.0 {
            break;
        }
        orders.push(DaySpend {
            day: first + t as i32,
            cents: (spend.sample(rng) * 100.0).round() as i64,
        });
        if rng.random::<f64>() < dropout {
            break;
        }
    }
}

/// Days since 1970-01-01 of the date that `text` starts with (YYYY-MM-DD).
fn day_of(text: &str) -> Option<i32> {
    let date = chrono::NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    Some((date - epoch).num_days() as i32)
}

/// Decimal text with up to 2 places (unit_price) in cents.
fn cents_of(text: &str) -> Option<i64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let frac = format!("{:0<2}", frac);
    Some(whole.parse::<i64>().ok()? * 100 + frac.get(..2)?.parse::<i64>().ok()?)
}

/// Order lines of an orders.csv grouped by member, each line as (UTC day,
/// unit_price x qty x (1 - discount_pct/100) rounded half away from zero).
fn read_orders(path: &std::path::Path) -> Vec<Vec<DaySpend>> {
    let mut reader = csv::Reader::from_path(path).expect("open orders.csv");
    let headers = reader.headers().expect("header row").clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let (member, ts, price, qty) = (
        column("member_id"),
        column("ts"),
        column("unit_price"),
        column("qty"),
    );
    let discount = headers.iter().position(|h| h == "discount_pct");
    let mut by_member: rustc_hash::FxHashMap<String, Vec<DaySpend>> = Default::default();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).expect("read orders.csv") {
        let (Some(day), Some(unit_cents), Ok(qty)) = (
            day_of(&record[ts]),
            cents_of(&record[price]),
            record[qty].parse::<i64>(),
        ) else {
            continue;
        };
        let pct: f64 = discount.and_then(|d| record[d].parse().ok()).unwrap_or(0.0);
        let cents = (unit_cents as f64 * qty as f64 * (1.0 - pct / 100.0)).round() as i64;
        by_member
            .entry(record[member].to_string())
            .or_default()
            .push(DaySpend { day, cents });
    }
    by_member.into_values().collect()
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let args = parse_args();
    let threads = rayon::current_num_threads();
    let started = Instant::now();
    let all_orders: Vec<Vec<DaySpend>> = match &args.orders_csv {
        Some(path) => {
            println!(
                "predict benchmark: orders from {}, as of day {}, {threads} rayon threads",
                path.display(),
                args.as_of
            );
            read_orders(path)
        }
        None => {
            println!(
                "predict benchmark: {} members drawn with seed {}, {threads} rayon threads",
                args.members, args.seed
            );
            let mut rng = StdRng::seed_from_u64(args.seed);
            let mut orders = Vec::new();
            (0..args.members)
                .map(|_| {
                    draw_member(&mut rng, &mut orders);
                    orders.clone()
                })
                .collect()
        }
    };
    let order_count: usize = all_orders.iter().map(Vec::len).sum();
    println!(
        "{} members with {order_count} order lines ready in {:.2} s (not timed below)",
        all_orders.len(),
        seconds(started.elapsed())
    );

    let started = Instant::now();
    let histories: Vec<PurchaseHistory> = all_orders
        .iter()
        .filter_map(|o| PurchaseHistory::from_order_days(o, args.as_of, TimeUnit::Day))
        .collect();
    let built = started.elapsed();

    let started = Instant::now();
    let model = fit(
        &histories,
        args.as_of,
        TimeUnit::Day,
        &FitOptions::default(),
    )
    .expect("the data fits");
    let fitted = started.elapsed();

    let started = Instant::now();
    let options = PredictOptions {
        horizon_days: HORIZON_DAYS,
        ..PredictOptions::default()
    };
    let predictions = model.predict_all(&histories, &options);
    let scored = started.elapsed();

    println!(
        "members {}, repeat buyers {} (Gamma-Gamma uses {})",
        model.purchases.members, model.purchases.repeat_buyers, model.spend.repeat_buyers
    );
    let bg = model.purchases.params;
    let gg = model.spend.params;
    let drawn = args.orders_csv.is_none();
    let truth = |text: String| {
        if drawn {
            format!(", true {text}")
        } else {
            String::new()
        }
    };
    println!(
        "fitted BG/NBD r={:.4} alpha={:.3} a={:.4} b={:.4} ({} evaluations){}",
        bg.r,
        bg.alpha,
        bg.a,
        bg.b,
        model.purchases.evaluations,
        truth(format!("{TRUE_R} {TRUE_ALPHA_DAYS:.3} {TRUE_A} {TRUE_B}"))
    );
    println!(
        "fitted Gamma-Gamma p={:.4} q={:.4} v={:.4} ({} evaluations){}",
        gg.p,
        gg.q,
        gg.v,
        model.spend.evaluations,
        truth(format!("{TRUE_P} {TRUE_Q} {TRUE_V}"))
    );
    let p_alive_sum: f64 = predictions.iter().map(|p| p.p_alive).sum();
    let expected_sum: f64 = predictions.iter().map(|p| p.expected_purchases).sum();
    let value_sum: i64 = predictions.iter().map(|p| p.predicted_value_cents).sum();
    println!("checksums: sum p_alive {p_alive_sum:.3}, sum expected purchases {expected_sum:.3}, sum value {:.2}", value_sum as f64 / 100.0);
    let rust_total = fitted + scored;
    println!(
        "rekindle: histories {:.3} s, fit {:.3} s, score {:.3} s, fit+score {:.3} s",
        seconds(built),
        seconds(fitted),
        seconds(scored),
        seconds(rust_total)
    );

    if !args.lifetimes {
        return;
    }
    let summary = write_summary(&histories);
    let python = std::env::var("REKINDLE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/lifetimes_reference.py");
    let out = Command::new(&python)
        .arg(script)
        .arg("fit-score")
        .arg(summary.path())
        .arg(HORIZON_DAYS.to_string())
        .output()
        .expect("start python");
    if !out.status.success() {
        eprintln!("lifetimes failed: {}", String::from_utf8_lossy(&out.stderr));
        std::process::exit(1);
    }
    let reply: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("json from lifetimes");
    let field = |k: &str| reply[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "lifetimes: fit BG/NBD {:.3} s, fit Gamma-Gamma {:.3} s, score {:.3} s, fit+score {:.3} s",
        field("fit_bgnbd_s"),
        field("fit_gamma_gamma_s"),
        field("score_s"),
        field("total_s")
    );
    println!(
        "lifetimes params: {} {}",
        reply["bgnbd"], reply["gamma_gamma"]
    );
    println!("lifetimes checksums: {}", reply["checksum"]);
    println!(
        "ratio lifetimes / rekindle (fit+score): {:.1}x",
        field("total_s") / seconds(rust_total)
    );
}

/// The histories as lifetimes' summary columns, in a temp file.
fn write_summary(histories: &[PurchaseHistory]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    {
        let mut w = std::io::BufWriter::new(file.as_file_mut());
        writeln!(w, "frequency,recency,T,monetary_value").expect("write");
        for h in histories {
            writeln!(
                w,
                "{},{},{},{}",
                h.frequency, h.recency, h.age, h.mean_repeat_value
            )
            .expect("write");
        }
        w.flush().expect("flush");
    }
    file
}
