//! Rules: diagnostics for a corpus of broken files (snapshots), isolation of broken
//! files, the shipped example rules previewed on generated data, and the planner's
//! limits: holdout, frequency cap, cooldown, priority, quiet hours, audience size.

use crate::support::{repo_path, sample_store};
use rekindle::config::Config;
use rekindle::domain::{parse_date, Day};
use rekindle::plan::{plan, Fate, MemberBase, PlanSettings, Profiles};
use rekindle::profile::{Stage, Tier};
use rekindle::rules::{self, ChannelNames, Rule, RuleSet};
use rekindle::store::model::Contact;
use std::path::Path;

fn channels() -> ChannelNames {
    ChannelNames { configured: vec!["email".into(), "sms".into(), "shop".into()] }
}

fn load(path: &Path) -> RuleSet {
    rules::load(path, &channels()).expect("read rules")
}

/// Rule text from a string, as if read from `rules/<id>.toml`.
fn rule(id: &str, text: &str) -> Rule {
    let mut set = RuleSet { rules: vec![], diagnostics: vec![], sources: Default::default(), failed: vec![] };
    rules::add_file(&mut set, &Path::new("rules").join(format!("{id}.toml")), text.to_string(), &channels());
    let rendered: Vec<String> = set.diagnostics.iter().map(|d| set.sources.render(d)).collect();
    assert!(set.errors() == 0, "{}", rendered.join("\n"));
    set.rules.pop().expect("one rule")
}

#[test]
fn broken_rule_files_get_precise_diagnostics() {
    let dir = repo_path("tests/it/fixtures/broken-rules");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 10);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut set = RuleSet { rules: vec![], diagnostics: vec![], sources: Default::default(), failed: vec![] };
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        rules::add_file(&mut set, Path::new(&name), text, &channels());
        assert!(set.errors() > 0, "{name} should not pass");
        assert!(set.rules.is_empty(), "{name}: a file with errors yields no rule");
        let report: String = set.diagnostics.iter().map(|d| format!("{}\n{}\n", set.sources.one_line(d), set.sources.render(d))).collect();
        insta::assert_snapshot!(name.trim_end_matches(".toml").to_string(), report);
    }
}

#[test]
fn a_broken_file_never_takes_down_the_valid_rules() {
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(repo_path("rules")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let good = load(dir.path()).rules.len();
    std::fs::copy(repo_path("tests/it/fixtures/broken-rules/invalid-toml.toml"), dir.path().join("zz-broken.toml")).unwrap();
    std::fs::copy(repo_path("tests/it/fixtures/broken-rules/template-syntax.toml"), dir.path().join("aa-broken.toml")).unwrap();
    let set = load(dir.path());
    assert_eq!(set.rules.len(), good, "every valid rule is still loaded");
    assert_eq!(set.failed.len(), 2);
    // a second file claiming an existing id is refused, the first keeps working
    std::fs::write(dir.path().join("zzz-dup.toml"), "id = \"silent-reminder\"\n[audience]\n[message]\nchannels = [\"sms\"]\n[message.sms]\ntext = \"x\"\n").unwrap();
    let set = load(dir.path());
    assert_eq!(set.rules.len(), good);
    assert!(set.diagnostics.iter().any(|d| d.message.contains("already used")));
    // files that cannot be read as text fail alone (they took the folder, and the
    // daemon's reload, down): not UTF-8, a FIFO (which would block an open), too large
    std::fs::write(dir.path().join("latin1.toml"), b"name = \"caf\xe9\"\n").unwrap();
    assert!(std::process::Command::new("mkfifo").arg(dir.path().join("fifo.toml")).status().unwrap().success());
    std::fs::write(dir.path().join("huge.toml"), format!("# {}\n", "x".repeat(5 << 20))).unwrap();
    let set = load(dir.path());
    assert_eq!(set.rules.len(), good);
    for (file, why) in [("latin1.toml", "valid UTF-8"), ("fifo.toml", "not a regular file"), ("huge.toml", "larger than the limit")] {
        assert!(set.diagnostics.iter().any(|d| set.sources.name(d.file).ends_with(file) && d.message.contains(why)), "{file}: {:?}", set.diagnostics);
    }
}

#[test]
fn template_and_code_files_are_read_only_inside_the_rules_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, outside) = (dir.path().join("rules"), dir.path().join("outside"));
    std::fs::create_dir_all(rules.join("templates")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(rules.join("templates/ok.txt"), "hello {{ member.name }}\n").unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", rules.join("link-out.txt")).unwrap();
    std::os::unix::fs::symlink("../outside", rules.join("dir-out")).unwrap();
    std::os::unix::fs::symlink("templates/ok.txt", rules.join("link-in.txt")).unwrap();
    std::fs::write(rules.join("big.txt"), "x".repeat((1 << 20) + 1)).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(rules.join("fifo.txt")).status().unwrap().success());
    // (text_file, the error, or None when the file is read)
    let cases: &[(&str, Option<&str>)] = &[
        ("templates/ok.txt", None),
        ("./templates/../templates/ok.txt", None),
        ("link-in.txt", None),
        ("link-out.txt", Some("is a symbolic link (or passes through one) to")),
        ("dir-out/secret.txt", Some("is a symbolic link (or passes through one) to")),
        ("../outside/secret.txt", Some("climbs out of it with `..`")),
        ("/etc/passwd", Some("is an absolute path")),
        ("templates/missing.txt", Some("cannot read")),
        ("big.txt", Some("larger than the limit of 1024 KiB")),
        ("fifo.txt", Some("not a regular file")),
        ("templates", Some("not a regular file")),
    ];
    for (file, want) in cases {
        let text = format!("[audience]\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext_file = {file:?}\n");
        let path = rules.join("r.toml");
        std::fs::write(&path, &text).unwrap();
        let set = load(&path);
        let messages: Vec<&str> = set.diagnostics.iter().map(|d| d.message.as_str()).collect();
        match want {
            None => {
                assert_eq!(set.errors(), 0, "{file}: {messages:?}");
                assert_eq!(set.rules[0].message.templates["shop"].text, "hello {{ member.name }}\n");
            }
            Some(want) => {
                assert!(set.rules.is_empty() && messages.iter().any(|m| m.contains(want)), "{file}: {messages:?}");
                assert!(!messages.iter().any(|m| m.contains("root:x")), "{file}: nothing of the file shows: {messages:?}");
            }
        }
    }
    // codes files are held to the same rule
    let text = "[audience]\n[offer]\ntype = \"coupon\"\ncodes_file = \"link-out.txt\"\namount = 5\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"x\"\n";
    std::fs::write(rules.join("r.toml"), text).unwrap();
    let set = load(&rules.join("r.toml"));
    assert!(set.rules.is_empty() && set.diagnostics.iter().any(|d| d.message.contains("`codes_file` must name a file inside the rules folder")), "{:?}", set.diagnostics);
}

