//! Profiles of the whole member base as of a date: scans every member from the store,
//! computes metrics in parallel, takes the population cut points, and writes the
//! `profiles export` rows (CSV, NDJSON or a JSON array), the `stats` summary and one member's card.
//!
//! The export columns form one closed list ([`COLUMNS`]), so CSV, NDJSON and the docs
//! never drift apart.

use crate::profile::ProfileConfig;
use crate::domain::{CentsFmt, Day, DayFmt, Text, TsFmt};
use crate::predict::{DaySpend, FittedModel, PredictOptions, PurchaseHistory};
use crate::profile::{ColumnMember, CutPoints, MemberFacts, Profile, Stage, Tier, ValueTier};
use crate::store::columns::Columns;
use crate::store::consent::ChannelConsent;
use crate::store::model::{Contact, EventHistory, Member, OrderHistory};
use crate::store::{Store, StoreError};
use rayon::prelude::*;
use std::io::Write;

/// Every member's profile as of one day, in member id order.
pub struct Population {
    pub as_of: Day,
    pub ids: Vec<Text>,
    pub profiles: Vec<Profile>,
    pub cuts: Option<CutPoints>,
}


impl Population {
    /// Profiles every member from the member base's columns (never the order lines).
    pub fn compute(store: &Store, as_of: Day, cfg: &ProfileConfig) -> Result<Population, StoreError> {
        Population::compute_with(store, as_of, cfg, None)
    }

    /// [`Population::compute`], adding each member's predicted value from `model`.
    pub fn compute_with(
        store: &Store,
        as_of: Day,
        cfg: &ProfileConfig,
        model: Option<(&FittedModel, &PredictOptions)>,
    ) -> Result<Population, StoreError> {
        let mapped = store.member_columns()?;
        let columns = mapped.columns();
        let n = columns.len();
        let mut profiles = Vec::new();
        let (ids, cuts) = rayon::join(
            || (0..n).into_par_iter().with_min_len(4096).map(|i| Text::from_utf8_lossy(columns.id(i))).collect(),
            || profile_all_into(&mut profiles, &columns, as_of, cfg, model, true),
        );
        store.note_member_count(n);
        Ok(Population { as_of, ids, profiles, cuts })
    }

    /// Writes one row per member.
    pub fn export(&self, out: &mut dyn Write, format: ExportFormat) -> std::io::Result<()> {
        match format {
            ExportFormat::Csv => writeln!(out, "{}", column_names().collect::<Vec<_>>().join(","))?,
            ExportFormat::Json => out.write_all(b"[")?,
            ExportFormat::Ndjson => {}
        }
        // formatted in parallel, a block at a time, so memory stays bounded
        for (block, (ids, profiles)) in self.ids.chunks(1 << 16).zip(self.profiles.chunks(1 << 16)).enumerate() {
            let buffers: Vec<Vec<u8>> = ids
                .par_chunks(4096)
                .zip(profiles.par_chunks(4096))
                .enumerate()
                .map(|(chunk, (ids, profiles))| {
                    let mut buf = Vec::with_capacity(ids.len() * 200);
                    for (i, (id, p)) in ids.iter().zip(profiles).enumerate() {
                        if format == ExportFormat::Json {
                            // a JSON array's rows: one a line, a comma before every one but the first
                            buf.extend_from_slice(if block == 0 && chunk == 0 && i == 0 { b"\n" } else { b",\n" });
                        }
                        write_row(&mut buf, id, p, format);
                    }
                    buf
                })
                .collect();
            for b in buffers {
                out.write_all(&b)?;
            }
        }
        if format == ExportFormat::Json {
            out.write_all(b"\n]\n")?;
        }
        out.flush()
    }
}

/// Profiles of decoded members, in input order: the reference the columns' profiles
/// are checked against.
pub fn profile_all(
    members: &[Member],
    as_of: Day,
    cfg: &ProfileConfig,
    model: Option<(&FittedModel, &PredictOptions)>,
) -> (Vec<Profile>, Option<CutPoints>) {
    let mut profiles: Vec<Profile> = members.par_iter().map_init(Vec::new, |days, m| profile_one(m, days, as_of, cfg, model, true)).collect();
    let cuts = score_all(&mut profiles, cfg);
    (profiles, cuts)
}

