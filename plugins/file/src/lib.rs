//! The file channel: each message becomes a file in the folder the operator granted.
//!
//! An email-shaped message (the recipient address has an `@`) is written as a
//! complete `.eml` (the same MIME the email plugin sends), anything else as
//! JSON. The file name comes from the idempotency key, so a retried message
//! replaces its own file instead of adding a second. Settings: `format`
//! (`auto`, `eml` or `json`), `from_address` and `from_name` for .eml files.
//! This is what the README's demo uses: it needs no provider at all.

use rekindle_plugin_sdk::{clock, files, mime, Channel, Config, Delivery, OutboundMessage, SendError};

pub struct FileChannel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Eml,
    Json,
}

/// Which format a message is written in.
pub fn format_for(setting: Option<&str>, message: &OutboundMessage) -> Result<Format, String> {
    match setting.unwrap_or("auto") {
        "eml" => Ok(Format::Eml),
        "json" => Ok(Format::Json),
        "auto" if message.recipient.address.contains('@') => Ok(Format::Eml),
        "auto" => Ok(Format::Json),
        other => Err(format!("format `{other}` is not auto, eml or json")),
    }
}

/// A file name from the idempotency key: letters, digits, `-`, `_`, `.` kept,
/// anything else written as `+XX`.
pub fn file_name(idempotency_key: &str, format: Format) -> String {
    let mut name = String::with_capacity(idempotency_key.len() + 5);
    for byte in idempotency_key.bytes().take(150) {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' || (byte == b'.' && !name.is_empty()) {
            name.push(byte as char);
        } else {
            name.push_str(&format!("+{byte:02X}"));
        }
    }
    name.push_str(match format {
        Format::Eml => ".eml",
        Format::Json => ".json",
    });
    name
}

/// The bytes of the file for `message`.
pub fn render(config: &Config, message: &OutboundMessage, format: Format, now_unix_ms: i64) -> Vec<u8> {
    match format {
        Format::Eml => {
            let from_address = config.get("from_address").unwrap_or("rekindle@localhost");
            let domain = from_address.rsplit_once('@').map_or("localhost", |(_, domain)| domain);
            let unsubscribe = rekindle_plugin_sdk::lookup(&message.channel_data, "unsubscribe_url")
                .map(|url| vec![url.to_string()])
                .unwrap_or_default();
            mime::build(&mime::Email {
                from_address,
                from_name: config.get("from_name"),
                to_address: &message.recipient.address,
                to_name: message.recipient.name.as_deref(),
                subject: message.subject.as_deref().unwrap_or(""),
                text: &message.text,
                html: message.html.as_deref(),
                idempotency_key: &message.idempotency_key,
                message_id: &mime::message_id(&message.idempotency_key, domain),
                date_unix_ms: now_unix_ms,
                list_unsubscribe: unsubscribe,
                extra_headers: Vec::new(),
            })
        }
        Format::Json => {
            let pairs = |list: &[(String, String)]| {
                serde_json::Value::Object(list.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect())
            };
            let value = serde_json::json!({
                "to": message.recipient.address,
                "name": message.recipient.name,
                "member_id": message.recipient.member_id,
                "subject": message.subject,
                "text": message.text,
                "html": message.html,
                "idempotency_key": message.idempotency_key,
                "channel_data": pairs(&message.channel_data),
                "metadata": pairs(&message.metadata),
                "written_at_unix_ms": now_unix_ms,
            });
            let mut bytes = serde_json::to_vec_pretty(&value).unwrap_or_default();
            bytes.push(b'\n');
            bytes
        }
    }
}

impl Channel for FileChannel {
    fn validate_config(config: &Config) -> Result<(), Vec<String>> {
        match config.get("format") {
            None | Some("auto" | "eml" | "json") => Ok(()),
            Some(other) => Err(vec![format!("format `{other}` is not auto, eml or json")]),
        }
    }

    fn send(config: &Config, message: OutboundMessage) -> Result<Delivery, SendError> {
        let format = format_for(config.get("format"), &message).map_err(SendError::Permanent)?;
        let name = file_name(&message.idempotency_key, format);
        let bytes = render(config, &message, format, clock::now_unix_ms());
        files::write(&name, &bytes).map_err(SendError::Retryable)?;
        Ok(Delivery { provider_id: name.clone(), metadata: vec![("file".into(), name), ("bytes".into(), bytes.len().to_string())] })
    }
}

rekindle_plugin_sdk::export_channel!(FileChannel);

#[cfg(test)]
mod tests {
    use super::*;
    use rekindle_plugin_sdk::Recipient;

    fn message(address: &str, key: &str) -> OutboundMessage {
        OutboundMessage {
            recipient: Recipient { address: address.into(), name: Some("李雷".into()), member_id: "m1".into() },
            subject: Some("回来看看".into()),
            text: "Hello".into(),
            html: None,
            idempotency_key: key.into(),
            channel_data: vec![],
            metadata: vec![("campaign".into(), "winback".into())],
        }
    }

    #[test]
    fn picks_format_and_a_safe_name() {
        let cases = [
            (None, "li@example.com", "m1/winback/1", Ok(Format::Eml), "m1+2Fwinback+2F1.eml"),
            (None, "+8613800000000", "m1:c2", Ok(Format::Json), "m1+3Ac2.json"),
            (Some("json"), "li@example.com", "../x", Ok(Format::Json), "+2E.+2Fx.json"),
            (Some("pdf"), "li@example.com", "k", Err(()), ""),
        ];
        for (setting, address, key, expected, name) in cases {
            let msg = message(address, key);
            match (format_for(setting, &msg), expected) {
                (Ok(format), Ok(want)) => {
                    assert_eq!(format, want);
                    assert_eq!(file_name(key, format), name);
                }
                (Err(_), Err(())) => {}
                (got, want) => panic!("{setting:?} {address}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn json_keeps_every_field() {
        let bytes = render(&Config::default(), &message("+8613800000000", "k"), Format::Json, 42);
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(value["to"], "+8613800000000");
        assert_eq!(value["name"], "李雷");
        assert_eq!(value["metadata"]["campaign"], "winback");
        assert_eq!(value["written_at_unix_ms"], 42);
    }
}
