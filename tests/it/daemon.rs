//! The daemon against real providers on 127.0.0.1: retries that back off and end as dead
//! letters (HTTP 503, a timeout, a closed port), fallback to the next channel on a
//! permanent error, roll-back of a run a crash left unfinished, catch-up of a missed
//! schedule, and hot reload that survives a broken edit.

use crate::support::{python, repo_path, sample_store};
use rekindle::config::Config;
use rekindle::daemon::execute_run;
use rekindle::dispatch::dispatch;
use rekindle::plan::{MemberBase, Profiles};
use rekindle::plugin::{ChannelHost, HostOptions};
use rekindle::store::outbox::MessageState;
use rekindle::store::Store;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
}

/// The project's HTTP sink (scripts/http-sink.sh), stopped on drop.
struct HttpSink {
    state: tempfile::TempDir,
    port: u16,
}

impl HttpSink {
    fn start() -> HttpSink {
        let state = tempfile::tempdir().unwrap();
        let port = free_port();
        let ok = Command::new("bash")
            .arg(repo_path("scripts/http-sink.sh"))
            .args(["start", state.path().to_str().unwrap(), &port.to_string()])
            .env("REKINDLE_PYTHON", python().get_program())
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "http sink did not start");
        HttpSink { state, port }
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(repo_path("scripts/http-sink.sh")).args(["stop", self.state.path().to_str().unwrap()]).status();
    }
}

fn shop(name: &str, endpoint: &str, port: u16) -> String {
    format!(
        "[channels.{name}]\nplugin = \"{}\"\nconsent = \"none\"\nsettings = {{ endpoint = \"{endpoint}\" }}\nsecrets = {{ signing_secret = \"s\" }}\ngrants = {{ http = [\"127.0.0.1:{port}\"] }}\nlimits = {{ io_timeout_ms = 300 }}\n",
        repo_path("target/plugins/shop.wasm").display()
    )
}

fn file_channel(name: &str, dir: &Path) -> String {
    format!("[channels.{name}]\nplugin = \"{}\"\nconsent = \"none\"\ngrants = {{ files = \"{}\" }}\n", repo_path("target/plugins/file.wasm").display(), dir.display())
}

fn rule(id: &str, channels: &str) -> rekindle::rules::Rule {
    let text = format!("[audience]\norders = {{ min = 5 }}\n[message]\nchannels = [{channels}]\n");
    let mut text = text;
    for c in channels.split(',') {
        let c = c.trim().trim_matches('"');
        text.push_str(&format!("[message.{c}]\ntext = \"hi {{{{ member.name }}}}\"\n"));
    }
    text.push_str("[limits]\nquiet_hours = false\n");
    let mut set = rekindle::rules::RuleSet { rules: vec![], diagnostics: vec![], sources: Default::default(), failed: vec![] };
    let names = rekindle::rules::ChannelNames { configured: vec!["s503".into(), "slow".into(), "closed".into(), "gone".into(), "files".into(), "stuck".into()] };
    rekindle::rules::add_file(&mut set, Path::new(&format!("{id}.toml")), text, &names);
    assert_eq!(set.errors(), 0, "{:?}", set.diagnostics);
    set.rules.pop().unwrap()
}

fn config(channels: &str) -> Config {
    let text = format!("[campaigns]\nfrequency_cap = {{ messages = 100, days = 7 }}\n[dispatch]\nmax_attempts = 2\nbackoff_base_seconds = 1\nbackoff_max_seconds = 1\nconcurrency = 4\n{channels}");
    Config::parse(&text).unwrap()
}

