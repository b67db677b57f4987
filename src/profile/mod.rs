//! Member profiles: every metric of DATA_FORMAT.md as of a date, computed from a member's
//! record and order digest. Pure: no I/O, tested from plain data.
//!
//! Two steps. [`metrics`] computes what depends on one member alone (orders, monetary,
//! recency, stage, repurchase cycle, sensitivity, favourites, age). [`CutPoints::compute`]
//! takes the population-wide nearest-rank percentiles (RFM, price tiers) over the members
//! with orders, and [`Profile::new`] finishes a member with its scores and tiers.

use crate::config::ProfileConfig;
use crate::domain::{civil_from_days, div_round_half_away, Cents, Day, Text};
use crate::store::model::{Gender, Member};
use std::cmp::Ordering;

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

/// The metrics of `m` as of day `as_of` (orders dated after it do not count).
pub fn metrics(m: &Member, as_of: Day, cfg: &ProfileConfig) -> Metrics {
    let d = &m.digest;
    let n = d.orders.partition_point(|o| o.day <= as_of);
    let orders = &d.orders[..n];
    let monetary: Cents = orders.iter().map(|o| o.amount).sum();
    let first_order = orders.first().map(|o| o.day);
    let last_order = orders.last().map(|o| o.day);
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
    let mut days: Vec<Day> = orders.iter().map(|o| o.day).collect();
    days.dedup();
    let mut gaps: Vec<i64> = days.windows(2).map(|w| i64::from(w[1] - w[0])).collect();
    gaps.sort_unstable();
    let interval_median_x2 = match gaps.len() {
        0 => None,
        g if g % 2 == 1 => Some(2 * gaps[g / 2]),
        g => Some(gaps[g / 2 - 1] + gaps[g / 2]),
    };
    let repurchase_due = match (interval_median_x2, recency_days) {
        (Some(x2), Some(r)) => f64::from(r) >= x2 as f64 / 2.0 * cfg.repurchase_factor,
        _ => false,
    };
    // spend per category and brand over the orders up to the as-of day
    let (nc, nb) = orders.iter().fold((0, 0), |(c, b), o| (c + o.categories as usize, b + o.brands as usize));
    let top = |spend: &[(u32, Cents)], names: &[Text]| {
        let mut total = vec![0 as Cents; names.len()];
        let mut seen = vec![false; names.len()];
        for &(i, a) in spend {
            total[i as usize] += a;
            seen[i as usize] = true;
        }
        (0..names.len())
            .filter(|&i| seen[i])
            .max_by(|&a, &b| total[a].cmp(&total[b]).then_with(|| names[b].cmp(&names[a])))
            .map(|i| names[i].clone())
    };
    Metrics {
        orders: n as u32,
        monetary,
        first_order,
        last_order,
        recency_days,
        stage,
        interval_median_x2,
        repurchase_due,
        discounted_orders: orders.iter().filter(|o| o.discounted).count() as u32,
        top_category: top(&d.category_spend[..nc], &d.category_names),
        top_brand: top(&d.brand_spend[..nb], &d.brand_names),
        age: m.birth_year.map(|y| civil_from_days(as_of).0 - y),
        gender: m.gender,
        consent_email: m.opted_in_email,
        consent_sms: m.opted_in_sms,
    }
}

/// Nearest-rank percentile: the value at 1-based rank ceil(k/100 x n) of `sorted`.
fn nearest_rank<T: Copy>(sorted: &[T], k: u32) -> T {
    let n = sorted.len();
    let rank = (k as usize * n).div_ceil(100).max(1);
    sorted[rank - 1]
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
        let mut rec: Vec<i32> = buyers.iter().filter_map(|m| m.recency_days).collect();
        let mut ord: Vec<u32> = buyers.iter().map(|m| m.orders).collect();
        let mut mon: Vec<Cents> = buyers.iter().map(|m| m.monetary).collect();
        rec.sort_unstable();
        ord.sort_unstable();
        mon.sort_unstable();
        let mut aov = buyers.clone();
        aov.sort_unstable_by(|a, b| a.aov_cmp(b));
        let ks = [20, 40, 60, 80];
        let [lo, hi] = cfg.price_tier_percentiles;
        let frac = |m: &Metrics| (m.monetary, m.orders);
        Some(CutPoints {
            recency: ks.map(|k| nearest_rank(&rec, k)),
            orders: ks.map(|k| nearest_rank(&ord, k)),
            monetary: ks.map(|k| nearest_rank(&mon, k)),
            aov_low: frac(nearest_rank(&aov, lo)),
            aov_high: frac(nearest_rank(&aov, hi)),
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
