//! Member profiles: every metric of DATA.md as of a date, computed from a member's
//! record and order digest. Pure: no I/O, tested from plain data.
//!
//! Two steps. [`metrics`] computes what depends on one member alone (orders, monetary,
//! recency, stage, repurchase cycle, sensitivity, favourites, age). [`CutPoints::compute`]
//! takes the population-wide nearest-rank percentiles (RFM, price tiers) over the members
//! with orders, and [`Profile::new`] finishes a member with its scores and tiers.

use crate::domain::{civil_from_days, div_round_half_away, Cents, Day, Text};
use crate::store::columns::{flag, Columns, Dict, MemberRow};
use crate::store::model::{Gender, Member};
use std::cmp::Ordering;

mod settings;
pub use settings::{ProfileConfig, StageMaxDays, ValueTierConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Prospect,
    Active,
    Silent,
    Sleeping,
    Dormant,
    Lost,
}

impl Stage {
    pub const ALL: [Stage; 6] = [Stage::Prospect, Stage::Active, Stage::Silent, Stage::Sleeping, Stage::Dormant, Stage::Lost];
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Prospect => "prospect",
            Stage::Active => "active",
            Stage::Silent => "silent",
            Stage::Sleeping => "sleeping",
            Stage::Dormant => "dormant",
            Stage::Lost => "lost",
        }
    }
}

/// A three-way tier (price tier, price sensitivity tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Low,
    Mid,
    High,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Low, Tier::Mid, Tier::High];
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Low => "low",
            Tier::Mid => "mid",
            Tier::High => "high",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueTier {
    Important,
    General,
    AtRisk,
}

impl ValueTier {
    pub const ALL: [ValueTier; 3] = [ValueTier::Important, ValueTier::General, ValueTier::AtRisk];
    pub fn as_str(self) -> &'static str {
        match self {
            ValueTier::Important => "important",
            ValueTier::General => "general",
            ValueTier::AtRisk => "at_risk",
        }
    }
}

/// The metrics of one member that need no population.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub orders: u32,
    pub monetary: Cents,
    pub first_order: Option<Day>,
    pub last_order: Option<Day>,
    pub recency_days: Option<i32>,
    pub stage: Stage,
    /// Twice the median gap between distinct order dates (exact: the median may be x.5).
    pub interval_median_x2: Option<i64>,
    pub repurchase_due: bool,
    pub discounted_orders: u32,
    pub top_category: Option<Text>,
    pub top_brand: Option<Text>,
    pub age: Option<i32>,
    pub gender: Gender,
    pub consent_email: bool,
    pub consent_sms: bool,
}

impl Metrics {
    /// aov in cents, rounded half away from zero.
    pub fn aov(&self) -> Option<Cents> {
        (self.orders > 0).then(|| div_round_half_away(i128::from(self.monetary), i128::from(self.orders)) as Cents)
    }

    pub fn interval_median_days(&self) -> Option<f64> {
        self.interval_median_x2.map(|x| x as f64 / 2.0)
    }

    /// Share of orders with a discounted line.
    pub fn price_sensitivity(&self) -> Option<f64> {
        (self.orders > 0).then(|| f64::from(self.discounted_orders) / f64::from(self.orders))
    }

    /// Compares two members' aov exactly (as fractions monetary / orders).
    fn aov_cmp(&self, other: &Metrics) -> Ordering {
        (i128::from(self.monetary) * i128::from(other.orders)).cmp(&(i128::from(other.monetary) * i128::from(self.orders)))
    }
}

