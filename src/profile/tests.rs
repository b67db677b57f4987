//! Unit tests pinning each metric rule of DATA.md on edge cases.
use super::*;
use crate::domain::days_from_civil;
use crate::store::model::{OrderHistory, OrderLine};

fn day(y: i32, m: u32, d: u32) -> Day {
    days_from_civil(y, m, d)
}

fn line(order: &str, sku: &str, d: Day, price: i64, qty: u32, disc_pct: u32, cat: &str) -> OrderLine {
    OrderLine {
        order_id: order.into(),
        sku: sku.into(),
        ts: i64::from(d) * 86_400 + 3600,
        category: cat.into(),
        brand: format!("b-{cat}").into(),
        unit_price: price,
        qty,
        discount_ppm: disc_pct * 10_000,
    }
}

fn member(lines: Vec<OrderLine>) -> Member {
    let mut h = OrderHistory::default();
    h.merge(lines);
    Member { digest: h.digest(), birth_year: Some(1990), ..Default::default() }
}

fn cfg() -> ProfileConfig {
    ProfileConfig::default()
}

#[test]
fn no_orders_is_a_prospect_without_scores() {
    let m = metrics(&Member::default(), day(2026, 1, 1), &cfg());
    assert_eq!((m.orders, m.monetary, m.stage, m.recency_days), (0, 0, Stage::Prospect, None));
    assert_eq!(m.aov(), None);
    let p = Profile::new(m.clone(), None, &cfg());
    assert_eq!((p.r, p.price_tier, p.value_tier), (None, None, None));
}

#[test]
fn several_orders_on_one_day_count_once_for_the_interval() {
    let d = day(2026, 1, 1);
    let m = member(vec![
        line("o1", "a", d, 1000, 1, 0, "x"),
        line("o2", "a", d, 1000, 1, 0, "x"),
        line("o3", "a", d + 10, 1000, 1, 0, "x"),
    ]);
    let mt = metrics(&m, d + 20, &cfg());
    assert_eq!(mt.orders, 3);
    assert_eq!(mt.interval_median_x2, None.or(Some(20)), "one gap of 10 days between two distinct dates");
    assert!(mt.repurchase_due, "recency 10 >= median 10 x 1.0");
}

#[test]
fn median_of_even_and_odd_gap_counts() {
    let d = day(2025, 1, 1);
    // gaps 3, 10 -> median 6.5
    let even = member(vec![line("a", "s", d, 1, 1, 0, ""), line("b", "s", d + 3, 1, 1, 0, ""), line("c", "s", d + 13, 1, 1, 0, "")]);
    let m = metrics(&even, d + 13, &cfg());
    assert_eq!(m.interval_median_days(), Some(6.5));
    assert!(!m.repurchase_due, "recency 0 < 6.5");
    // gaps 3, 10, 1 -> median 3
    let odd = member(vec![
        line("a", "s", d, 1, 1, 0, ""),
        line("b", "s", d + 3, 1, 1, 0, ""),
        line("c", "s", d + 13, 1, 1, 0, ""),
        line("e", "s", d + 14, 1, 1, 0, ""),
    ]);
    let m = metrics(&odd, d + 17, &cfg());
    assert_eq!(m.interval_median_days(), Some(3.0));
    assert!(m.repurchase_due, "recency 3 >= 3");
}

#[test]
fn orders_after_the_as_of_date_do_not_count() {
    let d = day(2025, 6, 1);
    let m = member(vec![line("a", "s", d, 500, 1, 0, "x"), line("b", "s", d + 1, 700, 1, 0, "x")]);
    let mt = metrics(&m, d, &cfg());
    assert_eq!((mt.orders, mt.monetary, mt.recency_days), (1, 500, Some(0)));
    let none = metrics(&m, d - 1, &cfg());
    assert_eq!(none.stage, Stage::Prospect);
}

#[test]
fn stage_boundaries() {
    let d = day(2025, 1, 1);
    let m = member(vec![line("a", "s", d, 1, 1, 0, "")]);
    for (r, stage) in [(0, Stage::Active), (90, Stage::Active), (91, Stage::Silent), (180, Stage::Silent), (181, Stage::Sleeping),
        (270, Stage::Sleeping), (271, Stage::Dormant), (359, Stage::Dormant), (360, Stage::Lost)] {
        assert_eq!(metrics(&m, d + r, &cfg()).stage, stage, "recency {r}");
    }
}

#[test]
fn discount_lines_make_an_order_discounted_and_amounts_round() {
    let d = day(2025, 1, 1);
    let m = member(vec![
        line("a", "s1", d, 5, 1, 50, "x"),  // 0.025 -> 0.03
        line("a", "s2", d, 1000, 2, 0, "x"),
        line("b", "s1", d + 1, 999, 1, 0, "y"),
    ]);
    let mt = metrics(&m, d + 1, &cfg());
    assert_eq!(mt.monetary, 3 + 2000 + 999);
    assert_eq!(mt.discounted_orders, 1);
    assert_eq!(mt.price_sensitivity(), Some(0.5));
    // aov = 3002 / 2 = 1501
    assert_eq!(mt.aov(), Some(1501));
}

#[test]
fn top_category_ties_go_to_the_smallest_name() {
    let d = day(2025, 1, 1);
    let m = member(vec![line("a", "s1", d, 100, 1, 0, "zeta"), line("a", "s2", d, 100, 1, 0, "alpha"), line("b", "s3", d, 50, 1, 0, "mid")]);
    let mt = metrics(&m, d, &cfg());
    assert_eq!(mt.top_category.as_deref(), Some("alpha"));
    assert_eq!(mt.top_brand.as_deref(), Some("b-alpha"));
}

