//! Campaign reports: what a run (or every run of a rule) sent, what it earned, and the
//! lift over its holdout group.
//!
//! Attribution is last touch within the window (`[campaigns] attribution_days`): an order
//! placed within the window after a message counts for the latest message the member got
//! before it, from any rule. Held-out members of the same run are followed over the same
//! window from the run's time. The lift is the difference of conversion rates, treated
//! minus holdout, with a 95% Wald interval; the relative lift's interval comes from the
//! log of the rate ratio (delta method).

use crate::domain::{CentsFmt, DeliveryState, Timestamp};
use crate::store::model::{Contact, OrderHistory};
use crate::store::outbox::{MessageState, RunRecord};
use crate::store::{Store, StoreError};
use std::collections::HashMap;

/// The figures of one rule in one or more runs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuleReport {
    pub rule: String,
    pub runs: Vec<u64>,
    pub audience: u64,
    /// Matched members left out, per reason (no consent, cooldown, no coupon code left,
    /// template failed...), in funnel order, over the runs.
    pub skipped: Vec<(String, u64)>,
    pub held_out: u64,
    pub planned: u64,
    pub sent: u64,
    /// Sent messages the provider reported delivered (complaints and opt-outs included:
    /// they were delivered too).
    pub delivered: u64,
    /// Sent messages the provider reported undeliverable (bounces, failed SMS).
    pub bounced: u64,
    /// Recipients who marked the message as spam.
    pub complained: u64,
    /// Recipients who unsubscribed (link, STOP reply, complaint) within the window after it.
    pub unsubscribed: u64,
    /// Planned messages never sent: every channel failed, or retries ran out.
    pub failed: u64,
    pub pending: u64,
    pub converted: u64,
    pub revenue_cents: i64,
    pub holdout_converted: u64,
    pub holdout_revenue_cents: i64,
    pub treated_rate: f64,
    pub holdout_rate: f64,
    /// Treated minus holdout conversion rate, with its 95% interval: None without a
    /// holdout group or without sends (nothing to compare).
    pub absolute_lift: Option<f64>,
    pub absolute_lift_ci: Option<(f64, f64)>,
    pub relative_lift: Option<f64>,
    pub relative_lift_ci: Option<(f64, f64)>,
    pub revenue_per_message_cents: i64,
}

/// Orders of a member as (time of the order, amount), from its history.
fn orders_of(h: &OrderHistory) -> Vec<(Timestamp, i64)> {
    let mut by_order: HashMap<&str, (Timestamp, i64)> = HashMap::new();
    for l in &h.lines {
        let e = by_order.entry(l.order_id.as_str()).or_insert((l.ts, 0));
        e.0 = e.0.min(l.ts);
        e.1 += l.amount();
    }
    by_order.into_values().collect()
}

