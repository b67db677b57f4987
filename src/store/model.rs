//! The records rekindle keeps: members with their order digest, order histories, browsing
//! events and catalog products. Stored as postcard (compact varint binary).
//!
//! The digest is the per-member aggregate that profiles read: one entry per order with its
//! date, amount, discount flag and spend per category and brand. It is rebuilt from the
//! member's order history whenever that history changes, so profiles never rescan lines.

use crate::domain::{day_of, div_round_half_away, Cents, Day, Text, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Gender {
    #[default]
    Unknown,
    Female,
    Male,
}

/// The leading fields of a [`Member`] record, read without the rest (postcard reads
/// fields in order and leaves the remainder): the contact fields the member base's
/// columns do not hold, read only for the members a run messages. Keep them first in
/// [`Member`], in this order.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
pub struct ContactFields {
    pub name: Text,
    pub email: String,
    pub phone: String,
}

/// A member: the attributes of members.csv plus the order digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Member {
    pub name: Text,
    pub email: String,
    pub phone: String,
    pub gender: Gender,
    pub birth_year: Option<i32>,
    pub city: Text,
    pub signup_ts: Option<Timestamp>,
    pub opted_in_email: bool,
    pub opted_in_sms: bool,
    /// IANA time zone; empty means the configured default.
    pub tz: Text,
    /// False for a bare member created by an order or event before its members.csv row.
    pub known: bool,
    pub digest: Digest,
}

/// One order line as stored in a member's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub order_id: Text,
    pub sku: Text,
    pub ts: Timestamp,
    pub category: Text,
    pub brand: Text,
    pub unit_price: Cents,
    pub qty: u32,
    /// discount_pct x 10,000 (so 12.5% is 125,000); 0 <= x < 1,000,000.
    pub discount_ppm: u32,
}

impl OrderLine {
    /// line_amount = unit_price x qty x (1 - discount_pct/100), rounded to the cent, half
    /// away from zero.
    pub fn amount(&self) -> Cents {
        let num = i128::from(self.unit_price) * i128::from(self.qty) * i128::from(1_000_000 - self.discount_ppm);
        div_round_half_away(num, 1_000_000) as Cents
    }
}

/// All order lines of one member, sorted by (ts, order_id, sku); (order_id, sku) is unique.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct OrderHistory {
    pub lines: Vec<OrderLine>,
}

/// The per-member aggregate of the order history, one entry per order in date order.
/// The spend per category and brand of every order is kept flat (order after order), so
/// decoding a digest costs a handful of allocations, not two per order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Digest {
    pub orders: Vec<OrderDigest>,
    /// (index into category_names, spend) of each order in turn; `OrderDigest::categories`
    /// says how many belong to an order. Lines without a category are not listed.
    pub category_spend: Vec<(u32, Cents)>,
    pub brand_spend: Vec<(u32, Cents)>,
    pub category_names: Vec<Text>,
    pub brand_names: Vec<Text>,
    /// Index into sku_names of every distinct sku of each order in turn;
    /// `OrderDigest::skus` says how many belong to an order.
    pub order_skus: Vec<u32>,
    pub sku_names: Vec<Text>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderDigest {
    /// UTC date of the order: the date of its earliest line.
    pub day: Day,
    pub amount: Cents,
    /// At least one line with discount_pct > 0.
    pub discounted: bool,
    /// How many entries of `Digest::category_spend` and `brand_spend` are this order's.
    pub categories: u16,
    pub brands: u16,
    pub skus: u16,
}

impl OrderHistory {
    /// Inserts or replaces lines by (order_id, sku) and keeps the order.
    pub fn merge(&mut self, incoming: impl IntoIterator<Item = OrderLine>) {
        self.lines.extend(incoming);
        // stable: of equal (order_id, sku), later arrivals come later; reversed, the last
        // arrival leads its run and dedup keeps it
        self.lines.sort_by(|a, b| (&a.order_id, &a.sku).cmp(&(&b.order_id, &b.sku)));
        self.lines.reverse();
        self.lines.dedup_by(|a, b| a.order_id == b.order_id && a.sku == b.sku);
        self.sort();
    }

