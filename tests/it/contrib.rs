//! The install files of `contrib/`: the config an installed daemon reads, the systemd
//! unit (checked by `systemd-analyze`) and the Docker image (built and started where a
//! Docker daemon answers).

use std::path::Path;
use std::process::{Command, Output};

use crate::support::repo_path;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The installed layout under a temporary root: /etc/rekindle, /var/lib/rekindle, and the
/// plugins where `scripts/build-plugins.sh` puts them.
#[test]
fn the_install_config_runs_the_shipped_rules_through_the_shipped_plugins() {
    let config = std::fs::read_to_string(repo_path("contrib/config.toml")).unwrap();
    let dockerfile = std::fs::read_to_string(repo_path("contrib/Dockerfile")).unwrap();
    let built: Vec<&str> = dockerfile.lines().find_map(|l| l.split("scripts/build-plugins.sh").nth(1)).unwrap().split_whitespace().take_while(|w| *w != "&&" && *w != "\\").collect();
    for plugin in config.lines().filter_map(|l| l.strip_prefix("plugin = \"/usr/lib/rekindle/plugins/")) {
        let name = plugin.trim_end_matches(".wasm\"");
        assert!(built.contains(&name), "the Dockerfile builds {built:?}, the config names {name}");
    }

    let root = tempfile::tempdir().unwrap();
    let (etc, var) = (root.path().join("etc/rekindle"), root.path().join("var/lib/rekindle"));
    copy_dir(&repo_path("rules"), &etc.join("rules"));
    std::fs::create_dir_all(&var).unwrap();
    let local = config
        .replace("/var/lib/rekindle", &var.display().to_string())
        .replace("/usr/lib/rekindle/plugins", &repo_path("target/plugins").display().to_string());
    assert_ne!(local, config);
    std::fs::write(etc.join("config.toml"), local).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_rekindle"))
        .current_dir(root.path())
        .args(["--config", &etc.join("config.toml").display().to_string(), "demo", "--dir", "sample", "--members", "1500"])
        .env_remove("REKINDLE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(var.join("rekindle.sled").exists(), "the store is under /var/lib/rekindle");
    for channel in ["email", "sms"] {
        let sent = std::fs::read_dir(var.join("outbox").join(channel)).map(|d| d.count()).unwrap_or(0);
        assert!(sent > 0, "nothing written to outbox/{channel}:\n{}", text(&out));
    }
}

fn systemd_analyze(args: &[&str]) -> Output {
    Command::new("systemd-analyze").args(args).output().expect("systemd-analyze (Debian `systemd`, scripts/apt-contrib.txt)")
}

#[test]
fn the_systemd_unit_passes_verify_and_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo_path("contrib/rekindle.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/rekindle "), "the install path the comments give");
    let path = dir.path().join("rekindle.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/rekindle", env!("CARGO_BIN_EXE_rekindle"))).unwrap();
    let unit = path.display().to_string();

    let verify = systemd_analyze(&["verify", &unit]);
    assert!(verify.status.success() && text(&verify).trim().is_empty(), "{}", text(&verify));

    // systemd's own exposure score of the sandboxing options: 0 is locked down, 10 is none
    let security = systemd_analyze(&["security", "--offline=true", &unit]);
    let out = text(&security);
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for rekindle.service: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    assert!(score <= 2.0, "exposure {score} (at most 2.0, OK):\n{out}");

    // the checks notice a broken unit
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace(env!("CARGO_BIN_EXE_rekindle"), "/nonexistent/rekindle")).unwrap();
    assert!(!systemd_analyze(&["verify", &unit]).status.success());
}

/// Builds the image (a release build inside Docker: long) and starts it. Machines without
/// a Docker daemon, like the CI container, say so and pass.
#[test]
#[ignore = "long: builds the Docker image"]
fn the_docker_image_builds_and_answers_healthz() {
    let docker = |args: &[&str]| Command::new("docker").args(args).output();
    match docker(&["info", "--format", "{{.ServerVersion}}"]) {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!("skipped: no Docker daemon answers on this machine");
            return;
        }
    }
    let tag = "rekindle-contrib-test";
    let build = docker(&["build", "-f", "contrib/Dockerfile", "-t", tag, &repo_path("").display().to_string()]).unwrap();
    assert!(build.status.success(), "{}", text(&build));
    let run = docker(&["run", "-d", "--rm", "-p", "127.0.0.1::8787", tag]).unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let id = String::from_utf8_lossy(&run.stdout).trim().to_string();
    let port = String::from_utf8_lossy(&docker(&["port", &id, "8787/tcp"]).unwrap().stdout).trim().rsplit(':').next().unwrap().to_string();
    let mut answer = String::new();
    for _ in 0..100 {
        answer.clear();
        if let Ok(mut s) = std::net::TcpStream::connect(format!("127.0.0.1:{port}")) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let logs = docker(&["logs", &id]).unwrap();
    let _ = docker(&["rm", "-f", &id]);
    assert!(answer.contains(" 200 "), "no 200 from /healthz: {answer}\n{}", text(&logs));
}