/// Plans `rule` now and dispatches until nothing is left to retry (or `limit` passes).
fn run_and_drain(store: &Store, config: &Config, rule: &rekindle::rules::Rule) -> Vec<(rekindle::store::outbox::MessageId, rekindle::store::outbox::OutboxMessage)> {
    let settings = config.plan_settings(b"k".to_vec());
    let mut base = MemberBase::load(store, Default::default(), false, &|_| {}).unwrap();
    base.consent = rekindle::plugin::consents(&config.channels, &HostOptions::default()).unwrap();
    let mut profiles = Profiles { as_of: 0, profiles: vec![], cuts: None, extras: Default::default() };
    let now = chrono::Utc::now().timestamp();
    let summary = execute_run(store, &mut base, &mut profiles, &[rule], now, false, &settings, 30).unwrap();
    assert!(summary.messages > 5, "{summary:?}");
    let host = std::sync::Arc::new(ChannelHost::load(&config.channels, &HostOptions::default()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        rt.block_on(dispatch(store.clone(), host.clone(), config.dispatch.clone(), Default::default(), rx, true)).unwrap();
        let (queued, _, _) = store.outbox_counts(chrono::Utc::now().timestamp()).unwrap();
        if queued == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    store.run_messages(summary.run).collect::<Result<_, _>>().unwrap()
}

#[test]
fn retryable_failures_back_off_and_end_as_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = sample_store(dir.path(), 300);
    let sink = HttpSink::start();
    let closed = free_port();
    let cfg = config(&format!(
        "{}{}{}",
        shop("s503", &format!("http://127.0.0.1:{}/status/503", sink.port), sink.port),
        shop("slow", &format!("http://127.0.0.1:{}/slow?ms=2000", sink.port), sink.port),
        shop("closed", &format!("http://127.0.0.1:{closed}/v1/messages"), closed),
    ));
    for (channel, why) in [("s503", "503"), ("slow", "time"), ("closed", "")] {
        let messages = run_and_drain(&store, &cfg, &rule(&format!("r-{channel}"), &format!("\"{channel}\"")));
        for (id, m) in &messages {
            assert_eq!(m.state, MessageState::Dead, "{channel}: {id} {m:?}");
            assert_eq!(m.attempts, 2, "{channel}: two attempts, then a dead letter");
            assert!(m.errors.len() == 2 && m.errors.iter().all(|e| e.contains(why)), "{channel}: {:?}", m.errors);
        }
        println!("{channel}: {} dead letters after two attempts each", messages.len());
    }
    let dead: Vec<_> = store.dead_letters().collect::<Result<_, _>>().unwrap();
    assert!(dead.len() > 15);
    // retry puts them back in the queue
    let now = chrono::Utc::now().timestamp();
    let updates: Vec<_> = dead.iter().take(3).map(|(id, m)| {
        let mut m = m.clone();
        let old = m.send_after;
        m.state = MessageState::Pending;
        m.attempts = 0;
        m.send_after = now;
        (*id, old, m)
    }).collect();
    store.update_messages(&updates).unwrap();
    assert_eq!(store.dead_letters().count(), dead.len() - 3);
    assert_eq!(store.outbox_counts(now).unwrap().0, 3);
}

/// A plugin stopped at its wall-clock limit (here: calling a slow server in a loop)
/// fails its send as retryable, so the message backs off and ends as a dead letter
/// with the limit as its error, like any provider outage.
#[test]
fn a_send_past_its_wall_clock_limit_is_retried_then_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = sample_store(dir.path(), 300);
    let sink = HttpSink::start();
    let stuck = format!(
        "[channels.stuck]\nplugin = \"{}\"\nconsent = \"none\"\nsettings = {{ mode = \"http-loop\", url = \"http://127.0.0.1:{}/slow?ms=100\" }}\ngrants = {{ http = [\"127.0.0.1:{}\"], files = \"{}\" }}\nlimits = {{ wall_ms = 300, cpu_ms = 100 }}\n",
        crate::plugin_support::plugin("faulty").display(),
        sink.port,
        sink.port,
        dir.path().join("files").display()
    );
    let messages = run_and_drain(&store, &config(&stuck), &rule("r-stuck", "\"stuck\""));
    for (id, m) in &messages {
        assert_eq!(m.state, MessageState::Dead, "{id} {m:?}");
        assert_eq!(m.attempts, 2, "two attempts, then a dead letter");
        assert!(m.errors.iter().all(|e| e.contains("wall-clock limit of 300 ms")), "{:?}", m.errors);
    }
}

#[test]
fn a_permanent_error_falls_back_to_the_next_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = sample_store(dir.path(), 300);
    let sink = HttpSink::start();
    let out = dir.path().join("files");
    std::fs::create_dir_all(&out).unwrap();
    let cfg = config(&format!("{}{}", shop("gone", &format!("http://127.0.0.1:{}/status/404", sink.port), sink.port), file_channel("files", &out)));
    let messages = run_and_drain(&store, &cfg, &rule("fallback", "\"gone\", \"files\""));
    for (_, m) in &messages {
        assert_eq!(m.state, MessageState::Sent, "{m:?}");
        assert_eq!(m.current, 1, "sent on the second channel");
        assert!(m.errors[0].contains("404"), "{:?}", m.errors);
    }
    let written = std::fs::read_dir(&out).unwrap().count();
    assert_eq!(written, messages.len(), "one file per message");
}

