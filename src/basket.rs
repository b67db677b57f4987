//! Transactions for association mining, read from the store: in the `basket` scope one
//! transaction per order, in the `member` scope one per member (every distinct SKU the
//! member bought), counting only orders dated on or before the as-of day and, with a
//! lookback, not before it. Also keeps mined rules in the store with their mining date.

use crate::bundles::{AssocRule, MineParams, Transactions, TransactionsBuilder, TransactionsError};
use crate::domain::{day_of, Day};
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

/// Builds the transactions of a scope from every member's order history.
pub fn transactions(store: &Store, scope: Scope, as_of: Day, lookback_days: Option<u32>) -> Result<Transactions, BasketError> {
    let from = lookback_days.map(|n| as_of - n as Day);
    let mut b = TransactionsBuilder::new();
    for item in store.scan_histories() {
        let (member, hist) = item?;
        for line in &hist.lines {
            let d = day_of(line.ts);
            if d > as_of || from.is_some_and(|f| d < f) {
                continue;
            }
            match scope {
                Scope::Basket => b.add(&line.order_id, &line.sku)?,
                Scope::Member => b.add(&member, &line.sku)?,
            }
        }
    }
    Ok(b.build())
}

/// Every member's transaction (for "who will buy X"), whatever the mining scope.
pub fn member_transactions(store: &Store, as_of: Day) -> Result<Transactions, BasketError> {
    transactions(store, Scope::Member, as_of, None)
}
