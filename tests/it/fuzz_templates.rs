//! Fuzzing message templates (issue 14, items 8 and 11): mutations of the shipped rules'
//! templates and random Jinja built from a grammar go through `rules check` (the
//! template check alone, and inside a rule file through the reader and the diagnostic
//! renderer) and through the renderer with a sample member. Nothing may panic or hang
//! (every render is bounded by the budget of `rules::render`), and every failure is a
//! clear error: a message, and for the check a span inside the file. The long test runs
//! thousands of cases, including the slow constructs.

use crate::support::Rng;
use crate::support::repo_path;
use proptest::prelude::*;
use rekindle::rules::render::{Renderer, MAX_PART_BYTES};
use rekindle::rules::template::{check, sample_variables, Located};
use rekindle::rules::{self, ChannelNames, RuleSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// A hang guard, not a benchmark: one case renders a template three times at most (the
/// check, the check inside the rule file, the renderer), each within a 200 ms deadline.
const CASE_LIMIT: Duration = Duration::from_secs(5);

/// Every template of the shipped rules, with its rule's offer kind.
fn seeds() -> Vec<(String, &'static str)> {
    let set = rules::load(&repo_path("rules"), &ChannelNames { configured: vec!["email".into(), "sms".into(), "shop".into()] }).unwrap();
    let mut out = Vec::new();
    for r in &set.rules {
        for t in r.message.templates.values() {
            for part in [t.subject.as_ref(), Some(&t.text), t.html.as_ref()].into_iter().flatten() {
                out.push((part.clone(), r.offer.kind()));
            }
        }
    }
    assert!(out.len() >= 20, "{}", out.len());
    out
}

const VARS: &[&str] = &[
    "member.name", "member.id", "member.city", "member.age", "profile.orders", "profile.monetary", "profile.top_category", "profile.p_alive",
    "offer.code", "offer.value", "offer.kind", "rule.name", "unsubscribe_url", "x", "loop.index", "nosuch", "member.nosuch", "member",
];
const LITERALS: &[&str] = &["1", "0", "-1", "10**9", "2**62", "'a'", "\"退订\"", "[]", "[1, 2, 3]", "{'a': 1}", "none", "true", "1.5", "'x' * 1000", "(1, 2)", "''"];
const OPS: &[&str] = &["+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">=", "and", "or", "in", "not in"];
const FILTERS: &[&str] = &[
    "upper", "lower", "title", "capitalize", "length", "join(',')", "default('z')", "replace('a', 'bb')", "first", "last", "reverse", "sort", "unique", "trim",
    "int", "float", "string", "list", "batch(2)", "slice(2)", "wordcount", "indent(2)", "escape", "safe", "round", "abs", "items", "dictsort", "tojson",
    "nosuchfilter", "attr('name')", "map('upper')", "select", "reject", "sum", "min", "max", "bool", "pprint", "urlencode", "format(1)", "center(9)",
];
const TESTS: &[&str] = &["defined", "undefined", "none", "number", "string", "odd", "even", "lower", "upper", "startingwith('a')", "in([1])", "sequence", "mapping"];
/// Spliced into seeds: Jinja delimiters, constructs that run away, broken fragments.
const TOKENS: &[&str] = &[
    "{{", "}}", "{%", "%}", "{#", "#}", "{{ member.name }}", "{% for x in member.name %}", "{% endfor %}", "{% if member.age > 30 %}", "{% else %}", "{% endif %}",
    "{{ member.name * 1000 }}", "{% set s = namespace(v='x') %}", "{% raw %}", "{% endraw %}", "|upper", "|join(',')",
    "(((((", "[[[[", "]]", "'", "\"", "~", "**", "10**9", "é", "退订", "\0", "\r\n", "{{ offer.code|nosuchfilter }}", "{% include 'x' %}",
    "{% extends 'base' %}", "{% block b %}", "{% endblock %}", "{{ range(10**9)|length }}", "{% filter upper %}", "{% endfilter %}", "loop.", ".__class__",
];
/// Constructs that run away (fuel, the size cap or the recursion limit stop them).
const RUNAWAY: &[&str] = &[
    "{% for x in member.name * 50 %}{% for y in member.name * 50 %}{{ x }}{{ y }}{% endfor %}{% endfor %}",
    "{% for a in member.name %}{% for b in member.name %}{% for c in member.name %}{% for d in member.name %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
    "{{ 'x' * 10**9 }}", "{{ member.name * 100000 }}", "{% for c in member.name %}{{ member.name * 300 }}{% endfor %}",
    "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}", "{% macro w(n) %}{{ w(n) }}{{ w(n) }}{% endmacro %}{{ w(0) }}",
    "{{ (member.name ~ member.name ~ member.name) * 5000 }}", "{% for x in member.name * 3000 %}{{ member|string }}{% endfor %}",
];
/// Constructs whose cost fuel undercounts (stopped by the deadline or fuel, 0.1-0.5 s each):
/// only in the long test.
const SLOW: &[&str] = &[
    "{% set s = 'a' * 300000 %}{% for c in member.name * 1000 %}{% if s is lower %}{% endif %}{% endfor %}",
    "{% set s = '张' * 100000 %}{% for c in member.name * 1000 %}{{ s[-1] }}{% endfor %}",
];

fn expr(rng: &mut Rng, depth: usize) -> String {
    match if depth == 0 { rng.below(2) } else { rng.below(7) } {
        0 => rng.pick(VARS).to_string(),
        1 => rng.pick(LITERALS).to_string(),
        2 => format!("{} {} {}", expr(rng, depth - 1), rng.pick(OPS), expr(rng, depth - 1)),
        3 => format!("{}|{}", expr(rng, depth - 1), rng.pick(FILTERS)),
        4 => format!("{} is {}", expr(rng, depth - 1), rng.pick(TESTS)),
        5 => format!("({})", expr(rng, depth - 1)),
        _ => format!("{}[{}]", expr(rng, depth - 1), expr(rng, depth - 1)),
    }
}

/// A random template from the grammar (often invalid: unbalanced blocks, unknown names).
fn template(rng: &mut Rng, depth: usize) -> String {
    let mut out = String::new();
    for _ in 0..1 + rng.below(4) {
        let body = |rng: &mut Rng| if depth == 0 { "t".to_string() } else { template(rng, depth - 1) };
        let piece = match rng.below(10) {
            0 => "您好 text, ".to_string(),
            1 | 2 => format!("{{{{ {} }}}}", expr(rng, 2)),
            3 => format!("{{% if {} %}}{}{{% else %}}{}{{% endif %}}", expr(rng, 2), body(rng), body(rng)),
            4 => format!("{{% for x in {} %}}{}{{% endfor %}}", expr(rng, 2), body(rng)),
            5 => format!("{{% set v = {} %}}{{{{ v }}}}", expr(rng, 2)),
            6 => format!("{{% macro m(a) %}}{}{{% endmacro %}}{{{{ m({}) }}}}", body(rng), expr(rng, 1)),
            7 => format!("{{% filter {} %}}{}{{% endfilter %}}", rng.pick(&["upper", "lower", "trim", "nosuch"]), body(rng)),
            8 => format!("{{# {} #}}", expr(rng, 1)),
            9 if rng.below(3) == 0 => rng.pick(RUNAWAY).to_string(),
            _ => rng.pick(TOKENS).to_string(),
        };
        out.push_str(&piece);
    }
    out
}

/// A seed with a few characters flipped, deleted, repeated or replaced by tokens.
fn mutate(seed: &str, rng: &mut Rng, tokens: &[&str]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(5) {
            0 => chars.splice(at..at, rng.pick(tokens).chars()).for_each(drop),
            1 if at < chars.len() => chars.drain(at..(at + 1 + rng.below(8)).min(chars.len())).for_each(drop),
            2 if at < chars.len() => {
                let span: Vec<char> = chars[at..(at + 1 + rng.below(24)).min(chars.len())].to_vec();
                chars.splice(at..at, span.iter().copied().cycle().take(span.len() * (1 + rng.below(6)))).for_each(drop);
            }
            3 => {
                let fragment = if rng.below(2) == 0 { template(rng, 1) } else { rng.pick(RUNAWAY).to_string() };
                chars.splice(at..at, fragment.chars()).for_each(drop);
            }
            _ => chars.truncate(at),
        }
    }
    chars.into_iter().collect()
}

/// Runs one template source through the check, a rule file and the renderer.
fn exercise(source: &str, offer_kind: &'static str, as_literal: bool) {
    let started = Instant::now();
    // the check alone, the template as a whole file
    let located = Located { source, file: 0, origin: Some(0), value_span: 0..source.len() };
    for p in check(&located, Some(offer_kind)) {
        assert!(!p.message.trim().is_empty(), "a problem without a message: {source:?}");
        assert!(p.span.start <= p.span.end && p.span.end <= source.len() + 1, "span {:?} outside {source:?}", p.span);
    }
    // inside a rule file: the reader, then every diagnostic rendered with its snippet
    let value = if as_literal && !source.contains("'''") { format!("'''{source}'''") } else { toml_edit::Value::from(source).to_string() };
    let offer = match offer_kind {
        "coupon" => "[offer]\ntype = \"coupon\"\ncode = \"WB-{code:8}\"\namount = 5\n",
        "product" => "[offer]\ntype = \"product\"\nby_price_tier = { high = [\"A\"], mid = [\"B\"], low = [\"C\"] }\n",
        "bundle" => "[offer]\ntype = \"bundle\"\n",
        _ => "",
    };
    let text = format!("[audience]\n{offer}[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = {value}\n");
    let mut set = RuleSet { rules: vec![], diagnostics: vec![], sources: Default::default(), failed: vec![] };
    rules::add_file(&mut set, Path::new("fuzz.toml"), text, &ChannelNames { configured: vec!["shop".into()] });
    for d in &set.diagnostics {
        let one = set.sources.one_line(d);
        assert!(one.starts_with("fuzz.toml:") && !d.message.trim().is_empty(), "{one}");
        assert!(set.sources.render(d).contains("fuzz.toml"), "{one}");
    }
    // the renderer, whether the check passed or not
    let mut set = RuleSet { rules: vec![], diagnostics: vec![], sources: Default::default(), failed: vec![] };
    let valid = format!("[audience]\n{offer}[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"x\"\n");
    rules::add_file(&mut set, Path::new("fuzz.toml"), valid, &ChannelNames { configured: vec!["shop".into()] });
    let mut rule = set.rules.pop().expect("the frame rule is valid");
    rule.message.templates.get_mut("shop").unwrap().text = source.to_string();
    match Renderer::new(std::slice::from_ref(&rule)) {
        Err(e) => assert!(!e.to_string().trim().is_empty()),
        Ok(renderer) => match renderer.render(&rule.id, "shop", sample_variables(Some(offer_kind))) {
            Ok(r) => assert!(r.text.len() <= MAX_PART_BYTES),
            Err(e) => assert!(!e.to_string().trim().is_empty(), "{source:?}"),
        },
    }
    assert!(started.elapsed() < CASE_LIMIT, "{:?} for {source:?}", started.elapsed());
}

#[test]
fn every_shipped_template_passes_the_check_and_renders() {
    for (source, kind) in seeds() {
        let located = Located { source: &source, file: 0, origin: Some(0), value_span: 0..source.len() };
        assert!(check(&located, Some(kind)).is_empty(), "{source}");
        exercise(&source, kind, true);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_shipped_templates_fail_cleanly(seed in 0usize..64, salt in any::<u64>(), literal in any::<bool>()) {
        let seeds = seeds();
        let (source, kind) = &seeds[seed % seeds.len()];
        let mut rng = Rng(salt);
        exercise(&mutate(source, &mut rng, TOKENS), kind, literal);
    }

    #[test]
    fn random_jinja_fails_cleanly(salt in any::<u64>(), kind in prop::sample::select(vec!["none", "coupon", "product", "bundle"])) {
        let mut rng = Rng(salt);
        exercise(&template(&mut rng, 3), kind, salt % 2 == 0);
    }

    #[test]
    fn arbitrary_text_fails_cleanly(source in "[{}%#a-z .|()'\"~*0-9\\[\\]=é退]{0,300}") {
        exercise(&source, "none", false);
    }
}

#[test]
#[ignore = "long: scripts/test.sh --long"]
fn thousands_of_mutated_and_random_templates_with_the_slow_constructs() {
    let salt = std::env::var("REKINDLE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_260_101);
    println!("seed {salt} (REKINDLE_FUZZ_SEED replays it)");
    let mut rng = Rng(salt);
    let seeds = seeds();
    let tokens: Vec<&str> = TOKENS.iter().chain(SLOW).copied().collect();
    for i in 0..10_000 {
        let (source, kind) = &seeds[i % seeds.len()];
        let source = if i % 3 == 0 { template(&mut rng, 4) } else { mutate(source, &mut rng, &tokens) };
        exercise(&source, kind, i % 2 == 0);
    }
}
