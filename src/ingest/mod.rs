//! Import of members, orders, events and products from CSV or NDJSON files (and, later,
//! HTTP bodies): streaming, chunked, every bad row reported with file, line and reason,
//! and the good rows kept.
//!
//! A reader thread parses rows into typed records and hands chunks to the writer, which
//! applies each chunk to the store as one atomic batch. A file never sits in memory whole.

pub mod rows;

use crate::domain::PhoneRegion;
use crate::store::bulk::{Background, EventLoader, OrderLoader};
use crate::store::import::WriteStats;
use crate::store::{Store, StoreError};
use rows::{parse_event, parse_member, parse_order, parse_product, Fields, Kind};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: missing required column {column:?} for a {kind} file")]
    MissingColumn { path: PathBuf, column: &'static str, kind: &'static str },
    #[error("{path}: cannot tell what kind of file this is from its columns {columns:?}; pass --kind members|orders|events|products")]
    UnknownKind { path: PathBuf, columns: Vec<String> },
    #[error("{path}: the header is not valid CSV or UTF-8: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    #[error("{path}: the file is empty")]
    Empty { path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A skipped row.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Overrides detection from the header.
    pub kind: Option<Kind>,
    /// Rows per atomic batch.
    pub chunk_rows: usize,
    /// Draw a progress bar (only shown on a terminal).
    pub progress: bool,
    /// Members' phones without a country code are read in this region and stored in
    /// E.164; `None` keeps them as given.
    pub phone_region: Option<PhoneRegion>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { kind: None, chunk_rows: 50_000, progress: true, phone_region: None }
    }
}

/// What importing one file did.
#[derive(Debug, Clone)]
pub struct FileSummary {
    pub file: String,
    pub kind: Kind,
    /// Data rows read (good and bad).
    pub rows: u64,
    pub imported: u64,
    pub bad: u64,
    pub unknown_columns: Vec<String>,
    pub moved_orders: u64,
    pub new_bare_members: u64,
    pub elapsed: Duration,
}

/// A parsed row. Members are boxed: a member row is over twice the size of an order row,
/// and every row of a file is moved a few times on its way to the store.
enum Row {
    Member(Box<rows::MemberRow>),
    Order(rows::OrderRow),
    Event(rows::EventRow),
    Product(rows::ProductRow),
}

fn parse_row(kind: Kind, f: &Fields, phones: Option<PhoneRegion>) -> Result<Row, String> {
    match kind {
        Kind::Members => parse_member(f).map(|mut m| {
            // a phone not understood stays as given: the member is not lost over it, and
            // the SMS channel refuses the number with its reason
            if let Some(e164) = phones.and_then(|region| region.e164(&m.attrs.phone)) {
                m.attrs.phone = e164;
            }
            Row::Member(Box::new(m))
        }),
        Kind::Orders => parse_order(f).map(Row::Order),
        Kind::Events => parse_event(f).map(Row::Event),
        Kind::Products => parse_product(f).map(Row::Product),
    }
}

/// NDJSON lines (blank ones aside) whose keys decide the kind of the file.
const DETECT_LINES: usize = 64;

/// The NDJSON objects whose keys say one kind: how many, the first one's keys (its
/// unknown ones are reported) and the kind's columns any of them had.
struct Vote {
    kind: Kind,
    count: usize,
    first_keys: Vec<String>,
    columns: Vec<String>,
}

/// A chunk from the reader: records to parse, rows, bad rows, and how far into the input
/// it got.
struct Chunk {
    /// CSV records (with their line) for the receiver to parse, on all cores.
    records: Vec<(csv::ByteRecord, u64)>,
    /// Rows parsed by the reader (all of an NDJSON file; a CSV record that spans lines):
    /// they come after `records` in the file.
    rows: Vec<Row>,
    bad: Vec<BadRow>,
    read: u64,
    position: u64,
}

/// Emptied buffers that go back to the reader to be filled again (no fresh pages to
/// fault in for every chunk).
#[derive(Default)]
struct Spare {
    records: Vec<(csv::ByteRecord, u64)>,
    rows: Vec<Row>,
}