/// The reports of `runs`, one per rule, over an attribution window of `window_days`.
pub fn report(store: &Store, runs: &[RunRecord], window_days: u32) -> Result<Vec<RuleReport>, StoreError> {
    let window = i64::from(window_days) * 86_400;
    let mut reports: Vec<RuleReport> = Vec::new();
    let mut contacts_cache: HashMap<String, Vec<Contact>> = HashMap::new();
    let mut orders_cache: HashMap<String, Vec<(Timestamp, i64)>> = HashMap::new();
    let mut orders = |id: &str| -> Result<Vec<(Timestamp, i64)>, StoreError> {
        if let Some(o) = orders_cache.get(id) {
            return Ok(o.clone());
        }
        let o = store.history(id)?.map(|h| orders_of(&h)).unwrap_or_default();
        orders_cache.insert(id.to_string(), o.clone());
        Ok(o)
    };
    for run in runs {
        // messages of the run by rule
        let mut sent_at: HashMap<(String, String), (MessageState, Timestamp, Option<DeliveryState>)> = HashMap::new();
        for item in store.run_messages(run.id) {
            let (id, m) = item?;
            let status = if m.state == MessageState::Sent { store.delivery_status(id)?.map(|s| s.state) } else { None };
            sent_at.insert((m.rule.to_string(), m.member.to_string()), (m.state, m.sent_at.unwrap_or(m.send_after), status));
        }
        for rr in &run.rules {
            let at = match reports.iter().position(|r| r.rule == rr.rule.as_str()) {
                Some(i) => i,
                None => {
                    reports.push(RuleReport { rule: rr.rule.to_string(), ..Default::default() });
                    reports.len() - 1
                }
            };
            let r = &mut reports[at];
            r.runs.push(run.id);
            r.audience += rr.funnel.iter().find(|(k, _)| k == "matched").map_or(0, |(_, n)| *n);
            for (reason, n) in rr.funnel.iter().filter(|(k, n)| *n > 0 && !["matched", "held out", "to send"].contains(&k.as_str())) {
                match r.skipped.iter_mut().find(|(k, _)| k == reason) {
                    Some((_, total)) => *total += n,
                    None => r.skipped.push((reason.clone(), *n)),
                }
            }
            r.held_out += rr.held_out.len() as u64;
            for ((rule, member), (state, ts, status)) in sent_at.iter().filter(|((rule, _), _)| rule == rr.rule.as_str()) {
                r.planned += 1;
                match state {
                    MessageState::Sent => r.sent += 1,
                    MessageState::Failed | MessageState::Dead => r.failed += 1,
                    MessageState::Pending => r.pending += 1,
                }
                if *state != MessageState::Sent {
                    continue;
                }
                match status {
                    Some(DeliveryState::Delivered | DeliveryState::OptedOut) => r.delivered += 1,
                    Some(DeliveryState::Complained) => {
                        r.delivered += 1;
                        r.complained += 1;
                    }
                    Some(DeliveryState::Failed) => r.bounced += 1,
                    Some(DeliveryState::Accepted) | None => {}
                }
                if store.suppressions(member)?.iter().any(|(_, at)| *at >= *ts && *at <= ts + window) {
                    r.unsubscribed += 1;
                }
                let log = match contacts_cache.get(member) {
                    Some(l) => l.clone(),
                    None => {
                        let l = store.contacts(member)?;
                        contacts_cache.insert(member.clone(), l.clone());
                        l
                    }
                };
                // last touch: orders in the window that no later message of the member claims
                let mut revenue = 0;
                for (t, amount) in orders(member)? {
                    if t < *ts || t > ts + window {
                        continue;
                    }
                    let later = log.iter().any(|c| c.ts > *ts && c.ts <= t && !(c.run == run.id && c.rule == rule.as_str()));
                    if !later {
                        revenue += amount;
                    }
                }
                if revenue > 0 {
                    r.converted += 1;
                    r.revenue_cents += revenue;
                }
            }
            for member in &rr.held_out {
                let revenue: i64 = orders(member)?.iter().filter(|(t, _)| *t >= run.at && *t <= run.at + window).map(|(_, a)| a).sum();
                if revenue > 0 {
                    r.holdout_converted += 1;
                    r.holdout_revenue_cents += revenue;
                }
            }
        }
    }
    for r in &mut reports {
        lift(r);
    }
    Ok(reports)
}

/// The reports of one run (`which` is a number) or of every run of one rule (an id).
pub fn report_for(store: &Store, which: &str, window_days: u32) -> Result<Vec<RuleReport>, StoreError> {
    let runs: Vec<RunRecord> = match which.parse::<u64>() {
        Ok(id) => store.run(id)?.into_iter().collect(),
        Err(_) => store.runs().filter(|r| r.as_ref().map_or(true, |r| r.rules.iter().any(|x| x.rule == which))).collect::<Result<_, _>>()?,
    };
    let mut reports = report(store, &runs, window_days)?;
    if which.parse::<u64>().is_err() {
        reports.retain(|r| r.rule == which);
    }
    Ok(reports)
}

