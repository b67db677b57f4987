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

/// The faulty plugin as a channel granted the sink's port and `files`: `settings`
/// go inside `settings = { .. }`, `limits` are lines of `[limits]`.
fn faulty(settings: &str, port: u16, files: &std::path::Path, limits: &str) -> rekindle::plugin::ChannelConfig {
    channel(
        "faulty",
        &format!(
            "settings = {{ {settings} }}\n[grants]\nhttp = [\"127.0.0.1:{port}\"]\nfiles = {:?}\n[limits]\n{limits}\n",
            files.display().to_string()
        ),
    )
}

/// What a case expects of a send: what the delivery shows, or the kind of error and
/// a piece of its reason.
type Expected<'a, T> = Result<T, (SendErrorKind, &'a str)>;

/// One send through `channel` on a fresh runtime, with how long it took; a send
/// still running after `patience` fails the test (the old host ran some for ever).
fn send_timed(host: &ChannelHost, channel: &str, patience: Duration) -> (Result<rekindle::plugin::Delivery, rekindle::plugin::SendError>, Duration) {
    let rt = runtime();
    let started = std::time::Instant::now();
    let outcome = rt
        .block_on(async { tokio::time::timeout(patience, host.send(channel, message("c@example.com", "k-1"))).await })
        .unwrap_or_else(|_| panic!("`{channel}` still running after {patience:?}"));
    let took = started.elapsed();
    rt.shutdown_background();
    (outcome, took)
}

/// CPU time the calling thread has used (Linux, 10 ms resolution).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let ticks: u64 = after_name.split_whitespace().skip(11).take(2).map(|f| f.parse::<u64>().expect("ticks")).sum();
    Duration::from_millis(ticks * 10)
}

/// A plugin that keeps calling a slow granted server, each answer well within
/// `io_timeout_ms`, ends at its wall-clock deadline as a retryable failure (the
/// old host subtracted host-call time from the CPU budget: it never ended).
#[test]
fn a_send_that_keeps_calling_a_slow_server_ends_at_its_wall_clock_deadline() {
    let port = free_port();
    let _sink = ScriptServer::start("http-sink.sh", &[&port.to_string()]);
    let files = tempfile::tempdir().expect("files dir");
    let slow = format!("mode = \"http-loop\", url = \"http://127.0.0.1:{port}/slow?ms=300\"");
    let host = ChannelHost::load(&channels(vec![("stuck", faulty(&slow, port, files.path(), "wall_ms = 1500\nio_timeout_ms = 1000"))]), &HostOptions::default())
        .expect("load");
    let (outcome, took) = send_timed(&host, "stuck", Duration::from_secs(20));
    let err = outcome.expect_err("a send past its deadline fails");
    assert_eq!(err.kind, SendErrorKind::Retryable, "{err}");
    assert!(err.reason.contains("wall-clock limit of 1500 ms"), "{err}");
    assert!(took >= Duration::from_millis(1450) && took < Duration::from_secs(5), "ended after {took:?}");
}

/// Host calls are capped per call: a plugin calling a fast server, or logging,
/// in a loop stops at `max_host_calls`, retryable, having made exactly that many.
#[test]
fn a_send_stops_at_its_cap_of_host_calls() {
    let port = free_port();
    let sink = ScriptServer::start("http-sink.sh", &[&port.to_string()]);
    let files = tempfile::tempdir().expect("files dir");
    let cap = "max_host_calls = 20";
    let host = ChannelHost::load(
        &channels(vec![
            ("http-loop", faulty(&format!("mode = \"http-loop\", url = \"http://127.0.0.1:{port}/hello\""), port, files.path(), cap)),
            ("log-loop", faulty("mode = \"log-loop\"", port, files.path(), cap)),
        ]),
        &HostOptions::default(),
    )
    .expect("load");
    for channel in ["http-loop", "log-loop"] {
        let (outcome, _) = send_timed(&host, channel, Duration::from_secs(20));
        let err = outcome.expect_err(channel);
        assert_eq!(err.kind, SendErrorKind::Retryable, "{channel}: {err}");
        assert!(err.reason.contains("limit of 20 host calls"), "{channel}: {err}");
    }
    let hello = requests(sink.path()).iter().filter(|r| r["path"] == "/hello").count();
    assert_eq!(hello, 20, "the 21st call is refused before it leaves the host");
}

