//! The email channel: a proper MIME message, submitted through the host's SMTP relay.
//!
//! Builds text and HTML alternatives with UTF-8 subjects and display names
//! (RFC 2047, so Chinese text survives any relay), a Message-ID derived from
//! the idempotency key (a retry carries the same id, so receivers can
//! deduplicate), and List-Unsubscribe with List-Unsubscribe-Post (RFC 8058
//! one-click) from the message's `unsubscribe_url` channel data and the
//! `unsubscribe_mailto` setting. The relay and its credentials belong to the
//! host. Bounces, complaints and deliveries come back through
//! `parse_callback` in the shape Amazon SES posts them (wrapped in an SNS
//! notification, believed only with a valid SNS signature; or bare, from the
//! operator's own relay of SES events), or as the raw bounce mail an MTA returns
//! (RFC 3464). Bare events and bounce mails carry no signature: the secret in
//! the callback URL, which the host checks before the plugin runs, is their
//! authentication.
//!
//! Settings for SNS: `sns_topic_arns` (comma-separated; when set, only these topics
//! are believed, and a subscription confirmation of one of them is confirmed by a
//! GET of its SubscribeURL), and `sns_cert_url_prefix_for_testing` (tests and private
//! deployments only: certificate URLs must start with it instead of being https on
//! `sns.<region>.amazonaws.com`). The SNS host must be in `grants.http`.

use rekindle_plugin_sdk::{
    clock, lookup, mime, smtp, CallbackRequest, Channel, Config, Delivery, DeliveryState, OutboundMessage, SendError,
    StatusUpdate,
};

pub mod sns;

pub struct EmailChannel;

/// A plain `local@domain` with nothing that could break a header or an SMTP command.
pub fn check_address(address: &str) -> Result<(), String> {
    let valid = match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && address.len() <= 254
                && address.bytes().all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"".contains(&b))
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!("`{address}` is not a deliverable email address"))
    }
}

/// The RFC 5322 bytes for `message`.
pub fn render(config: &Config, message: &OutboundMessage, now_unix_ms: i64) -> Result<(Vec<u8>, String), SendError> {
    let from_address = config.require("from_address")?;
    check_address(&message.recipient.address).map_err(SendError::Permanent)?;
    let domain = from_address.rsplit_once('@').map_or("localhost", |(_, domain)| domain);
    let mut unsubscribe = Vec::new();
    if let Some(url) = lookup(&message.channel_data, "unsubscribe_url") {
        if url.starts_with("https://") && !url.contains(['<', '>', ' ', '\r', '\n']) {
            unsubscribe.push(url.to_string());
        }
    }
    if let Some(mailto) = config.get("unsubscribe_mailto") {
        unsubscribe.push(format!("mailto:{mailto}?subject=unsubscribe"));
    }
    let mut extra_headers = Vec::new();
    if let Some(reply_to) = config.get("reply_to") {
        extra_headers.push(("Reply-To".to_string(), reply_to.to_string()));
    }
    if let Some(campaign) = lookup(&message.metadata, "campaign") {
        if campaign.bytes().all(|b| b.is_ascii_graphic()) {
            extra_headers.push(("X-Rekindle-Campaign".to_string(), campaign.to_string()));
        }
    }
    let message_id = mime::message_id(&message.idempotency_key, domain);
    let bytes = mime::build(&mime::Email {
        from_address,
        from_name: config.get("from_name"),
        to_address: &message.recipient.address,
        to_name: message.recipient.name.as_deref(),
        subject: message.subject.as_deref().unwrap_or(""),
        text: &message.text,
        html: message.html.as_deref(),
        idempotency_key: &message.idempotency_key,
        message_id: &message_id,
        date_unix_ms: now_unix_ms,
        list_unsubscribe: unsubscribe,
        extra_headers,
    });
    Ok((bytes, message_id))
}

