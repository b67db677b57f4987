//! Campaign rules: the TOML files marketers write in `rules/`.
//!
//! A rule says who (an audience condition over profile metrics and behaviour), what (an
//! offer), how (channels in fallback order, a minijinja template per channel), when (a
//! cron schedule in a time zone) and within which limits (holdout, cooldown, frequency
//! cap, quiet hours, audience size, priority).
//!
//! - [`tree`]: the spanned TOML tree of a file.
//! - [`read`]: the strict reader that turns a tree into a [`Rule`] or diagnostics.
//! - [`condition`]: audience conditions, their evaluation and their explanation.
//! - [`template`]: message templates: their variables and the static check.
//! - [`render`]: rendering under a budget (fuel, output size, a deadline per message).
//! - [`diagnostic`]: file/line/column reports with a source snippet and a hint.
//!
//! [`load_dir`] reads every `*.toml` file of a folder; a file with errors yields no rule
//! but never stops the others.

pub mod condition;
pub mod diagnostic;
mod read;
pub mod render;
pub mod template;
pub mod tree;

use crate::domain::Cents;
use crate::profile::Tier;
pub use condition::Condition;
pub use diagnostic::{Diagnostic, Severity, Sources};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One campaign.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub schedule: Option<Schedule>,
    /// Where the schedule's times are read; None: the configured default time zone.
    pub timezone: Option<chrono_tz::Tz>,
    /// Higher wins when a member qualifies for several rules in one run.
    pub priority: i32,
    pub audience: Condition,
    pub offer: Offer,
    pub message: Message,
    pub limits: Limits,
    /// The file the rule came from.
    pub path: PathBuf,
}

/// A cron schedule, normalised to the 6-field form (with seconds) the scheduler reads.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: String,
    pub parsed: croner::Cron,
}

