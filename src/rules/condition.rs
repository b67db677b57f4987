//! Audience conditions: the tree a rule's `[audience]` becomes, its evaluation for one
//! member, and its explanation (each condition with the member's value and pass/fail).
//!
//! Evaluation is pure and allocation-free on the hot path: the caller hands in a
//! [`Facts`] view of one member (its row of the member columns, profile as of the run's day, recent events, the
//! catalog and the mined co-purchase rules) and gets a bool.

use crate::basket::Scope;
use crate::bundles::OfferIndex;
use crate::domain::{CentsFmt, Day, Text};
use crate::profile::{ColumnMember, Profile, Stage, Tier, ValueTier};
use crate::store::columns::{flag, Dict};
use crate::store::model::{EventKind, Gender, Product};
use rustc_hash::FxHashMap;
pub use crate::domain::{Consent, ConsentNeeds};

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Stage(Vec<Stage>),
    Range { metric: Metric, min: Option<f64>, max: Option<f64> },
    ValueTier(Vec<ValueTier>),
    PriceTier(Vec<Tier>),
    SensitivityTier(Vec<Tier>),
    ChurnRisk(Vec<crate::predict::ChurnRisk>),
    RepurchaseDue(bool),
    TopCategory(Vec<Text>),
    TopBrand(Vec<Text>),
    Gender(Vec<Gender>),
    City(Vec<Text>),
    /// Consent (and an address) for at least one of the channels.
    Consent(Vec<String>),
    /// Bought (or, negated, did not buy) a matching item within the last N days.
    Bought { item: Item, within_days: Option<u32>, negated: bool },
    /// A browsing event of `kind` on a matching item within N days; with
    /// `without_buying`, only events whose sku the member did not buy on or after the event.
    Event { kind: EventKind, item: Item, within_days: u32, without_buying: bool },
    /// Scored by the strongest co-purchase rule leading to `sku` from what the member
    /// bought; the member has not bought `sku`.
    LikelyToBuy { sku: Text, min_score: f64, scope: Scope },
}

/// Which items a behaviour condition is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Any,
    Sku(Vec<Text>),
    Category(Vec<Text>),
    Brand(Vec<Text>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Count,
    Money,
    Rate,
    Score,
    Days,
}

/// A numeric profile metric usable in ranges and for ordering an audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    RecencyDays,
    Orders,
    Monetary,
    Aov,
    Age,
    RScore,
    FScore,
    MScore,
    IntervalMedianDays,
    PriceSensitivity,
    PAlive,
    ExpectedPurchases,
    ExpectedSpend,
    PredictedValue,
}

impl Metric {
    /// Whether the value comes from the value model's prediction.
    pub fn is_predicted(self) -> bool {
        matches!(self, Metric::PAlive | Metric::ExpectedPurchases | Metric::ExpectedSpend | Metric::PredictedValue)
    }

    pub const ALL: [Metric; 14] = [
        Metric::RecencyDays,
        Metric::Orders,
        Metric::Monetary,
        Metric::Aov,
        Metric::Age,
        Metric::RScore,
        Metric::FScore,
        Metric::MScore,
        Metric::IntervalMedianDays,
        Metric::PriceSensitivity,
        Metric::PAlive,
        Metric::ExpectedPurchases,
        Metric::ExpectedSpend,
        Metric::PredictedValue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::RecencyDays => "recency_days",
            Metric::Orders => "orders",
            Metric::Monetary => "monetary",
            Metric::Aov => "aov",
            Metric::Age => "age",
            Metric::RScore => "r_score",
            Metric::FScore => "f_score",
            Metric::MScore => "m_score",
            Metric::IntervalMedianDays => "interval_median_days",
            Metric::PriceSensitivity => "price_sensitivity",
            Metric::PAlive => "p_alive",
            Metric::ExpectedPurchases => "expected_purchases",
            Metric::ExpectedSpend => "expected_spend",
            Metric::PredictedValue => "predicted_value",
        }
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn kind(self) -> MetricKind {
        match self {
            Metric::RecencyDays | Metric::IntervalMedianDays | Metric::Age => MetricKind::Days,
            Metric::Orders | Metric::ExpectedPurchases => MetricKind::Count,
            Metric::Monetary | Metric::Aov | Metric::ExpectedSpend | Metric::PredictedValue => MetricKind::Money,
            Metric::RScore | Metric::FScore | Metric::MScore => MetricKind::Score,
            Metric::PriceSensitivity | Metric::PAlive => MetricKind::Rate,
        }
    }

