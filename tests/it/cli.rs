//! The `rekindle` binary as a user runs it: the README demo, member cards, exports and
//! exit codes.

use std::process::{Command, Output};

fn rekindle(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .current_dir(dir)
        .arg("--db")
        .arg(dir.join("store"))
        .args(args)
        .env("REKINDLE_CONFIG", dir.join("config.toml"))
        .output()
        .expect("run rekindle")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn demo_member_card_export_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "[members]\ndefault_timezone = \"Asia/Shanghai\"\n").unwrap();
    let demo = rekindle(dir.path(), &["demo", "--dir", "sample", "--members", "1500"]);
    let out = text(&demo);
    assert!(demo.status.success(), "{out}");
    for want in ["generated 1500 members", "orders file", "0 bad", "members as of 2026-11-01: 1500", "by stage", "sleeping", "by price tier", "spend per buyer"] {
        assert!(out.contains(want), "demo output lacks {want:?}:\n{out}");
    }

    let card = rekindle(dir.path(), &["member", "show", "m0000003", "--as-of", "2026-11-01"]);
    let out = text(&card);
    assert!(card.status.success(), "{out}");
    for want in ["member m0000003", "consent: email", "stage", "RFM", "price tier", "last orders"] {
        assert!(out.contains(want), "card lacks {want:?}:\n{out}");
    }
    let missing = rekindle(dir.path(), &["member", "show", "nobody"]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("no member \"nobody\""), "{}", text(&missing));

    let export = rekindle(dir.path(), &["profiles", "export", "--as-of", "2026-11-01", "--format", "ndjson"]);
    assert!(export.status.success());
    let rows: Vec<serde_json::Value> =
        String::from_utf8(export.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1500);
    assert!(rows.iter().any(|r| r["stage"] == "sleeping"));

    // predicted value: fit, then every buyer carries p_alive and friends
    let fit = rekindle(dir.path(), &["predict", "fit", "--as-of", "2026-05-01"]);
    assert!(fit.status.success(), "{}", text(&fit));
    for want in ["BG/NBD      r = ", "Gamma-Gamma p = ", "holdout 2026-05-02", "stored"] {
        assert!(text(&fit).contains(want), "fit output lacks {want:?}:\n{}", text(&fit));
    }
    let export = rekindle(dir.path(), &["profiles", "export", "--as-of", "2026-11-01", "--format", "ndjson"]);
    let rows: Vec<serde_json::Value> =
        String::from_utf8(export.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for r in &rows {
        let has_orders = r["orders"].as_u64().unwrap() > 0;
        let p = r["p_alive"].as_f64();
        assert_eq!(p.is_some(), has_orders, "{r}");
        if let Some(p) = p {
            assert!((0.0..=1.0).contains(&p), "{r}");
            assert!(["low", "medium", "high"].contains(&r["churn_risk"].as_str().unwrap()), "{r}");
        }
    }

    // a file that cannot be imported fails the command; bad rows alone do not
    std::fs::write(dir.path().join("bad.csv"), "order_id,member_id\no1,m1\n").unwrap();
    let failed = rekindle(dir.path(), &["import", "bad.csv"]);
    assert!(!failed.status.success());
    assert!(text(&failed).contains("missing required column \"ts\""), "{}", text(&failed));
    std::fs::write(dir.path().join("rows.csv"), "member_id,gender\nok1,f\nbad1,q\n").unwrap();
    let partial = rekindle(dir.path(), &["import", "rows.csv", "--rejects", "rejects.csv"]);
    assert!(partial.status.success(), "{}", text(&partial));
    assert!(text(&partial).contains("rows.csv:3: gender"), "{}", text(&partial));
    let rejects = std::fs::read_to_string(dir.path().join("rejects.csv")).unwrap();
    assert!(rejects.contains("rows.csv,3,\"gender: "), "{rejects}");
    // --strict: the same good rows go in, but any bad row fails the command
    std::fs::write(dir.path().join("rows2.csv"), "member_id,gender\nok2,m\nbad2,q\n").unwrap();
    let strict = rekindle(dir.path(), &["import", "--strict", "rows2.csv"]);
    assert!(!strict.status.success() && text(&strict).contains("1 bad rows (--strict)"), "{}", text(&strict));
    // a file whose every row is bad fails the command, naming the file; the other files' rows go in
    std::fs::write(dir.path().join("wrong.csv"), "member_id,gender\nw1,q\nw2,x\n").unwrap();
    std::fs::write(dir.path().join("fine.csv"), "member_id,gender\nok3,f\n").unwrap();
    let all_bad = rekindle(dir.path(), &["import", "wrong.csv", "fine.csv"]);
    assert!(!all_bad.status.success() && text(&all_bad).contains("nothing imported from wrong.csv: every row was bad"), "{}", text(&all_bad));
    for id in ["ok2", "ok3"] {
        let card = rekindle(dir.path(), &["member", "show", id]);
        assert!(card.status.success(), "{id} was imported: {}", text(&card));
    }

    // a broken config names the key and its line
    std::fs::write(dir.path().join("config.toml"), "[profile]\nrepurchase_factr = 2\n").unwrap();
    let bad_config = rekindle(dir.path(), &["stats"]);
    assert!(!bad_config.status.success());
    assert!(text(&bad_config).contains("repurchase_factr"), "{}", text(&bad_config));
}

