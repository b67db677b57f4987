//! The email plugin against a real SMTP server (aiosmtpd, STARTTLS + AUTH or
//! implicit TLS + AUTH, on 127.0.0.1): messages arrive, and an independent
//! parser (Python's email package) finds the headers, encodings and both parts
//! as sent; a relay whose certificate does not chain to the trusted CA gets nothing.

use std::process::Command;
use std::time::Duration;

use crate::plugin_support::*;
use rekindle::plugin::{CallbackRequest, ChannelHost, DeliveryState, HostOptions, OutboundMessage, SendErrorKind};

fn email_channel(port: u16, state: &std::path::Path, password: &str) -> rekindle::plugin::ChannelConfig {
    relay_channel(port, "starttls", Some(&state.join("tls/ca.pem")), password)
}

/// The email plugin with a relay on 127.0.0.1 (by the name `localhost`, which the
/// sink's certificate carries), trusting `ca_file` when given.
fn relay_channel(port: u16, tls: &str, ca_file: Option<&std::path::Path>, password: &str) -> rekindle::plugin::ChannelConfig {
    let ca_line = ca_file.map(|ca| format!("ca_file = {:?}\n", ca.display().to_string())).unwrap_or_default();
    channel(
        "email",
        &format!(
            r#"settings = {{ from_address = "news@tea.example", from_name = "茶馆 Tea House", unsubscribe_mailto = "unsub@tea.example" }}
[smtp]
host = "localhost"
port = {port}
tls = "{tls}"
username = "shop"
password = "{password}"
{ca_line}"#
        ),
    )
}

fn read_mail(path: &std::path::Path) -> serde_json::Value {
    let output = Command::new(python())
        .arg(repo().join("scripts/read_mail.py"))
        .arg(path)
        .output()
        .expect("run read_mail.py");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("read_mail json")
}

fn stored(state: &std::path::Path, count: usize) -> Vec<std::path::PathBuf> {
    wait_for(Duration::from_secs(10), || {
        let mut files: Vec<_> = std::fs::read_dir(state.join("maildir/new")).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        (files.len() >= count).then_some(files)
    })
}