/// Profiles of every member of the columns into a buffer kept between runs (no
/// reallocation once sized), in member order; `favourites`: see
/// [`crate::profile::metrics_with`].
pub fn profile_all_into(
    profiles: &mut Vec<Profile>,
    columns: &Columns,
    as_of: Day,
    cfg: &ProfileConfig,
    model: Option<(&FittedModel, &PredictOptions)>,
    favourites: bool,
) -> Option<CutPoints> {
    let n = columns.len();
    let one = |days: &mut Vec<DaySpend>, i: usize| profile_one(&ColumnMember { row: columns.row(i), columns }, days, as_of, cfg, model, favourites);
    if profiles.len() == n {
        profiles.par_iter_mut().enumerate().with_min_len(1024).for_each_init(Vec::new, |days, (i, p)| *p = one(days, i));
    } else {
        *profiles = (0..n).into_par_iter().with_min_len(1024).map_init(Vec::new, one).collect();
    }
    score_all(profiles, cfg)
}

/// One member's metrics and prediction (`days` is scratch), unscored.
fn profile_one(
    m: &impl MemberFacts,
    days: &mut Vec<DaySpend>,
    as_of: Day,
    cfg: &ProfileConfig,
    model: Option<(&FittedModel, &PredictOptions)>,
    favourites: bool,
) -> Profile {
    let mut p = Profile::new(crate::profile::metrics_with(m, as_of, cfg, favourites), None, cfg);
    if let Some((model, opts)) = model {
        p.prediction = predict_one(m, days, as_of, model, opts);
    }
    p
}

/// One member's prediction by the value model (`days` is scratch); none without orders.
pub fn predict_one(m: &impl MemberFacts, days: &mut Vec<DaySpend>, as_of: Day, model: &FittedModel, opts: &PredictOptions) -> Option<crate::predict::MemberPrediction> {
    days.clear();
    days.extend((0..m.orders_through(Day::MAX)).map(|k| DaySpend { day: m.order_day(k), cents: m.order_amount(k) }));
    PurchaseHistory::from_order_days(days, as_of, model.unit).map(|h| model.predict(&h, opts))
}

/// The population's cut points, and every profile scored against them.
fn score_all(profiles: &mut [Profile], cfg: &ProfileConfig) -> Option<CutPoints> {
    let cuts = CutPoints::compute(profiles.iter().map(|p| &p.metrics), cfg);
    profiles.par_iter_mut().with_min_len(1024).for_each(|p| p.score(cuts.as_ref(), cfg));
    cuts
}

/// One member's profile as a JSON object of the export columns (templates read it).
pub fn profile_json(id: &str, p: &Profile) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    COLUMNS
        .iter()
        .map(|(name, cell)| {
            let v = match cell(id, p) {
                Cell::Null => Value::Null,
                Cell::Int(v) => Value::from(v),
                Cell::Money(v) => Value::from(CentsFmt(v).to_string()),
                Cell::Real(v) => Value::from(v),
                Cell::Half(x2) => Value::from(x2 as f64 / 2.0),
                Cell::Date(d) => Value::from(DayFmt(d).to_string()),
                Cell::Bool(b) => Value::from(b),
                Cell::Text(t) => Value::from(t),
            };
            (name.to_string(), v)
        })
        .collect()
}

/// Every member's orders as (day, spend), for fitting: the members with an order, in
/// member id order.
pub fn all_order_days(store: &Store) -> Result<Vec<Vec<DaySpend>>, StoreError> {
    Ok(order_days_of(&store.member_columns()?.columns()))
}

