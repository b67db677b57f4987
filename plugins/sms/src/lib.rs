//! The SMS channel: marketing SMS through Kannel's `sendsms` HTTP interface or a Twilio-style REST API.
//!
//! Before anything is sent: the recipient must be an E.164 number (else a
//! permanent error), and the opt-out text marketing SMS must carry
//! (`opt_out_text`, default "Reply STOP to opt out"; "回T退订" for China) is
//! appended unless the text already has it. The delivery metadata says how
//! the text is encoded (GSM-7 or UCS-2) and how many segments it costs.
//!
//! Delivery reports (Kannel `dlr-url` at `{callback_url}/dlr`, Twilio
//! `StatusCallback` at `{callback_url}/status`) and STOP replies come back
//! through `parse_callback`. `callback_url` is handed over by the host (the
//! channel's secret callback URL; an operator cannot set it), and the host
//! checks its secret before this plugin sees a request: that is the only
//! authentication Kannel's reports and MO messages have. A channel with an
//! `auth_token` (Twilio) also needs a valid `X-Twilio-Signature` (HMAC-SHA1 of
//! the URL Twilio called plus the sorted POST parameters) on every callback,
//! checked before anything else is read.
//!
//! Settings: `provider` (`kannel` | `twilio`), `endpoint` (Kannel's
//! `/cgi-bin/sendsms` URL, or the REST `.../Messages.json` URL), `from`,
//! `opt_out_text`, `username` (Kannel), `account_sid` (Twilio). Secrets:
//! `password` (Kannel) or `auth_token` (Twilio).

use rekindle_plugin_sdk::{
    http, lookup, mime, CallbackRequest, Channel, Config, Delivery, DeliveryState, OutboundMessage, SendError, StatusUpdate,
};

pub struct SmsChannel;

const DEFAULT_OPT_OUT: &str = "Reply STOP to opt out";
/// The host-provided config entry: this channel's secret callback URL.
const CALLBACK_URL: &str = "callback_url";
/// Replies that mean "no more messages", compared case-insensitively after trimming.
const STOP_WORDS: &[&str] = &["stop", "stopall", "unsubscribe", "cancel", "end", "quit", "t", "td", "退订"];

/// `+` then 8 to 15 digits, the first not 0.
pub fn check_e164(number: &str) -> Result<(), String> {
    let digits = number.strip_prefix('+').unwrap_or("");
    let valid = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if valid {
        Ok(())
    } else {
        Err(format!("`{number}` is not an E.164 number (+ and 8 to 15 digits)"))
    }
}