#[test]
fn messages_arrive_with_encoded_headers_and_both_parts() {
    let port = free_port();
    let sink = ScriptServer::start("smtp-sink.sh", &[&port.to_string(), "--tls", "starttls", "--auth", "shop:s3cret", "--require-auth"]);
    let host = ChannelHost::load(&channels(vec![("mail", email_channel(port, sink.path(), "s3cret"))]), &HostOptions::default())
        .expect("load");
    let rt = runtime();

    let subject = "好久不见，李雷！您的专属九折优惠券已到账，欢迎回来选购今年的新茶 🍵";
    let text = "您好 李雷，\n\n上次的龙井喝完了吗？这周回购享九折。\n\nReply STOP to opt out.";
    let html = "<html><body><p>您好 <b>李雷</b>，上次的龙井喝完了吗？</p></body></html>";
    let cases: Vec<(OutboundMessage, Option<&str>)> = vec![
        (
            OutboundMessage {
                recipient: rekindle::plugin::Recipient {
                    address: "li.lei@example.com".into(),
                    name: Some("李雷".into()),
                    member_id: "m-1".into(),
                },
                subject: Some(subject.into()),
                text: text.into(),
                html: Some(html.into()),
                idempotency_key: "m-1/winback/1".into(),
                channel_data: vec![("unsubscribe_url".into(), "https://tea.example/u/m-1?c=winback".into())],
                metadata: vec![("campaign".into(), "winback".into())],
            },
            Some(html),
        ),
        (
            OutboundMessage {
                recipient: rekindle::plugin::Recipient { address: "amy@example.org".into(), name: Some("Amy O'Brien".into()), member_id: "m-2".into() },
                subject: Some("Your tea is waiting".into()),
                text: "Plain text only.".into(),
                html: None,
                idempotency_key: "m-2/winback/1".into(),
                channel_data: vec![],
                metadata: vec![],
            },
            None,
        ),
    ];

    let mut deliveries = Vec::new();
    for (message, _) in &cases {
        let delivery = rt.block_on(host.send("mail", message.clone())).expect("send");
        assert!(delivery.metadata.iter().any(|(k, v)| k == "smtp_reply" && v.contains("queued")), "{delivery:?}");
        deliveries.push(delivery);
    }
    let files = stored(sink.path(), cases.len());
    assert_eq!(files.len(), cases.len());
    let mails: Vec<serde_json::Value> = files.iter().map(|f| read_mail(f)).collect();

    for ((message, html), delivery) in cases.iter().zip(&deliveries) {
        let mail = mails
            .iter()
            .find(|m| m["headers"]["x-sink-rcpt-to"][0] == format!("<{}>", message.recipient.address))
            .unwrap_or_else(|| panic!("no stored mail for {}", message.recipient.address));
        let header = |name: &str| mail["headers"][name][0].as_str().unwrap_or_default().to_string();
        assert_eq!(header("x-sink-auth"), "shop");
        assert_eq!(header("x-sink-tls"), "yes");
        assert_eq!(header("x-sink-mail-from"), "<news@tea.example>");
        assert_eq!(mail["subject"], message.subject.clone().unwrap_or_default());
        assert_eq!(mail["from"], "茶馆 Tea House <news@tea.example>");
        let name = message.recipient.name.clone().unwrap_or_default();
        let to = mail["to"].as_str().unwrap_or_default().replace('"', "");
        assert_eq!(to, format!("{name} <{}>", message.recipient.address));
        assert_eq!(header("message-id"), delivery.provider_id);
        assert_eq!(header("message-id"), rekindle_plugin_sdk::mime::message_id(&message.idempotency_key, "tea.example"));
        assert!(!header("message-id").contains("m-"), "no member id in the header: {}", header("message-id"));
        assert_eq!(header("mime-version"), "1.0");
        assert!(mail["longest_line"].as_u64().unwrap_or(999) <= 998);
        assert_eq!(mail["crlf_only"], true);
        assert_eq!(mail["defects"], serde_json::json!([]));
        let unsubscribe = header("list-unsubscribe");
        assert!(unsubscribe.contains("<mailto:unsub@tea.example?subject=unsubscribe>"), "{unsubscribe}");
        let parts = mail["parts"].as_array().expect("parts");
        match html {
            Some(html) => {
                assert_eq!(mail["content_type"], "multipart/alternative");
                assert_eq!(parts.len(), 2);
                assert_eq!(parts[0]["content_type"], "text/plain");
                assert_eq!(parts[1]["content_type"], "text/html");
                assert_eq!(parts[1]["text"], *html);
                assert!(unsubscribe.contains("<https://tea.example/u/m-1?c=winback>"), "{unsubscribe}");
                assert_eq!(header("list-unsubscribe-post"), "List-Unsubscribe=One-Click");
                assert_eq!(header("x-rekindle-campaign"), "winback");
            }
            None => {
                assert_eq!(mail["content_type"], "text/plain");
                assert_eq!(parts.len(), 1);
                // One-click needs an https target; a mailto alone gets no -Post header.
                assert!(mail["headers"]["list-unsubscribe-post"].is_null());
            }
        }
        assert_eq!(parts[0]["charset"], "utf-8");
        assert_eq!(parts[0]["transfer_encoding"], "base64");
        assert_eq!(parts[0]["text"], message.text);
    }

    // Same idempotency key on a retry: the same Message-ID.
    let retry = rt.block_on(host.send("mail", cases[0].0.clone())).expect("retry");
    assert_eq!(retry.provider_id, deliveries[0].provider_id);

    // A bad address is a permanent error and never reaches the relay.
    let mut bad = cases[1].0.clone();
    bad.recipient.address = "amy@example.org\r\nBcc: everyone@example.org".into();
    let err = rt.block_on(host.send("mail", bad)).expect_err("bad address");
    assert_eq!(err.kind, SendErrorKind::Permanent, "{err}");
    assert_eq!(stored(sink.path(), 3).len(), 3);
}