#[test]
fn schedules_take_five_or_six_fields_and_follow_the_time_zone_across_dst() {
    let five = rules::Schedule::parse("30 9 * * MON").unwrap();
    assert_eq!(five.cron, "0 30 9 * * MON");
    let six = rules::Schedule::parse("15 30 9 * * *").unwrap();
    assert_eq!(six.cron, "15 30 9 * * *");
    assert!(rules::Schedule::parse("* * *").is_err());
    assert!(rules::Schedule::parse("0 61 * * *").is_err());
    // Europe/Berlin leaves summer time on 2026-10-25: 09:00 local is 07:00 UTC before, 08:00 UTC after
    let daily = rules::Schedule::parse("0 9 * * *").unwrap();
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
    assert_eq!(daily.next_after(at("2026-10-24T06:00:00Z"), tz), Some(at("2026-10-24T07:00:00Z")));
    assert_eq!(daily.next_after(at("2026-10-24T08:00:00Z"), tz), Some(at("2026-10-25T08:00:00Z")));
    // spring forward: 02:30 does not exist on 2026-03-29 in Berlin; the run is not lost
    let night = rules::Schedule::parse("30 2 * * *").unwrap();
    let next = night.next_after(at("2026-03-28T02:00:00Z"), tz).unwrap();
    assert!(next >= at("2026-03-29T00:00:00Z") && next <= at("2026-03-30T01:30:00Z"), "{next}");
    // one fixed time of day in the gap fires right after it: 03:00 CEST
    assert_eq!(next, at("2026-03-29T01:00:00Z"));
    // fall back: 02:00-03:00 comes twice on 2026-10-25; each wall time fires once, at its
    // first occurrence. From inside the second one the next is after it, never a past
    // instant (croner alone answers the first occurrence there)
    let minutely = rules::Schedule::parse("* * * * *").unwrap();
    assert_eq!(minutely.next_after(at("2026-10-25T00:58:30Z"), tz), Some(at("2026-10-25T00:59:00Z")));
    assert_eq!(minutely.next_after(at("2026-10-25T00:59:00Z"), tz), Some(at("2026-10-25T02:00:00Z")));
    assert_eq!(minutely.next_after(at("2026-10-25T01:10:00Z"), tz), Some(at("2026-10-25T02:00:00Z")));
    let night = rules::Schedule::parse("30 2 * * *").unwrap();
    assert_eq!(night.next_after(at("2026-10-25T00:00:00Z"), tz), Some(at("2026-10-25T00:30:00Z")));
    assert_eq!(night.next_after(at("2026-10-25T01:10:00Z"), tz), Some(at("2026-10-26T01:30:00Z")));
}

#[test]
fn issue_16_day_of_month_and_weekday_combine_with_or() {
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
    let next = |cron: &str, after: &str| rules::Schedule::parse(cron).unwrap().next_after(at(after), tz);
    // the 1st to the 7th, and every Monday: Tuesday 12-01 after 10:00 -> Wednesday 12-02
    assert_eq!(next("0 10 1-7 * MON", "2026-12-01T12:00:00Z"), Some(at("2026-12-02T09:00:00Z")));
    assert_eq!(next("0 10 1-7 * MON", "2026-12-07T12:00:00Z"), Some(at("2026-12-14T09:00:00Z")));
    // one of them a wildcard: only the other counts
    assert_eq!(next("0 10 * * MON", "2026-12-01T12:00:00Z"), Some(at("2026-12-07T09:00:00Z")));
    assert_eq!(next("0 10 1-7 * *", "2026-12-07T12:00:00Z"), Some(at("2027-01-01T09:00:00Z")));
    // the first Monday of the month, as RULES.md shows
    assert_eq!(next("0 10 * * MON#1", "2026-12-01T12:00:00Z"), Some(at("2026-12-07T09:00:00Z")));
    assert_eq!(next("0 10 * * MON#1", "2026-12-07T12:00:00Z"), Some(at("2027-01-04T09:00:00Z")));
    // the last Friday, the last day
    assert_eq!(next("0 10 * * FRI#L", "2026-12-01T12:00:00Z"), Some(at("2026-12-25T09:00:00Z")));
    assert_eq!(next("0 10 L * *", "2026-12-01T12:00:00Z"), Some(at("2026-12-31T09:00:00Z")));
    // RULES.md's daylight-saving examples: several times a day skip the spring gap, an
    // hourly schedule does not repeat the autumn hour
    assert_eq!(next("*/10 * * * *", "2026-03-29T00:55:00Z"), Some(at("2026-03-29T01:00:00Z")));
    assert_eq!(next("0 * * * *", "2026-10-25T00:00:00Z"), Some(at("2026-10-25T02:00:00Z")));
}

struct World {
    _dir: tempfile::TempDir,
    store: rekindle::store::Store,
    config: Config,
}

fn world(members: usize) -> World {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = sample_store(dir.path(), members);
    World { _dir: dir, store, config: Config::default() }
}

const AS_OF: &str = "2026-11-01";

fn as_of() -> Day {
    parse_date(AS_OF).unwrap()
}

/// Noon UTC of the as-of day (20:00 in Asia/Shanghai, outside the default quiet hours).
fn noon() -> i64 {
    i64::from(as_of()) * 86_400 + 12 * 3600
}

fn settings(config: &Config) -> PlanSettings {
    config.plan_settings(b"test-key".to_vec())
}

