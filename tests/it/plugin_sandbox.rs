//! The sandbox holds: the file channel works end to end, and a plugin that
//! loops, eats memory, panics, calls a host outside its grant, or is not a
//! plugin at all fails alone, with a clear error, while the host goes on.

use std::time::Duration;

use crate::plugin_support::*;
use rekindle::plugin::{ChannelHost, HostOptions, PluginError, SendErrorKind};

#[test]
fn file_channel_writes_eml_and_json_into_the_granted_folder() {
    let out = tempfile::tempdir().expect("out dir");
    let config = channel(
        "file",
        &format!(
            "settings = {{ from_address = \"news@tea.example\", from_name = \"茶馆 Tea House\" }}\n[grants]\nfiles = {:?}\n",
            out.path().display().to_string()
        ),
    );
    let host = ChannelHost::load(&channels(vec![("demo", config)]), &HostOptions::default()).expect("load");
    let rt = runtime();

    let mut email = message("li.lei@example.com", "m-1/winback/1");
    email.recipient.name = Some("李雷".to_string());
    email.subject = Some("好久不见，送您一张优惠券".to_string());
    email.html = Some("<p>Welcome back</p>".to_string());
    let delivery = rt.block_on(host.send("demo", email)).expect("eml send");
    assert_eq!(delivery.provider_id, "m-1+2Fwinback+2F1.eml");
    let eml = std::fs::read_to_string(out.path().join(&delivery.provider_id)).expect("eml written");
    for expected in [
        "From: =?UTF-8?B?",
        "To: =?UTF-8?B?5p2O6Zu3?= <li.lei@example.com>",
        "Message-ID: <rk.db047de2a8e20d777afde4b6bb4130ca@tea.example>", // sha256 of the key, first 16 bytes
        "Content-Type: multipart/alternative;",
        "Content-Type: text/html; charset=utf-8",
    ] {
        assert!(eml.contains(expected), "missing {expected:?} in\n{eml}");
    }

    let sms = message("+8613800000000", "m-2/winback/1");
    let delivery = rt.block_on(host.send("demo", sms.clone())).expect("json send");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join(&delivery.provider_id)).expect("json written")).expect("json");
    assert_eq!(json["to"], "+8613800000000");
    assert_eq!(json["text"], "hello");

    // A retry with the same key replaces the file instead of adding one.
    rt.block_on(host.send("demo", sms)).expect("retry");
    let files: Vec<_> = std::fs::read_dir(out.path()).expect("list").collect();
    assert_eq!(files.len(), 2, "{files:?}");
}

/// One host, several faulty channels next to a healthy one: each fault fails
/// its own send with a reason naming the limit, and the healthy channel still
/// delivers after every one of them.
#[test]
fn faults_fail_one_send_and_the_host_goes_on() {
    let port = free_port();
    let sink = ScriptServer::start("http-sink.sh", &[&port.to_string()]);
    let other_port = free_port();
    let files = tempfile::tempdir().expect("files dir");
    let granted = |mode: &str, extra: &str| {
        channel(
            "faulty",
            &format!(
                "settings = {{ mode = \"{mode}\"{extra} }}\n[grants]\nhttp = [\"127.0.0.1:{port}\"]\nfiles = {:?}\n[limits]\ncpu_ms = 200\nmemory_mib = 16\nio_timeout_ms = 500\nhttp_max_response_bytes = 1000\n",
                files.path().display().to_string()
            ),
        )
    };
    let base = format!("http://127.0.0.1:{port}");
    let host = ChannelHost::load(
        &channels(vec![
            ("ok", granted("ok", "")),
            ("loop", granted("loop", "")),
            ("hog", granted("hog", "")),
            ("panic", granted("panic", "")),
            ("allowed", granted("http", &format!(", url = \"{base}/hello\""))),
            ("other-port", granted("http", &format!(", url = \"http://127.0.0.1:{other_port}/\""))),
            ("other-host", granted("http", ", url = \"https://example.com/\"")),
            ("redirect-out", granted("http", &format!(", url = \"{base}/redirect?to=http://127.0.0.1:{other_port}/x\""))),
            ("slow", granted("http", &format!(", url = \"{base}/slow?ms=3000\""))),
            ("big", granted("http", &format!(", url = \"{base}/big?bytes=5000\""))),
            ("write", granted("write", "")),
        ]),
        &HostOptions::default(),
    )
    .expect("load");
    let rt = runtime();
    let send = |channel: &str, text: &str| {
        let mut msg = message("c@example.com", "k-1");
        msg.text = text.to_string();
        rt.block_on(host.send(channel, msg))
    };
    let ok = |label: &str| {
        let delivery = send("ok", "hi").unwrap_or_else(|err| panic!("healthy channel failed after {label}: {err}"));
        assert_eq!(delivery.provider_id, "ok:c@example.com");
    };
    ok("start");

    let cases: &[(&str, &str, SendErrorKind, &str)] = &[
        ("loop", "hi", SendErrorKind::Permanent, "cpu limit of 200 ms"),
        ("hog", "hi", SendErrorKind::Permanent, "memory limit of 16 MiB"),
        ("panic", "hi", SendErrorKind::Permanent, "deliberate panic for c@example.com"),
        ("other-port", "hi", SendErrorKind::Permanent, "is not in this channel's http grant"),
        ("other-host", "hi", SendErrorKind::Permanent, "is not in this channel's http grant"),
        ("redirect-out", "hi", SendErrorKind::Permanent, "leaves the channel's http grant"),
        ("slow", "hi", SendErrorKind::Retryable, "Timeout"),
        ("big", "hi", SendErrorKind::Retryable, "TooLarge"),
        ("write", "../escape", SendErrorKind::Permanent, "not a plain file name"),
    ];
    for (channel, text, kind, reason) in cases {
        let err = send(channel, text).expect_err(channel);
        assert_eq!(err.kind, *kind, "{channel}: {err}");
        assert!(err.reason.contains(reason), "{channel}: {err}");
        ok(channel);
    }

    let delivery = send("allowed", "hi").expect("allowed request");
    assert_eq!(delivery.provider_id, "status:200");
    let write = send("write", "note.txt").expect("plain name");
    assert_eq!(write.provider_id, "note.txt");
    assert!(files.path().join("note.txt").is_file());

    // Nothing reached the port outside the grant; the allowed request and the
    // redirect hop that was refused before leaving did.
    let requests = std::fs::read_to_string(sink.path().join("requests.jsonl")).expect("requests");
    assert!(requests.contains("\"/hello\""), "{requests}");
    assert!(requests.contains("\"/redirect\""), "{requests}");
    assert!(std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], other_port).into(), Duration::from_millis(200)).is_err());
}