#[test]
fn age_is_the_year_difference() {
    let m = member(vec![]);
    assert_eq!(metrics(&m, day(2026, 1, 1), &cfg()).age, Some(36));
    assert_eq!(metrics(&m, day(2026, 12, 31), &cfg()).age, Some(36));
}

fn buyer(orders: u32, monetary: i64, recency: i32) -> Metrics {
    Metrics {
        orders,
        monetary,
        first_order: Some(0),
        last_order: Some(0),
        recency_days: Some(recency),
        stage: Stage::Active,
        interval_median_x2: None,
        repurchase_due: false,
        discounted_orders: 0,
        top_category: None,
        top_brand: None,
        age: None,
        gender: Gender::Unknown,
        consent_email: false,
        consent_sms: false,
    }
}

#[test]
fn nearest_rank_cut_points_and_scores_with_ties() {
    // 10 buyers: monetary 100..1000; nearest rank p20 = rank 2 -> 200, p40 -> 400, p60 -> 600, p80 -> 800
    let all: Vec<Metrics> = (1..=10).map(|i| buyer(1, i * 100, (11 - i) as i32)).collect();
    let c = CutPoints::compute(all.iter(), &cfg()).unwrap();
    assert_eq!(c.monetary, [200, 400, 600, 800]);
    assert_eq!(c.recency, [2, 4, 6, 8]);
    let score = |m: &Metrics| Profile::new(m.clone(), Some(&c), &cfg());
    // value equal to a cut point is not strictly above it
    assert_eq!(score(&all[1]).m, Some(1), "200 is not above the p20 cut 200");
    assert_eq!(score(&all[2]).m, Some(2));
    assert_eq!(score(&all[9]).m, Some(5));
    // recency 2 equals p20 cut: 5 - 0 = 5; recency 3 -> 4
    assert_eq!(score(&buyer(1, 1, 2)).r, Some(5));
    assert_eq!(score(&buyer(1, 1, 3)).r, Some(4));
    assert_eq!(score(&buyer(1, 1, 100)).r, Some(1));
    // all equal frequencies: everyone gets 1
    assert!(all.iter().all(|m| score(m).f == Some(1)));
}

#[test]
fn price_tiers_compare_aov_exactly() {
    // aov 10/3 (3.333..) vs 333/100: exact comparison keeps them apart
    let mut all: Vec<Metrics> = (1..=10).map(|i| buyer(1, i * 100, 1)).collect();
    all.push(buyer(3, 1000, 1)); // aov 333.33..
    let c = CutPoints::compute(all.iter(), &cfg()).unwrap();
    // 11 buyers: p30 = rank ceil(3.3) = 4 -> sorted aovs 100,200,300,333.3,...; p80 = rank 9 -> 800
    assert_eq!(c.aov_low, (1000, 3));
    assert_eq!(c.aov_high, (800, 1));
    let tier = |m: &Metrics| Profile::new(m.clone(), Some(&c), &cfg()).price_tier;
    assert_eq!(tier(&buyer(3, 1000, 1)), Some(Tier::Low), "equal to p30 is low");
    assert_eq!(tier(&buyer(1, 334, 1)), Some(Tier::Mid));
    assert_eq!(tier(&buyer(1, 800, 1)), Some(Tier::Mid), "equal to p80 is not high");
    assert_eq!(tier(&buyer(1, 801, 1)), Some(Tier::High));
}

#[test]
fn value_tiers_and_sensitivity_tiers() {
    let all: Vec<Metrics> = (1..=10).map(|i| buyer(i as u32, i * 100, (11 - i) as i32)).collect();
    let c = CutPoints::compute(all.iter(), &cfg()).unwrap();
    let best = Profile::new(all[9].clone(), Some(&c), &cfg());
    assert_eq!((best.r, best.f, best.m, best.value_tier), (Some(5), Some(5), Some(5), Some(ValueTier::Important)));
    let lapsed = Profile::new(buyer(10, 1000, 50), Some(&c), &cfg());
    assert_eq!(lapsed.value_tier, Some(ValueTier::AtRisk));
    let mut s = buyer(5, 100, 1);
    s.discounted_orders = 1; // 0.2: not low (< 0.2), not high
    assert_eq!(Profile::new(s.clone(), Some(&c), &cfg()).sensitivity_tier, Some(Tier::Mid));
    s.discounted_orders = 0;
    assert_eq!(Profile::new(s.clone(), Some(&c), &cfg()).sensitivity_tier, Some(Tier::Low));
    s.discounted_orders = 3; // 0.6
    assert_eq!(Profile::new(s, Some(&c), &cfg()).sensitivity_tier, Some(Tier::High));
}

#[test]
fn re_imported_lines_do_not_double_count() {
    let d = day(2025, 1, 1);
    let lines = vec![line("a", "s1", d, 100, 1, 0, "x"), line("a", "s2", d, 200, 1, 0, "x")];
    let mut h = OrderHistory::default();
    h.merge(lines.clone());
    h.merge(lines);
    let m = Member { digest: h.digest(), ..Default::default() };
    let mt = metrics(&m, d, &cfg());
    assert_eq!((mt.orders, mt.monetary), (1, 300));
}