fn inputs(w: &World) -> (MemberBase, Profiles, PlanSettings) {
    let mut base = MemberBase::load(&w.store, Default::default(), true, &|_| {}).unwrap();
    // as the shipped config.toml declares the shop's inbox
    base.consent.by_channel.insert("shop".into(), rekindle::rules::condition::Consent::None);
    let settings = settings(&w.config);
    let profiles = Profiles::compute(&base, as_of(), &settings, Default::default());
    (base, profiles, settings)
}

#[test]
fn every_shipped_rule_previews_on_generated_data() {
    let w = world(10_000);
    // the cross-sell and chosen-product rules need mined rules, the savable one a model
    let tx = rekindle::basket::transactions(&w.store, rekindle::basket::Scope::Basket, as_of(), Some(365)).unwrap();
    let params = rekindle::bundles::MineParams { min_support: 0.0002, min_confidence: 0.1, ..Default::default() };
    let mined = rekindle::bundles::mine(&tx, &params).unwrap();
    assert!(!mined.is_empty());
    let record = rekindle::basket::MinedRules { scope: rekindle::basket::Scope::Basket, as_of: as_of(), lookback_days: Some(365), params, transactions: tx.len(), rules: mined };
    w.store.put_record(rekindle::store::RecordKind::BundleRules, "basket", &record).unwrap();
    let unit = rekindle::predict::TimeUnit::Day;
    let histories: Vec<_> = rekindle::population::all_order_days(&w.store)
        .unwrap()
        .iter()
        .filter_map(|o| rekindle::predict::PurchaseHistory::from_order_days(o, as_of(), unit))
        .collect();
    let model = rekindle::predict::fit(&histories, as_of(), unit, &w.config.predict.fit_options()).unwrap();
    w.store.put_record(rekindle::store::RecordKind::FittedModel, "value", &model).unwrap();

    let set = load(&repo_path("rules"));
    assert_eq!(set.errors(), 0);
    assert!(set.rules.len() >= 10, "the playbook ships at least ten rules");
    let (base, _, settings) = inputs(&w);
    // what a run of every rule computes for everyone (the savable rule reads predictions)
    let all: Vec<&Rule> = set.rules.iter().collect();
    let extras = rekindle::plan::Extras::of(&all);
    assert!(extras.predictions && !extras.favourites, "{extras:?}");
    let profiles = Profiles::compute(&base, as_of(), &settings, extras);
    let renderer = rekindle::rules::render::Renderer::new(&set.rules).unwrap();
    for r in &set.rules {
        let plans = plan(&base, &profiles, &[r], noon(), &settings);
        let rp = &plans[0];
        // a rule alone computes only what it reads, and plans the same
        let own = Profiles::compute(&base, as_of(), &settings, rekindle::plan::Extras::of(&[r]));
        assert_eq!(plan(&base, &own, &[r], noon(), &settings)[0].fates, rp.fates, "{}", r.id);
        let to_send = rp.messages.len();
        println!("{:<26} matched {:>5}  to send {:>5}", r.id, rp.matched, to_send);
        assert!(to_send > 0, "{}: nobody to send to ({:?})", r.id, rp.funnel());
        for msg in rp.messages.iter().take(20) {
            let channel = &msg.channels[0];
            let ctx = rekindle::plan::report::MessageContext::new(&base, &base.columns.columns(), &profiles, msg, base.contact(msg.member as usize).unwrap(), &settings).vars(r, channel, &settings);
            let out = renderer.render(&r.id, channel, ctx).unwrap_or_else(|e| panic!("{}: {e}", r.id));
            assert!(!out.text.trim().is_empty());
            if channel == "email" {
                assert!(out.text.contains("/u/"), "{}: emails carry the unsubscribe link", r.id);
            }
            let columns = base.columns.columns();
            let f = base.facts(&columns, msg.member as usize, &profiles);
            assert!(r.audience.eval(&f));
            assert!(f.consents(channel), "{}: a message goes only where the member consented", r.id);
        }
        // rule-specific promises
        for msg in &rp.messages {
            let p = &profiles.profiles[msg.member as usize];
            match r.id.as_str() {
                "sleeping-winback" => {
                    assert_eq!(p.metrics.stage, Stage::Sleeping);
                    let want = match p.price_tier.unwrap_or(Tier::Mid) {
                        Tier::High => "50.00",
                        Tier::Mid => "30.00",
                        Tier::Low => "15.00",
                    };
                    assert_eq!(msg.offer["value"], want, "the coupon follows the price tier");
                }
                "deep-discount-sensitive" => assert_eq!(p.sensitivity_tier, Some(Tier::High)),
                "silent-reminder" => assert_eq!(p.metrics.stage, Stage::Silent),
                "dormant-last-chance" => assert_eq!(p.metrics.stage, Stage::Dormant),
                "repurchase-due" => assert!(p.metrics.repurchase_due),
                "savable-high-value" => {
                    let x = p.prediction.unwrap();
                    assert!((0.3..=0.7).contains(&x.p_alive) && x.predicted_value_cents >= 20_000);
                }
                "cross-sell-bundle" => {
                    let columns = base.columns.columns();
                    let f = base.facts(&columns, msg.member as usize, &profiles);
                    let sku = msg.offer["sku"].as_str().unwrap();
                    assert!(!f.skus_bought_within(365).contains(&sku), "the bundle offers something not bought within its lookback");
                }
                _ => {}
            }
        }
    }
}