/// `cpu_ms` counts the plugin's own work (fuel), not wall time: a plugin that
/// needs about a quarter of its budget (32M iterations of 8-16 fuel units, of
/// 300 ms x 7M) succeeds while eight busy threads a core stretch its wall time
/// to several times `cpu_ms` (the old host stopped it: wall time minus host time).
#[test]
fn cpu_limit_counts_the_plugins_work_not_a_busy_machines_delay() {
    let files = tempfile::tempdir().expect("files dir");
    let spin = faulty("mode = \"spin\", iterations = \"32000000\"", 9, files.path(), "cpu_ms = 300");
    let host = ChannelHost::load(&channels(vec![("spin", spin)]), &HostOptions::default()).expect("load");
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let spinners: Vec<_> = (0..8 * cores)
        .map(|_| {
            let busy = std::sync::Arc::clone(&busy);
            std::thread::spawn(move || {
                let mut n: u64 = 0;
                while busy.load(std::sync::atomic::Ordering::Relaxed) {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            })
        })
        .collect();
    let (outcome, took) = send_timed(&host, "spin", Duration::from_secs(60));
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().expect("spinner");
    }
    let delivery = outcome.unwrap_or_else(|err| panic!("stopped after {took:?} on a busy machine: {err}"));
    assert_eq!(delivery.provider_id, "spun:32000000");
}

/// `validate-config` waiting on a slow server at start-up parks the loading
/// thread (the daemon loads on one of its runtime's blocking threads) instead
/// of busy-polling it: the old host spun at most of a core for the whole wait.
#[test]
fn validate_config_waiting_on_http_does_not_spin_the_loading_thread() {
    let port = free_port();
    let _sink = ScriptServer::start("http-sink.sh", &[&port.to_string()]);
    let files = tempfile::tempdir().expect("files dir");
    let settings = format!("mode = \"ok\", validate_url = \"http://127.0.0.1:{port}/slow?ms=1500\"");
    let all = channels(vec![("checked", faulty(&settings, port, files.path(), ""))]);
    let rt = runtime();
    let (loaded, took, cpu) = rt
        .block_on(async {
            tokio::task::spawn_blocking(move || {
                let (started, cpu_before) = (std::time::Instant::now(), thread_cpu());
                let loaded = ChannelHost::load(&all, &HostOptions::default()).map(|_| ());
                (loaded, started.elapsed(), thread_cpu() - cpu_before)
            })
            .await
        })
        .expect("loading thread");
    loaded.expect("validate-config passes once the server answers");
    assert!(took >= Duration::from_millis(1450), "validate-config waited for the answer: {took:?}");
    assert!(cpu < Duration::from_millis(400), "the loading thread used {cpu:?} of cpu in {took:?}");
}

/// A `validate-config` that never finishes fails its channel at start-up, at the
/// channel's wall-clock deadline, naming the channel and the limit.
#[test]
fn validate_config_past_its_deadline_fails_that_channel_at_start_up() {
    let port = free_port();
    let _sink = ScriptServer::start("http-sink.sh", &[&port.to_string()]);
    let files = tempfile::tempdir().expect("files dir");
    let settings = format!("mode = \"ok\", validate_url = \"http://127.0.0.1:{port}/slow?ms=300\", validate_loop = \"yes\"");
    let all = channels(vec![("stuck", faulty(&settings, port, files.path(), "wall_ms = 1000"))]);
    // compile once into a cache, so the time measured below is the start-up's own
    let cache = tempfile::tempdir().expect("cache");
    let options = HostOptions { cache_dir: Some(cache.path().to_path_buf()), ..Default::default() };
    let quick = channels(vec![("quick", faulty("mode = \"ok\"", port, files.path(), ""))]);
    drop(ChannelHost::load(&quick, &options).expect("warm the cache"));
    let rt = runtime();
    let started = std::time::Instant::now();
    let loaded = rt.block_on(async {
        let load = tokio::task::spawn_blocking(move || ChannelHost::load(&all, &options).map(|_| ()));
        tokio::time::timeout(Duration::from_secs(20), load).await
    });
    let took = started.elapsed();
    rt.shutdown_background();
    let err = loaded.expect("start-up ends").expect("loading thread").expect_err("the channel fails");
    let text = err.to_string();
    assert!(text.contains("channel `stuck`") && text.contains("validate-config failed: plugin stopped at its wall-clock limit of 1000 ms"), "{text}");
    assert!(took < Duration::from_secs(5), "start-up took {took:?}");
}