/// Imports one file. `on_bad` sees every bad row as it is found.
pub fn import_file(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    on_bad: &mut dyn FnMut(&BadRow),
) -> Result<FileSummary, IngestError> {
    let io = |source| IngestError::Io { path: path.into(), source };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let ndjson = is_ndjson(path, &mut file).map_err(io)?;
    let name = path.display().to_string();
    let bar = progress_bar(opts.progress, len, &name);
    let reader = if ndjson {
        Reader::ndjson(BufReader::with_capacity(1 << 20, file), path, opts.kind, opts.phone_region)?
    } else {
        Reader::csv(file, path, opts.kind, opts.phone_region)?
    };
    let summary = run(store, reader, opts.chunk_rows, &name, on_bad, |p| match p {
        Progress::Read(bytes) => bar.set_position(bytes),
        Progress::Written { rows, of } => {
            // orders and events are written after the whole file is read
            bar.set_position(rows);
            if bar.length() != Some(of) {
                bar.set_length(of);
                bar.set_style(bar_style("{msg} writing members [{bar:30}] {human_pos}/{human_len} rows eta {eta}"));
            }
        }
    })?;
    bar.finish_and_clear();
    Ok(summary)
}

/// Imports NDJSON from any reader (an HTTP body); `name` labels bad rows.
pub fn import_ndjson(
    store: &Store,
    input: impl BufRead + Send + 'static,
    name: &str,
    kind: Option<Kind>,
    phone_region: Option<PhoneRegion>,
    on_bad: &mut dyn FnMut(&BadRow),
) -> Result<FileSummary, IngestError> {
    let reader = Reader::ndjson(input, Path::new(name), kind, phone_region)?;
    run(store, reader, 10_000, name, on_bad, |_| {})
}

fn progress_bar(enabled: bool, len: u64, name: &str) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(bar_style("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"));
    bar.set_message(name.to_string());
    bar
}

fn bar_style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template).expect("static progress template").progress_chars("=> ")
}

/// How far an import is: bytes of the file read, then rows written.
enum Progress {
    Read(u64),
    Written { rows: u64, of: u64 },
}

fn is_ndjson(path: &Path, file: &mut File) -> std::io::Result<bool> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if matches!(ext.as_str(), "ndjson" | "jsonl" | "json") {
        return Ok(true);
    }
    if ext == "csv" {
        return Ok(false);
    }
    let mut head = [0u8; 64];
    let n = file.read(&mut head)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(head[..n].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
}

