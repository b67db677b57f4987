//! The only module that knows sled: the key layout, the value codec, the format version
//! and the atomic batches that imports write; and opening a store, which tells a store
//! another process holds from a damaged one and refuses one that lost data.
//!
//! Key layout (one sled tree, so a batch that touches several kinds stays atomic):
//!
//! | key                         | value                    |
//! |-----------------------------|--------------------------|
//! | `\0format`                  | `rekindle-store <N>`     |
//! | `\0store-id`                | the store's random id ([`identity`]) |
//! | `\0member-count`            | members the last full scan saw (a capacity hint) |
//! | `\0member-gen`              | bumped before member records change (the key of the [`snapshot`] and [`columns`] files) |
//! | `M` member_id               | [`Member`] with digest   |
//! | `H` member_id               | [`OrderHistory`]         |
//! | `E` member_id               | [`EventHistory`]         |
//! | `O` bucket (u32 BE)         | sorted (order_id, member_id) pairs |
//! | `P` sku                     | [`Product`]              |
//! | `B` scope                   | the last mined association rules of that scope |
//! | `F` `value`                 | the last fitted BG/NBD + Gamma-Gamma model |
//! | `C` member_id               | [`ContactLog`]: messages planned for the member |
//! | `K` name                    | a random secret the store generated (link signing) |
//! | `U` member_id               | channels the member unsubscribed from (with when) |
//! | `G` code                    | [`codes::CodeGrant`]: who a `codes_file` coupon code went to |
//!
//! The outbox (`R X Q D L`) is described in [`outbox`], delivery feedback (`S I W`) in
//! [`feedback`].
//!
//! A prefix scan of `M` visits every member in id order with its digest, which is all the
//! profile engine reads; `H` gives one member's lines in time order. Full-base consumers
//! read the same records as [`columns`], a mapped file beside the store.

pub mod bulk;
pub mod codes;
pub mod columns;
pub mod consent;
pub mod feedback;
mod identity;
pub mod import;
mod migrate;
pub mod model;
pub mod outbox;
pub mod rows;
mod snapshot;

use model::{Contact, ContactLog, EventHistory, Member, OrderHistory, Product};
use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};

/// Bumped on every incompatible change of keys or values.
pub const FORMAT_VERSION: u32 = 5;
/// The sled tree of the run records ([`Store::runs`]).
const RUNS_TREE: &[u8] = b"runs";
const FORMAT_KEY: &[u8] = b"\0format";
const MEMBER_COUNT_HINT: &[u8] = b"\0member-count";
const FORMAT_PREFIX: &str = "rekindle-store ";

pub(crate) const MEMBER: u8 = b'M';
pub(crate) const HISTORY: u8 = b'H';
pub(crate) const EVENTS: u8 = b'E';
pub(crate) const ORDER_OWNER: u8 = b'O';
pub(crate) const PRODUCT: u8 = b'P';
pub(crate) const BUNDLE_RULES: u8 = b'B';
pub(crate) const FITTED_MODEL: u8 = b'F';
pub(crate) const CONTACTS: u8 = b'C';
pub(crate) const SECRET: u8 = b'K';
pub(crate) const SUPPRESSED: u8 = b'U';

