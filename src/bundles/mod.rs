//! Bundle offers: association rules mined from purchases, and the scoring built on them.
//!
//! Architecture invariant: pure code. No I/O, no sled, no clock. The caller (the store
//! side) feeds a [`Transactions`](crate::bundles::Transactions) set in either scope —
//! `basket` (one order) or `member` (every distinct SKU a member bought up to the as-of
//! date) — and gets plain rules back.
//! Definitions (support, confidence, lift, both directions) follow DATA.md,
//! section "Association rules". The as-of date and the lookback window are the
//! caller's choice of lines; nothing here knows about time.
//!
//! Wiring: `TransactionsBuilder::add(key, sku)` per order line, or
//! `TransactionRows::push(key, sku ids)` per transaction -> `build()` ->
//! `mine(&tx, &MineParams)` -> `rules_table` / `rules_csv`. Offers:
//! `OfferIndex::new(rules).best_offer(skus, |sku| out_of_stock(sku))`. Audiences:
//! `audience(&member_tx, &index, sku, &AudienceParams)` in bulk, or
//! `OfferIndex::likely_to_buy(skus, sku)` per member for a rule condition.
//!
//! - [`transactions`](crate::bundles::transactions): the compact CSR transaction set and its two builders.
//! - [`mine`](mod@crate::bundles::mine): pair rules A -> B and, behind an option, {A,B} -> C.
//! - [`score`](crate::bundles::score): the cross-sell offer for one member and "who will buy X".
//! - [`render`](crate::bundles::render): table and CSV text for rules and audiences.

pub mod mine;
pub mod render;
pub mod score;
pub mod transactions;

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod synth;

pub use mine::{mine, AssocRule, MineError, MineParams};
pub use render::{audience_csv, audience_table, rules_csv, rules_table};
pub use score::{audience, AudienceMember, AudienceParams, OfferIndex};
pub use transactions::{TransactionRows, Transactions, TransactionsBuilder, TransactionsError};
