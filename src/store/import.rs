//! Writing imported rows. Rows are gathered in memory up to a budget, grouped by member,
//! and each touched member's history and digest is rewritten once per flush: sled pays per
//! write, so a member with a thousand lines costs one write, not a thousand.
//!
//! Orders: every order has one owner, kept in a bucketed index (`O` bucket -> sorted
//! (order_id, member_id) pairs, [`ORDER_BUCKETS`] buckets). A line that names another
//! member than the stored owner moves the whole order (the latest word wins), so a member's
//! history never holds another member's order. Members are written before the index, so a
//! crash in between is repaired by importing the file again.
//!
//! Each sled batch (a few hundred members with their history and digest) is atomic.

use super::model::{Event, EventHistory, Member, OrderLine, Product};
use super::{decode, encode, key, Store, StoreError, EVENTS, HISTORY, MEMBER, ORDER_OWNER, PRODUCT};
use crate::domain::Text;
use crate::ingest::rows::{EventRow, MemberRow, OrderRow};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHasher};
use std::hash::{Hash, Hasher};

/// Buckets of the order-owner index (part of the store format).
pub const ORDER_BUCKETS: u32 = 8192;
/// Members processed together (in parallel) before their writes are applied.
const MEMBER_GROUP: usize = 16_384;
/// Members per atomic sled batch.
const MEMBERS_PER_BATCH: usize = 512;

/// What a flush changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteStats {
    /// Orders whose owner changed to another member.
    pub moved_orders: u64,
    /// Bare members created for orders or events of an unknown member.
    pub new_bare_members: u64,
}

impl std::ops::AddAssign for WriteStats {
    fn add_assign(&mut self, o: WriteStats) {
        self.moved_orders += o.moved_orders;
        self.new_bare_members += o.new_bare_members;
    }
}

fn bucket_of(order_id: &str) -> u32 {
    let mut h = FxHasher::default();
    order_id.hash(&mut h);
    (h.finish() % u64::from(ORDER_BUCKETS)) as u32
}

fn bucket_key(b: u32) -> Vec<u8> {
    let mut k = vec![ORDER_OWNER];
    k.extend_from_slice(&b.to_be_bytes());
    k
}

/// (order_id, member_id) pairs sorted by order_id.
type OwnerBucket = Vec<(String, String)>;

impl Store {
    /// Applies (key, value) writes in atomic batches of `per_batch` pairs.
    fn apply_pairs(&self, pairs: Vec<(Vec<u8>, Vec<u8>)>, per_batch: usize) -> Result<(), StoreError> {
        for group in pairs.chunks(per_batch.max(1)) {
            let mut batch = sled::Batch::default();
            for (k, v) in group {
                batch.insert(k.as_slice(), v.as_slice());
            }
            self.apply(batch)?;
        }
        Ok(())
    }

