//! What `rules preview` and `explain` print: the funnel, breakdowns by stage and tier,
//! rendered sample messages, per-member rows, and a member's walk through a rule.

use super::{Fate, MemberBase, PlanSettings, PlannedMessage, Profiles, RulePlan};
use crate::domain::{Text, TsFmt};
use crate::rules::condition::{gender_name, ExplainLine};
use crate::rules::render::{Rendered, Renderer};
use crate::profile::ColumnMember;
use crate::rules::Rule;
use crate::store::columns::Columns;
use crate::store::model::ContactFields;
use std::collections::BTreeMap;
use std::io::Write;

/// What the templates of one planned message see, built once per message: the member's
/// contact fields (read from the store), attributes and completed profile. Each channel
/// adds its own unsubscribe link ([`MessageContext::vars`]).
pub struct MessageContext {
    pub contact: ContactFields,
    id: Text,
    member: minijinja::Value,
    profile: minijinja::Value,
    offer: minijinja::Value,
}

impl MessageContext {
    /// The context of `msg`, whose member's contact fields are `contact`.
    pub fn new(base: &MemberBase, columns: &Columns, profiles: &Profiles, msg: &PlannedMessage, contact: ContactFields, settings: &PlanSettings) -> MessageContext {
        let i = msg.member as usize;
        let m = ColumnMember { row: columns.row(i), columns };
        let id = base.id(i);
        let p = &profiles.complete(columns, base.model.as_ref(), i, settings);
        let member = serde_json::json!({
            "id": id, "name": contact.name.as_str(), "email": contact.email, "phone": contact.phone, "city": m.city(),
            "gender": gender_name(m.row.gender), "age": p.metrics.age, "tz": m.tz(),
        });
        let profile = crate::rules::template::value(crate::population::profile_json(id, p));
        MessageContext { contact, id: Text::from(id), member: crate::rules::template::value(member), profile, offer: crate::rules::template::value(&msg.offer) }
    }