/// What to do with a store that is damaged or lost data.
const RESTORE: &str = "restore the store's folder from a backup, or move it away and import your files again to start afresh";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} is in use by another rekindle process (is the daemon running?)")]
    Locked { path: PathBuf },
    #[error("cannot open the store at {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("the store at {path} is damaged: {what}; {RESTORE}")]
    Damaged { path: PathBuf, what: String },
    #[error("the store at {path} has lost data: {what} (sled's files there were damaged, truncated or removed after rekindle last wrote them); {RESTORE} (if you restored them from a backup on purpose, delete its rekindle-identity file to accept them)")]
    LostData { path: PathBuf, what: String },
    #[error("{path} is not a rekindle store (it has data but no format marker); refusing to touch it")]
    Foreign { path: PathBuf },
    #[error("the store at {path} has format {found}, this rekindle reads format {FORMAT_VERSION}; use a newer rekindle")]
    TooNew { path: PathBuf, found: u32 },
    #[error("the store at {path} has an unreadable format marker {marker:?}")]
    BadMarker { path: PathBuf, marker: String },
    /// sled failed after the store was open (no source: the message says it all).
    #[error("{}", sled_error(.0))]
    Sled(sled::Error),
    #[error("the store writer thread stopped")]
    WriterGone,
    #[error("temporary import files: {0}")]
    Spill(std::io::Error),
    #[error("member {0:?} is in the member base but no longer in the store (it changed since the base was read)")]
    MemberGone(String),
    #[error("corrupt value under key {key:?}: {source}")]
    Corrupt { key: String, source: postcard::Error },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> StoreError {
        StoreError::Sled(e)
    }
}

/// sled's error in words (its `Display` of corruption is a debug dump).
fn sled_error(e: &sled::Error) -> String {
    match e {
        sled::Error::Corruption { at: Some(sled::DiskPtr::Inline(offset)), .. } => format!("the store is damaged: sled read corrupt data at byte {offset} of its file `db`; {RESTORE}"),
        sled::Error::Corruption { at: Some(sled::DiskPtr::Blob(_, blob)), .. } => format!("the store is damaged: sled read a corrupt value file `blobs/{blob}`; {RESTORE}"),
        sled::Error::Corruption { at: None, .. } => format!("the store is damaged: sled read corrupt data; {RESTORE}"),
        other => format!("store i/o failed: {other}"),
    }
}

/// Tells why sled could not open a store: another process holds its lock, its files
/// are damaged (naming the file where sled says), or plain I/O.
fn open_error(path: &Path, e: sled::Error) -> StoreError {
    let damaged = |what: String| StoreError::Damaged { path: path.into(), what };
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => StoreError::Locked { path: path.into() },
        sled::Error::Io(io) if matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof) => damaged(format!("sled cannot read its files: {io}")),
        sled::Error::Corruption { at: None, .. } => {
            // sled does not say which file (its log names it): list them with their sizes
            let mut files: Vec<String> = std::fs::read_dir(path)
                .map(|dir| {
                    dir.filter_map(|e| e.ok())
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                        .map(|e| format!("{} ({} bytes)", e.file_name().to_string_lossy(), e.metadata().map_or(0, |m| m.len())))
                        .filter(|f| f.starts_with("db ") || f.starts_with("conf ") || f.starts_with("snap."))
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            damaged(format!("sled found corrupt data in its files in that folder: {}", files.join(", ")))
        }
        sled::Error::Corruption { at: Some(sled::DiskPtr::Inline(offset)), .. } => damaged(format!("sled found corrupt data at byte {offset} of {}", path.join("db").display())),
        sled::Error::Corruption { at: Some(sled::DiskPtr::Blob(_, blob)), .. } => damaged(format!("sled found a corrupt value file {}", path.join("blobs").join(blob.to_string()).display())),
        sled::Error::Unsupported(why) => damaged(format!("sled's settings file {} does not match its data ({why})", path.join("conf").display())),
        sled::Error::ReportableBug(why) => damaged(format!("sled refused its files: {why}")),
        other => StoreError::Open { path: path.into(), source: other },
    }
}

/// Opens sled. sled panics on some damage (a garbled page table in `db`): that is a
/// damaged store too, reported as one without printing the panic.
fn open_sled(path: &Path, cache_mb: u64) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new().path(path).cache_capacity(cache_mb * 1024 * 1024).mode(sled::Mode::HighThroughput);
    match quietly(std::panic::AssertUnwindSafe(move || config.open())) {
        Ok(opened) => opened.map_err(|e| open_error(path, e)),
        Err(panic) => Err(StoreError::Damaged { path: path.into(), what: format!("sled stopped reading its files ({panic}) in {}", path.join("db").display()) }),
    }
}

