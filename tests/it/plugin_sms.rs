//! The SMS plugin against a real Kannel gateway (bearerbox + smsbox + the fake
//! SMSC, whose peer fakesmsc records every delivered message) and, for the
//! Twilio-style REST protocol, a real local HTTP server. Delivery reports that
//! Kannel posts back are fed to parse-callback.

use std::time::Duration;

use crate::plugin_support::*;
use rekindle::plugin::{CallbackRequest, ChannelHost, DeliveryState, HostOptions, SendErrorKind};

/// What fakesmsc printed, reassembled: `<from to ucs-2 %XX..>` (UTF-16BE,
/// percent-escaped), `<from to text ..>`, or for concatenated messages one
/// `<from to udh UDH data PAYLOAD>` line per part (UDH: reference, total, index).
fn delivered_texts(gateway: &std::path::Path) -> Vec<(String, String)> {
    let log = std::fs::read(gateway.join("fakesmsc.log")).unwrap_or_default();
    let mut texts = Vec::new();
    // (recipient, concatenation reference) -> (part index, payload) as they arrive
    type Parts = std::collections::BTreeMap<(String, u8), Vec<(u8, Vec<u8>)>>;
    let mut parts = Parts::default();
    for line in String::from_utf8_lossy(&log).lines() {
        let Some(inner) = line.split_once("Got message ").and_then(|(_, rest)| rest.split_once(": <")).and_then(|(_, rest)| rest.strip_suffix('>')) else {
            continue;
        };
        let fields: Vec<&str> = inner.splitn(4, ' ').collect();
        let [_from, to, kind, text] = fields[..] else { continue };
        match kind {
            "ucs-2" => texts.push((to.to_string(), utf16be(&percent_bytes(text)))),
            "udh" => {
                let Some((udh, payload)) = text.split_once(" data ") else { continue };
                let udh = percent_bytes(udh);
                if udh.len() < 6 {
                    continue;
                }
                let (reference, total, index) = (udh[3], udh[4], udh[5]);
                let entry = parts.entry((to.to_string(), reference)).or_default();
                entry.push((index, percent_bytes(payload)));
                if entry.len() == total as usize {
                    entry.sort();
                    let joined: Vec<u8> = entry.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
                    texts.push((to.to_string(), utf16be(&joined)));
                }
            }
            _ => texts.push((to.to_string(), String::from_utf8_lossy(&percent_bytes(text)).into_owned())),
        }
    }
    texts
}

fn utf16be(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes.chunks(2).map(|p| u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)])).collect();
    String::from_utf16_lossy(&units)
}

/// The request path with its query, as the daemon's callback endpoint would pass it.
fn rebuilt_path(recorded: &serde_json::Value) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect()
    };
    let query: Vec<String> = recorded["query"]
        .as_object()
        .map(|fields| fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v.as_str().unwrap_or("")))).collect())
        .unwrap_or_default();
    format!("{}?{}", recorded["path"].as_str().unwrap_or("/"), query.join("&"))
}

