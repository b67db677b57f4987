//! Bulk loading of orders and events: each member's history is written once per import,
//! however large the file. Rows are gathered up to a memory budget, sorted by member and
//! spilled as sorted runs to a temporary folder beside the store; at the end the runs are
//! merged and every member is rewritten in one pass (a k-way merge, as databases bulk-load).
//!
//! The order-owner buckets touched by the import stay in memory and are written last, after
//! the members, so a crash part-way is repaired by importing the file again.

use super::import::{bucket_key, bucket_of, order_hash, OwnerBucket, WriteStats, MEMBERS_PER_BATCH, MEMBER_GROUP, ORDER_BUCKETS};
use super::model::{Event, EventHistory, Member, OrderLine};
use super::{decode, encode, key, Pairs, Store, StoreError, EVENTS, HISTORY, MEMBER};
use crate::domain::{prefix_16, Text};
use super::rows::{EventRow, OrderRow};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{de::DeserializeOwned, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, Read, Write};

/// A row that belongs to one member.
pub trait MemberRow: Serialize + DeserializeOwned + Send + Sync {
    fn member(&self) -> &str;
}

impl MemberRow for OrderRow {
    fn member(&self) -> &str {
        &self.member_id
    }
}

impl MemberRow for EventRow {
    fn member(&self) -> &str {
        &self.member_id
    }
}

/// A bulk loader takes batches of rows (sorted and spilled to disk) before writing them all.
pub trait BulkLoader: Send {
    type Row: MemberRow;
    fn add(&mut self, rows: &mut Vec<Self::Row>) -> Result<(), StoreError>;
}

/// A bulk loader on a thread of its own: a batch is sorted and spilled while the reader
/// fills the next. At most two batches are in memory: the one being filled and the one
/// being spilled (its buffer comes back to be filled again).
pub struct Background<'scope, L: BulkLoader> {
    batches: std::sync::mpsc::SyncSender<Vec<L::Row>>,
    emptied: std::sync::mpsc::Receiver<Vec<L::Row>>,
    worker: Option<std::thread::ScopedJoinHandle<'scope, Result<L, StoreError>>>,
}

impl<'scope, L: BulkLoader + 'scope> Background<'scope, L> {
    pub fn spawn<'env>(scope: &'scope std::thread::Scope<'scope, 'env>, mut loader: L) -> Self {
        let (batches, incoming) = std::sync::mpsc::sync_channel::<Vec<L::Row>>(0);
        let (give_back, emptied) = std::sync::mpsc::channel();
        let worker = scope.spawn(move || {
            for mut rows in incoming {
                loader.add(&mut rows)?;
                let _ = give_back.send(rows);
            }
            Ok(loader)
        });
        Background { batches, emptied, worker: Some(worker) }
    }

    /// Hands `rows` over (waiting while the previous batch is still being spilled) and
    /// leaves an empty buffer in its place. An error of an earlier batch comes back here.
    pub fn add(&mut self, rows: &mut Vec<L::Row>) -> Result<(), StoreError> {
        let spare = self.emptied.try_recv().unwrap_or_else(|_| Vec::with_capacity(rows.capacity()));
        if self.batches.send(std::mem::replace(rows, spare)).is_err() {
            // the worker stopped on an error
            return Err(join(self.worker.take()).err().unwrap_or(StoreError::WriterGone));
        }
        Ok(())
    }

    /// Waits for the batches handed over and gives the loader back.
    pub fn finish(self) -> Result<L, StoreError> {
        let Background { batches, worker, .. } = self;
        drop(batches);
        join(worker)
    }
}

fn join<L>(worker: Option<std::thread::ScopedJoinHandle<'_, Result<L, StoreError>>>) -> Result<L, StoreError> {
    worker.and_then(|w| w.join().ok()).unwrap_or(Err(StoreError::WriterGone))
}

/// Whether an id's 16-byte prefix ([`prefix_16`]) leaves its order to the full text: ids
/// hold no NUL (no control characters), so prefixes compare as the ids do, exactly for ids
/// shorter than 16 bytes; a prefix whose last byte is not zero may belong to a longer id.
fn undecided(prefix: u128) -> bool {
    prefix & 0xff != 0
}

