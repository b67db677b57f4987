//! The public unsubscribe endpoint of a real daemon over real HTTP on 127.0.0.1: forged,
//! truncated, moved and malformed tokens change nothing (256 one-byte guesses included);
//! the pages in Chinese and English; failed attempts limited per client address (clients
//! bind other loopback addresses, 127.0.0.2 and up), X-Forwarded-For believed only from a
//! trusted proxy; the member card (daemon and local) after an unsubscribe. `Daemon` and
//! the raw-socket helpers serve `listener` too.

use crate::support::open_store;
use rekindle::domain::hex;
use rekindle::plan::links::Links;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon on a free port (over an empty store, or the test's), with `email` and `sms` channels that
/// write files, unsubscribe key `link-key`, admin token `t0ken`, a one-second shutdown
/// grace and `api` added under `[api]`.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(api: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        drop(open_store(dir.path()));
        Daemon::start_in(dir, api)
    }

    /// Starts in `dir`, whose store the test prepared.
    pub fn start_in(dir: tempfile::TempDir, api: &str) -> Daemon {
        let d = dir.path();
        std::fs::create_dir_all(d.join("rules")).unwrap();
        let port = crate::api::free_port();
        let plugin = crate::support::repo_path("target/plugins/file.wasm");
        let channel = |name: &str| format!("[channels.{name}]\nplugin = \"{}\"\ngrants = {{ files = \"{}\" }}\n", plugin.display(), d.join("out").join(name).display());
        std::fs::write(
            d.join("config.toml"),
            format!(
                "[store]\npath = \"store\"\n[campaigns]\nrules_dir = \"rules\"\npublic_url = \"http://127.0.0.1:{port}\"\nunsubscribe_secret = \"link-key\"\n\
                 [api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"t0ken\"\n{api}\n[dispatch]\nshutdown_grace_seconds = 1\n{}{}",
                channel("email"),
                channel("sms")
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rekindle"))
            .current_dir(d)
            .arg("--config")
            .arg(d.join("config.toml"))
            .arg("run")
            .env("REKINDLE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        let daemon = Daemon { dir, port, child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the API did not come up: {}", daemon.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(crate::api::http(port, "GET", "/healthz", &[], ""), (200, "ok\n".into()));
        daemon
    }

    pub fn links(&self) -> Links {
        Links { public_url: format!("http://127.0.0.1:{}", self.port), key: b"link-key".to_vec() }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// SIGTERM, and the daemon's exit within 20 s; panics otherwise.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the daemon runs");
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the daemon did not stop on SIGTERM: {}", self.log());
    }

    /// Every unsubscribe in the store (the daemon must have stopped).
    pub fn unsubscribes(&self) -> Vec<(String, Vec<String>)> {
        assert!(self.child.is_none(), "stop the daemon first");
        let store = open_store(self.dir.path());
        store.scan_suppressed().map(|r| r.map(|(m, c)| (m, c.iter().map(|c| c.to_string()).collect())).unwrap()).collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A connection to the daemon from `source` (a loopback address), with a read timeout
/// that keeps a test from hanging.
pub fn connect_from(source: &str, port: u16) -> TcpStream {
    let source: std::net::IpAddr = source.parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(source, 0).into()).unwrap();
    s.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// An answer: status, header block, body.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
    }
}

/// Reads one answer to the end of the connection (or its reset: a server that closes
/// with request bytes unread resets the connection after its answer).
pub fn read_answer(s: &mut TcpStream) -> Answer {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => break,
            Err(e) => panic!("reading the answer: {e} (after {} bytes)", out.len()),
        }
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Answer { status, head: head.to_string(), body: body.to_string() }
}

/// One request from `source`, `Connection: close`.
pub fn request_from(source: &str, port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = connect_from(source, port);
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    read_answer(&mut s)
}

const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

fn one_click(source: &str, port: u16, token: &str) -> Answer {
    request_from(source, port, "POST", &format!("/u/{token}"), &[("Content-Type", "application/x-www-form-urlencoded")], ONE_CLICK)
}

#[test]
fn two_hundred_fifty_six_one_byte_guesses_unsubscribe_nobody() {
    let mut daemon = Daemon::start("failure_limit = 0");
    let port = daemon.port;
    let member = hex(b"m0000001");
    for b in 0..=255u8 {
        let a = one_click("127.0.0.1", port, &format!("{member}.email.{b:02x}"));
        assert_eq!(a.status, 403, "guess {b:02x}: {}", a.body);
    }
    daemon.stop();
    assert_eq!(daemon.unsubscribes(), Vec::<(String, Vec<String>)>::new());
}

#[test]
fn truncated_altered_moved_and_malformed_tokens_are_refused_and_change_nothing() {
    let mut daemon = Daemon::start("failure_limit = 0");
    let port = daemon.port;
    let links = daemon.links();
    let token = links.token("m0000001", "email");
    let sig = token.rsplit('.').next().unwrap().to_string();
    let member = hex(b"m0000001");
    let mut flipped = sig.clone().into_bytes();
    flipped[31] = if flipped[31] == b'0' { b'1' } else { b'0' };
    let mut bad: Vec<(String, String)> = (0..32).step_by(2).map(|n| (format!("{member}.email.{}", &sig[..n]), format!("{n} hex digits"))).collect();
    bad.extend([
        (format!("{member}.email.{}", String::from_utf8(flipped).unwrap()), "the last digit changed".to_string()),
        (format!("{}.email.{sig}", hex(b"m0000002")), "moved to another member".into()),
        (format!("{member}.sms.{sig}", ), "moved to another channel".into()),
        (format!("{member}.email.{sig}00"), "a byte too long".into()),
        (format!("{}.email.{sig}", &member[1..]), "odd member hex".into()),
        (format!("ff{member}.email.{sig}"), "a member id that is not UTF-8".into()),
        (format!("%ff%fe.email.{sig}"), "a path that is not UTF-8".into()),
        (format!("{member}.email.{sig}.{sig}"), "four parts".into()),
        (format!("{}.email.{sig}", "6d".repeat(30_000)), "60 KB".into()),
    ]);
    for (t, what) in &bad {
        for method in ["GET", "POST"] {
            let a = request_from("127.0.0.1", port, method, &format!("/u/{t}"), &[("Accept-Language", "en")], ONE_CLICK);
            assert!(a.status == 403 && a.body.contains("This link is not valid"), "{what}, {method}: {} {}", a.status, a.body);
        }
    }
    // the real link still works, for its member and channel only
    assert_eq!(one_click("127.0.0.1", port, &token).status, 200);
    daemon.stop();
    assert_eq!(daemon.unsubscribes(), vec![("m0000001".to_string(), vec!["email".to_string()])]);
}

#[test]
fn the_unsubscribe_pages_speak_chinese_and_english() {
    let mut daemon = Daemon::start("");
    let port = daemon.port;
    let links = daemon.links();
    let (email, sms) = (links.token("m0000001", "email"), links.token("m0000002", "sms"));
    let get = |path: &str, lang: Option<&str>| {
        let headers: Vec<(&str, &str)> = lang.map(|l| ("Accept-Language", l)).into_iter().collect();
        request_from("127.0.0.1", port, "GET", path, &headers, "")
    };

    let zh = get(&format!("/u/{email}"), None);
    assert_eq!(zh.status, 200);
    assert!(zh.body.contains("lang=zh-CN") && zh.body.contains("您将不再收到我们的邮件") && zh.body.contains("确认退订") && zh.body.contains("method=post"), "{}", zh.body);
    assert_eq!(zh.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(zh.header("cache-control"), Some("no-store"));
    let en = get(&format!("/u/{email}"), Some("en-US,en;q=0.9,zh-CN;q=0.8"));
    assert!(en.body.contains("lang=en") && en.body.contains("Stop receiving emails from us?") && en.body.contains(">Unsubscribe</button>"), "{}", en.body);
    let by_q = get(&format!("/u/{sms}"), Some("en;q=0.5, zh-CN;q=0.9"));
    assert!(by_q.body.contains("短信"), "the higher q-value wins: {}", by_q.body);
    let asked = get(&format!("/u/{sms}?lang=en"), Some("zh-CN"));
    assert!(asked.body.contains("Stop receiving text messages"), "?lang= overrides the header: {}", asked.body);
    // a channel name with markup (the token signs any name): percent-encoded in the path
    let marked = links.token("m0000003", "<b>shop</b>").replace('<', "%3C").replace('>', "%3E").replace('/', "%2F");
    let other = get(&format!("/u/{marked}"), Some("en"));
    assert!(other.status == 200 && other.body.contains("messages on the “&lt;b&gt;shop&lt;&#x2f;b&gt;” channel") && !other.body.contains("<b>"), "{}", other.body);

    let bad = format!("{}.email.00", hex(b"m0000001"));
    let invalid_zh = get(&format!("/u/{bad}"), None);
    assert!(invalid_zh.status == 403 && invalid_zh.body.contains("链接无效"), "{}", invalid_zh.body);
    let invalid_en = get(&format!("/u/{bad}"), Some("en-GB"));
    assert!(invalid_en.status == 403 && invalid_en.body.contains("This link is not valid"), "{}", invalid_en.body);

    // RFC 8058: the mail client's POST has the one-click body, no cookies, no language
    let done = one_click("127.0.0.1", port, &email);
    assert!(done.status == 200 && done.body.contains("您已退订邮件"), "{}", done.body);
    let done_en = request_from("127.0.0.1", port, "POST", &format!("/u/{sms}?lang=en"), &[], "");
    assert!(done_en.status == 200 && done_en.body.contains("You are unsubscribed from text messages"), "the page's own form: {}", done_en.body);
    daemon.stop();
    assert_eq!(daemon.unsubscribes(), vec![("m0000001".to_string(), vec!["email".to_string()]), ("m0000002".to_string(), vec!["sms".to_string()])]);
}

#[test]
fn failed_attempts_are_limited_per_client_and_successes_are_not() {
    let mut daemon = Daemon::start("failure_limit = 3\nfailure_window_seconds = 600");
    let port = daemon.port;
    let links = daemon.links();
    let forged = |m: &str| format!("{}.email.{}", hex(m.as_bytes()), "0".repeat(32));
    for _ in 0..3 {
        assert_eq!(one_click("127.0.0.2", port, &forged("m0000001")).status, 403);
    }
    // past the limit the handler does not run: not even a valid link works from there
    let refused = one_click("127.0.0.2", port, &links.token("m0000009", "email"));
    assert_eq!(refused.status, 429, "{}", refused.body);
    let wait: u64 = refused.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After in seconds");
    assert!((1..=600).contains(&wait), "{wait}");
    let callback = request_from("127.0.0.2", port, "POST", "/callbacks/email", &[], "{}");
    assert_eq!(callback.status, 429, "the callbacks are behind the same limit");
    assert_eq!(request_from("127.0.0.2", port, "GET", "/healthz", &[], "").status, 200, "health is not a public route of the limit");

    // X-Forwarded-For from a client that is no trusted proxy changes nothing
    for i in 0..3 {
        let xff = format!("127.0.1.{i}");
        assert_eq!(request_from("127.0.0.3", port, "POST", &format!("/u/{}", forged("m0000001")), &[("X-Forwarded-For", &xff)], ONE_CLICK).status, 403);
    }
    assert_eq!(request_from("127.0.0.3", port, "POST", &format!("/u/{}", forged("m0000001")), &[("X-Forwarded-For", "127.0.1.9")], ONE_CLICK).status, 429);

    // successes are never counted: a client clicking its links again and again
    let mine = links.token("m0000002", "sms");
    for _ in 0..10 {
        assert_eq!(one_click("127.0.0.4", port, &mine).status, 200);
        assert_eq!(request_from("127.0.0.4", port, "GET", &format!("/u/{mine}"), &[], "").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(one_click("127.0.0.4", port, &forged("m0000001")).status, 403);
    }
    assert_eq!(one_click("127.0.0.4", port, &mine).status, 200, "two failures are under the limit");
    daemon.stop();
    assert_eq!(daemon.unsubscribes(), vec![("m0000002".to_string(), vec!["sms".to_string()])], "m0000009's link was refused unread");
}

#[test]
fn x_forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let mut daemon = Daemon::start("failure_limit = 2\ntrusted_proxies = [\"127.0.0.1\"]");
    let port = daemon.port;
    let links = daemon.links();
    let forged = format!("{}.email.{}", hex(b"m0000001"), "f".repeat(32));
    let via_proxy = |xff: &str, token: &str| request_from("127.0.0.1", port, "POST", &format!("/u/{token}"), &[("X-Forwarded-For", xff)], ONE_CLICK).status;
    assert_eq!(via_proxy("127.0.0.20", &forged), 403);
    assert_eq!(via_proxy("127.0.0.20", &forged), 403);
    assert_eq!(via_proxy("127.0.0.20", &forged), 429, "the client behind the proxy is limited");
    assert_eq!(via_proxy("127.0.0.21, 127.0.0.20", &forged), 429, "what the client wrote left of the proxy's entry proves nothing");
    let valid = links.token("m0000005", "email");
    assert_eq!(via_proxy("127.0.0.20, 127.0.0.21", &valid), 200, "another client behind the same proxy is not");
    assert_eq!(request_from("127.0.0.2", port, "POST", &format!("/u/{valid}"), &[("X-Forwarded-For", "127.0.0.20")], ONE_CLICK).status, 200, "an untrusted peer's header is ignored");
    daemon.stop();
    assert_eq!(daemon.unsubscribes(), vec![("m0000005".to_string(), vec!["email".to_string()])]);
}


#[test]
fn the_member_card_shows_consent_in_force_after_an_unsubscribe() {
    use rekindle::domain::{day_of, DayFmt};
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = crate::support::sample_store(dir.path(), 200);
    let (id, member) = (1..=200)
        .map(|i| format!("m{i:07}"))
        .find_map(|id| store.member(&id).unwrap().filter(|m| m.opted_in_email && m.opted_in_sms && !m.email.is_empty() && !m.phone.is_empty()).map(|m| (id, m)))
        .expect("a member opted in to both");
    let phone = member.phone.clone();
    store
        .update_address("sms", &phone, |h| {
            h.stopped = true;
            h.at = 1_796_083_200; // 2026-12-01
            h.reason = "opted out".into();
        })
        .unwrap();
    drop(store);
    let today = || DayFmt(day_of(chrono::Utc::now().timestamp())).to_string();
    let before = today();
    let mut daemon = Daemon::start_in(dir, "");
    let port = daemon.port;
    assert_eq!(one_click("127.0.0.1", port, &daemon.links().token(&id, "email")).status, 200);
    let (status, card) = crate::api::http(port, "GET", &format!("/api/members/{id}"), &[("Authorization", "Bearer t0ken")], "");
    assert_eq!(status, 200, "{card}");
    let card: serde_json::Value = serde_json::from_str(&card).unwrap();
    let shown: Vec<&str> = card["consent"].as_array().unwrap().iter().map(|c| c["shown"].as_str().unwrap()).collect();
    let after = today();
    let email_no = |s: &str| [&before, &after].iter().any(|d| s == format!("email no (unsubscribed {d})"));
    assert!(email_no(shown[0]), "the daemon's answer: {shown:?}");
    assert_eq!(shown[1], "sms no (address stopped 2026-12-01: opted out)");
    assert_eq!((card["consent"][0]["in_force"].as_bool(), card["consent"][0]["opted_in"].as_bool()), (Some(false), Some(true)), "{card}");
    assert_eq!(card["stopped_addresses"], serde_json::json!(["sms"]));
    daemon.stop();

    let local = Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .current_dir(daemon.dir.path())
        .args(["--config", "config.toml", "member", "show", &id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&local.stdout);
    assert!(local.status.success(), "{text}{}", String::from_utf8_lossy(&local.stderr));
    let line = text.lines().find(|l| l.trim_start().starts_with("consent:")).unwrap_or_default().trim().to_string();
    assert!(
        [&before, &after].iter().any(|d| line == format!("consent: email no (unsubscribed {d})  sms no (address stopped 2026-12-01: opted out)")),
        "the local card: {line}"
    );
}