fn run(
    store: &Store,
    mut reader: Reader,
    chunk_rows: usize,
    name: &str,
    on_bad: &mut dyn FnMut(&BadRow),
    progress: impl Fn(Progress),
) -> Result<FileSummary, IngestError> {
    let started = Instant::now();
    let kind = reader.kind;
    let unknown_columns = reader.unknown.clone();
    let mut summary = FileSummary {
        file: name.into(),
        kind,
        rows: 0,
        imported: 0,
        bad: 0,
        unknown_columns,
        moved_orders: 0,
        new_bare_members: 0,
        elapsed: Duration::ZERO,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Chunk, IngestError>>(2);
    std::thread::scope(|scope| {
        let file_name = name.to_string();
        // the reader splits records while this thread parses the previous chunk's
        let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Spare>();
        let parser = reader.csv_parser();
        scope.spawn(move || {
            loop {
                let chunk = reader.next_chunk(chunk_rows, &file_name, spare_rx.try_recv().unwrap_or_default());
                let done = matches!(&chunk, Ok(c) if c.read == 0) || chunk.is_err();
                if tx.send(chunk).is_err() || done {
                    break;
                }
            }
        });
        let flush_at = flush_rows(kind, chunk_rows);
        let mut pending = Pending::new(scope, store, kind, chunk_rows);
        let mut waited = Duration::ZERO;
        let mut parsed: Vec<Result<Row, String>> = Vec::new();
        loop {
            let asked = Instant::now();
            let Ok(chunk) = rx.recv() else { break };
            waited += asked.elapsed();
            let Chunk { records, mut rows, bad, read, position } = chunk?;
            let last = read == 0;
            summary.rows += read;
            if let Some(parser) = &parser {
                use rayon::prelude::*;
                records.par_iter().with_min_len(1024).map(|(r, _)| parser.parse(r)).collect_into_vec(&mut parsed);
            }
            // in file order: the parsed records, then the reader's rows
            let lines = records.iter().map(|(_, line)| *line);
            let parsed_rows = parsed.drain(..).zip(lines).map(|(row, line)| row.map_err(|reason| BadRow { file: name.to_string(), line, reason }));
            for row in parsed_rows.chain(rows.drain(..).map(Ok)).chain(bad.into_iter().map(Err)) {
                match row {
                    Ok(row) => {
                        summary.imported += 1;
                        pending.push(row);
                    }
                    Err(b) => {
                        summary.bad += 1;
                        on_bad(&b);
                    }
                }
            }
            let _ = spare_tx.send(Spare { records, rows });
            progress(Progress::Read(position));
            if last {
                break;
            }
            if pending.len() >= flush_at {
                pending.write(store)?;
            }
        }
        // a writer that waits long is fed too slowly by the reader
        tracing::debug!(rows = summary.rows, secs = started.elapsed().as_secs_f64(), writer_waited_secs = waited.as_secs_f64(), "rows read");
        let total = summary.imported;
        let stats = pending.finish(store, &|rows| progress(Progress::Written { rows, of: total }))?;
        summary.moved_orders += stats.moved_orders;
        summary.new_bare_members += stats.new_bare_members;
        Ok::<(), IngestError>(())
    })?;
    store.flush()?;
    summary.elapsed = started.elapsed();
    tracing::info!(
        file = %summary.file, kind = summary.kind.name(), rows = summary.rows, imported = summary.imported,
        bad = summary.bad, moved_orders = summary.moved_orders, secs = summary.elapsed.as_secs_f64(), "import finished"
    );
    Ok(summary)
}

/// Rows gathered before a write: a member's history is rewritten once per write.
fn flush_rows(kind: Kind, chunk_rows: usize) -> usize {
    match kind {
        Kind::Orders | Kind::Events => chunk_rows * 10,
        Kind::Members | Kind::Products => chunk_rows,
    }
}

/// Rows waiting to be written, by kind; the buffers are reused between writes. Orders and
/// events go through a bulk loader that writes each member once per import; it sorts and
/// spills a batch on its own thread while the next is read.
struct Pending<'scope, 's> {
    members: Vec<rows::MemberRow>,
    orders: Vec<rows::OrderRow>,
    events: Vec<rows::EventRow>,
    products: Vec<(String, crate::store::model::Product)>,
    order_loader: Option<Background<'scope, OrderLoader<'s>>>,
    event_loader: Option<Background<'scope, EventLoader<'s>>>,
}

impl<'scope, 's: 'scope> Pending<'scope, 's> {
    fn new(scope: &'scope std::thread::Scope<'scope, '_>, store: &'s Store, kind: Kind, n: usize) -> Pending<'scope, 's> {
        let mut p = Pending { members: Vec::new(), orders: Vec::new(), events: Vec::new(), products: Vec::new(), order_loader: None, event_loader: None };
        match kind {
            Kind::Members => p.members.reserve(n),
            Kind::Orders => {
                p.orders.reserve(flush_rows(kind, n));
                p.order_loader = Some(Background::spawn(scope, OrderLoader::new(store)));
            }
            Kind::Events => {
                p.events.reserve(flush_rows(kind, n));
                p.event_loader = Some(Background::spawn(scope, EventLoader::new(store)));
            }
            Kind::Products => p.products.reserve(n),
        }
        p
    }

    fn len(&self) -> usize {
        self.members.len() + self.orders.len() + self.events.len() + self.products.len()
    }

    fn push(&mut self, row: Row) {
        match row {
            Row::Member(m) => self.members.push(*m),
            Row::Order(o) => self.orders.push(o),
            Row::Event(e) => self.events.push(e),
            Row::Product(p) => self.products.push((p.sku, p.product)),
        }
    }

    /// Writes members and products now; hands orders and events to their loaders.
    fn write(&mut self, store: &Store) -> Result<(), StoreError> {
        if !self.members.is_empty() {
            store.write_members(&mut self.members)?;
        }
        if !self.products.is_empty() {
            store.write_products(&mut self.products)?;
        }
        if let Some(loader) = self.order_loader.as_mut().filter(|_| !self.orders.is_empty()) {
            loader.add(&mut self.orders)?;
        }
        if let Some(loader) = self.event_loader.as_mut().filter(|_| !self.events.is_empty()) {
            loader.add(&mut self.events)?;
        }
        Ok(())
    }

    /// Writes everything still pending.
    fn finish(mut self, store: &Store, written: &dyn Fn(u64)) -> Result<WriteStats, StoreError> {
        let mut stats = WriteStats::default();
        store.write_members(&mut self.members)?;
        store.write_products(&mut self.products)?;
        if let Some(loader) = self.order_loader.take() {
            stats += loader.finish()?.finish(std::mem::take(&mut self.orders), written)?;
        }
        if let Some(loader) = self.event_loader.take() {
            stats += loader.finish()?.finish(std::mem::take(&mut self.events), written)?;
        }
        Ok(stats)
    }
}