    /// The member's value; money in cents. None when the metric is undefined for the
    /// member (no orders, no birth year, no fitted model).
    pub fn value(self, p: &Profile) -> Option<f64> {
        let m = &p.metrics;
        match self {
            Metric::RecencyDays => m.recency_days.map(f64::from),
            Metric::Orders => Some(f64::from(m.orders)),
            Metric::Monetary => (m.orders > 0).then_some(m.monetary as f64),
            Metric::Aov => m.aov().map(|a| a as f64),
            Metric::Age => m.age.map(f64::from),
            Metric::RScore => p.r.map(f64::from),
            Metric::FScore => p.f.map(f64::from),
            Metric::MScore => p.m.map(f64::from),
            Metric::IntervalMedianDays => m.interval_median_days(),
            Metric::PriceSensitivity => m.price_sensitivity(),
            Metric::PAlive => p.prediction.map(|x| x.p_alive),
            Metric::ExpectedPurchases => p.prediction.map(|x| x.expected_purchases),
            Metric::ExpectedSpend => p.prediction.map(|x| x.expected_spend_cents as f64),
            Metric::PredictedValue => p.prediction.map(|x| x.predicted_value_cents as f64),
        }
    }

    /// A value as a marketer reads it (money in currency units).
    pub fn show(self, v: f64) -> String {
        match self.kind() {
            MetricKind::Money => CentsFmt(v.round() as i64).to_string(),
            _ if v.fract() == 0.0 => format!("{v:.0}"),
            _ => format!("{v:.4}").trim_end_matches('0').to_string(),
        }
    }
}

/// One browsing event as the evaluator keeps it (12 bytes): its sku indexes
/// [`MemberEvents`]' interned skus.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventFact {
    pub day: Day,
    pub kind: EventKind,
    pub sku: u32,
}

/// Every member's browsing events, flat (member `i`'s are `facts[starts[i]..starts[i + 1]]`,
/// in time order), skus interned once: a million members' 5 million events take 65 MB
/// instead of the 200 MB of a list per member with a string per event.
#[derive(Debug, Default)]
pub struct MemberEvents {
    starts: Vec<usize>,
    facts: Vec<EventFact>,
    skus: Vec<Text>,
    sku_ids: FxHashMap<Text, u32>,
}

impl MemberEvents {
    /// Events for `members` members, added in member order by [`MemberEvents::push`].
    pub fn with_members(members: usize) -> Self {
        let mut starts = Vec::with_capacity(members + 1);
        starts.push(0);
        MemberEvents { starts, ..Self::default() }
    }

    /// Sets member `i`'s events (in time order); members are pushed in ascending order,
    /// those skipped have none.
    pub fn push(&mut self, i: usize, events: impl IntoIterator<Item = (Day, EventKind, Text)>) {
        debug_assert!(i + 1 >= self.starts.len(), "members pushed out of order");
        while self.starts.len() <= i {
            self.starts.push(self.facts.len());
        }
        for (day, kind, sku) in events {
            let next = self.skus.len() as u32;
            let sku = *self.sku_ids.entry(sku).or_insert_with_key(|s| {
                self.skus.push(s.clone());
                next
            });
            self.facts.push(EventFact { day, kind, sku });
        }
        self.starts.push(self.facts.len());
    }

    /// Ends with `members` members (the ones not pushed have none).
    pub fn finish(mut self, members: usize) -> Self {
        while self.starts.len() <= members {
            self.starts.push(self.facts.len());
        }
        self.facts.shrink_to_fit();
        self.sku_ids = FxHashMap::default();
        self
    }

    /// Member `i`'s events (none when events were not loaded).
    pub fn of(&self, i: usize) -> &[EventFact] {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&s), Some(&e)) => &self.facts[s..e],
            _ => &[],
        }
    }

    /// Every member's events together.
    pub fn len(&self) -> usize {
        self.facts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    /// The interned skus, by [`EventFact::sku`].
    pub fn skus(&self) -> &[Text] {
        &self.skus
    }
}