#[test]
fn malformed_and_ungranted_plugins_are_refused_at_load_with_the_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"MZ this is not wasm").expect("write");
    let truncated = dir.path().join("truncated.wasm");
    let real = std::fs::read(plugin("file")).expect("file.wasm");
    std::fs::write(&truncated, &real[..real.len() / 2]).expect("write");
    let empty_module = dir.path().join("empty.wasm");
    std::fs::write(&empty_module, b"\0asm\x01\0\0\0").expect("write");

    let config_for = |path: &std::path::Path, rest: &str| {
        toml::from_str::<rekindle::plugin::ChannelConfig>(&format!("plugin = {:?}\n{rest}", path.display().to_string()))
            .expect("config")
    };
    let cases: Vec<(rekindle::plugin::ChannelConfig, &str)> = vec![
        (config_for(&garbage, ""), "not a WebAssembly file"),
        (config_for(&truncated, ""), "is rejected"),
        (config_for(&empty_module, ""), "not a rekindle:channel@0.1.0 plugin"),
        (config_for(&dir.path().join("missing.wasm"), ""), "cannot read plugin"),
        (channel("file", ""), "asks for files, which [channels.bad] does not grant"),
        (channel("file", "settings = { format = \"pdf\" }\n[grants]\nfiles = \"out\"\n"), "format `pdf` is not auto, eml or json"),
        (channel("faulty", "[grants]\nhttp = [\"127.0.0.1:1\"]\nfiles = \"out\"\n"), "lacks `mode`"),
        (channel("faulty", "settings = { mode = \"ok\" }\n[grants]\nhttp = [\"ftp://x\"]\nfiles = \"out\"\n"), "scheme `ftp`"),
    ];
    for (config, expected) in cases {
        let options = HostOptions { base_dir: dir.path().to_path_buf(), cache_dir: None, ..Default::default() };
        let err = match ChannelHost::load(&channels(vec![("bad", config)]), &options) {
            Ok(_) => panic!("expected a load error containing {expected:?}"),
            Err(err) => err,
        };
        let text = err.to_string();
        assert!(text.contains(expected), "{text}\n  should contain {expected:?}");
        assert!(matches!(err, PluginError::InChannel { .. } | PluginError::Config { .. }), "{err:?}");
        assert!(text.contains("bad"), "the error names the channel: {text}");
    }

    // The process goes on: a good channel loads and sends right after.
    let out = tempfile::tempdir().expect("out");
    let good = channel("file", &format!("[grants]\nfiles = {:?}\n", out.path().display().to_string()));
    let host = ChannelHost::load(&channels(vec![("demo", good)]), &HostOptions::default()).expect("good load");
    runtime().block_on(host.send("demo", message("+15551234567", "k"))).expect("send");
}

#[test]
fn compiled_code_is_cached_between_starts() {
    let cache = tempfile::tempdir().expect("cache");
    let out = tempfile::tempdir().expect("out");
    let config = channel("file", &format!("[grants]\nfiles = {:?}\n", out.path().display().to_string()));
    let options = HostOptions { base_dir: repo().to_path_buf(), cache_dir: Some(cache.path().to_path_buf()), ..Default::default() };
    let all = channels(vec![("demo", config)]);
    drop(ChannelHost::load(&all, &options).expect("cold load"));
    let entries: Vec<_> = std::fs::read_dir(cache.path()).expect("cache dir").filter_map(Result::ok).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = entries[0].path();
    assert_eq!(entry.extension().and_then(|e| e.to_str()), Some("cwasm"));
    let modified = std::fs::metadata(&entry).and_then(|m| m.modified()).expect("mtime");

    let host = ChannelHost::load(&all, &options).expect("warm load");
    assert_eq!(std::fs::metadata(&entry).and_then(|m| m.modified()).expect("mtime"), modified, "reused, not rewritten");
    runtime().block_on(host.send("demo", message("+15551234567", "k"))).expect("send from cached code");

    // A corrupt entry is replaced, not fatal.
    std::fs::write(&entry, b"corrupt").expect("corrupt");
    let host = ChannelHost::load(&all, &options).expect("load over a corrupt entry");
    runtime().block_on(host.send("demo", message("+15551234567", "k2"))).expect("send");
    assert!(std::fs::metadata(&entry).map(|m| m.len() > 1000).unwrap_or(false));
}
