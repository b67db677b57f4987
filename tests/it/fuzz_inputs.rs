//! Fuzzing the inputs (issue 14, item 8): the row parsers of every kind, the CSV and
//! NDJSON readers and the rule reader get arbitrary and mutated input. Mutations start
//! from the generator's sample data and the shipped rules/ and do what damaged exports
//! do: flipped bits, truncation, duplicated and removed lines, invalid UTF-8, multi-byte
//! characters anywhere, huge fields, broken quoting, odd numbers and JSON.
//!
//! No input may panic or hang, and no damage may cost a good row: a row the damage left
//! intact is imported. The quick properties run with every `cargo test` (a few seconds);
//! the long tests (`--include-ignored`) replay thousands of mutated files through the real
//! binary's `import` and `rules check`, each under a timeout, and ask an independent
//! reader (tests/crosscheck/good_rows.py, Python's csv module) which rows were intact.
//! `REKINDLE_FUZZ_SEED` replays a long run; each failure names its case file.

use crate::support::Rng;
use crate::support::{open_store, python, repo_path};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rekindle::domain::{parse_timestamp, TsFmt, MAX_ID_CHARS};
use rekindle::ingest::rows::{parse_event, parse_member, parse_order, parse_product, Fields, Kind, MAX_LINE_CENTS};
use rekindle::ingest::{import_file, ImportOptions};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};


/// Multi-byte characters of every length, and ones that look like nothing.
const WIDE: &[&str] = &["é", "退", "😀", "\u{200b}", "\u{feff}", "\u{0301}"];

/// Bytes that break readers: invalid UTF-8, separators, quotes, JSON structure, numbers
/// no parser should trust.
const NASTY: &[&[u8]] = &[
    &[0xff],
    &[0xc3],
    &[0xe9, 0x80],
    &[0xc0, 0xaf],
    &[0xed, 0xa0, 0x80],
    b"\0",
    b",",
    b"\n",
    b"\r",
    b"\r\n",
    b"\"",
    b"\"\"",
    b"\\",
    b"{",
    b"}",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"999999999999999999999999",
    b"999999999999999.9999",
    b"4294967296",
    b"-0",
    b"1e400",
    b"NaN",
    b"null",
    b"true",
    b"2025-03-1\xc3\xa94T09:29:26Z",
    b"2025-02-29T24:60:61+99:99",
    b"9999-12-31T23:59:60-23:59",
];

/// The start of each line of `text`.
fn line_starts(text: &[u8]) -> Vec<usize> {
    std::iter::once(0).chain(text.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).filter(|&i| i < text.len()).collect()
}

/// One to four random edits of `input`; `huge` bounds an inserted run.
fn mutate(input: &[u8], rng: &mut Rng, huge: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        let lines = line_starts(&out);
        let line = |rng: &mut Rng, out: &[u8]| {
            let start = lines.get(rng.below(lines.len())).copied().unwrap_or(0);
            let end = out[start..].iter().position(|b| *b == b'\n').map_or(out.len(), |n| start + n + 1);
            start..end
        };
        match rng.below(10) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.truncate(at),
            2 if !lines.is_empty() => {
                let span = line(rng, &out);
                let copy = out[span.clone()].to_vec();
                let to = lines[rng.below(lines.len())];
                out.splice(to..to, copy);
            }
            3 if lines.len() > 1 => {
                let span = line(rng, &out);
                out.drain(span);
            }
            4 => {
                let wide = WIDE[rng.below(WIDE.len())].as_bytes();
                // at a character boundary or not: the bytes go in wherever `at` is
                out.splice(at..at, wide.iter().copied());
            }
            5 => {
                let len = 1 + rng.below(huge);
                let fill = [b'x', b'9', b'"', b' '][rng.below(4)];
                out.splice(at..at, std::iter::repeat_n(fill, len));
            }
            6 => {
                // quote damage: an opening quote at a field start, or one removed
                let commas: Vec<usize> = out.iter().enumerate().filter(|(_, b)| **b == b',').map(|(i, _)| i + 1).collect();
                match (commas.is_empty(), out.iter().position(|b| *b == b'"')) {
                    (_, Some(q)) if rng.below(2) == 0 => {
                        out.remove(q);
                    }
                    (false, _) => {
                        let c = commas[rng.below(commas.len())];
                        out.insert(c, b'"');
                    }
                    _ => out.insert(at, b'"'),
                }
            }
            7 if !out.is_empty() => {
                // a field's value replaced: from a comma or quote to the next one
                let from = rng.below(out.len());
                let end = out[from..].iter().position(|b| matches!(b, b',' | b'"' | b'\n')).map_or(out.len(), |n| from + n);
                let token = NASTY[rng.below(NASTY.len())];
                out.splice(from..end, token.iter().copied());
            }
            _ => {
                let token = NASTY[rng.below(NASTY.len())];
                out.splice(at..at, token.iter().copied());
            }
        }
    }
    out
}