/// Mined co-purchase rules per scope, when they have been mined.
#[derive(Default)]
pub struct Bundles {
    pub basket: Option<OfferIndex>,
    pub member: Option<OfferIndex>,
}

impl Bundles {
    pub fn index(&self, scope: Scope) -> Option<&OfferIndex> {
        match scope {
            Scope::Basket => self.basket.as_ref(),
            Scope::Member => self.member.as_ref(),
        }
    }
}

/// Everything known about one member on the run's day.
pub struct Facts<'a> {
    pub id: &'a str,
    pub member: ColumnMember<'a>,
    pub profile: &'a Profile,
    /// The member's events in time order.
    pub events: &'a [EventFact],
    /// The skus the events index ([`MemberEvents::skus`]).
    pub event_skus: &'a [Text],
    pub as_of: Day,
    pub catalog: &'a FxHashMap<Text, Product>,
    pub bundles: &'a Bundles,
    /// Channels the member unsubscribed from ("*": all).
    pub suppressed: &'a [Text],
    /// The consent each channel needs.
    pub consent: &'a ConsentNeeds,
}

impl<'a> Facts<'a> {
    /// Whether the member may be messaged on `channel`.
    pub fn consents(&self, channel: &str) -> bool {
        if self.suppressed.iter().any(|c| c == channel || c == "*") {
            return false;
        }
        match self.consent.of(channel) {
            Some(Consent::Email) => self.member.row.has(flag::EMAIL) && self.member.row.email_hash != 0,
            Some(Consent::Sms) => self.member.row.has(flag::SMS) && self.member.row.phone_hash != 0,
            Some(Consent::None) => true,
            // a channel that never said which consent it needs messages nobody
            None => false,
        }
    }

