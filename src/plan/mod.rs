//! Planning: which members each rule reaches on a run, on which channel, with which
//! offer, and why every other matched member is left out.
//!
//! For the rules firing together, in priority order (higher first, then id), each
//! matched member passes, in this order: consent for one of the rule's channels, not
//! claimed by a higher-priority rule of the same run, the rule's cooldown, an available
//! offer, the global frequency cap, the holdout group, the rule's audience limit, quiet
//! hours, and a code from the rule's `codes_file` when it has one. The first step a
//! member fails is its [`Fate`]; members who pass get a [`PlannedMessage`]. The planner
//! is pure: it reads a [`MemberBase`] and writes nothing.

pub mod base;
pub mod issued;
pub mod links;
pub mod messages;
pub mod offer;
pub mod report;

use crate::domain::{Day, Timestamp};
use crate::predict::{FittedModel, PredictOptions};
use crate::profile::{ColumnMember, CutPoints, Profile};
use crate::store::columns::Columns;
use crate::rules::condition::Facts;
use crate::rules::{Coupon, CouponCodes, Offer, Rule, WhenBlocked};
pub use base::MemberBase;
use chrono::{TimeZone, Timelike};
use rayon::prelude::*;

/// What happened to a matched member in one rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "fate")]
pub enum Fate {
    /// Gets a message: index into the rule's `messages`.
    Send { message: usize },
    NoConsent,
    /// A higher-priority rule of the same run took the member.
    Claimed { by: String },
    Cooldown { last: Timestamp },
    NoOffer { why: String },
    /// Every code of the rule's `codes_file` (this many) has been given out.
    NoCode { codes: usize },
    /// The frequency cap was reached (`skip`); `defer` plans a later send instead.
    Capped { recent: u32 },
    HeldOut,
    OverLimit,
    QuietHours,
    /// Planned, but a template of the message failed (an error, or over its budget);
    /// set when the run renders its messages ([`messages::render_run`]).
    TemplateFailed { error: String },
}

impl Fate {
    pub fn reason(&self) -> &'static str {
        match self {
            Fate::Send { .. } => "to send",
            Fate::NoConsent => "no consent",
            Fate::Claimed { .. } => "claimed by another rule",
            Fate::Cooldown { .. } => "cooldown",
            Fate::NoOffer { .. } => "no offer",
            Fate::NoCode { .. } => "no coupon code left",
            Fate::Capped { .. } => "frequency cap",
            Fate::HeldOut => "held out",
            Fate::OverLimit => "over max_audience",
            Fate::QuietHours => "quiet hours",
            Fate::TemplateFailed { .. } => "template failed",
        }
    }
}

/// A message the dispatcher will send.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMessage {
    pub member: u32,
    /// The first channel the member consents to, then the rest in the rule's order.
    pub channels: Vec<String>,
    /// Not before this moment (quiet hours or a deferred cap).
    pub send_after: Timestamp,
    pub offer: offer::OfferValue,
    /// The code drawn from the rule's `codes_file` (also `offer.code`): the run records
    /// it as given to the member.
    pub pool_code: Option<String>,
}

/// One rule's outcome.
pub struct RulePlan {
    pub rule: usize,
    pub matched: usize,
    /// Every matched member with its fate, in the order the planner took them.
    pub fates: Vec<(u32, Fate)>,
    pub messages: Vec<PlannedMessage>,
    /// For a `codes_file` coupon: the codes left after this plan.
    pub codes_left: Option<offer::CodesLeft>,
}

impl RulePlan {
    /// Counts per reason, in funnel order.
    pub fn funnel(&self) -> Vec<(&'static str, usize)> {
        let order = ["no consent", "claimed by another rule", "cooldown", "no offer", "frequency cap", "held out", "over max_audience", "quiet hours", "no coupon code left", "template failed", "to send"];
        let mut counts = vec![0usize; order.len()];
        for (_, f) in &self.fates {
            if let Some(i) = order.iter().position(|r| *r == f.reason()) {
                counts[i] += 1;
            }
        }
        std::iter::once(("matched", self.matched)).chain(order.into_iter().zip(counts)).collect()
    }

    pub fn fate_of(&self, member: u32) -> Option<&Fate> {
        self.fates.iter().find(|(m, _)| *m == member).map(|(_, f)| f)
    }