#[test]
fn a_run_left_unfinished_by_a_crash_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = sample_store(dir.path(), 200);
    let r = rule("half", "\"files\"");
    let cfg = config(&file_channel("files", dir.path()));
    let settings = cfg.plan_settings(b"k".to_vec());
    let mut base = MemberBase::load(&store, Default::default(), false, &|_| {}).unwrap();
    base.consent = rekindle::plugin::consents(&cfg.channels, &HostOptions::default()).unwrap();
    let mut profiles = Profiles { as_of: 0, profiles: vec![], cuts: None, extras: Default::default() };
    let s = execute_run(&store, &mut base, &mut profiles, &[&r], chrono::Utc::now().timestamp(), false, &settings, 30).unwrap();
    // what a crash between the message batches and the commit leaves: the record uncommitted
    let mut rec = store.run(s.run).unwrap().unwrap();
    rec.committed = false;
    store.put_run_record_for_tests(&rec).unwrap();
    let before = store.outbox_counts(i64::MAX / 2).unwrap().0;
    assert_eq!(before as usize, s.messages);
    assert_eq!(store.roll_back_unfinished_runs().unwrap(), vec![s.run]);
    assert_eq!(store.outbox_counts(i64::MAX / 2).unwrap().0, 0, "no message of the unfinished run stays queued");
    assert!(store.run(s.run).unwrap().is_none());
    let contacts: usize = store.scan_contacts().map(|c| c.unwrap().1.contacts.len()).sum();
    assert_eq!(contacts, 0, "its contacts no longer count for caps");
}

fn rekindle(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rekindle"));
    c.current_dir(dir).arg("--config").arg(dir.join("config.toml"));
    c
}

