//! Writing imported rows. Rows are gathered in memory up to a budget, grouped by member,
//! and each touched member's history and digest is rewritten once per flush: sled pays per
//! write, so a member with a thousand lines costs one write, not a thousand.
//!
//! Orders: every order has one owner, kept in a bucketed index (`O` bucket -> pairs of
//! (64-bit hash of the order id, member_id) sorted by hash, [`ORDER_BUCKETS`] buckets). A line that names another
//! member than the stored owner moves the whole order (the latest word wins), so a member's
//! history never holds another member's order. Members are written before the index, so a
//! crash in between is repaired by importing the file again.
//!
//! Each sled batch (a few hundred members with their history and digest) is atomic.

use super::model::Product;
use super::{decode, encode, key, Pairs, Store, StoreError, MEMBER, ORDER_OWNER, PRODUCT};
use crate::domain::Text;
use super::rows::MemberRow;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

/// Buckets of the order-owner index (part of the store format).
pub const ORDER_BUCKETS: u32 = 8192;
/// Members processed together (in parallel) before their writes are applied.
pub(crate) const MEMBER_GROUP: usize = 16_384;
/// Members per atomic sled batch.
pub(crate) const MEMBERS_PER_BATCH: usize = 512;

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

/// A stable 64-bit hash of an order id (FNV-1a with a final mix): part of the store
/// format, so it must never change. Two ids with the same hash (about one chance in 10^6
/// with 5M orders) only make a move of one of them go unnoticed.
pub(crate) fn order_hash(order_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in order_id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

pub(crate) fn bucket_of(hash: u64) -> u32 {
    (hash % u64::from(ORDER_BUCKETS)) as u32
}

pub(crate) fn bucket_key(b: u32) -> Vec<u8> {
    let mut k = vec![ORDER_OWNER];
    k.extend_from_slice(&b.to_be_bytes());
    k
}

/// (order hash, member_id) pairs sorted by hash, as stored.
pub(crate) type OwnerBucket = Vec<(u64, Text)>;

impl Store {
    /// Applies (key, value) writes in atomic batches of `per_batch` pairs.
    pub(crate) fn apply_pairs(&self, pairs: Pairs, per_batch: usize) -> Result<(), StoreError> {
        for group in pairs.chunks(per_batch.max(1)) {
            let mut batch = sled::Batch::default();
            for (k, v) in group {
                batch.insert(k.as_slice(), v.as_slice());
            }
            self.apply(batch)?;
        }
        Ok(())
    }

    /// Runs `prepare` while a second thread applies the writes it hands over, so sled's
    /// writing overlaps the decoding and encoding of the next group of members.
    pub(crate) fn pipelined<R: Send>(
        &self,
        per_batch: usize,
        prepare: impl FnOnce(&mut dyn FnMut(Pairs) -> Result<(), StoreError>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Pairs>(1);
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                for pairs in rx {
                    self.apply_pairs(pairs, per_batch)?;
                }
                Ok::<(), StoreError>(())
            });
            let mut send = |pairs| tx.send(pairs).map_err(|_| StoreError::WriterGone);
            let result = prepare(&mut send);
            drop(tx);
            let written = writer.join().unwrap_or(Err(StoreError::WriterGone));
            // the writer's own error explains a failed hand-over best
            match (result, written) {
                (_, Err(e)) => Err(e),
                (r, Ok(())) => r,
            }
        })
    }

    /// Upserts members; columns absent from the file keep their stored values.
    pub fn write_members(&self, rows: &mut Vec<MemberRow>) -> Result<WriteStats, StoreError> {
        if rows.is_empty() {
            return Ok(WriteStats::default());
        }
        self.bump_member_generation()?;
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

    /// The stored owner of an order.
    pub fn order_owner(&self, order_id: &str) -> Result<Option<String>, StoreError> {
        let h = order_hash(order_id);
        let k = bucket_key(bucket_of(h));
        let Some(v) = self.db.get(&k)? else { return Ok(None) };
        let bucket: OwnerBucket = decode(&k, &v)?;
        Ok(bucket.binary_search_by_key(&h, |(o, _)| *o).ok().map(|i| bucket[i].1.to_string()))
    }
}