/// Buffers `metrics` reuses on each thread, so profiling a million members does not
/// allocate a million times.
#[derive(Default)]
struct Scratch {
    gaps: Vec<i64>,
    total: Vec<Option<Cents>>,
    entries: Vec<(u32, Cents)>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// What [`metrics`] reads of a member: its attributes, and its orders in day order with
/// each order's spend per category and brand. A decoded [`Member`] is one; a row of the
/// member base's columns ([`MemberRow`]) is another, read in place.
pub trait MemberFacts {
    /// How many orders are dated on or before `as_of`.
    fn orders_through(&self, as_of: Day) -> usize;
    fn order_day(&self, i: usize) -> Day;
    fn order_amount(&self, i: usize) -> Cents;
    fn order_discounted(&self, i: usize) -> bool;
    /// How many entries of spend per category and per brand the first `n` orders have.
    fn spend_entries(&self, n: usize) -> (usize, usize);
    /// The category with the most spend over the first `entries` entries (ties: the
    /// name that sorts first); likewise [`MemberFacts::top_brand`].
    fn top_category(&self, entries: usize) -> Option<Text>;
    fn top_brand(&self, entries: usize) -> Option<Text>;
    fn birth_year(&self) -> Option<i32>;
    fn gender(&self) -> Gender;
    fn opted_in(&self) -> (bool, bool);
}

impl MemberFacts for Member {
    fn orders_through(&self, as_of: Day) -> usize {
        self.digest.orders.partition_point(|o| o.day <= as_of)
    }
    fn order_day(&self, i: usize) -> Day {
        self.digest.orders[i].day
    }
    fn order_amount(&self, i: usize) -> Cents {
        self.digest.orders[i].amount
    }
    fn order_discounted(&self, i: usize) -> bool {
        self.digest.orders[i].discounted
    }
    fn spend_entries(&self, n: usize) -> (usize, usize) {
        self.digest.orders[..n].iter().fold((0, 0), |(c, b), o| (c + o.categories as usize, b + o.brands as usize))
    }
    fn top_category(&self, entries: usize) -> Option<Text> {
        top_of_member(&self.digest.category_spend[..entries], &self.digest.category_names)
    }
    fn top_brand(&self, entries: usize) -> Option<Text> {
        top_of_member(&self.digest.brand_spend[..entries], &self.digest.brand_names)
    }
    fn birth_year(&self) -> Option<i32> {
        self.birth_year
    }
    fn gender(&self) -> Gender {
        self.gender
    }
    fn opted_in(&self) -> (bool, bool) {
        (self.opted_in_email, self.opted_in_sms)
    }
}

/// The top name of a digest's spend entries (indexes into the member's own names).
fn top_of_member(spend: &[(u32, Cents)], names: &[Text]) -> Option<Text> {
    SCRATCH.with_borrow_mut(|s| {
        s.total.clear();
        s.total.resize(names.len(), None);
        for &(i, a) in spend {
            *s.total[i as usize].get_or_insert(0) += a;
        }
        (0..names.len())
            .filter_map(|i| s.total[i].map(|t| (i, t)))
            .max_by(|&(a, ta), &(b, tb)| ta.cmp(&tb).then_with(|| names[b].cmp(&names[a])))
            .map(|(i, _)| names[i].clone())
    })
}

/// A row of the member columns with its dictionaries.
#[derive(Clone, Copy)]
pub struct ColumnMember<'a> {
    pub row: MemberRow<'a>,
    pub columns: &'a Columns<'a>,
}

impl<'a> ColumnMember<'a> {
    /// The member's city ("" when unknown).
    pub fn city(&self) -> &'a str {
        self.columns.name(Dict::City, self.row.city)
    }

    /// The member's IANA time zone ("": the configured default).
    pub fn tz(&self) -> &'a str {
        self.columns.name(Dict::Tz, self.row.tz)
    }

    /// The top name of spend entries indexing a dictionary (index order is name order).
    fn top(&self, names: &[u32], spend: &[Cents], dict: Dict) -> Option<Text> {
        SCRATCH.with_borrow_mut(|s| {
            s.entries.clear();
            s.entries.extend(names.iter().copied().zip(spend.iter().copied()));
            s.entries.sort_unstable_by_key(|&(i, _)| i);
            let mut best: Option<(u32, Cents)> = None;
            for run in s.entries.chunk_by(|a, b| a.0 == b.0) {
                let total = run.iter().fold(0, |t: Cents, &(_, a)| t + a);
                // ascending names: only a larger total displaces the first best
                if best.is_none_or(|(_, b)| total > b) {
                    best = Some((run[0].0, total));
                }
            }
            best.map(|(i, _)| Text::from(self.columns.name(dict, i)))
        })
    }
}

impl MemberFacts for ColumnMember<'_> {
    fn orders_through(&self, as_of: Day) -> usize {
        self.row.days.partition_point(|&d| d <= as_of)
    }
    fn order_day(&self, i: usize) -> Day {
        self.row.days[i]
    }
    fn order_amount(&self, i: usize) -> Cents {
        self.row.amounts[i]
    }
    fn order_discounted(&self, i: usize) -> bool {
        self.row.discounted[i] != 0
    }
    fn spend_entries(&self, n: usize) -> (usize, usize) {
        let sum = |c: &[u16]| c.iter().map(|&x| x as usize).sum();
        (sum(&self.row.categories[..n]), sum(&self.row.brands[..n]))
    }
    fn top_category(&self, entries: usize) -> Option<Text> {
        self.top(&self.row.category_name[..entries], &self.row.category_spend[..entries], Dict::Category)
    }
    fn top_brand(&self, entries: usize) -> Option<Text> {
        self.top(&self.row.brand_name[..entries], &self.row.brand_spend[..entries], Dict::Brand)
    }
    fn birth_year(&self) -> Option<i32> {
        self.row.birth_year()
    }
    fn gender(&self) -> Gender {
        self.row.gender
    }
    fn opted_in(&self) -> (bool, bool) {
        (self.row.has(flag::EMAIL), self.row.has(flag::SMS))
    }
}