/// Column names as an error shows them: the first 20, each cut to 40 characters (a
/// header whose broken quote swallowed the file is one long name).
fn shown(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = names.iter().take(20).map(|n| if n.chars().count() > 40 { format!("{}...", n.chars().take(40).collect::<String>()) } else { n.clone() }).collect();
    if names.len() > 20 {
        out.push(format!("... {} more", names.len() - 20));
    }
    out
}

/// Maps the file's columns to the kind's: `index[i]` is the file column of kind column i.
#[allow(clippy::type_complexity)]
fn map_columns(path: &Path, names: &[String], forced: Option<Kind>) -> Result<(Kind, Vec<Option<usize>>, Vec<String>), IngestError> {
    let kind = forced
        .or_else(|| Kind::detect(names.iter().map(String::as_str)))
        .ok_or_else(|| IngestError::UnknownKind { path: path.into(), columns: shown(names) })?;
    let index: Vec<Option<usize>> = kind.columns().iter().map(|c| names.iter().position(|n| n == c)).collect();
    for req in kind.required() {
        if !names.iter().any(|n| n == req) {
            return Err(IngestError::MissingColumn { path: path.into(), column: req, kind: kind.name() });
        }
    }
    let unknown = names.iter().filter(|n| !kind.columns().contains(&n.as_str())).cloned().collect();
    Ok((kind, index, unknown))
}

enum Source {
    Csv { rdr: csv::Reader<File>, raw: File, parser: CsvParser },
    /// `ahead`: the lines read to tell the kind, last first, to be read again as rows.
    Ndjson { input: Box<dyn BufRead + Send>, line: u64, buf: Vec<u8>, pos: u64, ahead: Vec<Vec<u8>> },
}

struct Reader {
    kind: Kind,
    phones: Option<PhoneRegion>,
    unknown: Vec<String>,
    source: Source,
}

