//! Message templates in minijinja (Jinja syntax): the variables a message gets, and the
//! static check `rules check` runs: syntax errors, unknown variables, and one render for
//! a sample member within the budget of [`super::render`], each with its position in
//! the rule file.
//!
//! Variables: `member.*` (the member's record), `profile.*` (every `profiles export`
//! column), `offer.*` (by offer kind), `rule.id`, `rule.name` and `unsubscribe_url`.

use super::render::{environment, Renderer};
use super::tree::Span;
use serde_json::{json, Map, Value};

/// The parts of one channel's message, each a template.
#[derive(Debug, Clone)]
pub struct ChannelTemplate {
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

/// A template's source and where it sits in its file, for diagnostics.
pub struct Located<'a> {
    pub source: &'a str,
    pub file: usize,
    /// File offset of the template's first character, when template offsets map 1:1
    /// onto the file (literal strings, strings without escapes, template files).
    pub origin: Option<usize>,
    /// The whole value, when offsets do not map.
    pub value_span: Span,
}

impl Located<'_> {
    fn span(&self, range: Option<std::ops::Range<usize>>) -> Span {
        match (self.origin, range) {
            (Some(o), Some(r)) => o + r.start..o + r.end.max(r.start + 1),
            _ => self.value_span.clone(),
        }
    }
}

/// Where a string value's content starts in the file, when it maps 1:1.
pub fn content_origin(src: &str, span: &Span, decoded: &str) -> Option<usize> {
    let raw = src.get(span.clone())?;
    for delim in ["\"\"\"", "'''", "\"", "'"] {
        if let Some(inner) = raw.strip_prefix(delim).and_then(|r| r.strip_suffix(delim)) {
            let (inner, skip) = match delim.len() {
                3 if inner.starts_with("\r\n") => (&inner[2..], 2),
                3 if inner.starts_with('\n') => (&inner[1..], 1),
                _ => (inner, 0),
            };
            return (delim.starts_with('\'') || inner == decoded).then_some(span.start + delim.len() + skip);
        }
    }
    None
}

const MEMBER_FIELDS: [&str; 8] = ["id", "name", "email", "phone", "city", "gender", "age", "tz"];
const RULE_FIELDS: [&str; 2] = ["id", "name"];

/// The `offer.*` fields of an offer kind.
pub fn offer_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "coupon" => &["kind", "code", "value", "amount", "percent", "min_spend", "valid_until"],
        "product" => &["kind", "sku", "name", "url", "price"],
        "bundle" => &["kind", "sku", "name", "url", "price", "antecedent", "antecedent_name", "antecedent_url", "support", "confidence", "lift"],
        _ => &["kind"],
    }
}

/// A problem in a template: message, span, hint.
pub struct TemplateProblem {
    pub message: String,
    pub span: Span,
    pub help: Option<String>,
}

/// The variables of one message. Member, profile and offer are converted once per
/// message ([`value`]) and shared by its channels.
pub fn variables(member: &minijinja::Value, profile: &minijinja::Value, offer: &minijinja::Value, rule: (&str, &str), unsubscribe_url: String) -> minijinja::Value {
    minijinja::context! {
        member => member,
        profile => profile,
        offer => offer,
        rule => minijinja::context! { id => rule.0, name => rule.1 },
        unsubscribe_url => unsubscribe_url,
    }
}

/// A template value of anything serde can serialize (converted now, once).
pub fn value(v: impl serde::Serialize) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(v))
}

/// The variables of a sample member, at the long end of real values, with every field of
/// an offer of `offer_kind` (`rules check` renders each template once with them).
pub fn sample_variables(offer_kind: Option<&str>) -> minijinja::Value {
    use crate::profile::{Metrics, Profile, Stage, Tier, ValueTier};
    use crate::store::model::Gender;
    let name = "欧阳 Alexandra Montgomery-Smith";
    let member = json!({
        "id": "m-2024-000000123456", "name": name, "email": "alexandra.montgomery-smith@example.com",
        "phone": "+8613800138000", "city": "乌鲁木齐 Ürümqi", "gender": "female", "age": 42, "tz": "Asia/Shanghai",
    });
    let metrics = Metrics {
        orders: 37,
        monetary: 1_234_567,
        first_order: Some(19_000),
        last_order: Some(20_200),
        recency_days: Some(200),
        stage: Stage::Sleeping,
        interval_median_x2: Some(91),
        repurchase_due: true,
        discounted_orders: 12,
        top_category: Some("Tea & Teaware / Gift Sets".into()),
        top_brand: Some("Montgomery Heritage Tea Company".into()),
        age: Some(42),
        gender: Gender::Female,
        consent_email: true,
        consent_sms: true,
    };
    let prediction = crate::predict::MemberPrediction {
        p_alive: 0.4321,
        expected_purchases: 1.2345,
        expected_spend_cents: 45_678,
        predicted_value_cents: 56_789,
        churn_risk: crate::predict::ChurnRisk::Medium,
    };
    let profile = Profile {
        metrics,
        r: Some(2),
        f: Some(4),
        m: Some(5),
        value_tier: Some(ValueTier::AtRisk),
        price_tier: Some(Tier::High),
        sensitivity_tier: Some(Tier::Mid),
        prediction: Some(prediction),
    };
    let mut offer = Map::new();
    for field in offer_kind.map_or(&[][..], offer_fields) {
        let value: Value = match *field {
            "kind" => offer_kind.unwrap_or("none").into(),
            "percent" => 15.into(),
            "support" | "confidence" | "lift" => 0.4567.into(),
            "value" | "amount" | "min_spend" | "price" => "1299.90".into(),
            "valid_until" => "2026-12-31".into(),
            "url" | "antecedent_url" => "https://shop.example/products/montgomery-heritage-oolong-gift-set-250g".into(),
            _ => "MONTGOMERY-HERITAGE-OOLONG-GIFT-SET-250G".into(),
        };
        offer.insert(field.to_string(), value);
    }
    let url = format!("https://shop.example/u/{}", "A".repeat(120));
    let profile = crate::population::profile_json("m-2024-000000123456", &profile);
    variables(&value(member), &value(profile), &value(offer), ("sample-rule", name), url)
}