/// The metrics of `m` as of day `as_of` (orders dated after it do not count).
pub fn metrics(m: &impl MemberFacts, as_of: Day, cfg: &ProfileConfig) -> Metrics {
    metrics_with(m, as_of, cfg, true)
}

/// [`metrics`]; without `favourites` the spend per category and brand is not read and
/// `top_category` / `top_brand` stay None (the planner asks only when a rule needs them).
pub fn metrics_with(m: &impl MemberFacts, as_of: Day, cfg: &ProfileConfig, favourites: bool) -> Metrics {
    let n = m.orders_through(as_of);
    let monetary: Cents = (0..n).map(|i| m.order_amount(i)).sum();
    let first_order = (n > 0).then(|| m.order_day(0));
    let last_order = n.checked_sub(1).map(|i| m.order_day(i));
    let recency_days = last_order.map(|l| as_of - l);
    let s = &cfg.stage_max_days;
    let stage = match recency_days {
        None => Stage::Prospect,
        Some(r) if r <= s.active => Stage::Active,
        Some(r) if r <= s.silent => Stage::Silent,
        Some(r) if r <= s.sleeping => Stage::Sleeping,
        Some(r) if r <= s.dormant => Stage::Dormant,
        Some(_) => Stage::Lost,
    };
    let interval_median_x2 = SCRATCH.with_borrow_mut(|s| {
        // gaps between distinct order days (orders are in day order)
        s.gaps.clear();
        let mut prev: Option<Day> = None;
        for day in (0..n).map(|i| m.order_day(i)) {
            match prev {
                Some(p) if p == day => {}
                Some(p) => s.gaps.push(i64::from(day - p)),
                None => {}
            }
            prev = Some(day);
        }
        let g = s.gaps.len();
        match g {
            0 => None,
            _ if g % 2 == 1 => Some(2 * *s.gaps.select_nth_unstable(g / 2).1),
            _ => {
                let hi = *s.gaps.select_nth_unstable(g / 2).1;
                let lo = s.gaps[..g / 2].iter().copied().max().unwrap_or(hi);
                Some(lo + hi)
            }
        }
    });
    let repurchase_due = match (interval_median_x2, recency_days) {
        (Some(x2), Some(r)) => f64::from(r) >= x2 as f64 / 2.0 * cfg.repurchase_factor,
        _ => false,
    };
    // spend per category and brand over the orders up to the as-of day
    let (nc, nb) = if favourites { m.spend_entries(n) } else { (0, 0) };
    let (consent_email, consent_sms) = m.opted_in();
    Metrics {
        orders: n as u32,
        monetary,
        first_order,
        last_order,
        recency_days,
        stage,
        interval_median_x2,
        repurchase_due,
        discounted_orders: (0..n).filter(|&i| m.order_discounted(i)).count() as u32,
        top_category: if favourites { m.top_category(nc) } else { None },
        top_brand: if favourites { m.top_brand(nb) } else { None },
        age: m.birth_year().map(|y| civil_from_days(as_of).0 - y),
        gender: m.gender(),
        consent_email,
        consent_sms,
    }
}


/// The nearest-rank percentiles `ks` (ascending) of `v` (the value at 1-based rank
/// ceil(k/100 x n) of `v` sorted), by selection; reorders `v`.
fn ranks<T: Copy, const N: usize>(v: &mut [T], ks: [u32; N], cmp: impl Fn(&T, &T) -> Ordering + Copy) -> [T; N] {
    let n = v.len();
    let idx = ks.map(|k| (k as usize * n).div_ceil(100).max(1) - 1);
    let mut from = 0;
    let mut out = [v[0]; N];
    for (slot, &i) in out.iter_mut().zip(&idx) {
        // earlier selections leave everything before `from` no larger than what follows
        let (_, x, _) = v[from..].select_nth_unstable_by(i - from, cmp);
        *slot = *x;
        from = i;
    }
    out
}

/// Population-wide cut points, over the members with at least one order.
#[derive(Debug, Clone, PartialEq)]
pub struct CutPoints {
    pub recency: [i32; 4],
    pub orders: [u32; 4],
    pub monetary: [Cents; 4],
    /// aov cut points as exact fractions (monetary, orders).
    pub aov_low: (Cents, u32),
    pub aov_high: (Cents, u32),
    pub buyers: usize,
}

