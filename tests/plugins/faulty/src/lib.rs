//! A plugin that misbehaves on purpose, so the tests can show the sandbox holds.
//!
//! The `mode` setting picks the behaviour of `send`: `ok` (echo the
//! recipient), `loop` (spin forever), `spin` (count to the `iterations`
//! setting, then succeed), `hog` (allocate until something stops it), `panic`,
//! `http` (GET the `url` setting, with the optional `header` setting as
//! `name: value` and a body of `body_bytes` zero bytes, and report the status),
//! `http-loop` (GET `url` forever, whatever the answers), `log-loop` (log
//! forever), `write` (write a file named by the message text), `write-many`
//! (write `count` files of `bytes` bytes), `smtp` (submit `bytes` bytes to
//! `count` recipients through the channel's relay), `big-id` (a provider id of `bytes`
//! bytes), `big-metadata` (`count` metadata entries) or `big-error` (a
//! retryable error of `bytes` bytes).
//!
//! `parse-callback` answers `count` opted-out updates whose provider id has
//! `bytes` bytes (default 1 and 8), or in mode `http-loop` GETs `url` forever. `validate-config` GETs `validate_url` when
//! it is set (forever with `validate_loop = "yes"`) and reports `problems`
//! problems when that is set.

use rekindle_plugin_sdk::{
    files, http, log, smtp, CallbackRequest, Channel, Config, Delivery, DeliveryState, OutboundMessage, SendError, StatusUpdate,
};

struct Faulty;

fn number(config: &Config, key: &str, default: usize) -> usize {
    config.get(key).and_then(|n| n.parse().ok()).unwrap_or(default)
}

fn get(url: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> Result<http::Response, http::HttpError> {
    http::send(&http::Request { method: "GET".into(), url: url.into(), headers, body })
}

impl Channel for Faulty {
    fn validate_config(config: &Config) -> Result<(), Vec<String>> {
        if let Some(url) = config.get("validate_url") {
            loop {
                let answer = get(url, vec![], vec![]);
                if config.get("validate_loop") != Some("yes") {
                    answer.map_err(|err| vec![format!("validate_url: {err:?}")])?;
                    break;
                }
            }
        }
        match number(config, "problems", 0) {
            0 => Ok(()),
            n => Err((0..n).map(|i| format!("problem {i}: {}", "x".repeat(number(config, "bytes", 8)))).collect()),
        }
    }

    fn send(config: &Config, message: OutboundMessage) -> Result<Delivery, SendError> {
        let delivered = |provider_id: String, metadata: Vec<(String, String)>| Ok(Delivery { provider_id, metadata });
        match config.require("mode")? {
            "ok" => delivered(format!("ok:{}", message.recipient.address), vec![]),
            "loop" => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "spin" => {
                let mut counter: u64 = 0;
                for _ in 0..number(config, "iterations", 0) {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
                delivered(format!("spun:{counter}"), vec![])
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("deliberate panic for {}", message.recipient.address),
            "http" => {
                let headers = config
                    .get("header")
                    .and_then(|header| header.split_once(": "))
                    .map(|(name, value)| vec![(name.to_string(), value.to_string())])
                    .unwrap_or_default();
                match get(config.require("url")?, headers, vec![0; number(config, "body_bytes", 0)]) {
                    Ok(response) => delivered(
                        format!("status:{}", response.status),
                        vec![("body".into(), String::from_utf8_lossy(&response.body).into_owned())],
                    ),
                    Err(http::HttpError::Denied(why)) => Err(SendError::Permanent(format!("denied: {why}"))),
                    Err(other) => Err(SendError::Retryable(format!("{other:?}"))),
                }
            }
            "http-loop" => {
                let url = config.require("url")?;
                loop {
                    let _ = std::hint::black_box(get(url, vec![], vec![]));
                }
            }
            "log-loop" => loop {
                log::info("still here");
            },
            "write" => files::write(&message.text, b"x")
                .map(|()| Delivery { provider_id: message.text.clone(), metadata: vec![] })
                .map_err(SendError::Permanent),
            "write-many" => {
                let contents = vec![b'x'; number(config, "bytes", 1)];
                for i in 0..number(config, "count", 1) {
                    files::write(&format!("f-{i}.bin"), &contents).map_err(SendError::Retryable)?;
                }
                delivered("written".into(), vec![])
            }
            "smtp" => {
                let rcpt_to: Vec<String> = (0..number(config, "count", 1)).map(|i| format!("r{i}@example.com")).collect();
                match smtp::submit("news@example.com", &rcpt_to, &vec![b'x'; number(config, "bytes", 1)]) {
                    Ok(reply) => delivered(reply, vec![]),
                    Err(smtp::SmtpError::Transient(why)) => Err(SendError::Retryable(format!("smtp: {why}"))),
                    Err(smtp::SmtpError::Permanent(why) | smtp::SmtpError::Denied(why)) => Err(SendError::Permanent(format!("smtp: {why}"))),
                }
            }
            "big-id" => delivered("i".repeat(number(config, "bytes", 1)), vec![]),
            "big-metadata" => delivered("big".into(), (0..number(config, "count", 1)).map(|i| (format!("k{i}"), "v".into())).collect()),
            "big-error" => Err(SendError::Retryable("e".repeat(number(config, "bytes", 1)))),
            other => Err(SendError::Permanent(format!("unknown mode `{other}`"))),
        }
    }

    fn parse_callback(config: &Config, _request: CallbackRequest) -> Result<Vec<StatusUpdate>, String> {
        if let (Some("http-loop"), Some(url)) = (config.get("mode"), config.get("url")) {
            loop {
                let _ = std::hint::black_box(get(url, vec![], vec![]));
            }
        }
        let provider_id = "p".repeat(number(config, "bytes", 8));
        let update = StatusUpdate { provider_id: Some(provider_id), recipient: None, state: DeliveryState::OptedOut, reason: None };
        Ok(vec![update; number(config, "count", 1)])
    }
}

rekindle_plugin_sdk::export_channel!(Faulty);
