//! Delivery feedback through the running daemon over real HTTP on 127.0.0.1: an SMTP
//! relay refusing an unknown mailbox (550 5.1.1) and a Postfix bounce (RFC 3464) posted
//! to the email callback stop that address; Kannel's delivery reports and a STOP reply
//! come back through the SMS callback, at each channel's secret callback URL. Forged
//! reports (the old URL without the secret, a wrong secret) are refused and change
//! nothing. Reports count delivered, bounced and failed messages, the next runs leave
//! the stopped addresses out, a STOP unsubscribes its member, a flood of reports is
//! answered with 429 once the parked bound is reached, and `/metrics` carries
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
    write_config_at(dir, port, &format!("http://127.0.0.1:{port}"), channel)
}

fn write_config_at(dir: &Path, port: u16, public_url: &str, channel: &str) {
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[store]\npath = \"store\"\n[campaigns]\nrules_dir = \"rules\"\nfrequency_cap = {{ messages = 100, days = 1 }}\npublic_url = \"{public_url}\"\n\
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
    mail_headers(sink, &["X-Sink-Rcpt-To", "Message-ID"]).into_iter().map(|h| (h[0].trim_matches(['<', '>']).to_string(), h[1].clone())).collect()
}

/// These headers (unfolded) of every stored message of the aiosmtpd sink.
fn mail_headers(sink: &Path, names: &[&str]) -> Vec<Vec<String>> {
    let dir = sink.join("maildir/new");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let raw = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let text = raw.replace("\r\n ", " ").replace("\n ", " ");
        let header = |name: &str| {
            text.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())).unwrap_or_default()
        };
        out.push(names.iter().map(|n| header(n)).collect());
    }
    out
}

/// The member id of the generated member whose `column` (email, phone) is `value`.
fn member_with(d: &Path, column: &str, value: &str) -> String {
    let mut reader = csv::Reader::from_path(d.join("data/members.csv")).unwrap();
    let at = reader.headers().unwrap().iter().position(|h| h == column).unwrap();
    reader.records().map(|r| r.unwrap()).find(|r| &r[at] == value).map(|r| r[0].to_string()).unwrap_or_else(|| panic!("no member with {column} {value}"))
}