#[test]
fn rules_check_fails_with_located_errors_and_explain_answers_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rules = d.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::copy(crate::support::repo_path("rules/sleeping-winback.toml"), rules.join("sleeping-winback.toml")).unwrap();
    std::fs::copy(crate::support::repo_path("tests/it/fixtures/broken-rules/unknown-keys.toml"), rules.join("typo.toml")).unwrap();
    std::fs::write(d.join("config.toml"), "[campaigns]\nrules_dir = \"rules\"\n").unwrap();
    let check = rekindle(d, &["rules", "check"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    let out = text(&check);
    assert!(out.contains("typo.toml:2:1") && out.contains("did you mean `schedule`?"), "{out}");
    assert!(out.contains("1 rules valid, 4 errors"), "{out}");
    // the valid rule still previews and explains while its neighbour is broken
    crate::support::sample_store(d, 1_000);
    let preview = rekindle(d, &["rules", "preview", "sleeping-winback", "--as-of", "2026-11-01", "--format", "csv"]);
    assert!(preview.status.success(), "{}", text(&preview));
    let rows = String::from_utf8_lossy(&preview.stdout).to_string();
    let member = rows.lines().nth(1).and_then(|l| l.split(',').next()).expect("a matched member").to_string();
    let explain = rekindle(d, &["explain", &member, "--rule", "sleeping-winback", "--as-of", "2026-11-01"]);
    let why = text(&explain);
    assert!(explain.status.success() && why.contains("[pass] stage in [sleeping]") && why.contains("verdict"), "{why}");
}

#[test]
fn a_custom_channel_without_a_consent_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    drop(crate::support::sample_store(d, 300));
    std::fs::create_dir_all(d.join("rules")).unwrap();
    std::fs::write(d.join("rules/inbox.toml"), "[audience]\norders = { min = 1 }\n[message]\nchannels = [\"inbox\"]\n[message.inbox]\ntext = \"hi\"\n[limits]\nquiet_hours = false\n").unwrap();
    let config = |consent: &str| {
        let text = format!(
            "[campaigns]\nrules_dir = \"rules\"\nfrequency_cap = {{ messages = 100, days = 1 }}\npublic_url = \"http://127.0.0.1:9\"\n[channels.inbox]\nplugin = {:?}\nsettings = {{ format = \"json\" }}\ngrants = {{ files = \"out\" }}\n{consent}",
            crate::support::repo_path("target/plugins/file.wasm").display().to_string()
        );
        std::fs::write(d.join("config.toml"), text).unwrap();
    };
    config("");
    for args in [&["rules", "check"][..], &["run", "--once"][..]] {
        let out = rekindle(d, args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("[channels.inbox] consent"), "{args:?}: {}", text(&out));
    }
    assert!(text(&rekindle(d, &["rules", "check"])).contains("public_url is http://"), "an http public_url is warned about");
    assert!(!d.join("out").exists() || std::fs::read_dir(d.join("out")).unwrap().next().is_none(), "nothing was sent");

    // declared: the channel reaches the members who consented to email, at their email
    // address, and every message carries its signed unsubscribe link
    config("consent = \"email\"\n");
    let out = rekindle(d, &["run", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut members = csv::Reader::from_path(d.join("data/members.csv")).unwrap();
    let header: Vec<String> = members.headers().unwrap().iter().map(str::to_string).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = members.records().map(|r| r.unwrap()).collect();
    let mut sent = 0;
    for e in std::fs::read_dir(d.join("out")).unwrap() {
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        let row = rows.iter().find(|r| r[0] == *m["member_id"].as_str().unwrap()).unwrap();
        assert_eq!(m["to"], row[col("email")], "{m}");
        assert_eq!(&row[col("opted_in_email")], "true", "{m}");
        assert!(m["channel_data"]["unsubscribe_url"].as_str().unwrap().starts_with("http://127.0.0.1:9/u/"), "{m}");
        sent += 1;
    }
    assert!(sent > 10, "{sent} sent");
    let refused = rows.iter().filter(|r| &r[col("opted_in_email")] != "true").count();
    assert!(refused > 0 && sent + refused <= rows.len(), "members without email consent got nothing");
}

#[test]
fn a_reader_that_goes_away_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    drop(crate::support::sample_store(d, 1_000));
    std::fs::write(d.join("config.toml"), "").unwrap();
    // each prints far more than a pipe holds, so the writes after `head` left fail
    for args in [
        &["bundles", "mine", "--scope", "basket", "--min-support", "0.0002", "--min-confidence", "0.01"][..],
        &["profiles", "export", "--format", "ndjson"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rekindle"))
            .current_dir(d)
            .arg("--db")
            .arg(d.join("store"))
            .args(args)
            .env("REKINDLE_CONFIG", d.join("config.toml"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !stderr.contains("panicked"), "{args:?}: {:?} {stderr}", out.status);
    }
}

#[test]
fn an_error_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "[campaigns]\nrules_dir = \"no-such-folder\"\n").unwrap();
    let out = rekindle(dir.path(), &["rules", "check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no-such-folder"), "{stderr}");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

#[test]
fn logs_are_plain_text_off_a_terminal_or_json_lines_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("rules")).unwrap();
    std::fs::write(d.join("rules/inbox.toml"), "[audience]\norders = { min = 1 }\n[message]\nchannels = [\"inbox\"]\n[message.inbox]\ntext = \"hi\"\n").unwrap();
    std::fs::write(
        d.join("config.toml"),
        format!(
            "[campaigns]\nrules_dir = \"rules\"\npublic_url = \"http://127.0.0.1:9\"\n[channels.inbox]\nplugin = {:?}\nconsent = \"email\"\ngrants = {{ files = \"out\" }}\n",
            crate::support::repo_path("target/plugins/file.wasm").display().to_string()
        ),
    )
    .unwrap();
    let text_run = rekindle(d, &["run", "--once"]);
    let stderr = String::from_utf8_lossy(&text_run.stderr).into_owned();
    assert!(text_run.status.success(), "{stderr}");
    assert!(stderr.contains("WARN") && stderr.contains("public_url is http://"), "the daemon's warning at the default level:\n{stderr}");
    assert!(stderr.contains("INFO"), "`run` logs what it loaded at the default level:\n{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no ANSI codes when stderr is not a terminal:\n{stderr}");

    let json_run = rekindle(d, &["--log-format", "json", "run", "--once"]);
    let stderr = String::from_utf8_lossy(&json_run.stderr).into_owned();
    assert!(json_run.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert!(lines.iter().any(|l| l["level"] == "WARN" && l["fields"]["message"].as_str().is_some_and(|m| m.contains("public_url is http://"))), "{stderr}");
    assert!(lines.iter().all(|l| l["timestamp"].is_string() && l["target"].is_string()), "{stderr}");
}

#[test]
fn secrets_are_read_from_systemd_credentials_when_the_config_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("config.toml"), "[api]\ntoken_file = \"credential:api-token\"\n").unwrap();
    let without = rekindle(d, &["stats"]);
    assert!(!without.status.success(), "{}", text(&without));
    assert!(text(&without).contains("api.token_file: `credential:api-token` names a systemd credential, but CREDENTIALS_DIRECTORY is not set"), "{}", text(&without));

    std::fs::create_dir(d.join("creds")).unwrap();
    std::fs::write(d.join("creds/api-token"), "s3cret\n").unwrap();
    std::fs::write(d.join("m.csv"), "member_id\nm1\n").unwrap();
    let with = Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .current_dir(d)
        .args(["--db", &d.join("store").display().to_string(), "import", "m.csv"])
        .env("REKINDLE_CONFIG", d.join("config.toml"))
        .env("CREDENTIALS_DIRECTORY", d.join("creds"))
        .output()
        .unwrap();
    assert!(with.status.success(), "{}", text(&with));
}