/// Twilio's signature computed by Python (an independent implementation).
fn twilio_signature(token: &str, url: &str, form_body: &str) -> String {
    let script = "import sys,hmac,hashlib,base64,urllib.parse\n\
token,url,body=sys.argv[1:4]\n\
params=urllib.parse.parse_qsl(body)\n\
data=url+''.join(k+v for k,v in sorted(params))\n\
print(base64.b64encode(hmac.new(token.encode(),data.encode(),hashlib.sha1).digest()).decode())";
    let output = std::process::Command::new(python()).args(["-c", script, token, url, form_body]).output().expect("python");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn percent_bytes(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    out
}

#[test]
fn kannel_delivers_with_opt_out_text_and_reports_back() {
    let _one_gateway = kannel_lock();
    let hook_port = free_port();
    let hook = ScriptServer::start("http-sink.sh", &[&hook_port.to_string()]);
    let base = kannel_base();
    let gateway = ScriptServer::start("sms-gateway.sh", &[&base.to_string(), &hook_port.to_string()]);
    let sendsms = base + 13;
    let config = channel(
        "sms",
        &format!(
            r#"settings = {{ provider = "kannel", endpoint = "http://127.0.0.1:{sendsms}/cgi-bin/sendsms", from = "TeaShop", username = "tester", opt_out_text = "回T退订" }}
secrets = {{ password = "testpw" }}
[grants]
http = ["127.0.0.1:{sendsms}"]
"#
        ),
    );
    let wrong_password = channel(
        "sms",
        &format!(
            r#"settings = {{ provider = "kannel", endpoint = "http://127.0.0.1:{sendsms}/cgi-bin/sendsms", from = "TeaShop", username = "tester" }}
secrets = {{ password = "wrong" }}
[grants]
http = ["127.0.0.1:{sendsms}"]
"#
        ),
    );
    // the host hands the plugin its callback URL; Kannel's DLRs go below it, to the hook
    let options = HostOptions { callback_urls: [("sms".to_string(), format!("http://127.0.0.1:{hook_port}/sms"))].into(), ..Default::default() };
    let host = ChannelHost::load(&channels(vec![("sms", config), ("sms-bad-login", wrong_password)]), &options).expect("load");
    let rt = runtime();

    let long = "Your favourite oolong is back in stock. ".repeat(5);
    let cases = [
        ("+8613800000001", "李雷您好，您常买的龙井新茶到了，本周回购九折。", "ucs2", "1", "李雷您好，您常买的龙井新茶到了，本周回购九折。 回T退订"),
        ("+4915112345678", "Hallo, 20% Rabatt für Sie!", "ucs2", "1", "Hallo, 20% Rabatt für Sie! 回T退订"),
        ("+15551234567", long.trim_end(), "ucs2", "4", "LONG"),
    ];
    for (n, (to, text, encoding, segments, expected)) in cases.iter().enumerate() {
        let mut msg = message(to, &format!("m-{n}/spring/1"));
        msg.text = text.to_string();
        let delivery = rt.block_on(host.send("sms", msg)).expect("kannel send");
        assert_eq!(delivery.provider_id, format!("m-{n}/spring/1"));
        let meta = |key: &str| delivery.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!(meta("encoding"), *encoding, "{text}");
        assert_eq!(meta("segments"), *segments, "{text}");
        let expected = if *expected == "LONG" { format!("{} 回T退订", long.trim_end()) } else { expected.to_string() };
        {
            let want = (to.to_string(), expected);
            wait_for(Duration::from_secs(10), || delivered_texts(gateway.path()).contains(&want).then_some(()));
        }
    }
    assert_eq!(delivered_texts(gateway.path()).len(), cases.len());

    // A bad number never reaches the gateway; a bad login is refused by it.
    let err = rt.block_on(host.send("sms", message("13800000000", "k-bad"))).expect_err("not e164");
    assert_eq!(err.kind, SendErrorKind::Permanent);
    assert!(err.reason.contains("E.164"), "{err}");
    let err = rt.block_on(host.send("sms-bad-login", message("+8613800000009", "k-login"))).expect_err("bad login");
    assert_eq!(err.kind, SendErrorKind::Permanent, "{err}");
    assert!(err.reason.contains("kannel answered 4"), "{err}");

    // Kannel reports delivery to dlr-url; each report becomes a status update.
    let reports = wait_for(Duration::from_secs(15), || {
        let delivered: Vec<_> = requests(hook.path()).into_iter().filter(|r| r["path"] == "/sms/dlr" && r["query"]["status"] == "1").collect();
        (delivered.len() >= cases.len()).then_some(delivered)
    });
    let mut ids = Vec::new();
    for report in reports {
        let request = CallbackRequest { method: "GET".into(), path: rebuilt_path(&report), headers: vec![], body: vec![] };
        let updates = rt.block_on(host.parse_callback("sms", request)).expect("dlr");
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].state, DeliveryState::Delivered);
        ids.push(updates[0].provider_id.clone().unwrap_or_default());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids, vec!["m-0/spring/1", "m-1/spring/1", "m-2/spring/1"]);

    // A real STOP reply: injected at the fake SMSC, forwarded by smsbox to the hook.
    let status = std::process::Command::new("bash")
        .arg(repo().join("scripts/sms-gateway.sh"))
        .args(["mo", &gateway.path().display().to_string(), "+8613800000001", "12345", "STOP"])
        .status()
        .expect("inject mo");
    assert!(status.success());
    let inbound = wait_for(Duration::from_secs(15), || requests(hook.path()).into_iter().find(|r| r["path"] == "/sms/mo"));
    let stop = CallbackRequest { method: "GET".into(), path: rebuilt_path(&inbound), headers: vec![], body: vec![] };
    let updates = rt.block_on(host.parse_callback("sms", stop)).expect("mo");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].state, DeliveryState::OptedOut);
    assert_eq!(updates[0].recipient.as_deref(), Some("+8613800000001"));
}

