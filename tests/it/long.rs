//! Long tests, run by `scripts/test.sh --long` (and CI) through `--include-ignored`.

use crate::support::{open_store, python, repo_path};
use rekindle::profile::ProfileConfig;
use rekindle::domain::parse_date;
use rekindle::generate::{generate, GenerateOptions};
use rekindle::ingest::{import_file, ImportOptions};
use rekindle::population::{ExportFormat, Population};

/// 100,000 members and about 1.1M order lines go through the spilled-runs path (several
/// sorted runs per file), and every metric of every member still matches the independent
/// computation.
#[test]
#[ignore = "long: scripts/test.sh --long"]
fn hundred_thousand_members_through_sorted_runs_match_the_crosscheck() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let summary = generate(&data, &GenerateOptions { members: 100_000, seed: 7, ..Default::default() }).unwrap();
    assert!(summary.lines > 1_000_000, "{summary:?}");
    let store = open_store(dir.path());
    let opts = ImportOptions { progress: false, chunk_rows: 20_000, ..Default::default() };
    for f in ["members.csv", "orders.csv", "events.csv"] {
        let s = import_file(&store, &data.join(f), &opts, &mut |b| panic!("bad row {b}")).unwrap();
        assert_eq!(s.bad, 0);
    }
    let as_of = "2026-11-01";
    let pop = Population::compute(&store, parse_date(as_of).unwrap(), &ProfileConfig::default()).unwrap();
    assert_eq!(pop.ids.len(), 100_000);
    let out = dir.path().join("profiles.csv");
    pop.export(&mut std::io::BufWriter::new(std::fs::File::create(&out).unwrap()), ExportFormat::Csv).unwrap();
    let run = python().arg(repo_path("tests/crosscheck/profiles.py")).arg(&data).arg(as_of).arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("OK: 100000 members"), "{stdout}");
}
