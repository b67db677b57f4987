//! The CLI's way to a running daemon: while `rekindle run` holds the store, the commands
//! that need it ask the daemon's API instead, with the token of `[api] token`.

use anyhow::{bail, Context, Result};
use rekindle::config::Config;
use rekindle::ingest::rows::Kind;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Lines per ingest request, and the byte size a request stays under.
const BATCH_LINES: usize = 50_000;
const BATCH_BYTES: usize = 8 << 20;

pub struct Remote {
    base: String,
    token: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    pub fn new(config: &Config) -> Result<Remote> {
        let token = config.api.token().context("the store is in use (the daemon?) and [api] token is not set, so its API cannot be asked either")?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Remote { base: format!("http://{}", config.api.listen), token, client: reqwest::Client::new(), runtime })
    }

    /// One request; the body of a 2xx answer, else an error with the daemon's words.
    pub fn call(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> Result<String> {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let response = self
                .client
                .request(method, &url)
                .bearer_auth(&self.token)
                .body(body)
                .send()
                .await
                .with_context(|| format!("the store is in use and the daemon's API at {url} does not answer"))?;
            let status = response.status();
            let text = response.text().await?;
            if !status.is_success() {
                let why = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["error"].as_str().map(str::to_string)).unwrap_or(text);
                bail!("{url}: {status}: {}", why.trim());
            }
            Ok(text)
        })
    }

    pub fn get(&self, path: &str) -> Result<String> {
        self.call(reqwest::Method::GET, path, Vec::new())
    }

    pub fn post(&self, path: &str, body: Vec<u8>) -> Result<String> {
        self.call(reqwest::Method::POST, path, body)
    }

    /// `import` through the ingest API: each file (CSV rows become JSON objects) in
    /// batches; bad rows are reported with the file's own line numbers.
    pub fn import(&self, files: &[PathBuf], kind: Option<Kind>, show_bad: usize) -> Result<crate::ImportOutcome> {
        let mut outcome = crate::ImportOutcome::default();
        for file in files {
            let started = std::time::Instant::now();
            let mut tally = Tally { file, show_bad, lines: 0, imported: 0, bad: 0 };
            let (mut batch, mut starts) = (Vec::new(), Vec::new());
            for row in rows(file)? {
                match row? {
                    (line, Ok(json)) => {
                        batch.extend_from_slice(json.as_bytes());
                        batch.push(b'\n');
                        starts.push(line);
                    }
                    (line, Err(reason)) => {
                        tally.lines += 1;
                        tally.bad_row(line, &reason);
                    }
                }
                if starts.len() >= BATCH_LINES || batch.len() >= BATCH_BYTES {
                    self.ingest(kind, &mut batch, &mut starts, &mut tally)?;
                }
            }
            self.ingest(kind, &mut batch, &mut starts, &mut tally)?;
            if tally.bad as usize > show_bad {
                eprintln!("... and {} more bad rows in {}", tally.bad as usize - show_bad, file.display());
            }
            println!("{}: {} rows, {} imported, {} bad, through the daemon's API in {:.2}s", file.display(), tally.lines, tally.imported, tally.bad, started.elapsed().as_secs_f64());
            outcome.add(&file.display().to_string(), tally.lines, tally.bad);
        }
        Ok(outcome)
    }

    /// Sends one batch; `starts` holds the file line of each batch line.
    fn ingest(&self, kind: Option<Kind>, batch: &mut Vec<u8>, starts: &mut Vec<u64>, tally: &mut Tally) -> Result<()> {
        if starts.is_empty() {
            return Ok(());
        }
        let path = match kind {
            Some(k) => format!("/api/ingest?kind={}", k.name()),
            None => "/api/ingest".to_string(),
        };
        let answer: serde_json::Value = serde_json::from_str(&self.post(&path, std::mem::take(batch))?)?;
        tally.lines += answer["lines"].as_u64().unwrap_or(0);
        tally.imported += answer["imported"].as_u64().unwrap_or(0);
        let listed = answer["bad_lines"].as_array().cloned().unwrap_or_default();
        for b in &listed {
            let at = b["line"].as_u64().unwrap_or(0) as usize;
            let line = starts.get(at.saturating_sub(1)).copied().unwrap_or(0);
            tally.bad_row(line, b["reason"].as_str().unwrap_or(""));
        }
        // the daemon lists at most 1,000 bad lines per request; count the rest
        tally.bad += answer["bad"].as_u64().unwrap_or(0).saturating_sub(listed.len() as u64);
        starts.clear();
        Ok(())
    }
}

struct Tally<'a> {
    file: &'a Path,
    show_bad: usize,
    lines: u64,
    imported: u64,
    bad: u64,
}

impl Tally<'_> {
    fn bad_row(&mut self, line: u64, reason: &str) {
        if (self.bad as usize) < self.show_bad {
            eprintln!("bad row {}:{line}: {reason}", self.file.display());
        }
        self.bad += 1;
    }
}

/// A line number and the row as one NDJSON line, or why the row is bad already.
type Row = Result<(u64, Result<String, String>)>;

/// A file's rows as NDJSON lines with their line numbers: NDJSON as it is, CSV rows as
/// objects keyed by the header (a row with the wrong field count or invalid UTF-8 is
/// bad here; everything else the daemon checks like `import` does).
fn rows(path: &Path) -> Result<Box<dyn Iterator<Item = Row>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let ndjson = path.extension().is_some_and(|x| x == "ndjson" || x == "jsonl")
        || std::io::BufReader::new(std::fs::File::open(path)?).fill_buf().map(|b| b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{')).unwrap_or(false);
    if ndjson {
        let lines = std::io::BufReader::with_capacity(1 << 20, file).lines().enumerate();
        return Ok(Box::new(lines.filter_map(|(i, l)| match l {
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => Some(Ok((i as u64 + 1, Ok(l)))),
            Err(e) => Some(Err(e.into())),
        })));
    }
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(std::io::BufReader::with_capacity(1 << 20, file));
    let header: Vec<String> = reader.headers().with_context(|| format!("{}: the header is not valid CSV", path.display()))?.iter().map(|h| h.trim().to_string()).collect();
    Ok(Box::new(reader.into_byte_records().map(move |r| {
        let r = r?;
        let line = r.position().map_or(0, |p| p.line());
        if r.len() != header.len() {
            return Ok((line, Err(format!("expected {} fields, found {}", header.len(), r.len()))));
        }
        let mut obj = serde_json::Map::new();
        for (name, value) in header.iter().zip(r.iter()) {
            let Ok(value) = std::str::from_utf8(value) else { return Ok((line, Err(format!("{name}: invalid UTF-8")))) };
            obj.insert(name.clone(), serde_json::Value::String(value.to_string()));
        }
        Ok((line, Ok(serde_json::Value::Object(obj).to_string())))
    })))
}
