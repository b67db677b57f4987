//! The strict reader: a rule file's spanned tree becomes a [`Rule`], and every problem on
//! the way becomes a [`Diagnostic`] pointing at its key or value. The reader never stops
//! at the first problem; a file with any error yields no rule.

use super::condition::{Condition, Item, Metric, MetricKind};
use super::diagnostic::{did_you_mean, Diagnostic};
use super::template::{self, ChannelTemplate, Located};
use super::tree::{self, Entry, Node, Span, Spanned};
use super::*;
use crate::basket::Scope;
use crate::domain::{parse_scaled, Text};
use crate::predict::ChurnRisk;
use crate::profile::{Stage, Tier, ValueTier};
use crate::store::model::{EventKind, Gender};

const TOP_KEYS: &[&str] = &["id", "name", "description", "enabled", "schedule", "timezone", "priority", "audience", "offer", "message", "limits"];
const BEHAVIOUR_KEYS: &[&str] = &["bought", "not_bought", "browsed", "favorited", "carted", "likely_to_buy"];
const OTHER_CONDITIONS: &[&str] = &[
    "all", "any", "not", "stage", "value_tier", "price_tier", "price_sensitivity_tier", "churn_risk", "repurchase_due",
    "top_category", "top_brand", "gender", "city", "consent",
];

struct Reader<'a> {
    file: usize,
    src: &'a str,
    path: &'a Path,
    channels: &'a ChannelNames,
    diags: Vec<Diagnostic>,
}

pub(super) fn read_rule(file: usize, src: &str, path: &Path, channels: &ChannelNames) -> (Option<Rule>, Vec<Diagnostic>) {
    let doc = match toml_edit::ImDocument::parse(src.to_string()) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim().to_string();
            return (None, vec![Diagnostic::error(file, span, format!("invalid TOML: {message}")).label("here")]);
        }
    };
    let root = tree::root(&doc);
    let mut r = Reader { file, src, path, channels, diags: Vec::new() };
    let rule = r.rule(&root);
    (rule, r.diags)
}