/// Predictions are computed for every member only when a rule reads them (a condition, or
/// the order of its audience); a template or member card gets the same prediction per
/// member either way.
#[test]
fn predictions_are_computed_for_everyone_only_when_a_rule_reads_them() {
    use rekindle::plan::Extras;
    let w = world(2_000);
    let unit = rekindle::predict::TimeUnit::Day;
    let histories: Vec<_> = rekindle::population::all_order_days(&w.store).unwrap().iter().filter_map(|o| rekindle::predict::PurchaseHistory::from_order_days(o, as_of(), unit)).collect();
    let model = rekindle::predict::fit(&histories, as_of(), unit, &w.config.predict.fit_options()).unwrap();
    w.store.put_record(rekindle::store::RecordKind::FittedModel, "value", &model).unwrap();
    let (base, _, settings) = inputs(&w);
    let message = "[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"hi\"\n";
    let plain = rule("plain", &format!("[audience]\nstage = \"sleeping\"\n{message}"));
    let reads = rule("reads", &format!("[audience]\npredicted_value = {{ min = 100 }}\n{message}"));
    let churn = rule("churn", &format!("[audience]\nnot = {{ churn_risk = \"low\" }}\n{message}"));
    let ordered = rule("ordered", &format!("[audience]\nstage = \"sleeping\"\n{message}[limits]\nmax_audience = 10\norder_by = \"p_alive desc\"\n"));
    assert_eq!(Extras::of(&[&plain]), Extras::default());
    for r in [&reads, &churn, &ordered] {
        assert!(Extras::of(&[r]).predictions, "{}", r.id);
        assert!(Extras::of(&[&plain, r]).cover(Extras::of(&[r])) && !Extras::of(&[&plain]).cover(Extras::of(&[r])));
    }
    let lean = Profiles::compute(&base, as_of(), &settings, Extras::of(&[&plain]));
    let full = Profiles::compute(&base, as_of(), &settings, Extras::of(&[&reads]));
    assert!(lean.profiles.iter().all(|p| p.prediction.is_none()));
    assert!(full.profiles.iter().filter(|p| p.prediction.is_some()).count() > 1_000);
    let columns = base.columns.columns();
    for i in 0..base.len() {
        let (a, b) = (lean.complete(&columns, base.model.as_ref(), i, &settings), full.complete(&columns, base.model.as_ref(), i, &settings));
        assert_eq!(a, b, "member {}", base.id(i));
        assert_eq!(b.prediction, full.profiles[i].prediction);
    }
    // the audiences that read predictions are those of profiles that carry them
    for r in [&reads, &churn, &ordered] {
        let got = plan(&base, &Profiles::compute(&base, as_of(), &settings, Extras::of(&[r])), &[r], noon(), &settings);
        let want = plan(&base, &full, &[r], noon(), &settings);
        assert!(got[0].matched > 0, "{}", r.id);
        assert_eq!(got[0].fates, want[0].fates, "{}", r.id);
    }
}

/// A run reads its messages' contact fields sorted by member (so the store's pages serve
/// neighbouring reads) and hands each back in message order, repeats included.
#[test]
fn contact_fields_read_in_member_order_come_back_in_message_order() {
    let w = world(300);
    let (base, _, _) = inputs(&w);
    let members: Vec<u32> = [250, 3, 77, 3, 299, 0, 150, 77].into_iter().collect();
    let got: Vec<_> = base.contacts_in_member_order(&members).into_iter().map(Result::unwrap).collect();
    for (m, c) in members.iter().zip(&got) {
        assert_eq!(c, &base.contact(*m as usize).unwrap(), "member {m}");
        assert_eq!(c, &w.store.contact_fields(base.id(*m as usize)).unwrap().unwrap());
    }
    assert!(got.iter().any(|c| !c.email.is_empty()), "sample members have addresses");
}

#[test]
fn holdout_is_stable_about_its_share_and_independent_between_rules() {
    let w = world(10_000);
    let (base, profiles, settings) = inputs(&w);
    let text = |id: &str| format!("[audience]\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"x\"\n[limits]\nholdout_percent = 20\nquiet_hours = false\n# {id}\n");
    let a = rule("a", &text("a"));
    let b = rule("b", &text("b"));
    let held = |r: &Rule| -> Vec<u32> {
        let p = plan(&base, &profiles, &[r], noon(), &settings);
        let mut v: Vec<u32> = p[0].fates.iter().filter(|(_, f)| *f == Fate::HeldOut).map(|(m, _)| *m).collect();
        v.sort_unstable();
        v
    };
    let ha = held(&a);
    assert_eq!(ha, held(&a), "the same members are held out on every run");
    let share = ha.len() as f64 / base.len() as f64;
    assert!((0.18..0.22).contains(&share), "about 20% held out, got {share}");
    let hb = held(&b);
    let overlap = ha.iter().filter(|m| hb.binary_search(m).is_ok()).count() as f64 / ha.len() as f64;
    assert!((0.15..0.25).contains(&overlap), "rules hold out independent groups, overlap {overlap}");
}

#[test]
fn frequency_cap_counts_messages_across_rules_and_defers_when_asked() {
    let w = world(2_000);
    let first = rule("first", "priority = 2\n[audience]\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"x\"\n[limits]\nquiet_hours = false\n");
    let second = rule("second", "priority = 1\n[audience]\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"x\"\n[limits]\nquiet_hours = false\n");
    // a member contacted twice this week has reached the default cap (2 per 7 days)
    let (base, _, _) = inputs(&w);
    let capped_id = base.id(7).to_string();
    let recent = |h: i64, rule: &str| Contact { ts: noon() - h * 3600, rule: rule.into(), channel: "shop".into(), run: 0 };
    w.store.add_contacts(&[(capped_id.clone(), recent(30, "old")), (capped_id.clone(), recent(50, "older"))], 30).unwrap();
    let (base, profiles, settings) = inputs(&w);
    let i = base.index_of(&capped_id).unwrap() as u32;
    let plans = plan(&base, &profiles, &[&first, &second], noon(), &settings);
    assert!(matches!(plans[0].fate_of(i), Some(Fate::Capped { recent: 2 })), "{:?}", plans[0].fate_of(i));
    // everyone else gets the higher-priority rule; the second rule finds them claimed
    let other = (i + 1) % base.len() as u32;
    assert!(matches!(plans[0].fate_of(other), Some(Fate::Send { .. })));
    assert!(matches!(plans[1].fate_of(other), Some(Fate::Claimed { by }) if by == "first"));
    // deferred: the message waits until the older contact leaves the 7-day window
    let deferring = rule("deferring", "[audience]\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"x\"\n[limits]\nquiet_hours = false\non_frequency_cap = \"defer\"\n");
    let plans = plan(&base, &profiles, &[&deferring], noon(), &settings);
    let Some(Fate::Send { message }) = plans[0].fate_of(i) else { panic!("{:?}", plans[0].fate_of(i)) };
    assert_eq!(plans[0].messages[*message].send_after, noon() - 50 * 3600 + 7 * 86_400);
}