/// [`all_order_days`] of columns already mapped.
pub fn order_days_of(columns: &Columns) -> Vec<Vec<DaySpend>> {
    (0..columns.len())
        .into_par_iter()
        .with_min_len(4096)
        .filter_map(|i| {
            let r = columns.row(i);
            (!r.days.is_empty()).then(|| r.days.iter().zip(r.amounts).map(|(&day, &cents)| DaySpend { day, cents }).collect())
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Ndjson,
    /// One array of the NDJSON objects.
    Json,
}

/// A cell of an export row.
pub enum Cell<'a> {
    Null,
    Int(i64),
    Money(i64),
    Real(f64),
    Half(i64),
    Date(Day),
    Bool(bool),
    Text(&'a str),
}

type Column = (&'static str, for<'a> fn(&'a str, &'a Profile) -> Cell<'a>);

fn opt<'a, T>(v: Option<T>, f: impl FnOnce(T) -> Cell<'a>) -> Cell<'a> {
    v.map_or(Cell::Null, f)
}

/// The export columns, named as in DATA.md.
/// The names of the export columns, in order.
pub fn column_names() -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().map(|(name, _)| *name)
}

pub const COLUMNS: &[Column] = &[
    ("member_id", |id, _| Cell::Text(id)),
    ("orders", |_, p| Cell::Int(i64::from(p.metrics.orders))),
    ("monetary", |_, p| Cell::Money(p.metrics.monetary)),
    ("aov", |_, p| opt(p.metrics.aov(), Cell::Money)),
    ("first_order_date", |_, p| opt(p.metrics.first_order, Cell::Date)),
    ("last_order_date", |_, p| opt(p.metrics.last_order, Cell::Date)),
    ("recency_days", |_, p| opt(p.metrics.recency_days, |r| Cell::Int(i64::from(r)))),
    ("stage", |_, p| Cell::Text(p.metrics.stage.as_str())),
    ("r_score", |_, p| opt(p.r, |v| Cell::Int(i64::from(v)))),
    ("f_score", |_, p| opt(p.f, |v| Cell::Int(i64::from(v)))),
    ("m_score", |_, p| opt(p.m, |v| Cell::Int(i64::from(v)))),
    ("value_tier", |_, p| opt(p.value_tier, |v| Cell::Text(v.as_str()))),
    ("price_tier", |_, p| opt(p.price_tier, |v| Cell::Text(v.as_str()))),
    ("price_sensitivity", |_, p| opt(p.metrics.price_sensitivity(), Cell::Real)),
    ("price_sensitivity_tier", |_, p| opt(p.sensitivity_tier, |v| Cell::Text(v.as_str()))),
    ("interval_median_days", |_, p| opt(p.metrics.interval_median_x2, Cell::Half)),
    ("repurchase_due", |_, p| Cell::Bool(p.metrics.repurchase_due)),
    ("top_category", |_, p| opt(p.metrics.top_category.as_deref(), Cell::Text)),
    ("top_brand", |_, p| opt(p.metrics.top_brand.as_deref(), Cell::Text)),
    ("age", |_, p| opt(p.metrics.age, |a| Cell::Int(i64::from(a)))),
    ("consent_email", |_, p| Cell::Bool(p.metrics.consent_email)),
    ("consent_sms", |_, p| Cell::Bool(p.metrics.consent_sms)),
    ("p_alive", |_, p| opt(p.prediction, |x| Cell::Real(x.p_alive))),
    ("expected_purchases", |_, p| opt(p.prediction, |x| Cell::Real(x.expected_purchases))),
    ("expected_spend", |_, p| opt(p.prediction, |x| Cell::Money(x.expected_spend_cents))),
    ("predicted_value", |_, p| opt(p.prediction, |x| Cell::Money(x.predicted_value_cents))),
    ("churn_risk", |_, p| opt(p.prediction, |x| Cell::Text(x.churn_risk.as_str()))),
];