impl Reader {
    fn csv(file: File, path: &Path, forced: Option<Kind>, phones: Option<PhoneRegion>) -> Result<Reader, IngestError> {
        let raw = file.try_clone().map_err(|source| IngestError::Io { path: path.into(), source })?;
        let mut rdr = csv::ReaderBuilder::new().flexible(true).has_headers(true).buffer_capacity(1 << 20).from_reader(file);
        let headers = rdr
            .byte_headers()
            .map_err(|e| IngestError::BadHeader { path: path.into(), reason: e.to_string() })?
            .clone();
        if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
            return Err(IngestError::Empty { path: path.into() });
        }
        let mut names = Vec::with_capacity(headers.len());
        for (i, h) in headers.iter().enumerate() {
            let s = std::str::from_utf8(h).map_err(|e| IngestError::BadHeader { path: path.into(), reason: e.to_string() })?;
            let s = if i == 0 { s.trim_start_matches('\u{feff}') } else { s };
            names.push(s.trim().to_string());
        }
        let (kind, index, unknown) = map_columns(path, &names, forced)?;
        let width = names.len();
        Ok(Reader { kind, phones, unknown, source: Source::Csv { rdr, raw, parser: CsvParser { kind, index, width, phones } } })
    }

    /// The kind is the one most of the first [`DETECT_LINES`] objects' keys say (an NDJSON
    /// file has no header: its first line is a row like any other, and one damaged row
    /// must not decide how the rest are read). The lines read to tell are rows too.
    fn ndjson(mut input: impl BufRead + Send + 'static, path: &Path, forced: Option<Kind>, phones: Option<PhoneRegion>) -> Result<Reader, IngestError> {
        let io = |source| IngestError::Io { path: path.into(), source };
        let mut ahead: Vec<Vec<u8>> = Vec::new();
        let mut pos = 0u64;
        let (mut rows, mut votes) = (0, Vec::<Vote>::new());
        let mut first_keys: Option<Vec<String>> = None;
        while rows < DETECT_LINES {
            let mut line = Vec::new();
            let n = input.read_until(b'\n', &mut line).map_err(io)?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            if line.iter().any(|b| !b.is_ascii_whitespace()) {
                rows += 1;
                if let Ok(obj) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&line) {
                    let keys: Vec<String> = obj.keys().cloned().collect();
                    if let Some(kind) = Kind::detect(keys.iter().map(String::as_str)) {
                        let i = votes.iter().position(|v| v.kind == kind).unwrap_or_else(|| {
                            votes.push(Vote { kind, count: 0, first_keys: keys.clone(), columns: Vec::new() });
                            votes.len() - 1
                        });
                        let vote = &mut votes[i];
                        vote.count += 1;
                        for c in kind.columns() {
                            if obj.contains_key(*c) && !vote.columns.iter().any(|have| have == c) {
                                vote.columns.push(c.to_string());
                            }
                        }
                    }
                    first_keys.get_or_insert(keys);
                }
            }
            ahead.push(line);
            if forced.is_some() && rows > 0 {
                break;
            }
        }
        if rows == 0 {
            return Err(IngestError::Empty { path: path.into() });
        }
        let (kind, unknown) = match forced {
            Some(k) => (k, Vec::new()),
            None => {
                // most votes; of equal counts, the kind seen first
                let Some(Vote { kind, first_keys: keys, columns, .. }) = votes.into_iter().rev().max_by_key(|v| v.count) else {
                    return Err(match first_keys {
                        Some(keys) => IngestError::UnknownKind { path: path.into(), columns: shown(&keys) },
                        None => IngestError::BadHeader { path: path.into(), reason: format!("none of the first {rows} lines is a JSON object") },
                    });
                };
                // a required field no voter had fails the file; one missing in some rows fails those rows
                map_columns(path, &columns, Some(kind))?;
                let unknown = keys.into_iter().filter(|k| !kind.columns().contains(&k.as_str())).collect();
                (kind, unknown)
            }
        };
        ahead.reverse();
        Ok(Reader { kind, phones, unknown, source: Source::Ndjson { input: Box::new(input), line: 0, buf: Vec::new(), pos, ahead } })
    }

    /// How the receiver parses this file's CSV records (None for NDJSON, parsed here).
    fn csv_parser(&self) -> Option<CsvParser> {
        match &self.source {
            Source::Csv { parser, .. } => Some(parser.clone()),
            Source::Ndjson { .. } => None,
        }
    }

    /// Reads up to `max_rows` rows into emptied buffers. CSV records are only split here:
    /// the receiver parses them on all cores while the next chunk is split. A record that
    /// spans lines is parsed at once (so a broken quote can be mended before reading on)
    /// and ends the chunk.
    fn next_chunk(&mut self, max_rows: usize, file: &str, spare: Spare) -> Result<Chunk, IngestError> {
        let Spare { mut records, mut rows } = spare;
        rows.clear();
        let mut chunk = Chunk { records: Vec::new(), rows, bad: Vec::new(), read: 0, position: 0 };
        let bad = |line: u64, reason: String| BadRow { file: file.to_string(), line, reason };
        match &mut self.source {
            Source::Csv { rdr, raw, parser } => {
                let mut n = 0;
                while chunk.read < max_rows as u64 {
                    if records.len() == n {
                        records.push((csv::ByteRecord::new(), 0));
                    }
                    let start = rdr.position().clone();
                    let (record, line) = &mut records[n];
                    match rdr.read_byte_record(record) {
                        Ok(false) => break,
                        Ok(true) => {}
                        Err(e) => {
                            // only I/O errors reach here with a flexible reader
                            return Err(IngestError::Io { path: file.into(), source: std::io::Error::other(e.to_string()) });
                        }
                    }
                    chunk.read += 1;
                    *line = start.line();
                    if rdr.position().line().saturating_sub(start.line()) <= 1 {
                        n += 1;
                        continue;
                    }
                    match parser.parse(record) {
                        Ok(row) => chunk.rows.push(row),
                        Err(reason) => {
                            // a broken quote swallowed the following lines: report this line
                            // and read again from the next one, so no good row is lost
                            let line = start.line();
                            chunk.bad.push(bad(line, format!("{reason} (unbalanced quote?)")));
                            let next = next_line_offset(raw, start.byte()).map_err(|source| IngestError::Io { path: file.into(), source })?;
                            let mut pos = csv::Position::new();
                            pos.set_byte(next).set_line(line + 1).set_record(start.record() + 1);
                            rdr.seek(pos).map_err(|e| IngestError::Io { path: file.into(), source: std::io::Error::other(e.to_string()) })?;
                        }
                    }
                    break;
                }
                records.truncate(n);
                chunk.records = records;
                chunk.position = rdr.position().byte();
            }
            Source::Ndjson { input, line, buf, pos, ahead } => {
                while chunk.read < max_rows as u64 {
                    buf.clear();
                    if let Some(p) = ahead.pop() {
                        *buf = p;
                    } else {
                        let n = input.read_until(b'\n', buf).map_err(|source| IngestError::Io { path: file.into(), source })?;
                        if n == 0 {
                            break;
                        }
                        *pos += n as u64;
                    }
                    *line += 1;
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    chunk.read += 1;
                    let (kind, phones) = (self.kind, self.phones);
                    let line_text: &[u8] = buf;
                    match row_or_bug(|| ndjson_row(kind, line_text, phones)) {
                        Ok(row) => chunk.rows.push(row),
                        Err(reason) => chunk.bad.push(bad(*line, reason)),
                    }
                }
                chunk.position = *pos;
            }
        }
        Ok(chunk)
    }
}