impl Channel for EmailChannel {
    fn validate_config(config: &Config) -> Result<(), Vec<String>> {
        let mut problems = config.missing(&["from_address"]);
        for key in ["from_address", "reply_to", "unsubscribe_mailto"] {
            if let Some(address) = config.get(key) {
                if let Err(problem) = check_address(address) {
                    problems.push(format!("{key}: {problem}"));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn send(config: &Config, message: OutboundMessage) -> Result<Delivery, SendError> {
        let (bytes, message_id) = render(config, &message, clock::now_unix_ms())?;
        let from = config.require("from_address")?;
        let reply = smtp::submit(from, std::slice::from_ref(&message.recipient.address), &bytes).map_err(|err| match err {
            smtp::SmtpError::Transient(why) => SendError::Retryable(why),
            smtp::SmtpError::Permanent(why) | smtp::SmtpError::Denied(why) => SendError::Permanent(why),
        })?;
        Ok(Delivery {
            provider_id: message_id,
            metadata: vec![("smtp_reply".into(), reply), ("bytes".into(), bytes.len().to_string())],
        })
    }

    fn parse_callback(config: &Config, request: CallbackRequest) -> Result<Vec<StatusUpdate>, String> {
        if request.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            parse_json(config, &request.body, clock::now_unix_ms())
        } else {
            parse_dsn(&request.body)
        }
    }
}

/// A JSON callback: an SNS message (it has `Type`) only with a valid signature, from
/// an accepted topic; a subscription confirmation of an accepted topic is confirmed;
/// bare SES events as they are.
pub fn parse_json(config: &Config, body: &[u8], now_unix_ms: i64) -> Result<Vec<StatusUpdate>, String> {
    let outer: serde_json::Value = serde_json::from_slice(body).map_err(|err| format!("not JSON: {err}"))?;
    if outer.get("Type").is_none() {
        return ses_updates(&outer);
    }
    let now = u64::try_from(now_unix_ms / 1000).unwrap_or(0);
    let verified = sns::verify(&outer, config.get(sns::TESTING_ORIGIN), now).map_err(rekindle_plugin_sdk::unauthenticated)?;
    let topic = outer.get("TopicArn").and_then(|t| t.as_str()).unwrap_or("");
    let topics: Vec<&str> = config.get("sns_topic_arns").unwrap_or("").split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    let accepted = topics.contains(&topic);
    if !accepted && (!topics.is_empty() || verified.kind != "Notification") {
        return Err(rekindle_plugin_sdk::unauthenticated(format_args!("SNS topic `{topic}` is not in this channel's sns_topic_arns")));
    }
    match verified.kind {
        "Notification" => {
            let inner = outer.get("Message").and_then(|m| m.as_str()).ok_or("SNS notification without Message")?;
            ses_updates(&serde_json::from_str(inner).map_err(|err| format!("SNS Message is not JSON: {err}"))?)
        }
        "SubscriptionConfirmation" => {
            let url = outer.get("SubscribeURL").and_then(|u| u.as_str()).ok_or("SNS subscription confirmation without SubscribeURL")?;
            sns::check_sns_url(url, config.get(sns::TESTING_ORIGIN))?;
            sns::get(url)?;
            rekindle_plugin_sdk::log::info(&format!("confirmed the SNS subscription to {topic}"));
            Ok(Vec::new())
        }
        _ => Ok(Vec::new()),
    }
}

/// A delivery status notification (RFC 3464), the bounce an MTA mails back to the
/// envelope sender, posted raw to the callback (a bounce mailbox piped to
/// `curl --data-binary @- .../callbacks/email`). Each recipient group with
/// `Action: failed` and a 5.x.x status is a permanent failure, `delivered`/`relayed` a
/// delivery; `delayed` says nothing final. The message is matched by the Message-ID of
/// the returned original headers.
pub fn parse_dsn(body: &[u8]) -> Result<Vec<StatusUpdate>, String> {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    if !lower.contains("report-type=delivery-status") && !lower.contains("report-type=\"delivery-status\"") {
        return Err("neither JSON nor a delivery status notification (multipart/report; report-type=delivery-status)".into());
    }
    let status_part = lower.find("message/delivery-status").ok_or("the report has no message/delivery-status part")?;
    // unfold header continuation lines, then read field groups separated by blank lines
    let mut lines: Vec<String> = Vec::new();
    for line in text[status_part..].lines() {
        match (line.starts_with([' ', '\t']), lines.last_mut()) {
            (true, Some(last)) if !last.is_empty() => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => lines.push(line.trim_end().to_string()),
        }
    }
    let provider_id = lines
        .iter()
        .skip(1)
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("message-id")).map(|(_, v)| v.trim().to_string()));
    let mut updates = Vec::new();
    let mut group: Vec<(String, String)> = Vec::new();
    for line in lines.iter().chain(std::iter::once(&String::new())) {
        if let Some((k, v)) = line.split_once(':').filter(|_| !line.is_empty()) {
            group.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            continue;
        }
        let field = |name: &str| group.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        if let (Some(recipient), Some(action)) = (field("final-recipient").or(field("original-recipient")), field("action")) {
            let address = recipient.split_once(';').map_or(recipient, |(_, a)| a).trim().trim_matches(['<', '>']).to_string();
            let status = field("status").unwrap_or("");
            let diagnostic = field("diagnostic-code").map(|d| d.split_once(';').map_or(d, |(_, d)| d).trim()).unwrap_or("");
            let state = match action.to_ascii_lowercase().as_str() {
                "failed" if status.starts_with('5') => Some(DeliveryState::Failed),
                "delivered" | "relayed" | "expanded" => Some(DeliveryState::Delivered),
                _ => None,
            };
            if let Some(state) = state {
                let reason = format!("{status} {diagnostic}").trim().to_string();
                updates.push(StatusUpdate { provider_id: provider_id.clone(), recipient: Some(address), state, reason: Some(reason) });
            }
        }
        group.clear();
    }
    if updates.is_empty() && !lower.contains("action: delayed") {
        return Err("the delivery status notification names no recipient with a final action".into());
    }
    Ok(updates)
}

/// Bounce, complaint and delivery notifications in Amazon SES's JSON shape.
fn ses_updates(notification: &serde_json::Value) -> Result<Vec<StatusUpdate>, String> {
    let kind = notification
        .get("notificationType")
        .or_else(|| notification.get("eventType"))
        .and_then(|t| t.as_str())
        .ok_or("no notificationType")?;
    let mail = notification.get("mail");
    let provider_id = mail
        .and_then(|m| m.pointer("/commonHeaders/messageId").or_else(|| m.get("messageId")))
        .and_then(|id| id.as_str())
        .map(str::to_string);
    let addresses = |pointer: &str, field: Option<&str>| -> Vec<String> {
        notification
            .pointer(pointer)
            .and_then(|list| list.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|item| match field {
                        Some(field) => item.get(field).and_then(|a| a.as_str()),
                        None => item.as_str(),
                    })
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let update = |recipient: String, state: DeliveryState, reason: Option<String>| StatusUpdate {
        provider_id: provider_id.clone(),
        recipient: Some(recipient),
        state,
        reason,
    };
    match kind {
        "Bounce" => {
            let permanent = notification.pointer("/bounce/bounceType").and_then(|t| t.as_str()) == Some("Permanent");
            if !permanent {
                return Ok(Vec::new());
            }
            let items = notification.pointer("/bounce/bouncedRecipients").and_then(|l| l.as_array()).cloned().unwrap_or_default();
            Ok(items
                .iter()
                .filter_map(|item| {
                    let address = item.get("emailAddress")?.as_str()?.to_string();
                    let reason = item.get("diagnosticCode").and_then(|d| d.as_str()).unwrap_or("permanent bounce");
                    Some(update(address, DeliveryState::Failed, Some(reason.to_string())))
                })
                .collect())
        }
        "Complaint" => Ok(addresses("/complaint/complainedRecipients", Some("emailAddress"))
            .into_iter()
            .map(|address| update(address, DeliveryState::Complained, Some("complaint".to_string())))
            .collect()),
        "Delivery" => Ok(addresses("/delivery/recipients", None)
            .into_iter()
            .map(|address| update(address, DeliveryState::Delivered, None))
            .collect()),
        other => Err(format!("notification type `{other}` is not Bounce, Complaint or Delivery")),
    }
}

rekindle_plugin_sdk::export_channel!(EmailChannel);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_could_inject_are_refused() {
        for (address, ok) in [
            ("li@example.com", true),
            ("li+tag@mail.example.cn", true),
            ("li@example", false),
            ("li@@example.com", false),
            ("li@example.com\r\nBcc: x@evil.test", false),
            ("<li@example.com>", false),
            ("@example.com", false),
        ] {
            assert_eq!(check_address(address).is_ok(), ok, "{address:?}");
        }
    }

    #[test]
    fn ses_notifications_become_status_updates() {
        let parse = |body: &[u8]| parse_json(&Config::default(), body, 0);
        let bounce = br#"{"notificationType":"Bounce","mail":{"messageId":"ses-1","commonHeaders":{"messageId":"<rk.k1@tea.example>"}},
            "bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"gone@example.com","diagnosticCode":"550 5.1.1 user unknown"}]}}"#;
        let updates = parse(bounce).expect("bounce");
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].state, DeliveryState::Failed);
        assert_eq!(updates[0].provider_id.as_deref(), Some("<rk.k1@tea.example>"));
        assert_eq!(updates[0].reason.as_deref(), Some("550 5.1.1 user unknown"));

