//! Transactions for association mining, read from the member columns: in the `basket`
//! scope one transaction per order (the distinct skus the columns keep of each order), in
//! the `member` scope one per member (every distinct sku of its orders), counting only
//! orders dated (the order date: the UTC date of the earliest line) on or before the
//! as-of day and, with a lookback, not before it. Also keeps mined rules in the store
//! with their mining date.

use crate::bundles::{AssocRule, MineParams, TransactionRows, Transactions, TransactionsError};
use crate::domain::Day;
use crate::store::columns::{Columns, Dict};
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One transaction per order.
    Basket,
    /// One transaction per member: everything the member bought.
    Member,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Basket => "basket",
            Scope::Member => "member",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BasketError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transactions(#[from] TransactionsError),
}

/// A mining result as stored: what was mined, when, and the rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinedRules {
    pub scope: Scope,
    pub as_of: Day,
    pub lookback_days: Option<u32>,
    pub params: MineParams,
    pub transactions: usize,
    pub rules: Vec<AssocRule>,
}

/// Builds the transactions of a scope from the store's member columns.
pub fn transactions(store: &Store, scope: Scope, as_of: Day, lookback_days: Option<u32>) -> Result<Transactions, BasketError> {
    let columns = store.member_columns()?;
    let tx = transactions_of(&columns.columns(), scope, as_of, lookback_days)?;
    columns.release();
    Ok(tx)
}

/// [`transactions`] of columns already mapped. Items are the columns' sku dictionary, so
/// no sku name is hashed; keys (the member ids) are kept in the `member` scope only.
pub fn transactions_of(columns: &Columns, scope: Scope, as_of: Day, lookback_days: Option<u32>) -> Result<Transactions, TransactionsError> {
    let from = lookback_days.map_or(Day::MIN, |n| as_of.saturating_sub(n.min(i32::MAX as u32) as Day));
    let names = (0..columns.names(Dict::Sku) as u32).map(|i| columns.name(Dict::Sku, i).to_owned()).collect();
    let mut rows = TransactionRows::new(names, scope == Scope::Member);
    let mut items = Vec::new();
    for i in 0..columns.len() {
        let r = columns.row(i);
        let key = std::str::from_utf8(columns.id(i)).unwrap_or("");
        let mut at = 0;
        for (&day, &n) in r.days.iter().zip(r.skus) {
            let skus = &r.sku_name[at..at + n as usize];
            at += n as usize;
            if day < from || day > as_of {
                continue;
            }
            items.extend_from_slice(skus);
            if scope == Scope::Basket {
                rows.push(key, &mut items)?;
                items.clear();
            }
        }
        if scope == Scope::Member {
            rows.push(key, &mut items)?;
            items.clear();
        }
    }
    Ok(rows.build())
}

/// Every member's transaction (for "who will buy X"), whatever the mining scope.
pub fn member_transactions(store: &Store, as_of: Day) -> Result<Transactions, BasketError> {
    transactions(store, Scope::Member, as_of, None)
}
