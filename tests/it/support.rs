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

/// SplitMix64: deterministic mutations from a seed, for the fuzz tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[self.below(list.len())]
    }
}