#[test]
fn twilio_style_rest_sends_form_posts_with_basic_auth() {
    let port = free_port();
    let sink = ScriptServer::start("http-sink.sh", &[&port.to_string()]);
    let config = channel(
        "sms",
        &format!(
            r#"settings = {{ provider = "twilio", endpoint = "http://127.0.0.1:{port}/sms/twilio/2010-04-01/Accounts/AC123/Messages.json", from = "+15550001111", account_sid = "AC123" }}
secrets = {{ auth_token = "tok-456" }}
[grants]
http = ["127.0.0.1:{port}"]
"#
        ),
    );
    let options = HostOptions { callback_urls: [("sms".to_string(), "https://hooks.tea.example/sms".to_string())].into(), ..Default::default() };
    let host = ChannelHost::load(&channels(vec![("sms", config)]), &options).expect("load");
    let rt = runtime();
    let mut msg = message("+15551234567", "m-1/spring/1");
    msg.text = "Spring tea is here: 10% off this week.".into();
    let delivery = rt.block_on(host.send("sms", msg)).expect("rest send");
    assert!(delivery.provider_id.starts_with("SM"), "{delivery:?}");
    assert!(delivery.metadata.contains(&("encoding".into(), "gsm7".into())));

    let recorded = requests(sink.path());
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["headers"]["authorization"], "Basic QUMxMjM6dG9rLTQ1Ng==");
    assert_eq!(request["headers"]["content-type"], "application/x-www-form-urlencoded");
    let body = request["body"].as_str().unwrap_or_default();
    for field in ["To=%2B15551234567", "From=%2B15550001111", "Body=Spring+tea", "StatusCallback=https%3A%2F%2Fhooks.tea.example"] {
        let normalized = body.replace("%20", "+");
        assert!(normalized.contains(field), "{field} in {body}");
    }
    assert!(body.contains("Reply%20STOP%20to%20opt%20out"), "{body}");

    let body = format!("MessageSid={}&MessageStatus=undelivered&To=%2B15551234567&ErrorCode=30003", delivery.provider_id);
    let signature = twilio_signature("tok-456", "https://hooks.tea.example/sms/status", &body);
    let signed = |signature: &str| CallbackRequest {
        method: "POST".into(),
        path: "/status".into(),
        headers: vec![
            ("Content-Type".into(), "application/x-www-form-urlencoded".into()),
            ("X-Twilio-Signature".into(), signature.to_string()),
        ],
        body: body.clone().into_bytes(),
    };
    let err = rt.block_on(host.parse_callback("sms", signed("AAAAAAAAAAAAAAAAAAAAAAAAAAA="))).expect_err("forged");
    assert!(err.to_string().contains("does not verify"), "{err}");
    let status = signed(&signature);
    let updates = rt.block_on(host.parse_callback("sms", status)).expect("status callback");
    assert_eq!(updates[0].state, DeliveryState::Failed);
    assert_eq!(updates[0].provider_id.as_deref(), Some(delivery.provider_id.as_str()));
    assert_eq!(updates[0].reason.as_deref(), Some("error code 30003"));
}