/// A callback the plugin cannot parse within its wall-clock deadline is "busy"
/// (the endpoint answers 503, so the provider retries), not a refused request.
#[test]
fn a_callback_past_its_deadline_is_busy_not_refused() {
    let port = free_port();
    let _sink = ScriptServer::start("http-sink.sh", &[&port.to_string()]);
    let files = tempfile::tempdir().expect("files dir");
    let slow = format!("mode = \"http-loop\", url = \"http://127.0.0.1:{port}/slow?ms=300\"");
    let host = ChannelHost::load(&channels(vec![("stuck", faulty(&slow, port, files.path(), "wall_ms = 1000"))]), &HostOptions::default())
        .expect("load");
    let request = rekindle::plugin::CallbackRequest { method: "POST".into(), path: "/".into(), headers: vec![], body: b"{}".to_vec() };
    let rt = runtime();
    let outcome = rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), host.parse_callback("stuck", request)).await });
    rt.shutdown_background();
    match outcome.expect("the callback ends") {
        Err(PluginError::Busy { channel, reason }) => {
            assert_eq!(channel, "stuck");
            assert!(reason.contains("wall-clock limit of 1000 ms"), "{reason}");
        }
        other => panic!("expected a busy callback, got {other:?}"),
    }
}

/// `files.write` stops at the folder's quotas, counting what is there (also files
/// someone else put or took away): a plugin writing 50 files into a folder of 20
/// leaves 20, one writing 400-byte files under 1,000 bytes leaves two, and after
/// the consumer empties the folder writes go on.
#[test]
fn files_writes_stop_at_the_folders_quotas() {
    let counted = tempfile::tempdir().expect("count dir");
    let sized = tempfile::tempdir().expect("size dir");
    std::fs::write(sized.path().join("already-there"), [0u8; 100]).expect("seed");
    let host = ChannelHost::load(
        &channels(vec![
            ("many", faulty("mode = \"write-many\", count = \"50\", bytes = \"10\"", 9, counted.path(), "files_max_count = 20")),
            ("large", faulty("mode = \"write-many\", count = \"5\", bytes = \"400\"", 9, sized.path(), "files_max_bytes = 1000")),
        ]),
        &HostOptions::default(),
    )
    .expect("load");
    let listing = |dir: &std::path::Path| -> Vec<(String, u64)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry"))
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().expect("metadata").len()))
            .collect();
        files.sort();
        files
    };
    let cases = [
        ("many", counted.path(), "files_max_count = 20", 20, 200),
        ("large", sized.path(), "files_max_bytes = 1000", 3, 900),
    ];
    for (channel, dir, quota, files, bytes) in cases {
        let (outcome, _) = send_timed(&host, channel, Duration::from_secs(20));
        let err = outcome.expect_err(channel);
        assert_eq!(err.kind, SendErrorKind::Retryable, "{channel}: {err}");
        assert!(err.reason.contains(quota) && err.reason.contains(&format!("[channels.{channel}.limits]")), "{channel}: {err}");
        let held = listing(dir);
        assert_eq!((held.len(), held.iter().map(|(_, len)| len).sum::<u64>()), (files, bytes), "{channel}: {held:?}");
    }
    // The consumer takes the files away; after the recount interval the quota has room again.
    for (name, _) in listing(counted.path()) {
        std::fs::remove_file(counted.path().join(name)).expect("consume");
    }
    std::thread::sleep(Duration::from_millis(1100));
    let (outcome, _) = send_timed(&host, "many", Duration::from_secs(20));
    assert!(outcome.expect_err("50 is still over 20").reason.contains("files_max_count = 20"));
    assert_eq!(listing(counted.path()).len(), 20, "20 written after the recount");
}