#[test]
fn relay_trouble_is_retryable_and_names_the_cause() {
    let port = free_port();
    let sink = ScriptServer::start("smtp-sink.sh", &[&port.to_string(), "--tls", "starttls", "--auth", "shop:s3cret", "--require-auth"]);
    let dead_port = free_port();
    let host = ChannelHost::load(
        &channels(vec![
            ("wrong-password", email_channel(port, sink.path(), "nope")),
            ("dead-relay", email_channel(dead_port, sink.path(), "s3cret")),
        ]),
        &HostOptions::default(),
    )
    .expect("load");
    let rt = runtime();
    let message = message("amy@example.org", "k-1");
    let cases = [("wrong-password", "relay refused the login"), ("dead-relay", "cannot reach relay")];
    for (channel, reason) in cases {
        let err = rt.block_on(host.send(channel, message.clone())).expect_err(channel);
        assert_eq!(err.kind, SendErrorKind::Retryable, "{channel}: {err}");
        assert!(err.reason.contains(reason), "{channel}: {err}");
    }
    assert!(!sink.path().join("maildir/new").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false));
}

#[test]
fn bounce_and_complaint_callbacks_become_status_updates() {
    let port = free_port();
    let sink = ScriptServer::start("smtp-sink.sh", &[&port.to_string(), "--tls", "starttls", "--auth", "shop:s3cret"]);
    let host = ChannelHost::load(&channels(vec![("mail", email_channel(port, sink.path(), "s3cret"))]), &HostOptions::default())
        .expect("load");
    let rt = runtime();
    let inner = serde_json::json!({
        "notificationType": "Bounce",
        "mail": {"messageId": "ses-1", "commonHeaders": {"messageId": "<rk.m-1=2Fwinback=2F1@tea.example>"}},
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "gone@example.com", "diagnosticCode": "smtp; 550 5.1.1 unknown"}]}
    });
    // wrapped in SNS, it is believed only with a valid SNS signature (none here)
    let wrapped = serde_json::json!({"Type": "Notification", "Message": inner.to_string()}).to_string();
    let request = CallbackRequest { method: "POST".into(), path: "/".into(), headers: vec![], body: wrapped.into_bytes() };
    let err = rt.block_on(host.parse_callback("mail", request)).expect_err("unsigned SNS");
    assert!(matches!(err, rekindle::plugin::PluginError::Unauthenticated { .. }), "{err}");
    // bare (the operator's own relay of SES events, behind the secret callback URL)
    let request = CallbackRequest { method: "POST".into(), path: "/".into(), headers: vec![], body: inner.to_string().into_bytes() };
    let updates = rt.block_on(host.parse_callback("mail", request)).expect("callback");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].state, DeliveryState::Failed);
    assert_eq!(updates[0].recipient.as_deref(), Some("gone@example.com"));
    assert_eq!(updates[0].provider_id.as_deref(), Some("<rk.m-1=2Fwinback=2F1@tea.example>"));

    let junk = CallbackRequest { method: "POST".into(), path: "/".into(), headers: vec![], body: b"<xml/>".to_vec() };
    let err = rt.block_on(host.parse_callback("mail", junk)).expect_err("junk");
    assert!(err.to_string().contains("neither JSON nor a delivery status notification"), "{err}");
}

