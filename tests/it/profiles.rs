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
