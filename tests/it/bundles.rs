//! Bundles from the store: the co-purchase pairs rekindle's generator plants are found
//! with the confidence they were planted with, in the basket scope, and "who will buy X"
//! returns members who have not bought X.

use crate::support::sample_store;
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