fn daemon(dir: &Path) -> Child {
    rekindle(dir).arg("run").env("REKINDLE_LOG", "info").stdout(Stdio::null()).stderr(std::fs::File::create(dir.join("daemon.log")).unwrap()).spawn().unwrap()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("the daemon did not stop on SIGTERM");
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// A store with members, a config whose only channel writes files, and a rules folder.
fn daemon_dir(members: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = sample_store(dir.path(), members);
    drop(store);
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let cfg = format!(
        "[store]\npath = \"store\"\n[api]\nlisten = \"127.0.0.1:0\"\n[campaigns]\nrules_dir = \"rules\"\nfrequency_cap = {{ messages = 1000, days = 1 }}\n{}",
        file_channel("files", &dir.path().join("out"))
    );
    std::fs::write(dir.path().join("config.toml"), cfg).unwrap();
    (dir, rules)
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
}

/// `outbox status` (the daemon must not be running: sled is one process at a time).
fn runs_of(dir: &Path) -> String {
    let out = rekindle(dir).args(["outbox", "status"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_missed_schedule_runs_once_at_start_as_a_catch_up() {
    let (dir, rules) = daemon_dir(200);
    let d = dir.path();
    std::fs::write(rules.join("daily.toml"), "schedule = \"0 3 * * *\"\ntimezone = \"UTC\"\n[audience]\norders = { min = 3 }\n[message]\nchannels = [\"files\"]\n[message.files]\ntext = \"x\"\n[limits]\nquiet_hours = false\n").unwrap();
    // a run two days ago; since then 03:00 UTC has passed at least once
    let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
    let ok = rekindle(d).args(["run", "--once", "--at", &two_days_ago.format("%Y-%m-%dT%H:%M:%SZ").to_string()]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let child = daemon(d);
    wait_for("the catch-up run", || log(d).contains("catch-up run"));
    stop(child);
    let status = runs_of(d);
    assert_eq!(status.matches("(catch-up)").count(), 1, "{status}");
    // started again right away: nothing was missed since, so no second catch-up
    let child = daemon(d);
    std::thread::sleep(Duration::from_secs(3));
    stop(child);
    assert_eq!(runs_of(d).matches("(catch-up)").count(), 1, "a missed run is caught up once, never twice");
}

#[test]
fn hot_reload_keeps_the_last_valid_rule_when_an_edit_breaks_it() {
    let (dir, rules) = daemon_dir(200);
    let d = dir.path();
    let every_second = |name: &str| format!("name = \"{name}\"\nschedule = \"* * * * * *\"\n[audience]\norders = {{ min = 3 }}\n[message]\nchannels = [\"files\"]\n[message.files]\ntext = \"x\"\n[limits]\nquiet_hours = false\n");
    let runs = |d: &Path| log(d).matches("scheduled run").count();
    let child = daemon(d);
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(rules.join("pulse.toml"), every_second("v1")).unwrap();
    wait_for("runs of the new rule", || runs(d) >= 2);
    std::fs::write(rules.join("pulse.toml"), "name = \"v2\"\nschedule = \"* * * * * *\"\n[audience]\nstge = \"silent\"\n").unwrap();
    wait_for("the broken edit in the log", || log(d).contains("unknown key `stge`"));
    let before = runs(d);
    wait_for("runs to go on with the last valid version", || runs(d) > before + 1);
    std::fs::remove_file(rules.join("pulse.toml")).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let after_removal = runs(d);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(d), after_removal, "a removed rule stops running");
    stop(child);
    assert!(log(d).contains("last valid version"), "{}", log(d));
    let status = runs_of(d);
    assert!(status.contains("pulse ("), "{status}");
}

#[test]
fn the_daemon_keeps_co_purchase_rules_and_the_value_model_fresh() {
    use rekindle::basket::MinedRules;
    use rekindle::store::RecordKind;
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = sample_store(dir.path(), 2_000);
    let mut cfg = Config::default();
    cfg.bundles.min_support = 0.0005;
    let today = rekindle::domain::parse_date("2026-11-01").unwrap();
    let mut base = MemberBase::load(&store, Default::default(), false, &|_| {}).unwrap();
    assert!(base.bundles.basket.is_none() && base.model.is_none());
    rekindle::daemon::refresh_models(&store, &cfg.bundles, &cfg.predict, today).unwrap().apply(&mut base);
    let mined: MinedRules = store.get_record(RecordKind::BundleRules, "basket").unwrap().expect("mined and stored");
    assert_eq!(mined.as_of, today);
    assert!(!mined.rules.is_empty());
    assert!(base.bundles.basket.is_some(), "the base offers from the fresh rules");
    let model: rekindle::predict::FittedModel = store.get_record(RecordKind::FittedModel, "value").unwrap().expect("fitted and stored");
    assert_eq!(model.as_of_day, today);
    // the same day again: nothing is due
    let nothing = rekindle::daemon::refresh_models(&store, &cfg.bundles, &cfg.predict, today + 3).unwrap();
    assert!(nothing.basket.is_none() && nothing.model.is_none(), "nothing due, nothing fresh");
    let again: MinedRules = store.get_record(RecordKind::BundleRules, "basket").unwrap().unwrap();
    assert_eq!(again.as_of, today, "not re-mined before refresh_every_days");
    // a week on, both are refreshed
    rekindle::daemon::refresh_models(&store, &cfg.bundles, &cfg.predict, today + 7).unwrap().apply(&mut base);
    let later: MinedRules = store.get_record(RecordKind::BundleRules, "basket").unwrap().unwrap();
    assert_eq!(later.as_of, today + 7);
    assert_eq!(base.model.as_ref().unwrap().as_of_day, today + 7);
}

#[test]
fn sigterm_stops_the_daemon_while_its_runs_render_a_runaway_template() {
    let (dir, rules) = daemon_dir(300);
    let d = dir.path();
    // passes `rules check` (its sample member is spared) and runs away for every real
    // member: a run rendered it without end and SIGTERM waited for the run
    let runaway = "{% if member.id != 'm-2024-000000123456' %}{% set s = 'a' * 300000 %}{% for c in member.name * 1000 %}{% if s is lower %}{% endif %}{% endfor %}{% endif %}x";
    std::fs::write(rules.join("runaway.toml"), format!("schedule = \"* * * * * *\"\n[audience]\n[message]\nchannels = [\"files\"]\n[message.files]\ntext = \"{runaway}\"\n[limits]\nquiet_hours = false\n")).unwrap();
    let child = daemon(d);
    wait_for("a run that skipped the failing messages", || log(d).contains("messages not sent: their template failed"));
    // runs fire every second and each spends about 2 s on failing renders: SIGTERM
    // lands during one
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    stop(child);
    assert!(started.elapsed() < Duration::from_secs(10), "stopped after {:?}", started.elapsed());
    assert!(log(d).contains("ran out of fuel") || log(d).contains("rendering took over"), "{}", log(d));
}