#[test]
fn a_command_that_only_reads_never_creates_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("config.toml"), "").unwrap();
    for args in [&["stats"][..], &["profiles", "export"][..], &["member", "show", "m1"][..], &["outbox", "status"][..], &["report", "1"][..]] {
        let out = rekindle(d, args);
        assert!(!out.status.success() && text(&out).contains("no store at"), "{args:?}: {}", text(&out));
        assert!(!d.join("store").exists(), "{args:?} created a store");
    }
    std::fs::write(d.join("m.csv"), "member_id\nm1\n").unwrap();
    assert!(rekindle(d, &["import", "m.csv"]).status.success(), "import creates it");
    let stats = rekindle(d, &["stats"]);
    assert!(stats.status.success(), "{}", text(&stats));
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions_even_with_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // generating them reads no config: a broken one does not stop a packager
    std::fs::write(d.join("config.toml"), "[store\n").unwrap();
    let bash = rekindle(d, &["completions", "bash"]);
    assert!(bash.status.success(), "{}", text(&bash));
    std::fs::write(d.join("rekindle.bash"), &bash.stdout).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(d.join("rekindle.bash")).output().expect("bash");
    assert!(syntax.status.success(), "bash cannot read the completions: {}", text(&syntax));
    let script = String::from_utf8_lossy(&bash.stdout);
    for word in ["import", "preview", "--as-of", "--min-support", "callback-url"] {
        assert!(script.contains(word), "the bash completions miss {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = rekindle(d, &["completions", shell]);
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("preview"), "{shell}: {}", text(&out));
    }
    assert!(!rekindle(d, &["completions", "tcsh"]).status.success(), "an unknown shell is an error");

    let page = rekindle(d, &["man"]);
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.contains(".TH rekindle 1") && page.contains("rekindle\\-rules(1)"), "{page}");
    let pages = d.join("man/man1");
    assert!(rekindle(d, &["man", "--dir", pages.to_str().unwrap()]).status.success());
    let preview = std::fs::read_to_string(pages.join("rekindle-rules-preview.1")).expect("one page per command");
    assert!(preview.contains("The day the audience is judged on"), "flags carry their help: {preview}");
    assert!(!d.join("store").exists(), "neither command touches a store");
}