    /// Takes the messages whose `errors[i]` is Some out of the plan: their members' fate
    /// becomes [`Fate::TemplateFailed`] with that error.
    pub fn fail_messages(&mut self, mut errors: Vec<Option<String>>) {
        let mut kept = Vec::with_capacity(self.messages.len());
        let mut new_index = vec![usize::MAX; self.messages.len()];
        for (i, msg) in std::mem::take(&mut self.messages).into_iter().enumerate() {
            if errors[i].is_none() {
                new_index[i] = kept.len();
                kept.push(msg);
            }
        }
        self.messages = kept;
        for (_, fate) in &mut self.fates {
            if let Fate::Send { message } = *fate {
                *fate = match errors[message].take() {
                    Some(error) => Fate::TemplateFailed { error },
                    None => Fate::Send { message: new_index[message] },
                };
            }
        }
    }
}

/// Settings of a run that come from config.toml (`config::Config::plan_settings`).
pub struct PlanSettings {
    pub profile: crate::profile::ProfileConfig,
    pub predict: PredictOptions,
    pub cap_messages: u32,
    pub cap_days: u32,
    pub quiet_hours: crate::rules::QuietHours,
    pub default_tz: chrono_tz::Tz,
    pub links: links::Links,
}

/// What rules read beyond the core metrics, computed for every member only when some
/// rule does (templates and member cards get the rest per member from
/// [`Profiles::complete`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    /// top_category and top_brand: a condition reads them.
    pub favourites: bool,
    /// The value model's prediction: a condition reads it, or the audience is ordered by it.
    pub predictions: bool,
}

impl Extras {
    pub fn of(rules: &[&Rule]) -> Extras {
        Extras {
            favourites: rules.iter().any(|r| r.audience.uses_favourites()),
            predictions: rules.iter().any(|r| r.audience.uses_predictions() || r.limits.order_by.metric.is_predicted()),
        }
    }

    /// Whether profiles computed with `self` serve rules that need `needed`.
    pub fn cover(self, needed: Extras) -> bool {
        (self.favourites || !needed.favourites) && (self.predictions || !needed.predictions)
    }
}

/// Profiles of the whole base as of a day.
pub struct Profiles {
    pub as_of: Day,
    pub profiles: Vec<Profile>,
    pub cuts: Option<CutPoints>,
    /// What was computed beyond the core metrics.
    pub extras: Extras,
}

impl Profiles {
    /// Profiles of every member, with the `extras` the rules need.
    pub fn compute(base: &MemberBase, as_of: Day, settings: &PlanSettings, extras: Extras) -> Profiles {
        let mut p = Profiles { as_of, profiles: Vec::new(), cuts: None, extras };
        p.recompute(base, as_of, settings);
        p
    }

    /// Recomputes in place (the daemon's buffer is reused from run to run).
    pub fn recompute(&mut self, base: &MemberBase, as_of: Day, settings: &PlanSettings) {
        let model = base.model.as_ref().filter(|_| self.extras.predictions).map(|m| (m, &settings.predict));
        self.cuts = crate::population::profile_all_into(&mut self.profiles, &base.columns.columns(), as_of, &settings.profile, model, self.extras.favourites);
        self.as_of = as_of;
    }

    /// One member's profile with everything filled in (for templates and member cards).
    pub fn complete(&self, columns: &Columns, model: Option<&FittedModel>, i: usize, settings: &PlanSettings) -> Profile {
        let mut p = self.profiles[i].clone();
        let m = ColumnMember { row: columns.row(i), columns };
        if !self.extras.favourites {
            let full = crate::profile::metrics(&m, self.as_of, &settings.profile);
            p.metrics.top_category = full.top_category;
            p.metrics.top_brand = full.top_brand;
        }
        if let Some(model) = model.filter(|_| !self.extras.predictions) {
            p.prediction = crate::population::predict_one(&m, &mut Vec::new(), self.as_of, model, &settings.predict);
        }
        p
    }
}

impl MemberBase {
    /// Member `i`'s facts; `columns` are [`MemberBase::columns`]'s (taken once per pass).
    pub fn facts<'a>(&'a self, columns: &'a Columns<'a>, i: usize, profiles: &'a Profiles) -> Facts<'a> {
        Facts {
            id: self.id(i),
            member: ColumnMember { row: columns.row(i), columns },
            profile: &profiles.profiles[i],
            events: self.events.of(i),
            event_skus: self.events.skus(),
            as_of: profiles.as_of,
            catalog: &self.catalog,
            bundles: &self.bundles,
            suppressed: self.suppressed.get(&(i as u32)).map(Vec::as_slice).unwrap_or(&[]),
            consent: &self.consent,
        }
    }

