//! `rekindle plugin new|check|send`, driven through `plugin::cli::run` as main.rs does:
//! a plugin scaffolded in an empty folder (the SDK written out by the binary) passes its
//! own test, builds for wasm and passes `check`;
//! `check` reports imports and grant problems; `send` delivers for real.

use std::collections::BTreeMap;
use std::process::Command;

use crate::plugin_support::*;
use rekindle::plugin::cli::{run, PluginCommand};
use rekindle::plugin::{HostOptions, PluginError};

fn run_to_string(command: PluginCommand, channels: &BTreeMap<String, rekindle::plugin::ChannelConfig>) -> (Result<(), PluginError>, String) {
    let mut out = Vec::new();
    let result = run(command, channels, &HostOptions::default(), &mut out);
    (result, String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn a_scaffolded_plugin_tests_builds_and_checks_out_of_the_box() {
    // an empty folder outside the repository: the binary writes the SDK out itself
    let dir = tempfile::tempdir().expect("dir");
    let plugins = dir.path().join("plugins");
    let (result, output) = run_to_string(PluginCommand::New { name: "hello".into(), dir: plugins.clone(), sdk: None, standalone: false }, &BTreeMap::new());
    result.expect("new");
    assert!(output.contains("wrote the plugin SDK") && output.contains("created"), "{output}");
    assert_eq!(std::fs::read_to_string(plugins.join("sdk/wit/channel.wit")).unwrap(), std::fs::read_to_string(repo().join("plugins/sdk/wit/channel.wit")).unwrap());
    let manifest = plugins.join("hello/Cargo.toml");
    // This repository's lock and target folder, so that the dependencies resolve to the
    // versions already compiled there (the SDK itself is compiled from its new copy).
    std::fs::copy(repo().join("Cargo.lock"), plugins.join("hello/Cargo.lock")).expect("lock");
    let target = repo().join("target/scaffold");
    let cargo = |args: &[&str]| {
        let status = Command::new(env!("CARGO"))
            .args(args)
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo {args:?} failed for the scaffold");
    };
    cargo(&["test", "-q"]);
    cargo(&["build", "-q", "--release", "--target", "wasm32-unknown-unknown"]);
    let wasm = target.join("wasm32-unknown-unknown/release/rekindle_plugin_hello.wasm");

    let (result, output) = run_to_string(PluginCommand::Check { file: wasm.clone(), channel: None }, &BTreeMap::new());
    result.expect("check");
    for expected in ["plugin   hello 0.1.0 (kind webhook)", "exports  rekindle:channel/channel@0.1.0", "imports  log, clock, http", "ok"] {
        assert!(output.contains(expected), "{expected:?} in\n{output}");
    }

    // An endpoint outside the channel's http grant is a configuration error: the
    // send fails as permanent, never retried (the first scaffold retried it).
    let granted_port = free_port();
    let outside = channels(vec![(
        "hook",
        toml::from_str::<rekindle::plugin::ChannelConfig>(&format!(
            "plugin = {:?}\nsettings = {{ endpoint = \"http://127.0.0.1:9/hook\" }}\n[grants]\nhttp = [\"127.0.0.1:{granted_port}\"]\n",
            wasm.display().to_string()
        ))
        .expect("config"),
    )]);
    let host = rekindle::plugin::ChannelHost::load(&outside, &HostOptions::default()).expect("load the scaffold");
    let err = runtime().block_on(host.send("hook", message("c-1", "k-1"))).expect_err("outside the grant");
    assert_eq!(err.kind, rekindle::plugin::SendErrorKind::Permanent, "{err}");
    assert!(err.reason.contains("is not in this channel's http grant"), "{err}");

    // Against a channel that grants no http, check names the missing grant.
    let stingy = channels(vec![("hook", channel("file", "settings = { endpoint = \"http://127.0.0.1:9/\" }\n"))]);
    let (result, output) = run_to_string(PluginCommand::Check { file: wasm, channel: Some("hook".into()) }, &stingy);
    assert!(result.is_err());
    assert!(output.contains("asks for http, which [channels.hook] does not grant"), "{output}");
}

#[test]
fn check_reports_each_shipped_plugin_and_send_delivers() {
    let cases = [
        ("email", "imports  log, clock, http, smtp"),
        ("sms", "imports  log, clock, http"),
        ("shop", "imports  log, clock, http"),
        ("file", "imports  log, clock, files"),
    ];
    for (name, imports) in cases {
        let (result, output) = run_to_string(PluginCommand::Check { file: plugin(name), channel: None }, &BTreeMap::new());
        result.unwrap_or_else(|err| panic!("check {name}: {err}\n{output}"));
        assert!(output.contains(&format!("plugin   {name} 0.1.0")), "{output}");
        assert!(output.contains(imports), "{name}: {output}");
    }

    let out = tempfile::tempdir().expect("out");
    let configured = channels(vec![("demo", channel("file", &format!("[grants]\nfiles = {:?}\n", out.path().display().to_string())))]);
    let (result, output) = run_to_string(
        PluginCommand::Send {
            channel: "demo".into(),
            to: "+8613800000000".into(),
            text: "测试".into(),
            subject: None,
            html: None,
            name: None,
            key: Some("cli-1".into()),
        },
        &configured,
    );
    result.expect("send");
    assert!(output.contains("sent     provider id cli-1.json"), "{output}");
    let written = std::fs::read_to_string(out.path().join("cli-1.json")).expect("written");
    assert!(written.contains("测试"));

    let (result, _) = run_to_string(
        PluginCommand::Send { channel: "nope".into(), to: "x".into(), text: "x".into(), subject: None, html: None, name: None, key: None },
        &configured,
    );
    assert!(matches!(result, Err(PluginError::UnknownChannel(_))));
}