    /// Removes every line of the given orders and returns them.
    pub fn take_orders(&mut self, order_ids: &[Text]) -> Vec<OrderLine> {
        // a set once the list is long: a member whose thousands of orders all moved away
        let set: Option<rustc_hash::FxHashSet<&str>> = (order_ids.len() > 16).then(|| order_ids.iter().map(Text::as_str).collect());
        let (taken, kept) = std::mem::take(&mut self.lines).into_iter().partition(|l| match &set {
            Some(set) => set.contains(l.order_id.as_str()),
            None => order_ids.contains(&l.order_id),
        });
        self.lines = kept;
        taken
    }

    fn sort(&mut self) {
        self.lines.sort_by(|a, b| (a.ts, &a.order_id, &a.sku).cmp(&(b.ts, &b.order_id, &b.sku)));
    }

    /// Builds the digest: lines grouped by order, orders in (date, order_id) order.
    pub fn digest(&self) -> Digest {
        let mut idx: Vec<usize> = (0..self.lines.len()).collect();
        idx.sort_by(|&a, &b| self.lines[a].order_id.cmp(&self.lines[b].order_id));
        let mut orders: Vec<(Timestamp, &str, &[usize])> = idx
            .chunk_by(|&a, &b| self.lines[a].order_id == self.lines[b].order_id)
            .map(|run| (run.iter().map(|&i| self.lines[i].ts).min().unwrap_or(0), self.lines[run[0]].order_id.as_str(), run))
            .collect();
        orders.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut d = Digest::default();
        let (mut categories, mut brands, mut skus) = (Names::default(), Names::default(), Names::default());
        for (number, (ts, _, run)) in (1..).zip(orders) {
            let mut od = OrderDigest { day: day_of(ts), amount: 0, discounted: false, categories: 0, brands: 0, skus: 0 };
            let (c0, b0, s0) = (d.category_spend.len(), d.brand_spend.len(), d.order_skus.len());
            // an order of a few lines looks through its entries; a long one keeps an index
            let order = Order { number, long: run.len() > LOOK_THROUGH };
            for &i in run {
                let l = &self.lines[i];
                let amount = l.amount();
                // saturating: a hostile file can hold enough of the largest lines to wrap
                od.amount = od.amount.saturating_add(amount);
                od.discounted |= l.discount_ppm > 0;
                add_spend(&mut d.category_spend, c0, &mut categories, order, &l.category, amount);
                add_spend(&mut d.brand_spend, b0, &mut brands, order, &l.brand, amount);
                let sku = skus.index(&l.sku);
                let listed = d.order_skus.len() - s0;
                if skus.in_order(sku, order, d.order_skus[s0..].iter().copied()).is_none() && listed < PER_ORDER {
                    skus.list(sku, order, listed);
                    d.order_skus.push(sku);
                }
            }
            od.skus = (d.order_skus.len() - s0) as u16;
            od.categories = (d.category_spend.len() - c0) as u16;
            od.brands = (d.brand_spend.len() - b0) as u16;
            d.orders.push(od);
        }
        (d.category_names, d.brand_names, d.sku_names) = (categories.names, brands.names, skus.names);
        d
    }
}

/// The distinct names of a digest by index. A name is looked for by its length and first
/// 16 bytes (compared as numbers), its full text only when longer: digests are built for
/// every member an import touches. Past [`LOOK_THROUGH`] names a hash map finds them (a
/// member with 100,000 skus took 30 s to look through, quadratic).
#[derive(Default)]
struct Names {
    names: Vec<Text>,
    keys: Vec<(usize, u128)>,
    by_name: Option<rustc_hash::FxHashMap<Text, u32>>,
    /// Per name, for long orders: the order that last listed it and where among that
    /// order's entries.
    listed: Vec<(u32, u32)>,
}

/// Names (of a member) or entries (of an order) looked through one by one before an
/// index takes over.
const LOOK_THROUGH: usize = 64;

/// The order being digested: its number (from 1) and whether it is long.
#[derive(Clone, Copy)]
struct Order {
    number: u32,
    long: bool,
}