    /// The members a rule's audience condition selects, in id order.
    pub fn audience(&self, rule: &Rule, profiles: &Profiles) -> Vec<u32> {
        self.audiences(&[rule], profiles).pop().unwrap_or_default()
    }

    /// Every rule's audience, in one pass over the members (each member's data is read
    /// once for all rules), in id order.
    pub fn audiences(&self, rules: &[&Rule], profiles: &Profiles) -> Vec<Vec<u32>> {
        const BLOCK: usize = 8192;
        let columns = self.columns.columns();
        let starts: Vec<usize> = (0..self.len()).step_by(BLOCK).collect();
        let blocks: Vec<Vec<Vec<u32>>> = starts
            .par_iter()
            .map(|&start| {
                let mut out = vec![Vec::new(); rules.len()];
                for i in start..(start + BLOCK).min(self.len()) {
                    let facts = self.facts(&columns, i, profiles);
                    for (r, rule) in rules.iter().enumerate() {
                        if rule.audience.eval(&facts) {
                            out[r].push(i as u32);
                        }
                    }
                }
                out
            })
            .collect();
        (0..rules.len()).map(|r| blocks.iter().flat_map(|b| b[r].iter().copied()).collect()).collect()
    }
}

/// Plans the rules firing together at `now` (their audiences as of `profiles.as_of`).
pub fn plan(base: &MemberBase, profiles: &Profiles, rules: &[&Rule], now: Timestamp, settings: &PlanSettings) -> Vec<RulePlan> {
    let mut order: Vec<usize> = (0..rules.len()).collect();
    order.sort_by(|&a, &b| rules[b].priority.cmp(&rules[a].priority).then_with(|| rules[a].id.cmp(&rules[b].id)));
    let mut claimed: rustc_hash::FxHashMap<u32, usize> = Default::default();
    // messages planned in this run per member, at their send time, for the cap
    let mut planned: rustc_hash::FxHashMap<u32, Vec<Timestamp>> = Default::default();
    let mut out: Vec<RulePlan> = Vec::new();
    let mut audiences = base.audiences(rules, profiles);
    let mut pools = offer::CodePools::new(&base.codes);
    let columns = base.columns.columns();
    for &ri in &order {
        let rule = rules[ri];
        let mut matched = std::mem::take(&mut audiences[ri]);
        let metric = rule.limits.order_by.metric;
        let key = |i: u32| metric.value(&profiles.profiles[i as usize]);
        // members without a value go last either way; ties by id (the input order)
        matched.sort_by(|&a, &b| match (key(a), key(b)) {
            (Some(x), Some(y)) if rule.limits.order_by.descending => y.total_cmp(&x),
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        let offers = offer::OfferMaker::new(rule, base);
        let pool = match &rule.offer {
            Offer::Coupon(Coupon { codes: CouponCodes::List { path, codes, warn_below }, .. }) => Some((path, codes, *warn_below)),
            _ => None,
        };
        let mut rp = RulePlan { rule: ri, matched: matched.len(), fates: Vec::with_capacity(matched.len()), messages: Vec::new(), codes_left: None };
        let mut treated = 0usize;
        for &m in &matched {
            let facts = base.facts(&columns, m as usize, profiles);
            let fate = 'fate: {
                let Some(first) = rule.message.channels.iter().position(|c| facts.consents(c)) else { break 'fate Fate::NoConsent };
                if let Some(&by) = claimed.get(&m) {
                    break 'fate Fate::Claimed { by: rules[by].id.clone() };
                }
                let log = base.contacts.get(&m).map(|l| l.contacts.as_slice()).unwrap_or(&[]);
                if let Some(days) = rule.limits.cooldown_days {
                    if let Some(last) = log.iter().rev().find(|c| c.rule == rule.id.as_str()).map(|c| c.ts) {
                        if now - last < i64::from(days) * 86_400 {
                            break 'fate Fate::Cooldown { last };
                        }
                    }
                }
                if rule.limits.max_audience.is_some_and(|max| treated >= max) {
                    break 'fate Fate::OverLimit;
                }
                let mut offer = match offers.offer_for(&facts) {
                    Ok(o) => o,
                    Err(why) => break 'fate Fate::NoOffer { why },
                };
                let mut send_after = now;
                let window = i64::from(settings.cap_days) * 86_400;
                let mut times: Vec<Timestamp> = log.iter().map(|c| c.ts).chain(planned.get(&m).into_iter().flatten().copied()).collect();
                times.sort_unstable();
                let recent: Vec<Timestamp> = times.iter().copied().filter(|&t| t > now - window).collect();
                if recent.len() >= settings.cap_messages as usize {
                    match rule.limits.on_frequency_cap {
                        WhenBlocked::Skip => break 'fate Fate::Capped { recent: recent.len() as u32 },
                        // the first moment fewer than cap_messages fall in the window
                        WhenBlocked::Defer => send_after = recent[recent.len() - settings.cap_messages as usize] + window,
                    }
                }
                if holdout(&rule.id, base.id(m as usize), rule.limits.holdout_ppm) {
                    claimed.insert(m, ri);
                    break 'fate Fate::HeldOut;
                }
                let quiet = rule.limits.quiet_hours.unwrap_or(Some(settings.quiet_hours));
                if let Some(q) = quiet.filter(|q| q.start != q.end) {
                    let tz = member_tz(facts.member.tz(), settings.default_tz);
                    if let Some(end) = quiet_end(send_after, tz, q) {
                        match rule.limits.on_quiet_hours {
                            WhenBlocked::Skip => break 'fate Fate::QuietHours,
                            WhenBlocked::Defer => send_after = end,
                        }
                    }
                }
                // last, so only a member who gets a message uses up a code
                let pool_code = match pool {
                    Some((path, codes, _)) => match pools.draw(path, codes, m) {
                        Some(code) => {
                            offer.insert("code".into(), code.into());
                            Some(code.to_string())
                        }
                        None => {
                            // one of the members the rule would message: counts toward max_audience
                            treated += 1;
                            break 'fate Fate::NoCode { codes: codes.len() };
                        }
                    },
                    None => None,
                };
                claimed.insert(m, ri);
                planned.entry(m).or_default().push(send_after);
                treated += 1;
                let mut channels = rule.message.channels[first..].to_vec();
                channels.retain(|c| facts.consents(c));
                rp.messages.push(PlannedMessage { member: m, channels, send_after, offer, pool_code });
                Fate::Send { message: rp.messages.len() - 1 }
            };
            rp.fates.push((m, fate));
        }
        rp.codes_left = pool.map(|(path, codes, warn_below)| offer::CodesLeft { path: path.clone(), left: pools.left(path, codes), total: codes.len(), warn_below });
        out.push(rp);
    }
    out.sort_by_key(|rp| rp.rule);
    out
}

/// Whether a member is in a rule's holdout group: a hash of (rule, member) below the
/// share, so the split is stable across runs and independent between rules.
pub fn holdout(rule: &str, member: &str, ppm: u32) -> bool {
    ppm > 0 && stable_hash(&[rule.as_bytes(), member.as_bytes()]) % 1_000_000 < u64::from(ppm)
}

/// FNV-1a over the parts (each followed by a 0xff separator), finished with the
/// SplitMix64 mixer: stable across platforms and releases.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

pub fn member_tz(tz: &str, default: chrono_tz::Tz) -> chrono_tz::Tz {
    if tz.is_empty() {
        default
    } else {
        tz.parse().unwrap_or(default)
    }
}

/// When `at` falls in the quiet window of time zone `tz`, the window's end (UTC).
pub fn quiet_end(at: Timestamp, tz: chrono_tz::Tz, q: crate::rules::QuietHours) -> Option<Timestamp> {
    let local = chrono::Utc.timestamp_opt(at, 0).single()?.with_timezone(&tz);
    let minute = local.hour() * 60 + local.minute();
    if !q.contains(minute) {
        return None;
    }
    // minutes until the end, walking forward through the (possibly wrapping) window
    let until = (q.end + 24 * 60 - minute) % (24 * 60);
    let end = at - i64::from(local.second()) + i64::from(until) * 60;
    // a DST change inside the window shifts the wall clock; re-check once
    match quiet_end(end, tz, q) {
        Some(later) if later > end => Some(later),
        _ => Some(end),
    }
}

/// A stable id for a rule's audience member in reports.
pub fn member_id(base: &MemberBase, i: u32) -> &str {
    base.id(i as usize)
}