impl Schedule {
    /// Parses the 5-field form marketers know (minute hour day month weekday) or the
    /// 6-field form with seconds first.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields = text.split_whitespace().count();
        let cron = match fields {
            5 => format!("0 {}", text.trim()),
            6 => text.split_whitespace().collect::<Vec<_>>().join(" "),
            n => return Err(format!("a schedule has 5 fields (minute hour day month weekday) or 6 with seconds first, this one has {n}")),
        };
        let parsed = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .build()
            .parse(&cron)
            .map_err(|e| e.to_string())?;
        Ok(Schedule { cron, parsed })
    }

    /// The first firing strictly after `after`, in `tz`: the one every next run is
    /// computed with (the daemon's scheduler, catch-up, `rules list`, the API).
    ///
    /// Day-of-month and weekday combine with OR when both are restricted (Vixie cron).
    /// Across daylight-saving changes (croner's rules): a wall time that a spring-forward
    /// skips fires at the first time after the gap when the schedule names one fixed
    /// time of day (`0 30 2 * * *`), and is skipped otherwise; a wall time that a fall-back
    /// repeats fires once, at its first occurrence.
    pub fn next_after(&self, after: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::{TimeZone, Timelike};
        let after = after.with_nanosecond(0).unwrap_or(after);
        let mut from = after.with_timezone(&tz);
        // croner searches wall times; inside a fall-back's repeated hour it answers a wall
        // time's first occurrence although that is past. That one has fired, so the search
        // goes on from its second occurrence (each step is one firing later; an hour of a
        // per-second schedule is the most there can be)
        for _ in 0..2 * 3600 + 2 {
            let t = self.parsed.find_next_occurrence(&from, false).ok()?;
            if t > from {
                return Some(t.with_timezone(&chrono::Utc));
            }
            from = tz.from_local_datetime(&t.naive_local()).latest()?;
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Offer {
    None,
    Coupon(Coupon),
    /// A product picked by the member's price tier: the first candidate in stock that the
    /// member has not bought.
    Product(BTreeMap<Tier, Vec<String>>),
    /// The best co-purchase rule whose antecedent the member bought (filled by `bundles`).
    Bundle(BundleOffer),
}

impl Offer {
    pub fn kind(&self) -> &'static str {
        match self {
            Offer::None => "none",
            Offer::Coupon(_) => "coupon",
            Offer::Product(_) => "product",
            Offer::Bundle(_) => "bundle",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Coupon {
    pub codes: CouponCodes,
    pub value: CouponValue,
    pub min_spend: Option<Cents>,
    pub valid_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CouponCodes {
    /// A pattern such as `WB-{code:8}`: the placeholder becomes characters derived from
    /// the rule and member, so a member's code is stable across previews and runs.
    Pattern(String),
    /// Codes read from a file, one per line (duplicates dropped), each handed out once
    /// in audience order; the store records who got which. Fewer than `warn_below` left
    /// after a run is warned about.
    List { path: PathBuf, codes: Vec<String>, warn_below: usize },
}

#[derive(Debug, Clone, PartialEq)]
pub enum CouponValue {
    Amount(Cents),
    Percent(u32),
    /// An amount by the member's price tier (members without a tier get `mid`).
    AmountByTier(BTreeMap<Tier, Cents>),
    PercentByTier(BTreeMap<Tier, u32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct BundleOffer {
    pub scope: crate::basket::Scope,
    pub min_confidence: f64,
    pub min_lift: f64,
    /// Only purchases within this many days count, for the antecedent and for "not
    /// bought yet" (None: every purchase up to the run's day).
    pub lookback_days: Option<u32>,
}

/// Channels in fallback order and a template per channel.
#[derive(Debug, Clone)]
pub struct Message {
    pub channels: Vec<String>,
    pub templates: BTreeMap<String, template::ChannelTemplate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenBlocked {
    Skip,
    Defer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Minutes after local midnight; the window may wrap past midnight.
    pub start: u32,
    pub end: u32,
}

impl QuietHours {
    pub fn parse(start: &str, end: &str) -> Result<QuietHours, String> {
        let hm = |s: &str| -> Result<u32, String> {
            let (h, m) = s.split_once(':').ok_or_else(|| format!("{s:?} is not a time like \"21:00\""))?;
            match (h.parse::<u32>(), m.parse::<u32>()) {
                (Ok(h), Ok(m)) if h < 24 && m < 60 && m.to_string().len() <= 2 => Ok(h * 60 + m),
                _ => Err(format!("{s:?} is not a time like \"21:00\"")),
            }
        };
        Ok(QuietHours { start: hm(start)?, end: hm(end)? })
    }

    /// Whether a local time of day (minutes after midnight) falls in the window.
    pub fn contains(&self, minute: u32) -> bool {
        if self.start <= self.end {
            self.start <= minute && minute < self.end
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Share of the audience kept out as a control group, in parts per million.
    pub holdout_ppm: u32,
    pub cooldown_days: Option<u32>,
    pub max_audience: Option<usize>,
    pub order_by: AudienceOrder,
    pub on_frequency_cap: WhenBlocked,
    pub on_quiet_hours: WhenBlocked,
    /// None: the configured default; Some(None): off for this rule.
    pub quiet_hours: Option<Option<QuietHours>>,
}

/// Which members stay when the audience is cut to `max_audience`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudienceOrder {
    pub metric: condition::Metric,
    pub descending: bool,
}

/// Channel names a rule may use: the configured ones, and the well-known kinds (which
/// only warn when not configured).
pub struct ChannelNames {
    pub configured: Vec<String>,
}

pub const WELL_KNOWN_CHANNELS: [&str; 3] = ["email", "sms", "shop"];

/// Every rule read from a folder, the diagnostics of every file, and the sources.
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub diagnostics: Vec<Diagnostic>,
    pub sources: Sources,
    /// Files that had errors (their rules are not in `rules`).
    pub failed: Vec<PathBuf>,
}

impl RuleSet {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// Channels the valid rules send on that no `[channels.*]` table configures: their
    /// messages wait in the outbox until a plugin serves them.
    pub fn unconfigured_channels(&self, channels: &ChannelNames) -> Vec<String> {
        let mut out: Vec<String> = self.rules.iter().flat_map(|r| r.message.channels.iter()).filter(|c| !channels.configured.contains(c)).cloned().collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read rules from {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// Reads one rule file or every `*.toml` file in a folder (sorted by name).
pub fn load(path: &Path, channels: &ChannelNames) -> Result<RuleSet, RulesError> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| RulesError::Read { path: path.into(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut set = RuleSet { rules: Vec::new(), diagnostics: Vec::new(), sources: Sources::default(), failed: Vec::new() };
    for file in files {
        match read_capped_bytes(&file, MAX_RULE_FILE).map(String::from_utf8) {
            Ok(Ok(text)) => add_file(&mut set, &file, text, channels),
            Ok(Err(e)) => {
                // that file's error, not the folder's: the other rules still load
                let at = e.utf8_error().valid_up_to();
                let id = set.sources.add(file.display().to_string(), String::from_utf8_lossy(e.as_bytes()).into_owned());
                let replacement = '\u{fffd}'.len_utf8();
                set.diagnostics.push(Diagnostic::error(id, at..at + replacement, "the file is not valid UTF-8").label("this byte").help("save the file as UTF-8"));
                set.failed.push(file);
            }
            Err(err) => {
                // this file fails alone, like a file with errors
                let id = set.sources.add(file.display().to_string(), String::new());
                set.diagnostics.push(Diagnostic::error(id, 0..0, format!("cannot read {}: {err}", file.display())));
                set.failed.push(file);
            }
        }
    }
    check_duplicates(&mut set);
    Ok(set)
}

/// The largest rule file read.
const MAX_RULE_FILE: u64 = 4 << 20;

/// A regular file's text (symbolic links followed), refused past `max_bytes` (before reading it all) and when not
/// UTF-8.
fn read_capped(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    String::from_utf8(read_capped_bytes(path, max_bytes)?).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not valid UTF-8 at byte {}", e.utf8_error().valid_up_to())))
}

/// A regular file's bytes, refused past `max_bytes` (config.rs reads secret files with it).
pub(crate) fn read_capped_bytes(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    // a FIFO would block the open: look first
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::new(ErrorKind::InvalidData, format!("larger than the limit of {} KiB", max_bytes / 1024)));
    }
    Ok(bytes)
}

/// Reads one file's text into the set.
pub fn add_file(set: &mut RuleSet, path: &Path, text: String, channels: &ChannelNames) {
    let file = set.sources.add(path.display().to_string(), text);
    let (rule, diags) = read::read_rule(file, set.sources.text(file), path, channels);
    let failed = diags.iter().any(|d| d.severity == Severity::Error);
    set.diagnostics.extend(diags);
    match rule {
        Some(rule) if !failed => set.rules.push(rule),
        _ => set.failed.push(path.to_path_buf()),
    }
}

/// Two files with one id: the later one is refused.
fn check_duplicates(set: &mut RuleSet) {
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut keep = Vec::new();
    for rule in std::mem::take(&mut set.rules) {
        if let Some(first) = seen.get(&rule.id) {
            let file = (0..).take_while(|&i| !set.sources.name(i).is_empty()).find(|&i| set.sources.name(i) == rule.path.display().to_string()).unwrap_or(0);
            set.diagnostics.push(
                Diagnostic::error(file, 0..0, format!("rule id {:?} is already used by {}", rule.id, first.display()))
                    .help("give each rule its own `id` (it defaults to the file name)"),
            );
            set.failed.push(rule.path.clone());
        } else {
            seen.insert(rule.id.clone(), rule.path.clone());
            keep.push(rule);
        }
    }
    set.rules = keep;
}