fn write_row(buf: &mut Vec<u8>, id: &str, p: &Profile, format: ExportFormat) {
    let mut ib = itoa::Buffer::new();
    let json = format != ExportFormat::Csv;
    if json {
        buf.push(b'{');
    }
    for (i, (name, cell)) in COLUMNS.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        if json {
            buf.push(b'"');
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(b"\":");
        }
        match cell(id, p) {
            Cell::Null if json => buf.extend_from_slice(b"null"),
            Cell::Null => {}
            Cell::Int(v) => buf.extend_from_slice(ib.format(v).as_bytes()),
            Cell::Money(v) => {
                let _ = write!(buf, "{}", CentsFmt(v));
            }
            Cell::Real(v) => {
                let _ = write!(buf, "{v:.6}");
            }
            Cell::Half(x2) => {
                buf.extend_from_slice(ib.format(x2 / 2).as_bytes());
                if x2 % 2 != 0 {
                    buf.extend_from_slice(b".5");
                }
            }
            Cell::Date(d) => {
                if json {
                    buf.push(b'"');
                }
                let _ = write!(buf, "{}", DayFmt(d));
                if json {
                    buf.push(b'"');
                }
            }
            Cell::Bool(b) => buf.extend_from_slice(if b { b"true" } else { b"false" }),
            Cell::Text(s) if json => {
                let _ = serde_json::to_writer(&mut *buf, s);
            }
            Cell::Text(s) => {
                if s.contains([',', '"', '\n', '\r']) {
                    buf.push(b'"');
                    buf.extend_from_slice(s.replace('"', "\"\"").as_bytes());
                    buf.push(b'"');
                } else {
                    buf.extend_from_slice(s.as_bytes());
                }
            }
        }
    }
    if json {
        buf.push(b'}');
    }
    if format != ExportFormat::Json {
        buf.push(b'\n');
    }
}