/// One `--format` vocabulary: what a command prints as a table it prints as csv, json or
/// ndjson where those make sense, with the same figures; others are refused by name.
#[test]
fn data_commands_print_the_same_figures_in_every_format_they_take() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("rules")).unwrap();
    std::fs::write(d.join("config.toml"), "[campaigns]\nrules_dir = \"rules\"\n[members]\ndefault_timezone = \"Asia/Shanghai\"\n").unwrap();
    std::fs::write(d.join("rules/weekly.toml"), "schedule = \"0 0 10 * * MON\"\npriority = 20\n[audience]\norders = { min = 1 }\n[message]\nchannels = [\"email\"]\n[message.email]\nsubject = \"嗨\"\ntext = \"x\"\n").unwrap();
    std::fs::write(d.join("rules/ad-hoc.toml"), "enabled = false\n[audience]\norders = { min = 1 }\n[message]\nchannels = [\"email\"]\n[message.email]\nsubject = \"s\"\ntext = \"x\"\n").unwrap();
    assert!(rekindle(d, &["demo", "--dir", "sample", "--members", "800"]).status.success());
    let stdout = |args: &[&str]| -> String {
        let o = rekindle(d, args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let json = |args: &[&str]| -> serde_json::Value { serde_json::from_str(&stdout(args)).unwrap_or_else(|e| panic!("{args:?}: {e}")) };

    let stats = json(&["stats", "--as-of", "2026-11-01", "--format", "json"]);
    let table = stdout(&["stats", "--as-of", "2026-11-01"]);
    assert_eq!(stats["members"], 800);
    let by_stage = stats["by_stage"].as_object().unwrap();
    assert_eq!(by_stage.values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 800, "{stats}");
    for (stage, n) in by_stage {
        assert!(table.lines().any(|l| l.split_whitespace().take(2).eq([stage.as_str(), &n.to_string()])), "{stage} {n} not in the table:\n{table}");
    }
    let spend = &stats["spend_cents"];
    assert!(table.contains(&format!("spend per buyer ({} buyers)", stats["buyers"])), "{table}");
    assert!(spend["min"].as_i64() <= spend["median"].as_i64() && spend["median"].as_i64() <= spend["max"].as_i64() && spend["total"].is_i64(), "money in minor units: {spend}");

    let export = |f: &str| stdout(&["profiles", "export", "--as-of", "2026-11-01", "--format", f]);
    let array = serde_json::from_str::<Vec<serde_json::Value>>(&export("json")).unwrap();
    let lines: Vec<serde_json::Value> = export("ndjson").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(array.len(), 800);
    assert_eq!(array, lines, "json is the ndjson objects in one array");
    assert_eq!(export("csv").lines().count(), 801);

    let rules = json(&["rules", "list", "--format", "json"]);
    let by_ndjson: Vec<serde_json::Value> = stdout(&["rules", "list", "--format", "ndjson"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rules.as_array().unwrap(), &by_ndjson);
    assert_eq!(rules[0]["rule"], "ad-hoc");
    assert!(rules[0]["enabled"] == false && rules[0]["schedule"].is_null() && rules[0]["next_run"].is_null(), "{rules}");
    assert!(rules[1]["priority"] == 20 && rules[1]["timezone"] == "Asia/Shanghai" && rules[1]["next_run"].as_str().unwrap().ends_with("T10:00:00+08:00"), "{rules}");
    let csv = stdout(&["rules", "list", "--format", "csv"]);
    assert_eq!(csv.lines().next(), Some("rule,enabled,priority,schedule,timezone,next_run"));
    assert!(csv.lines().nth(1).is_some_and(|l| l.starts_with("ad-hoc,false,") && l.ends_with(",,Asia/Shanghai,")), "{csv}");
    let table = stdout(&["rules", "list"]);
    assert!(table.lines().nth(1).is_some_and(|l| l.starts_with("ad-hoc") && l.split_whitespace().nth(3) == Some("-")), "a blank cell shows as -:\n{table}");

    assert_eq!(json(&["outbox", "dead-letters", "--format", "json"]), serde_json::json!([]));
    assert_eq!(stdout(&["outbox", "dead-letters", "--format", "csv"]), "id,rule,member,channel,last_error\n");
    let status = json(&["outbox", "status", "--format", "json"]);
    assert!(status["queued"] == 0 && status["runs"] == serde_json::json!([]) && status["next_due"].is_null(), "{status}");

    let refused = rekindle(d, &["stats", "--format", "csv"]);
    assert!(!refused.status.success() && text(&refused).contains("[possible values: table, json]"), "{}", text(&refused));
}

/// config.schema.json is what `rekindle schema config` prints (the types serde reads
/// config.toml with), and a JSON Schema validator accepts every shipped config and names
/// a misspelt key.
#[test]
fn the_config_schema_matches_the_reader_and_every_shipped_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("config.toml"), "[store\n").unwrap();
    let schema = rekindle(d, &["schema", "config"]);
    assert!(schema.status.success(), "no config is read: {}", text(&schema));
    let committed = std::fs::read_to_string(crate::support::repo_path("config.schema.json")).unwrap();
    assert_eq!(String::from_utf8_lossy(&schema.stdout), committed, "config.schema.json is stale: rekindle schema config > config.schema.json");

    std::fs::write(d.join("misspelt.toml"), "[api]\ntokn = \"x\"\n[channels.email]\nplugn = \"email.wasm\"\n").unwrap();
    let script = "import json, sys, tomllib\nimport jsonschema\nschema = json.load(open(sys.argv[1]))\n\
                  v = jsonschema.Draft202012Validator(schema)\n\
                  for path in sys.argv[2:]:\n    errors = sorted(e.message for e in v.iter_errors(tomllib.load(open(path, 'rb'))))\n    print(path.rsplit('/', 1)[-1], errors)\n";
    let out = crate::support::python()
        .arg("-c")
        .arg(script)
        .arg(crate::support::repo_path("config.schema.json"))
        .arg(crate::support::repo_path("config.toml"))
        .arg(crate::support::repo_path("contrib/config.toml"))
        .arg(d.join("misspelt.toml"))
        .output()
        .expect("python");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines[..2], ["config.toml []", "config.toml []"], "the shipped configs are valid: {said}");
    assert!(lines[2].starts_with("misspelt.toml") && lines[2].contains("'tokn' was unexpected") && lines[2].contains("'plugn' was unexpected"), "{said}");
    assert!(lines[2].contains("'plugin' is a required property"), "{said}");
}
