//! Delivery feedback through the running daemon over real HTTP on 127.0.0.1: an SMTP
//! relay refusing an unknown mailbox (550 5.1.1) and a Postfix bounce (RFC 3464) posted
//! to the email callback stop that address; Kannel's delivery reports and a STOP reply
//! come back through the SMS callback. Reports count delivered, bounced and failed
//! messages, the next runs leave the stopped addresses out, and `/metrics` carries
//! per-channel sends, latencies and feedback.

use crate::api::{free_port, http};
use crate::plugin_support::{plugin, python, repo, wait_for, ScriptServer};
use crate::support::sample_store;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "feedback-t0ken";

/// `rekindle run` in a folder; SIGTERM and wait on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(dir: &Path, port: u16) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_rekindle"))
            .current_dir(dir)
            .arg("--config")
            .arg(dir.join("config.toml"))
            .arg("run")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(60), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        Daemon { child, port }
    }

    fn get(&self, path: &str) -> (u16, String) {
        http(self.port, "GET", path, &[("Authorization", &format!("Bearer {TOKEN}"))], "")
    }

    fn post(&self, path: &str, body: &str) -> (u16, String) {
        http(self.port, "POST", path, &[("Authorization", &format!("Bearer {TOKEN}"))], body)
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Runs a rule now through the API and waits until the outbox is empty; the run id.
    fn run_now(&self, rule: &str) -> u64 {
        let (status, body) = self.post(&format!("/api/rules/{rule}/run"), "");
        assert_eq!(status, 200, "{body}");
        let run = serde_json::from_str::<serde_json::Value>(&body).unwrap()["run"].as_u64().unwrap();
        wait_for(Duration::from_secs(60), || (self.json("/api/outbox")["queued"] == 0).then_some(()));
        run
    }

    fn report(&self, run: u64) -> serde_json::Value {
        self.json(&format!("/api/report/{run}"))[0].clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = wait_for(Duration::from_secs(30), || self.child.try_wait().ok().flatten());
    }
}

fn write_config(dir: &Path, port: u16, channel: &str) {
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[store]\npath = \"store\"\n[campaigns]\nrules_dir = \"rules\"\nfrequency_cap = {{ messages = 100, days = 1 }}\npublic_url = \"http://127.0.0.1:{port}\"\n\
             [api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n[dispatch]\nbackoff_base_seconds = 1\n{channel}"
        ),
    )
    .unwrap();
}

fn write_rule(dir: &Path, id: &str, channel: &str, extra_limits: &str) {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join(format!("rules/{id}.toml")),
        format!(
            "[audience]\norders = {{ min = 1 }}\n[message]\nchannels = [\"{channel}\"]\n[message.{channel}]\n{}text = \"{{{{ member.name }}}}, we miss you\"\n[limits]\nquiet_hours = false\n{extra_limits}",
            if channel == "email" { "subject = \"We miss you\"\n" } else { "" }
        ),
    )
    .unwrap();
}

/// Every stored message of the aiosmtpd sink: (recipient, Message-ID).
fn mails(sink: &Path) -> Vec<(String, String)> {
    let dir = sink.join("maildir/new");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let header = |name: &str| {
            text.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())).unwrap_or_default()
        };
        out.push((header("X-Sink-Rcpt-To").trim_matches(['<', '>']).to_string(), header("Message-ID")));
    }
    out
}

/// The member id inside a Message-ID built from the key rule:run:member:channel.
fn member_of(message_id: &str) -> String {
    message_id.split("=3A").nth(2).unwrap().to_string()
}

fn metric_samples(daemon: &Daemon) -> String {
    let (status, text) = daemon.get("/metrics");
    assert_eq!(status, 200);
    let parsed = Command::new(python())
        .arg("-c")
        .arg("import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\nfor f in p(sys.stdin.read()):\n  for s in f.samples: print(s.name, sorted(s.labels.items()), s.value)")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(parsed.status.success(), "{}\n{text}", String::from_utf8_lossy(&parsed.stderr));
    String::from_utf8_lossy(&parsed.stdout).into_owned()
}