/// The seed files: the first `lines` lines of each generated file, as CSV and as NDJSON
/// (the same records, numbers and booleans as JSON values).
fn seeds(dir: &Path, lines: usize) -> Vec<(String, Vec<u8>)> {
    let data = dir.join("sample");
    rekindle::generate::generate(&data, &rekindle::generate::GenerateOptions { members: 60, seed: 14, ..Default::default() }).unwrap();
    let mut out = Vec::new();
    for kind in ["members", "orders", "events", "products"] {
        let csv_text = std::fs::read(data.join(format!("{kind}.csv"))).unwrap();
        let head: Vec<u8> = csv_text.split_inclusive(|b| *b == b'\n').take(lines).collect::<Vec<_>>().concat();
        out.push((format!("{kind}.csv"), head.clone()));
        let mut rdr = csv::Reader::from_reader(head.as_slice());
        let headers = rdr.headers().unwrap().clone();
        let mut ndjson = String::new();
        for rec in rdr.records() {
            let rec = rec.unwrap();
            let mut obj = serde_json::Map::new();
            for (h, v) in headers.iter().zip(rec.iter()) {
                let value = match h {
                    "qty" | "birth_year" if !v.is_empty() => serde_json::Value::from(v.parse::<i64>().unwrap()),
                    "opted_in_email" | "opted_in_sms" | "in_stock" => serde_json::Value::from(v == "true"),
                    _ => serde_json::Value::from(v),
                };
                obj.insert(h.to_string(), value);
            }
            ndjson.push_str(&serde_json::Value::Object(obj).to_string());
            ndjson.push('\n');
        }
        out.push((format!("{kind}.ndjson"), ndjson.into_bytes()));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Row parsers

/// A value for a field: valid ones of every column type, the same edited, odd numbers,
/// or any text at all.
fn field() -> impl Strategy<Value = String> {
    let valid = prop::sample::select(vec![
        "m0000001", "o123", "sku00042", "2025-03-14T09:29:26Z", "2025-03-14 09:29:26.123+08:00", "2025-03-14", "19.99", "0.0001", "12.5", "3", "1", "0",
        "true", "FALSE", "f", "M", "1990", "Asia/Shanghai", "view", "cart", "favorite", "王伟", "https://shop.example/p/1",
    ]);
    prop_oneof![
        valid.clone().prop_map(String::from),
        (valid, 0usize..40, prop::sample::select(WIDE.to_vec())).prop_map(|(v, at, wide)| {
            let at = (0..=at.min(v.len())).rev().find(|i| v.is_char_boundary(*i)).unwrap_or(0);
            format!("{}{wide}{}", &v[..at], &v[at..])
        }),
        "[0-9.+-]{0,24}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,9})?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?",
        ".{0,80}",
        prop::sample::select(NASTY.to_vec()).prop_map(|b| String::from_utf8_lossy(b).into_owned()),
    ]
}

fn checked_ts(ts: i64) -> Result<(), TestCaseError> {
    prop_assert_eq!(parse_timestamp(&TsFmt(ts).to_string()), Ok(ts), "a parsed timestamp prints and parses back");
    Ok(())
}

fn checked_id(id: &str) -> Result<(), TestCaseError> {
    prop_assert!(!id.is_empty() && id.chars().count() <= MAX_ID_CHARS && !id.chars().any(char::is_control), "{:?}", id);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every kind's row parser on any fields: an error with a reason, or a row whose
    /// values keep their invariants (ids, money that adds up, timestamps that print).
    #[test]
    fn row_parsers_of_every_kind_never_panic_and_keep_their_invariants(
        kind in prop::sample::select(vec![Kind::Members, Kind::Orders, Kind::Events, Kind::Products]),
        values in prop::collection::vec(prop::option::weighted(0.9, field()), 11),
    ) {
        let mut fields = Fields { values: [None; 11], kind };
        for (slot, v) in fields.values.iter_mut().zip(&values) {
            *slot = v.as_deref();
        }
        let reason = match kind {
            Kind::Orders => parse_order(&fields).map(|row| {
                let l = &row.line;
                checked_id(&row.member_id)?;
                checked_id(&l.order_id)?;
                checked_id(&l.sku)?;
                checked_ts(l.ts)?;
                prop_assert!(l.qty >= 1 && l.unit_price >= 0 && l.discount_ppm < 1_000_000);
                prop_assert!(i128::from(l.unit_price) * i128::from(l.qty) <= i128::from(MAX_LINE_CENTS));
                prop_assert!((0..=MAX_LINE_CENTS).contains(&l.amount()));
                Ok(())
            }),
            Kind::Events => parse_event(&fields).map(|row| {
                checked_id(&row.member_id)?;
                checked_id(&row.event.sku)?;
                checked_ts(row.event.ts)
            }),
            Kind::Members => parse_member(&fields).map(|row| {
                checked_id(&row.id)?;
                if let Some(ts) = row.attrs.signup_ts {
                    checked_ts(ts)?;
                }
                prop_assert!(row.attrs.birth_year.is_none_or(|y| (1850..=2200).contains(&y)));
                Ok(())
            }),
            Kind::Products => parse_product(&fields).map(|row| {
                checked_id(&row.sku)?;
                prop_assert!(row.product.price.is_none_or(|p| p >= 0));
                Ok(())
            }),
        };
        match reason {
            Ok(invariants) => invariants?,
            Err(why) => prop_assert!(!why.trim().is_empty()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// CSV and NDJSON files, in the process

/// The line numbers of `mutated` whose line is byte-identical to a data line of
/// `original`, where that alone makes a row intact: every NDJSON line, and CSV lines
/// when the file holds no quote or carriage return (each line is then one record) and
/// its header is the original's. `None`: no such promise (the header changed).
fn intact_lines(name: &str, original: &[u8], mutated: &[u8]) -> Option<BTreeSet<u64>> {
    let lines = |t: &[u8]| t.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect::<Vec<_>>();
    let (orig, got) = (lines(original), lines(mutated));
    let ndjson = name.ends_with(".ndjson");
    if !ndjson && (got.first() != orig.first() || mutated.iter().any(|b| matches!(b, b'"' | b'\r'))) {
        return None;
    }
    let known: BTreeSet<&Vec<u8>> = orig.iter().skip(usize::from(!ndjson)).filter(|l| !l.is_empty()).collect();
    Some(got.iter().enumerate().skip(usize::from(!ndjson)).filter(|(_, l)| known.contains(l)).map(|(i, _)| i as u64 + 1).collect())
}

/// Mutated sample files through `import_file`: no panic, every row counted once, an
/// intact row never reported bad, and a file refused as a whole only when its header
/// (CSV) or every line that could tell its kind (NDJSON) was damaged.
#[test]
fn mutated_csv_and_ndjson_files_keep_every_intact_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let seeds = seeds(dir.path(), 25);
    let opts = ImportOptions { progress: false, chunk_rows: 7, ..Default::default() };
    let mut runner = TestRunner::new(Config { cases: 400, failure_persistence: None, ..Config::default() });
    let (refused, with_bad) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&(0..seeds.len(), any::<u64>()), |(seed, salt)| {
            let (name, original) = &seeds[seed];
            let mutated = mutate(original, &mut Rng(salt), 20_000);
            let path = dir.path().join(name);
            std::fs::write(&path, &mutated).unwrap();
            let mut bad = Vec::new();
            let intact = intact_lines(name, original, &mutated);
            match import_file(&store, &path, &opts, &mut |b| bad.push(b.clone())) {
                Ok(s) => {
                    prop_assert_eq!(s.rows, s.imported + s.bad);
                    prop_assert_eq!(s.bad as usize, bad.len());
                    with_bad.set(with_bad.get() + usize::from(s.bad > 0));
                    for b in &bad {
                        prop_assert!(!b.reason.contains("panicked"), "{}", b);
                        prop_assert!(!intact.as_ref().is_some_and(|lines| lines.contains(&b.line)), "an intact row reported bad: {}\n{}", b, String::from_utf8_lossy(&mutated));
                    }
                    if let Some(lines) = &intact {
                        prop_assert!(s.imported >= lines.len() as u64, "{} imported, {} intact", s.imported, lines.len());
                    }
                }
                Err(e) => {
                    refused.set(refused.get() + 1);
                    let first_line_kept = mutated.split(|b| *b == b'\n').next() == original.split(|b| *b == b'\n').next();
                    prop_assert!(!(name.ends_with(".csv") && first_line_kept && intact.is_some()), "a file with its header refused: {}", e);
                    prop_assert!(!(name.ends_with(".ndjson") && intact.as_ref().is_some_and(|l| l.len() > 2)), "an NDJSON file with intact rows refused: {}\n{}", e, String::from_utf8_lossy(&mutated));
                }
            }
            Ok(())
        })
        .unwrap();
    let (refused, with_bad) = (refused.get(), with_bad.get());
    println!("{refused} files refused as a whole, {with_bad} with bad rows");
    assert!(with_bad > 100, "the mutations reach the rows: {with_bad}");
}

// ---------------------------------------------------------------------------------------
// Rule files, in the process

/// The shipped rules.
fn shipped_rules() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(repo_path("rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    files.sort();
    files
}

/// Mutated and arbitrary rule files through the rule reader: no panic, and every
/// diagnostic renders (its span lies inside the text, on character boundaries).
#[test]
fn mutated_rule_files_never_panic_and_every_diagnostic_renders() {
    let dir = tempfile::tempdir().unwrap();
    let rules = shipped_rules();
    let channels = rekindle::rules::ChannelNames { configured: vec!["email".into(), "sms".into(), "shop".into()] };
    let mut runner = TestRunner::new(Config { cases: 600, failure_persistence: None, ..Config::default() });
    let (valid, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let text = prop_oneof![(0..rules.len(), any::<u64>()).prop_map(|(i, salt)| mutate(rules[i].1.as_bytes(), &mut Rng(salt), 3000)), ".{0,400}".prop_map(String::into_bytes)];
    runner
        .run(&text, |bytes| {
            let path = dir.path().join("rule.toml");
            std::fs::write(&path, &bytes).unwrap();
            match rekindle::rules::load(&path, &channels) {
                Ok(set) => {
                    for d in &set.diagnostics {
                        prop_assert!(!set.sources.render(d).is_empty());
                    }
                    valid.set(valid.get() + set.rules.len());
                    refused.set(refused.get() + set.failed.len());
                }
                Err(e) => prop_assert!(false, "a file's content failed the whole load: {}", e),
            }
            Ok(())
        })
        .unwrap();
    let (valid, refused) = (valid.get(), refused.get());
    println!("{valid} mutated rules still valid, {refused} refused");
    assert!(valid > 0 && refused > 0, "{valid} valid, {refused} refused");
}

/// Found by the long corpus: a rule file with a byte that is not UTF-8 failed the whole
/// folder (`rules check` of it, the daemon's reload), not just itself.
#[test]
fn a_rule_file_that_is_not_utf8_fails_alone_with_a_diagnostic_at_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let rules = shipped_rules();
    for (name, text) in &rules {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let (name, text) = &rules[0];
    let at = text.find("[message]").unwrap_or(text.len() / 2);
    let mut bytes = text.as_bytes().to_vec();
    bytes.splice(at..at, [0xe9, 0x80]);
    std::fs::write(dir.path().join(name), &bytes).unwrap();
    let set = rekindle::rules::load(dir.path(), &rekindle::rules::ChannelNames { configured: vec![] }).expect("the folder loads");
    assert_eq!((set.rules.len(), set.failed.len()), (rules.len() - 1, 1));
    let d = &set.diagnostics.iter().find(|d| d.message.contains("not valid UTF-8")).expect("a diagnostic");
    assert_eq!(d.span.start, at);
    let line = text[..at].lines().count() + usize::from(text[..at].ends_with('\n'));
    assert!(set.sources.render(d).contains(&format!("{name}:{line}:")), "{}", set.sources.render(d));
}

// ---------------------------------------------------------------------------------------
// The long corpus, through the real binary

/// How one run of the binary ended.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the binary in `dir`; a run past `limit` is killed and fails the test.
fn run(dir: &Path, args: &[&str], limit: Duration, case: &Path) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}: `rekindle {}` still running after {limit:?} (a hang)", case.display(), args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |f: &str| String::from_utf8_lossy(&std::fs::read(dir.join(f)).unwrap_or_default()).into_owned();
    Ran { code: status.code(), stdout: read("stdout"), stderr: read("stderr") }
}

fn no_panic(ran: &Ran, case: &Path) {
    assert!(ran.code != Some(101) && !ran.stderr.contains("panicked") && ran.code.is_some(), "{}: a panic (exit {:?})\n{}", case.display(), ran.code, ran.stderr);
}

/// The long run's seed: `REKINDLE_FUZZ_SEED` replays one.
fn fuzz_seed() -> u64 {
    let seed = std::env::var("REKINDLE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_114);
    println!("seed {seed} (REKINDLE_FUZZ_SEED replays it)");
    seed
}

/// The corpus: per seed file, random mutations, then a multi-byte character inserted
/// at (and put in place of) every byte of its first data line, cycling through widths.
fn corpus(seeds: &[(String, Vec<u8>)], random_per_seed: usize, salt: u64) -> Vec<(usize, Vec<u8>)> {
    let mut rng = Rng(salt);
    let mut out = Vec::new();
    for (i, (_, original)) in seeds.iter().enumerate() {
        for _ in 0..random_per_seed {
            // now and then a huge field (up to 2 MB)
            let huge = if rng.below(50) == 0 { 2_000_000 } else { 5_000 };
            out.push((i, mutate(original, &mut rng, huge)));
        }
        let starts = line_starts(original);
        let (from, to) = (starts.get(1).copied().unwrap_or(0), starts.get(2).copied().unwrap_or(original.len()));
        for (n, at) in (from..to).enumerate() {
            let wide = WIDE[n % 3].as_bytes();
            let mut inserted = original.clone();
            inserted.splice(at..at, wide.iter().copied());
            let mut replaced = original.clone();
            replaced.splice(at..at + 1, wide.iter().copied());
            out.push((i, inserted));
            out.push((i, replaced));
        }
    }
    out
}

/// What the binary's import said: (summary line, bad lines from --rejects).
fn imported(ran: &Ran, rejects: &Path) -> Option<(u64, u64, u64, BTreeSet<u64>)> {
    // "FILE: KIND file: N rows, I imported, B bad in ..."
    let line = ran.stdout.lines().find(|l| l.contains(" file: "))?;
    let words: Vec<&str> = line.rsplit(" file: ").next()?.split_whitespace().collect();
    let number = |i: usize| words.get(i)?.parse::<u64>().ok();
    let mut bad = BTreeSet::new();
    let mut r = csv::Reader::from_path(rejects).ok()?;
    for rec in r.records() {
        bad.insert(rec.ok()?.get(1)?.parse().ok()?);
    }
    Some((number(0)?, number(2)?, number(4)?, bad))
}

/// Thousands of mutated sample files through `rekindle import`, each under a timeout: no
/// panic, no hang, and every row the independent reader says is intact is imported.
#[test]
#[ignore = "long: scripts/test.sh --long"]
fn a_mutation_corpus_of_thousands_of_files_through_import_loses_no_intact_row() {
    let salt = fuzz_seed();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let seeds = seeds(dir.path(), 30);
    for (name, bytes) in &seeds {
        std::fs::write(dir.path().join(format!("original-{name}")), bytes).unwrap();
    }
    let cases = corpus(&seeds, 400, salt);
    let files = dir.path().join("cases");
    std::fs::create_dir(&files).unwrap();
    // the independent reader answers for every case at once
    let mut manifest = String::new();
    let paths: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(n, (seed, bytes))| {
            let path = files.join(format!("{n:05}-{}", seeds[*seed].0));
            std::fs::write(&path, bytes).unwrap();
            manifest.push_str(&serde_json::json!({"original": dir.path().join(format!("original-{}", seeds[*seed].0)), "mutated": path}).to_string());
            manifest.push('\n');
            path
        })
        .collect();
    std::fs::write(dir.path().join("manifest.jsonl"), &manifest).unwrap();
    let answers = python().arg(repo_path("tests/crosscheck/good_rows.py")).stdin(std::fs::File::open(dir.path().join("manifest.jsonl")).unwrap()).output().unwrap();
    assert!(answers.status.success(), "{}", String::from_utf8_lossy(&answers.stderr));
    let answers: Vec<serde_json::Value> = String::from_utf8(answers.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), paths.len());

    // two workers, each with its own folder and store (a fresh one every 100 cases)
    let next = std::sync::atomic::AtomicUsize::new(0);
    let totals = std::sync::Mutex::new((0u64, 0u64, 0u64, 0u64));
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let (next, totals, paths, answers, dir) = (&next, &totals, &paths, &answers, dir.path());
            scope.spawn(move || {
                let work = dir.join(format!("worker-{worker}"));
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(case) = paths.get(n) else { break };
                    if n % 100 < 2 {
                        let _ = std::fs::remove_dir_all(&work);
                    }
                    std::fs::create_dir_all(&work).unwrap();
                    let rejects = work.join("rejects.csv");
                    let _ = std::fs::remove_file(&rejects);
                    let ran = run(&work, &["--db", "store", "import", "--show-bad", "0", "--rejects", "rejects.csv", case.to_str().unwrap()], Duration::from_secs(60), case);
                    no_panic(&ran, case);
                    let answer = &answers[n];
                    let header_kept = answer["header"].as_bool().unwrap();
                    let intact: BTreeSet<u64> = answer["good"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
                    let mut t = totals.lock().unwrap();
                    t.0 += 1;
                    match imported(&ran, &rejects) {
                        Some((rows, ok, bad_rows, bad)) => {
                            assert_eq!(rows, ok + bad_rows, "{}: {}", case.display(), ran.stdout);
                            let lost: Vec<&u64> = intact.intersection(&bad).collect();
                            assert!(lost.is_empty(), "{}: intact rows reported bad at lines {lost:?}\n{}", case.display(), std::fs::read_to_string(&rejects).unwrap_or_default());
                            assert!(ok >= intact.len() as u64, "{}: {ok} imported, {} intact", case.display(), intact.len());
                            t.1 += intact.len() as u64;
                            t.2 += bad_rows;
                        }
                        None => {
                            // refused as a whole: only a file whose header went
                            assert!(!header_kept || intact.is_empty(), "{}: refused with its header and {} intact rows\n{}", case.display(), intact.len(), ran.stderr);
                            assert!(ran.stderr.contains("error: "), "{}: {}", case.display(), ran.stderr);
                            t.3 += 1;
                        }
                    }
                }
            });
        }
    });
    let (runs, intact, bad, refused) = *totals.lock().unwrap();
    println!("{runs} mutated files imported in {:.0} s: {intact} intact rows all kept, {bad} bad rows reported, {refused} files refused as a whole", started.elapsed().as_secs_f64());
    assert!(runs >= 3000 && intact > 10_000 && bad > 1000, "{runs} runs, {intact} intact, {bad} bad");
}

