//! The daemon's HTTP API through real HTTP on 127.0.0.1: health, bearer-token auth
//! refused without and with a wrong token, runs and /metrics (read by the Prometheus
//! client's text-format parser), and an unsubscribe by signed link after which the member
//! gets no further message while a forged link is refused.

use crate::support::{python, sample_store};
use rekindle::plan::links::Links;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
}

/// One HTTP/1.1 request; (status, body).
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn rekindle(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rekindle"));
    c.current_dir(dir).arg("--config").arg(dir.join("config.toml"));
    c
}

fn sent_to(out: &Path, member: &str, run: u64) -> bool {
    std::fs::read_dir(out).unwrap().any(|e| {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        name.contains(&format!("3A{run}+3A{member}+3A"))
    })
}

#[test]
fn unsubscribe_links_auth_runs_and_metrics_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    drop(sample_store(d, 500));
    let out = d.join("out");
    std::fs::create_dir_all(d.join("rules")).unwrap();
    std::fs::write(d.join("rules/all.toml"), "[audience]\norders = { min = 1 }\n[message]\nchannels = [\"files\"]\n[message.files]\ntext = \"{{ unsubscribe_url }}\"\n[limits]\nquiet_hours = false\n").unwrap();
    let port = free_port();
    std::fs::write(
        d.join("config.toml"),
        format!(
            "[store]\npath = \"store\"\n[campaigns]\nrules_dir = \"rules\"\nfrequency_cap = {{ messages = 100, days = 1 }}\npublic_url = \"http://127.0.0.1:{port}\"\nunsubscribe_secret = \"link-key\"\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"t0ken-42\"\nmetrics_token = \"scrape-1\"\n[channels.files]\nplugin = \"{}\"\nconsent = \"none\"\ngrants = {{ files = \"{}\" }}\n",
            crate::support::repo_path("target/plugins/file.wasm").display(),
            out.display()
        ),
    )
    .unwrap();
    let first = rekindle(d).args(["run", "--once", "--at", "2026-11-01T12:00:00Z"]).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let member = std::fs::read_dir(&out).unwrap().next().unwrap().unwrap().file_name().to_string_lossy().split("+3A").nth(2).unwrap().to_string();
    assert!(sent_to(&out, &member, 1));
    let links = Links { public_url: format!("http://127.0.0.1:{port}"), key: b"link-key".to_vec() };
    let token = links.token(&member, "files");
    let body = std::fs::read_dir(&out).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).find(|b| b.contains(&token));
    assert!(body.is_some(), "the message carries the member's signed link");

    let mut daemon = rekindle(d).arg("run").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the API did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http(port, "GET", "/healthz", &[], ""), (200, "ok\n".into()));
    assert_eq!(http(port, "GET", "/api/runs", &[], "").0, 401, "no token");
    assert_eq!(http(port, "GET", "/api/runs", &[("Authorization", "Bearer t0ken-41")], "").0, 401, "wrong token");
    assert_eq!(http(port, "GET", "/metrics", &[("Authorization", "Bearer nope")], "").0, 401);
    let (status, runs) = http(port, "GET", "/api/runs", &[("Authorization", "Bearer t0ken-42")], "");
    assert_eq!(status, 200);
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    assert_eq!(runs[0]["id"], 1);
    assert_eq!(http(port, "GET", "/api/runs", &[("Authorization", "Bearer scrape-1")], "").0, 401, "the metrics token is read-only");
    assert_eq!(http(port, "GET", "/metrics", &[("Authorization", "Bearer t0ken-42")], "").0, 200, "the admin token scrapes too");
    let (status, metrics) = http(port, "GET", "/metrics", &[("Authorization", "Bearer scrape-1")], "");
    assert_eq!(status, 200);
    let parsed = python()
        .arg("-c")
        .arg("import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\nfor f in p(sys.stdin.read()):\n  for s in f.samples: print(s.name, s.value)")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(metrics.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let samples = String::from_utf8_lossy(&parsed.stdout);
    assert!(parsed.status.success() && samples.contains("rekindle_runs_total 1.0") && samples.contains("rekindle_outbox_queued 0.0"), "{samples}{}", String::from_utf8_lossy(&parsed.stderr));
    assert!(samples.contains("rekindle_build_info 1.0") && metrics.contains(&format!("rekindle_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"))), "{metrics}");
    let rss = samples.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")?.parse::<f64>().ok());
    assert!(rss.is_some_and(|b| b > 1e6), "the daemon's resident memory: {samples}");
    // the co-purchase rules and value model this store lacks are made in the background
    // (the daemon served meanwhile); /metrics says so until they are done
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, m) = http(port, "GET", "/metrics", &[("Authorization", "Bearer scrape-1")], "");
        assert!(m.contains("# TYPE rekindle_models_refreshing gauge\n"), "{m}");
        if m.contains("\nrekindle_models_refreshing 0\n") {
            break;
        }
        assert!(Instant::now() < deadline, "the background refresh did not finish: {m}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // the link: a page first, then one click
    let (status, page) = http(port, "GET", &format!("/u/{token}"), &[], "");
    assert!(status == 200 && page.contains("method=post"), "{page}");
    let forged = links.token("someone-else", "files").replacen(&hex(b"someone-else"), &hex(member.as_bytes()), 1);
    let other = format!("{}.files.{}", hex(b"m0000001"), token.rsplit('.').next().unwrap());
    assert_eq!(http(port, "POST", &format!("/u/{forged}"), &[], "List-Unsubscribe=One-Click").0, 403, "a signature for someone else");
    assert_eq!(http(port, "POST", &format!("/u/{other}"), &[], "List-Unsubscribe=One-Click").0, 403, "this signature on another member");
    let (status, done) = http(port, "POST", &format!("/u/{token}"), &[("Content-Type", "application/x-www-form-urlencoded")], "List-Unsubscribe=One-Click");
    assert!(status == 200 && done.contains("已退订"), "a one-click POST without Accept-Language gets the Chinese page: {done}");
    // while the daemon holds the store, the CLI asks its API and prints what it prints
    // from the store itself once the daemon is gone
    let through_daemon: Vec<(Vec<&str>, String)> = [
        vec!["outbox", "status"],
        vec!["report", "all"],
        vec!["member", "show", member.as_str()],
        vec!["outbox", "status", "--format", "json"],
        vec!["report", "all", "--format", "json"],
        vec!["outbox", "dead-letters", "--format", "csv"],
        vec!["member", "show", member.as_str(), "--format", "json"],
        vec!["explain", member.as_str(), "--rule", "all"],
        vec!["explain", member.as_str(), "--format", "json"],
    ]
        .into_iter()
        .map(|args| {
            let o = rekindle(d).args(&args).output().unwrap();
            assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
            (args, String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .collect();
    assert!(through_daemon[0].1.contains("queued 0, due now 0, dead letters 0") && through_daemon[0].1.contains("run 1 at "), "{}", through_daemon[0].1);
    assert!(through_daemon[1].1.contains("unsubscribed") && !through_daemon[1].1.contains('{'), "a table, not JSON: {}", through_daemon[1].1);
    assert!(through_daemon[2].1.contains(&format!("member {member}")) && through_daemon[2].1.contains("files no (unsubscribed"), "{}", through_daemon[2].1);
    let status: serde_json::Value = serde_json::from_str(&through_daemon[3].1).unwrap();
    assert!(status["runs"][0]["run"] == 1 && status["runs"][0]["rules"][0]["rule"] == "all" && status["dead_letters"] == 0, "{status}");
    let shown: serde_json::Value = serde_json::from_str(&through_daemon[6].1).unwrap();
    assert!(shown["id"] == member.as_str() && shown["unsubscribed"][0] == "files" && shown["contacts"][0]["run"] == 1, "{shown}");
    assert!(shown["profile"]["orders"].is_number() && shown["card"].as_str().is_some_and(|c| c == through_daemon[2].1), "{shown}");
    assert!(through_daemon[7].1.starts_with(&format!("member {member} as of ")) && through_daemon[7].1.contains("verdict         left out: no consent"), "{}", through_daemon[7].1);
    let explained: serde_json::Value = serde_json::from_str(&through_daemon[8].1).unwrap();
    let all = explained["rules"].as_array().unwrap().iter().find(|r| r["rule"] == "all").unwrap();
    assert!(explained["member"] == member.as_str() && all["fate"] == "no consent" && all["consent"][0] == serde_json::json!(["files", false]), "{explained}");
    assert!(all["last_message"][1] == "files" && all["conditions"].is_array(), "{explained}");
    let _ = Command::new("kill").arg("-TERM").arg(daemon.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (args, shown) in &through_daemon {
        let o = rekindle(d).args(args).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), *shown, "{args:?}: the same from the store as through the daemon");
    }

    // the next run leaves the member out; everyone else still gets the message
    let second = rekindle(d).args(["run", "--once", "--at", "2026-11-02T12:00:00Z"]).output().unwrap();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(!sent_to(&out, &member, 2), "no message after the unsubscribe");
    let others = std::fs::read_dir(&out).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("3A2+3A")).count();
    assert!(others > 10, "the run went on for the others ({others})");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The admin endpoints around the daemon's state: NDJSON ingest with good and bad lines
/// (the next lookup sees the new order), rules list / check / preview / run now, member
/// lookup and explain, dead letters and retry; each refused without the token.
#[test]
fn ingest_rules_and_members_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    drop(sample_store(d, 300));
    let out = d.join("out");
    std::fs::create_dir_all(d.join("rules")).unwrap();
    std::fs::write(d.join("rules/all.toml"), "[audience]\norders = { min = 1 }\n[message]\nchannels = [\"files\"]\n[message.files]\ntext = \"hello {{ member.name }}\"\n[limits]\nquiet_hours = false\n").unwrap();
    let port = free_port();
    std::fs::write(
        d.join("config.toml"),
        format!(
            "[store]\npath = \"store\"\n[campaigns]\nrules_dir = \"rules\"\nfrequency_cap = {{ messages = 100, days = 1 }}\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"t0ken-7\"\n[channels.files]\nplugin = \"{}\"\nconsent = \"none\"\ngrants = {{ files = \"{}\" }}\n",
            crate::support::repo_path("target/plugins/file.wasm").display(),
            out.display()
        ),
    )
    .unwrap();
    let mut daemon = rekindle(d).arg("run").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the API did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    let auth = [("Authorization", "Bearer t0ken-7")];
    let get = |path: &str| http(port, "GET", path, &auth, "");
    let post = |path: &str, body: &str| http(port, "POST", path, &auth, body);
    for (method, path) in [("POST", "/api/ingest"), ("GET", "/api/rules"), ("POST", "/api/rules/all/run"), ("GET", "/api/members/m0000001"), ("POST", "/api/outbox/retry")] {
        assert_eq!(http(port, method, path, &[], "").0, 401, "{method} {path} without a token");
    }

    // ingest: three good lines, two bad ones, reported by line
    let (_, before) = get("/api/members/m0000001");
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    let orders_before = before["profile"]["orders"].as_u64().unwrap();
    let lines = [
        r#"{"order_id":"api-1","member_id":"m0000001","ts":"2026-11-20T10:00:00Z","sku":"sku00001","unit_price":"12.50","qty":2}"#,
        r#"{"order_id":"api-1","member_id":"m0000001","ts":"2026-11-20T10:00:00Z","sku":"sku00002","unit_price":"3.00","qty":1}"#,
        r#"{"order_id":"api-2","member_id":"m0000001","ts":"2026-13-01T10:00:00Z","sku":"sku00001","unit_price":"1.00","qty":1}"#,
        r#"{"order_id":"api-3","member_id":"m0000002","ts":"2026-11-21T09:00:00Z","sku":"sku00003","unit_price":"-4.00","qty":1}"#,
        r#"{"order_id":"api-4","member_id":"m0000002","ts":"2026-11-21T09:00:00Z","sku":"sku00003","unit_price":"4.00","qty":1}"#,
    ];
    let (status, body) = post("/api/ingest?kind=orders", &lines.join("\n"));
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((summary["lines"].as_u64(), summary["imported"].as_u64(), summary["bad"].as_u64()), (Some(5), Some(3), Some(2)), "{summary}");
    let bad_lines: Vec<u64> = summary["bad_lines"].as_array().unwrap().iter().map(|b| b["line"].as_u64().unwrap()).collect();
    assert_eq!(bad_lines, vec![3, 4], "{summary}");
    assert!(summary["bad_lines"][1]["reason"].as_str().unwrap().contains("unit_price"), "{summary}");
    assert_eq!(post("/api/ingest?kind=nonsense", "{}").0, 400);
    let (_, after) = get("/api/members/m0000001");
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["profile"]["orders"].as_u64().unwrap(), orders_before + 1, "the member lookup sees the ingested order: {after}");
    assert_eq!(get("/api/members/nobody").0, 404);

    // rules: list, check an uploaded file and the folder, preview, explain, run now
    let (_, list) = get("/api/rules");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["id"], "all", "{list}");
    let (status, check) = post("/api/rules/check?file=broken.toml", "[audience]\nstage = \"sleepy\"\n[message]\nchannels = [\"files\"]\n");
    assert_eq!(status, 200);
    let check: serde_json::Value = serde_json::from_str(&check).unwrap();
    assert!(check["errors"].as_u64().unwrap() >= 1, "{check}");
    assert!(check["diagnostics"][0]["file"].as_str().unwrap().ends_with("/rules/broken.toml") && check["diagnostics"][0]["line"].as_u64() == Some(2), "{check}");
    // an uploaded file reads its template files in the rules folder, whatever folder it names
    let (_, check) = post("/api/rules/check?file=/etc/up.toml", "[audience]\n[message]\nchannels = [\"files\"]\n[message.files]\ntext_file = \"passwd\"\n");
    assert!(check.contains("rules/passwd: No such file") && !check.contains("root:"), "{check}");
    let (_, folder) = post("/api/rules/check", "");
    assert!(folder.contains("\"valid\":[\"all\"]") && folder.contains("\"errors\":0"), "{folder}");
    let (status, preview) = get("/api/rules/all/preview?sample=1");
    assert!(status == 200 && preview.contains("matched") && preview.contains("hello "), "{preview}");
    let (status, why) = get("/api/members/m0000001/explain?rule=all");
    assert!(status == 200 && why.starts_with("member m0000001 as of ") && why.contains("\nrule all — ") && why.contains("[pass] orders") && why.contains("verdict"), "{why}");
    assert_eq!(get("/api/rules/nope/preview").0, 404);
    let (status, run) = post("/api/rules/all/run", "");
    assert_eq!(status, 200, "{run}");
    let run: serde_json::Value = serde_json::from_str(&run).unwrap();
    assert!(run["messages"].as_u64().unwrap() > 50, "{run}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0) < run["messages"].as_u64().unwrap() as usize {
        assert!(Instant::now() < deadline, "the run was not dispatched");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, dead) = get("/api/outbox/dead-letters");
    assert_eq!(dead, "[]");
    let (status, retry) = post("/api/outbox/retry", r#"{"ids": ["1-0"]}"#);
    assert!(status == 400 && retry.contains("not a dead letter"), "{retry}");

    // while the daemon holds the store, the CLI goes through the API
    std::fs::write(
        d.join("more.csv"),
        "member_id,order_id,ts,sku,unit_price,qty\nm0000003,cli-1,2026-11-22T08:00:00Z,sku00004,9.90,1\nm0000003,cli-2,yesterday,sku00004,9.90,1\nm0000003,cli-3,2026-11-22T09:00:00Z\n",
    )
    .unwrap();
    let import = rekindle(d).args(["import", "more.csv"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&import.stdout), String::from_utf8_lossy(&import.stderr));
    assert!(import.status.success() && stdout.contains("3 rows, 1 imported, 2 bad"), "{stdout}{stderr}");
    assert!(stderr.contains("more.csv:3: ts") && stderr.contains("more.csv:4: expected 6 fields, found 3"), "{stderr}");
    for (args, expected) in [
        (vec!["member", "show", "m0000003"], "last orders"),
        (vec!["explain", "m0000003", "--rule", "all"], "verdict"),
        (vec!["rules", "preview", "all"], "matched"),
        (vec!["run", "--once", "--rule", "all"], "by the daemon"),
        (vec!["outbox", "dead-letters"], ""),
    ] {
        let o = rekindle(d).args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && text.contains(expected), "{args:?}: {text}{}", String::from_utf8_lossy(&o.stderr));
    }

    let _ = Command::new("kill").arg("-TERM").arg(daemon.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while daemon.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}