    /// Distinct skus bought on or before the as-of day.
    pub fn skus_bought(&self) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        self.for_each_order(None, |_, skus, _, _| out.extend_from_slice(skus));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Distinct skus bought within the last `days` days up to the as-of day.
    pub fn skus_bought_within(&self, days: u32) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        self.for_each_order(Some(days), |_, skus, _, _| out.extend_from_slice(skus));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Calls `f(day, skus, categories, brands)` for each order dated within the last
    /// `within` days up to the as-of day (all orders up to it when None).
    fn for_each_order(&self, within: Option<u32>, mut f: impl FnMut(Day, &[&'a str], &[&'a str], &[&'a str])) {
        let (r, columns) = (&self.member.row, self.member.columns);
        let from = within.map(|w| self.as_of - w as Day);
        let (mut c, mut b, mut s) = (0usize, 0usize, 0usize);
        let mut skus: Vec<&str> = Vec::new();
        let mut cats: Vec<&str> = Vec::new();
        let mut brands: Vec<&str> = Vec::new();
        for (k, &day) in r.days.iter().enumerate() {
            let (c1, b1, s1) = (c + r.categories[k] as usize, b + r.brands[k] as usize, s + r.skus[k] as usize);
            if day > self.as_of {
                break;
            }
            if from.is_none_or(|from| day >= from) {
                skus.clear();
                cats.clear();
                brands.clear();
                skus.extend(r.sku_name[s..s1].iter().map(|&i| columns.name(Dict::Sku, i)));
                cats.extend(r.category_name[c..c1].iter().map(|&i| columns.name(Dict::Category, i)));
                brands.extend(r.brand_name[b..b1].iter().map(|&i| columns.name(Dict::Brand, i)));
                f(day, &skus, &cats, &brands);
            }
            (c, b, s) = (c1, b1, s1);
        }
    }

    fn bought(&self, item: &Item, within: Option<u32>) -> bool {
        let mut hit = false;
        self.for_each_order(within, |_, skus, cats, brands| hit |= item.in_order(skus, cats, brands));
        hit
    }

    fn bought_sku_since(&self, sku: &Text, from: Day) -> bool {
        let mut hit = false;
        self.for_each_order(Some((self.as_of - from).max(0) as u32), |_, skus, _, _| hit |= skus.contains(&sku.as_str()));
        hit
    }

    /// The sku an event names.
    fn event_sku(&self, e: &EventFact) -> &'a Text {
        &self.event_skus[e.sku as usize]
    }

    fn event_matches(&self, e: &EventFact, item: &Item) -> bool {
        let sku = self.event_sku(e);
        match item {
            Item::Any => true,
            Item::Sku(v) => v.contains(sku),
            Item::Category(v) => self.catalog.get(sku).is_some_and(|p| v.iter().any(|c| c == p.category.as_str())),
            Item::Brand(v) => self.catalog.get(sku).is_some_and(|p| v.iter().any(|c| c == p.brand.as_str())),
        }
    }

    /// The first qualifying event, if any.
    fn event(&self, kind: EventKind, item: &Item, within: u32, without_buying: bool) -> Option<&EventFact> {
        let from = self.as_of - within as Day;
        self.events
            .iter()
            .rev()
            .skip_while(|e| e.day > self.as_of)
            .take_while(|e| e.day >= from)
            .find(|e| e.kind == kind && self.event_matches(e, item) && !(without_buying && self.bought_sku_since(self.event_sku(e), e.day)))
    }

    fn likely_score(&self, sku: &str, scope: Scope) -> Option<(f64, f64)> {
        let index = self.bundles.index(scope)?;
        let bought = self.skus_bought();
        index.likely_to_buy(bought.iter().copied(), sku).map(|r| (r.confidence, r.lift))
    }
}

fn one_of<T: PartialEq>(list: &[T], v: Option<T>) -> bool {
    v.is_some_and(|v| list.contains(&v))
}

impl Condition {
    pub fn eval(&self, f: &Facts) -> bool {
        let p = f.profile;
        match self {
            Condition::All(cs) => cs.iter().all(|c| c.eval(f)),
            Condition::Any(cs) => cs.iter().any(|c| c.eval(f)),
            Condition::Not(c) => !c.eval(f),
            Condition::Stage(v) => v.contains(&p.metrics.stage),
            Condition::Range { metric, min, max } => {
                metric.value(p).is_some_and(|x| min.is_none_or(|m| x >= m) && max.is_none_or(|m| x <= m))
            }
            Condition::ValueTier(v) => one_of(v, p.value_tier),
            Condition::PriceTier(v) => one_of(v, p.price_tier),
            Condition::SensitivityTier(v) => one_of(v, p.sensitivity_tier),
            Condition::ChurnRisk(v) => one_of(v, p.prediction.map(|x| x.churn_risk)),
            Condition::RepurchaseDue(want) => p.metrics.repurchase_due == *want,
            Condition::TopCategory(v) => p.metrics.top_category.as_ref().is_some_and(|c| v.contains(c)),
            Condition::TopBrand(v) => p.metrics.top_brand.as_ref().is_some_and(|c| v.contains(c)),
            Condition::Gender(v) => v.contains(&f.member.row.gender),
            Condition::City(v) => v.iter().any(|c| c.eq_ignore_ascii_case(f.member.city())),
            Condition::Consent(chs) => chs.iter().any(|c| f.consents(c)),
            Condition::Bought { item, within_days, negated } => f.bought(item, *within_days) != *negated,
            Condition::Event { kind, item, within_days, without_buying } => {
                f.event(*kind, item, *within_days, *without_buying).is_some()
            }
            Condition::LikelyToBuy { sku, min_score, scope } => f.likely_score(sku, *scope).is_some_and(|(s, _)| s >= *min_score),
        }
    }

    /// Whether evaluating this condition needs the members' browsing events.
    pub fn uses_events(&self) -> bool {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().any(Condition::uses_events),
            Condition::Not(c) => c.uses_events(),
            Condition::Event { .. } => true,
            _ => false,
        }
    }