/// The path part of a channel's callback URL, and the same with a wrong secret.
fn callback_paths(url: &str, public_url: &str) -> (String, String) {
    let path = url.strip_prefix(public_url).unwrap_or_else(|| panic!("{url}")).to_string();
    let (root, secret) = path.rsplit_once('/').unwrap();
    assert_eq!(secret.len(), 64, "a 256-bit secret: {path}");
    let wrong: String = secret.chars().rev().collect();
    (path.clone(), format!("{root}/{wrong}"))
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
    // an https public_url (the shop's proxy): every mail carries both unsubscribe headers
    write_config_at(
        d,
        port,
        "https://shop.example",
        &format!(
            "[channels.email]\nplugin = \"{}\"\nsettings = {{ from_address = \"news@tea.example\", unsubscribe_mailto = \"unsub@tea.example\" }}\n[channels.email.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n",
            plugin("email").display()
        ),
    );
    write_rule(d, "winback", "email", "");
    let daemon = Daemon::start(d, port);

    let first = daemon.run_now("winback");
    let sent = mails(sink.path());
    assert!(sent.len() >= 10, "run {first} mailed {}", sent.len());
    assert_eq!(daemon.report(first)["sent"], sent.len());
    for h in mail_headers(sink.path(), &["List-Unsubscribe", "List-Unsubscribe-Post"]) {
        let targets: Vec<&str> = h[0].split(',').map(str::trim).collect();
        assert_eq!(targets.len(), 2, "{h:?}");
        assert!(targets[0].starts_with("<https://shop.example/u/") && targets[0].ends_with('>'), "{h:?}");
        assert_eq!(targets[1], "<mailto:unsub@tea.example?subject=unsubscribe>", "{h:?}");
        assert_eq!(h[1], "List-Unsubscribe=One-Click", "RFC 8058 one-click: {h:?}");
    }
    let (a_address, a_id) = sent[0].clone();
    let (b_address, b_id) = sent[1].clone();
    assert!(!a_id.contains(&member_with(d, "email", &a_address)), "the Message-ID shows no member id: {a_id}");
    let (a, b) = (member_with(d, "email", &a_address), member_with(d, "email", &b_address));

    // B's mailbox bounces later: the MTA's report comes back to the callback
    let dsn = std::fs::read_to_string(repo().join("tests/it/fixtures/bounce-postfix.eml")).unwrap().replace("@RECIPIENT@", &b_address).replace("@MESSAGE_ID@", &b_id);
    let (callback, wrong) = callback_paths(daemon.json("/api/callbacks")["email"].as_str().unwrap(), "https://shop.example");
    // a forged bounce, at the old URL or with a wrong secret, is refused and stops no one
    for forged in ["/callbacks/email", wrong.as_str(), &format!("{wrong}/bounce"), &callback[..callback.len() - 1]] {
        let (status, body) = http(port, "POST", forged, &[("Content-Type", "message/rfc822")], &dsn);
        assert_eq!(status, 403, "{forged}: {body}");
    }
    assert_eq!(daemon.report(first)["bounced"], 0, "nothing changed");
    assert_eq!(daemon.json(&format!("/api/members/{b}"))["stopped_addresses"], serde_json::json!([]));
    let (status, applied) = http(port, "POST", &callback, &[("Content-Type", "message/rfc822")], &dsn);
    assert_eq!(status, 200, "{applied}");
    let applied: serde_json::Value = serde_json::from_str(&applied).unwrap();
    assert_eq!((applied["matched"].as_u64(), applied["stopped"].as_u64()), (Some(1), Some(1)), "{applied}");
    let (status, _) = http(port, "POST", &callback, &[], "this is not a bounce");
    assert_eq!(status, 400, "a request the plugin cannot read is refused");
    // an SNS notification without a valid signature is not authentic, even at the right URL
    let unsigned = serde_json::json!({"Type": "Notification", "MessageId": "1", "TopicArn": "arn:aws:sns:us-east-1:1:ses", "Timestamp": "2026-01-01T00:00:00Z",
        "Message": serde_json::json!({"notificationType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": a_address}]}}).to_string()});
    let (status, body) = http(port, "POST", &callback, &[("Content-Type", "application/json")], &unsigned.to_string());
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SigningCertURL"), "{body}");
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
    let base = crate::plugin_support::kannel_base();
    let sendsms = base + 13;
    write_config(
        d,
        port,
        &format!(
            "[feedback]\nparked_max_per_channel = 200\nparked_max_per_provider_id = 4\n\
             [channels.sms]\nplugin = \"{}\"\nsettings = {{ provider = \"kannel\", endpoint = \"http://127.0.0.1:{sendsms}/cgi-bin/sendsms\", from = \"TeaShop\", username = \"tester\" }}\nsecrets = {{ password = \"testpw\" }}\ngrants = {{ http = [\"127.0.0.1:{sendsms}\"] }}\n",
            plugin("sms").display()
        ),
    );
    write_rule(d, "sms-winback", "sms", "max_audience = 8\norder_by = \"monetary desc\"\n");
    // the operator reads the channel's secret callback URL and gives it to Kannel's MO service
    let out = Command::new(env!("CARGO_BIN_EXE_rekindle")).current_dir(d).arg("--config").arg(d.join("config.toml")).args(["plugin", "callback-url", "sms"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (callback, wrong) = callback_paths(&url, &format!("http://127.0.0.1:{port}"));
    let gateway = ScriptServer::start("sms-gateway.sh", &[&base.to_string(), &format!("{url}/mo")]);
    let daemon = Daemon::start(d, port);
    assert_eq!(daemon.json("/api/callbacks")["sms"], url.as_str(), "the daemon uses the same URL");

    let run = daemon.run_now("sms-winback");
    let sent = daemon.report(run)["sent"].as_u64().unwrap();
    assert!(sent >= 4, "{sent} SMS sent");
    // the fake SMSC acknowledges (DLR 8) and delivers (DLR 1); smsbox calls the secret dlr-url
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

    let texted: Vec<String> = std::fs::read_to_string(gateway.path().join("fakesmsc.log"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("Got message"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('+')).map(str::to_string))
        .collect();
    assert_eq!(texted.len() as u64, sent, "the fake SMSC got every message: {texted:?}");
    let (phone, other) = (texted[0].clone(), texted[1].clone());
    // forged STOPs and failure reports for the other number, without the secret: refused
    let forged_stop = format!("from={}&text=STOP", other.replace('+', "%2B"));
    for path in [format!("/callbacks/sms?{forged_stop}"), format!("/callbacks/sms/mo?{forged_stop}"), format!("{wrong}/mo?{forged_stop}")] {
        let (status, body) = http(port, "GET", &path, &[], "");
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, body) = http(port, "POST", "/callbacks/sms", &[("Content-Type", "application/x-www-form-urlencoded")], &forged_stop);
    assert_eq!(status, 403, "{body}");
    for _ in 0..3 {
        let (status, _) = http(port, "GET", &format!("{wrong}/dlr?id=x&status=16&to={}", other.replace('+', "%2B")), &[], "");
        assert_eq!(status, 403);
    }

    // a STOP reply from one of the recipients, through Kannel to the secret MO URL
    let status = Command::new("bash").arg(repo().join("scripts/sms-gateway.sh")).args(["mo", &gateway.path().display().to_string(), &phone, "12345", "STOP"]).status().unwrap();
    assert!(status.success());
    let samples = wait_for(Duration::from_secs(60), || {
        let s = metric_samples(&daemon);
        s.contains("rekindle_feedback_total [('channel', 'sms'), ('state', 'opted_out')] 1.0").then_some(s)
    });
    assert!(samples.contains(&format!("rekindle_sends_total [('channel', 'sms'), ('outcome', 'sent')] {sent}.0")), "{samples}");
    // the STOP named only the number: the member rekindle texted there is unsubscribed
    let stopped = daemon.json(&format!("/api/members/{}", member_with(d, "phone", &phone)));
    assert_eq!(stopped["unsubscribed"].as_array().map(|a| a.iter().any(|c| c.to_string().contains("sms"))), Some(true), "{stopped}");
    assert_eq!(daemon.json(&format!("/api/members/{}", member_with(d, "phone", &other)))["unsubscribed"], serde_json::json!([]), "the forged STOP changed nothing");

    // a gateway that reports the sender without its country code (a Chinese SMSC's
    // `13800138000`) names the same number: read in `[members] phone_region` (CN)
    let third = texted.iter().find(|p| p.starts_with("+861") && **p != phone && **p != other).expect("a third +86 mobile number").clone();
    let national = third.trim_start_matches("+86");
    let status = Command::new("bash").arg(repo().join("scripts/sms-gateway.sh")).args(["mo", &gateway.path().display().to_string(), national, "12345", "STOP"]).status().unwrap();
    assert!(status.success());
    wait_for(Duration::from_secs(60), || metric_samples(&daemon).contains("rekindle_feedback_total [('channel', 'sms'), ('state', 'opted_out')] 2.0").then_some(()));
    let stopped = daemon.json(&format!("/api/members/{}", member_with(d, "phone", &third)));
    assert_eq!(stopped["unsubscribed"].as_array().map(|a| a.iter().any(|c| c.to_string().contains("sms"))), Some(true), "STOP from {national}: {stopped}");

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
    assert!(texted_again.contains(&other), "the number of the forged STOP still gets its SMS: {texted_again:?}");

    // a flood of reports about ids rekindle never sent (a leaked URL): parked up to the
    // bounds of [feedback], then 429; nothing else is lost
    let dlr = |id: &str| http(port, "GET", &format!("{callback}/dlr?id={id}&status=1&to=%2B8613800000000"), &[], "");
    let statuses: Vec<u16> = (0..5).map(|_| dlr("same-id").0).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429], "at most 4 reports per provider id");
    let mut parked = 4;
    let refused = loop {
        let (status, body) = dlr(&format!("flood-{parked}"));
        if status == 429 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        parked += 1;
        assert!(parked <= 200, "the channel bound holds");
    };
    assert_eq!(parked, 200, "parked up to parked_max_per_channel: {refused}");
    assert!(refused.contains("\"refused\":1"), "{refused}");
    let (status, _) = http(port, "GET", "/healthz", &[], "");
    assert_eq!(status, 200);
}