#[test]
fn smtp_refusals_and_bounce_reports_stop_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    drop(sample_store(d, 200));
    let smtp_port = free_port();
    let unknown: PathBuf = d.join("unknown-users");
    std::fs::write(&unknown, "").unwrap();
    let sink = ScriptServer::start("smtp-sink.sh", &[&smtp_port.to_string(), "--unknown-users", &unknown.display().to_string()]);
    let port = free_port();
    write_config(
        d,
        port,
        &format!(
            "[channels.email]\nplugin = \"{}\"\nsettings = {{ from_address = \"news@tea.example\" }}\n[channels.email.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n",
            plugin("email").display()
        ),
    );
    write_rule(d, "winback", "email", "");
    let daemon = Daemon::start(d, port);

    let first = daemon.run_now("winback");
    let sent = mails(sink.path());
    assert!(sent.len() >= 10, "run {first} mailed {}", sent.len());
    assert_eq!(daemon.report(first)["sent"], sent.len());
    let (a_address, a_id) = sent[0].clone();
    let (b_address, b_id) = sent[1].clone();
    let (a, b) = (member_of(&a_id), member_of(&b_id));

    // B's mailbox bounces later: the MTA's report comes back to the callback
    let dsn = std::fs::read_to_string(repo().join("tests/it/fixtures/bounce-postfix.eml")).unwrap().replace("@RECIPIENT@", &b_address).replace("@MESSAGE_ID@", &b_id);
    let (status, applied) = http(port, "POST", "/callbacks/email", &[("Content-Type", "message/rfc822")], &dsn);
    assert_eq!(status, 200, "{applied}");
    let applied: serde_json::Value = serde_json::from_str(&applied).unwrap();
    assert_eq!((applied["matched"].as_u64(), applied["stopped"].as_u64()), (Some(1), Some(1)), "{applied}");
    let (status, _) = http(port, "POST", "/callbacks/email", &[], "this is not a bounce");
    assert_eq!(status, 400, "a request the plugin cannot read is refused");
    let report = daemon.report(first);
    assert_eq!(report["bounced"], 1, "{report}");
    assert_eq!(daemon.json(&format!("/api/members/{b}"))["stopped_addresses"], serde_json::json!(["email"]));

    // A's mailbox is gone at the relay: 550 5.1.1 at RCPT is a hard bounce right away
    std::fs::write(&unknown, format!("{a_address}\n")).unwrap();
    let second = daemon.run_now("winback");
    let report = daemon.report(second);
    assert_eq!(report["failed"], 1, "only A's message failed: {report}");
    assert_eq!(report["sent"].as_u64().unwrap() + 2, sent.len() as u64, "B was left out of the plan, A refused: {report}");
    let member_a = daemon.json(&format!("/api/members/{a}"));
    assert_eq!(member_a["stopped_addresses"], serde_json::json!(["email"]), "{member_a}");

    // from now on neither address is planned or mailed
    let before = mails(sink.path()).len();
    let third = daemon.run_now("winback");
    let after = mails(sink.path());
    assert_eq!(after.len() - before, sent.len() - 2, "everyone else got run {third}");
    for address in [&a_address, &b_address] {
        assert_eq!(after.iter().filter(|(to, _)| to == address).count(), 1, "{address} got only the first message");
    }
    let samples = metric_samples(&daemon);
    for expected in [
        format!("rekindle_sends_total [('channel', 'email'), ('outcome', 'sent')] {}.0", after.len()),
        "rekindle_sends_total [('channel', 'email'), ('outcome', 'failed')] 1.0".to_string(),
        format!("rekindle_send_seconds_count [('channel', 'email')] {}.0", after.len() + 1),
        "rekindle_feedback_total [('channel', 'email'), ('state', 'failed')] 2.0".to_string(),
        "rekindle_run_seconds_count [] 3.0".to_string(),
    ] {
        assert!(samples.contains(&expected), "missing {expected:?} in\n{samples}");
    }
}

#[test]
fn kannel_delivery_reports_and_stop_replies_come_back() {
    let _one_gateway = crate::plugin_support::kannel_lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    drop(sample_store(d, 200));
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/callbacks/sms");
    let base = crate::plugin_support::kannel_base();
    let gateway = ScriptServer::start("sms-gateway.sh", &[&base.to_string(), &callback]);
    let sendsms = base + 13;
    write_config(
        d,
        port,
        &format!(
            "[channels.sms]\nplugin = \"{}\"\nsettings = {{ provider = \"kannel\", endpoint = \"http://127.0.0.1:{sendsms}/cgi-bin/sendsms\", from = \"TeaShop\", username = \"tester\", dlr_url = \"{callback}\" }}\nsecrets = {{ password = \"testpw\" }}\ngrants = {{ http = [\"127.0.0.1:{sendsms}\"] }}\n",
            plugin("sms").display()
        ),
    );
    write_rule(d, "sms-winback", "sms", "max_audience = 8\norder_by = \"monetary desc\"\n");
    let daemon = Daemon::start(d, port);

    let run = daemon.run_now("sms-winback");
    let sent = daemon.report(run)["sent"].as_u64().unwrap();
    assert!(sent >= 4, "{sent} SMS sent");
    // the fake SMSC acknowledges (DLR 8) and delivers (DLR 1); smsbox calls the callback
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let report = loop {
        let r = daemon.report(run);
        if r["delivered"].as_u64() == Some(sent) {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "delivery reports did not all arrive: {r}\n{}", std::fs::read_to_string(d.join("daemon.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(report["bounced"], 0, "{report}");

    // a STOP reply from one of the recipients, through Kannel to the callback
    let texted: Vec<String> = std::fs::read_to_string(gateway.path().join("fakesmsc.log"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("Got message"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('+')).map(str::to_string))
        .collect();
    assert_eq!(texted.len() as u64, sent, "the fake SMSC got every message: {texted:?}");
    let phone = texted[0].clone();
    let status = Command::new("bash").arg(repo().join("scripts/sms-gateway.sh")).args(["mo", &gateway.path().display().to_string(), &phone, "12345", "STOP"]).status().unwrap();
    assert!(status.success());
    let samples = wait_for(Duration::from_secs(60), || {
        let s = metric_samples(&daemon);
        s.contains("rekindle_feedback_total [('channel', 'sms'), ('state', 'opted_out')] 1.0").then_some(s)
    });
    assert!(samples.contains(&format!("rekindle_sends_total [('channel', 'sms'), ('outcome', 'sent')] {sent}.0")), "{samples}");

    // the next run texts everyone again except the number that said STOP
    let again = daemon.run_now("sms-winback");
    let texted_again: Vec<String> = std::fs::read_to_string(gateway.path().join("fakesmsc.log"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("Got message"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('+')).map(str::to_string))
        .skip(texted.len())
        .collect();
    assert!(!texted_again.is_empty(), "run {again} sent");
    assert!(!texted_again.contains(&phone), "no SMS after STOP: {texted_again:?}");
}
