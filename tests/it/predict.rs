//! Acceptance tests of the predict module (issue 8) on the CDNOW sample: the fit
//! reproduces the published BG/NBD and Gamma-Gamma parameters, and per-member
//! P(alive) and expected purchases agree with lifetimes' BetaGeoFitter.
//!
//! The CDNOW transactions and the reference numbers come from the PyPI package
//! `lifetimes`, run as a subprocess through $REKINDLE_PYTHON (default `python3`) with
//! scripts/requirements-predict.txt installed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use chrono::NaiveDate;
use rekindle::predict::{
    calibration_and_holdout, fit, BgNbdParams, DaySpend, FitOptions, FittedModel, GammaGammaParams,
    PurchaseHistory, TimeUnit,
};

fn python() -> String {
    std::env::var("REKINDLE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn reference_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/lifetimes_reference.py")
}

/// Runs the reference script with `args`, feeding `stdin`, and returns its stdout.
fn run_reference(args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new(python())
        .arg(reference_script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} (set REKINDLE_PYTHON): {e}", python()));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("write request");
    let out = child.wait_with_output().expect("reference script runs");
    assert!(
        out.status.success(),
        "lifetimes_reference.py {args:?} failed (pip install -r scripts/requirements-predict.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn day(date: &str) -> i32 {
    let d = NaiveDate::parse_from_str(date, "%Y%m%d").expect("date");
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    (d - epoch).num_days() as i32
}

/// CDNOW sample orders per customer.
fn cdnow_orders() -> BTreeMap<u32, Vec<DaySpend>> {
    let csv = run_reference(&["cdnow-transactions"], b"");
    let mut orders: BTreeMap<u32, Vec<DaySpend>> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 3, "{line}");
        let customer: u32 = fields[0].parse().expect("customer id");
        let dollars: f64 = fields[2].parse().expect("spend");
        orders.entry(customer).or_default().push(DaySpend {
            day: day(fields[1]),
            cents: (dollars * 100.0).round() as i64,
        });
    }
    orders
}

/// Calibration: 39 weeks from 1997-01-01, i.e. through 1997-09-30; holdout to 1998-06-30.
const CALIBRATION_END: &str = "19970930";
const HOLDOUT_END: &str = "19980630";

struct Cdnow {
    orders: BTreeMap<u32, Vec<DaySpend>>,
    histories: Vec<PurchaseHistory>,
    model: FittedModel,
}

/// Exported and fitted once, shared by the tests.
fn cdnow_fit() -> &'static Cdnow {
    static CDNOW: std::sync::OnceLock<Cdnow> = std::sync::OnceLock::new();
    CDNOW.get_or_init(export_and_fit)
}

fn export_and_fit() -> Cdnow {
    let started = std::time::Instant::now();
    let orders = cdnow_orders();
    let end = day(CALIBRATION_END);
    let histories: Vec<PurchaseHistory> = orders
        .values()
        .map(|o| {
            PurchaseHistory::from_order_days(o, end, TimeUnit::Week)
                .expect("every CDNOW customer buys in January-March 1997")
        })
        .collect();
    let exported = started.elapsed();
    let model = fit(&histories, end, TimeUnit::Week, &FitOptions::default()).expect("CDNOW fits");
    eprintln!(
        "CDNOW export {exported:?}, fit {:?}: {model:?}",
        started.elapsed() - exported
    );
    Cdnow {
        orders,
        histories,
        model,
    }
}

fn within(actual: f64, expected: f64, rel: f64) -> bool {
    (actual - expected).abs() <= rel * expected.abs()
}

#[test]
fn cdnow_fit_reproduces_published_parameters() {
    let c = cdnow_fit();
    assert_eq!(c.histories.len(), 2357);
    assert_eq!(c.model.purchases.repeat_buyers, 946);
    assert_eq!(c.model.spend.repeat_buyers, 946);
    let bg = c.model.purchases.params;
    let gg = c.model.spend.params;
    let published = [
        ("r", bg.r, 0.243),
        ("alpha", bg.alpha, 4.414),
        ("a", bg.a, 0.793),
        ("b", bg.b, 2.426),
        ("p", gg.p, 6.25),
        ("q", gg.q, 3.74),
        ("v", gg.v, 15.44),
    ];
    for (name, got, want) in published {
        assert!(within(got, want, 0.01), "{name} = {got}, published {want}");
    }
    // The paper's log-likelihood at the optimum is -9582.4.
    assert!(
        (c.model.purchases.log_likelihood - -9582.4).abs() < 1.0,
        "{}",
        c.model.purchases.log_likelihood
    );
}