/// Turns a file's CSV records into rows: `index[i]` is the file column of the kind's
/// column i.
#[derive(Clone)]
struct CsvParser {
    kind: Kind,
    index: Vec<Option<usize>>,
    width: usize,
    phones: Option<PhoneRegion>,
}

impl CsvParser {
    fn parse(&self, record: &csv::ByteRecord) -> Result<Row, String> {
        if record.len() != self.width {
            return Err(format!("expected {} fields, found {}", self.width, record.len()));
        }
        row_or_bug(|| fields_from_csv(self.kind, record, &self.index).and_then(|f| parse_row(self.kind, &f, self.phones)))
    }
}

/// Runs a row parser; a panic in it (a bug: a bad field must be an `Err`) makes this one
/// row bad, with the panic's message, instead of losing the rest of the file. Parsers
/// only read their row, so nothing is left half-changed by the unwinding.
fn row_or_bug(parse: impl FnOnce() -> Result<Row, String> + std::panic::UnwindSafe) -> Result<Row, String> {
    std::panic::catch_unwind(parse).unwrap_or_else(|panic| {
        Err(format!("rekindle panicked on this row ({}); a bug, please report it with the row", crate::store::panic_message(panic.as_ref())))
    })
}

fn fields_from_csv<'r>(kind: Kind, record: &'r csv::ByteRecord, index: &[Option<usize>]) -> Result<Fields<'r>, String> {
    let mut values = [None; 11];
    for (i, col) in index.iter().enumerate() {
        if let Some(c) = col {
            let raw = record.get(*c).unwrap_or(b"");
            values[i] = Some(std::str::from_utf8(raw).map_err(|_| format!("{}: invalid UTF-8", kind.columns()[i]))?);
        }
    }
    Ok(Fields { values, kind })
}

fn ndjson_row(kind: Kind, line: &[u8], phones: Option<PhoneRegion>) -> Result<Row, String> {
    let obj: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(line) {
        Ok(o) => o,
        Err(e) if e.is_data() => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("invalid JSON: {e}")),
    };
    let texts: Vec<Option<String>> = kind
        .columns()
        .iter()
        .map(|c| match obj.get(*c) {
            None => Ok(None),
            Some(serde_json::Value::Null) => Ok(Some(String::new())),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
            Some(serde_json::Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(format!("{c}: expected a string, number or boolean")),
        })
        .collect::<Result<_, String>>()?;
    let mut values = [None; 11];
    for (i, t) in texts.iter().enumerate() {
        // a key this object lacks is an absent column: a member keeps its stored value
        values[i] = t.as_deref();
    }
    parse_row(kind, &Fields { values, kind }, phones)
}

/// The byte offset just after the first newline at or after `from`.
fn next_line_offset(file: &File, from: u64) -> std::io::Result<u64> {
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(from))?;
    let mut r = BufReader::new(f);
    let mut skipped = Vec::new();
    let n = r.read_until(b'\n', &mut skipped)?;
    Ok(from + n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_row_parser_makes_one_bad_row_with_its_message() {
        for panic in [row_or_bug(|| panic!("byte index 10 is not a char boundary")), row_or_bug(|| panic!("{} overflowed", "qty"))] {
            let reason = panic.err().expect("a bad row");
            assert!(reason.starts_with("rekindle panicked on this row (") && reason.contains("a bug"), "{reason}");
            assert!(reason.contains("char boundary") || reason.contains("qty overflowed"), "{reason}");
        }
        assert!(row_or_bug(|| Err("qty: bad".into())).is_err_and(|e| e == "qty: bad"));
    }
}
