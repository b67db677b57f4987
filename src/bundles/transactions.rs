//! The transaction set that association mining reads: one compact CSR table.
//!
//! A transaction is the sorted, distinct ids of the items (SKUs) in it, and may carry a
//! key (the member in the `member` scope, whom audiences name). Items are interned once,
//! so mining works on `u32`s and never touches a string. Empty transactions are not kept:
//! N, the denominator of support, counts transactions with at least one item.
//!
//! Two ways in: [`TransactionsBuilder`] takes (key, item name) pairs in any order;
//! [`TransactionRows`] takes whole transactions of item ids into a known table of names
//! (a dictionary, such as the member columns' skus), without hashing a string.

use rustc_hash::{FxHashMap, FxHasher};
use std::hash::{Hash, Hasher};

/// At most this many lines per set, so that every position mining derives from them
/// (entries plus one end marker per transaction) fits in a `u32`.
pub const MAX_LINES: usize = u32::MAX as usize / 2;

/// Why a transaction set could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransactionsError {
    #[error("too many order lines for one transaction set (at most {MAX_LINES})")]
    TooManyLines,
}

/// Transactions in compressed sparse rows: transaction `t` holds
/// `items[offsets[t]..offsets[t + 1]]`, ascending and distinct item ids, and is named
/// by `key(t)`.
#[derive(Debug, Clone, Default)]
pub struct Transactions {
    item_names: Vec<String>,
    offsets: Vec<u32>,
    items: Vec<u32>,
    key_text: String,
    key_ends: Vec<usize>,
}

impl Transactions {
    /// Number of transactions (N).
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of (transaction, item) entries after de-duplication.
    pub fn entry_count(&self) -> usize {
        self.items.len()
    }

    /// Every interned item name; an item id indexes this slice.
    pub fn item_names(&self) -> &[String] {
        &self.item_names
    }

    /// The item ids of transaction `t`, ascending and distinct.
    pub fn items(&self, t: usize) -> &[u32] {
        &self.items[self.offsets[t] as usize..self.offsets[t + 1] as usize]
    }

    /// The item names of transaction `t`, in item id order.
    pub fn item_names_of(&self, t: usize) -> impl Iterator<Item = &str> + '_ {
        self.items(t)
            .iter()
            .map(|&i| self.item_names[i as usize].as_str())
    }

    /// The key of transaction `t` ("" in a set built without keys).
    pub fn key(&self, t: usize) -> &str {
        if self.key_ends.is_empty() {
            return "";
        }
        let start = if t == 0 { 0 } else { self.key_ends[t - 1] };
        &self.key_text[start..self.key_ends[t]]
    }

    /// The id of an item name, by linear search (for one-off look-ups such as a target SKU).
    pub fn item_id(&self, name: &str) -> Option<u32> {
        self.item_names
            .iter()
            .position(|n| n == name)
            .map(|i| i as u32)
    }

    /// All item ids, transaction after transaction (crate-internal, for mining).
    pub(crate) fn flat_items(&self) -> &[u32] {
        &self.items
    }
}

/// Collects whole transactions of item ids into a table of names known up front, then
/// builds [`Transactions`] (keyed or not, as created).
#[derive(Debug)]
pub struct TransactionRows {
    tx: Transactions,
    keyed: bool,
}

impl TransactionRows {
    /// Transactions over these items; with `keyed`, each is named by the key it is pushed with.
    pub fn new(item_names: Vec<String>, keyed: bool) -> Self {
        let tx = Transactions { item_names, offsets: vec![0], ..Transactions::default() };
        Self { tx, keyed }
    }

    /// Adds a transaction of these item ids (any order, repeats allowed; each below the
    /// number of names), sorting them in place; an empty one is not kept.
    pub fn push(&mut self, key: &str, items: &mut [u32]) -> Result<(), TransactionsError> {
        items.sort_unstable();
        let tx = &mut self.tx;
        let start = tx.items.len();
        for &item in items.iter() {
            debug_assert!((item as usize) < tx.item_names.len(), "item id past the names");
            if tx.items.len() == start || tx.items.last() != Some(&item) {
                tx.items.push(item);
            }
        }
        if tx.items.len() == start {
            return Ok(());
        }
        if tx.items.len() + tx.offsets.len() > MAX_LINES {
            tx.items.truncate(start);
            return Err(TransactionsError::TooManyLines);
        }
        tx.offsets.push(tx.items.len() as u32);
        if self.keyed {
            tx.key_text.push_str(key);
            tx.key_ends.push(tx.key_text.len());
        }
        Ok(())
    }

