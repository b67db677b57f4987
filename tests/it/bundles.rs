//! Bundles from the store: the co-purchase pairs rekindle's generator plants are found
//! with the confidence they were planted with, in the basket scope, and "who will buy X"
//! returns members who have not bought X.

use crate::support::{import, sample_store};
use rekindle::basket::{member_transactions, transactions, Scope};
use rekindle::bundles::{audience, mine, AudienceParams, MineParams, OfferIndex};
use rekindle::domain::parse_date;

#[test]
fn planted_pairs_are_found_with_their_confidence() {
    let dir = tempfile::tempdir().unwrap();
    let (store, data, _) = sample_store(dir.path(), 10_000);
    let as_of = parse_date("2026-11-01").unwrap();
    let tx = transactions(&store, Scope::Basket, as_of, None).unwrap();
    let rules = mine(&tx, &MineParams { min_support: 0.0005, min_confidence: 0.05, ..Default::default() }).unwrap();
    let planted = std::fs::read_to_string(data.join("planted_pairs.csv")).unwrap();
    let mut found = 0;
    for line in planted.lines().skip(1) {
        let mut f = line.split(',');
        let (a, b) = (f.next().unwrap(), f.next().unwrap());
        let Some(r) = rules.iter().find(|r| r.antecedent == [a] && r.consequent == b) else { continue };
        // B joins 30% of A's baskets, plus the chance of buying B anyway
        assert!((0.27..0.45).contains(&r.confidence), "{a} -> {b}: confidence {}", r.confidence);
        assert!(r.lift > 3.0, "{a} -> {b}: lift {}", r.lift);
        found += 1;
    }
    assert!(found >= 15, "only {found} of 20 planted pairs passed min_support");

    let index = OfferIndex::new(rules);
    let members = member_transactions(&store, as_of).unwrap();
    let target = planted.lines().nth(1).unwrap().split(',').nth(1).unwrap();
    let who = audience(&members, &index, target, &AudienceParams { top: Some(50), min_score: 0.0 });
    assert_eq!(who.len(), 50);
    for w in &who {
        let hist = store.history(&w.member).unwrap().unwrap();
        assert!(hist.lines.iter().all(|l| l.sku != target), "{} already bought {target}", w.member);
    }
    assert!(who.windows(2).all(|p| p[0].score >= p[1].score), "best first");
}

/// The transactions mining reads come from the member columns. They equal the ones built
/// from every stored order history by hand, in both scopes, with and without a lookback:
/// an order counts by its order date (its earliest line's UTC date), wholly or not at
/// all, even when its lines span the as-of day or the start of the lookback. Mined from
/// both, the rules are the same.
#[test]
fn transactions_from_the_columns_equal_those_from_the_histories() {
    use rekindle::bundles::{Transactions, TransactionsBuilder};
    use rekindle::domain::day_of;
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let (store, data, _) = sample_store(dir.path(), 2_000);
    // orders whose lines fall on two days: across the as-of day, and across the lookback's start
    let extra = data.join("spanning.csv");
    std::fs::write(
        &extra,
        "order_id,member_id,ts,sku,category,brand,unit_price,qty,discount_pct\n\
         span-asof,m0000001,2026-11-01T23:00:00Z,X-ASOF-1,,,10.00,1,\n\
         span-asof,m0000001,2026-11-02T01:00:00Z,X-ASOF-2,,,10.00,1,\n\
         span-late,m0000002,2026-11-02T00:30:00Z,X-LATE-1,,,10.00,1,\n\
         span-late,m0000002,2026-11-01T22:00:00Z,X-LATE-2,,,10.00,1,\n\
         span-start,m0000003,2026-05-04T23:59:00Z,X-START-1,,,10.00,1,\n\
         span-start,m0000003,2026-05-05T00:01:00Z,X-START-2,,,10.00,1,\n",
    )
    .unwrap();
    let (s, bad) = import(&store, &extra);
    assert!(bad.is_empty() && s.bad == 0, "{bad:?}");
    let as_of = parse_date("2026-11-01").unwrap();

    // by hand: each order's lines, its date the earliest line's, kept whole when in the window
    let reference = |scope: Scope, lookback: Option<u32>| -> Transactions {
        let from = lookback.map_or(i32::MIN, |n| as_of - n as i32);
        let mut b = TransactionsBuilder::new();
        for item in store.scan_histories() {
            let (member, hist) = item.unwrap();
            let mut orders: BTreeMap<&str, (i32, Vec<&str>)> = BTreeMap::new();
            for l in &hist.lines {
                let o = orders.entry(&l.order_id).or_insert((i32::MAX, Vec::new()));
                o.0 = o.0.min(day_of(l.ts));
                o.1.push(&l.sku);
            }
            for (order, (day, skus)) in orders {
                if day < from || day > as_of {
                    continue;
                }
                let key = if scope == Scope::Basket { order } else { &member };
                b.add_all(key, skus).unwrap();
            }
        }
        b.build()
    };
    let as_sets = |tx: &Transactions, keyed: bool| -> Vec<(String, Vec<String>)> {
        let mut v: Vec<(String, Vec<String>)> = (0..tx.len())
            .map(|t| {
                let mut items: Vec<String> = tx.item_names_of(t).map(str::to_owned).collect();
                items.sort();
                (if keyed { tx.key(t).to_owned() } else { String::new() }, items)
            })
            .collect();
        v.sort();
        v
    };
    let params = MineParams { min_support: 0.002, min_confidence: 0.05, two_item_antecedents: true, ..Default::default() };
    for scope in [Scope::Basket, Scope::Member] {
        for lookback in [None, Some(180)] {
            let got = transactions(&store, scope, as_of, lookback).unwrap();
            let want = reference(scope, lookback);
            assert!(got.len() > 500, "{scope:?} {lookback:?}: only {} transactions", got.len());
            assert_eq!(got.len(), want.len(), "{scope:?} {lookback:?}");
            assert_eq!(as_sets(&got, scope == Scope::Member), as_sets(&want, scope == Scope::Member), "{scope:?} {lookback:?}");
            let (mined, expected) = (mine(&got, &params).unwrap(), mine(&want, &params).unwrap());
            assert!(!mined.is_empty(), "{scope:?} {lookback:?}: no rules to compare");
            assert_eq!(mined, expected, "{scope:?} {lookback:?}");
        }
    }
    // the spanning orders: in or out as a whole, by their earliest line
    let basket = as_sets(&transactions(&store, Scope::Basket, as_of, Some(180)).unwrap(), false);
    let has = |skus: &[&str]| basket.iter().any(|(_, s)| s == skus);
    assert!(has(&["X-ASOF-1", "X-ASOF-2"]), "an order dated on the as-of day counts whole");
    assert!(has(&["X-LATE-1", "X-LATE-2"]), "its earliest line is on the as-of day");
    assert!(!basket.iter().any(|(_, s)| s.iter().any(|k| k.starts_with("X-START"))), "dated the day before the lookback starts");
    let all = as_sets(&transactions(&store, Scope::Basket, as_of, None).unwrap(), false);
    assert!(all.iter().any(|(_, s)| s == &["X-START-1", "X-START-2"]), "without a lookback it counts");
}