    /// Whether evaluating this condition reads top_category or top_brand.
    pub fn uses_favourites(&self) -> bool {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().any(Condition::uses_favourites),
            Condition::Not(c) => c.uses_favourites(),
            Condition::TopCategory(_) | Condition::TopBrand(_) => true,
            _ => false,
        }
    }

    /// Whether evaluating this condition reads the value model's predictions.
    pub fn uses_predictions(&self) -> bool {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().any(Condition::uses_predictions),
            Condition::Not(c) => c.uses_predictions(),
            Condition::Range { metric, .. } => metric.is_predicted(),
            Condition::ChurnRisk(_) => true,
            _ => false,
        }
    }

    /// The co-purchase scopes this condition needs mined rules for.
    pub fn bundle_scopes(&self, out: &mut Vec<Scope>) {
        match self {
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| c.bundle_scopes(out)),
            Condition::Not(c) => c.bundle_scopes(out),
            Condition::LikelyToBuy { scope, .. } => out.push(*scope),
            _ => {}
        }
    }

    /// Each condition with the member's value and the outcome, indented by depth.
    pub fn explain(&self, f: &Facts, depth: usize, out: &mut Vec<ExplainLine>) -> bool {
        let p = f.profile;
        let line = |what: String, value: String, pass: bool| ExplainLine { depth, what, value, pass };
        let (what, value) = match self {
            Condition::All(cs) | Condition::Any(cs) => {
                let at = out.len();
                out.push(line(String::new(), String::new(), false));
                let results: Vec<bool> = cs.iter().map(|c| c.explain(f, depth + 1, out)).collect();
                let (name, pass) = match self {
                    Condition::All(_) => ("all of", results.iter().all(|&x| x)),
                    _ => ("any of", results.iter().any(|&x| x)),
                };
                out[at] = line(name.into(), format!("{} of {} pass", results.iter().filter(|&&x| x).count(), results.len()), pass);
                return pass;
            }
            Condition::Not(c) => {
                let at = out.len();
                out.push(line(String::new(), String::new(), false));
                let pass = !c.explain(f, depth + 1, out);
                out[at] = line("not".into(), String::new(), pass);
                return pass;
            }
            Condition::Stage(v) => (format!("stage in {}", list(v.iter().map(|s| s.as_str()))), p.metrics.stage.as_str().to_string()),
            Condition::Range { metric, min, max } => {
                let bound = |b: &Option<f64>| b.map(|x| metric.show(x)).unwrap_or_default();
                (format!("{} in {}..={}", metric.name(), bound(min), bound(max)), opt(metric.value(p).map(|x| metric.show(x))))
            }
            Condition::ValueTier(v) => (format!("value_tier in {}", list(v.iter().map(|s| s.as_str()))), opt(p.value_tier.map(|t| t.as_str().into()))),
            Condition::PriceTier(v) => (format!("price_tier in {}", list(v.iter().map(|s| s.as_str()))), opt(p.price_tier.map(|t| t.as_str().into()))),
            Condition::SensitivityTier(v) => (
                format!("price_sensitivity_tier in {}", list(v.iter().map(|s| s.as_str()))),
                opt(p.sensitivity_tier.map(|t| t.as_str().into())),
            ),
            Condition::ChurnRisk(v) => {
                (format!("churn_risk in {}", list(v.iter().map(|s| s.as_str()))), opt(p.prediction.map(|x| x.churn_risk.as_str().into())))
            }
            Condition::RepurchaseDue(want) => (format!("repurchase_due = {want}"), p.metrics.repurchase_due.to_string()),
            Condition::TopCategory(v) => (format!("top_category in {}", list(v.iter().map(|s| s.as_str()))), opt(p.metrics.top_category.as_ref().map(|c| c.to_string()))),
            Condition::TopBrand(v) => (format!("top_brand in {}", list(v.iter().map(|s| s.as_str()))), opt(p.metrics.top_brand.as_ref().map(|c| c.to_string()))),
            Condition::Gender(v) => (format!("gender in {}", list(v.iter().map(|g| gender_name(*g)))), gender_name(f.member.row.gender).into()),
            Condition::City(v) => (format!("city in {}", list(v.iter().map(|s| s.as_str()))), f.member.city().to_string()),
            Condition::Consent(chs) => (
                format!("consent for any of {}", list(chs.iter().map(|s| s.as_str()))),
                chs.iter().map(|c| format!("{c}: {}", if f.consents(c) { "yes" } else { "no" })).collect::<Vec<_>>().join(", "),
            ),
            Condition::Bought { item, within_days, negated } => {
                let verb = if *negated { "did not buy" } else { "bought" };
                let mut last: Option<Day> = None;
                f.for_each_order(*within_days, |day, skus, cats, brands| {
                    if item.in_order(skus, cats, brands) {
                        last = Some(day);
                    }
                });
                (
                    format!("{verb} {}{}", item.describe(), within(*within_days)),
                    last.map(|d| format!("last bought {}", crate::domain::DayFmt(d))).unwrap_or_else(|| "never in the window".into()),
                )
            }
            Condition::Event { kind, item, within_days, without_buying } => {
                let e = f.event(*kind, item, *within_days, *without_buying);
                (
                    format!(
                        "{} {}{}{}",
                        event_verb(*kind),
                        item.describe(),
                        within(Some(*within_days)),
                        if *without_buying { " without buying it" } else { "" }
                    ),
                    e.map(|e| format!("{} on {}", f.event_sku(e), crate::domain::DayFmt(e.day))).unwrap_or_else(|| "no such event".into()),
                )
            }
            Condition::LikelyToBuy { sku, min_score, scope } => (
                format!("likely to buy {sku} (score >= {min_score}, {} rules)", scope.name()),
                match (f.bundles.index(*scope), f.likely_score(sku, *scope)) {
                    (None, _) => format!("no {} rules mined yet", scope.name()),
                    (_, Some((s, l))) => format!("score {s:.4} (lift {l:.2})"),
                    (_, None) => "no rule leads there (or already bought)".into(),
                },
            ),
        };
        let pass = self.eval(f);
        out.push(line(what, value, pass));
        pass
    }
}

