//! The shop channel: customer messaging on a shop platform, as signed JSON over HTTP(S).
//!
//! Each message is one POST to the `endpoint` setting with
//! `X-Rekindle-Timestamp` (Unix seconds), `X-Rekindle-Signature`
//! (`sha256=` + hex HMAC-SHA256 of `"<timestamp>.<body>"` under the
//! `signing_secret` secret) and `Idempotency-Key`, so the platform can check
//! origin, freshness and duplicates. The platform's answers map onto
//! retryable (408, 409, 425, 429, 5xx, `rate_limited`, `temporarily_unavailable`)
//! or permanent (other 4xx, `customer_not_found`, `opted_out`,
//! `invalid_signature`). Status webhooks are signed the same way and checked
//! against `max_skew_s` (default 300) before they are believed.

use hmac::{Hmac, Mac};
use rekindle_plugin_sdk::{
    clock, http, lookup, CallbackRequest, Channel, Config, Delivery, DeliveryState, OutboundMessage, SendError, StatusUpdate,
};
use sha2::Sha256;

pub struct ShopChannel;

/// `sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>").
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + digest.len() * 2);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Whether `provided` is the signature of `body` at `timestamp`, in constant time.
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], provided: &str) -> bool {
    let Some(hex) = provided.strip_prefix("sha256=") else { return false };
    let Some(bytes) = decode_hex(hex) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// The JSON body of one message.
pub fn request_body(message: &OutboundMessage) -> Vec<u8> {
    let pairs = |list: &[(String, String)]| {
        serde_json::Value::Object(list.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect())
    };
    let value = serde_json::json!({
        "customer_id": message.recipient.address,
        "member_id": message.recipient.member_id,
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "template": lookup(&message.channel_data, "template"),
        "channel_data": pairs(&message.channel_data),
        "metadata": pairs(&message.metadata),
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Map the platform's answer onto a delivery or a retryable / permanent error.
pub fn interpret(status: u16, body: &[u8]) -> Result<Delivery, SendError> {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    if (200..300).contains(&status) {
        let id = json.get("id").or_else(|| json.get("message_id")).and_then(|id| id.as_str());
        return match id {
            Some(id) => Ok(Delivery { provider_id: id.to_string(), metadata: vec![("http_status".into(), status.to_string())] }),
            None => Err(SendError::Retryable(format!("platform answered {status} without a message id"))),
        };
    }
    let code = json.get("code").map(|c| c.as_str().map(str::to_string).unwrap_or_else(|| c.to_string())).unwrap_or_default();
    let text = json.get("message").and_then(|m| m.as_str()).unwrap_or("");
    let reason = format!("platform answered {status} {code}: {text}");
    let retryable = match code.as_str() {
        "rate_limited" | "temporarily_unavailable" => true,
        "customer_not_found" | "opted_out" | "invalid_signature" => false,
        _ => matches!(status, 408 | 409 | 425 | 429) || status >= 500,
    };
    if retryable {
        Err(SendError::Retryable(reason))
    } else {
        Err(SendError::Permanent(reason))
    }
}

impl Channel for ShopChannel {
    fn validate_config(config: &Config) -> Result<(), Vec<String>> {
        let mut problems = config.missing(&["endpoint", "signing_secret"]);
        if let Some(endpoint) = config.get("endpoint") {
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                problems.push(format!("endpoint `{endpoint}` is not an http(s) URL"));
            }
        }
        if config.get("max_skew_s").is_some_and(|s| s.parse::<u32>().is_err()) {
            problems.push("max_skew_s must be a whole number of seconds".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn send(config: &Config, message: OutboundMessage) -> Result<Delivery, SendError> {
        let endpoint = config.require("endpoint")?;
        let secret = config.require("signing_secret")?;
        let body = request_body(&message);
        let timestamp = (clock::now_unix_ms() / 1000).to_string();
        let request = http::Request {
            method: "POST".into(),
            url: endpoint.into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-rekindle-timestamp".into(), timestamp.clone()),
                ("x-rekindle-signature".into(), signature(secret.as_bytes(), &timestamp, &body)),
                ("idempotency-key".into(), message.idempotency_key.clone()),
            ],
            body,
        };
        match http::send(&request) {
            Ok(response) => interpret(response.status, &response.body),
            Err(http::HttpError::Timeout(why) | http::HttpError::Transport(why)) => Err(SendError::Retryable(why)),
            Err(http::HttpError::Denied(why) | http::HttpError::TooLarge(why)) => Err(SendError::Permanent(why)),
        }
    }

    fn parse_callback(config: &Config, request: CallbackRequest) -> Result<Vec<StatusUpdate>, String> {
        let secret = config.get("signing_secret").ok_or("no signing_secret")?;
        let timestamp = lookup(&request.headers, "x-rekindle-timestamp").ok_or("no X-Rekindle-Timestamp header")?;
        let provided = lookup(&request.headers, "x-rekindle-signature").ok_or("no X-Rekindle-Signature header")?;
        if !verify(secret.as_bytes(), timestamp, &request.body, provided) {
            return Err("signature does not verify".to_string());
        }
        let max_skew: i64 = config.get("max_skew_s").and_then(|s| s.parse().ok()).unwrap_or(300);
        let sent: i64 = timestamp.parse().map_err(|_| "timestamp is not a number".to_string())?;
        if (clock::now_unix_ms() / 1000 - sent).abs() > max_skew {
            return Err(format!("timestamp is more than {max_skew} s away from now"));
        }
        parse_events(&request.body)
    }
}

/// `{"events": [{"message_id", "customer_id", "status", "reason"}]}` -> status updates.
pub fn parse_events(body: &[u8]) -> Result<Vec<StatusUpdate>, String> {
    let json: serde_json::Value = serde_json::from_slice(body).map_err(|err| format!("not JSON: {err}"))?;
    let events = json.get("events").and_then(|e| e.as_array()).ok_or("no events list")?;
    events
        .iter()
        .map(|event| {
            let field = |name: &str| event.get(name).and_then(|v| v.as_str()).map(str::to_string);
            let state = match field("status").as_deref() {
                Some("accepted") => DeliveryState::Accepted,
                Some("delivered" | "read") => DeliveryState::Delivered,
                Some("failed") => DeliveryState::Failed,
                Some("unsubscribed") => DeliveryState::OptedOut,
                Some("reported") => DeliveryState::Complained,
                other => return Err(format!("unknown event status {other:?}")),
            };
            Ok(StatusUpdate { provider_id: field("message_id"), recipient: field("customer_id"), state, reason: field("reason") })
        })
        .collect()
}

rekindle_plugin_sdk::export_channel!(ShopChannel);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac_vector() {
        // Expected value from Python: hmac.new(b"Jefe", b'1700000000.{"a":1}', hashlib.sha256).
        let sig = signature(b"Jefe", "1700000000", br#"{"a":1}"#);
        assert_eq!(sig, "sha256=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a");
        assert!(verify(b"Jefe", "1700000000", br#"{"a":1}"#, &sig));
        assert!(!verify(b"jefe", "1700000000", br#"{"a":1}"#, &sig));
        assert!(!verify(b"Jefe", "1700000001", br#"{"a":1}"#, &sig));
        assert!(!verify(b"Jefe", "1700000000", br#"{"a":2}"#, &sig));
        assert!(!verify(b"Jefe", "x", b"?", "md5=00"));
    }

    #[test]
    fn platform_answers_map_to_retryable_or_permanent() {
        let cases: &[(u16, &str, Option<bool>)] = &[
            (200, r#"{"id":"msg-1"}"#, None),
            (201, r#"{"message_id":"msg-2"}"#, None),
            (200, r#"{}"#, Some(true)),
            (429, r#"{"code":"rate_limited"}"#, Some(true)),
            (503, "", Some(true)),
            (409, r#"{"code":"in_progress"}"#, Some(true)),
            (400, r#"{"code":"temporarily_unavailable"}"#, Some(true)),
            (404, r#"{"code":"customer_not_found","message":"no such customer"}"#, Some(false)),
            (403, r#"{"code":"opted_out"}"#, Some(false)),
            (401, r#"{"code":"invalid_signature"}"#, Some(false)),
            (422, "not json", Some(false)),
        ];
        for (status, body, expected) in cases {
            match (interpret(*status, body.as_bytes()), expected) {
                (Ok(_), None) => {}
                (Err(SendError::Retryable(_)), Some(true)) | (Err(SendError::Permanent(_)), Some(false)) => {}
                (got, want) => panic!("{status} {body}: got {got:?}, want retryable={want:?}"),
            }
        }
    }

    #[test]
    fn events_parse_into_updates() {
        let body = br#"{"events":[{"message_id":"msg-1","customer_id":"c-9","status":"read"},{"message_id":"msg-2","customer_id":"c-8","status":"unsubscribed","reason":"STOP"}]}"#;
        let updates = parse_events(body).expect("events");
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].state, DeliveryState::Delivered);
        assert_eq!(updates[1].state, DeliveryState::OptedOut);
        assert_eq!(updates[1].reason.as_deref(), Some("STOP"));
        assert!(parse_events(br#"{"events":[{"status":"exploded"}]}"#).is_err());
    }
}
