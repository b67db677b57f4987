//! Mining checked against independent implementations on ~10k generated members.
//!
//! The test writes the transactions to a temp file and runs scripts/bundles_reference.py
//! under `REKINDLE_PYTHON` (default `python3`), which mines them with pyfim (Borgelt's C
//! code, `arules` in mode 'o') and with mlxtend (fpgrowth + association_rules). The rule
//! sets must be equal and every figure equal to 1e-9; counts exactly. A missing Python
//! package fails the test: it is a requirement (scripts/requirements-bundles.txt).
//! Also checked here, by brute force on the same data: the planted pairs and their
//! confidence, the offer index, and the audience ranking.

use super::mine::{mine_with, mined_order, offer_order, PairCounting};
use super::synth::{generate, Synth, PLANTED_RATE};
use super::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

const TOLERANCE: f64 = 1e-9;

fn data() -> &'static Synth {
    static DATA: OnceLock<Synth> = OnceLock::new();
    DATA.get_or_init(|| generate(10_000, 2_000, 20_261_124))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Basket,
    Member,
}

fn transactions(scope: Scope) -> Transactions {
    let mut b = TransactionsBuilder::new();
    for line in &data().lines {
        let key = match scope {
            Scope::Basket => &line.order,
            Scope::Member => &line.member,
        };
        b.add(key, &line.sku).expect("test data fits");
    }
    b.build()
}