#[test]
fn cdnow_predictions_match_lifetimes_to_1e6() {
    let c = cdnow_fit();
    let mut members: Vec<[f64; 3]> = c
        .histories
        .iter()
        .map(|h| [h.frequency, h.recency, h.age])
        .collect();
    // Edge cases beyond the data: x = 0, t_x = T, t_x = 0 with x > 0, huge T, large x.
    members.extend([
        [0.0, 0.0, 0.0],
        [0.0, 0.0, 5000.0],
        [4.0, 38.0, 38.0],
        [1.0, 0.0, 38.86],
        [3.0, 10.0, 1e4],
        [60.0, 77.0, 78.0],
        [25.0, 3.0, 78.0],
        [40.0, 5.0, 6.0],
        [300.0, 50.0, 60.0],
        [500.0, 590.0, 600.0],
    ]);
    let params = c.model.purchases.params;
    for t in [1.0, 39.0, 104.0] {
        let request = serde_json::json!({
            "params": {"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b},
            "t": t,
            "members": members,
        });
        let reply: serde_json::Value =
            serde_json::from_str(&run_reference(&["score"], request.to_string().as_bytes()))
                .expect("json reply");
        let column = |name: &str| -> Vec<f64> {
            reply[name]
                .as_array()
                .expect("array")
                .iter()
                .map(|v| v.as_f64().expect("number"))
                .collect()
        };
        let (p_alive, expected) = (column("p_alive"), column("expected"));
        assert_eq!(p_alive.len(), members.len());
        for (i, m) in members.iter().enumerate() {
            let h = PurchaseHistory {
                frequency: m[0],
                recency: m[1],
                age: m[2],
                mean_repeat_value: 0.0,
            };
            let ours = (params.p_alive(&h), params.expected_purchases(&h, t));
            assert!(
                agree(ours.0, p_alive[i]),
                "t={t} member {m:?}: p_alive {} vs lifetimes {}",
                ours.0,
                p_alive[i]
            );
            assert!(
                agree(ours.1, expected[i]),
                "t={t} member {m:?}: expected {} vs lifetimes {}",
                ours.1,
                expected[i]
            );
        }
    }
}

/// 1e-6 relative, or both below 1e-12 in absolute terms (lifetimes underflows to 0
/// where the log-space formulas keep a tiny positive value).
fn agree(ours: f64, theirs: f64) -> bool {
    (ours - theirs).abs() <= 1e-6 * theirs.abs() || (ours.abs() < 1e-12 && theirs.abs() < 1e-12)
}

#[test]
fn cdnow_holdout_check_tracks_actual_repeat_purchases() {
    let c = cdnow_fit();
    let (end, holdout_end) = (day(CALIBRATION_END), day(HOLDOUT_END));
    let members: Vec<(PurchaseHistory, u32)> = c
        .orders
        .values()
        .filter_map(|o| calibration_and_holdout(o, end, holdout_end, TimeUnit::Week))
        .collect();
    let check = c.model.holdout_check(&members, (holdout_end - end) as u32);
    assert_eq!(check.members, 2357);
    // Actual: distinct (customer, day) pairs after the calibration end, counted here
    // independently of purchases_between.
    let distinct: std::collections::HashSet<(u32, i32)> = c
        .orders
        .iter()
        .flat_map(|(id, o)| {
            o.iter()
                .filter(|d| d.day > end && d.day <= holdout_end)
                .map(move |d| (*id, d.day))
        })
        .collect();
    assert_eq!(check.actual_total, distinct.len() as u64);
    // The rows by calibration frequency add up to the totals.
    let rows: &[rekindle::predict::FrequencyRow] = &check.by_frequency;
    let members: usize = rows.iter().map(|r| r.members).sum();
    let expected: f64 = rows
        .iter()
        .map(|r| r.mean_expected * r.members as f64)
        .sum();
    let actual: f64 = rows.iter().map(|r| r.mean_actual * r.members as f64).sum();
    assert_eq!(members, 2357);
    assert!(
        (expected - check.expected_total).abs() < 1e-6
            && (actual - check.actual_total as f64).abs() < 1e-6
    );
    // The model tracks the holdout to within 15% in total (lifetimes gives the same
    // expectation, checked member by member above), and more past purchases mean
    // more expected future ones.
    let ratio = check.expected_total / check.actual_total as f64;
    assert!(
        (0.85..1.15).contains(&ratio),
        "expected {} vs actual {}",
        check.expected_total,
        check.actual_total
    );
    assert!(
        rows.windows(2)
            .all(|w| w[0].mean_expected < w[1].mean_expected),
        "{rows:?}"
    );
}

#[test]
fn fit_is_independent_of_member_order() {
    let c = cdnow_fit();
    let mut reversed = c.histories.clone();
    reversed.reverse();
    let again = fit(
        &reversed,
        c.model.as_of_day,
        TimeUnit::Week,
        &FitOptions::default(),
    )
    .expect("fits");
    let (a, b): (BgNbdParams, BgNbdParams) = (c.model.purchases.params, again.purchases.params);
    for (x, y) in [(a.r, b.r), (a.alpha, b.alpha), (a.a, b.a), (a.b, b.b)] {
        assert!(within(x, y, 1e-5), "{a:?} vs {b:?}");
    }
}

/// Members drawn from the models' generative process in continuous time, ages
/// uniform in (0, max_age) units.
fn simulate(
    members: usize,
    seed: u64,
    bg: BgNbdParams,
    gg: GammaGammaParams,
    max_age: f64,
) -> Vec<PurchaseHistory> {
    use rand::{Rng, SeedableRng};
    use rand_distr::{Beta, Distribution, Exp, Gamma};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rates = Gamma::new(bg.r, 1.0 / bg.alpha).expect("gamma");
    let dropouts = Beta::new(bg.a, bg.b).expect("beta");
    let nus = Gamma::new(gg.q, 1.0 / gg.v).expect("gamma");
    (0..members)
        .map(|_| {
            let (rate, dropout, nu) = (
                rates.sample(&mut rng),
                dropouts.sample(&mut rng),
                nus.sample(&mut rng),
            );
            let spend = Gamma::new(gg.p, 1.0 / nu).expect("gamma");
            let age = rng.random::<f64>() * max_age;
            let (mut t, mut x, mut last, mut total) = (0.0, 0u32, 0.0, 0.0);
            if rate > 0.0 {
                let gap = Exp::new(rate).expect("exp");
                loop {
                    t += gap.sample(&mut rng);
                    if t > age {
                        break;
                    }
                    x += 1;
                    last = t;
                    total += spend.sample(&mut rng);
                    if rng.random::<f64>() < dropout {
                        break;
                    }
                }
            }
            let mean = if x > 0 { total / f64::from(x) } else { 0.0 };
            PurchaseHistory {
                frequency: f64::from(x),
                recency: last,
                age,
                mean_repeat_value: mean,
            }
        })
        .collect()
}

#[test]
fn fit_recovers_simulated_parameters() {
    let cases = [
        (
            BgNbdParams {
                r: 0.243,
                alpha: 4.414,
                a: 0.793,
                b: 2.426,
            },
            GammaGammaParams {
                p: 6.25,
                q: 3.74,
                v: 15.44,
            },
            78.0,
        ),
        (
            BgNbdParams {
                r: 1.5,
                alpha: 40.0,
                a: 2.0,
                b: 6.0,
            },
            GammaGammaParams {
                p: 2.0,
                q: 5.0,
                v: 400.0,
            },
            730.0,
        ),
    ];
    for (seed, (bg, gg, max_age)) in cases.into_iter().enumerate() {
        let histories = simulate(50_000, seed as u64, bg, gg, max_age);
        let model =
            fit(&histories, 0, TimeUnit::Day, &FitOptions::default()).expect("simulated data fits");
        eprintln!("{model:?}");
        let (fb, fg) = (model.purchases.params, model.spend.params);
        let pairs = [
            (fb.r, bg.r),
            (fb.alpha, bg.alpha),
            (fb.a, bg.a),
            (fb.b, bg.b),
            (fg.p, gg.p),
            (fg.q, gg.q),
            (fg.v, gg.v),
        ];
        for (got, want) in pairs {
            assert!(within(got, want, 0.1), "{model:?} vs true {bg:?} {gg:?}");
        }
        assert!(
            model.purchases.evaluations < 200 && model.spend.evaluations < 200,
            "BFGS should converge: {model:?}"
        );
    }
}

#[test]
fn day_and_week_units_give_the_same_model() {
    let c = cdnow_fit();
    let end = day(CALIBRATION_END);
    let in_days: Vec<PurchaseHistory> = c
        .orders
        .values()
        .filter_map(|o| PurchaseHistory::from_order_days(o, end, TimeUnit::Day))
        .collect();
    let daily = fit(&in_days, end, TimeUnit::Day, &FitOptions::default()).expect("fits in days");
    let (w, d) = (c.model.purchases.params, daily.purchases.params);
    for (name, weekly, in_days) in [
        ("r", w.r, d.r),
        ("alpha", w.alpha * 7.0, d.alpha),
        ("a", w.a, d.a),
        ("b", w.b, d.b),
    ] {
        assert!(
            within(in_days, weekly, 1e-5),
            "{name}: {in_days} vs {weekly}"
        );
    }
    assert!(within(daily.spend.params.v, c.model.spend.params.v, 1e-9));
    // Same member, same horizon: same predictions whichever unit.
    let options = rekindle::predict::PredictOptions::default();
    for (weekly, daily_h) in c.histories.iter().zip(&in_days).take(200) {
        let (a, b) = (
            c.model.predict(weekly, &options),
            daily.predict(daily_h, &options),
        );
        assert!(
            within(b.p_alive, a.p_alive, 1e-4)
                && within(b.expected_purchases, a.expected_purchases, 1e-4),
            "{a:?} vs {b:?}"
        );
    }
}
