//! Reports on generated data with a known effect: members who got a message buy with a
//! planted higher probability than held-out ones; the report finds the lift within its
//! 95% interval and the revenue exactly.

use crate::support::{import, sample_store};
use rekindle::config::Config;
use rekindle::plan::{MemberBase, Profiles};
use rekindle::plugin::{ChannelHost, HostOptions};
use rekindle::store::outbox::MessageState;

#[test]
fn the_report_finds_a_planted_lift_within_its_confidence_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = sample_store(dir.path(), 6_000);
    let out = dir.path().join("out");
    let cfg = Config::parse(&format!(
        "[channels.files]\nplugin = \"{}\"\nconsent = \"none\"\ngrants = {{ files = \"{}\" }}\n[dispatch]\nconcurrency = 8\n",
        crate::support::repo_path("target/plugins/file.wasm").display(),
        out.display()
    ))
    .unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let mut set = rekindle::rules::RuleSet { rules: vec![], diagnostics: vec![], sources: Default::default(), failed: vec![] };
    let text = "[audience]\norders = { min = 1 }\n[message]\nchannels = [\"files\"]\n[message.files]\ntext = \"x\"\n[limits]\nholdout_percent = 50\nquiet_hours = false\n";
    rekindle::rules::add_file(&mut set, std::path::Path::new("lift.toml"), text.into(), &rekindle::rules::ChannelNames { configured: vec!["files".into()] });
    let rule = set.rules.pop().unwrap();
    let settings = cfg.plan_settings(b"k".to_vec());
    let mut base = MemberBase::load(&store, Default::default(), false, &|_| {}).unwrap();
    base.consent = rekindle::plugin::consents(&cfg.channels, &HostOptions::default()).unwrap();
    let mut profiles = Profiles { as_of: 0, profiles: vec![], cuts: None, extras: Default::default() };
    let at = i64::from(rekindle::domain::parse_date("2026-11-01").unwrap()) * 86_400 + 12 * 3600;
    let summary = rekindle::daemon::execute_run(&store, &mut base, &mut profiles, &[&rule], at, false, &settings, 30).unwrap();
    let host = std::sync::Arc::new(ChannelHost::load(&cfg.channels, &HostOptions::default()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    rt.block_on(rekindle::dispatch::dispatch(store.clone(), host, cfg.dispatch.clone(), Default::default(), rx, true)).unwrap();
    // the run happened "at" 2026-11-01 12:00; the dispatcher stamped today's time, so move
    // the send times back to when they would have been
    let moved: Vec<_> = store
        .run_messages(summary.run)
        .map(|m| m.unwrap())
        .map(|(id, mut m)| {
            let old = m.send_after;
            m.sent_at = m.sent_at.map(|_| at + 60);
            (id, old, m)
        })
        .collect();
    store.update_messages(&moved).unwrap();
    let run = store.run(summary.run).unwrap().unwrap();
    let treated: Vec<String> = store.run_messages(summary.run).map(|m| m.unwrap().1).filter(|m| m.state == MessageState::Sent).map(|m| m.member.to_string()).collect();
    let held: Vec<String> = run.rules[0].held_out.iter().map(|m| m.to_string()).collect();
    assert!(treated.len() > 1500 && held.len() > 1500, "{} treated, {} held out", treated.len(), held.len());

    // planted: 30% of the treated and 12% of the held out buy 100.00 two days later
    let buys = |m: &str, p: u64| rekindle::plan::stable_hash(&[b"planted", m.as_bytes()]) % 1000 < p;
    let mut csv = String::from("order_id,member_id,ts,sku,category,brand,unit_price,qty,discount_pct\n");
    let (mut t_buy, mut h_buy) = (0u64, 0u64);
    for (members, p, count) in [(&treated, 300, &mut t_buy), (&held, 120, &mut h_buy)] {
        for m in members.iter() {
            if buys(m, p) {
                *count += 1;
                csv.push_str(&format!("p-{m},{m},2026-11-03T10:00:00Z,skuX,c,b,100.00,1,0\n"));
            }
        }
    }
    let orders = dir.path().join("planted.csv");
    std::fs::write(&orders, csv).unwrap();
    let (s, bad) = import(&store, &orders);
    assert!(bad.is_empty() && s.bad == 0);

    let reports = rekindle::report::report(&store, &[run], 7).unwrap();
    let r = &reports[0];
    println!("{r:#?}");
    assert_eq!(r.sent as usize, treated.len());
    assert_eq!(r.held_out as usize, held.len());
    assert_eq!((r.converted, r.holdout_converted), (t_buy, h_buy), "every planted order is attributed");
    assert_eq!(r.revenue_cents, t_buy as i64 * 10_000);
    let planted = 0.30 - 0.12;
    let (lo, hi) = r.absolute_lift_ci.unwrap();
    assert!(lo < planted && planted < hi, "planted lift {planted} outside [{lo}, {hi}]");
    assert!(lo > 0.0, "a real effect of this size is significant");
    let (rlo, rhi) = r.relative_lift_ci.unwrap();
    assert!(rlo < 1.5 && 1.5 < rhi, "planted relative lift 150% outside [{rlo}, {rhi}]");
    // an order outside the window counts for nobody
    let reports = rekindle::report::report(&store, &[store.run(summary.run).unwrap().unwrap()], 1).unwrap();
    assert_eq!(reports[0].converted, 0);
}
