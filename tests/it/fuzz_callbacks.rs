//! Fuzzing the plugins' parse-callback (issue 14, item 8): mutated valid callbacks —
//! Kannel DLRs and MO messages, Twilio status and inbound forms, SES events and SNS
//! envelopes, RFC 3464 bounce mails — and arbitrary bytes go through the SMS and email
//! plugins' parsers compiled natively (proptest) and through the real wasm plugins in
//! the host. No input may panic (natively a panic fails the property; in wasm it would
//! trap), hang, or be refused without a reason. The long test replays a few thousand
//! mutations through the wasm plugins.

use crate::support::Rng;
use crate::plugin_support::{channel, channels, repo, runtime};
use proptest::prelude::*;
use rekindle::plugin::{CallbackRequest, ChannelHost, HostOptions, PluginError};
use rekindle_plugin_sdk::{Channel, Config};
use rekindle_plugin_sms::SmsChannel;

/// A Twilio-style SMS channel's config, as the host hands it over.
fn twilio() -> Vec<(String, String)> {
    pairs(&[("provider", "twilio"), ("auth_token", "tok-456"), ("account_sid", "AC1"), ("callback_url", "https://shop.example/callbacks/sms/5ec2e7")])
}

fn kannel() -> Vec<(String, String)> {
    pairs(&[("provider", "kannel"), ("callback_url", "https://shop.example/callbacks/sms/5ec2e7")])
}

/// An email channel whose SNS certificate URLs can never pass (so nothing is fetched
/// natively, where the host's HTTP is absent).
fn email() -> Vec<(String, String)> {
    pairs(&[("from_address", "news@tea.example"), ("sns_cert_url_prefix_for_testing", "none://never/")])
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Valid callbacks of each shape: (which parser, path with query, body).
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let twilio_sig = rekindle_plugin_sms::twilio_signature;
    let status = "MessageSid=SM1&MessageStatus=undelivered&To=%2B15551234567&ErrorCode=30003";
    let inbound = "From=%2B8613800000001&Body=%E9%80%80%E8%AE%A2&To=%2B15550001111";
    let sign = |path: &str, body: &str| twilio_sig("tok-456", &format!("https://shop.example/callbacks/sms/5ec2e7{path}"), &rekindle_plugin_sms::form_pairs(body));
    let ses = serde_json::json!({"notificationType": "Bounce", "mail": {"messageId": "ses-1", "commonHeaders": {"messageId": "<rk.1@tea.example>"}},
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "gone@example.com", "diagnosticCode": "smtp; 550 5.1.1 unknown"}]}});
    let complaint = serde_json::json!({"eventType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": "angry@example.com"}]}});
    let sns = serde_json::json!({"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:1:ses", "Subject": "s", "Timestamp": "2026-12-01T08:00:00Z",
        "Message": ses.to_string(), "SignatureVersion": "1", "Signature": "AAAA", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem"});
    let dsn = std::fs::read_to_string(repo().join("tests/it/fixtures/bounce-postfix.eml"))
        .unwrap()
        .replace("@RECIPIENT@", "gone@example.net")
        .replace("@MESSAGE_ID@", "<rk.0f85e392be4a1f1edc456cc22c10d568@tea.example>");
    vec![
        ("kannel", "/dlr?id=winback%3A7%3Am1%3Asms&status=1&to=%2B8613800000001&answer=ACK%2F".to_string(), Vec::new()),
        ("kannel", "/dlr?id=k&status=16&to=%2B861&answer=NACK%2F0x0000000b".to_string(), Vec::new()),
        ("kannel", "/mo?from=%2B8613800000001&to=12345&text=STOP".to_string(), Vec::new()),
        ("twilio", format!("/status#{}", sign("/status", status)), status.as_bytes().to_vec()),
        ("twilio", format!("/inbound#{}", sign("/inbound", inbound)), inbound.as_bytes().to_vec()),
        ("email", "/".to_string(), ses.to_string().into_bytes()),
        ("email", "/".to_string(), complaint.to_string().into_bytes()),
        ("email", "/".to_string(), sns.to_string().into_bytes()),
        ("email", "/".to_string(), dsn.into_bytes()),
    ]
}

/// The request of a seed: a Twilio seed carries its signature after `#` in the path.
fn request(path: &str, body: Vec<u8>) -> CallbackRequest {
    let (path, signature) = path.split_once('#').unwrap_or((path, ""));
    let mut headers = vec![("content-type".to_string(), "application/x-www-form-urlencoded".to_string())];
    if !signature.is_empty() {
        headers.push(("X-Twilio-Signature".to_string(), signature.to_string()));
    }
    CallbackRequest { method: "POST".into(), path: path.to_string(), headers, body }
}


/// Bytes that break parsers: escapes, separators, quotes, multi-byte and odd UTF-8.
const NASTY: &[&[u8]] = &[b"%", b"%Z", b"%E9%80", b"=", b"&", b"+", b"\0", b"\r\n", b"\r\n\r\n", b"\"", b"\\", b"{", b"}", b"[", b"]", b":", b";", b"<", b">", "é".as_bytes(), "退订".as_bytes(), &[0xff, 0xfe], &[0xe9, 0x80], b"Action: failed", b"Status: 5.", b"\"Type\":\"Notification\"", b"\n\n"];

/// One to four random edits of `input`: flip, insert a nasty token, delete, duplicate
/// a span, truncate.
fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = NASTY[rng.below(NASTY.len())];
                out.splice(at..at, token.iter().copied());
            }
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            3 if at < out.len() => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                let span: Vec<u8> = out[at..end].to_vec();
                out.splice(at..at, span.iter().copied().cycle().take(span.len() * (1 + rng.below(8))));
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// A mutated seed: the path or the body (or both) edited.
fn mutated(seed: &(&'static str, String, Vec<u8>), rng: &mut Rng) -> (&'static str, CallbackRequest) {
    let (which, path, body) = seed;
    let (mut path, mut body) = (path.clone(), body.clone());
    match rng.below(3) {
        0 => path = String::from_utf8_lossy(&mutate(path.as_bytes(), rng)).into_owned(),
        1 => body = mutate(&body, rng),
        _ => {
            path = String::from_utf8_lossy(&mutate(path.as_bytes(), rng)).into_owned();
            body = mutate(&body, rng);
        }
    }
    (which, request(&path, body))
}

/// Natively: every result is Ok or an error with a reason.
fn parse_natively(which: &str, request: CallbackRequest) -> Result<usize, String> {
    let CallbackRequest { method, path, headers, body } = request;
    let request = rekindle_plugin_sdk::CallbackRequest { method, path, headers, body };
    let result = match which {
        "kannel" => SmsChannel::parse_callback(&Config::new(kannel()), request),
        "twilio" => SmsChannel::parse_callback(&Config::new(twilio()), request),
        _ => match request.body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => rekindle_plugin_email::parse_json(&Config::new(email()), &request.body, 1_780_000_000_000),
            _ => rekindle_plugin_email::parse_dsn(&request.body),
        },
    };
    match result {
        Ok(updates) => Ok(updates.len()),
        Err(e) if e.trim().is_empty() => panic!("an error without a reason"),
        Err(e) => Err(e),
    }
}