/// The `stats` summary: counts by stage and tier, and the spend distribution of the
/// buyers (`--format json` prints it as it is; money in minor units).
#[derive(Debug, serde::Serialize)]
pub struct Stats {
    pub as_of: String,
    pub members: usize,
    #[serde(serialize_with = "as_map")]
    pub by_stage: Vec<(&'static str, usize)>,
    #[serde(serialize_with = "as_map")]
    pub by_price_tier: Vec<(&'static str, usize)>,
    #[serde(serialize_with = "as_map")]
    pub by_value_tier: Vec<(&'static str, usize)>,
    /// Members with an order.
    pub buyers: usize,
    pub spend_cents: Option<SpendSpread>,
    pub cut_points: Option<StatsCuts>,
}

/// Counts by name as one JSON object, in their order.
fn as_map<S: serde::Serializer>(counts: &[(&'static str, usize)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(counts.iter().copied())
}

/// Spend per buyer, minor units.
#[derive(Debug, serde::Serialize)]
pub struct SpendSpread {
    pub total: i64,
    pub mean: i64,
    pub min: i64,
    pub p25: i64,
    pub median: i64,
    pub p75: i64,
    pub p90: i64,
    pub p99: i64,
    pub max: i64,
}

#[derive(Debug, serde::Serialize)]
pub struct StatsCuts {
    pub recency_days: [i32; 4],
    pub orders: [u32; 4],
    pub monetary_cents: [i64; 4],
}

impl Stats {
    pub fn of(pop: &Population) -> Stats {
        let count = |f: &dyn Fn(&Profile) -> bool| pop.profiles.iter().filter(|p| f(p)).count();
        let mut spend: Vec<i64> = pop.profiles.iter().filter(|p| p.metrics.orders > 0).map(|p| p.metrics.monetary).collect();
        spend.sort_unstable();
        let pct = |k: usize| spend[(k * spend.len()).div_ceil(100).max(1) - 1];
        Stats {
            as_of: DayFmt(pop.as_of).to_string(),
            members: pop.profiles.len(),
            by_stage: Stage::ALL.iter().map(|&s| (s.as_str(), count(&|p| p.metrics.stage == s))).collect(),
            by_price_tier: Tier::ALL.iter().map(|&t| (t.as_str(), count(&|p| p.price_tier == Some(t)))).collect(),
            by_value_tier: ValueTier::ALL.iter().map(|&t| (t.as_str(), count(&|p| p.value_tier == Some(t)))).collect(),
            buyers: spend.len(),
            spend_cents: (!spend.is_empty()).then(|| {
                let total: i64 = spend.iter().sum();
                SpendSpread {
                    total,
                    mean: total / spend.len() as i64,
                    min: spend[0],
                    p25: pct(25),
                    median: pct(50),
                    p75: pct(75),
                    p90: pct(90),
                    p99: pct(99),
                    max: spend[spend.len() - 1],
                }
            }),
            cut_points: pop.cuts.as_ref().map(|c| StatsCuts { recency_days: c.recency, orders: c.orders, monetary_cents: c.monetary }),
        }
    }

    /// The summary for people.
    pub fn write_table(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let n = self.members;
        let share = |c: usize| if n == 0 { 0.0 } else { 100.0 * c as f64 / n as f64 };
        writeln!(out, "members as of {}: {}", self.as_of, n)?;
        for (title, counts) in [("by stage", &self.by_stage), ("by price tier (purchasing power)", &self.by_price_tier), ("by value tier (RFM)", &self.by_value_tier)] {
            writeln!(out, "\n{title}")?;
            for (name, c) in counts {
                writeln!(out, "  {:<10} {:>10} {:>6.1}%", name, c, share(*c))?;
            }
        }
        writeln!(out, "\nspend per buyer ({} buyers)", self.buyers)?;
        if let Some(s) = &self.spend_cents {
            writeln!(out, "  total {}  mean {}", CentsFmt(s.total), CentsFmt(s.mean))?;
            writeln!(
                out,
                "  min {}  p25 {}  median {}  p75 {}  p90 {}  p99 {}  max {}",
                CentsFmt(s.min),
                CentsFmt(s.p25),
                CentsFmt(s.median),
                CentsFmt(s.p75),
                CentsFmt(s.p90),
                CentsFmt(s.p99),
                CentsFmt(s.max)
            )?;
        }
        if let Some(c) = &self.cut_points {
            writeln!(
                out,
                "\ncut points: recency {:?} days, orders {:?}, monetary [{}]",
                c.recency_days,
                c.orders,
                c.monetary_cents.iter().map(|m| CentsFmt(*m).to_string()).collect::<Vec<_>>().join(", ")
            )?;
        }
        Ok(())
    }
}

/// One member's card (`member show`, and the daemon's member answer, so both print the
/// same): contacts and consent, the profile as of a day, the last orders, browsing.
pub struct MemberCard<'a> {
    pub id: &'a str,
    pub member: &'a Member,
    pub profile: &'a Profile,
    pub consent: &'a [ChannelConsent],
    pub history: Option<&'a OrderHistory>,
    pub events: Option<&'a EventHistory>,
    pub as_of: Day,
    /// The time zone of members without one (`[members] default_timezone`).
    pub default_timezone: &'a str,
}

impl MemberCard<'_> {
    /// `member show --format json` and `GET /api/members/ID` alike: the member's fields,
    /// profile, consent in force per channel, unsubscribes, stopped addresses, recent
    /// contacts, and the card as text.
    pub fn json(&self, unsubscribed: &[Text], contacts: &[Contact]) -> std::io::Result<serde_json::Value> {
        let m = self.member;
        let consent: Vec<serde_json::Value> = self
            .consent
            .iter()
            .map(|c| {
                let mut v = serde_json::json!(c);
                v["shown"] = c.to_string().into();
                v
            })
            .collect();
        let stopped: Vec<&str> = self.consent.iter().filter(|c| c.stopped_at.is_some()).map(|c| c.channel.as_str()).collect();
        let contacts: Vec<serde_json::Value> = contacts.iter().map(|c| serde_json::json!({"at": c.ts, "rule": c.rule.as_str(), "channel": c.channel.as_str(), "run": c.run})).collect();
        let mut card = Vec::new();
        self.write(&mut card)?;
        Ok(serde_json::json!({
            "id": self.id, "name": m.name.as_str(), "email": m.email, "phone": m.phone, "city": m.city.as_str(), "timezone": m.tz.as_str(),
            "profile": profile_json(self.id, self.profile),
            "consent": consent,
            "unsubscribed": unsubscribed,
            "stopped_addresses": stopped,
            "contacts": contacts,
            "card": String::from_utf8_lossy(&card),
        }))
    }

    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let (id, member, p, m) = (self.id, self.member, self.profile, &self.profile.metrics);
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let or_dash = |s: &str| if s.is_empty() { "-".to_string() } else { s.to_string() };
        writeln!(out, "member {id}  {}{}", member.name, if member.known { "" } else { " (bare: known only from orders or events)" })?;
        let tz = if member.tz.is_empty() { self.default_timezone } else { &member.tz };
        writeln!(out, "  email {}  phone {}  city {}  tz {tz}", or_dash(&member.email), or_dash(&member.phone), or_dash(&member.city))?;
        let consent: Vec<String> = self.consent.iter().map(ToString::to_string).collect();
        writeln!(out, "  consent: {}", consent.join("  "))?;
        writeln!(out, "  age {}  signed up {}", opt(m.age.map(|a| a.to_string())), opt(member.signup_ts.map(|t| TsFmt(t).to_string())))?;
        writeln!(out, "\nas of {}", DayFmt(self.as_of))?;
        writeln!(out, "  stage {}  recency {} days", m.stage.as_str(), opt(m.recency_days.map(|r| r.to_string())))?;
        writeln!(out, "  orders {}  spend {}  aov {}", m.orders, CentsFmt(m.monetary), opt(m.aov().map(|a| CentsFmt(a).to_string())))?;
        writeln!(out, "  first order {}  last order {}", opt(m.first_order.map(|d| DayFmt(d).to_string())), opt(m.last_order.map(|d| DayFmt(d).to_string())))?;
        let tier = |t: Option<&str>| opt(t.map(str::to_string));
        writeln!(
            out,
            "  RFM {}/{}/{}  value tier {}  price tier {}",
            opt(p.r.map(|v| v.to_string())),
            opt(p.f.map(|v| v.to_string())),
            opt(p.m.map(|v| v.to_string())),
            tier(p.value_tier.map(|t| t.as_str())),
            tier(p.price_tier.map(|t| t.as_str()))
        )?;
        writeln!(out, "  price sensitivity {} ({})", opt(m.price_sensitivity().map(|s| format!("{s:.2}"))), tier(p.sensitivity_tier.map(|t| t.as_str())))?;
        writeln!(out, "  repurchase cycle {} days, due {}", opt(m.interval_median_days().map(|d| d.to_string())), if m.repurchase_due { "yes" } else { "no" })?;
        if let Some(x) = &p.prediction {
            writeln!(
                out,
                "  p_alive {:.3} ({} churn risk)  expected purchases {:.2}  spend per purchase {}  predicted value {}",
                x.p_alive,
                x.churn_risk.as_str(),
                x.expected_purchases,
                CentsFmt(x.expected_spend_cents),
                CentsFmt(x.predicted_value_cents)
            )?;
        }
        writeln!(out, "  favourite category {}  brand {}", opt(m.top_category.as_ref().map(|t| t.to_string())), opt(m.top_brand.as_ref().map(|t| t.to_string())))?;
        if let Some(h) = self.history {
            let lines: Vec<_> = h.lines.iter().filter(|l| crate::domain::day_of(l.ts) <= self.as_of).collect();
            writeln!(out, "\nlast orders")?;
            let mut orders: Vec<&str> = Vec::new();
            for l in lines.iter().rev() {
                if !orders.contains(&l.order_id.as_str()) {
                    orders.push(&l.order_id);
                }
            }
            for oid in orders.iter().take(5) {
                let ls: Vec<_> = lines.iter().filter(|l| l.order_id == *oid).collect();
                let total: i64 = ls.iter().map(|l| l.amount()).sum();
                writeln!(out, "  {}  {oid}  {}", opt(ls.first().map(|l| TsFmt(l.ts).to_string())), CentsFmt(total))?;
                for l in ls {
                    let disc = if l.discount_ppm > 0 { format!("  -{}%", l.discount_ppm as f64 / 10_000.0) } else { String::new() };
                    writeln!(out, "      {} x{} @ {}{}  {}", l.sku, l.qty, CentsFmt(l.unit_price), disc, l.category)?;
                }
            }
        }
        if let Some(ev) = self.events {
            writeln!(out, "\nbrowsing: {} events, last {}", ev.events.len(), opt(ev.events.last().map(|e| format!("{} {} {}", TsFmt(e.ts), e.kind.as_str(), e.sku))))?;
        }
        Ok(())
    }
}