/// A panic's message.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("no message")
}

/// Runs `f`, turning a panic into its message without printing it (the panic hook is
/// told to keep quiet on this thread only).
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    use std::cell::Cell;
    thread_local!(static QUIET: Cell<bool> = const { Cell::new(false) });
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                previous(info)
            }
        }));
    });
    QUIET.set(true);
    let result = std::panic::catch_unwind(f);
    QUIET.set(false);
    result.map_err(|panic| panic_message(panic.as_ref()).to_string())
}

/// An open rekindle store.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: sled::Db,
    /// Run records and each rule's last run ([`outbox`]), in a tree of their own: a run
    /// record lists every held-out member (megabytes with a large base), and
    /// in the main tree the queue's newest entries shared its leaf, so every split there
    /// rewrote it.
    pub(crate) runs: sled::Tree,
    path: PathBuf,
    /// The store's random id, in hex ([`identity`]).
    id: String,
    /// The identity file as last written.
    witness: std::sync::Arc<std::sync::Mutex<Option<identity::Witness>>>,
    /// What is parked (`J`), per channel; its lock orders parking against
    /// recording sends (see [`Store::message_or_park`]).
    parked: std::sync::Arc<std::sync::Mutex<feedback::ParkedCounts>>,
    /// Bumped after every write that changes who must not be messaged or which coupon
    /// codes are taken ([`Store::suppression_generation`]).
    suppression: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Keys and values to write.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) fn key(kind: u8, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(kind);
    k.extend_from_slice(id.as_bytes());
    k
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // most values (a member, a history) take a few hundred bytes: fewer regrowths
    postcard::to_extend(value, Vec::with_capacity(256)).expect("postcard serialisation of a store value cannot fail")
}

pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|source| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), source })
}

impl Store {
    /// Opens (or creates) the store; refuses a foreign, newer, damaged or emptied one.
    pub fn open(path: &Path, cache_mb: u64) -> Result<Store, StoreError> {
        // sled lets go of its lock a moment after the last handle is dropped (its IO
        // threads drop their file handles last): a store this process had open is retried
        // briefly; one held by another process (the daemon) is refused at once
        static OPENED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        let reopening = || OPENED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().any(|p| p == path);
        let started = std::time::Instant::now();
        let db = loop {
            match open_sled(path, cache_mb) {
                Err(StoreError::Locked { .. }) if started.elapsed() < std::time::Duration::from_secs(2) && reopening() => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other?,
            }
        };
        if !reopening() {
            OPENED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(path.to_path_buf());
        }
        let witness = identity::Witness::read(path);
        let runs = db.open_tree(RUNS_TREE)?;
        let store = Store { db, runs, path: path.into(), id: String::new(), witness: Default::default(), parked: Default::default(), suppression: Default::default() };
        // before anything is written: an emptied store would get a fresh format marker
        if let Some(w) = &witness {
            store.check_witness(w)?;
        }
        store.check_format()?;
        let store = Store { id: store.load_id()?, ..store };
        *store.witness.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = witness;
        store.flush()?;
        store.count_parked()?;
        tracing::debug!(path = %path.display(), cache_mb, id = %store.id, "store open");
        Ok(store)
    }

