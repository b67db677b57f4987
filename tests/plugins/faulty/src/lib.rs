//! A plugin that misbehaves on purpose, so the tests can show the sandbox holds.
//!
//! The `mode` setting picks the behaviour of `send`: `ok` (echo the
//! recipient), `loop` (spin forever), `hog` (allocate until something stops
//! it), `panic`, `http` (GET the `url` setting and report the status) or
//! `write` (write a file named by the message text).

use rekindle_plugin_sdk::{files, http, Channel, Config, Delivery, OutboundMessage, SendError};

struct Faulty;

impl Channel for Faulty {
    fn send(config: &Config, message: OutboundMessage) -> Result<Delivery, SendError> {
        match config.require("mode")? {
            "ok" => Ok(Delivery { provider_id: format!("ok:{}", message.recipient.address), metadata: vec![] }),
            "loop" => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
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
                let url = config.require("url")?;
                let request = http::Request { method: "GET".into(), url: url.into(), headers: vec![], body: vec![] };
                match http::send(&request) {
                    Ok(response) => Ok(Delivery {
                        provider_id: format!("status:{}", response.status),
                        metadata: vec![("body".into(), String::from_utf8_lossy(&response.body).into_owned())],
                    }),
                    Err(http::HttpError::Denied(why)) => Err(SendError::Permanent(format!("denied: {why}"))),
                    Err(other) => Err(SendError::Retryable(format!("{other:?}"))),
                }
            }
            "write" => files::write(&message.text, b"x")
                .map(|()| Delivery { provider_id: message.text.clone(), metadata: vec![] })
                .map_err(SendError::Permanent),
            other => Err(SendError::Permanent(format!("unknown mode `{other}`"))),
        }
    }
}

rekindle_plugin_sdk::export_channel!(Faulty);
