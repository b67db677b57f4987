//! The `rekindle` binary as a user runs it: the README demo, member cards, exports and
//! exit codes.

use std::process::{Command, Output};

fn rekindle(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .current_dir(dir)
        .arg("--db")
        .arg(dir.join("store"))
        .args(args)
        .env("REKINDLE_CONFIG", dir.join("config.toml"))
        .output()
        .expect("run rekindle")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn demo_member_card_export_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "[members]\ndefault_timezone = \"Asia/Shanghai\"\n").unwrap();
    let demo = rekindle(dir.path(), &["demo", "--dir", "sample", "--members", "1500"]);
    let out = text(&demo);
    assert!(demo.status.success(), "{out}");
    for want in ["generated 1500 members", "orders file", "0 bad", "members as of 2026-11-01: 1500", "by stage", "sleeping", "by price tier", "spend per buyer"] {
        assert!(out.contains(want), "demo output lacks {want:?}:\n{out}");
    }

    let card = rekindle(dir.path(), &["member", "show", "m0000003", "--as-of", "2026-11-01"]);
    let out = text(&card);
    assert!(card.status.success(), "{out}");
    for want in ["member m0000003", "consent: email", "stage", "RFM", "price tier", "last orders"] {
        assert!(out.contains(want), "card lacks {want:?}:\n{out}");
    }
    let missing = rekindle(dir.path(), &["member", "show", "nobody"]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("no member \"nobody\""), "{}", text(&missing));

    let export = rekindle(dir.path(), &["profiles", "export", "--as-of", "2026-11-01", "--format", "ndjson"]);
    assert!(export.status.success());
    let rows: Vec<serde_json::Value> =
        String::from_utf8(export.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1500);
    assert!(rows.iter().any(|r| r["stage"] == "sleeping"));

    // predicted value: fit, then every buyer carries p_alive and friends
    let fit = rekindle(dir.path(), &["predict", "fit", "--as-of", "2026-05-01"]);
    assert!(fit.status.success(), "{}", text(&fit));
    for want in ["BG/NBD      r = ", "Gamma-Gamma p = ", "holdout 2026-05-02", "stored"] {
        assert!(text(&fit).contains(want), "fit output lacks {want:?}:\n{}", text(&fit));
    }
    let export = rekindle(dir.path(), &["profiles", "export", "--as-of", "2026-11-01", "--format", "ndjson"]);
    let rows: Vec<serde_json::Value> =
        String::from_utf8(export.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for r in &rows {
        let has_orders = r["orders"].as_u64().unwrap() > 0;
        let p = r["p_alive"].as_f64();
        assert_eq!(p.is_some(), has_orders, "{r}");
        if let Some(p) = p {
            assert!((0.0..=1.0).contains(&p), "{r}");
            assert!(["low", "medium", "high"].contains(&r["churn_risk"].as_str().unwrap()), "{r}");
        }
    }

    // a file that cannot be imported fails the command; bad rows alone do not
    std::fs::write(dir.path().join("bad.csv"), "order_id,member_id\no1,m1\n").unwrap();
    let failed = rekindle(dir.path(), &["import", "bad.csv"]);
    assert!(!failed.status.success());
    assert!(text(&failed).contains("missing required column \"ts\""), "{}", text(&failed));
    std::fs::write(dir.path().join("rows.csv"), "member_id,gender\nok1,f\nbad1,q\n").unwrap();
    let partial = rekindle(dir.path(), &["import", "rows.csv", "--rejects", "rejects.csv"]);
    assert!(partial.status.success(), "{}", text(&partial));
    assert!(text(&partial).contains("rows.csv:3: gender"), "{}", text(&partial));
    let rejects = std::fs::read_to_string(dir.path().join("rejects.csv")).unwrap();
    assert!(rejects.contains("rows.csv,3,\"gender: "), "{rejects}");

    // a broken config names the key and its line
    std::fs::write(dir.path().join("config.toml"), "[profile]\nrepurchase_factr = 2\n").unwrap();
    let bad_config = rekindle(dir.path(), &["stats"]);
    assert!(!bad_config.status.success());
    assert!(text(&bad_config).contains("repurchase_factr"), "{}", text(&bad_config));
}

#[test]
fn rules_check_fails_with_located_errors_and_explain_answers_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rules = d.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::copy(crate::support::repo_path("rules/sleeping-winback.toml"), rules.join("sleeping-winback.toml")).unwrap();
    std::fs::copy(crate::support::repo_path("tests/it/fixtures/broken-rules/unknown-keys.toml"), rules.join("typo.toml")).unwrap();
    std::fs::write(d.join("config.toml"), "[campaigns]\nrules_dir = \"rules\"\n").unwrap();
    let check = rekindle(d, &["rules", "check"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    let out = text(&check);
    assert!(out.contains("typo.toml:2:1") && out.contains("did you mean `schedule`?"), "{out}");
    assert!(out.contains("1 rules valid, 4 errors"), "{out}");
    // the valid rule still previews and explains while its neighbour is broken
    crate::support::sample_store(d, 1_000);
    let preview = rekindle(d, &["rules", "preview", "sleeping-winback", "--as-of", "2026-11-01", "--format", "csv"]);
    assert!(preview.status.success(), "{}", text(&preview));
    let rows = String::from_utf8_lossy(&preview.stdout).to_string();
    let member = rows.lines().nth(1).and_then(|l| l.split(',').next()).expect("a matched member").to_string();
    let explain = rekindle(d, &["explain", &member, "--rule", "sleeping-winback", "--as-of", "2026-11-01"]);
    let why = text(&explain);
    assert!(explain.status.success() && why.contains("[pass] stage in [sleeping]") && why.contains("verdict"), "{why}");
}