/// What a plugin returns is held to the caps of every value crossing into the
/// host: an oversized provider id, metadata or callback update fails the call,
/// naming the cap (never stored); an oversized reason is cut and says so; at the
/// caps everything passes.
#[test]
fn values_a_plugin_returns_are_held_to_their_caps() {
    let files = tempfile::tempdir().expect("files dir");
    let host = ChannelHost::load(
        &channels(vec![
            ("id-256", faulty("mode = \"big-id\", bytes = \"256\"", 9, files.path(), "")),
            ("id-24m", faulty("mode = \"big-id\", bytes = \"25165824\"", 9, files.path(), "")),
            ("meta-32", faulty("mode = \"big-metadata\", count = \"32\"", 9, files.path(), "")),
            ("meta-33", faulty("mode = \"big-metadata\", count = \"33\"", 9, files.path(), "")),
            ("error", faulty("mode = \"big-error\", bytes = \"100000\"", 9, files.path(), "")),
            ("updates-1000", faulty("mode = \"ok\", count = \"1000\", bytes = \"256\"", 9, files.path(), "")),
            ("updates-1001", faulty("mode = \"ok\", count = \"1001\"", 9, files.path(), "")),
            ("update-id", faulty("mode = \"ok\", bytes = \"257\"", 9, files.path(), "")),
        ]),
        &HostOptions::default(),
    )
    .expect("load");
    let sends: &[(&str, Expected<usize>)] = &[
        ("id-256", Ok(256)),
        ("id-24m", Err((SendErrorKind::Permanent, "a provider id of 25165824 bytes is over the cap of 256"))),
        ("meta-32", Ok(3)),
        ("meta-33", Err((SendErrorKind::Permanent, "33 metadata entries are over the cap of 32"))),
        ("error", Err((SendErrorKind::Retryable, "[cut at 1024 of 100000 bytes]"))),
    ];
    for (channel, expected) in sends {
        let (outcome, _) = send_timed(&host, channel, Duration::from_secs(20));
        match (outcome, expected) {
            (Ok(delivery), Ok(id_len)) => assert_eq!(delivery.provider_id.len(), *id_len, "{channel}"),
            (Err(err), Err((kind, why))) => {
                assert_eq!(err.kind, *kind, "{channel}: {err}");
                assert!(err.reason.contains(why) && err.reason.len() < 1_100, "{channel}: {}", &err.reason[..err.reason.len().min(200)]);
            }
            (other, _) => panic!("{channel}: unexpected {:?}", other.map(|d| d.provider_id.len())),
        }
    }
    let rt = runtime();
    let callback = |channel: &str| {
        let request = rekindle::plugin::CallbackRequest { method: "POST".into(), path: "/".into(), headers: vec![], body: vec![] };
        rt.block_on(host.parse_callback(channel, request))
    };
    assert_eq!(callback("updates-1000").expect("at the caps").len(), 1000);
    for (channel, why) in [("updates-1001", "1001 status updates are over the cap of 1000"), ("update-id", "of 257 bytes is over the cap of 256")] {
        let err = callback(channel).expect_err(channel).to_string();
        assert!(err.contains(why), "{channel}: {err}");
    }

    // validate-config's problems: the first 64, each cut, and how many more
    let err = match ChannelHost::load(&channels(vec![("noisy", faulty("mode = \"ok\", problems = \"10000\", bytes = \"5000\"", 9, files.path(), "memory_mib = 128"))]), &HostOptions::default()) {
        Ok(_) => panic!("a channel with problems loads"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("and 9936 more problems") && err.contains("[cut at 1024 of 5011 bytes]"), "{}", err.get(..300).unwrap_or(&err));
    assert!(err.len() < 65 * 1_100, "{} bytes of problems", err.len());
}

/// The HTTP capability owns the connection: a plugin setting `Host`,
/// `Content-Length` or `Transfer-Encoding` is refused before anything is sent,
/// and a response's headers count toward `http_max_response_bytes`.
#[test]
fn http_requests_cannot_set_host_owned_headers_and_response_headers_count() {
    let port = free_port();
    let sink = ScriptServer::start("http-sink.sh", &[&port.to_string()]);
    let files = tempfile::tempdir().expect("files dir");
    let url = |path: &str, extra: &str| format!("mode = \"http\", url = \"http://127.0.0.1:{port}{path}\"{extra}");
    let cap = "http_max_response_bytes = 10000";
    let host = ChannelHost::load(
        &channels(vec![
            ("host", faulty(&url("/refused", ", header = \"Host: metadata.internal\""), port, files.path(), cap)),
            ("length", faulty(&url("/refused", ", header = \"Content-Length: 0\""), port, files.path(), cap)),
            ("chunked", faulty(&url("/refused", ", header = \"Transfer-Encoding: chunked\""), port, files.path(), cap)),
            ("body", faulty(&url("/refused", ", body_bytes = \"4194305\""), port, files.path(), cap)),
            ("few-headers", faulty(&url("/headers?count=4&bytes=100", ""), port, files.path(), cap)),
            ("many-headers", faulty(&url("/headers?count=40&bytes=500", ""), port, files.path(), cap)),
        ]),
        &HostOptions::default(),
    )
    .expect("load");
    let cases: &[(&str, Expected<&str>)] = &[
        ("host", Err((SendErrorKind::Permanent, "denied: the `host` header is the host's to set"))),
        ("length", Err((SendErrorKind::Permanent, "denied: the `content-length` header is the host's to set"))),
        ("chunked", Err((SendErrorKind::Permanent, "denied: the `transfer-encoding` header is the host's to set"))),
        ("body", Err((SendErrorKind::Permanent, "denied: a request body of 4194305 bytes is over the cap of 4194304"))),
        ("few-headers", Ok("status:200")),
        ("many-headers", Err((SendErrorKind::Retryable, "TooLarge(\"response of at least"))),
    ];
    for (channel, expected) in cases {
        let (outcome, _) = send_timed(&host, channel, Duration::from_secs(20));
        match (outcome, expected) {
            (Ok(delivery), Ok(id)) => assert_eq!(delivery.provider_id, *id, "{channel}"),
            (Err(err), Err((kind, why))) => {
                assert_eq!(err.kind, *kind, "{channel}: {err}");
                assert!(err.reason.contains(why), "{channel}: {err}");
            }
            (other, _) => panic!("{channel}: unexpected {other:?}"),
        }
    }
    let refused = requests(sink.path()).iter().filter(|r| r["path"] == "/refused").count();
    assert_eq!(refused, 0, "a refused request never leaves the host");
}

/// An SMTP submission is held to its caps (recipients, message) before the host
/// opens a connection: over a cap it fails as permanent, naming the cap; at the
/// caps it goes on to the relay (here a closed port: retryable).
#[test]
fn smtp_submissions_are_held_to_their_caps() {
    let files = tempfile::tempdir().expect("files dir");
    let relay = format!("[smtp]\nhost = \"127.0.0.1\"\nport = {}\n", free_port());
    let submitting = |count: usize, bytes: usize| {
        let settings = format!("settings = {{ mode = \"smtp\", count = \"{count}\", bytes = \"{bytes}\" }}\n");
        let grants = format!("[grants]\nhttp = [\"127.0.0.1:9\"]\nfiles = {:?}\n[limits]\nmemory_mib = 64\n", files.path().display().to_string());
        channel("faulty", &format!("{settings}{relay}{grants}"))
    };
    let host = ChannelHost::load(
        &channels(vec![
            ("at-caps", submitting(100, 16 << 20)),
            ("recipients", submitting(101, 10)),
            ("message", submitting(1, (16 << 20) + 1)),
        ]),
        &HostOptions::default(),
    )
    .expect("load");
    let cases = [
        ("at-caps", SendErrorKind::Retryable, "cannot reach relay"),
        ("recipients", SendErrorKind::Permanent, "smtp: 101 envelope recipients are over the cap of 100"),
        ("message", SendErrorKind::Permanent, "smtp: a message of 16777217 bytes is over the cap of 16777216"),
    ];
    for (channel, kind, why) in cases {
        let (outcome, _) = send_timed(&host, channel, Duration::from_secs(20));
        let err = outcome.expect_err(channel);
        assert_eq!(err.kind, kind, "{channel}: {err}");
        assert!(err.reason.contains(why), "{channel}: {err}");
    }
}
