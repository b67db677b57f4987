//! `profiles export` against an independent computation of DATA.md's definitions
//! (tests/crosscheck/profiles.py: plain Python with exact decimals and fractions).

use crate::support::{python, repo_path, sample_store};
use rekindle::profile::ProfileConfig;
use rekindle::domain::parse_date;
use rekindle::population::{ExportFormat, Population};

#[test]
fn export_matches_an_independent_computation_on_10k_members() {
    let dir = tempfile::tempdir().unwrap();
    let (store, data, summary) = sample_store(dir.path(), 10_000);
    assert!(summary.lines > 100_000, "{summary:?}");
    // "now" at the end of the data, and a day in the middle (orders after it must not count)
    for as_of in ["2026-11-01", "2026-02-14"] {
        let pop = Population::compute(&store, parse_date(as_of).unwrap(), &ProfileConfig::default()).unwrap();
        let out = dir.path().join(format!("profiles-{as_of}.csv"));
        pop.export(&mut std::fs::File::create(&out).unwrap(), ExportFormat::Csv).unwrap();
        let run = python().arg(repo_path("tests/crosscheck/profiles.py")).arg(&data).arg(as_of).arg(&out).output().expect("run python3");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "cross-check as of {as_of} failed:\n{stdout}{}", String::from_utf8_lossy(&run.stderr));
        assert!(stdout.contains("OK: 10000 members"), "{stdout}");
    }
}

#[test]
fn ndjson_export_has_the_same_rows_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = sample_store(dir.path(), 300);
    let pop = Population::compute(&store, parse_date("2026-11-01").unwrap(), &ProfileConfig::default()).unwrap();
    let mut csv_out = Vec::new();
    let mut json_out = Vec::new();
    pop.export(&mut csv_out, ExportFormat::Csv).unwrap();
    pop.export(&mut json_out, ExportFormat::Ndjson).unwrap();
    let mut rdr = csv::Reader::from_reader(csv_out.as_slice());
    let headers = rdr.headers().unwrap().clone();
    let json_rows: Vec<serde_json::Value> =
        String::from_utf8(json_out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut n = 0;
    for (rec, obj) in rdr.records().zip(&json_rows) {
        let rec = rec.unwrap();
        for (h, v) in headers.iter().zip(rec.iter()) {
            let j = &obj[h];
            let as_text = match j {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let numeric = |s: &str| s.parse::<f64>().ok();
            let same = as_text == v || (numeric(&as_text).is_some() && numeric(&as_text) == numeric(v));
            assert!(same, "{h}: csv {v:?} vs ndjson {j}");
        }
        n += 1;
    }
    assert_eq!(n, 300);
    assert_eq!(json_rows.len(), 300);
}

/// Issue 15: profiles computed from the member base's columns export byte for byte what
/// the same profiles computed from each member's decoded record export, with and
/// without a fitted model, as of the data's end and a day in its middle.
#[test]
fn export_through_the_columns_equals_export_through_decoded_members_issue_15() {
    use rekindle::population::profile_all;
    use rekindle::predict::{fit, FitOptions, PredictOptions, PurchaseHistory, TimeUnit};
    let dir = tempfile::tempdir().unwrap();
    let (store, _, summary) = sample_store(dir.path(), 3_000);
    let cfg = ProfileConfig::default();
    let end = parse_date("2026-11-01").unwrap();
    let histories: Vec<PurchaseHistory> =
        rekindle::population::all_order_days(&store).unwrap().iter().filter_map(|o| PurchaseHistory::from_order_days(o, end, TimeUnit::Week)).collect();
    let model = fit(&histories, end, TimeUnit::Week, &FitOptions::default()).expect("the sample fits");
    let opts = PredictOptions::default();
    for model in [None, Some((&model, &opts))] {
        for as_of in [end, parse_date("2026-02-14").unwrap()] {
            let pop = Population::compute_with(&store, as_of, &cfg, model).unwrap();
            assert_eq!(pop.ids.len(), summary.members);
            assert!(pop.ids.windows(2).all(|w| w[0] < w[1]), "member id order");
            let members: Vec<_> = pop.ids.iter().map(|id| store.member(id).unwrap().expect("a stored member")).collect();
            let (profiles, cuts) = profile_all(&members, as_of, &cfg, model);
            let decoded = Population { as_of, ids: pop.ids.clone(), profiles, cuts };
            for format in [ExportFormat::Csv, ExportFormat::Ndjson] {
                let (mut columns, mut records) = (Vec::new(), Vec::new());
                pop.export(&mut columns, format).unwrap();
                decoded.export(&mut records, format).unwrap();
                assert!(columns == records, "{format:?} as of {as_of} with a model: {}", model.is_some());
            }
        }
    }
}

/// Issue 15: a member change (an import) is seen by the next command, which rewrites the
/// columns; a damaged columns file is rewritten, never read.
#[test]
fn a_member_change_is_seen_by_the_next_export_issue_15() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = sample_store(dir.path(), 200);
    let cfg = ProfileConfig::default();
    let as_of = parse_date("2026-11-01").unwrap();
    let before = Population::compute(&store, as_of, &cfg).unwrap();
    let columns = dir.path().join("store.columns");
    assert!(columns.exists(), "the first full scan writes the columns beside the store");
    let first = before.ids[0].to_string();
    std::fs::write(dir.path().join("new-members.csv"), "member_id,name,email,phone,gender,birth_year,city,signup_ts,opted_in_email,opted_in_sms,tz\nzz-new,New,new@example.com,,f,1990,杭州,2026-10-01T00:00:00Z,true,false,\n").unwrap();
    std::fs::write(dir.path().join("new-orders.csv"), format!("order_id,member_id,ts,sku,category,brand,unit_price,qty,discount_pct\nissue-15-order,{first},2026-10-31T08:00:00Z,SKU-NEW,tea,brand-new,1000.00,1,0\n")).unwrap();
    for f in ["new-members.csv", "new-orders.csv"] {
        let (s, bad) = crate::support::import(&store, &dir.path().join(f));
        assert!(bad.is_empty() && s.imported == 1, "{f}: {bad:?}");
    }
    let after = Population::compute(&store, as_of, &cfg).unwrap();
    assert_eq!(after.ids.len(), 201);
    let new = after.ids.binary_search_by(|id| id.as_str().cmp("zz-new")).expect("the new member");
    assert_eq!(after.profiles[new].metrics.age, Some(36));
    assert_eq!(after.profiles[0].metrics.orders, before.profiles[0].metrics.orders + 1);
    assert_eq!(after.profiles[0].metrics.last_order, Some(parse_date("2026-10-31").unwrap()));
    let mut expected = Vec::new();
    after.export(&mut expected, ExportFormat::Csv).unwrap();
    // truncated, then a byte flipped near the end: rewritten, the same export
    let whole = std::fs::read(&columns).unwrap();
    let mut flipped = whole.clone();
    flipped[1000] ^= 0x40; // in the first section, the member ids' offsets
    for damaged in [whole[..whole.len() / 2].to_vec(), flipped] {
        std::fs::write(&columns, &damaged).unwrap();
        let mut out = Vec::new();
        Population::compute(&store, as_of, &cfg).unwrap().export(&mut out, ExportFormat::Csv).unwrap();
        assert!(out == expected, "the export after damage");
        assert_eq!(std::fs::read(&columns).unwrap(), whole, "the columns rewritten");
    }
}