/// Sorted runs of rows on disk.
struct Runs {
    dir: Option<tempfile::TempDir>,
    files: Vec<std::path::PathBuf>,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Spill(e)
}

impl Runs {
    fn new() -> Runs {
        Runs { dir: None, files: Vec::new() }
    }

    /// Sorts `rows` by member (stable: file order within a member) and writes them out.
    /// The sort moves (member id, position) keys, not the rows (over a hundred bytes
    /// each), and needs no merge buffer; the rows are encoded on all cores.
    fn spill<T: MemberRow>(&mut self, store: &Store, rows: &[T]) -> Result<(), StoreError> {
        let mut order: Vec<(u128, u32)> = rows.par_iter().enumerate().map(|(i, r)| (prefix_16(r.member()), i as u32)).collect();
        order.par_sort_unstable_by(|a, b| {
            let long = a.0 == b.0 && undecided(a.0);
            a.0.cmp(&b.0).then_with(|| if long { rows[a.1 as usize].member().cmp(rows[b.1 as usize].member()) } else { std::cmp::Ordering::Equal }).then(a.1.cmp(&b.1))
        });
        if self.dir.is_none() {
            let parent = store.path().parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            self.dir = Some(tempfile::Builder::new().prefix(".rekindle-import-").tempdir_in(parent).map_err(io)?);
        }
        let path = self.dir.as_ref().map(|d| d.path().join(format!("run-{}", self.files.len()))).unwrap_or_default();
        let encoded: Vec<Vec<u8>> = order
            .par_chunks(1 << 14)
            .map(|part| {
                let mut buf = Vec::with_capacity(part.len() * 64);
                for (_, i) in part {
                    let at = buf.len();
                    buf.extend_from_slice(&[0; 4]);
                    buf = postcard::to_extend(&rows[*i as usize], buf).map_err(|e| io(std::io::Error::other(e)))?;
                    let len = (buf.len() - at - 4) as u32;
                    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
                }
                Ok(buf)
            })
            .collect::<Result<_, StoreError>>()?;
        let mut w = File::create(&path).map_err(io)?;
        for part in &encoded {
            w.write_all(part).map_err(io)?;
        }
        tracing::debug!(run = self.files.len(), path = %path.display(), "spilled a sorted run");
        self.files.push(path);
        Ok(())
    }

    /// Every row of the runs and of `last` in member order.
    fn merge<T: MemberRow>(mut self, store: &Store, mut last: Vec<T>) -> Result<Merge<T>, StoreError> {
        if !self.files.is_empty() && !last.is_empty() {
            // on disk too, so the merge holds no large buffer
            self.spill(store, &last)?;
            last = Vec::new();
        }
        last.par_sort_by(|a, b| a.member().cmp(b.member()));
        let mut sources: Vec<Source<T>> = Vec::new();
        for f in &self.files {
            sources.push(Source::File(BufReader::with_capacity(1 << 20, File::open(f).map_err(io)?), Vec::new()));
        }
        sources.push(Source::Memory(last.into_iter()));
        let mut m = Merge { heads: Vec::new(), heap: BinaryHeap::new(), sources, _dir: self.dir };
        for i in 0..m.sources.len() {
            let head = m.sources[i].next()?;
            m.heads.push(head);
            if let Some(r) = &m.heads[i] {
                m.heap.push(Reverse(merge_key(r.member(), i)));
            }
        }
        Ok(m)
    }
}

enum Source<T> {
    File(BufReader<File>, Vec<u8>),
    Memory(std::vec::IntoIter<T>),
}

impl<T: MemberRow> Source<T> {
    fn next(&mut self) -> Result<Option<T>, StoreError> {
        match self {
            Source::Memory(it) => Ok(it.next()),
            Source::File(r, buf) => {
                let mut len = [0u8; 4];
                match r.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(io(e)),
                }
                buf.resize(u32::from_le_bytes(len) as usize, 0);
                r.read_exact(buf).map_err(io)?;
                decode(b"spill run", buf).map(Some)
            }
        }
    }
}