/// The shipped rules, mutated, through `rekindle rules check`: a file alone, then in the
/// rules folder beside the intact others, which must all stay valid.
#[test]
#[ignore = "long: scripts/test.sh --long"]
fn a_mutation_corpus_of_rule_files_through_rules_check_never_panics_or_spreads() {
    let salt = fuzz_seed();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let rules = shipped_rules();
    let folder = dir.path().join("rules");
    std::fs::create_dir(&folder).unwrap();
    let reset = || {
        for (name, text) in &rules {
            std::fs::write(folder.join(name), text).unwrap();
        }
    };
    reset();
    let intact = run(dir.path(), &["rules", "check", "rules"], Duration::from_secs(60), &folder);
    assert!(intact.stdout.contains(&format!("{} rules valid", rules.len())), "{}{}", intact.stdout, intact.stderr);
    let mut rng = Rng(salt);
    let (mut cases, mut valid_alone) = (0, 0);
    for i in 0..150 * rules.len() {
        let (name, text) = &rules[i % rules.len()];
        let mutated = mutate(text.as_bytes(), &mut rng, 3000);
        let case = dir.path().join(format!("case-{i:05}-{name}"));
        std::fs::write(&case, &mutated).unwrap();
        let alone = run(dir.path(), &["rules", "check", case.file_name().unwrap().to_str().unwrap()], Duration::from_secs(30), &case);
        no_panic(&alone, &case);
        valid_alone += usize::from(alone.code == Some(0));
        std::fs::write(folder.join(name), &mutated).unwrap();
        let beside = run(dir.path(), &["rules", "check", "rules"], Duration::from_secs(30), &case);
        no_panic(&beside, &case);
        let others = rules.len() - 1;
        let count = beside.stdout.split(" rules valid").next().and_then(|n| n.trim().rsplit(' ').next()?.parse::<usize>().ok());
        assert!(count.is_some_and(|n| n >= others), "{}: a damaged file cost the others their rules\n{}{}", case.display(), beside.stdout, beside.stderr);
        std::fs::write(folder.join(name), text).unwrap();
        cases += 1;
    }
    println!("{cases} mutated rule files checked alone and in the folder in {:.0} s, {valid_alone} still valid", started.elapsed().as_secs_f64());
}