fn lift(r: &mut RuleReport) {
    let (n1, n0) = (r.sent as f64, r.held_out as f64);
    r.treated_rate = if n1 > 0.0 { r.converted as f64 / n1 } else { 0.0 };
    r.holdout_rate = if n0 > 0.0 { r.holdout_converted as f64 / n0 } else { 0.0 };
    r.revenue_per_message_cents = if r.sent > 0 { r.revenue_cents / r.sent as i64 } else { 0 };
    if n1 == 0.0 || n0 == 0.0 {
        return;
    }
    let (p1, p0) = (r.treated_rate, r.holdout_rate);
    let se = (p1 * (1.0 - p1) / n1 + p0 * (1.0 - p0) / n0).sqrt();
    r.absolute_lift = Some(p1 - p0);
    r.absolute_lift_ci = Some((p1 - p0 - 1.96 * se, p1 - p0 + 1.96 * se));
    if p0 > 0.0 && p1 > 0.0 {
        r.relative_lift = Some(p1 / p0 - 1.0);
        let se_log = ((1.0 - p1) / (n1 * p1) + (1.0 - p0) / (n0 * p0)).sqrt();
        let l = (p1 / p0).ln();
        r.relative_lift_ci = Some(((l - 1.96 * se_log).exp() - 1.0, (l + 1.96 * se_log).exp() - 1.0));
    }
}

/// The report as a table.
pub fn write_table(out: &mut dyn std::io::Write, reports: &[RuleReport], window_days: u32) -> std::io::Result<()> {
    for r in reports {
        writeln!(out, "rule {} (runs {:?}), attribution window {window_days} days", r.rule, r.runs)?;
        writeln!(out, "  audience {}  held out {}  planned {}  sent {}  failed {}  pending {}", r.audience, r.held_out, r.planned, r.sent, r.failed, r.pending)?;
        if !r.skipped.is_empty() {
            let reasons: Vec<String> = r.skipped.iter().map(|(k, n)| format!("{k} {n}")).collect();
            writeln!(out, "  left out: {}", reasons.join(", "))?;
        }
        writeln!(out, "  delivered {}  bounced {}  complained {}  unsubscribed {}", r.delivered, r.bounced, r.complained, r.unsubscribed)?;
        writeln!(out, "  converted {} of {} sent ({:.2}%), revenue {}, per message {}", r.converted, r.sent, 100.0 * r.treated_rate, CentsFmt(r.revenue_cents), CentsFmt(r.revenue_per_message_cents))?;
        writeln!(out, "  holdout converted {} of {} ({:.2}%), revenue {}", r.holdout_converted, r.held_out, 100.0 * r.holdout_rate, CentsFmt(r.holdout_revenue_cents))?;
        match (r.absolute_lift, r.absolute_lift_ci) {
            (Some(lift), Some((lo, hi))) => writeln!(out, "  lift {:+.2} points (95% CI {:+.2} to {:+.2})", 100.0 * lift, 100.0 * lo, 100.0 * hi)?,
            _ if r.held_out == 0 => writeln!(out, "  lift: no holdout group to compare with (the rule's holdout_percent is 0, or nobody was held out)")?,
            _ => writeln!(out, "  lift: nothing sent yet to compare with the holdout")?,
        }
        if let (Some(rel), Some((lo, hi))) = (r.relative_lift, r.relative_lift_ci) {
            writeln!(out, "  relative lift {:+.1}% (95% CI {:+.1}% to {:+.1}%)", 100.0 * rel, 100.0 * lo, 100.0 * hi)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (sent, converted, held out, held out converted, what the lift line says)
    const LIFT_LINES: &[(u64, u64, u64, u64, &str)] = &[
        (1000, 300, 1000, 120, "lift +18.00 points (95% CI +14.52 to +21.48)"),
        (1000, 300, 0, 0, "lift: no holdout group to compare with"),
        (0, 0, 1000, 120, "lift: nothing sent yet"),
        (0, 0, 0, 0, "lift: no holdout group to compare with"),
        // rates of 0 and 1: a zero-width interval, still numbers
        (10, 10, 10, 0, "lift +100.00 points (95% CI +100.00 to +100.00)"),
    ];

    #[test]
    fn the_lift_line_never_prints_nan_and_says_why_there_is_no_lift() {
        for &(sent, converted, held_out, holdout_converted, want) in LIFT_LINES {
            let mut r = RuleReport { rule: "r".into(), sent, converted, held_out, holdout_converted, ..Default::default() };
            lift(&mut r);
            let mut out = Vec::new();
            write_table(&mut out, &[r], 7).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(want), "({sent}, {converted}, {held_out}, {holdout_converted}): {text}");
            assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
        }
    }
}
