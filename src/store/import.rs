//! Writing import chunks: each chunk of rows becomes one atomic sled batch that updates
//! the records and the derived per-member digests together.
//!
//! Orders: every order has one owner (`O` order_id -> member_id). A line that names another
//! member than the stored owner moves the whole order (the latest word wins), so a member's
//! history and digest never hold another member's order. Members touched by a chunk are
//! merged in parallel; the batch is applied once.

use super::model::{EventHistory, Member, OrderLine, Product};
use super::{decode, encode, key, Store, StoreError, EVENTS, HISTORY, MEMBER, ORDER_OWNER, PRODUCT};
use crate::ingest::rows::{EventRow, MemberRow, OrderRow};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

/// What one chunk changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteStats {
    /// Orders whose owner changed to another member.
    pub moved_orders: u64,
    /// Bare members created for orders or events of an unknown member.
    pub new_bare_members: u64,
}

impl Store {
    fn load_member(&self, id: &str) -> Result<Option<Member>, StoreError> {
        self.member(id)
    }

    /// Upserts members; columns absent from the file keep their stored values.
    pub fn write_members(&self, rows: Vec<MemberRow>) -> Result<WriteStats, StoreError> {
        let mut latest: FxHashMap<String, Vec<MemberRow>> = FxHashMap::default();
        for r in rows {
            latest.entry(r.id.clone()).or_default().push(r);
        }
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = latest
            .into_par_iter()
            .map(|(id, rows)| {
                let mut m = self.load_member(&id)?.unwrap_or_default();
                for r in &rows {
                    r.apply_to(&mut m);
                }
                Ok((key(MEMBER, &id), encode(&m)))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut batch = sled::Batch::default();
        for (k, v) in encoded {
            batch.insert(k, v);
        }
        self.apply(batch)?;
        Ok(WriteStats::default())
    }

    /// Upserts order lines by (order_id, sku) and rebuilds the touched members' digests.
    pub fn write_orders(&self, rows: Vec<OrderRow>) -> Result<WriteStats, StoreError> {
        let mut stats = WriteStats::default();
        // the final owner of each order in this chunk: the last line's member
        let mut owner: FxHashMap<String, String> = FxHashMap::default();
        for r in &rows {
            match owner.get_mut(&r.line.order_id) {
                Some(m) if *m != r.member_id => m.clone_from(&r.member_id),
                Some(_) => {}
                None => {
                    owner.insert(r.line.order_id.clone(), r.member_id.clone());
                }
            }
        }
        #[derive(Default)]
        struct Work {
            incoming: Vec<OrderLine>,
            remove_orders: Vec<String>,
        }
        let mut work: FxHashMap<String, Work> = FxHashMap::default();
        let mut batch = sled::Batch::default();
        // orders stored under another member move to their new owner
        let stored: Vec<(String, String, Option<String>)> = owner
            .par_iter()
            .map(|(order, m)| Ok((order.clone(), m.clone(), self.order_owner(order)?)))
            .collect::<Result<_, StoreError>>()?;
        for (order, new_owner, old_owner) in stored {
            match old_owner {
                Some(old) if old == new_owner => {}
                Some(old) => {
                    stats.moved_orders += 1;
                    let mut hist = self.history(&old)?.unwrap_or_default();
                    let moved = hist.take_orders(std::slice::from_ref(&order));
                    work.entry(new_owner.clone()).or_default().incoming.extend(moved);
                    work.entry(old).or_default().remove_orders.push(order.clone());
                    batch.insert(key(ORDER_OWNER, &order), new_owner.as_bytes());
                }
                None => batch.insert(key(ORDER_OWNER, &order), new_owner.as_bytes()),
            }
        }
        for r in rows {
            let m = owner.get(&r.line.order_id).cloned().unwrap_or(r.member_id);
            work.entry(m).or_default().incoming.push(r.line);
        }
        let results: Vec<(String, Vec<u8>, Vec<u8>, bool)> = work
            .into_par_iter()
            .map(|(member_id, w)| {
                let mut hist = self.history(&member_id)?.unwrap_or_default();
                if !w.remove_orders.is_empty() {
                    hist.take_orders(&w.remove_orders);
                }
                hist.merge(w.incoming);
                let existing = self.load_member(&member_id)?;
                let is_new = existing.is_none();
                let mut member = existing.unwrap_or_default();
                member.digest = hist.digest();
                Ok((member_id, encode(&hist), encode(&member), is_new))
            })
            .collect::<Result<_, StoreError>>()?;
        for (member_id, hist, member, is_new) in results {
            stats.new_bare_members += u64::from(is_new);
            batch.insert(key(HISTORY, &member_id), hist);
            batch.insert(key(MEMBER, &member_id), member);
        }
        self.apply(batch)?;
        Ok(stats)
    }

    /// Adds events (idempotent by member, ts, kind and sku).
    pub fn write_events(&self, rows: Vec<EventRow>) -> Result<WriteStats, StoreError> {
        let mut by_member: FxHashMap<String, Vec<crate::store::model::Event>> = FxHashMap::default();
        for r in rows {
            by_member.entry(r.member_id).or_default().push(r.event);
        }
        let results: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = by_member
            .into_par_iter()
            .map(|(member_id, events)| {
                let k = key(EVENTS, &member_id);
                let mut hist: EventHistory = match self.get_raw(EVENTS, &member_id)? {
                    Some(v) => decode(&k, &v)?,
                    None => EventHistory::default(),
                };
                hist.merge(events);
                let bare = match self.get_raw(MEMBER, &member_id)? {
                    Some(_) => None,
                    None => Some(encode(&Member::default())),
                };
                Ok((member_id, encode(&hist), bare))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut stats = WriteStats::default();
        let mut batch = sled::Batch::default();
        for (member_id, hist, bare) in results {
            batch.insert(key(EVENTS, &member_id), hist);
            if let Some(m) = bare {
                stats.new_bare_members += 1;
                batch.insert(key(MEMBER, &member_id), m);
            }
        }
        self.apply(batch)?;
        Ok(stats)
    }

    /// Upserts catalog products.
    pub fn write_products(&self, rows: Vec<(String, Product)>) -> Result<WriteStats, StoreError> {
        let mut batch = sled::Batch::default();
        for (sku, p) in rows {
            batch.insert(key(PRODUCT, &sku), encode(&p));
        }
        self.apply(batch)?;
        Ok(WriteStats::default())
    }
}