#[test]
fn cooldown_keeps_a_rule_from_repeating_itself() {
    let w = world(1_000);
    let r = rule("nudge", "[audience]\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"x\"\n[limits]\ncooldown_days = 10\nquiet_hours = false\n");
    let (base, _, _) = inputs(&w);
    let (a, b) = (base.id(1).to_string(), base.id(2).to_string());
    let ago = |days: i64| Contact { ts: noon() - days * 86_400, rule: "nudge".into(), channel: "shop".into(), run: 0 };
    w.store.add_contacts(&[(a.clone(), ago(9)), (b.clone(), ago(11))], 30).unwrap();
    let (base, profiles, settings) = inputs(&w);
    let p = plan(&base, &profiles, &[&r], noon(), &settings);
    assert!(matches!(p[0].fate_of(base.index_of(&a).unwrap() as u32), Some(Fate::Cooldown { .. })));
    assert!(matches!(p[0].fate_of(base.index_of(&b).unwrap() as u32), Some(Fate::Send { .. })));
}

#[test]
fn quiet_hours_follow_the_members_own_time_zone() {
    let w = world(1_000);
    let (base, profiles, settings) = inputs(&w);
    // 13:30 UTC is 21:30 in Shanghai (quiet) but 14:30 in Berlin
    let at = i64::from(as_of()) * 86_400 + 13 * 3600 + 1800;
    let skip = rule("skip", "[audience]\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"x\"\n[limits]\non_quiet_hours = \"skip\"\n");
    let defer = rule("defer", "[audience]\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"x\"\n");
    let p = plan(&base, &profiles, &[&skip], at, &settings);
    let tz = |i: usize| w.store.member(base.id(i)).unwrap().unwrap().tz;
    let berlin: Vec<usize> = (0..base.len()).filter(|&i| tz(i) == "Europe/Berlin").collect();
    let shanghai: Vec<usize> = (0..base.len()).filter(|&i| tz(i).is_empty() || tz(i) == "Asia/Shanghai").collect();
    assert!(!shanghai.is_empty());
    for &i in &shanghai {
        assert_eq!(p[0].fate_of(i as u32), Some(&Fate::QuietHours));
    }
    for &i in &berlin {
        assert!(matches!(p[0].fate_of(i as u32), Some(Fate::Send { .. })));
    }
    let p = plan(&base, &profiles, &[&defer], at, &settings);
    let Some(Fate::Send { message }) = p[0].fate_of(shanghai[0] as u32) else { panic!() };
    // deferred to 09:00 Shanghai the next morning = 01:00 UTC
    assert_eq!(p[0].messages[*message].send_after, i64::from(as_of() + 1) * 86_400 + 3600);
}

#[test]
fn max_audience_keeps_the_top_of_the_chosen_order() {
    let w = world(2_000);
    let (base, profiles, settings) = inputs(&w);
    let r = rule("top", "[audience]\norders = { min = 1 }\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"x\"\n[limits]\nmax_audience = 100\norder_by = \"monetary desc\"\nquiet_hours = false\n");
    let p = plan(&base, &profiles, &[&r], noon(), &settings);
    assert_eq!(p[0].messages.len(), 100);
    let sent_min = p[0].messages.iter().map(|m| profiles.profiles[m.member as usize].metrics.monetary).min().unwrap();
    let over: Vec<i64> = p[0].fates.iter().filter(|(_, f)| *f == Fate::OverLimit).map(|(m, _)| profiles.profiles[*m as usize].metrics.monetary).collect();
    assert!(!over.is_empty());
    assert!(over.iter().all(|&m| m <= sent_min), "nobody left out spent more than someone kept");
}