/// One line of an explanation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExplainLine {
    pub depth: usize,
    pub what: String,
    pub value: String,
    pub pass: bool,
}

impl Item {
    /// Whether an order with these skus, categories and brands holds the item.
    fn in_order(&self, skus: &[&str], cats: &[&str], brands: &[&str]) -> bool {
        let any = |names: &[&str], v: &[Text]| names.iter().any(|n| v.iter().any(|x| x == n));
        match self {
            Item::Any => true,
            Item::Sku(v) => any(skus, v),
            Item::Category(v) => any(cats, v),
            Item::Brand(v) => any(brands, v),
        }
    }

    fn describe(&self) -> String {
        match self {
            Item::Any => "anything".into(),
            Item::Sku(v) => format!("sku {}", list(v.iter().map(|s| s.as_str()))),
            Item::Category(v) => format!("category {}", list(v.iter().map(|s| s.as_str()))),
            Item::Brand(v) => format!("brand {}", list(v.iter().map(|s| s.as_str()))),
        }
    }
}

pub fn event_verb(kind: EventKind) -> &'static str {
    match kind {
        EventKind::View => "browsed",
        EventKind::Favorite => "favorited",
        EventKind::Cart => "carted",
    }
}

pub fn gender_name(g: Gender) -> &'static str {
    match g {
        Gender::Female => "f",
        Gender::Male => "m",
        Gender::Unknown => "unknown",
    }
}

fn within(days: Option<u32>) -> String {
    days.map(|d| format!(" within {d} days")).unwrap_or_default()
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "none".into())
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_events_are_kept_flat_with_interned_skus() {
        let mut events = MemberEvents::with_members(4);
        events.push(1, [(10, EventKind::View, Text::from("tea")), (11, EventKind::Cart, Text::from("cup"))]);
        events.push(3, [(12, EventKind::View, Text::from("tea"))]);
        let events = events.finish(5);
        assert_eq!((events.len(), events.skus()), (3, &[Text::from("tea"), Text::from("cup")][..]));
        assert!(events.of(0).is_empty() && events.of(2).is_empty() && events.of(4).is_empty());
        assert_eq!(events.of(1), &[EventFact { day: 10, kind: EventKind::View, sku: 0 }, EventFact { day: 11, kind: EventKind::Cart, sku: 1 }]);
        assert_eq!(events.of(3), &[EventFact { day: 12, kind: EventKind::View, sku: 0 }]);
        assert!(events.of(5).is_empty(), "past the end: none");
        assert!(MemberEvents::default().of(0).is_empty(), "not loaded: none");
    }
}