    /// The template variables of the message on `channel`.
    pub fn vars(&self, rule: &Rule, channel: &str, settings: &PlanSettings) -> minijinja::Value {
        crate::rules::template::variables(&self.member, &self.profile, &self.offer, (&rule.id, &rule.name), settings.links.unsubscribe_url(&self.id, channel))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PreviewFormat {
    Table,
    Csv,
    Ndjson,
}

/// The funnel and breakdowns as a table, then `sample` rendered messages per channel.
#[allow(clippy::too_many_arguments)]
pub fn preview_table(out: &mut dyn Write, base: &MemberBase, profiles: &Profiles, rule: &Rule, rp: &RulePlan, settings: &PlanSettings, renderer: &Renderer, sample: usize) -> std::io::Result<()> {
    writeln!(out, "rule {} — {}", rule.id, rule.name)?;
    writeln!(out, "as of {}; nothing is sent or recorded", crate::domain::DayFmt(profiles.as_of))?;
    writeln!(out, "\nfunnel")?;
    for (step, n) in rp.funnel() {
        if n > 0 || step == "matched" || step == "to send" {
            writeln!(out, "  {step:<24} {n:>10}")?;
        }
    }
    let held_out = |f: &Fate| matches!(f, Fate::HeldOut);
    let send = |f: &Fate| matches!(f, Fate::Send { .. });
    type Key = fn(&super::Profile) -> &'static str;
    let breakdowns: [(&str, Key); 3] = [
        ("stage", |p| p.metrics.stage.as_str()),
        ("price tier", |p| p.price_tier.map_or("none", |t| t.as_str())),
        ("value tier", |p| p.value_tier.map_or("none", |t| t.as_str())),
    ];
    for (name, key) in breakdowns {
        let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (m, f) in &rp.fates {
            let e = counts.entry(key(&profiles.profiles[*m as usize])).or_default();
            e.0 += usize::from(send(f));
            e.1 += usize::from(held_out(f));
        }
        writeln!(out, "\nby {name:<20} {:>10} {:>10}", "to send", "held out")?;
        for (k, (s, h)) in counts {
            writeln!(out, "  {k:<22} {s:>10} {h:>10}")?;
        }
    }
    let mut channels: BTreeMap<&str, usize> = BTreeMap::new();
    for msg in &rp.messages {
        *channels.entry(msg.channels[0].as_str()).or_default() += 1;
    }
    if let Some(c) = &rp.codes_left {
        let few = if c.few() { format!(" (fewer than codes_warn_below = {}: add codes)", c.warn_below) } else { String::new() };
        writeln!(out, "\ncoupon codes: {} of {} in {} left after this run{few}", c.left, c.total, c.path.display())?;
    }
    writeln!(out, "\nby channel")?;
    for (c, n) in &channels {
        writeln!(out, "  {c:<22} {n:>10}")?;
    }
    let columns = base.columns.columns();
    for channel in &rule.message.channels {
        let picked: Vec<&PlannedMessage> = rp.messages.iter().filter(|m| &m.channels[0] == channel).take(sample).collect();
        for msg in picked {
            writeln!(out, "\n--- sample: {} to member {} (send after {}) ---", channel, base.id(msg.member as usize), TsFmt(msg.send_after))?;
            let contact = base.contact(msg.member as usize).map_err(std::io::Error::other)?;
            let vars = MessageContext::new(base, &columns, profiles, msg, contact, settings).vars(rule, channel, settings);
            match renderer.render(&rule.id, channel, vars) {
                Ok(r) => write_rendered(out, &r)?,
                Err(e) => writeln!(out, "template failed: {e}")?,
            }
        }
    }
    Ok(())
}

fn write_rendered(out: &mut dyn Write, r: &Rendered) -> std::io::Result<()> {
    if let Some(s) = &r.subject {
        writeln!(out, "Subject: {s}")?;
    }
    writeln!(out, "{}", r.text.trim_end())?;
    if let Some(h) = &r.html {
        writeln!(out, "[html part: {} bytes]", h.len())?;
    }
    Ok(())
}

/// One row per matched member: id, fate, reason detail, channel, send time, key metrics.
pub fn preview_rows(out: &mut dyn Write, base: &MemberBase, profiles: &Profiles, rp: &RulePlan, format: PreviewFormat) -> std::io::Result<()> {
    if format == PreviewFormat::Csv {
        writeln!(out, "member_id,fate,channel,send_after,offer_code,stage,recency_days,orders,monetary,price_tier,value_tier")?;
    }
    for (m, fate) in &rp.fates {
        let p = &profiles.profiles[*m as usize];
        let msg = match fate {
            Fate::Send { message } => Some(&rp.messages[*message]),
            _ => None,
        };
        let row = serde_json::json!({
            "member_id": base.id(*m as usize),
            "fate": fate.reason(),
            "channel": msg.map(|m| m.channels[0].as_str()),
            "send_after": msg.map(|m| TsFmt(m.send_after).to_string()),
            "offer_code": msg.and_then(|m| m.offer.get("code")).and_then(|c| c.as_str()),
            "stage": p.metrics.stage.as_str(),
            "recency_days": p.metrics.recency_days,
            "orders": p.metrics.orders,
            "monetary": crate::domain::CentsFmt(p.metrics.monetary).to_string(),
            "price_tier": p.price_tier.map(|t| t.as_str()),
            "value_tier": p.value_tier.map(|t| t.as_str()),
        });
        match format {
            PreviewFormat::Ndjson => writeln!(out, "{row}")?,
            _ => {
                let cells: Vec<String> = ["member_id", "fate", "channel", "send_after", "offer_code", "stage", "recency_days", "orders", "monetary", "price_tier", "value_tier"]
                    .iter()
                    .map(|k| match &row[*k] {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => csv_cell(s),
                        v => v.to_string(),
                    })
                    .collect();
                writeln!(out, "{}", cells.join(","))?;
            }
        }
    }
    Ok(())
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A member's walk through one rule: every condition with the member's value, then
/// consent, cooldown, cap and holdout, and the planner's verdict (`explain`, as text or
/// JSON, from the store or through the daemon alike).
#[derive(Debug, serde::Serialize)]
pub struct Explanation {
    pub rule: String,
    pub name: String,
    pub in_audience: bool,
    pub conditions: Vec<ExplainLine>,
    /// Per channel of the rule, in its order: whether the member can be reached there.
    pub consent: Vec<(String, bool)>,
    /// This rule's last message to the member: when, on which channel.
    pub last_message: Option<(i64, String)>,
    /// Messages in the frequency cap's window before this run, and the cap.
    pub recent_messages: usize,
    pub cap_messages: u32,
    pub cap_days: u32,
    pub held_out: bool,
    pub holdout_percent: f64,
    /// The fate's short reason (`to send`, `cooldown`, ...; `not in the audience`).
    pub fate: &'static str,
    pub verdict: String,
}

pub fn explain(base: &MemberBase, profiles: &Profiles, member: u32, rule: &Rule, rp: &RulePlan, settings: &PlanSettings, now: i64) -> Explanation {
    let columns = base.columns.columns();
    let facts = base.facts(&columns, member as usize, profiles);
    let mut conditions: Vec<ExplainLine> = Vec::new();
    let in_audience = rule.audience.explain(&facts, 1, &mut conditions);
    let log = base.contacts.get(&member).map(|l| l.contacts.as_slice()).unwrap_or(&[]);
    let fate = rp.fate_of(member);
    let verdict = match fate {
        None => "not in the audience".to_string(),
        Some(Fate::Send { message }) => {
            let m = &rp.messages[*message];
            let fallback = match &m.channels[1..] {
                [] => String::new(),
                rest => format!(" (fallback: {})", rest.join(", ")),
            };
            format!("gets a message on {}{fallback} after {}", m.channels[0], TsFmt(m.send_after))
        }
        Some(Fate::Claimed { by }) => format!("left out: rule {by} has a higher priority in the same run"),
        Some(Fate::Cooldown { last }) => format!("left out: this rule messaged the member at {}, within its cooldown", TsFmt(*last)),
        Some(Fate::NoOffer { why }) => format!("left out: no offer ({why})"),
        Some(Fate::NoCode { codes }) => {
            let file = match &rule.offer {
                crate::rules::Offer::Coupon(crate::rules::Coupon { codes: crate::rules::CouponCodes::List { path, .. }, .. }) => path.display().to_string(),
                _ => String::new(),
            };
            format!("left out: no coupon code left (all {codes} codes of {file} are given out)")
        }
        Some(Fate::Capped { recent }) => format!("left out: frequency cap ({recent} recent messages)"),
        Some(Fate::TemplateFailed { error }) => format!("left out: the template failed ({error})"),
        Some(f) => format!("left out: {}", f.reason()),
    };
    Explanation {
        rule: rule.id.clone(),
        name: rule.name.clone(),
        in_audience,
        conditions,
        consent: rule.message.channels.iter().map(|c| (c.clone(), facts.consents(c))).collect(),
        last_message: log.iter().rev().find(|c| c.rule == rule.id.as_str()).map(|c| (c.ts, c.channel.to_string())),
        recent_messages: log.iter().filter(|c| c.ts > now - i64::from(settings.cap_days) * 86_400).count(),
        cap_messages: settings.cap_messages,
        cap_days: settings.cap_days,
        held_out: super::holdout(&rule.id, base.id(member as usize), rule.limits.holdout_ppm),
        holdout_percent: f64::from(rule.limits.holdout_ppm) / 10_000.0,
        fate: fate.map_or("not in the audience", Fate::reason),
        verdict,
    }
}

impl Explanation {
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "rule {} — {}: {}", self.rule, self.name, if self.in_audience { "in the audience" } else { "not in the audience" })?;
        for l in &self.conditions {
            let mark = if l.pass { "pass" } else { "FAIL" };
            let indent = "  ".repeat(l.depth);
            if l.value.is_empty() {
                writeln!(out, "{indent}[{mark}] {}", l.what)?;
            } else {
                writeln!(out, "{indent}[{mark}] {:<width$} member: {}", l.what, l.value, width = 56usize.saturating_sub(indent.len()))?;
            }
        }
        let consents: Vec<String> = self.consent.iter().map(|(c, yes)| format!("{c}: {}", if *yes { "yes" } else { "no" })).collect();
        writeln!(out, "  consent         {}", consents.join(", "))?;
        match &self.last_message {
            Some((ts, channel)) => writeln!(out, "  last message    of this rule at {} ({channel})", TsFmt(*ts))?,
            None => writeln!(out, "  last message    none from this rule")?,
        }
        writeln!(out, "  frequency cap   {} of {} messages in the last {} days (before this run)", self.recent_messages, self.cap_messages, self.cap_days)?;
        writeln!(out, "  holdout         {} ({}% of the audience)", if self.held_out { "in the holdout group" } else { "not held out" }, self.holdout_percent)?;
        writeln!(out, "  verdict         {}", self.verdict)
    }
}

/// `explain` for a member over `rules` planned together at `now` (as of `as_of`): the
/// text, or one JSON document `{member, as_of, rules: [Explanation]}`.
#[allow(clippy::too_many_arguments)]
pub fn explain_member(out: &mut dyn Write, json: bool, base: &MemberBase, profiles: &Profiles, member: u32, rules: &[&Rule], plans: &[RulePlan], settings: &PlanSettings, now: i64) -> std::io::Result<()> {
    let explained: Vec<Explanation> = rules.iter().zip(plans).map(|(r, rp)| explain(base, profiles, member, r, rp, settings, now)).collect();
    let id = base.id(member as usize);
    let as_of = crate::domain::DayFmt(profiles.as_of);
    if json {
        let doc = serde_json::json!({ "member": id, "as_of": as_of.to_string(), "rules": explained });
        return writeln!(out, "{}", serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?);
    }
    writeln!(out, "member {id} as of {as_of} (rules planned together, by priority)\n")?;
    for e in &explained {
        e.write(out)?;
        writeln!(out)?;
    }
    Ok(())
}
