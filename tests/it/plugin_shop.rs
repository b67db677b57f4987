//! The shop plugin against a real local HTTP server that verifies its
//! HMAC-SHA256 signature (scripts/http_sink.py): signed requests are accepted,
//! a wrong secret is refused by the server, the platform's error codes map
//! to retryable or permanent, and signed webhooks parse into status updates.

use hmac::{Hmac, Mac};
use crate::plugin_support::*;
use rekindle::plugin::{CallbackRequest, ChannelHost, DeliveryState, HostOptions, SendErrorKind};

const SECRET: &str = "whsec-test-0123456789";

fn shop_channel(port: u16, path: &str, secret: &str) -> rekindle::plugin::ChannelConfig {
    channel(
        "shop",
        &format!(
            "settings = {{ endpoint = \"http://127.0.0.1:{port}{path}\" }}\nsecrets = {{ signing_secret = \"{secret}\" }}\n[grants]\nhttp = [\"127.0.0.1:{port}\"]\n"
        ),
    )
}

#[test]
fn signed_messages_are_verified_by_the_receiving_server() {
    let port = free_port();
    let sink = ScriptServer::start("http-sink.sh", &[&port.to_string(), "--hmac-secret", SECRET]);
    let host = ChannelHost::load(
        &channels(vec![
            ("shop", shop_channel(port, "/v1/messages", SECRET)),
            ("wrong-secret", shop_channel(port, "/v1/messages", "not-the-secret")),
            ("rate-limited", shop_channel(port, "/status/429", SECRET)),
            ("server-error", shop_channel(port, "/status/503", SECRET)),
            ("not-found", shop_channel(port, "/status/404", SECRET)),
        ]),
        &HostOptions::default(),
    )
    .expect("load");
    let rt = runtime();

    let mut sent = Vec::new();
    for n in 0..5 {
        let mut msg = message(&format!("cust-{n}"), &format!("m-{n}/winback/1"));
        msg.text = format!("欢迎回来 #{n}");
        msg.channel_data = vec![("template".into(), "winback_v2".into())];
        let delivery = rt.block_on(host.send("shop", msg.clone())).expect("signed send");
        assert!(delivery.provider_id.starts_with("msg-"), "{delivery:?}");
        sent.push(msg);
    }
    let recorded = requests(sink.path());
    assert_eq!(recorded.len(), sent.len());
    for (request, msg) in recorded.iter().zip(&sent) {
        assert_eq!(request["signature_ok"], true, "{request}");
        assert_eq!(request["path"], "/v1/messages");
        assert_eq!(request["headers"]["idempotency-key"], msg.idempotency_key.as_str());
        assert_eq!(request["headers"]["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(request["body"].as_str().unwrap_or("")).expect("json body");
        assert_eq!(body["customer_id"], msg.recipient.address.as_str());
        assert_eq!(body["text"], msg.text.as_str());
        assert_eq!(body["template"], "winback_v2");
    }

    let cases = [
        ("wrong-secret", SendErrorKind::Permanent, "401 invalid_signature"),
        ("rate-limited", SendErrorKind::Retryable, "429"),
        ("server-error", SendErrorKind::Retryable, "503"),
        ("not-found", SendErrorKind::Permanent, "404"),
    ];
    for (channel, kind, reason) in cases {
        let err = rt.block_on(host.send(channel, message("cust-x", "k-x"))).expect_err(channel);
        assert_eq!(err.kind, kind, "{channel}: {err}");
        assert!(err.reason.contains(reason), "{channel}: {err}");
    }
    let recorded = requests(sink.path());
    let forged = recorded.iter().filter(|r| r["signature_ok"] == false).count();
    assert_eq!(forged, 1, "only the wrong-secret request fails verification");
}

fn signed_callback(secret: &str, timestamp: i64, body: &str) -> CallbackRequest {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    CallbackRequest {
        method: "POST".into(),
        path: "/".into(),
        headers: vec![
            ("X-Rekindle-Timestamp".into(), timestamp.to_string()),
            ("X-Rekindle-Signature".into(), format!("sha256={signature}")),
        ],
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn webhooks_are_believed_only_when_signed_and_fresh() {
    let host = ChannelHost::load(&channels(vec![("shop", shop_channel(9, "/v1/messages", SECRET))]), &HostOptions::default())
        .expect("load");
    let rt = runtime();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let body = r#"{"events":[{"message_id":"msg-1","customer_id":"cust-1","status":"read"},{"message_id":"msg-2","customer_id":"cust-2","status":"unsubscribed","reason":"customer asked"}]}"#;

    let updates = rt.block_on(host.parse_callback("shop", signed_callback(SECRET, now, body))).expect("valid webhook");
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].state, DeliveryState::Delivered);
    assert_eq!(updates[1].state, DeliveryState::OptedOut);
    assert_eq!(updates[1].recipient.as_deref(), Some("cust-2"));

    let cases = [
        (signed_callback("forged", now, body), "signature does not verify"),
        (signed_callback(SECRET, now - 3600, body), "away from now"),
        (CallbackRequest { headers: vec![], ..signed_callback(SECRET, now, body) }, "no X-Rekindle-Timestamp"),
    ];
    for (request, reason) in cases {
        let err = rt.block_on(host.parse_callback("shop", request)).expect_err(reason);
        assert!(err.to_string().contains(reason), "{err}");
    }
    let mut tampered = signed_callback(SECRET, now, body);
    tampered.body = body.replace("unsubscribed", "delivered").into_bytes();
    assert!(rt.block_on(host.parse_callback("shop", tampered)).is_err());
}
