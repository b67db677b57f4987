//! Message templates in minijinja (Jinja syntax): the static check `rules check` runs
//! (syntax errors and unknown variables, with their position in the rule file) and the
//! rendering of one member's message.
//!
//! Variables: `member.*` (the member's record), `profile.*` (every `profiles export`
//! column), `offer.*` (by offer kind), `rule.id`, `rule.name` and `unsubscribe_url`.

use super::tree::Span;
use serde::Serialize;

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

/// Checks syntax and every variable the template reads.
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

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

/// Compiled templates of every rule, rendered many times per run.
pub struct Renderer {
    env: minijinja::Environment<'static>,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rendered {
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

impl Renderer {
    pub fn new(rules: &[super::Rule]) -> Result<Renderer, minijinja::Error> {
        let mut env = environment();
        for rule in rules {
            for (channel, t) in &rule.message.templates {
                let base = format!("{}/{channel}", rule.id);
                env.add_template_owned(format!("{base}/text"), t.text.clone())?;
                if let Some(s) = &t.subject {
                    env.add_template_owned(format!("{base}/subject"), s.clone())?;
                }
                if let Some(h) = &t.html {
                    env.add_template_owned(format!("{base}/html"), h.clone())?;
                }
            }
        }
        Ok(Renderer { env })
    }

    /// Renders a rule's message for one channel.
    pub fn render(&self, rule: &str, channel: &str, ctx: &minijinja::Value) -> Result<Rendered, minijinja::Error> {
        let part = |name: &str| -> Result<Option<String>, minijinja::Error> {
            match self.env.get_template(&format!("{rule}/{channel}/{name}")) {
                Ok(t) => t.render(ctx).map(Some),
                Err(e) if e.kind() == minijinja::ErrorKind::TemplateNotFound => Ok(None),
                Err(e) => Err(e),
            }
        };
        Ok(Rendered { subject: part("subject")?, text: part("text")?.unwrap_or_default(), html: part("html")? })
    }
}