#[test]
fn explain_walks_a_member_through_a_rule() {
    let w = world(2_000);
    let (base, profiles, settings) = inputs(&w);
    let r = rule("why", "[audience]\nstage = [\"silent\", \"sleeping\"]\norders = { min = 2 }\n[message]\nchannels = [\"email\"]\n[message.email]\ntext = \"x\"\n[limits]\nquiet_hours = false\n");
    let p = plan(&base, &profiles, &[&r], noon(), &settings);
    let inside = p[0].messages[0].member;
    let outside = (0..base.len() as u32).find(|&i| profiles.profiles[i as usize].metrics.stage == Stage::Active).unwrap();
    let text = |m: u32| {
        let mut out = Vec::new();
        rekindle::plan::report::explain(&base, &profiles, m, &r, &p[0], &settings, noon()).write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let yes = text(inside);
    assert!(yes.contains("in the audience") && yes.contains("gets a message on email"), "{yes}");
    let no = text(outside);
    assert!(no.contains("[FAIL] stage in [silent, sleeping]") && no.contains("member: active"), "{no}");
}

#[test]
fn explain_names_fallback_channels_only_when_there_are_some() {
    let w = world(500);
    let (base, profiles, settings) = inputs(&w);
    // (channels, what the verdict says after "gets a message on ")
    let cases = [("\"shop\"", "shop after "), ("\"shop\", \"email\"", "shop (fallback: email) after ")];
    for (channels, want) in cases {
        let mut text = format!("[audience]\nconsent = [\"email\"]\n[message]\nchannels = [{channels}]\n");
        for c in channels.split(", ") {
            text.push_str(&format!("[message.{}]\ntext = \"x\"\n", c.trim_matches('"')));
        }
        text.push_str("[limits]\nquiet_hours = false\n");
        let r = rule("fallback", &text);
        let p = plan(&base, &profiles, &[&r], noon(), &settings);
        let mut out = Vec::new();
        rekindle::plan::report::explain(&base, &profiles, p[0].messages[0].member, &r, &p[0], &settings, noon()).write(&mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains(&format!("gets a message on {want}")), "{channels}: {out}");
        assert!(!out.contains("(fallback: )"), "{out}");
    }
}

/// A valid rule on the shop channel whose text template is then replaced by `text`
/// (unchecked, as if the check had missed it).
fn rule_with_text(id: &str, text: &str) -> Rule {
    let mut r = rule(id, "[audience]\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"x\"\n[limits]\nquiet_hours = false\n");
    r.message.templates.get_mut("shop").unwrap().text = text.to_string();
    r
}

#[test]
fn hostile_templates_fail_within_their_budget_instead_of_hanging() {
    use rekindle::rules::render::Problem;
    let w = world(200);
    let (base, profiles, settings) = inputs(&w);
    // (template, stopped by the budget (fuel, size, deadline) or a clear error) — each
    // ran for minutes or without end (100% CPU, memory growing) before the budget
    let hostile: &[(&str, bool)] = &[
        // the issue's: three nested loops over a long string
        ("{% set s = member.name * 100 %}{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}{% endfor %}", true),
        ("{% set s = member.name * 40 %}{% for a in s %}{% for b in s %}{% for c in s %}{{ a }}{{ b }}{{ c }}{% endfor %}{% endfor %}{% endfor %}", true),
        ("{{ 'x' * 10**9 }}", true),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", true),
        ("{{ range(100000)|join(',') * 1000 }}", true),
        ("{% set n = namespace(s='x') %}{% for i in range(64) %}{% set n.s = n.s ~ n.s %}{% endfor %}{{ n.s|length }}", true),
        // O(n) work fuel counts as one step: stopped by fuel or the deadline
        ("{% set s = 'a' * 300000 %}{% for i in range(5000) %}{% if s is lower %}{% endif %}{% endfor %}", true),
        ("{% set s = '张' * 100000 %}{% for i in range(5000) %}{{ s[-1] }}{% endfor %}", true),
        ("{% for i in range(100000) %}{{ profile }}{% endfor %}", true),
        ("{% for i in range(10**9) %}{{ i }}{% endfor %}", false),
        ("{% macro twice(n) %}{{ twice(n + 1) }}{{ twice(n + 1) }}{% endmacro %}{{ twice(0) }}", false),
    ];
    let plans = plan(&base, &profiles, &[&rule_with_text("probe", "x")], noon(), &settings);
    let msg = &plans[0].messages[0];
    for &(text, budget) in hostile {
        let r = rule_with_text("hostile", text);
        let renderer = rekindle::rules::render::Renderer::new(std::slice::from_ref(&r)).unwrap();
        let vars = rekindle::plan::report::MessageContext::new(&base, &base.columns.columns(), &profiles, msg, base.contact(msg.member as usize).unwrap(), &settings).vars(&r, "shop", &settings);
        let started = std::time::Instant::now();
        let result = renderer.render(&r.id, "shop", vars);
        let took = started.elapsed();
        let e = result.expect_err(text);
        assert_eq!(e.over_budget(), budget, "{text}: {e}");
        if !budget {
            assert!(matches!(e.problem, Problem::Template(_)), "{text}: {e}");
        }
        // a hang guard, not a benchmark: the deadline is 200 ms
        assert!(took < std::time::Duration::from_secs(3), "{text}: {took:?}");
    }
}

#[test]
fn a_template_failing_for_some_members_skips_them_and_the_run_goes_on() {
    let w = world(600);
    let (mut base, mut profiles, settings) = inputs(&w);
    // the sample member `rules check` renders (id ...56) passes; ids ending in 7 do not
    let r = rule("picky", "[audience]\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"{% if member.id[-1] == '7' %}{{ 'x' * 10**9 }}{% endif %}hi {{ member.name }}\"\n[limits]\nquiet_hours = false\n");
    let planned: Vec<String> = plan(&base, &profiles, &[&r], noon(), &settings)[0].messages.iter().map(|m| base.id(m.member as usize).to_string()).collect();
    let summary = rekindle::daemon::execute_run(&w.store, &mut base, &mut profiles, &[&r], noon(), false, &settings, 30).unwrap();
    let record = w.store.run(summary.run).unwrap().unwrap();
    let written: Vec<String> = w.store.run_messages(summary.run).map(|m| m.unwrap().1.member.to_string()).collect();
    let failed: Vec<&String> = planned.iter().filter(|m| !written.contains(m)).collect();
    assert!(!failed.is_empty() && failed.iter().all(|m| m.ends_with('7')), "{failed:?}");
    assert!(planned.iter().filter(|m| !m.ends_with('7')).all(|m| written.contains(m)), "every other member's message is written");
    let funnel = |step: &str| record.rules[0].funnel.iter().find(|(k, _)| k == step).map(|(_, n)| *n);
    assert_eq!(funnel("template failed"), Some(failed.len() as u64));
    assert_eq!(funnel("to send"), Some(written.len() as u64));
    assert_eq!(written.len() + failed.len(), planned.len());
    assert_eq!(summary.messages, written.len());
}

#[test]
fn a_rule_whose_failed_renders_take_too_long_stops_rendering_for_the_run() {
    use rekindle::plan::messages::render_run;
    let w = world(400);
    let (base, profiles, settings) = inputs(&w);
    let mut slow = rule_with_text("slow", "{% set s = 'a' * 300000 %}{% for i in range(5000) %}{% if s is lower %}{% endif %}{% endfor %}");
    slow.priority = 1;
    slow.audience = rekindle::rules::Condition::Stage(vec![Stage::Sleeping, Stage::Dormant, Stage::Lost]);
    let fine = rule_with_text("fine", "hello {{ member.name }}");
    let mut plans = plan(&base, &profiles, &[&slow, &fine], noon(), &settings);
    let planned = plans[0].messages.len();
    assert!(planned >= 50, "{planned}");
    let renderer = rekindle::rules::render::Renderer::new(&[slow.clone(), fine.clone()]).unwrap();
    let rendered = render_run(&base, &profiles, &[&slow, &fine], &mut plans, &settings, &renderer);
    assert!(rendered[0].is_empty() && plans[0].messages.is_empty());
    let errors: Vec<&str> = plans[0]
        .fates
        .iter()
        .filter_map(|(_, f)| match f {
            Fate::TemplateFailed { error } => Some(error.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), planned, "every message of the rule failed");
    // each failed render took 0.1-0.2 s (fuel or the deadline); after 2 s of them the
    // rest were not rendered at all (rendering them all took over 20 s)
    let not_rendered = errors.iter().filter(|e| e.contains("not rendered: the rule's failed renders took over 2 s")).count();
    assert!(not_rendered > planned / 2, "{not_rendered} of {planned}: {:?}", &errors[..3]);
    // the other rule of the run is not affected
    assert!(!plans[1].messages.is_empty() && rendered[1].len() == plans[1].messages.len());
    assert!(rendered[1].iter().all(|(_, m)| m[0].text.starts_with("hello ")));
    // each kept message carries its own member's contact fields (read once, paired in order)
    for (p, rp) in plans.iter().enumerate() {
        for ((contact, _), msg) in rendered[p].iter().zip(&rp.messages) {
            assert_eq!(contact, &base.contact(msg.member as usize).unwrap());
        }
    }
}

/// A rules folder with `codes` in `codes.txt` and one rule per (id, extra rule text),
/// each a coupon from that file on the shop channel.
fn code_rules(dir: &Path, codes: &[String], rules: &[(&str, &str)]) -> RuleSet {
    std::fs::write(dir.join("codes.txt"), codes.join("\n")).unwrap();
    for (id, extra) in rules {
        let text = format!("{extra}\n[audience]\norders = {{ min = 1 }}\n[offer]\ntype = \"coupon\"\ncodes_file = \"codes.txt\"\namount = 10\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"{{{{ offer.code }}}}\"\n");
        std::fs::write(dir.join(format!("{id}.toml")), text).unwrap();
    }
    let set = load(dir);
    assert_eq!(set.errors(), 0, "{:?}", set.diagnostics);
    set
}

/// (member, code) of every message a run wrote.
fn codes_sent(store: &rekindle::store::Store, run: u64) -> Vec<(String, String)> {
    store
        .run_messages(run)
        .map(|m| {
            let m = m.unwrap().1;
            (m.member.to_string(), m.channels[0].text.clone())
        })
        .collect()
}

#[test]
fn a_codes_file_code_goes_to_one_member_only_across_runs() {
    let mut w = world(300);
    w.config.campaigns.frequency_cap.messages = 1000;
    let rules_dir = tempfile::tempdir().unwrap();
    let codes: Vec<String> = (0..30).map(|i| format!("SINGLE-{i:03}")).collect();
    let set = code_rules(rules_dir.path(), &codes, &[("once", "[limits]\nquiet_hours = false\nmax_audience = 12")]);
    let r = &set.rules[0];
    let (mut base, mut profiles, settings) = inputs(&w);
    let mut given: Vec<(String, String)> = Vec::new();
    let mut runs = Vec::new();
    // the pool of 30 lasts two runs of 12 and half of a third
    for (hour, expect) in [(0, 12), (1, 12), (2, 6), (3, 0)] {
        let s = rekindle::daemon::execute_run(&w.store, &mut base, &mut profiles, &[r], noon() + hour * 3600, false, &settings, 30).unwrap();
        let sent = codes_sent(&w.store, s.run);
        assert_eq!(sent.len(), expect, "run {hour}");
        given.extend(sent);
        runs.push(w.store.run(s.run).unwrap().unwrap());
    }
    let mut distinct: Vec<&String> = given.iter().map(|(_, c)| c).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 30, "every code was given exactly once: {given:?}");
    // the runs that found the pool empty say so, as a skip reason like any other; the
    // members left without a code are those max_audience would have messaged
    let funnel = |run: usize, step: &str| runs[run].rules[0].funnel.iter().find(|(k, _)| k == step).map(|(_, n)| *n);
    assert_eq!((funnel(2, "to send"), funnel(2, "no coupon code left")), (Some(6), Some(6)));
    assert_eq!((funnel(3, "to send"), funnel(3, "no coupon code left")), (Some(0), Some(12)));
    let reports = rekindle::report::report(&w.store, &runs, 7).unwrap();
    assert!(reports[0].skipped.contains(&("no coupon code left".to_string(), 18)), "{:?}", reports[0].skipped);
    let mut table = Vec::new();
    rekindle::report::write_table(&mut table, &reports, 7).unwrap();
    let table = String::from_utf8(table).unwrap();
    assert!(table.contains("no coupon code left 18"), "{table}");
    // explain and preview, planned now, tell the same
    let p = plan(&base, &profiles, &[r], noon() + 4 * 3600, &settings);
    let (m, _) = p[0].fates.iter().find(|(_, f)| matches!(f, Fate::NoCode { codes: 30 })).unwrap();
    let mut out = Vec::new();
    rekindle::plan::report::explain(&base, &profiles, *m, r, &p[0], &settings, noon()).write(&mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("left out: no coupon code left (all 30 codes of ") && out.contains("codes.txt are given out)"), "{out}");
    let renderer = rekindle::rules::render::Renderer::new(std::slice::from_ref(r)).unwrap();
    let mut out = Vec::new();
    rekindle::plan::report::preview_table(&mut out, &base, &profiles, r, &p[0], &settings, &renderer, 1).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("no coupon code left") && out.contains("coupon codes: 0 of 30 in ") && out.contains("(fewer than codes_warn_below = 3: add codes)"), "{out}");
}