fn python() -> String {
    std::env::var("REKINDLE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// A rule reduced to what the comparison needs, keyed by "A+B->C".
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct RefRule {
    antecedent: Vec<String>,
    consequent: String,
    count: u32,
    antecedent_count: u32,
    consequent_count: u32,
    support: f64,
    confidence: f64,
    lift: f64,
}

fn key(antecedent: &[String], consequent: &str) -> String {
    format!("{}->{}", antecedent.join("+"), consequent)
}

fn run_reference(engine: &str, tx: &Transactions, p: &MineParams) -> BTreeMap<String, RefRule> {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("transactions.tsv");
    let output = dir.path().join("rules.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).expect("create input"));
        for t in 0..tx.len() {
            let items: Vec<&str> = tx.item_names_of(t).collect();
            writeln!(f, "{}", items.join("\t")).expect("write input");
        }
        f.flush().expect("flush input");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bundles_reference.py");
    let mut cmd = Command::new(python());
    cmd.arg(&script)
        .args(["--engine", engine, "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .args(["--min-support", &p.min_support.to_string()])
        .args(["--min-confidence", &p.min_confidence.to_string()])
        .args([
            "--max-antecedent",
            if p.two_item_antecedents { "2" } else { "1" },
        ]);
    if let Some(l) = p.min_lift {
        cmd.args(["--min-lift", &l.to_string()]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (set REKINDLE_PYTHON): {e}", python()));
    assert!(
        out.status.success(),
        "{engine} reference failed (install scripts/requirements-bundles.txt into REKINDLE_PYTHON):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&output).expect("read reference rules");
    text.lines()
        .map(|l| {
            let r: RefRule = serde_json::from_str(l).expect("reference rule is JSON");
            (key(&r.antecedent, &r.consequent), r)
        })
        .collect()
}

fn assert_same_rules(ours: &[AssocRule], theirs: &BTreeMap<String, RefRule>, what: &str) {
    let ours_by_key: BTreeMap<String, &AssocRule> = ours
        .iter()
        .map(|r| (key(&r.antecedent, &r.consequent), r))
        .collect();
    assert_eq!(ours_by_key.len(), ours.len(), "{what}: duplicate rules");
    let missing: Vec<&String> = theirs
        .keys()
        .filter(|k| !ours_by_key.contains_key(*k))
        .take(10)
        .collect();
    let extra: Vec<&String> = ours_by_key
        .keys()
        .filter(|k| !theirs.contains_key(*k))
        .take(10)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}"
    );
    for (k, r) in &ours_by_key {
        let t = &theirs[k];
        assert_eq!(
            (r.count, r.antecedent_count, r.consequent_count),
            (t.count, t.antecedent_count, t.consequent_count),
            "{what}: counts of {k}"
        );
        for (name, a, b) in [
            ("support", r.support, t.support),
            ("confidence", r.confidence, t.confidence),
            ("lift", r.lift, t.lift),
        ] {
            assert!(
                (a - b).abs() <= TOLERANCE,
                "{what}: {name} of {k}: {a} vs {b}"
            );
        }
    }
}

fn check_against_references(scope: Scope, p: &MineParams, engines: &[&str], min_rules: usize) {
    let tx = transactions(scope);
    let ours = mine(&tx, p).expect("valid params");
    let what = format!("{scope:?} {p:?}");
    assert!(
        ours.len() >= min_rules,
        "{what}: only {} rules, the comparison would be weak",
        ours.len()
    );
    if p.two_item_antecedents {
        assert!(
            ours.iter().any(|r| r.antecedent.len() == 2),
            "{what}: no {{A,B}}->C rule to compare"
        );
    }
    let pairs = ours.iter().filter(|r| r.antecedent.len() == 1).count();
    eprintln!(
        "{what}: {} rules ({pairs} pairs), N = {}",
        ours.len(),
        tx.len()
    );
    assert!(
        ours.windows(2).all(|w| mined_order(&w[0], &w[1]).is_lt()),
        "{what}: not sorted"
    );
    for engine in engines {
        let theirs = run_reference(engine, &tx, p);
        assert_same_rules(&ours, &theirs, &format!("{what} vs {engine}"));
    }
}

fn params(min_support: f64, min_confidence: f64, min_lift: Option<f64>, two: bool) -> MineParams {
    MineParams {
        min_support,
        min_confidence,
        min_lift,
        two_item_antecedents: two,
    }
}

#[test]
fn basket_pairs_match_pyfim_and_mlxtend() {
    check_against_references(
        Scope::Basket,
        &params(0.0003, 0.02, None, false),
        &["pyfim", "mlxtend"],
        100,
    );
}

#[test]
fn basket_rules_with_two_item_antecedents_match_pyfim_and_mlxtend() {
    check_against_references(
        Scope::Basket,
        &params(0.0001, 0.05, None, true),
        &["pyfim", "mlxtend"],
        100,
    );
}

#[test]
fn member_pairs_match_pyfim_and_mlxtend() {
    check_against_references(
        Scope::Member,
        &params(0.003, 0.05, None, false),
        &["pyfim", "mlxtend"],
        100,
    );
}

#[test]
fn member_rules_with_two_item_antecedents_and_min_lift_match_pyfim() {
    check_against_references(
        Scope::Member,
        &params(0.003, 0.1, Some(1.2), true),
        &["pyfim"],
        100,
    );
}

/// count(X) by brute force over the transactions.
fn count_holding(tx: &Transactions, items: &[&str]) -> u32 {
    let ids: Vec<u32> = items
        .iter()
        .map(|i| tx.item_id(i).expect("item exists"))
        .collect();
    (0..tx.len())
        .filter(|&t| ids.iter().all(|i| tx.items(t).binary_search(i).is_ok()))
        .count() as u32
}

#[test]
fn planted_pairs_are_found_with_their_confidence() {
    for scope in [Scope::Basket, Scope::Member] {
        let tx = transactions(scope);
        let rules = mine(&tx, &params(0.001, 0.1, None, false)).expect("valid params");
        for (a, b) in &data().planted {
            let rule = rules
                .iter()
                .find(|r| r.antecedent == [a.clone()] && &r.consequent == b)
                .unwrap_or_else(|| panic!("{scope:?}: planted {a}->{b} not mined"));
            let (n_ab, n_a, n_b) = (
                count_holding(&tx, &[a, b]),
                count_holding(&tx, &[a]),
                count_holding(&tx, &[b]),
            );
            assert_eq!(
                (rule.count, rule.antecedent_count, rule.consequent_count),
                (n_ab, n_a, n_b)
            );
            assert!((rule.confidence - n_ab as f64 / n_a as f64).abs() <= TOLERANCE);
            if scope == Scope::Basket {
                // 30% planted plus B's own rate in baskets: at least 0.3 up to noise.
                let sigma = (PLANTED_RATE * (1.0 - PLANTED_RATE) / n_a as f64).sqrt();
                let background = n_b as f64 / tx.len() as f64;
                assert!(
                    rule.confidence > PLANTED_RATE - 4.0 * sigma
                        && rule.confidence < PLANTED_RATE + 2.0 * background + 4.0 * sigma,
                    "{a}->{b}: confidence {} from {n_ab}/{n_a}",
                    rule.confidence
                );
                assert!(rule.lift > 2.0, "{a}->{b}: lift {}", rule.lift);
            } else {
                // A member who bought A bought B with it at least 30% of the time once.
                assert!(
                    rule.confidence > PLANTED_RATE - 0.05,
                    "{a}->{b}: {}",
                    rule.confidence
                );
            }
        }
    }
}

#[test]
fn every_pair_counting_strategy_gives_the_same_rules() {
    for scope in [Scope::Basket, Scope::Member] {
        let tx = transactions(scope);
        let p = params(0.0002, 0.01, None, false);
        let rules = mine(&tx, &p).expect("valid params");
        assert!(rules.len() > 1000, "{scope:?}: {} rules", rules.len());
        for strategy in [
            PairCounting::Matrix,
            PairCounting::ScannedRows,
            PairCounting::TrackedRows,
        ] {
            assert_eq!(
                mine_with(&tx, &p, Some(strategy)).as_ref(),
                Ok(&rules),
                "{scope:?} {strategy:?}"
            );
        }
    }
}

#[test]
fn mining_is_deterministic() {
    let tx = transactions(Scope::Member);
    let p = params(0.003, 0.05, None, true);
    assert_eq!(mine(&tx, &p), mine(&tx, &p));
}

#[test]
fn offers_match_a_brute_force_scan() {
    let tx = transactions(Scope::Member);
    let rules = mine(&tx, &params(0.003, 0.05, None, true)).expect("valid params");
    let mut ranked = rules.clone();
    ranked.sort_by(offer_order);
    let index = OfferIndex::new(rules);
    let out_of_stock: HashSet<&str> = data()
        .planted
        .iter()
        .take(3)
        .map(|(_, b)| b.as_str())
        .collect();
    let mut offered = 0;
    for t in (0..tx.len()).step_by(7) {
        let bought: HashSet<&str> = tx.item_names_of(t).collect();
        let expected = ranked.iter().find(|r| {
            r.antecedent.iter().all(|a| bought.contains(a.as_str()))
                && !bought.contains(r.consequent.as_str())
                && !out_of_stock.contains(r.consequent.as_str())
        });
        let got = index.best_offer(bought.iter().copied(), |s| out_of_stock.contains(s));
        assert_eq!(got, expected, "member {}", tx.key(t));
        offered += usize::from(got.is_some());
    }
    assert!(offered > 100, "only {offered} members got an offer");
}

#[test]
fn audience_matches_a_brute_force_ranking() {
    let tx = transactions(Scope::Member);
    let rules = mine(&tx, &params(0.003, 0.05, None, true)).expect("valid params");
    let target = data().planted[0].1.clone();
    let index = OfferIndex::new(rules.clone());
    let got = audience(
        &tx,
        &index,
        &target,
        &AudienceParams {
            top: Some(200),
            min_score: 0.0,
        },
    );

    // Brute force: per member without the target, the max (confidence, lift) over the
    // rules to the target that apply, then rank by it and by member id.
    let mut expected: Vec<(f64, f64, String)> = Vec::new();
    for t in 0..tx.len() {
        let bought: HashSet<&str> = tx.item_names_of(t).collect();
        if bought.contains(target.as_str()) {
            continue;
        }
        let best = rules
            .iter()
            .filter(|r| {
                r.consequent == target && r.antecedent.iter().all(|a| bought.contains(a.as_str()))
            })
            .map(|r| (r.confidence, r.lift))
            .max_by(|x, y| x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1)));
        if let Some((c, l)) = best {
            expected.push((c, l, tx.key(t).to_owned()));
        }
    }
    expected.sort_by(|x, y| {
        y.0.total_cmp(&x.0)
            .then(y.1.total_cmp(&x.1))
            .then(x.2.cmp(&y.2))
    });
    expected.truncate(200);
    assert_eq!(got.len(), expected.len());
    assert!(
        got.len() == 200,
        "audience too small for a meaningful check: {}",
        got.len()
    );
    let got_rows: Vec<(f64, f64, String)> = got
        .iter()
        .map(|m| (m.score, m.lift, m.member.clone()))
        .collect();
    assert_eq!(got_rows, expected);
    let by_member: HashMap<&str, usize> = (0..tx.len()).map(|t| (tx.key(t), t)).collect();
    for m in &got {
        let r = &index.rules()[m.rule];
        assert_eq!(r.consequent, target);
        let t = by_member[m.member.as_str()];
        assert!(r
            .antecedent
            .iter()
            .all(|a| tx.item_names_of(t).any(|i| i == a)));
    }
}