impl<'a> Reader<'a> {
    fn err(&mut self, span: &Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(self.file, span.clone(), message));
        self.diags.last_mut().expect("just pushed")
    }

    fn warn(&mut self, span: &Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::warning(self.file, span.clone(), message));
        self.diags.last_mut().expect("just pushed")
    }

    fn type_err(&mut self, v: &Spanned, expected: &str) {
        let found = v.node.type_name();
        self.err(&v.span, format!("expected {expected}, found {found}")).label = format!("this is {found}");
    }

    fn unknown_key(&mut self, e: &Entry, allowed: &[&str], context: &str) {
        let d = self.err(&e.key_span, format!("unknown key `{}` in {context}", e.key));
        d.label = "unknown key".into();
        d.help = Some(match did_you_mean(e.key, allowed.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("the keys of {context} are: {}", allowed.join(", ")),
        });
    }

    fn table<'n>(&mut self, v: &'n Spanned<'a>) -> Option<&'n [Entry<'a>]> {
        match &v.node {
            Node::Table(entries) => Some(entries),
            _ => {
                self.type_err(v, "a table");
                None
            }
        }
    }

    fn string(&mut self, v: &Spanned<'a>) -> Option<&'a str> {
        match v.node {
            Node::Str(s) => Some(s),
            _ => {
                self.type_err(v, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, v: &Spanned) -> Option<bool> {
        match v.node {
            Node::Bool(b) => Some(b),
            _ => {
                self.type_err(v, "true or false");
                None
            }
        }
    }

    fn int(&mut self, v: &Spanned, min: i64, max: i64) -> Option<i64> {
        match v.node {
            Node::Int(i) if (min..=max).contains(&i) => Some(i),
            Node::Int(i) => {
                self.err(&v.span, format!("{i} is out of range")).label = format!("must be between {min} and {max}");
                None
            }
            _ => {
                self.type_err(v, "an integer");
                None
            }
        }
    }

    fn number(&mut self, v: &Spanned, min: f64, max: f64) -> Option<f64> {
        let x = match v.node {
            Node::Int(i) => i as f64,
            Node::Float(f) => f,
            _ => {
                self.type_err(v, "a number");
                return None;
            }
        };
        if !(min..=max).contains(&x) {
            self.err(&v.span, format!("{x} is out of range")).label = format!("must be between {min} and {max}");
            return None;
        }
        Some(x)
    }

    /// Money in currency units: an integer, a float with at most two places, or a
    /// decimal string ("19.90"); returns cents.
    fn money(&mut self, v: &Spanned) -> Option<i64> {
        let text = match &v.node {
            Node::Int(i) => i.to_string(),
            Node::Float(f) => format!("{f}"),
            Node::Str(s) => s.to_string(),
            _ => {
                self.type_err(v, "an amount (like 20 or \"19.90\")");
                return None;
            }
        };
        match parse_scaled(text.trim(), 2) {
            Ok(c) if c >= 0 => Some(c),
            Ok(_) => {
                self.err(&v.span, "an amount cannot be negative");
                None
            }
            Err(e) => {
                self.err(&v.span, format!("not an amount: {e}")).help = Some("write money in currency units with at most two decimals, like 20 or \"19.90\"".into());
                None
            }
        }
    }

    /// A string or an array of strings.
    fn strings(&mut self, v: &Spanned<'a>) -> Option<Vec<(&'a str, Span)>> {
        match &v.node {
            Node::Str(s) => Some(vec![(*s, v.span.clone())]),
            Node::Array(items) if items.is_empty() => {
                self.err(&v.span, "an empty list matches nobody").label = "empty".into();
                None
            }
            Node::Array(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for it in items {
                    match self.string(it) {
                        Some(s) => out.push((s, it.span.clone())),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            _ => {
                self.type_err(v, "a string or an array of strings");
                None
            }
        }
    }

    /// One or more names out of a closed set.
    fn names<T: Copy>(&mut self, v: &Spanned<'a>, allowed: &[(&str, T)], what: &str) -> Option<Vec<T>> {
        let items = self.strings(v)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (s, span) in items {
            match allowed.iter().find(|(n, _)| *n == s) {
                Some((_, t)) => out.push(*t),
                None => {
                    ok = false;
                    let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
                    let d = self.err(&span, format!("unknown {what} {s:?}"));
                    d.label = format!("not a {what}");
                    d.help = Some(match did_you_mean(s, names.iter().copied()) {
                        Some(m) => format!("did you mean {m:?}?"),
                        None => format!("{what} is one of {}", names.join(", ")),
                    });
                }
            }
        }
        ok.then_some(out)
    }

    fn rule(&mut self, root: &Spanned<'a>) -> Option<Rule> {
        let entries = self.table(root)?;
        let stem = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut rule = Rule {
            id: stem,
            name: String::new(),
            description: String::new(),
            enabled: true,
            schedule: None,
            timezone: None,
            priority: 0,
            audience: Condition::All(Vec::new()),
            offer: Offer::None,
            message: Message { channels: Vec::new(), templates: BTreeMap::new() },
            limits: Limits {
                holdout_ppm: 0,
                cooldown_days: None,
                max_audience: None,
                order_by: AudienceOrder { metric: Metric::Monetary, descending: true },
                on_frequency_cap: WhenBlocked::Skip,
                on_quiet_hours: WhenBlocked::Defer,
                quiet_hours: None,
            },
            path: self.path.to_path_buf(),
        };
        let mut message = None;
        let mut saw_audience = false;
        // the declared offer type, even when the offer has errors, so templates are
        // checked against it instead of cascading "unknown offer.*" errors
        let mut offer_kind: Option<&str> = Some("none");
        for e in entries {
            let v = &e.value;
            match e.key {
                "id" => {
                    if let Some(id) = self.string(v) {
                        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                            self.err(&v.span, format!("rule id {id:?} may only hold letters, digits, '-' and '_'"));
                        }
                        rule.id = id.to_string();
                    }
                }
                "name" => rule.name = self.string(v).unwrap_or_default().to_string(),
                "description" => rule.description = self.string(v).unwrap_or_default().to_string(),
                "enabled" => rule.enabled = self.boolean(v).unwrap_or(true),
                "priority" => rule.priority = self.int(v, -1_000_000, 1_000_000).unwrap_or(0) as i32,
                "schedule" => {
                    if let Some(s) = self.string(v) {
                        match Schedule::parse(s) {
                            Ok(s) => rule.schedule = Some(s),
                            Err(msg) => {
                                let d = self.err(&v.span, format!("bad cron schedule: {msg}"));
                                d.label = "here".into();
                                d.help = Some("e.g. \"0 10 * * MON\" (10:00 every Monday) or \"30 0 9 * * *\" (09:00:30 daily)".into());
                            }
                        }
                    }
                }
                "timezone" => {
                    if let Some(s) = self.string(v) {
                        match crate::domain::parse_timezone(s) {
                            Ok(tz) => rule.timezone = Some(tz),
                            Err(hint) => {
                                let d = self.err(&v.span, format!("{s:?} is not an IANA time zone"));
                                d.label = "unknown time zone".into();
                                d.help = Some(hint);
                            }
                        }
                    }
                }
                "audience" => {
                    saw_audience = true;
                    if let Some(c) = self.conditions(v, "[audience]") {
                        rule.audience = c;
                    }
                }
                "offer" => {
                    offer_kind = declared_offer_type(v);
                    if let Some(o) = self.offer(v) {
                        rule.offer = o;
                    }
                }
                "message" => message = Some(v),
                "limits" => self.limits(v, &mut rule.limits),
                _ => self.unknown_key(e, TOP_KEYS, "a rule"),
            }
        }
        if rule.name.is_empty() {
            rule.name = rule.id.clone();
        }
        if !saw_audience {
            let d = self.err(&(0..0), "the rule has no [audience]");
            d.help = Some("add an [audience] table; an empty one means every member".into());
        }
        match message {
            Some(v) => {
                if let Some(m) = self.message(v, offer_kind) {
                    rule.message = m;
                }
            }
            None => {
                let d = self.err(&(0..0), "the rule has no [message]");
                d.help = Some("add [message] with `channels = [\"email\"]` and a [message.email] template".into());
            }
        }
        Some(rule)
    }

    /// A table of conditions, all of which must hold.
    fn conditions(&mut self, v: &Spanned<'a>, context: &str) -> Option<Condition> {
        let entries = self.table(v)?;
        let mut all = Vec::new();
        let mut ok = true;
        for e in entries {
            match self.condition(e, context) {
                Some(c) => all.push(c),
                None => ok = false,
            }
        }
        ok.then_some(if all.len() == 1 { all.pop().expect("one") } else { Condition::All(all) })
    }

    fn condition(&mut self, e: &Entry<'a>, context: &str) -> Option<Condition> {
        let v = &e.value;
        if let Some(metric) = Metric::from_name(e.key) {
            return self.range(metric, v);
        }
        Some(match e.key {
            "all" | "any" => {
                let Node::Array(items) = &v.node else {
                    self.type_err(v, "an array of condition tables, like [{ stage = \"silent\" }, { orders = { min = 2 } }]");
                    return None;
                };
                let mut cs = Vec::new();
                let mut ok = true;
                for it in items {
                    match self.conditions(it, &format!("`{}`", e.key)) {
                        Some(c) => cs.push(c),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                if e.key == "all" { Condition::All(cs) } else { Condition::Any(cs) }
            }
            "not" => Condition::Not(Box::new(self.conditions(v, "`not`")?)),
            "stage" => Condition::Stage(self.names(v, &Stage::ALL.map(|s| (s.as_str(), s)), "stage")?),
            "value_tier" => Condition::ValueTier(self.names(v, &ValueTier::ALL.map(|s| (s.as_str(), s)), "value tier")?),
            "price_tier" => Condition::PriceTier(self.names(v, &Tier::ALL.map(|s| (s.as_str(), s)), "price tier")?),
            "price_sensitivity_tier" => Condition::SensitivityTier(self.names(v, &Tier::ALL.map(|s| (s.as_str(), s)), "sensitivity tier")?),
            "churn_risk" => Condition::ChurnRisk(self.names(v, &ChurnRisk::ALL.map(|s| (s.as_str(), s)), "churn risk")?),
            "repurchase_due" => Condition::RepurchaseDue(self.boolean(v)?),
            "top_category" => Condition::TopCategory(self.texts(v)?),
            "top_brand" => Condition::TopBrand(self.texts(v)?),
            "city" => Condition::City(self.texts(v)?),
            "gender" => Condition::Gender(self.names(
                v,
                &[("f", Gender::Female), ("female", Gender::Female), ("m", Gender::Male), ("male", Gender::Male), ("unknown", Gender::Unknown)],
                "gender",
            )?),
            "consent" => {
                let chans = self.strings(v)?;
                let mut ok = true;
                for (c, span) in &chans {
                    ok &= self.channel_name(c, span);
                }
                if !ok {
                    return None;
                }
                Condition::Consent(chans.into_iter().map(|(c, _)| c.to_string()).collect())
            }
            "bought" | "not_bought" => {
                let (item, within, _, _) = self.behaviour(v, e.key, false)?;
                Condition::Bought { item, within_days: within, negated: e.key == "not_bought" }
            }
            "browsed" | "favorited" | "carted" => {
                let kind = match e.key {
                    "browsed" => EventKind::View,
                    "favorited" => EventKind::Favorite,
                    _ => EventKind::Cart,
                };
                let (item, within, without_buying, span) = self.behaviour(v, e.key, true)?;
                let Some(within_days) = within else {
                    let d = self.err(&span, format!("`{}` needs `within_days`", e.key));
                    d.help = Some(format!("e.g. {} = {{ within_days = 7, without_buying = true }}", e.key));
                    return None;
                };
                Condition::Event { kind, item, within_days, without_buying }
            }
            "likely_to_buy" => self.likely_to_buy(v)?,
            _ => {
                let mut allowed: Vec<&str> = OTHER_CONDITIONS.to_vec();
                allowed.extend(BEHAVIOUR_KEYS);
                allowed.extend(Metric::ALL.iter().map(|m| m.name()));
                self.unknown_key(e, &allowed, context);
                return None;
            }
        })
    }

    fn texts(&mut self, v: &Spanned<'a>) -> Option<Vec<Text>> {
        Some(self.strings(v)?.into_iter().map(|(s, _)| Text::from(s)).collect())
    }

    fn range(&mut self, metric: Metric, v: &Spanned<'a>) -> Option<Condition> {
        let entries = match &v.node {
            Node::Table(entries) => entries,
            _ => {
                let d = self.err(&v.span, format!("expected a range for `{}`, found {}", metric.name(), v.node.type_name()));
                d.label = "not a range".into();
                d.help = Some(format!("write {} = {{ min = ..., max = ... }} (either bound may be left out)", metric.name()));
                return None;
            }
        };
        let (lo, hi) = match metric.kind() {
            MetricKind::Score => (1.0, 5.0),
            MetricKind::Rate => (0.0, 1.0),
            MetricKind::Days if metric == Metric::Age => (0.0, 150.0),
            _ => (0.0, f64::MAX),
        };
        let (mut min, mut max) = (None, None);
        let mut ok = true;
        for e in entries {
            let slot = match e.key {
                "min" => &mut min,
                "max" => &mut max,
                _ => {
                    self.unknown_key(e, &["min", "max"], &format!("the range of `{}`", metric.name()));
                    ok = false;
                    continue;
                }
            };
            let x = match metric.kind() {
                MetricKind::Money => self.money(&e.value).map(|c| c as f64),
                MetricKind::Score => self.int(&e.value, 1, 5).map(|i| i as f64),
                _ => self.number(&e.value, lo, hi),
            };
            match x {
                Some(x) => *slot = Some(x),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        match (min, max) {
            (None, None) => {
                let d = self.err(&v.span, format!("the range of `{}` has no bound", metric.name()));
                d.help = Some("give `min`, `max` or both".into());
                None
            }
            (Some(a), Some(b)) if a > b => {
                let d = self.err(&v.span, format!("impossible range for `{}`: min {} is above max {}", metric.name(), metric.show(a), metric.show(b)));
                d.label = "matches nobody".into();
                None
            }
            _ => Some(Condition::Range { metric, min, max }),
        }
    }

    /// `{ sku | category | brand, within_days, without_buying }`.
    fn behaviour(&mut self, v: &Spanned<'a>, key: &str, events: bool) -> Option<(Item, Option<u32>, bool, Span)> {
        let entries = match &v.node {
            Node::Table(e) => e,
            _ => {
                self.type_err(v, &format!("a table like {key} = {{ category = \"shoes\", within_days = 90 }}"));
                return None;
            }
        };
        let allowed: &[&str] = if events { &["sku", "category", "brand", "within_days", "without_buying"] } else { &["sku", "category", "brand", "within_days"] };
        let (mut item, mut within, mut without_buying) = (Item::Any, None, false);
        let mut ok = true;
        let mut item_key: Option<&str> = None;
        for e in entries {
            match e.key {
                "sku" | "category" | "brand" => {
                    if let Some(prev) = item_key {
                        let d = self.err(&e.key_span, format!("`{key}` names both `{prev}` and `{}`", e.key));
                        d.help = Some(format!("use one of sku, category or brand; combine several with all = [{{ {key} = ... }}, {{ {key} = ... }}]"));
                        ok = false;
                        continue;
                    }
                    item_key = Some(e.key);
                    match self.texts(&e.value) {
                        Some(list) => {
                            item = match e.key {
                                "sku" => Item::Sku(list),
                                "category" => Item::Category(list),
                                _ => Item::Brand(list),
                            }
                        }
                        None => ok = false,
                    }
                }
                "within_days" => match self.int(&e.value, 1, 36_500) {
                    Some(d) => within = Some(d as u32),
                    None => ok = false,
                },
                "without_buying" if events => match self.boolean(&e.value) {
                    Some(b) => without_buying = b,
                    None => ok = false,
                },
                _ => {
                    self.unknown_key(e, allowed, &format!("`{key}`"));
                    ok = false;
                }
            }
        }
        ok.then_some((item, within, without_buying, v.span.clone()))
    }

    fn likely_to_buy(&mut self, v: &Spanned<'a>) -> Option<Condition> {
        let entries = self.table(v)?;
        let (mut sku, mut min_score, mut scope) = (None, 0.0, Scope::Basket);
        let mut ok = true;
        for e in entries {
            match e.key {
                "sku" => sku = self.string(&e.value).map(Text::from),
                "min_score" => match self.number(&e.value, 0.0, 1.0) {
                    Some(x) => min_score = x,
                    None => ok = false,
                },
                "scope" => match self.names(&e.value, &[("basket", Scope::Basket), ("member", Scope::Member)], "scope") {
                    Some(s) if s.len() == 1 => scope = s[0],
                    _ => ok = false,
                },
                _ => {
                    self.unknown_key(e, &["sku", "min_score", "scope"], "`likely_to_buy`");
                    ok = false;
                }
            }
        }
        let Some(sku) = sku else {
            if ok {
                self.err(&v.span, "`likely_to_buy` needs the `sku` to predict").help = Some("likely_to_buy = { sku = \"SKU-1\", min_score = 0.2 }".into());
            }
            return None;
        };
        ok.then_some(Condition::LikelyToBuy { sku, min_score, scope })
    }

    /// Whether a channel name is known; warns about well-known but unconfigured ones.
    fn channel_name(&mut self, name: &str, span: &Span) -> bool {
        if self.channels.configured.iter().any(|c| c == name) {
            return true;
        }
        if WELL_KNOWN_CHANNELS.contains(&name) {
            // fine to name before a plugin serves it: `RuleSet::unconfigured_channels`
            return true;
        }
        let mut known: Vec<&str> = self.channels.configured.iter().map(|s| s.as_str()).collect();
        known.extend(WELL_KNOWN_CHANNELS);
        known.sort_unstable();
        known.dedup();
        let d = self.err(span, format!("unknown channel {name:?}"));
        d.label = "not a configured channel".into();
        d.help = Some(match did_you_mean(name, known.iter().copied()) {
            Some(s) => format!("did you mean {s:?}?"),
            None => format!("configure it as [channels.{name}] in config.toml; known channels: {}", known.join(", ")),
        });
        false
    }

    fn offer(&mut self, v: &Spanned<'a>) -> Option<Offer> {
        let entries = self.table(v)?;
        let kind_entry = entries.iter().find(|e| e.key == "type");
        let kind = match kind_entry {
            Some(e) => self.names(&e.value, &[("none", "none"), ("coupon", "coupon"), ("product", "product"), ("bundle", "bundle")], "offer type")?,
            None => {
                self.err(&v.span, "[offer] needs a `type`").help = Some("type = \"none\" | \"coupon\" | \"product\" | \"bundle\"".into());
                return None;
            }
        };
        let kind = *kind.first()?;
        let allowed: &[&str] = match kind {
            "coupon" => &["type", "code", "codes_file", "codes_warn_below", "amount", "percent", "amount_by_price_tier", "percent_by_price_tier", "min_spend", "valid_days"],
            "product" => &["type", "by_price_tier"],
            "bundle" => &["type", "scope", "min_confidence", "min_lift", "lookback_days"],
            _ => &["type"],
        };
        let mut ok = true;
        for e in entries.iter().filter(|e| !allowed.contains(&e.key)) {
            self.unknown_key(e, allowed, &format!("a `{kind}` offer"));
            ok = false;
        }
        let get = |k: &str| entries.iter().find(|e| e.key == k);
        let offer = match kind {
            "coupon" => {
                let codes = match (get("code"), get("codes_file")) {
                    (Some(e), None) => {
                        if let Some(w) = get("codes_warn_below") {
                            self.err(&w.key_span, "`codes_warn_below` goes with `codes_file`, not with a `code` pattern (which never runs out)");
                            ok = false;
                        }
                        let p = self.string(&e.value).unwrap_or("");
                        if let Err(msg) = coupon_pattern_check(p) {
                            self.err(&e.value.span, msg).help = Some("e.g. code = \"WB-{code:8}\" (8 characters derived from rule and member)".into());
                            ok = false;
                        }
                        CouponCodes::Pattern(p.to_string())
                    }
                    (None, Some(e)) => {
                        let (path, text) = self.folder_file(e, MAX_CODES_FILE)?;
                        let mut seen = std::collections::HashSet::new();
                        let lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
                        let (codes, repeated): (Vec<&str>, Vec<&str>) = lines.partition(|c| seen.insert(*c));
                        if codes.is_empty() {
                            self.err(&e.value.span, format!("{} holds no codes", path.display()));
                            return None;
                        }
                        if let Some(first) = repeated.first() {
                            let d = self.warn(&e.value.span, format!("{} lists {} codes more than once (the first: {first:?}); each is handed out once", path.display(), repeated.len()));
                            d.help = Some("a single-use code must appear once in the file".into());
                        }
                        let warn_below = match get("codes_warn_below") {
                            Some(w) => self.int(&w.value, 0, i64::from(u32::MAX))? as usize,
                            None => codes.len().div_ceil(10),
                        };
                        CouponCodes::List { path, codes: codes.into_iter().map(String::from).collect(), warn_below }
                    }
                    (Some(a), Some(_)) => {
                        self.err(&a.key_span, "a coupon has `code` or `codes_file`, not both");
                        return None;
                    }
                    (None, None) => {
                        self.err(&v.span, "a coupon needs `code` (a pattern) or `codes_file`").help =
                            Some("code = \"WB-{code:8}\" or codes_file = \"codes/winback.txt\"".into());
                        return None;
                    }
                };
                let values: Vec<&Entry> = ["amount", "percent", "amount_by_price_tier", "percent_by_price_tier"].iter().filter_map(|k| get(k)).collect();
                if values.len() != 1 {
                    let span = values.get(1).map(|e| e.key_span.clone()).unwrap_or(v.span.clone());
                    self.err(&span, "a coupon needs exactly one of `amount`, `percent`, `amount_by_price_tier`, `percent_by_price_tier`");
                    return None;
                }
                let e = values[0];
                let value = match e.key {
                    "amount" => CouponValue::Amount(self.money(&e.value)?),
                    "percent" => CouponValue::Percent(self.int(&e.value, 1, 100)? as u32),
                    "amount_by_price_tier" => CouponValue::AmountByTier(self.by_tier(&e.value, |r, v| r.money(v))?),
                    _ => CouponValue::PercentByTier(self.by_tier(&e.value, |r, v| r.int(v, 1, 100).map(|i| i as u32))?),
                };
                let min_spend = match get("min_spend") {
                    Some(e) => Some(self.money(&e.value)?),
                    None => None,
                };
                let valid_days = match get("valid_days") {
                    Some(e) => Some(self.int(&e.value, 1, 3650)? as u32),
                    None => None,
                };
                Offer::Coupon(Coupon { codes, value, min_spend, valid_days })
            }
            "product" => {
                let Some(e) = get("by_price_tier") else {
                    self.err(&v.span, "a product offer needs `by_price_tier`").help =
                        Some("by_price_tier = { high = [\"SKU-Q1\"], mid = [\"SKU-V1\"], low = [\"SKU-E1\"] }".into());
                    return None;
                };
                Offer::Product(self.by_tier(&e.value, |r, v| r.strings(v).map(|l| l.into_iter().map(|(s, _)| s.to_string()).collect()))?)
            }
            "bundle" => {
                let scope = match get("scope") {
                    Some(e) => *self.names(&e.value, &[("basket", Scope::Basket), ("member", Scope::Member)], "scope")?.first()?,
                    None => Scope::Basket,
                };
                let min_confidence = match get("min_confidence") {
                    Some(e) => self.number(&e.value, 0.0, 1.0)?,
                    None => 0.0,
                };
                let min_lift = match get("min_lift") {
                    Some(e) => self.number(&e.value, 0.0, 1e9)?,
                    None => 0.0,
                };
                let lookback_days = match get("lookback_days") {
                    Some(e) => Some(self.int(&e.value, 1, 36_500)? as u32),
                    None => None,
                };
                Offer::Bundle(BundleOffer { scope, min_confidence, min_lift, lookback_days })
            }
            _ => Offer::None,
        };
        ok.then_some(offer)
    }

    /// `{ high = ..., mid = ..., low = ... }`, all three required.
    fn by_tier<T>(&mut self, v: &Spanned<'a>, mut read: impl FnMut(&mut Self, &Spanned<'a>) -> Option<T>) -> Option<BTreeMap<Tier, T>> {
        let entries = self.table(v)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for e in entries {
            match Tier::ALL.iter().find(|t| t.as_str() == e.key) {
                Some(t) => match read(self, &e.value) {
                    Some(x) => {
                        out.insert(*t, x);
                    }
                    None => ok = false,
                },
                None => {
                    self.unknown_key(e, &["high", "mid", "low"], "a table by price tier");
                    ok = false;
                }
            }
        }
        let missing: Vec<&str> = Tier::ALL.iter().filter(|t| !out.contains_key(t)).map(|t| t.as_str()).collect();
        if ok && !missing.is_empty() {
            self.err(&v.span, format!("missing price tier {}", missing.join(", "))).help =
                Some("give high, mid and low (members without a tier get mid)".into());
            return None;
        }
        ok.then_some(out)
    }

    fn message(&mut self, v: &Spanned<'a>, offer_kind: Option<&str>) -> Option<Message> {
        let entries = self.table(v)?;
        let mut channels: Vec<(String, Span)> = Vec::new();
        let mut templates = BTreeMap::new();
        let mut tables: Vec<&Entry> = Vec::new();
        let mut ok = true;
        for e in entries {
            if e.key == "channels" {
                match self.strings(&e.value) {
                    Some(list) => {
                        for (c, span) in list {
                            ok &= self.channel_name(c, &span);
                            if channels.iter().any(|(x, _)| x == c) {
                                self.err(&span, format!("channel {c:?} is listed twice"));
                                ok = false;
                            }
                            channels.push((c.to_string(), span));
                        }
                    }
                    None => ok = false,
                }
            } else if matches!(e.value.node, Node::Table(_)) {
                tables.push(e);
            } else {
                let d = self.err(&e.key_span, format!("unknown key `{}` in [message]", e.key));
                d.help = Some("[message] holds `channels` and one table per channel, like [message.email]".into());
                ok = false;
            }
        }
        if channels.is_empty() && ok {
            self.err(&v.span, "[message] needs `channels`, in fallback order").help = Some("channels = [\"email\", \"sms\"]".into());
            return None;
        }
        for e in tables {
            if !channels.iter().any(|(c, _)| c == e.key) {
                let d = self.err(&e.key_span, format!("a template for channel {:?}, which `channels` does not list", e.key));
                d.help = Some(format!("add {:?} to `channels` or remove [message.{}]", e.key, e.key));
                ok = false;
                continue;
            }
            match self.channel_template(e, offer_kind) {
                Some(t) => {
                    templates.insert(e.key.to_string(), t);
                }
                None => ok = false,
            }
        }
        for (c, span) in &channels {
            if !templates.contains_key(c) && ok {
                let d = self.err(span, format!("channel {c:?} has no template"));
                d.help = Some(format!("add [message.{c}] with `text` (and `subject` for email)"));
                ok = false;
            }
        }
        ok.then(|| Message { channels: channels.into_iter().map(|(c, _)| c).collect(), templates })
    }

    fn channel_template(&mut self, e: &Entry<'a>, offer_kind: Option<&str>) -> Option<ChannelTemplate> {
        let entries = self.table(&e.value)?;
        let allowed = ["subject", "text", "html", "text_file", "html_file"];
        let mut parts: BTreeMap<&str, String> = BTreeMap::new();
        let mut ok = true;
        for p in entries {
            let (part, from_file) = match p.key {
                "subject" | "text" | "html" => (p.key, false),
                "text_file" => ("text", true),
                "html_file" => ("html", true),
                _ => {
                    self.unknown_key(p, &allowed, &format!("[message.{}]", e.key));
                    ok = false;
                    continue;
                }
            };
            if parts.contains_key(part) {
                self.err(&p.key_span, format!("`{part}` is given twice (inline and as a file)"));
                ok = false;
                continue;
            }
            let Some(s) = self.string(&p.value) else {
                ok = false;
                continue;
            };
            let text = if from_file {
                let Some((path, t)) = self.folder_file(p, MAX_TEMPLATE_FILE) else {
                    ok = false;
                    continue;
                };
                self.check_template_file(&path, &t, offer_kind, &p.value.span);
                t
            } else {
                let located = Located {
                    source: s,
                    file: self.file,
                    origin: template::content_origin(self.src, &p.value.span, s),
                    value_span: p.value.span.clone(),
                };
                for problem in template::check(&located, offer_kind) {
                    let d = self.err(&problem.span, problem.message);
                    d.label = "here".into();
                    d.help = problem.help;
                    ok = false;
                }
                s.to_string()
            };
            parts.insert(part, text);
        }
        let Some(text) = parts.remove("text") else {
            if ok {
                self.err(&e.key_span, format!("[message.{}] needs `text` (or `text_file`)", e.key));
            }
            return None;
        };
        ok.then(|| ChannelTemplate { subject: parts.remove("subject"), text, html: parts.remove("html") })
    }

    /// The file a key such as `text_file` names, read: a relative path that stays inside
    /// the rule file's folder, lexically (no `..` above it) and once symbolic links are
    /// resolved, naming a regular file of at most `max_bytes`.
    fn folder_file(&mut self, e: &Entry<'a>, max_bytes: u64) -> Option<(PathBuf, String)> {
        let rel = self.string(&e.value)?;
        let folder = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let path = folder.join(rel);
        let outside = |r: &mut Self, why: String| {
            let d = r.err(&e.value.span, format!("`{}` must name a file inside the rules folder: {why}", e.key));
            d.label = "outside the rules folder".into();
            d.help = Some("template and code files live beside the rule file or in a folder below it; the path is relative to the rule file".into());
        };
        if Path::new(rel).has_root() || Path::new(rel).is_absolute() {
            outside(self, format!("{rel:?} is an absolute path"));
            return None;
        }
        if !stays_below(Path::new(rel)) {
            outside(self, format!("{rel:?} climbs out of it with `..`"));
            return None;
        }
        let canonical = folder.canonicalize().and_then(|f| Ok((f, path.canonicalize()?)));
        let (folder_real, real) = match canonical {
            Ok(pair) => pair,
            Err(err) => {
                self.err(&e.value.span, format!("cannot read {}: {err}", path.display())).help = Some("the path is relative to the rule file".into());
                return None;
            }
        };
        if !real.starts_with(&folder_real) {
            outside(self, format!("{rel:?} is a symbolic link (or passes through one) to {}", real.display()));
            return None;
        }
        let read = read_capped(&real, max_bytes);
        match read {
            Ok(text) => Some((path, text)),
            Err(err) => {
                self.err(&e.value.span, format!("cannot read {}: {err}", path.display())).help = Some("the path is relative to the rule file".into());
                None
            }
        }
    }

    /// Template files are checked in their own file; problems are reported against the
    /// rule's key that names the file, with the template file's line.
    fn check_template_file(&mut self, path: &Path, text: &str, offer_kind: Option<&str>, key_span: &Span) {
        let located = Located { source: text, file: self.file, origin: None, value_span: key_span.clone() };
        for problem in template::check(&located, offer_kind) {
            let d = self.err(key_span, format!("{}: {}", path.display(), problem.message));
            d.help = problem.help;
        }
    }

    fn limits(&mut self, v: &Spanned<'a>, limits: &mut Limits) {
        let Some(entries) = self.table(v) else { return };
        let allowed = ["holdout_percent", "cooldown_days", "max_audience", "order_by", "on_frequency_cap", "on_quiet_hours", "quiet_hours"];
        let when = [("skip", WhenBlocked::Skip), ("defer", WhenBlocked::Defer)];
        for e in entries {
            let v = &e.value;
            match e.key {
                "holdout_percent" => {
                    if let Some(x) = self.number(v, 0.0, 99.0) {
                        limits.holdout_ppm = (x * 10_000.0).round() as u32;
                    }
                }
                "cooldown_days" => limits.cooldown_days = self.int(v, 0, 3650).map(|d| d as u32),
                "max_audience" => limits.max_audience = self.int(v, 1, i64::from(u32::MAX)).map(|n| n as usize),
                "order_by" => {
                    if let Some(s) = self.string(v) {
                        let mut words = s.split_whitespace();
                        let metric = words.next().and_then(Metric::from_name);
                        let dir = words.next();
                        match (metric, dir, words.next()) {
                            (Some(metric), None | Some("asc" | "desc"), None) => {
                                limits.order_by = AudienceOrder { metric, descending: dir != Some("asc") };
                            }
                            _ => {
                                let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                                let d = self.err(&v.span, format!("bad order {s:?}"));
                                d.help = Some(format!("write \"<metric> desc\" or \"<metric> asc\"; metrics: {}", names.join(", ")));
                            }
                        }
                    }
                }
                "on_frequency_cap" => {
                    if let Some(w) = self.names(v, &when, "choice") {
                        limits.on_frequency_cap = w[0];
                    }
                }
                "on_quiet_hours" => {
                    if let Some(w) = self.names(v, &when, "choice") {
                        limits.on_quiet_hours = w[0];
                    }
                }
                "quiet_hours" => match &v.node {
                    Node::Bool(false) => limits.quiet_hours = Some(None),
                    Node::Table(_) => {
                        let Some(entries) = self.table(v) else { continue };
                        let get = |k: &str| entries.iter().find(|e| e.key == k);
                        for x in entries.iter().filter(|x| x.key != "start" && x.key != "end") {
                            self.unknown_key(x, &["start", "end"], "`quiet_hours`");
                        }
                        match (get("start"), get("end")) {
                            (Some(a), Some(b)) => {
                                if let (Some(a), Some(b)) = (self.string(&a.value), self.string(&b.value)) {
                                    match QuietHours::parse(a, b) {
                                        Ok(q) => limits.quiet_hours = Some(Some(q)),
                                        Err(msg) => {
                                            self.err(&v.span, msg);
                                        }
                                    }
                                }
                            }
                            _ => {
                                self.err(&v.span, "quiet_hours needs `start` and `end`").help = Some("quiet_hours = { start = \"21:00\", end = \"09:00\" }, or false".into());
                            }
                        }
                    }
                    _ => self.type_err(v, "a table { start = \"21:00\", end = \"09:00\" } or false"),
                },
                _ => self.unknown_key(e, &allowed, "[limits]"),
            }
        }
    }
}

/// The largest template file (`text_file`, `html_file`) read.
const MAX_TEMPLATE_FILE: u64 = 1 << 20;
/// The largest `codes_file` read (about a million codes).
const MAX_CODES_FILE: u64 = 32 << 20;

/// Whether a relative path never climbs above its start (`a/../b` does not, `a/../../b`
/// does).
fn stays_below(rel: &Path) -> bool {
    let mut depth = 0usize;
    for c in rel.components() {
        match c {
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if depth > 0 => depth -= 1,
            _ => return false,
        }
    }
    true
}

/// The `type` of an `[offer]` table when it names a known offer type.
fn declared_offer_type(v: &Spanned) -> Option<&'static str> {
    let Node::Table(entries) = &v.node else { return None };
    match entries.iter().find(|e| e.key == "type").map(|e| &e.value.node) {
        Some(Node::Str(t)) => ["none", "coupon", "product", "bundle"].into_iter().find(|k| k == t),
        _ => None,
    }
}

/// A coupon pattern: literal text with at most one `{code:N}` placeholder (4 <= N <= 32).
pub(crate) fn coupon_pattern_check(p: &str) -> Result<(), String> {
    let mut rest = p;
    let mut holes = 0;
    while let Some(i) = rest.find('{') {
        let close = rest[i..].find('}').ok_or("an unclosed `{` in the code pattern")?;
        let inner = &rest[i + 1..i + close];
        let n = inner.strip_prefix("code:").and_then(|n| n.parse::<u32>().ok()).ok_or(format!("unknown placeholder {{{inner}}}; only {{code:N}} is known"))?;
        if !(4..=32).contains(&n) {
            return Err(format!("{{code:{n}}}: N must be between 4 and 32"));
        }
        holes += 1;
        rest = &rest[i + close + 1..];
    }
    if holes > 1 {
        return Err("a code pattern has at most one {code:N}".into());
    }
    if p.trim().is_empty() {
        return Err("an empty code".into());
    }
    Ok(())
}
