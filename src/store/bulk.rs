//! Bulk loading of orders and events: each member's history is written once per import,
//! however large the file. Rows are gathered up to a memory budget, sorted by member and
//! spilled as sorted runs to a temporary folder beside the store; at the end the runs are
//! merged and every member is rewritten in one pass (a k-way merge, as databases bulk-load).
//!
//! The order-owner buckets touched by the import stay in memory and are written last, after
//! the members, so a crash part-way is repaired by importing the file again.

use super::import::{bucket_key, bucket_of, order_hash, OwnerBucket, WriteStats, MEMBERS_PER_BATCH, MEMBER_GROUP};
use super::model::{Event, EventHistory, Member, OrderLine};
use super::{decode, encode, key, Pairs, Store, StoreError, EVENTS, HISTORY, MEMBER};
use crate::domain::Text;
use crate::ingest::rows::{EventRow, OrderRow};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{de::DeserializeOwned, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};

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
    /// each), and needs no merge buffer.
    fn spill<T: MemberRow>(&mut self, store: &Store, rows: &mut Vec<T>) -> Result<(), StoreError> {
        let mut order: Vec<(crate::domain::Text, u32)> = rows.par_iter().enumerate().map(|(i, r)| (crate::domain::Text::from(r.member()), i as u32)).collect();
        order.par_sort_unstable();
        if self.dir.is_none() {
            let parent = store.path().parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            self.dir = Some(tempfile::Builder::new().prefix(".rekindle-import-").tempdir_in(parent).map_err(io)?);
        }
        let path = self.dir.as_ref().map(|d| d.path().join(format!("run-{}", self.files.len()))).unwrap_or_default();
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).map_err(io)?);
        let mut buf = Vec::new();
        for (_, i) in &order {
            buf.clear();
            buf = postcard::to_extend(&rows[*i as usize], buf).map_err(|e| io(std::io::Error::other(e)))?;
            w.write_all(&(buf.len() as u32).to_le_bytes()).map_err(io)?;
            w.write_all(&buf).map_err(io)?;
        }
        w.flush().map_err(io)?;
        rows.clear();
        tracing::debug!(run = self.files.len(), path = %path.display(), "spilled a sorted run");
        self.files.push(path);
        Ok(())
    }

    /// Every row of the runs and of `last` in member order.
    fn merge<T: MemberRow>(mut self, store: &Store, mut last: Vec<T>) -> Result<Merge<T>, StoreError> {
        if !self.files.is_empty() && !last.is_empty() {
            // on disk too, so the merge holds no large buffer
            self.spill(store, &mut last)?;
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
                m.heap.push(Reverse((Text::from(r.member()), i)));
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

/// A k-way merge of sorted runs.
struct Merge<T> {
    heads: Vec<Option<T>>,
    heap: BinaryHeap<Reverse<(Text, usize)>>,
    sources: Vec<Source<T>>,
    _dir: Option<tempfile::TempDir>,
}

impl<T: MemberRow> Merge<T> {
    fn next(&mut self) -> Result<Option<T>, StoreError> {
        let Some(Reverse((_, i))) = self.heap.pop() else { return Ok(None) };
        let next = self.sources[i].next()?;
        if let Some(r) = &next {
            self.heap.push(Reverse((Text::from(r.member()), i)));
        }
        Ok(std::mem::replace(&mut self.heads[i], next))
    }
}

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
    buckets: FxHashMap<u32, Vec<(u64, u32)>>,
    owners: Vec<Text>,
    owner_index: FxHashMap<Text, u32>,
    dirty: FxHashSet<u32>,
    /// Orders whose owner changed during this import, with their owner in the store before.
    changed: FxHashMap<Text, Option<Text>>,
}

impl<'s> OrderLoader<'s> {
    pub fn new(store: &'s Store) -> OrderLoader<'s> {
        OrderLoader {
            store,
            runs: Runs::new(),
            buckets: FxHashMap::default(),
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

    /// Records the owners of these rows' orders (the last line's member wins).
    fn note_owners(&mut self, rows: &[OrderRow]) -> Result<(), StoreError> {
        let hashes: Vec<u64> = rows.par_iter().map(|r| order_hash(&r.line.order_id)).collect();
        let missing: Vec<u32> = {
            let mut set: FxHashSet<u32> = FxHashSet::default();
            for h in &hashes {
                let b = bucket_of(*h);
                if !self.buckets.contains_key(&b) {
                    set.insert(b);
                }
            }
            set.into_iter().collect()
        };
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
            self.buckets.insert(b, compact);
        }
        for (r, &h) in rows.iter().zip(&hashes) {
            let m = self.intern(&r.member_id);
            let b = bucket_of(h);
            let bucket = self.buckets.get_mut(&b).expect("bucket loaded above");
            match bucket.binary_search_by_key(&h, |(bh, _)| *bh) {
                Ok(i) if bucket[i].1 != m => {
                    bucket[i].1 = m;
                    self.dirty.insert(b);
                    if !self.changed.contains_key(&r.line.order_id) {
                        // the owner in the store before this import (None: new in this import)
                        let before = self.store.order_owner(&r.line.order_id)?.map(Text::from);
                        self.changed.insert(r.line.order_id.clone(), before);
                    }
                }
                Ok(_) => {}
                Err(i) => {
                    bucket.insert(i, (h, m));
                    self.dirty.insert(b);
                }
            }
        }
        Ok(())
    }

    /// Takes a batch of rows (sorted and spilled to disk).
    pub fn add(&mut self, rows: &mut Vec<OrderRow>) -> Result<(), StoreError> {
        self.note_owners(rows)?;
        self.runs.spill(self.store, rows)
    }

    fn owner(&self, order: &str) -> Option<&Text> {
        let h = order_hash(order);
        let bucket = self.buckets.get(&bucket_of(h))?;
        bucket.binary_search_by_key(&h, |(bh, _)| *bh).ok().map(|i| &self.owners[bucket[i].1 as usize])
    }

    /// Writes everything: `last` are the rows not yet added.
    pub fn finish(mut self, mut last: Vec<OrderRow>) -> Result<WriteStats, StoreError> {
        self.store.bump_member_generation()?;
        self.note_owners(&last)?;
        let mut stats = WriteStats::default();
        // orders that changed owner against the store take their stored lines along
        let mut extra: FxHashMap<Text, Extra> = FxHashMap::default();
        let changed = std::mem::take(&mut self.changed);
        for (order, before) in &changed {
            let Some(old) = before else { continue };
            let new = self.owner(order).cloned().unwrap_or_else(|| old.clone());
            if new == *old {
                continue;
            }
            stats.moved_orders += 1;
            let mut hist = self.store.history(old)?.unwrap_or_default();
            extra.entry(new).or_default().incoming.extend(hist.take_orders(std::slice::from_ref(order)));
            extra.entry(old.clone()).or_default().remove_orders.push(order.clone());
        }
        let runs = std::mem::replace(&mut self.runs, Runs::new());
        let mut merge = runs.merge(self.store, std::mem::take(&mut last))?;
        let this = &self;
        stats += self.store.pipelined(2 * MEMBERS_PER_BATCH, |write| {
            let mut stats = WriteStats::default();
            let mut group: Vec<(Text, Vec<OrderLine>)> = Vec::with_capacity(MEMBER_GROUP);
            while let Some(row) = merge.next()? {
                if !changed.is_empty() && changed.contains_key(&row.line.order_id) {
                    if let Some(owner) = this.owner(&row.line.order_id) {
                        if *owner != row.member_id {
                            // its order now belongs to another member of this import
                            extra.entry(owner.clone()).or_default().incoming.push(row.line);
                            continue;
                        }
                    }
                }
                match group.last_mut() {
                    Some((m, lines)) if *m == row.member_id => lines.push(row.line),
                    _ => {
                        if group.len() == MEMBER_GROUP {
                            stats += this.prepare_members(std::mem::take(&mut group), &mut extra, write)?;
                        }
                        group.push((row.member_id, vec![row.line]));
                    }
                }
            }
            stats += this.prepare_members(group, &mut extra, write)?;
            let rest: Vec<(Text, Vec<OrderLine>)> = extra.keys().map(|m| (m.clone(), Vec::new())).collect();
            for chunk in rest.chunks(MEMBER_GROUP) {
                stats += this.prepare_members(chunk.to_vec(), &mut extra, write)?;
            }
            Ok(stats)
        })?;
        // the owner index last: a crash before this point is repaired by a re-import
        let pairs = self
            .dirty
            .iter()
            .map(|b| {
                let stored: OwnerBucket = self.buckets[b].iter().map(|(h, m)| (*h, self.owners[*m as usize].clone())).collect();
                (bucket_key(*b), encode(&stored))
            })
            .collect();
        self.store.apply_pairs(pairs, 256)?;
        Ok(stats)
    }

    /// Computes the new history and digest of a group of members and hands the writes over.
    fn prepare_members(
        &self,
        group: Vec<(Text, Vec<OrderLine>)>,
        extra: &mut FxHashMap<Text, Extra>,
        write: &mut dyn FnMut(Pairs) -> Result<(), StoreError>,
    ) -> Result<WriteStats, StoreError> {
        let work: Vec<(Text, Vec<OrderLine>, Extra)> =
            group.into_iter().map(|(m, lines)| { let e = extra.remove(&m).unwrap_or_default(); (m, lines, e) }).collect();
        let results = work
            .into_par_iter()
            .map(|(member_id, lines, extra)| {
                let mut hist = self.store.history(&member_id)?.unwrap_or_default();
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

impl<'s> EventLoader<'s> {
    pub fn new(store: &'s Store) -> EventLoader<'s> {
        EventLoader { store, runs: Runs::new() }
    }

    pub fn add(&mut self, rows: &mut Vec<EventRow>) -> Result<(), StoreError> {
        self.runs.spill(self.store, rows)
    }

    pub fn finish(self, last: Vec<EventRow>) -> Result<WriteStats, StoreError> {
        // events can create bare members
        self.store.bump_member_generation()?;
        let mut merge = self.runs.merge(self.store, last)?;
        let store = self.store;
        store.pipelined(MEMBERS_PER_BATCH, |write| {
            let mut stats = WriteStats::default();
            let mut group: Vec<(Text, Vec<Event>)> = Vec::with_capacity(MEMBER_GROUP);
            loop {
                let row = merge.next()?;
                let full = group.len() >= MEMBER_GROUP && row.as_ref().is_none_or(|r| group.last().is_some_and(|(m, _)| *m != r.member_id));
                if row.is_none() || full {
                    stats += prepare_events(store, std::mem::take(&mut group), write)?;
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
    let results = group
        .into_par_iter()
        .map(|(member_id, events)| {
            let k = key(EVENTS, &member_id);
            let mut hist: EventHistory = match store.db.get(&k)? {
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