#[test]
fn implicit_tls_relay_is_reached_only_through_the_trusted_ca() {
    let port = free_port();
    let sink = ScriptServer::start("smtp-sink.sh", &[&port.to_string(), "--tls", "implicit", "--auth", "shop:s3cret", "--require-auth"]);
    let ca = sink.path().join("tls/ca.pem");
    let host = ChannelHost::load(
        &channels(vec![
            ("smtps", relay_channel(port, "implicit", Some(&ca), "s3cret")),
            ("smtps-untrusted", relay_channel(port, "implicit", None, "s3cret")),
        ]),
        &HostOptions::default(),
    )
    .expect("load");
    let rt = runtime();

    // Without the relay's CA the handshake fails, so nothing is sent in clear.
    let err = rt.block_on(host.send("smtps-untrusted", message("amy@example.org", "k-untrusted"))).expect_err("untrusted relay");
    assert_eq!(err.kind, SendErrorKind::Retryable, "{err}");
    assert!(err.reason.contains("cannot reach relay") && err.reason.to_lowercase().contains("certificate"), "{err}");

    let keys = ["m-1/smtps/1", "m-2/smtps/1", "m-3/smtps/1"];
    for key in keys {
        let delivery = rt.block_on(host.send("smtps", message("amy@example.org", key))).expect("send over implicit tls");
        assert!(delivery.metadata.iter().any(|(k, v)| k == "smtp_reply" && v.contains("queued")), "{delivery:?}");
    }
    let files = stored(sink.path(), keys.len());
    assert_eq!(files.len(), keys.len(), "only the trusted channel's messages arrive");
    for file in &files {
        let mail = read_mail(file);
        let header = |name: &str| mail["headers"][name][0].as_str().unwrap_or_default().to_string();
        assert_eq!(header("x-sink-tls"), "yes");
        assert_eq!(header("x-sink-auth"), "shop");
        assert_eq!(header("x-sink-rcpt-to"), "<amy@example.org>");
        assert_eq!(mail["defects"], serde_json::json!([]));
        assert_eq!(mail["parts"][0]["text"], "hello");
    }
}

/// A throwaway RSA key and self-signed certificate (openssl), served over HTTP on
/// 127.0.0.1 by Python's http.server the way SNS serves its signing certificate.
struct CertServer {
    dir: tempfile::TempDir,
    port: u16,
    child: std::process::Child,
}

impl CertServer {
    fn start() -> CertServer {
        let dir = tempfile::tempdir().unwrap();
        for (key, cert) in [("key.pem", "cert.pem"), ("other-key.pem", "other-cert.pem")] {
            let status = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sns.test", "-keyout"])
                .arg(dir.path().join(key))
                .arg("-out")
                .arg(dir.path().join(cert))
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl");
            assert!(status.success());
        }
        std::fs::write(dir.path().join("confirm"), "<ConfirmSubscriptionResponse/>").unwrap();
        let port = free_port();
        let child = Command::new(python())
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("access.log")).unwrap())
            .spawn()
            .expect("http.server");
        wait_for(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        CertServer { dir, port, child }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn url(&self, file: &str) -> String {
        format!("http://127.0.0.1:{}/{file}", self.port)
    }

    /// base64 of openssl's SHA1withRSA (version 1) or SHA256withRSA (2) signature.
    fn sign(&self, key: &str, version: &str, text: &str) -> String {
        let digest = if version == "1" { "-sha1" } else { "-sha256" };
        let data = self.dir.path().join("to-sign");
        std::fs::write(&data, text).unwrap();
        let out = Command::new("openssl").args(["dgst", digest, "-sign"]).arg(self.dir.path().join(key)).arg(&data).output().expect("openssl dgst");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let b64 = Command::new("openssl").args(["base64", "-A"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&out.stdout)?;
            c.wait_with_output()
        });
        String::from_utf8_lossy(&b64.unwrap().stdout).trim().to_string()
    }
}

impl Drop for CertServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An SNS message of `kind` with these fields, signed as AWS documents it: the listed
/// fields as "Name\nvalue\n" in this order (written out here, apart from the plugin's code).
fn signed_sns(server: &CertServer, key: &str, version: &str, fields: &[(&str, String)]) -> serde_json::Value {
    let mut text = String::new();
    for (name, value) in fields {
        text.push_str(&format!("{name}\n{value}\n"));
    }
    let mut message: serde_json::Map<String, serde_json::Value> = fields.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(v.clone()))).collect();
    message.insert("SignatureVersion".into(), version.into());
    message.insert("Signature".into(), server.sign(key, version, &text).into());
    message.insert("SigningCertURL".into(), server.url(if key == "key.pem" { "cert.pem" } else { "other-cert.pem" }).into());
    serde_json::Value::Object(message)
}