/// A row's place in the merge: by member, then by run (file order). The member's text is
/// kept only when its prefix does not decide (ids over 16 bytes).
fn merge_key(member: &str, source: usize) -> (u128, Text, usize) {
    let prefix = prefix_16(member);
    (prefix, if undecided(prefix) { Text::from(member) } else { Text::default() }, source)
}

/// A k-way merge of sorted runs.
struct Merge<T> {
    heads: Vec<Option<T>>,
    heap: BinaryHeap<Reverse<(u128, Text, usize)>>,
    sources: Vec<Source<T>>,
    _dir: Option<tempfile::TempDir>,
}

impl<T: MemberRow> Merge<T> {
    fn next(&mut self) -> Result<Option<T>, StoreError> {
        let Some(Reverse((_, _, i))) = self.heap.pop() else { return Ok(None) };
        let next = self.sources[i].next()?;
        if let Some(r) = &next {
            self.heap.push(Reverse(merge_key(r.member(), i)));
        }
        Ok(std::mem::replace(&mut self.heads[i], next))
    }
}

/// Merges a batch's (hash, owner, row) entries, sorted by (hash, row), into a bucket's
/// (hash, owner) list sorted by hash: the last entry of a hash owns the order. Returns the
/// new list, whether it differs, and a row of each order that named more than one owner.
fn merge_owners(old: BucketOwners, new: OwnerGroup) -> (BucketOwners, bool, Vec<u32>) {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut dirty, mut changed) = (false, Vec::new());
    let mut old = old.into_iter().peekable();
    for group in new.chunk_by(|a, b| a.0 == b.0) {
        let h = group[0].0;
        while let Some(&(oh, om)) = old.peek() {
            if oh >= h {
                break;
            }
            out.push((oh, om));
            old.next();
        }
        let existing = old.next_if(|&(oh, _)| oh == h).map(|(_, m)| m);
        let first = existing.unwrap_or(group[0].1);
        let last = group[group.len() - 1];
        if group.iter().any(|e| e.1 != first) {
            changed.push(last.2);
        }
        dirty |= existing != Some(last.1);
        out.push((h, last.1));
    }
    out.extend(old);
    (out, dirty, changed)
}

impl Store {
    /// Whether any `kind` record lies between the least and the greatest of these members.
    fn any_in_range<'a>(&self, kind: u8, members: impl Iterator<Item = &'a Text>) -> Result<bool, StoreError> {
        let (mut lo, mut hi): (Option<&Text>, Option<&Text>) = (None, None);
        for m in members {
            lo = Some(lo.map_or(m, |l| l.min(m)));
            hi = Some(hi.map_or(m, |h| h.max(m)));
        }
        let (Some(lo), Some(hi)) = (lo, hi) else { return Ok(false) };
        Ok(self.db.range(key(kind, lo)..=key(kind, hi)).next().transpose()?.is_some())
    }
}

/// An owner bucket in memory: (order hash, index into the loader's owners) sorted by hash.
type BucketOwners = Vec<(u64, u32)>;

/// One bucket's orders of this import: (order hash, owner index, row index) sorted by hash.
type OwnerGroup<'a> = &'a [(u64, u32, u32)];

/// A member's rows of this import, with the orders moved in or out.
type MemberWork = (Text, Vec<OrderLine>, Extra);

/// What a member gets beyond its own rows: orders moved in or out.
#[derive(Default)]
struct Extra {
    incoming: Vec<OrderLine>,
    remove_orders: Vec<Text>,
}

/// An import of orders in progress.
pub struct OrderLoader<'s> {
    store: &'s Store,
    runs: Runs,
    /// Every owner bucket the import touched, as it will be after the import: (order
    /// hash, index into `owners`) sorted by hash.
    buckets: Vec<Option<BucketOwners>>,
    owners: Vec<Text>,
    owner_index: FxHashMap<Text, u32>,
    dirty: FxHashSet<u32>,
    /// Orders whose owner changed during this import, with their owner in the store before.
    changed: FxHashMap<Text, Option<Text>>,
}