#[test]
fn codes_of_a_rolled_back_run_go_back_to_their_members_and_nobody_else() {
    let mut w = world(300);
    w.config.campaigns.frequency_cap.messages = 1000;
    let rules_dir = tempfile::tempdir().unwrap();
    let codes: Vec<String> = (0..40).map(|i| format!("ONCE-{i:03}")).collect();
    let limits = |order: &str| format!("[limits]\nquiet_hours = false\nmax_audience = 10\norder_by = \"{order}\"");
    let (top, bottom) = (limits("monetary desc"), limits("monetary asc"));
    let set = code_rules(rules_dir.path(), &codes, &[("top", &top), ("bottom", &bottom)]);
    let (top, bottom) = (set.get("top").unwrap(), set.get("bottom").unwrap());
    let (mut base, mut profiles, settings) = inputs(&w);
    let mut run = |r: &Rule, hour: i64| -> Vec<(String, String)> {
        let s = rekindle::daemon::execute_run(&w.store, &mut base, &mut profiles, &[r], noon() + hour * 3600, false, &settings, 30).unwrap();
        codes_sent(&w.store, s.run)
    };
    let first = run(top, 0);
    assert_eq!(first.len(), 10);
    // a crash before the commit: the run is rolled back, its messages never went out
    let run_id = w.store.runs().last().unwrap().unwrap().id;
    let mut rec = w.store.run(run_id).unwrap().unwrap();
    rec.committed = false;
    w.store.put_run_record_for_tests(&rec).unwrap();
    assert_eq!(w.store.roll_back_unfinished_runs().unwrap(), vec![run_id]);
    // other members planned now do not get those codes...
    let others = run(bottom, 1);
    assert_eq!(others.len(), 10);
    assert!(others.iter().all(|(m, c)| !first.iter().any(|(fm, fc)| fc == c || fm == m)), "{others:?} vs {first:?}");
    // ...their own members get them back when planned again
    let again = run(top, 2);
    let mut a = again.clone();
    let mut f = first.clone();
    a.sort();
    f.sort();
    assert_eq!(a, f, "the same members, the same codes");
    // and the store refuses to hand a code to a second member, whatever asks
    let grant = |member: &str| rekindle::store::codes::CodeGrant { member: member.into(), rule: "top".into(), run: 99 };
    let (member, code) = &first[0];
    assert!(w.store.grant_codes(&[(code.clone(), grant(member))]).is_ok(), "its own member may get it again");
    let err = w.store.grant_codes(&[("FRESH-1".into(), grant("someone")), (code.clone(), grant("someone-else"))]).unwrap_err();
    assert!(err.to_string().contains(&format!("already given to member {member}")), "{err}");
    assert!(!w.store.code_grants().any(|g| g.unwrap().0 == "FRESH-1"), "nothing of a refused batch is written");
}