    fn check_format(&self) -> Result<(), StoreError> {
        match self.db.get(FORMAT_KEY)? {
            Some(v) => {
                let marker = String::from_utf8_lossy(&v).into_owned();
                let found = marker
                    .strip_prefix(FORMAT_PREFIX)
                    .and_then(|n| n.parse::<u32>().ok())
                    .ok_or_else(|| StoreError::BadMarker { path: self.path.clone(), marker: marker.clone() })?;
                if found > FORMAT_VERSION {
                    return Err(StoreError::TooNew { path: self.path.clone(), found });
                }
                if found < FORMAT_VERSION {
                    migrate::upgrade(self, found)?;
                    self.db.insert(FORMAT_KEY, format!("{FORMAT_PREFIX}{FORMAT_VERSION}").as_bytes())?;
                    self.db.flush()?;
                }
                Ok(())
            }
            // sled's default tree and the runs tree, both empty: a new store
            None if self.db.is_empty() && self.runs.is_empty() && self.db.tree_names().iter().all(|t| t == b"__sled__default" || t == RUNS_TREE) => {
                self.create_id()?;
                self.db.insert(FORMAT_KEY, format!("{FORMAT_PREFIX}{FORMAT_VERSION}").as_bytes())?;
                self.db.flush()?;
                Ok(())
            }
            None => Err(StoreError::Foreign { path: self.path.clone() }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes every write so far durable (and raises the identity file's marks to it).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.flush_and_witness()
    }

    fn get<T: DeserializeOwned>(&self, kind: u8, id: &str) -> Result<Option<T>, StoreError> {
        let k = key(kind, id);
        match self.db.get(&k)? {
            Some(v) => decode(&k, &v).map(Some),
            None => Ok(None),
        }
    }

    pub fn member(&self, id: &str) -> Result<Option<Member>, StoreError> {
        self.get(MEMBER, id)
    }

    /// A member's name, email and phone, without decoding the rest of the record.
    pub fn contact_fields(&self, id: &str) -> Result<Option<model::ContactFields>, StoreError> {
        self.get(MEMBER, id)
    }

    pub fn history(&self, id: &str) -> Result<Option<OrderHistory>, StoreError> {
        self.get(HISTORY, id)
    }

    pub fn events(&self, id: &str) -> Result<Option<EventHistory>, StoreError> {
        self.get(EVENTS, id)
    }

    pub fn product(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        self.get(PRODUCT, sku)
    }

    /// Stores a value of another module (mined rules) under `kind` + `id`, durably.
    pub fn put_record<T: Serialize>(&self, kind: RecordKind, id: &str, value: &T) -> Result<(), StoreError> {
        self.db.insert(key(kind.prefix(), id), encode(value))?;
        self.flush()
    }

    pub fn get_record<T: DeserializeOwned>(&self, kind: RecordKind, id: &str) -> Result<Option<T>, StoreError> {
        self.get(kind.prefix(), id)
    }

    /// Applies a batch atomically: all of it or nothing.
    pub(crate) fn apply(&self, batch: sled::Batch) -> Result<(), StoreError> {
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// How many members the last full scan saw: a capacity hint (0 before the first),
    /// so the scans that hold every member allocate once instead of doubling.
    pub fn member_count_hint(&self) -> usize {
        self.db.get(MEMBER_COUNT_HINT).ok().flatten().and_then(|v| v.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes) as usize
    }

    /// Records the count a full scan saw (not flushed: it is only a hint).
    pub fn note_member_count(&self, n: usize) {
        if self.member_count_hint() != n {
            let _ = self.db.insert(MEMBER_COUNT_HINT, &(n as u64).to_be_bytes()[..]);
        }
    }

    /// Every member in id order, raw: (member_id bytes, encoded Member).
    pub(crate) fn scan_members_raw(&self) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> {
        self.db.scan_prefix([MEMBER]).map(|r| r.map_err(StoreError::from))
    }

    /// A named random secret (32 bytes), generated and made durable on first use.
    pub fn secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let k = key(SECRET, name);
        if let Some(v) = self.db.get(&k)? {
            return Ok(v.to_vec());
        }
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StoreError::Sled(sled::Error::Io(std::io::Error::other(e.to_string()))))?;
        // a concurrent first use keeps whichever secret landed first
        let _ = self.db.compare_and_swap(&k, None as Option<&[u8]>, Some(&fresh[..]))?;
        self.db.flush()?;
        Ok(self.db.get(&k)?.map(|v| v.to_vec()).unwrap_or_else(|| fresh.to_vec()))
    }

    /// Every catalog product.
    pub fn scan_products(&self) -> impl Iterator<Item = Result<(String, Product), StoreError>> {
        self.db.scan_prefix([PRODUCT]).map(|r| {
            let (k, v) = r?;
            Ok((String::from_utf8_lossy(&k[1..]).into_owned(), decode(&k, &v)?))
        })
    }

    /// Every member's events, raw: (member_id bytes, encoded EventHistory).
    pub(crate) fn scan_events_raw(&self) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> {
        self.db.scan_prefix([EVENTS]).map(|r| r.map_err(StoreError::from))
    }

    /// Records that a member asked for no more messages on `channel` ("*": any). Durable
    /// when this returns; imports never touch it, so a later members.csv that still
    /// says opted_in=true does not undo it.
    pub fn suppress(&self, member: &str, channel: &str, at: crate::domain::Timestamp) -> Result<(), StoreError> {
        let k = key(SUPPRESSED, member);
        let mut list: Vec<(crate::domain::Text, crate::domain::Timestamp)> = self.get(SUPPRESSED, member)?.unwrap_or_default();
        if !list.iter().any(|(c, _)| c == channel) {
            list.push((channel.into(), at));
            self.db.insert(k, encode(&list))?;
            self.suppression_changed();
        }
        self.flush()
    }

    /// A number that changes whenever an unsubscribe, an address stopped or released, or
    /// a coupon code given is written through this store (in this process: sled lets one
    /// process open a store). A reader that saw the same number before has nothing new
    /// to read; it reads the number before the records, so a write racing its read
    /// changes the number again.
    pub fn suppression_generation(&self) -> u64 {
        self.suppression.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Called after the write, so a reader of the new number sees the record.
    pub(crate) fn suppression_changed(&self) {
        self.suppression.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The channels a member unsubscribed from, with when.
    pub fn suppressions(&self, member: &str) -> Result<Vec<(crate::domain::Text, crate::domain::Timestamp)>, StoreError> {
        Ok(self.get(SUPPRESSED, member)?.unwrap_or_default())
    }

    /// The channels a member unsubscribed from.
    pub fn suppressed(&self, member: &str) -> Result<Vec<crate::domain::Text>, StoreError> {
        let list: Vec<(crate::domain::Text, crate::domain::Timestamp)> = self.get(SUPPRESSED, member)?.unwrap_or_default();
        Ok(list.into_iter().map(|(c, _)| c).collect())
    }

    /// Every suppression: (member, channels).
    pub fn scan_suppressed(&self) -> impl Iterator<Item = Result<(String, Vec<crate::domain::Text>), StoreError>> {
        self.db.scan_prefix([SUPPRESSED]).map(|r| {
            let (k, v) = r?;
            let list: Vec<(crate::domain::Text, crate::domain::Timestamp)> = decode(&k, &v)?;
            Ok((String::from_utf8_lossy(&k[1..]).into_owned(), list.into_iter().map(|(c, _)| c).collect()))
        })
    }

    /// A member's contact log, oldest first.
    pub fn contacts(&self, id: &str) -> Result<Vec<Contact>, StoreError> {
        Ok(self.get::<ContactLog>(CONTACTS, id)?.map(|l| l.contacts).unwrap_or_default())
    }

    /// Every member's contact log, in member id order.
    pub fn scan_contacts(&self) -> impl Iterator<Item = Result<(String, ContactLog), StoreError>> {
        self.db.scan_prefix([CONTACTS]).map(|r| {
            let (k, v) = r?;
            Ok((String::from_utf8_lossy(&k[1..]).into_owned(), decode(&k, &v)?))
        })
    }

    /// Appends contacts to members' logs, atomically for the whole batch; entries older
    /// than `keep_days` before the newest are dropped.
    pub fn add_contacts(&self, contacts: &[(String, Contact)], keep_days: u32) -> Result<(), StoreError> {
        let mut by_member: std::collections::BTreeMap<&str, Vec<&Contact>> = Default::default();
        for (m, c) in contacts {
            by_member.entry(m).or_default().push(c);
        }
        let mut batch = sled::Batch::default();
        for (m, new) in by_member {
            let mut log: ContactLog = self.get(CONTACTS, m)?.unwrap_or_default();
            log.contacts.extend(new.into_iter().cloned());
            log.contacts.sort_by_key(|c| c.ts);
            let newest = log.contacts.last().map_or(0, |c| c.ts);
            log.contacts.retain(|c| newest - c.ts <= i64::from(keep_days) * 86_400);
            batch.insert(key(CONTACTS, m), encode(&log));
        }
        self.apply(batch)
    }

    /// Every order history in member id order.
    pub fn scan_histories(&self) -> impl Iterator<Item = Result<(String, OrderHistory), StoreError>> {
        self.db.scan_prefix([HISTORY]).map(|r| {
            let (k, v) = r?;
            Ok((String::from_utf8_lossy(&k[1..]).into_owned(), decode(&k, &v)?))
        })
    }
}

type RawPair = (sled::IVec, sled::IVec);

/// Feeds a raw prefix scan to `f` in chunks of 16,384 pairs, reading the next chunk on
/// another thread meanwhile (sled's scan and the caller's decoding overlap).
pub(crate) fn in_chunks(
    scan: impl Iterator<Item = Result<RawPair, StoreError>> + Send,
    mut f: impl FnMut(&[RawPair]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    const CHUNK: usize = 16_384;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<RawPair>, StoreError>>(4);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            for item in scan {
                match item {
                    Ok(kv) => chunk.push(kv),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
                if chunk.len() == CHUNK && tx.send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))).is_err() {
                    return;
                }
            }
            let _ = tx.send(Ok(chunk));
        });
        for chunk in rx {
            f(&chunk?)?;
        }
        Ok(())
    })
}