/// The text with the opt-out line, unless it is already there.
pub fn with_opt_out(text: &str, opt_out: &str) -> String {
    if opt_out.is_empty() || text.contains(opt_out) {
        text.to_string()
    } else if text.ends_with('\n') || text.is_empty() {
        format!("{text}{opt_out}")
    } else {
        format!("{text} {opt_out}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

/// GSM 03.38 basic set (one septet each).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table (two septets each: escape + char).
const GSM_EXTENDED: &str = "^{}\\[~]|€\u{000C}";

/// Encoding and segment count of `text`: GSM-7 when every character is in
/// GSM 03.38 (160 septets, or 153 per part when concatenated), otherwise
/// UCS-2 (70 UTF-16 units, or 67 per part).
pub fn segments(text: &str) -> (Encoding, usize) {
    let mut septets = 0usize;
    for ch in text.chars() {
        if GSM_BASIC.contains(ch) {
            septets += 1;
        } else if GSM_EXTENDED.contains(ch) {
            septets += 2;
        } else {
            let units = text.encode_utf16().count();
            let parts = if units <= 70 { 1 } else { units.div_ceil(67) };
            return (Encoding::Ucs2, parts);
        }
    }
    let parts = if septets <= 160 { 1 } else { septets.div_ceil(153) };
    (Encoding::Gsm7, parts.max(1))
}

/// `application/x-www-form-urlencoded` / query-string escaping.
pub fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Undo [`url_encode`] (and `+` for space); a `%` without two hex digits stays.
pub fn url_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (other, None) => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key=value&...` pairs, decoded.
pub fn form_pairs(encoded: &str) -> Vec<(String, String)> {
    encoded
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (url_decode(key), url_decode(value))
        })
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))).collect::<Vec<_>>().join("&")
}

/// The Kannel `sendsms` GET URL for one message.
pub fn kannel_url(config: &Config, to: &str, text: &str, encoding: Encoding, key: &str) -> Result<String, SendError> {
    let endpoint = config.require("endpoint")?;
    let coding = match encoding {
        Encoding::Gsm7 => "0",
        Encoding::Ucs2 => "2",
    };
    let mut pairs = vec![
        ("username", config.get("username").unwrap_or("")),
        ("password", config.get("password").unwrap_or("")),
        ("from", config.require("from")?),
        ("to", to),
        ("text", text),
        ("charset", "UTF-8"),
        ("coding", coding),
    ];
    let dlr_url;
    if let Some(base) = config.get(CALLBACK_URL) {
        // Kannel fills in %d (status), %p (receiver) and %A (SMSC answer).
        dlr_url = format!("{base}/dlr?id={}&status=%d&to=%p&answer=%A", url_encode(key));
        pairs.push(("dlr-mask", "31"));
        pairs.push(("dlr-url", &dlr_url));
    }
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    Ok(format!("{endpoint}{separator}{}", form(&pairs)))
}

fn send_kannel(config: &Config, to: &str, text: &str, encoding: Encoding, key: &str) -> Result<String, SendError> {
    let url = kannel_url(config, to, text, encoding, key)?;
    let request = http::Request { method: "GET".into(), url, headers: vec![], body: vec![] };
    let response = http::send(&request).map_err(transport_error)?;
    let answer = String::from_utf8_lossy(&response.body).trim().to_string();
    match response.status {
        200..=299 if answer.starts_with("0:") || answer.starts_with("3:") => Ok(key.to_string()),
        200..=299 => Err(SendError::Retryable(format!("kannel answered {}: {answer}", response.status))),
        500..=599 | 429 => Err(SendError::Retryable(format!("kannel answered {}: {answer}", response.status))),
        status => Err(SendError::Permanent(format!("kannel answered {status}: {answer}"))),
    }
}

fn send_twilio(config: &Config, to: &str, text: &str) -> Result<String, SendError> {
    let endpoint = config.require("endpoint")?;
    let account = config.require("account_sid")?;
    let token = config.require("auth_token")?;
    let mut pairs = vec![("To", to), ("From", config.require("from")?), ("Body", text)];
    let status_callback = config.get(CALLBACK_URL).map(|base| format!("{base}/status"));
    if let Some(callback) = &status_callback {
        pairs.push(("StatusCallback", callback));
    }
    let request = http::Request {
        method: "POST".into(),
        url: endpoint.into(),
        headers: vec![
            ("content-type".into(), "application/x-www-form-urlencoded".into()),
            ("authorization".into(), format!("Basic {}", mime::base64(format!("{account}:{token}").as_bytes()))),
        ],
        body: form(&pairs).into_bytes(),
    };
    let response = http::send(&request).map_err(transport_error)?;
    let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
    if (200..300).contains(&response.status) {
        return json
            .get("sid")
            .and_then(|sid| sid.as_str())
            .map(str::to_string)
            .ok_or_else(|| SendError::Retryable(format!("provider answered {} without a sid", response.status)));
    }
    let code = json.get("code").map(|c| c.to_string()).unwrap_or_default();
    let message = json.get("message").and_then(|m| m.as_str()).unwrap_or("");
    let reason = format!("provider answered {} (code {code}): {message}", response.status);
    if response.status == 429 || response.status >= 500 {
        Err(SendError::Retryable(reason))
    } else {
        Err(SendError::Permanent(reason))
    }
}

fn transport_error(err: http::HttpError) -> SendError {
    match err {
        http::HttpError::Timeout(why) | http::HttpError::Transport(why) => SendError::Retryable(why),
        http::HttpError::Denied(why) | http::HttpError::TooLarge(why) => SendError::Permanent(why),
    }
}

impl Channel for SmsChannel {
    fn validate_config(config: &Config) -> Result<(), Vec<String>> {
        let mut problems = config.missing(&["provider", "endpoint", "from"]);
        match config.get("provider") {
            Some("kannel") => problems.extend(config.missing(&["username", "password"])),
            Some("twilio") => problems.extend(config.missing(&["account_sid", "auth_token"])),
            Some(other) => problems.push(format!("provider `{other}` is not kannel or twilio")),
            None => {}
        }
        if config.get("dlr_url").is_some() {
            problems.push("`dlr_url` is no longer read: rekindle hands the plugin its secret callback URL (see `rekindle plugin callback-url`); remove the setting".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn send(config: &Config, message: OutboundMessage) -> Result<Delivery, SendError> {
        let to = message.recipient.address.trim();
        check_e164(to).map_err(SendError::Permanent)?;
        let text = with_opt_out(&message.text, config.get("opt_out_text").unwrap_or(DEFAULT_OPT_OUT));
        let (encoding, parts) = segments(&text);
        let provider_id = match config.require("provider")? {
            "kannel" => send_kannel(config, to, &text, encoding, &message.idempotency_key)?,
            "twilio" => send_twilio(config, to, &text)?,
            other => return Err(SendError::Permanent(format!("provider `{other}` is not kannel or twilio"))),
        };
        let encoding_name = match encoding {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        };
        Ok(Delivery {
            provider_id,
            metadata: vec![
                ("encoding".into(), encoding_name.into()),
                ("segments".into(), parts.to_string()),
                ("characters".into(), text.chars().count().to_string()),
            ],
        })
    }

    fn parse_callback(config: &Config, request: CallbackRequest) -> Result<Vec<StatusUpdate>, String> {
        // a channel with a Twilio auth token believes nothing unsigned, status or STOP alike
        if let Some(token) = config.get("auth_token") {
            check_twilio_signature(config, token, &request).map_err(rekindle_plugin_sdk::unauthenticated)?;
        }
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let mut fields = form_pairs(query);
        if !request.body.is_empty() {
            fields.extend(form_pairs(&String::from_utf8_lossy(&request.body)));
        }
        let field = |name: &str| lookup(&fields, name).map(str::to_string);
        // An inbound reply (Kannel MO: from/text; Twilio: From/Body).
        if let Some(body) = field("Body").or_else(|| field("text")).filter(|_| field("MessageStatus").is_none()) {
            let from = field("From").or_else(|| field("from"));
            let wants_out = STOP_WORDS.iter().any(|word| body.trim().eq_ignore_ascii_case(word));
            return Ok(if wants_out {
                vec![StatusUpdate { provider_id: None, recipient: from, state: DeliveryState::OptedOut, reason: Some(body) }]
            } else {
                Vec::new()
            });
        }
        match config.get("provider") {
            Some("twilio") => {
                let status = field("MessageStatus").ok_or("no MessageStatus")?;
                let state = match status.as_str() {
                    "queued" | "accepted" | "sending" | "sent" => DeliveryState::Accepted,
                    "delivered" | "read" => DeliveryState::Delivered,
                    "undelivered" | "failed" => DeliveryState::Failed,
                    other => return Err(format!("unknown MessageStatus `{other}`")),
                };
                Ok(vec![StatusUpdate {
                    provider_id: field("MessageSid"),
                    recipient: field("To"),
                    state,
                    reason: field("ErrorCode").map(|code| format!("error code {code}")),
                }])
            }
            _ => {
                let status: u32 = field("status").and_then(|s| s.parse().ok()).ok_or_else(|| format!("{path}: no numeric status"))?;
                // Kannel DLR types: 1 delivered, 2 undeliverable, 4 queued on SMSC, 8 SMSC ack, 16 SMSC reject.
                let state = match status {
                    1 => DeliveryState::Delivered,
                    2 | 16 => DeliveryState::Failed,
                    4 | 8 => DeliveryState::Accepted,
                    other => return Err(format!("unknown kannel dlr status {other}")),
                };
                Ok(vec![StatusUpdate { provider_id: field("id"), recipient: field("to"), state, reason: field("answer") }])
            }
        }
    }
}

/// Twilio's request signature: base64(HMAC-SHA1(auth_token, URL + each POST
/// parameter's name and value, sorted by name)) of the URL Twilio called.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    use hmac::Mac;
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()) else { return String::new() };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mime::base64(&mac.finalize().into_bytes())
}

/// The URL Twilio called is the callback URL plus the path below it (with the query);
/// for the bare root both `.../SECRET` and `.../SECRET/` are tried, since the host
/// hands either over as `/`.
fn check_twilio_signature(config: &Config, token: &str, request: &CallbackRequest) -> Result<(), String> {
    let base = config.get(CALLBACK_URL).ok_or("no callback_url from the host: the signed URL is unknown")?;
    let provided = lookup(&request.headers, "x-twilio-signature").ok_or("no X-Twilio-Signature header")?;
    let params = form_pairs(&String::from_utf8_lossy(&request.body));
    let mut candidates = vec![format!("{base}{}", request.path)];
    if let Some(bare) = request.path.strip_prefix('/').filter(|rest| rest.is_empty() || rest.starts_with('?')) {
        candidates.push(format!("{base}{bare}"));
    }
    // compare without an early exit on the first differing byte
    let verifies = |url: &String| {
        let expected = twilio_signature(token, url, &params);
        expected.len() == provided.len() && expected.bytes().zip(provided.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    };
    if candidates.iter().fold(false, |any, url| verifies(url) | any) {
        Ok(())
    } else {
        Err("X-Twilio-Signature does not verify".to_string())
    }
}

rekindle_plugin_sdk::export_channel!(SmsChannel);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers() {
        for (number, ok) in [
            ("+8613800000000", true),
            ("+4915112345678", true),
            ("+15551234567", true),
            ("8613800000000", false),
            ("+0861380000", false),
            ("+86 138 0000 0000", false),
            ("+1234567", false),
            ("+1234567890123456", false),
            ("+86138000000ab", false),
        ] {
            assert_eq!(check_e164(number).is_ok(), ok, "{number}");
        }
    }

    #[test]
    fn segment_counts_follow_gsm7_and_ucs2_limits() {
        let cases: Vec<(String, Encoding, usize)> = vec![
            ("Hello über 50% off".into(), Encoding::Gsm7, 1),
            ("a".repeat(160), Encoding::Gsm7, 1),
            ("a".repeat(161), Encoding::Gsm7, 2),
            ("a".repeat(306), Encoding::Gsm7, 2),
            ("a".repeat(307), Encoding::Gsm7, 3),
            (format!("{}€", "a".repeat(158)), Encoding::Gsm7, 1),
            (format!("{}€", "a".repeat(159)), Encoding::Gsm7, 2),
            ("欢迎回来，回T退订".into(), Encoding::Ucs2, 1),
            ("茶".repeat(70), Encoding::Ucs2, 1),
            ("茶".repeat(71), Encoding::Ucs2, 2),
            ("茶".repeat(134), Encoding::Ucs2, 2),
            ("茶".repeat(135), Encoding::Ucs2, 3),
            (format!("{}🍵", "a".repeat(68)), Encoding::Ucs2, 1),
            (format!("{}🍵", "a".repeat(69)), Encoding::Ucs2, 2),
        ];
        for (text, encoding, parts) in cases {
            assert_eq!(segments(&text), (encoding, parts), "{text}");
        }
    }

    #[test]
    fn opt_out_text_is_appended_once() {
        assert_eq!(with_opt_out("Hi", "Reply STOP to opt out"), "Hi Reply STOP to opt out");
        assert_eq!(with_opt_out("欢迎回来 回T退订", "回T退订"), "欢迎回来 回T退订");
        assert_eq!(with_opt_out("欢迎回来\n", "回T退订"), "欢迎回来\n回T退订");
    }

    #[test]
    fn twilio_signature_matches_python_hmac_sha1() {
        // Expected value computed with Python's hmac/hashlib/base64.
        let params: Vec<(String, String)> = [("To", "+15551234567"), ("MessageSid", "SM1"), ("MessageStatus", "delivered")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(twilio_signature("tok-456", "https://hooks.tea.example/sms/status", &params), "zz8pZ4pjgRjpktUtuT0Yxez+kwA=");
    }

    fn twilio_config() -> Config {
        Config::new(
            [("provider", "twilio"), ("auth_token", "tok-456"), ("callback_url", "https://shop.example/callbacks/sms/5ec2e7")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn form_request(path: &str, body: &str, signature: Option<&str>) -> CallbackRequest {
        let mut headers = vec![("content-type".to_string(), "application/x-www-form-urlencoded".to_string())];
        headers.extend(signature.map(|s| ("X-Twilio-Signature".to_string(), s.to_string())));
        CallbackRequest { method: "POST".into(), path: path.into(), headers, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn an_unsigned_twilio_stop_or_status_is_refused() {
        let config = twilio_config();
        for body in ["from=%2B15551234567&text=STOP", "From=%2B15551234567&Body=STOP", "MessageSid=SM1&MessageStatus=failed"] {
            let err = SmsChannel::parse_callback(&config, form_request("/status", body, None)).unwrap_err();
            assert!(err.contains("X-Twilio-Signature"), "{body}: {err}");
            let err = SmsChannel::parse_callback(&config, form_request("/status", body, Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA="))).unwrap_err();
            assert!(err.contains("does not verify"), "{body}: {err}");
        }
        let body = "From=%2B15551234567&Body=STOP";
        let signed = twilio_signature("tok-456", "https://shop.example/callbacks/sms/5ec2e7/inbound", &form_pairs(body));
        let updates = SmsChannel::parse_callback(&config, form_request("/inbound", body, Some(&signed))).unwrap();
        assert_eq!(updates[0].state, DeliveryState::OptedOut);
        let err = SmsChannel::parse_callback(&config, form_request("/other", body, Some(&signed))).unwrap_err();
        assert!(err.contains("does not verify"), "a signature for another URL: {err}");
        // the bare root, signed with or without its trailing slash
        for url in ["https://shop.example/callbacks/sms/5ec2e7", "https://shop.example/callbacks/sms/5ec2e7/"] {
            let signed = twilio_signature("tok-456", url, &form_pairs(body));
            assert!(SmsChannel::parse_callback(&config, form_request("/", body, Some(&signed))).is_ok(), "{url}");
        }
    }

    #[test]
    fn dlr_urls_point_below_the_host_given_callback_url() {
        let config = Config::new(
            [("endpoint", "http://127.0.0.1:13013/cgi-bin/sendsms"), ("from", "Tea"), ("callback_url", "https://shop.example/callbacks/sms/5ec2e7")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let url = kannel_url(&config, "+8613800000001", "hi", Encoding::Gsm7, "r:1:m:sms").unwrap();
        let dlr = form_pairs(url.split_once('?').unwrap().1).into_iter().find(|(k, _)| k == "dlr-url").unwrap().1;
        assert_eq!(dlr, "https://shop.example/callbacks/sms/5ec2e7/dlr?id=r%3A1%3Am%3Asms&status=%d&to=%p&answer=%A");
        let with_old = Config::new([("provider", "kannel"), ("endpoint", "e"), ("from", "f"), ("username", "u"), ("password", "p"), ("dlr_url", "x")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let problems = SmsChannel::validate_config(&with_old).unwrap_err();
        assert!(problems.iter().any(|p| p.contains("dlr_url")), "{problems:?}");
    }

    #[test]
    fn form_encoding_round_trips() {
        let text = "欢迎 50% & more+";
        let pairs = form_pairs(&form(&[("text", text), ("to", "+86")]));
        assert_eq!(pairs, vec![("text".to_string(), text.to_string()), ("to".to_string(), "+86".to_string())]);
        assert_eq!(url_decode("a+b%2"), "a b%2");
    }
}