impl Names {
    fn index(&mut self, name: &str) -> u32 {
        if let Some(map) = &mut self.by_name {
            if let Some(&i) = map.get(name) {
                return i;
            }
            map.insert(name.into(), self.names.len() as u32);
            self.names.push(name.into());
            return self.names.len() as u32 - 1;
        }
        let key = (name.len(), crate::domain::prefix_16(name));
        let found = self.keys.iter().enumerate().position(|(i, k)| *k == key && (name.len() <= 16 || self.names[i] == name));
        (match found {
            Some(i) => i,
            None => {
                self.names.push(name.into());
                self.keys.push(key);
                if self.names.len() > LOOK_THROUGH {
                    self.by_name = Some(self.names.iter().cloned().zip(0..).collect());
                }
                self.names.len() - 1
            }
        }) as u32
    }

    /// Where name `i` is among `entries`, the order's entries so far (name indexes).
    fn in_order(&self, i: u32, order: Order, mut entries: impl Iterator<Item = u32>) -> Option<usize> {
        if !order.long {
            return entries.position(|e| e == i);
        }
        let &(last, at) = self.listed.get(i as usize)?;
        (last == order.number).then_some(at as usize)
    }

    /// Notes that a long order lists name `i` at `at`.
    fn list(&mut self, i: u32, order: Order, at: usize) {
        if order.long {
            if self.listed.len() < self.names.len() {
                self.listed.resize(self.names.len(), (0, 0));
            }
            self.listed[i as usize] = (order.number, at as u32);
        }
    }
}

/// The most categories, brands and skus one order lists in a digest (its counts are
/// u16): an order with more (only a hostile file has one) lists its first ones.
const PER_ORDER: usize = u16::MAX as usize;

/// Adds spend on `name` to the current order's entries (those from `start` on).
fn add_spend(spend: &mut Vec<(u32, Cents)>, start: usize, names: &mut Names, order: Order, name: &str, amount: Cents) {
    if name.is_empty() {
        return;
    }
    let i = names.index(name);
    let listed = spend.len() - start;
    match names.in_order(i, order, spend[start..].iter().map(|&(e, _)| e)) {
        Some(at) => spend[start + at].1 = spend[start + at].1.saturating_add(amount),
        None if listed < PER_ORDER => {
            names.list(i, order, listed);
            spend.push((i, amount));
        }
        None => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventKind {
    View,
    Favorite,
    Cart,
}

impl EventKind {
    pub fn parse(s: &str) -> Option<EventKind> {
        match s {
            "view" => Some(EventKind::View),
            "favorite" => Some(EventKind::Favorite),
            "cart" => Some(EventKind::Cart),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::View => "view",
            EventKind::Favorite => "favorite",
            EventKind::Cart => "cart",
        }
    }
}

/// One browsing event; a member's events are sorted and (ts, kind, sku) is unique.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Event {
    pub ts: Timestamp,
    pub kind: EventKind,
    pub sku: Text,
    pub channel: Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EventHistory {
    pub events: Vec<Event>,
}

impl EventHistory {
    /// Inserts events; one with the same (ts, kind, sku) as a stored one replaces it.
    pub fn merge(&mut self, incoming: impl IntoIterator<Item = Event>) {
        self.events.extend(incoming);
        // stable sort keeps arrival order among equal keys; keep the last arrival
        self.events.sort_by(|a, b| (a.ts, a.kind, &a.sku).cmp(&(b.ts, b.kind, &b.sku)));
        let mut out: Vec<Event> = Vec::with_capacity(self.events.len());
        for e in self.events.drain(..) {
            match out.last_mut() {
                Some(last) if (last.ts, last.kind, &last.sku) == (e.ts, e.kind, &e.sku) => *last = e,
                _ => out.push(e),
            }
        }
        self.events = out;
    }
}

/// A message planned for a member: what frequency caps and cooldowns count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub ts: Timestamp,
    pub rule: Text,
    pub channel: Text,
    /// The run that planned it (0: recorded outside a run).
    pub run: u64,
}

/// A member's recent contacts, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContactLog {
    pub contacts: Vec<Contact>,
}