#[test]
fn sns_notifications_are_believed_only_with_a_valid_signature() {
    use rekindle::plugin::PluginError;
    let mut server = CertServer::start();
    let topic = "arn:aws:sns:us-east-1:123456789012:ses-feedback";
    let config = channel(
        "email",
        &format!(
            r#"settings = {{ from_address = "news@tea.example", sns_topic_arns = "{topic}", sns_cert_url_prefix_for_testing = "http://127.0.0.1:{port}/" }}
[grants]
http = ["127.0.0.1:{port}"]
[smtp]
host = "127.0.0.1"
port = 9
"#,
            port = server.port
        ),
    );
    let host = ChannelHost::load(&channels(vec![("email", config)]), &HostOptions::default()).expect("load");
    let rt = runtime();
    let complaint = serde_json::json!({"notificationType": "Complaint", "mail": {"messageId": "ses-9"}, "complaint": {"complainedRecipients": [{"emailAddress": "angry@example.com"}]}}).to_string();
    let notification = |topic: &str, message: &str| -> Vec<(&'static str, String)> {
        vec![
            ("Message", message.to_string()),
            ("MessageId", "5b1f3c3e-0000-4000-8000-000000000001".to_string()),
            ("Subject", "Amazon SES Email Event".to_string()),
            ("Timestamp", "2026-12-01T08:00:00.000Z".to_string()),
            ("TopicArn", topic.to_string()),
            ("Type", "Notification".to_string()),
        ]
    };
    let post = |body: &serde_json::Value| {
        let request = CallbackRequest { method: "POST".into(), path: "/".into(), headers: vec![], body: body.to_string().into_bytes() };
        rt.block_on(host.parse_callback("email", request))
    };
    for version in ["1", "2"] {
        let updates = post(&signed_sns(&server, "key.pem", version, &notification(topic, &complaint))).unwrap_or_else(|e| panic!("version {version}: {e}"));
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].state, DeliveryState::Complained);
        assert_eq!(updates[0].recipient.as_deref(), Some("angry@example.com"));
    }
    let refused = |body: &serde_json::Value, why: &str| match post(body) {
        Err(PluginError::Unauthenticated { reason, .. }) => assert!(reason.contains(why), "{why}: {reason}"),
        other => panic!("{why}: {other:?}"),
    };
    let mut tampered = signed_sns(&server, "key.pem", "1", &notification(topic, &complaint));
    tampered["Message"] = complaint.replace("angry@", "someone-else@").into();
    refused(&tampered, "does not verify");
    let mut moved = signed_sns(&server, "key.pem", "1", &notification(topic, &complaint));
    moved["SigningCertURL"] = "https://evil.test/cert.pem".into();
    refused(&moved, "does not start with");
    let mut other_key = signed_sns(&server, "other-key.pem", "2", &notification(topic, &complaint));
    other_key["SigningCertURL"] = server.url("cert.pem").into();
    refused(&other_key, "does not verify");
    refused(&signed_sns(&server, "key.pem", "1", &notification("arn:aws:sns:us-east-1:999:not-ours", &complaint)), "sns_topic_arns");
    let mut unsigned = signed_sns(&server, "key.pem", "1", &notification(topic, &complaint));
    unsigned.as_object_mut().unwrap().remove("Signature");
    refused(&unsigned, "Signature");

    // a subscription confirmation of the accepted topic is confirmed by a GET of its SubscribeURL
    let confirmation = signed_sns(
        &server,
        "key.pem",
        "1",
        &[
            ("Message", "You have chosen to subscribe".to_string()),
            ("MessageId", "5b1f3c3e-0000-4000-8000-000000000002".to_string()),
            ("SubscribeURL", server.url("confirm?token=abc")),
            ("Timestamp", "2026-12-01T08:00:00.000Z".to_string()),
            ("Token", "abc".to_string()),
            ("TopicArn", topic.to_string()),
            ("Type", "SubscriptionConfirmation".to_string()),
        ],
    );
    assert_eq!(post(&confirmation).expect("confirmed"), vec![]);
    let log = std::fs::read_to_string(server.dir.path().join("access.log")).unwrap();
    assert!(log.contains("GET /confirm?token=abc"), "{log}");
    assert_eq!(log.matches("GET /cert.pem").count(), 1, "the certificate was fetched once, then the host's cache answered: {log}");

    // the certificate stays cached in the host after its server is gone
    server.stop();
    assert!(post(&signed_sns(&server, "key.pem", "2", &notification(topic, &complaint))).is_ok(), "from the cache");
}
