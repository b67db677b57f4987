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
}

fn parse_args() -> Args {
    let mut args = Args {
        members: 1_000_000,
        seed: 8,
        lifetimes: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--members" => {
                args.members = it.next().and_then(|v| v.parse().ok()).expect("--members N")
            }
            "--seed" => args.seed = it.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            "--skip-lifetimes" => args.lifetimes = false,
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

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let args = parse_args();
    let threads = rayon::current_num_threads();
    println!(
        "predict benchmark: {} members, seed {}, {} rayon threads",
        args.members, args.seed, threads
    );

    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut orders = Vec::new();
    let mut all_orders: Vec<Vec<DaySpend>> = Vec::with_capacity(args.members);
    for _ in 0..args.members {
        draw_member(&mut rng, &mut orders);
        all_orders.push(orders.clone());
    }
    let order_count: usize = all_orders.iter().map(Vec::len).sum();
    println!(
        "generated {order_count} orders in {:.2} s (not timed below)",
        seconds(started.elapsed())
    );

    let started = Instant::now();
    let histories: Vec<PurchaseHistory> = all_orders
        .iter()
        .filter_map(|o| PurchaseHistory::from_order_days(o, AS_OF, TimeUnit::Day))
        .collect();
    let built = started.elapsed();

    let started = Instant::now();
    let model =
        fit(&histories, AS_OF, TimeUnit::Day, &FitOptions::default()).expect("synthetic data fits");
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
    println!(
        "fitted BG/NBD r={:.4} alpha={:.3} a={:.4} b={:.4} ({} evaluations), true {TRUE_R} {TRUE_ALPHA_DAYS:.3} {TRUE_A} {TRUE_B}",
        bg.r, bg.alpha, bg.a, bg.b, model.purchases.evaluations
    );
    println!(
        "fitted Gamma-Gamma p={:.4} q={:.4} v={:.4} ({} evaluations), true {TRUE_P} {TRUE_Q} {TRUE_V}",
        gg.p, gg.q, gg.v, model.spend.evaluations
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