/// A catalog product (products.csv).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub name: String,
    pub category: String,
    pub brand: String,
    pub price: Option<Cents>,
    pub url: String,
    pub in_stock: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_fields_decode_from_a_whole_member_record() {
        let m = Member {
            name: "王小明".into(),
            email: "wang@example.com".into(),
            phone: "+86 138 0013 8000".into(),
            city: "杭州".into(),
            digest: OrderHistory { lines: vec![line("o1", "s1", 1_700_000_000, 990, 2, 0)] }.digest(),
            ..Default::default()
        };
        let bytes = crate::store::encode(&m);
        let c: ContactFields = crate::store::decode(b"Mx", &bytes).unwrap();
        assert_eq!(c, ContactFields { name: m.name.clone(), email: m.email.clone(), phone: m.phone.clone() });
    }

    fn line(order: &str, sku: &str, ts: i64, price: i64, qty: u32, disc_ppm: u32) -> OrderLine {
        OrderLine {
            order_id: order.into(),
            sku: sku.into(),
            ts,
            category: "c".into(),
            brand: Text::default(),
            unit_price: price,
            qty,
            discount_ppm: disc_ppm,
        }
    }

    #[test]
    fn line_amount_rounds_half_away_from_zero() {
        // 0.05 x 1 x (1 - 0.50) = 0.025 -> 0.03
        assert_eq!(line(".", "a", 0, 5, 1, 500_000).amount(), 3);
        // 0.05 x 1 x (1 - 0.30) = 0.035 -> 0.04 ; 0.01 x 1 x 0.7 = 0.007 -> 0.01
        assert_eq!(line(".", "a", 0, 5, 1, 300_000).amount(), 4);
        assert_eq!(line(".", "a", 0, 1, 1, 300_000).amount(), 1);
        // 19.99 x 3 x (1 - 12.5%) = 52.47375 -> 52.47
        assert_eq!(line(".", "a", 0, 1999, 3, 125_000).amount(), 5247);
        assert_eq!(line(".", "a", 0, 1999, 3, 0).amount(), 5997);
    }

    #[test]
    fn merge_replaces_by_order_and_sku() {
        let mut h = OrderHistory::default();
        h.merge([line("o1", "a", 10, 100, 1, 0), line("o1", "b", 10, 200, 1, 0)]);
        h.merge([line("o1", "a", 10, 150, 2, 0), line("o0", "z", 5, 1, 1, 0)]);
        assert_eq!(h.lines.len(), 3);
        assert_eq!(h.lines[0].order_id, "o0");
        assert_eq!(h.lines[1].unit_price, 150);
        let d = h.digest();
        assert_eq!(d.orders.len(), 2);
        assert_eq!(d.orders[1].amount, 500);
        assert_eq!((d.orders[0].skus, d.orders[1].skus), (1, 2));
        let names: Vec<&str> = d.order_skus.iter().map(|&i| d.sku_names[i as usize].as_str()).collect();
        assert_eq!(names, ["z", "a", "b"]);
        let before = h.clone();
        h.merge(before.lines.clone());
        assert_eq!(h, before, "re-importing the same lines changes nothing");
    }

    #[test]
    fn an_order_with_lines_at_two_times_is_one_order_even_with_another_between() {
        let mut h = OrderHistory::default();
        // o2 (one day later) comes between o1's two lines; o3 shares o1's first time
        h.merge([line("o1", "a", 0, 100, 1, 0), line("o2", "x", 86_400, 7, 1, 0), line("o1", "b", 3 * 86_400, 200, 1, 0), line("o3", "c", 0, 5, 1, 0)]);
        let d = h.digest();
        let orders: Vec<(Day, Cents, u16)> = d.orders.iter().map(|o| (o.day, o.amount, o.skus)).collect();
        assert_eq!(orders, vec![(day_of(0), 300, 2), (day_of(0), 5, 1), (day_of(86_400), 7, 1)], "o1 (its earliest line's day), o3, o2");
        let names: Vec<&str> = d.order_skus.iter().map(|&i| d.sku_names[i as usize].as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "x"]);
        // the same orders with each order's lines together agree
        let mut plain = OrderHistory::default();
        plain.merge([line("o1", "a", 0, 100, 1, 0), line("o1", "b", 0, 200, 1, 0), line("o3", "c", 0, 5, 1, 0), line("o2", "x", 86_400, 7, 1, 0)]);
        assert_eq!(plain.digest(), d);
    }

    #[test]
    fn names_are_told_apart_past_16_bytes_and_by_length() {
        let mut names = Names::default();
        let all = ["sporting-goods-outdoor", "sporting-goods-indoor", "a", "a\0", "", "sporting-goods-o"];
        let first: Vec<u32> = all.iter().map(|n| names.index(n)).collect();
        assert_eq!(first, [0, 1, 2, 3, 4, 5]);
        let again: Vec<u32> = all.iter().map(|n| names.index(n)).collect();
        assert_eq!(again, first);
        assert_eq!(names.names, all);
    }

    #[test]
    fn orders_with_hundreds_of_names_get_the_digest_a_plain_count_gives() {
        // o1: 300 skus over 150 categories (two lines each); o2 reuses some of the names;
        // then 100 short orders of two lines in one new category each (past 64 names, so
        // the member's names are in a map while the orders look through their entries)
        let cat = |l: OrderLine, c: String| OrderLine { category: c.as_str().into(), ..l };
        let mut lines = Vec::new();
        for i in 0..300 {
            lines.push(cat(line("o1", &format!("sku-{i}"), 0, 100, 1, 0), format!("category-{}", i % 150)));
        }
        for i in 0..80 {
            lines.push(cat(line("o2", &format!("sku-{}", i * 3), 86_400, 7, 1, 0), format!("category-{}", i % 40)));
        }
        for i in 0..100 {
            let order = format!("p{i:03}");
            lines.push(cat(line(&order, &format!("sku-{i}"), 2 * 86_400, 3, 1, 0), format!("short-{i}")));
            lines.push(cat(line(&order, &format!("new-{i}"), 2 * 86_400, 4, 2, 0), format!("short-{i}")));
        }
        let d = OrderHistory { lines: lines.clone() }.digest();
        let mut order_ids: Vec<&str> = vec!["o1", "o2"];
        let short: Vec<String> = (0..100).map(|i| format!("p{i:03}")).collect();
        order_ids.extend(short.iter().map(String::as_str));
        assert_eq!(d.orders.len(), order_ids.len());
        let (mut at, mut sku_at) = (0, 0);
        for (o, order_id) in d.orders.iter().zip(order_ids) {
            let mut plain: std::collections::BTreeMap<&str, Cents> = Default::default();
            let mut skus: std::collections::BTreeSet<&str> = Default::default();
            for l in lines.iter().filter(|l| l.order_id == order_id) {
                *plain.entry(l.category.as_str()).or_default() += l.amount();
                skus.insert(l.sku.as_str());
            }
            let listed: std::collections::BTreeMap<&str, Cents> =
                d.category_spend[at..at + o.categories as usize].iter().map(|&(i, s)| (d.category_names[i as usize].as_str(), s)).collect();
            assert_eq!(listed, plain, "{order_id}");
            let listed_skus: std::collections::BTreeSet<&str> = d.order_skus[sku_at..sku_at + o.skus as usize].iter().map(|&i| d.sku_names[i as usize].as_str()).collect();
            assert_eq!((listed_skus.len(), listed_skus), (o.skus as usize, skus), "{order_id}");
            (at, sku_at) = (at + o.categories as usize, sku_at + o.skus as usize);
        }
        assert_eq!((at, sku_at), (d.category_spend.len(), d.order_skus.len()));
        assert_eq!(d.category_names.len(), 250, "o2's categories are o1's names again");
        assert_eq!(d.sku_names.len(), 400);
    }

    #[test]
    fn amounts_too_large_to_add_saturate_instead_of_overflowing() {
        let lines = vec![line("o1", "a", 0, i64::MAX / 2, 1, 0), line("o1", "b", 0, i64::MAX / 2, 1, 0), line("o1", "c", 0, i64::MAX / 2, 1, 0)];
        let d = OrderHistory { lines }.digest();
        assert_eq!(d.orders[0].amount, i64::MAX);
        assert_eq!(d.category_spend, [(0, i64::MAX)]);
    }

    #[test]
    fn event_merge_is_idempotent() {
        let e = |ts, sku: &str| Event { ts, kind: EventKind::View, sku: sku.into(), channel: "pc".into() };
        let mut h = EventHistory::default();
        h.merge([e(2, "a"), e(1, "b")]);
        h.merge([e(2, "a"), e(1, "b")]);
        assert_eq!(h.events, vec![e(1, "b"), e(2, "a")]);
    }
}
