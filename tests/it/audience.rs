//! Audiences against an independent computation: every rule of
//! tests/it/fixtures/audience-rules is previewed by the real binary (`rules preview
//! --format csv`) on about 10k generated members at two as-of days, and its matched
//! members must equal, id for id, what tests/crosscheck/audience.py computes from the
//! same CSV files with the same conditions written again in plain Python.

use crate::support::{import, open_store, python, repo_path};
use rekindle::generate::{generate, GenerateOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// "Now" at the end of the generated data, and a day in the middle (later orders and
/// events must not count).
const AS_OF: [&str; 2] = ["2026-11-01", "2026-02-14"];

/// Hand-made rows appended to the generated files for what the generator never writes:
/// cities in ASCII of mixed case, email consent without an address, upper-case gender,
/// an order whose lines straddle midnight UTC (its day is its earliest line's), times
/// with an offset, an order after both as-of days, a favorite followed by buying the
/// same sku on the same day (so not "without buying") or bought only before it (still
/// "without buying"), and events of a member known only from them (a bare member).
const EDGE_MEMBERS: &str = "\
edge-01,Ann,,+8613900000001,F,1990,Hangzhou,2025-01-01T00:00:00Z,true,true,
edge-02,Bob,edge-02@example.com,,M,,HANGZHOU,,true,false,
edge-03,Cai,edge-03@example.com,+8613900000003,,1985,hangzhou,,false,true,
edge-04,Dee,,,f,1970,杭州,,1,0,Asia/Hong_Kong
";
const EDGE_ORDERS: &str = "\
eo-01,edge-01,2026-10-14T23:59:59Z,sku01644,cat09,brand061,100.00,1,0
eo-01,edge-01,2026-10-15T00:00:01Z,sku00001,cat27,brand040,59.90,2,10
eo-02,edge-01,2026-10-05T12:00:00Z,sku00604,cat37,brand145,59.90,1,0
eo-03,edge-02,2026-02-15T01:00:00+08:00,sku01644,cat09,brand061,120.00,3,0
eo-04,edge-02,2026-10-10T08:00:00Z,sku02507,cat09,brand061,80.00,1,20
eo-05,edge-02,2026-11-02T00:00:00Z,sku00604,cat37,brand145,999.00,1,0
eo-06,edge-03,2025-06-01T10:00:00Z,sku01644,cat09,brand061,45.50,1,50
eo-07,edge-03,2026-11-02T00:00:01Z,sku01644,cat09,brand061,45.50,1,0
eo-07,edge-03,2026-11-01T23:59:59Z,sku00001,cat27,brand040,85.20,1,0
";
const EDGE_EVENTS: &str = "\
edge-01,2026-10-05T10:00:00Z,favorite,sku00604,app
edge-02,2026-10-20T10:00:00Z,favorite,sku02507,app
edge-02,2026-10-28T07:30:00+08:00,cart,sku03000,mobile
edge-03,2026-02-10T23:30:00Z,view,sku01644,pc
edge-bare,2026-10-30T09:00:00Z,cart,sku01644,shop
edge-bare,2026-02-14T20:00:00Z,favorite,sku00604,shop
";

struct World {
    dir: tempfile::TempDir,
    data: PathBuf,
    store: PathBuf,
    config: PathBuf,
}

/// Imports the four files of `dir/data`, closes the store (the binary opens it next)
/// and writes a config whose rules_dir is the fixture folder.
fn world(dir: tempfile::TempDir) -> World {
    let data = dir.path().join("data");
    let store = open_store(dir.path());
    for f in ["members.csv", "products.csv", "orders.csv", "events.csv"] {
        let (s, bad) = import(&store, &data.join(f));
        assert!(bad.is_empty() && s.bad == 0, "{f}: bad rows {bad:?}");
    }
    drop(store);
    let config = write_config(dir.path());
    World { store: dir.path().join("store"), data, config, dir }
}

fn append(path: &Path, rows: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(rows.as_bytes()).unwrap();
}

fn write_config(dir: &Path) -> PathBuf {
    let config = dir.join("config.toml");
    let rules = repo_path("tests/it/fixtures/audience-rules");
    std::fs::write(&config, format!("[campaigns]\nrules_dir = {:?}\n", rules.display().to_string())).unwrap();
    config
}

fn rekindle(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rekindle")).arg("--config").arg(config).args(args).output().expect("run rekindle")
}

/// The ids of the fixture rules, from their file names.
fn rule_ids() -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(repo_path("tests/it/fixtures/audience-rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// The matched member ids of `rules preview --format csv`, sorted.
fn preview(w: &World, rule: &str, as_of: &str) -> Vec<String> {
    let db = w.store.to_string_lossy();
    let out = rekindle(&w.config, &["--db", &db, "rules", "preview", rule, "--as-of", as_of, "--format", "csv"]);
    assert!(out.status.success(), "preview {rule} as of {as_of}: {}", String::from_utf8_lossy(&out.stderr));
    let mut rdr = csv::Reader::from_reader(out.stdout.as_slice());
    let col = rdr.headers().unwrap().iter().position(|h| h == "member_id").expect("a member_id column");
    let mut ids: Vec<String> = rdr.records().map(|r| r.unwrap()[col].to_string()).collect();
    ids.sort();
    ids
}

/// What audience.py computes for every rule as of a day.
fn independent(w: &World, as_of: &str) -> BTreeMap<String, Vec<String>> {
    let out_path = w.dir.path().join(format!("audience-{as_of}.json"));
    let run = python().arg(repo_path("tests/crosscheck/audience.py")).arg(&w.data).arg(as_of).arg(&out_path).output().expect("run python3");
    assert!(run.status.success(), "audience.py as of {as_of} failed:\n{}", String::from_utf8_lossy(&run.stderr));
    serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap()
}

/// Compares every rule as of a day; returns audience.py's sets and one line per
/// rule whose sets differ, naming the first ids found on only one side.
fn compare(w: &World, as_of: &str) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let want = independent(w, as_of);
    let rules = rule_ids();
    assert_eq!(want.keys().cloned().collect::<Vec<_>>(), rules, "audience.py and the fixture folder name the same rules");
    let mut problems = Vec::new();
    for rule in &rules {
        let got = preview(w, rule, as_of);
        let expected = &want[rule];
        println!("{as_of} {rule:<24} rekindle {:>5}  audience.py {:>5}", got.len(), expected.len());
        if &got != expected {
            let only = |a: &[String], b: &[String]| -> Vec<String> { a.iter().filter(|id| b.binary_search(id).is_err()).take(8).cloned().collect() };
            problems.push(format!("{rule} as of {as_of}: only rekindle {:?}, only audience.py {:?}", only(&got, expected), only(expected, &got)));
        }
    }
    (want, problems)
}

#[test]
fn audiences_match_an_independent_computation_on_10k_members() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let summary = generate(&data, &GenerateOptions { members: 10_000, ..Default::default() }).expect("generate sample data");
    for (file, rows) in [("members.csv", EDGE_MEMBERS), ("orders.csv", EDGE_ORDERS), ("events.csv", EDGE_EVENTS)] {
        append(&data.join(file), rows);
    }
    let w = world(dir);
    assert!(rule_ids().len() >= 8);
    // the generated members, the four edge members and the bare one
    let members = summary.members + 5;
    let mut problems = Vec::new();
    for as_of in AS_OF {
        let (want, p) = compare(&w, as_of);
        problems.extend(p);
        for (rule, ids) in &want {
            // a rule that matches nobody or nearly everybody tests little
            assert!(ids.len() >= 50 && ids.len() <= members * 9 / 10, "{rule} as of {as_of}: {} of {members}", ids.len());
        }
    }
    assert!(problems.is_empty(), "audiences differ:\n{}", problems.join("\n"));
}

#[test]
fn the_edge_rows_are_judged_alike_and_reach_the_rules_that_look_at_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let products = "sku01644,A,cat09,brand061,100.00,,true\nsku00604,B,cat37,brand145,59.90,,true\nsku02507,C,cat09,brand061,80.00,,true\n";
    for (file, header, rows) in [
        ("members.csv", "member_id,name,email,phone,gender,birth_year,city,signup_ts,opted_in_email,opted_in_sms,tz", EDGE_MEMBERS),
        ("orders.csv", "order_id,member_id,ts,sku,category,brand,unit_price,qty,discount_pct", EDGE_ORDERS),
        ("events.csv", "member_id,ts,kind,sku,channel", EDGE_EVENTS),
        ("products.csv", "sku,name,category,brand,price,url,in_stock", products),
    ] {
        std::fs::write(data.join(file), format!("{header}\n{rows}")).unwrap();
    }
    let w = world(dir);
    let (late, mut problems) = compare(&w, AS_OF[0]);
    let (early, p) = compare(&w, AS_OF[1]);
    problems.extend(p);
    assert!(problems.is_empty(), "audiences differ:\n{}", problems.join("\n"));
    // guards the edge rows themselves: were they to lose their point, the big test would still pass
    let has = |sets: &BTreeMap<String, Vec<String>>, rule: &str, id: &str| sets[rule].iter().any(|x| x == id);
    // HANGZHOU with an address and consent; Hangzhou without an address is not reachable
    assert_eq!(late["taste-and-place"], ["edge-02"]);
    // the order at 01:00+08:00 on Feb 15 is a Feb 14 order in UTC, so it counts on Feb 14
    assert_eq!(early["taste-and-place"], ["edge-02"]);
    // Hangzhou / hangzhou without usable email consent; the bare member is a prospect
    for id in ["edge-01", "edge-03", "edge-bare"] {
        assert!(has(&late, "nested-prospects", id), "{id}");
    }
    // edge-01 bought what it favorited on the same day; edge-02 only before it
    assert_eq!(late["favorited-carted"], ["edge-02", "edge-bare"]);
    // eo-07's sku01644 line is dated Nov 2 but the order is a Nov 1 order (its earliest line)
    assert_eq!(late["bought-history"], ["edge-03"]);
}

#[test]
fn the_fixture_rules_pass_rules_check() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = rekindle(&config, &["rules", "check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("{} rules valid, 0 errors", rule_ids().len())), "{stdout}");
}