    /// Upserts members; columns absent from the file keep their stored values.
    pub fn write_members(&self, rows: &mut Vec<MemberRow>) -> Result<WriteStats, StoreError> {
        let mut latest: FxHashMap<String, Vec<MemberRow>> = FxHashMap::default();
        for r in rows.drain(..) {
            latest.entry(r.id.clone()).or_default().push(r);
        }
        let mut ids: Vec<(String, Vec<MemberRow>)> = latest.into_iter().collect();
        ids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for group in ids.chunks(MEMBER_GROUP) {
            let pairs = group
                .par_iter()
                .map(|(id, rows)| {
                    let mut m = self.member(id)?.unwrap_or_default();
                    for r in rows {
                        r.apply_to(&mut m);
                    }
                    Ok((key(MEMBER, id), encode(&m)))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            self.apply_pairs(pairs, MEMBERS_PER_BATCH)?;
        }
        Ok(WriteStats::default())
    }

    /// Upserts catalog products.
    pub fn write_products(&self, rows: &mut Vec<(String, Product)>) -> Result<WriteStats, StoreError> {
        let pairs = rows.drain(..).map(|(sku, p)| (key(PRODUCT, &sku), encode(&p))).collect();
        self.apply_pairs(pairs, 1024)?;
        Ok(WriteStats::default())
    }

    /// Upserts order lines by (order_id, sku), moves orders that changed owner, and
    /// rebuilds the touched members' digests.
    pub fn write_orders(&self, rows: &mut Vec<OrderRow>) -> Result<WriteStats, StoreError> {
        let mut stats = WriteStats::default();
        // the final owner of each order in these rows: the last line's member
        let mut owner: FxHashMap<&str, &str> = FxHashMap::default();
        for r in rows.iter() {
            owner.insert(&r.line.order_id, &r.member_id);
        }
        let mut by_bucket: FxHashMap<u32, Vec<(&str, &str)>> = FxHashMap::default();
        for (o, m) in &owner {
            by_bucket.entry(bucket_of(o)).or_default().push((o, m));
        }
        // read the owner buckets and find the orders that change owner
        let buckets: Vec<(u32, OwnerBucket, Vec<(String, String)>)> = by_bucket
            .into_par_iter()
            .map(|(b, orders)| {
                let k = bucket_key(b);
                let mut bucket: OwnerBucket = match self.db.get(&k)? {
                    Some(v) => decode(&k, &v)?,
                    None => Vec::new(),
                };
                let mut moves = Vec::new();
                for (o, m) in orders {
                    match bucket.binary_search_by(|(bo, _)| bo.as_str().cmp(o)) {
                        Ok(i) if bucket[i].1 != m => {
                            moves.push((o.to_string(), std::mem::replace(&mut bucket[i].1, m.to_string())));
                        }
                        Ok(_) => {}
                        Err(i) => bucket.insert(i, (o.to_string(), m.to_string())),
                    }
                }
                Ok((b, bucket, moves))
            })
            .collect::<Result<_, StoreError>>()?;

        #[derive(Default)]
        struct Work {
            incoming: Vec<OrderLine>,
            remove_orders: Vec<Text>,
        }
        let mut work: FxHashMap<String, Work> = FxHashMap::default();
        for (_, _, moves) in &buckets {
            for (order, old) in moves {
                stats.moved_orders += 1;
                let new_owner = owner[order.as_str()].to_string();
                let mut hist = self.history(old)?.unwrap_or_default();
                let moved = hist.take_orders(&[Text::from(order.as_str())]);
                // the moved lines go first, so lines of this import replace them
                work.entry(new_owner).or_default().incoming.extend(moved);
                work.entry(old.clone()).or_default().remove_orders.push(order.as_str().into());
            }
        }
        let owner: FxHashMap<Text, String> = owner.into_iter().map(|(o, m)| (o.into(), m.to_string())).collect();
        for r in rows.drain(..) {
            let m = owner.get(&r.line.order_id).cloned().unwrap_or_else(|| r.member_id.to_string());
            work.entry(m).or_default().incoming.push(r.line);
        }
        let mut members: Vec<(String, Work)> = work.into_iter().collect();
        // descending, so each group splits off the end in id order
        members.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        while !members.is_empty() {
            let mut group = members.split_off(members.len().saturating_sub(MEMBER_GROUP));
            group.reverse();
            let results = group
                .into_par_iter()
                .map(|(member_id, w)| {
                    let mut hist = self.history(&member_id)?.unwrap_or_default();
                    if !w.remove_orders.is_empty() {
                        hist.take_orders(&w.remove_orders);
                    }
                    hist.merge(w.incoming);
                    let existing = self.member(&member_id)?;
                    let is_new = existing.is_none();
                    let mut member = existing.unwrap_or_default();
                    member.digest = hist.digest();
                    Ok(((key(HISTORY, &member_id), encode(&hist)), (key(MEMBER, &member_id), encode(&member)), is_new))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut pairs = Vec::with_capacity(results.len() * 2);
            for (h, m, is_new) in results {
                stats.new_bare_members += u64::from(is_new);
                pairs.push(h);
                pairs.push(m);
            }
            self.apply_pairs(pairs, 2 * MEMBERS_PER_BATCH)?;
        }
        // the owner index last: a crash before this point is repaired by a re-import
        let pairs = buckets.into_iter().map(|(b, bucket, _)| (bucket_key(b), encode(&bucket))).collect();
        self.apply_pairs(pairs, 256)?;
        Ok(stats)
    }

    /// The stored owner of an order.
    pub fn order_owner(&self, order_id: &str) -> Result<Option<String>, StoreError> {
        let k = bucket_key(bucket_of(order_id));
        let Some(v) = self.db.get(&k)? else { return Ok(None) };
        let bucket: OwnerBucket = decode(&k, &v)?;
        Ok(bucket.binary_search_by(|(o, _)| o.as_str().cmp(order_id)).ok().map(|i| bucket[i].1.clone()))
    }

    /// Adds events (idempotent by member, ts, kind and sku).
    pub fn write_events(&self, rows: &mut Vec<EventRow>) -> Result<WriteStats, StoreError> {
        let mut by_member: FxHashMap<String, Vec<Event>> = FxHashMap::default();
        for r in rows.drain(..) {
            by_member.entry(r.member_id.into()).or_default().push(r.event);
        }
        let mut members: Vec<(String, Vec<Event>)> = by_member.into_iter().collect();
        members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut stats = WriteStats::default();
        for group in members.chunks(MEMBER_GROUP) {
            let results = group
                .par_iter()
                .map(|(member_id, events)| {
                    let k = key(EVENTS, member_id);
                    let mut hist: EventHistory = match self.db.get(&k)? {
                        Some(v) => decode(&k, &v)?,
                        None => EventHistory::default(),
                    };
                    hist.merge(events.iter().cloned());
                    let bare = match self.db.get(key(MEMBER, member_id))? {
                        Some(_) => None,
                        None => Some((key(MEMBER, member_id), encode(&Member::default()))),
                    };
                    Ok(((k, encode(&hist)), bare))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut pairs = Vec::with_capacity(results.len());
            for (e, bare) in results {
                pairs.push(e);
                if let Some(m) = bare {
                    stats.new_bare_members += 1;
                    pairs.push(m);
                }
            }
            self.apply_pairs(pairs, MEMBERS_PER_BATCH)?;
        }
        Ok(stats)
    }
}