    pub fn build(mut self) -> Transactions {
        self.tx.items.shrink_to_fit();
        self.tx
    }
}

/// Collects (transaction key, item name) pairs in any order, then builds [`Transactions`].
///
/// Lines of one key need not be contiguous and may repeat an item (a SKU bought twice
/// counts once). Transactions keep the order in which their keys first appeared.
#[derive(Debug, Default)]
pub struct TransactionsBuilder {
    item_ids: FxHashMap<Box<str>, u32>,
    item_names: Vec<String>,
    /// Transaction id by the 64-bit hash of its key; the key itself lives in
    /// `key_text`, so millions of keys cost no allocation each.
    key_ids: FxHashMap<u64, u32>,
    /// Keys whose hash was already taken by another key (rare).
    colliding_keys: FxHashMap<Box<str>, u32>,
    key_text: String,
    key_ends: Vec<usize>,
    /// Transaction id of each line, and its item id.
    line_keys: Vec<u32>,
    line_items: Vec<u32>,
    last_key: Option<u32>,
    /// Tests set this to send every key through the collision path.
    #[cfg(test)]
    constant_hash: bool,
}

impl TransactionsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one line: `item` belongs to the transaction named `key`.
    pub fn add(&mut self, key: &str, item: &str) -> Result<(), TransactionsError> {
        if self.line_items.len() >= MAX_LINES {
            return Err(TransactionsError::TooManyLines);
        }
        let tid = match self.last_key {
            Some(last) if self.key_str(last) == key => last,
            _ => self.intern_key(key),
        };
        self.last_key = Some(tid);
        let item_id = match self.item_ids.get(item) {
            Some(&id) => id,
            None => {
                let id = self.item_names.len() as u32;
                self.item_ids.insert(item.into(), id);
                self.item_names.push(item.to_owned());
                id
            }
        };
        self.line_keys.push(tid);
        self.line_items.push(item_id);
        Ok(())
    }

    /// Adds a whole transaction at once (`key` may have been seen before).
    pub fn add_all<'a>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), TransactionsError> {
        items.into_iter().try_for_each(|item| self.add(key, item))
    }

    fn key_str(&self, tid: u32) -> &str {
        let t = tid as usize;
        let start = if t == 0 { 0 } else { self.key_ends[t - 1] };
        &self.key_text[start..self.key_ends[t]]
    }

    fn intern_key(&mut self, key: &str) -> u32 {
        let mut hasher = FxHasher::default();
        key.hash(&mut hasher);
        #[allow(unused_mut)]
        let mut hash = hasher.finish();
        #[cfg(test)]
        if self.constant_hash {
            hash = 7;
        }
        let next = self.key_ends.len() as u32;
        match self.key_ids.get(&hash) {
            Some(&tid) if self.key_str(tid) == key => return tid,
            Some(_) => {
                if let Some(&tid) = self.colliding_keys.get(key) {
                    return tid;
                }
                self.colliding_keys.insert(key.into(), next);
            }
            None => {
                self.key_ids.insert(hash, next);
            }
        }
        self.key_text.push_str(key);
        self.key_ends.push(self.key_text.len());
        next
    }

    /// Groups the lines by key (a counting sort, linear in the number of lines), then
    /// sorts and de-duplicates each transaction's items.
    pub fn build(self) -> Transactions {
        let n_tx = self.key_ends.len();
        let mut starts = vec![0u32; n_tx + 1];
        for &tid in &self.line_keys {
            starts[tid as usize + 1] += 1;
        }
        for t in 0..n_tx {
            starts[t + 1] += starts[t];
        }
        let mut cursor = starts.clone();
        let mut grouped = vec![0u32; self.line_items.len()];
        for (&tid, &item) in self.line_keys.iter().zip(&self.line_items) {
            let slot = &mut cursor[tid as usize];
            grouped[*slot as usize] = item;
            *slot += 1;
        }
        drop(cursor);
        // Compact in place: sort + dedup each group, write it at the write head.
        let mut offsets = Vec::with_capacity(n_tx + 1);
        offsets.push(0u32);
        let mut write = 0usize;
        for t in 0..n_tx {
            let (s, e) = (starts[t] as usize, starts[t + 1] as usize);
            grouped[s..e].sort_unstable();
            let mut last = None;
            for r in s..e {
                let item = grouped[r];
                if last != Some(item) {
                    grouped[write] = item;
                    write += 1;
                    last = Some(item);
                }
            }
            offsets.push(write as u32);
        }
        grouped.truncate(write);
        grouped.shrink_to_fit();
        Transactions {
            item_names: self.item_names,
            offsets,
            items: grouped,
            key_text: self.key_text,
            key_ends: self.key_ends,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_interleaved_lines_and_drops_repeated_items() {
        let mut b = TransactionsBuilder::new();
        for (k, i) in [
            ("o1", "b"),
            ("o2", "a"),
            ("o1", "a"),
            ("o1", "b"),
            ("o3", "c"),
            ("o2", "c"),
        ] {
            b.add(k, i).expect("small input fits");
        }
        let tx = b.build();
        assert_eq!(tx.len(), 3);
        let as_names = |t| {
            let mut v: Vec<&str> = tx.item_names_of(t).collect();
            v.sort();
            (tx.key(t).to_owned(), v)
        };
        assert_eq!(as_names(0), ("o1".to_owned(), vec!["a", "b"]));
        assert_eq!(as_names(1), ("o2".to_owned(), vec!["a", "c"]));
        assert_eq!(as_names(2), ("o3".to_owned(), vec!["c"]));
        assert_eq!(tx.entry_count(), 5);
        for t in 0..tx.len() {
            assert!(
                tx.items(t).windows(2).all(|w| w[0] < w[1]),
                "sorted and distinct"
            );
        }
    }

    #[test]
    fn keys_with_colliding_hashes_stay_apart() {
        let mut b = TransactionsBuilder {
            constant_hash: true,
            ..TransactionsBuilder::new()
        };
        for (k, i) in [
            ("o1", "a"),
            ("o2", "b"),
            ("o3", "c"),
            ("o1", "d"),
            ("o2", "e"),
            ("o3", "a"),
        ] {
            b.add(k, i).expect("small input fits");
        }
        let tx = b.build();
        let got: Vec<(String, Vec<&str>)> = (0..tx.len())
            .map(|t| (tx.key(t).to_owned(), tx.item_names_of(t).collect()))
            .collect();
        assert_eq!(
            got,
            [
                ("o1".to_owned(), vec!["a", "d"]),
                ("o2".to_owned(), vec!["b", "e"]),
                ("o3".to_owned(), vec!["a", "c"])
            ]
        );
    }

    #[test]
    fn rows_sort_and_dedup_their_items_and_drop_empty_ones() {
        let names = || vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let mut rows = TransactionRows::new(names(), true);
        for (key, mut items) in [("m1", vec![2, 0, 2]), ("m2", vec![]), ("m3", vec![1])] {
            rows.push(key, &mut items).expect("small input fits");
        }
        let tx = rows.build();
        assert_eq!(tx.len(), 2);
        assert_eq!((tx.key(0), tx.items(0)), ("m1", &[0, 2][..]));
        assert_eq!((tx.key(1), tx.item_names_of(1).collect::<Vec<_>>()), ("m3", vec!["b"]));
        let mut unkeyed = TransactionRows::new(names(), false);
        unkeyed.push("ignored", &mut [1, 0]).expect("small input fits");
        let tx = unkeyed.build();
        assert_eq!((tx.len(), tx.key(0), tx.items(0)), (1, "", &[0, 1][..]));
    }

    #[test]
    fn empty_builder_gives_no_transactions() {
        let tx = TransactionsBuilder::new().build();
        assert!(tx.is_empty());
        assert_eq!(tx.item_id("x"), None);
    }
}