/// Records other stages keep in the store.
#[derive(Debug, Clone, Copy)]
pub enum RecordKind {
    /// Mined association rules, by scope.
    BundleRules,
    /// The fitted predicted-value model.
    FittedModel,
}

impl RecordKind {
    fn prefix(self) -> u8 {
        match self {
            RecordKind::BundleRules => BUNDLE_RULES,
            RecordKind::FittedModel => FITTED_MODEL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_foreign_and_newer_stores() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = dir.path().join("foreign");
        {
            let db = sled::open(&foreign).unwrap();
            db.insert(b"hello", b"world").unwrap();
            db.flush().unwrap();
        }
        // sled's IO threads let go of the lock a moment after the handle (a raw sled handle
        // is not one `Store::open` knows to wait for)
        let started = std::time::Instant::now();
        let opened = loop {
            match Store::open(&foreign, 16) {
                Err(StoreError::Locked { .. }) if started.elapsed() < std::time::Duration::from_secs(5) => std::thread::sleep(std::time::Duration::from_millis(10)),
                other => break other,
            }
        };
        assert!(matches!(opened, Err(StoreError::Foreign { .. })), "{:?}", opened.as_ref().err());

        let newer = dir.path().join("newer");
        {
            let s = Store::open(&newer, 16).unwrap();
            s.db.insert(FORMAT_KEY, b"rekindle-store 999".as_slice()).unwrap();
            s.flush().unwrap();
        }
        let err = Store::open(&newer, 16).err().expect("newer store refused");
        assert!(err.to_string().contains("format 999"), "{err}");

        let fresh = dir.path().join("fresh");
        drop(Store::open(&fresh, 16).unwrap());
        if let Err(e) = Store::open(&fresh, 16) { panic!("reopening our own store: {e:?}") }
    }
}