impl CutPoints {
    /// `None` when no member has an order.
    pub fn compute<'a>(all: impl Iterator<Item = &'a Metrics> + Clone, cfg: &ProfileConfig) -> Option<CutPoints> {
        let buyers: Vec<&Metrics> = all.filter(|m| m.orders > 0).collect();
        if buyers.is_empty() {
            return None;
        }
        let ks = [20, 40, 60, 80];
        let [lo, hi] = cfg.price_tier_percentiles;
        let frac = |m: &Metrics| (m.monetary, m.orders);
        // each percentile by selection (linear) instead of a full sort, the four columns at once
        let ((recency, orders), (monetary, (aov_low, aov_high))) = rayon::join(
            || {
                rayon::join(
                    || ranks(&mut buyers.iter().filter_map(|m| m.recency_days).collect::<Vec<i32>>(), ks, i32::cmp),
                    || ranks(&mut buyers.iter().map(|m| m.orders).collect::<Vec<u32>>(), ks, u32::cmp),
                )
            },
            || {
                rayon::join(
                    || ranks(&mut buyers.iter().map(|m| m.monetary).collect::<Vec<Cents>>(), ks, Cents::cmp),
                    || {
                        let [a, b] = ranks(&mut buyers.clone(), [lo, hi], |a, b| a.aov_cmp(b));
                        (frac(a), frac(b))
                    },
                )
            },
        );
        Some(CutPoints {
            recency,
            orders,
            monetary,
            aov_low,
            aov_high,
buyers: buyers.len(),
        })
    }
}

/// A member's complete profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub metrics: Metrics,
    pub r: Option<u8>,
    pub f: Option<u8>,
    pub m: Option<u8>,
    pub value_tier: Option<ValueTier>,
    pub price_tier: Option<Tier>,
    pub sensitivity_tier: Option<Tier>,
    /// The predicted-value model's view, when a model is fitted and the member has orders.
    pub prediction: Option<crate::predict::MemberPrediction>,
}

fn below<T: PartialOrd>(cuts: &[T; 4], v: &T) -> u8 {
    cuts.iter().filter(|c| *c < v).count() as u8
}

impl Profile {
    /// Scores and tiers a member against the population's cut points.
    pub fn new(metrics: Metrics, cuts: Option<&CutPoints>, cfg: &ProfileConfig) -> Profile {
        let mut p = Profile {
            metrics,
            r: None,
            f: None,
            m: None,
            value_tier: None,
            price_tier: None,
            sensitivity_tier: None,
            prediction: None,
        };
        p.score(cuts, cfg);
        p
    }

    /// Sets the scores and tiers (left empty for a member without orders).
    pub fn score(&mut self, cuts: Option<&CutPoints>, cfg: &ProfileConfig) {
        let metrics = &self.metrics;
        let (Some(c), Some(rec)) = (cuts.filter(|_| metrics.orders > 0), metrics.recency_days) else {
            return;
        };
        let r = 5 - below(&c.recency, &rec);
        let f = 1 + below(&c.orders, &metrics.orders);
        let m = 1 + below(&c.monetary, &metrics.monetary);
        let v = &cfg.value_tier;
        let value_tier = if r >= v.important_min_r && f + m >= v.important_min_fm {
            ValueTier::Important
        } else if r <= v.at_risk_max_r && f + m >= v.at_risk_min_fm {
            ValueTier::AtRisk
        } else {
            ValueTier::General
        };
        let aov_vs = |(cm, co): (Cents, u32)| {
            (i128::from(metrics.monetary) * i128::from(co)).cmp(&(i128::from(cm) * i128::from(metrics.orders)))
        };
        let price_tier = if aov_vs(c.aov_low) != Ordering::Greater {
            Tier::Low
        } else if aov_vs(c.aov_high) == Ordering::Greater {
            Tier::High
        } else {
            Tier::Mid
        };
        let share = metrics.price_sensitivity().unwrap_or(0.0);
        let sensitivity_tier = if share >= cfg.sensitivity_high_at_least {
            Tier::High
        } else if share < cfg.sensitivity_low_below {
            Tier::Low
        } else {
            Tier::Mid
        };
        self.r = Some(r);
        self.f = Some(f);
        self.m = Some(m);
        self.value_tier = Some(value_tier);
        self.price_tier = Some(price_tier);
        self.sensitivity_tier = Some(sensitivity_tier);
    }
}

#[cfg(test)]
mod tests;
