//! Shared helpers: temporary stores, sample data, and the Python interpreter the
//! cross-checks run (`REKINDLE_PYTHON`, default `python3`).

use rekindle::generate::{generate, GenerateOptions, GenerateSummary};
use rekindle::ingest::{import_file, BadRow, FileSummary, ImportOptions};
use rekindle::store::Store;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn python() -> Command {
    Command::new(std::env::var("REKINDLE_PYTHON").unwrap_or_else(|_| "python3".into()))
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn open_store(dir: &Path) -> Store {
    Store::open(&dir.join("store"), 64).expect("open a fresh store")
}

/// Imports a file, returning the summary and every bad row.
pub fn import(store: &Store, path: &Path) -> (FileSummary, Vec<BadRow>) {
    let mut bad = Vec::new();
    let opts = ImportOptions { progress: false, chunk_rows: 7_000, ..Default::default() };
    let s = import_file(store, path, &opts, &mut |b| bad.push(b.clone())).unwrap_or_else(|e| panic!("import {}: {e}", path.display()));
    (s, bad)
}

/// Generates sample data into `dir/data` and imports all of it.
pub fn sample_store(dir: &Path, members: usize) -> (Store, PathBuf, GenerateSummary) {
    let data = dir.join("data");
    let summary = generate(&data, &GenerateOptions { members, ..Default::default() }).expect("generate sample data");
    let store = open_store(dir);
    for f in ["members.csv", "products.csv", "orders.csv", "events.csv"] {
        let (s, bad) = import(&store, &data.join(f));
        assert!(bad.is_empty(), "generated data has bad rows: {bad:?}");
        assert_eq!(s.bad, 0);
    }
    (store, data, summary)
}