        let complaint = serde_json::json!({"notificationType":"Complaint","mail":{"messageId":"ses-2"},
            "complaint":{"complainedRecipients":[{"emailAddress":"angry@example.com"}]}});
        let updates = parse(complaint.to_string().as_bytes()).expect("complaint");
        assert_eq!(updates[0].state, DeliveryState::Complained);
        assert_eq!(updates[0].recipient.as_deref(), Some("angry@example.com"));
        assert_eq!(updates[0].provider_id.as_deref(), Some("ses-2"));

        let transient = br#"{"notificationType":"Bounce","bounce":{"bounceType":"Transient","bouncedRecipients":[{"emailAddress":"full@example.com"}]}}"#;
        assert!(parse(transient).expect("transient").is_empty());
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn an_unsigned_sns_notification_is_refused() {
        let complaint = serde_json::json!({"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"angry@example.com"}]}});
        let wrapped = serde_json::json!({"Type":"Notification","MessageId":"1","TopicArn":"t","Timestamp":"x","Message": complaint.to_string()});
        let err = parse_json(&Config::default(), wrapped.to_string().as_bytes(), 0).unwrap_err();
        assert!(err.contains("SigningCertURL"), "{err}");
        let mut forged = wrapped.clone();
        forged["SigningCertURL"] = "https://evil.test/cert.pem".into();
        forged["Signature"] = "AAAA".into();
        forged["SignatureVersion"] = "1".into();
        let err = parse_json(&Config::default(), forged.to_string().as_bytes(), 0).unwrap_err();
        assert!(err.contains("sns.<region>.amazonaws.com"), "{err}");
    }

    #[test]
    fn a_postfix_bounce_is_a_permanent_failure_of_the_returned_message() {
        let dsn = include_str!("../../../tests/it/fixtures/bounce-postfix.eml")
            .replace("@RECIPIENT@", "gone@example.net")
            .replace("@MESSAGE_ID@", "<rk.winback=3A7=3Am1=3Aemail@tea.example>");
        let updates = parse_dsn(dsn.as_bytes()).unwrap();
        assert_eq!(updates.len(), 1, "{updates:?}");
        let u = &updates[0];
        assert_eq!(u.provider_id.as_deref(), Some("<rk.winback=3A7=3Am1=3Aemail@tea.example>"));
        assert_eq!(u.recipient.as_deref(), Some("gone@example.net"));
        assert!(matches!(u.state, DeliveryState::Failed));
        assert!(u.reason.as_deref().unwrap().starts_with("5.1.1 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown"), "{:?}", u.reason);
        let delayed = dsn.replace("Action: failed", "Action: delayed").replace("Status: 5.1.1", "Status: 4.4.1");
        assert!(parse_dsn(delayed.as_bytes()).unwrap().is_empty(), "a delay is not final");
        assert!(parse_dsn(b"Subject: hello\r\n\r\nnot a report").is_err());
    }
}