impl BulkLoader for OrderLoader<'_> {
    type Row = OrderRow;

    fn add(&mut self, rows: &mut Vec<OrderRow>) -> Result<(), StoreError> {
        // the owners and the spill only read the rows: both at once
        let mut runs = std::mem::replace(&mut self.runs, Runs::new());
        let store = self.store;
        let (owners, spilled) = rayon::join(|| self.note_owners(rows), || runs.spill(store, rows));
        self.runs = runs;
        rows.clear();
        owners.and(spilled)
    }
}

impl<'s> OrderLoader<'s> {
    pub fn new(store: &'s Store) -> OrderLoader<'s> {
        OrderLoader {
            store,
            runs: Runs::new(),
            buckets: vec![None; ORDER_BUCKETS as usize],
            owners: Vec::new(),
            owner_index: FxHashMap::default(),
            dirty: FxHashSet::default(),
            changed: FxHashMap::default(),
        }
    }

    fn intern(&mut self, member: &Text) -> u32 {
        if let Some(&i) = self.owner_index.get(member) {
            return i;
        }
        self.owners.push(member.clone());
        self.owner_index.insert(member.clone(), self.owners.len() as u32 - 1);
        self.owners.len() as u32 - 1
    }

    /// Records the owners of these rows' orders (the last line's member wins). Each
    /// bucket touched takes the batch's entries in one sorted merge.
    fn note_owners(&mut self, rows: &[OrderRow]) -> Result<(), StoreError> {
        let hashes: Vec<u64> = rows.par_iter().map(|r| order_hash(&r.line.order_id)).collect();
        // (hash, owner, row): one entry per run of lines of one order and member (an
        // order's lines usually come together)
        let mut entries: Vec<(u64, u32, u32)> = Vec::with_capacity(rows.len() / 2 + 1);
        let mut owner = 0;
        for (i, (r, &h)) in rows.iter().zip(&hashes).enumerate() {
            let same_member = i > 0 && rows[i - 1].member_id == r.member_id;
            if same_member && hashes[i - 1] == h {
                continue;
            }
            if !same_member {
                owner = self.intern(&r.member_id);
            }
            entries.push((h, owner, i as u32));
        }
        entries.par_sort_unstable_by_key(|&(h, _, i)| (bucket_of(h), h, i));
        let groups: Vec<&[(u64, u32, u32)]> = entries.chunk_by(|a, b| bucket_of(a.0) == bucket_of(b.0)).collect();
        let missing: Vec<u32> = groups.iter().map(|g| bucket_of(g[0].0)).filter(|&b| self.buckets[b as usize].is_none()).collect();
        let loaded: Vec<(u32, OwnerBucket)> = missing
            .into_par_iter()
            .map(|b| {
                let k = bucket_key(b);
                Ok((b, match self.store.db.get(&k)? {
                    Some(v) => decode(&k, &v)?,
                    None => Vec::new(),
                }))
            })
            .collect::<Result<_, StoreError>>()?;
        for (b, stored) in loaded {
            let compact = stored.into_iter().map(|(h, m)| (h, self.intern(&m))).collect();
            self.buckets[b as usize] = Some(compact);
        }
        let work: Vec<(u32, BucketOwners, OwnerGroup)> = groups
            .into_iter()
            .map(|g| {
                let b = bucket_of(g[0].0);
                (b, self.buckets[b as usize].take().unwrap_or_default(), g)
            })
            .collect();
        let merged: Vec<(u32, BucketOwners, bool, Vec<u32>)> = work.into_par_iter().map(|(b, old, new)| { let (m, dirty, changed) = merge_owners(old, new); (b, m, dirty, changed) }).collect();
        for (b, bucket, dirty, changed) in merged {
            self.buckets[b as usize] = Some(bucket);
            if dirty {
                self.dirty.insert(b);
            }
            for row in changed {
                let order = &rows[row as usize].line.order_id;
                if !self.changed.contains_key(order) {
                    // the owner in the store before this import (None: new in this import)
                    let before = self.store.order_owner(order)?.map(Text::from);
                    self.changed.insert(order.clone(), before);
                }
            }
        }
        Ok(())
    }


    fn owner(&self, order: &str) -> Option<&Text> {
        let h = order_hash(order);
        let bucket = self.buckets[bucket_of(h) as usize].as_ref()?;
        bucket.binary_search_by_key(&h, |(bh, _)| *bh).ok().map(|i| &self.owners[bucket[i].1 as usize])
    }

    /// Writes everything: `last` are the rows not yet added. `written` hears how many rows
    /// are written so far.
    pub fn finish(mut self, mut last: Vec<OrderRow>, written: &dyn Fn(u64)) -> Result<WriteStats, StoreError> {
        if self.runs.files.is_empty() && last.is_empty() {
            return Ok(WriteStats::default());
        }
        let started = std::time::Instant::now();
        self.store.bump_member_generation()?;
        self.note_owners(&last)?;
        let mut stats = WriteStats::default();
        // orders that changed owner against the store take their stored lines along; each
        // former owner's history is read once, however many of its orders moved
        let mut extra: FxHashMap<Text, Extra> = FxHashMap::default();
        let mut moving: FxHashMap<&Text, FxHashMap<&Text, Text>> = FxHashMap::default();
        let changed = std::mem::take(&mut self.changed);
        for (order, before) in &changed {
            let Some(old) = before else { continue };
            let new = self.owner(order).cloned().unwrap_or_else(|| old.clone());
            if new != *old {
                moving.entry(old).or_default().insert(order, new);
            }
        }
        for (old, orders) in moving {
            stats.moved_orders += orders.len() as u64;
            let ids: Vec<Text> = orders.keys().map(|o| (*o).clone()).collect();
            let mut hist = self.store.history(old)?.unwrap_or_default();
            for line in hist.take_orders(&ids) {
                if let Some(new) = orders.get(&line.order_id) {
                    extra.entry(new.clone()).or_default().incoming.push(line);
                }
            }
            extra.entry(old.clone()).or_default().remove_orders.extend(ids);
        }
        let runs = std::mem::replace(&mut self.runs, Runs::new());
        tracing::debug!(runs = runs.files.len(), "merging the sorted runs and writing the members");
        let mut merge = runs.merge(self.store, std::mem::take(&mut last))?;
        let this = &self;
        let (merged_tx, merged_rx) = std::sync::mpsc::sync_channel::<Result<Vec<MemberWork>, StoreError>>(2);
        let (result, mut extra) = std::thread::scope(|scope| {
            // the merge runs on its own thread, a group ahead of the preparing and writing
            let merger = scope.spawn(move || {
                let mut group: Vec<MemberWork> = Vec::with_capacity(MEMBER_GROUP);
                loop {
                    let row = match merge.next() {
                        Ok(Some(row)) => row,
                        Ok(None) => break,
                        Err(e) => {
                            let _ = merged_tx.send(Err(e));
                            return extra;
                        }
                    };
                    if !changed.is_empty() && changed.contains_key(&row.line.order_id) {
                        if let Some(owner) = this.owner(&row.line.order_id).filter(|o| **o != row.member_id) {
                            // its order now belongs to another member of this import
                            match group.binary_search_by(|(m, _, _)| m.cmp(owner)) {
                                Ok(i) => group[i].2.incoming.push(row.line),
                                Err(_) => extra.entry(owner.clone()).or_default().incoming.push(row.line),
                            }
                            continue;
                        }
                    }
                    match group.last_mut() {
                        Some((m, lines, _)) if *m == row.member_id => lines.push(row.line),
                        _ => {
                            if group.len() == MEMBER_GROUP && merged_tx.send(Ok(std::mem::take(&mut group))).is_err() {
                                return extra;
                            }
                            let moved = extra.remove(&row.member_id).unwrap_or_default();
                            group.push((row.member_id, vec![row.line], moved));
                        }
                    }
                }
                let _ = merged_tx.send(Ok(group));
                extra
            });
            let result = self.store.pipelined(2 * MEMBERS_PER_BATCH, |write| {
                let (mut stats, mut rows) = (WriteStats::default(), 0);
                for group in merged_rx {
                    let group = group?;
                    rows += group.iter().map(|(_, lines, e)| (lines.len() + e.incoming.len()) as u64).sum::<u64>();
                    stats += this.prepare_members(group, write)?;
                    written(rows);
                }
                Ok(stats)
            });
            (result, merger.join().expect("the merge thread does not panic"))
        });
        stats += result?;
        // members whose moved lines came after they were written (or who have no rows of
        // their own): read again now that their writes are applied
        let rest: Vec<MemberWork> = extra.drain().map(|(m, e)| (m, Vec::new(), e)).collect();
        if !rest.is_empty() {
            stats += self.store.pipelined(2 * MEMBERS_PER_BATCH, |write| {
                let mut stats = WriteStats::default();
                let mut rest = rest.into_iter();
                loop {
                    let group: Vec<MemberWork> = rest.by_ref().take(MEMBER_GROUP).collect();
                    if group.is_empty() {
                        return Ok(stats);
                    }
                    stats += self.prepare_members(group, write)?;
                }
            })?;
        }
        tracing::debug!(secs = started.elapsed().as_secs_f64(), "members written");
        // the owner index last: a crash before this point is repaired by a re-import
        let pairs = self
            .dirty
            .iter()
            .map(|b| {
                let stored: OwnerBucket = self.buckets[*b as usize].iter().flatten().map(|(h, m)| (*h, self.owners[*m as usize].clone())).collect();
                (bucket_key(*b), encode(&stored))
            })
            .collect();
        self.store.apply_pairs(pairs, 256)?;
        tracing::debug!(buckets = self.dirty.len(), secs = started.elapsed().as_secs_f64(), "order owners written");
        Ok(stats)
    }

    /// Computes the new history and digest of a group of members and hands the writes over.
    fn prepare_members(&self, group: Vec<MemberWork>, write: &mut dyn FnMut(Pairs) -> Result<(), StoreError>) -> Result<WriteStats, StoreError> {
        // a group none of whose members has a stored history (a first import) skips the lookups
        let any_history = self.store.any_in_range(HISTORY, group.iter().map(|(m, _, _)| m))?;
        let results = group
            .into_par_iter()
            .map(|(member_id, lines, extra)| {
                let mut hist = if any_history { self.store.history(&member_id)?.unwrap_or_default() } else { Default::default() };
                if !extra.remove_orders.is_empty() {
                    hist.take_orders(&extra.remove_orders);
                }
                // moved-in lines first, so this import's own lines replace them
                hist.merge(extra.incoming.into_iter().chain(lines));
                let existing = self.store.member(&member_id)?;
                let is_new = existing.is_none();
                let mut member = existing.unwrap_or_default();
                member.digest = hist.digest();
                Ok(((key(HISTORY, &member_id), encode(&hist)), (key(MEMBER, &member_id), encode(&member)), is_new))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut stats = WriteStats::default();
        let mut pairs = Vec::with_capacity(results.len() * 2);
        for (h, m, is_new) in results {
            stats.new_bare_members += u64::from(is_new);
            pairs.push(h);
            pairs.push(m);
        }
        write(pairs)?;
        Ok(stats)
    }
}

/// An import of events in progress.
pub struct EventLoader<'s> {
    store: &'s Store,
    runs: Runs,
}

impl BulkLoader for EventLoader<'_> {
    type Row = EventRow;

    fn add(&mut self, rows: &mut Vec<EventRow>) -> Result<(), StoreError> {
        self.runs.spill(self.store, rows)?;
        rows.clear();
        Ok(())
    }
}

impl<'s> EventLoader<'s> {
    pub fn new(store: &'s Store) -> EventLoader<'s> {
        EventLoader { store, runs: Runs::new() }
    }

    pub fn finish(self, last: Vec<EventRow>, written: &dyn Fn(u64)) -> Result<WriteStats, StoreError> {
        if self.runs.files.is_empty() && last.is_empty() {
            return Ok(WriteStats::default());
        }
        // events can create bare members
        self.store.bump_member_generation()?;
        let mut merge = self.runs.merge(self.store, last)?;
        let store = self.store;
        store.pipelined(MEMBERS_PER_BATCH, |write| {
            let (mut stats, mut rows) = (WriteStats::default(), 0);
            let mut group: Vec<(Text, Vec<Event>)> = Vec::with_capacity(MEMBER_GROUP);
            loop {
                let row = merge.next()?;
                let full = group.len() >= MEMBER_GROUP && row.as_ref().is_none_or(|r| group.last().is_some_and(|(m, _)| *m != r.member_id));
                if row.is_none() || full {
                    rows += group.iter().map(|(_, evs)| evs.len() as u64).sum::<u64>();
                    stats += prepare_events(store, std::mem::take(&mut group), write)?;
                    written(rows);
                }
                let Some(row) = row else { break };
                match group.last_mut() {
                    Some((m, evs)) if *m == row.member_id => evs.push(row.event),
                    _ => group.push((row.member_id, vec![row.event])),
                }
            }
            Ok(stats)
        })
    }
}

fn prepare_events(
    store: &Store,
    group: Vec<(Text, Vec<Event>)>,
    write: &mut dyn FnMut(Pairs) -> Result<(), StoreError>,
) -> Result<WriteStats, StoreError> {
    let any_events = store.any_in_range(EVENTS, group.iter().map(|(m, _)| m))?;
    let results = group
        .into_par_iter()
        .map(|(member_id, events)| {
            let k = key(EVENTS, &member_id);
            let mut hist: EventHistory = match any_events.then(|| store.db.get(&k)).transpose()?.flatten() {
                Some(v) => decode(&k, &v)?,
                None => EventHistory::default(),
            };
            hist.merge(events);
            let bare = match store.db.get(key(MEMBER, &member_id))? {
                Some(_) => None,
                None => Some((key(MEMBER, &member_id), encode(&Member::default()))),
            };
            Ok(((k, encode(&hist)), bare))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut stats = WriteStats::default();
    let mut pairs = Vec::with_capacity(results.len());
    for (e, bare) in results {
        pairs.push(e);
        if let Some(m) = bare {
            stats.new_bare_members += 1;
            pairs.push(m);
        }
    }
    write(pairs)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::{merge_owners, undecided};
    use crate::domain::prefix_16 as id_prefix;

    #[test]
    fn id_prefixes_order_as_the_ids_do() {
        let ids = ["", "a", "a b", "ab", "m0103046", "m0103046x", "z", "0123456789abcdef", "0123456789abcdefX", "0123456789abcdeg", "é", "ä1"];
        for a in ids {
            for b in ids {
                let long = id_prefix(a) == id_prefix(b) && undecided(id_prefix(a));
                if !long {
                    assert_eq!(id_prefix(a).cmp(&id_prefix(b)), a.cmp(b), "{a:?} vs {b:?}");
                } else {
                    assert!(a.len() >= 16 && b.len() >= 16, "{a:?} vs {b:?}: equal prefixes are long ids or the same id");
                }
            }
        }
    }

    #[test]
    fn the_last_entry_owns_the_order_and_any_other_owner_marks_it_changed() {
        let stored = vec![(10, 0), (20, 1), (30, 2)];
        // (hash, owner, row), sorted by (hash, row)
        let batch = [(5, 7, 0), (20, 1, 1), (30, 3, 2), (30, 2, 5), (40, 4, 3), (40, 5, 4), (50, 6, 6), (50, 6, 7)];
        let (merged, dirty, changed) = merge_owners(stored.clone(), &batch);
        assert_eq!(merged, vec![(5, 7), (10, 0), (20, 1), (30, 2), (40, 5), (50, 6)]);
        assert!(dirty);
        assert_eq!(changed, vec![5, 4], "30 went 2 -> 3 -> 2 (back to its stored owner, still a change to look at); 40 went 4 -> 5");
        let (same, dirty, changed) = merge_owners(stored.clone(), &[(20, 1, 0), (30, 2, 1)]);
        assert_eq!((same, dirty, changed), (stored, false, vec![]), "a re-import writes nothing");
    }
}