#[test]
fn a_codes_file_lists_each_code_once_and_says_when_few_are_left() {
    let dir = tempfile::tempdir().unwrap();
    let rule = |extra: &str| format!("[audience]\n[offer]\ntype = \"coupon\"\ncodes_file = \"codes.txt\"\namount = 5\n{extra}\n[message]\nchannels = [\"shop\"]\n[message.shop]\ntext = \"{{{{ offer.code }}}}\"\n");
    // (codes file, extra offer keys, codes kept, warn below, warnings)
    let cases: &[(&str, &str, usize, usize, &[&str])] = &[
        ("A\nB\nC\n", "", 3, 1, &[]),
        ("# header\nA\n\n  B  \nA\nC\nB\n", "", 3, 1, &["lists 2 codes more than once (the first: \"A\"); each is handed out once"]),
        ("X\n", "codes_warn_below = 0", 1, 0, &[]),
        (&(0..250).map(|i| format!("C{i}\n")).collect::<String>(), "", 250, 25, &[]),
        (&(0..250).map(|i| format!("C{i}\n")).collect::<String>(), "codes_warn_below = 100", 250, 100, &[]),
    ];
    for (codes, extra, kept, warn, warnings) in cases {
        std::fs::write(dir.path().join("codes.txt"), codes).unwrap();
        std::fs::write(dir.path().join("r.toml"), rule(extra)).unwrap();
        let set = load(&dir.path().join("r.toml"));
        assert_eq!(set.errors(), 0, "{:?}", set.diagnostics);
        let messages: Vec<&str> = set.diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages.len(), warnings.len(), "{messages:?}");
        for (m, w) in messages.iter().zip(*warnings) {
            assert!(m.ends_with(w), "{m}");
        }
        let rekindle::rules::Offer::Coupon(c) = &set.rules[0].offer else { panic!() };
        let rekindle::rules::CouponCodes::List { codes, warn_below, .. } = &c.codes else { panic!() };
        assert_eq!((codes.len(), *warn_below), (*kept, *warn), "{codes:?}");
    }
}

#[test]
fn a_stopped_address_suppresses_exactly_the_members_at_it() {
    use rekindle::rules::condition::Consent;
    let w = world(500);
    let (mut base, _, _) = inputs(&w);
    base.consent.by_channel.insert("email".into(), Consent::Email);
    base.consent.by_channel.insert("sms".into(), Consent::Sms);
    let members: Vec<_> = (0..base.len()).map(|i| w.store.member(base.id(i)).unwrap().unwrap()).collect();
    let email = members.iter().find(|m| !m.email.is_empty()).unwrap().email.clone();
    let phone = members.iter().rev().find(|m| !m.phone.is_empty()).unwrap().phone.clone();
    w.store.update_address("email", &email, |h| h.stopped = true).unwrap();
    w.store.update_address("sms", &phone, |h| h.stopped = true).unwrap();
    // an address nobody has, and the member id of a channel addressed by id
    w.store.update_address("email", "nobody@example.com", |h| h.stopped = true).unwrap();
    w.store.update_address("shop", base.id(3), |h| h.stopped = true).unwrap();
    base.refresh(&w.store).unwrap();
    // the members at each address, found by reading every record (not the columns)
    let mut want: Vec<(u32, Vec<&str>)> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let mut channels = Vec::new();
        if m.email == email {
            channels.push("email");
        }
        if m.phone == phone {
            channels.push("sms");
        }
        if i == 3 {
            channels.push("shop");
        }
        if !channels.is_empty() {
            want.push((i as u32, channels));
        }
    }
    let mut got: Vec<(u32, Vec<&str>)> = base.suppressed.iter().map(|(&i, c)| (i, c.iter().map(|c| c.as_str()).collect())).collect();
    got.sort();
    for (_, c) in &mut got {
        c.sort_unstable();
    }
    assert_eq!(got, want);
    let columns = base.columns.columns();
    let profiles = Profiles::compute(&base, as_of(), &settings(&w.config), Default::default());
    for (i, channels) in &want {
        for c in channels {
            assert!(!base.facts(&columns, *i as usize, &profiles).consents(c), "member {i} on {c}");
        }
    }
}