/// Checks syntax and every variable the template reads, then renders it once for a
/// sample member within the render budget.
/// `offer_kind` None: the offer is broken (already reported); its fields are not checked.
pub fn check(t: &Located, offer_kind: Option<&str>) -> Vec<TemplateProblem> {
    let env = environment();
    let tpl = match env.template_from_str(t.source) {
        Ok(tpl) => tpl,
        Err(e) => {
            return vec![TemplateProblem {
                message: format!("template syntax error: {}", e.detail().unwrap_or("invalid template")),
                span: t.span(e.range()),
                help: Some("templates use Jinja syntax: {{ member.name }}, {% if ... %}...{% endif %}".into()),
            }]
        }
    };
    let mut vars: Vec<String> = tpl.undeclared_variables(true).into_iter().collect();
    vars.sort();
    let profile: Vec<&str> = crate::population::column_names().filter(|c| *c != "member_id").collect();
    let mut out = Vec::new();
    for var in vars {
        let (root, field) = match var.split_once('.') {
            Some((r, f)) => (r, Some(f)),
            None => (var.as_str(), None),
        };
        let fields: Option<&[&str]> = match root {
            "member" => Some(&MEMBER_FIELDS),
            "rule" => Some(&RULE_FIELDS),
            "offer" => offer_kind.map(offer_fields),
            "profile" => Some(&profile),
            "unsubscribe_url" => None,
            _ => {
                let roots = ["member", "profile", "offer", "rule", "unsubscribe_url"];
                out.push(TemplateProblem {
                    message: format!("unknown template variable `{root}`"),
                    span: t.span(find_var(t.source, &var)),
                    help: Some(match super::diagnostic::did_you_mean(root, roots) {
                        Some(s) => format!("did you mean `{s}`? variables are {}", roots.join(", ")),
                        None => format!("variables are {}", roots.join(", ")),
                    }),
                });
                continue;
            }
        };
        if let (Some(fields), Some(field)) = (fields, field) {
            if !fields.contains(&field) {
                let what = match offer_kind {
                    Some(kind) if root == "offer" => format!(" of a `{kind}` offer"),
                    _ => String::new(),
                };
                out.push(TemplateProblem {
                    message: format!("unknown template variable `{var}`"),
                    span: t.span(find_var(t.source, &var)),
                    help: Some(match super::diagnostic::did_you_mean(field, fields.iter().copied()) {
                        Some(s) => format!("did you mean `{root}.{s}`?"),
                        None => format!("the fields of `{root}`{what} are {}", fields.join(", ")),
                    }),
                });
            }
        }
    }
    if out.is_empty() {
        // a budget a sample member already exceeds is seen here, not on every member of a run
        if let Err(e) = Renderer::render_source(t.source, sample_variables(offer_kind)) {
            out.push(TemplateProblem {
                message: format!("rendering for a sample member fails: {e}"),
                span: t.span(e.range.clone()),
                help: Some(if e.over_budget() {
                    "templates run within a budget of time, work and size per message; loop over less, build shorter strings".into()
                } else {
                    "rules check renders every template once for a sample member with every variable set (RULES.md, Templates)".into()
                }),
            });
        }
    }
    out
}

/// The first place the dotted path `var` is read in the template source.
fn find_var(source: &str, var: &str) -> Option<std::ops::Range<usize>> {
    let mut from = 0;
    while let Some(i) = source[from..].find(var) {
        let at = from + i;
        let before = source[..at].chars().next_back();
        let after = source[at + var.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
        if !ident(before) && !ident(after) {
            return Some(at..at + var.len());
        }
        from = at + var.len();
    }
    None
}