#[test]
fn every_seed_parses() {
    for (which, path, body) in seeds() {
        let sns = String::from_utf8_lossy(&body).contains("SigningCertURL");
        match parse_natively(which, request(&path, body)) {
            // the SNS seed carries no valid signature: refused, as it must be
            Err(e) if sns => assert!(e.starts_with(rekindle_plugin_sdk::UNAUTHENTICATED), "{e}"),
            Ok(n) if !sns => assert_eq!(n, 1, "{which} {path}"),
            other => panic!("{which} {path}: {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_callbacks_never_panic_natively(seed in 0usize..9, salt in any::<u64>()) {
        let seeds = seeds();
        let mut rng = Rng(salt);
        let (which, request) = mutated(&seeds[seed % seeds.len()], &mut rng);
        let _ = parse_natively(which, request);
    }

    #[test]
    fn arbitrary_requests_never_panic_natively(which in prop::sample::select(vec!["kannel", "twilio", "email"]), path in ".{0,200}", body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_natively(which, request(&path, body));
    }

    #[test]
    fn arbitrary_form_fields_decode_without_panic(text in "[%a-zA-Z0-9=&+é退]{0,300}") {
        let pairs = rekindle_plugin_sms::form_pairs(&text);
        prop_assert!(pairs.len() <= text.len() + 1);
    }
}

/// The wasm plugins in the host: `count` mutated callbacks per shape; a trap (a panic
/// inside the plugin) fails the test, a refusal must say why.
fn through_the_wasm_plugins(count: usize, salt: u64) {
    let sms = channel("sms", "settings = { provider = \"kannel\", endpoint = \"http://127.0.0.1:9/cgi-bin/sendsms\", from = \"Tea\", username = \"u\" }\nsecrets = { password = \"p\" }\ngrants = { http = [\"127.0.0.1:9\"] }\n");
    let twilio = channel("sms", "settings = { provider = \"twilio\", endpoint = \"http://127.0.0.1:9/x\", from = \"+15550001111\", account_sid = \"AC1\" }\nsecrets = { auth_token = \"tok-456\" }\ngrants = { http = [\"127.0.0.1:9\"] }\n");
    let email = channel("email", "settings = { from_address = \"news@tea.example\", sns_cert_url_prefix_for_testing = \"none://never/\" }\n[smtp]\nhost = \"127.0.0.1\"\nport = 9\n");
    let callback = "https://shop.example/callbacks/sms/5ec2e7".to_string();
    let options = HostOptions { callback_urls: [("kannel".to_string(), callback.clone()), ("twilio".to_string(), callback)].into(), ..Default::default() };
    let host = ChannelHost::load(&channels(vec![("kannel", sms), ("twilio", twilio), ("email", email)]), &options).expect("load");
    let rt = runtime();
    let seeds = seeds();
    let mut rng = Rng(salt);
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..count * seeds.len() {
        let (which, request) = mutated(&seeds[i % seeds.len()], &mut rng);
        match rt.block_on(host.parse_callback(which, request.clone())) {
            Ok(_) => accepted += 1,
            Err(PluginError::Unauthenticated { reason, .. }) => {
                assert!(!reason.trim().is_empty());
                refused += 1;
            }
            Err(e) => {
                let text = e.to_string();
                assert!(!text.contains("plugin trapped") && !text.contains("cpu limit") && !text.contains("memory limit"), "{which}: {text}\n{request:?}");
                refused += 1;
            }
        }
    }
    assert_eq!(accepted + refused, count * seeds.len());
    assert!(accepted > 0 && refused > 0, "the mutations reach both outcomes: {accepted} accepted, {refused} refused");
}

#[test]
fn hostile_callbacks_through_the_wasm_plugins_fail_cleanly() {
    through_the_wasm_plugins(25, 14);
}

#[test]
#[ignore = "long: scripts/test.sh --long"]
fn a_mutation_corpus_of_thousands_of_callbacks_through_the_wasm_plugins() {
    let salt = std::env::var("REKINDLE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_260_101);
    println!("seed {salt} (REKINDLE_FUZZ_SEED replays it)");
    through_the_wasm_plugins(600, salt);
}
