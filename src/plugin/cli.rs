//! `rekindle plugin new|check|send|callback-url`: the plugin author's and operator's commands.
//!
//! `new` scaffolds a plugin crate that builds and passes its own test out of
//! the box; `check` loads a .wasm and reports its manifest, imports, exports
//! and problems (and, with `--channel`, whether that channel's grants cover
//! it); `send` delivers one real test message through a configured channel;
//! `callback-url` prints a channel's secret callback URL (main.rs rotates it in the
//! store first when asked, and passes the URLs in [`HostOptions`]).
//! main.rs parses [`PluginCommand`] and calls [`run`]; the output goes to the
//! writer it passes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use super::{inspect, ChannelConfig, ChannelHost, HostOptions, OutboundMessage, PluginError, Recipient};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum PluginCommand {
    /// Scaffold a new channel plugin crate (DIR/NAME) that builds and passes its own test.
    New {
        /// Plugin name: lower-case letters, digits and `-`.
        name: String,
        /// Folder the crate is created in.
        #[arg(long, default_value = "plugins")]
        dir: PathBuf,
        /// Path of the rekindle plugin SDK crate (default DIR/sdk; when that is missing, this
        /// binary writes its own copy of the SDK there, so an empty folder is enough).
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// Give the crate its own `[workspace]` (for a crate outside this repository).
        #[arg(long)]
        standalone: bool,
    },
    /// Load a plugin .wasm and report its manifest, imports, exports and problems.
    Check {
        /// The plugin's .wasm file.
        file: PathBuf,
        /// Also check it against this `[channels.NAME]`'s grants and settings.
        #[arg(long)]
        channel: Option<String>,
    },
    /// Send one real test message through a configured channel.
    Send {
        /// The `[channels.NAME]` to send through.
        channel: String,
        /// Recipient address (email, E.164 number, customer id).
        #[arg(long)]
        to: String,
        /// The message text.
        #[arg(long)]
        text: String,
        /// The subject (email).
        #[arg(long)]
        subject: Option<String>,
        /// An HTML body beside the text (email).
        #[arg(long)]
        html: Option<String>,
        /// Recipient display name.
        #[arg(long)]
        name: Option<String>,
        /// Idempotency key; default `cli-test-<unix ms>`.
        #[arg(long)]
        key: Option<String>,
    },
    /// Print a channel's secret callback URL, the one its providers report to (the
    /// plugin hands it to Kannel and Twilio with each message; give it to SNS
    /// subscriptions, Kannel's MO get-url and bounce pipes). Treat it like a password.
    CallbackUrl {
        /// The `[channels.NAME]` whose URL to print.
        channel: String,
        /// Replace the secret with a new one (the daemon must be stopped); the old URL
        /// keeps working for `--keep-old-hours`, for reports of messages already sent.
        #[arg(long)]
        rotate: bool,
        /// With --rotate: how long the old URL keeps working.
        #[arg(long, default_value_t = 48)]
        keep_old_hours: u32,
    },
}

/// Run one `rekindle plugin` command. `channels` and `options` come from config.toml.
pub fn run(
    command: PluginCommand,
    channels: &BTreeMap<String, ChannelConfig>,
    options: &HostOptions,
    out: &mut dyn Write,
) -> Result<(), PluginError> {
    let io = |err: std::io::Error| PluginError::Io { context: "writing output".to_string(), source: err };
    match command {
        PluginCommand::New { name, dir, sdk, standalone } => {
            let sdk = match sdk {
                Some(sdk) => sdk,
                None => {
                    let sdk = dir.join("sdk");
                    if !sdk.exists() {
                        write_sdk(&sdk)?;
                        writeln!(out, "wrote the plugin SDK {} to {}", SDK_VERSION, sdk.display()).map_err(io)?;
                    }
                    sdk
                }
            };
            let crate_dir = scaffold(&name, &dir, &sdk, standalone)?;
            let manifest = crate_dir.join("Cargo.toml");
            writeln!(out, "created {}", crate_dir.display()).map_err(io)?;
            writeln!(out, "test it:   cargo test --manifest-path {}", manifest.display()).map_err(io)?;
            writeln!(out, "build it:  cargo build --release --target wasm32-unknown-unknown --manifest-path {}", manifest.display()).map_err(io)?;
            writeln!(out, "           (in the rekindle repository: scripts/build-plugins.sh {name})").map_err(io)?;
        }
        PluginCommand::Check { file, channel } => {
            let report = inspect(&file)?;
            let manifest = &report.manifest;
            writeln!(out, "plugin   {} {} (kind {})", manifest.name, manifest.version, manifest.kind).map_err(io)?;
            if !manifest.description.is_empty() {
                writeln!(out, "about    {}", manifest.description).map_err(io)?;
            }
            writeln!(out, "exports  {}", report.exports.join(", ")).map_err(io)?;
            let imported: Vec<&str> = [("http", report.imports.http), ("smtp", report.imports.smtp), ("files", report.imports.files)]
                .iter()
                .filter(|(_, used)| *used)
                .map(|(name, _)| *name)
                .collect();
            writeln!(out, "imports  log, clock{}{}", if imported.is_empty() { "" } else { ", " }, imported.join(", ")).map_err(io)?;
            writeln!(
                out,
                "config   required [{}] optional [{}] secrets [{}]",
                manifest.config.required.join(", "),
                manifest.config.optional.join(", "),
                manifest.config.secrets.join(", ")
            )
            .map_err(io)?;
            let mut problems = report.problems.clone();
            if let Some(channel_name) = channel {
                let mut config = channels
                    .get(&channel_name)
                    .cloned()
                    .ok_or_else(|| PluginError::UnknownChannel(channel_name.clone()))?;
                config.plugin = std::path::absolute(&file).unwrap_or(file.clone());
                let single = BTreeMap::from([(channel_name.clone(), config)]);
                match ChannelHost::load(&single, options) {
                    Ok(_) => writeln!(out, "channel  [channels.{channel_name}] grants and settings cover it").map_err(io)?,
                    Err(PluginError::Config { problems: more, .. }) => problems.extend(more),
                    Err(other) => problems.push(other.to_string()),
                }
            }
            if problems.is_empty() {
                writeln!(out, "ok").map_err(io)?;
            } else {
                for problem in &problems {
                    writeln!(out, "problem  {problem}").map_err(io)?;
                }
                return Err(PluginError::Usage(format!("{} has {} problem(s)", file.display(), problems.len())));
            }
        }
        PluginCommand::CallbackUrl { channel, .. } => {
            let url = options.callback_urls.get(&channel).ok_or_else(|| PluginError::UnknownChannel(channel.clone()))?;
            writeln!(out, "{url}").map_err(io)?;
        }
        PluginCommand::Send { channel, to, text, subject, html, name, key } => {
            let config = channels.get(&channel).cloned().ok_or_else(|| PluginError::UnknownChannel(channel.clone()))?;
            let single = BTreeMap::from([(channel.clone(), config)]);
            let host = ChannelHost::load(&single, options)?;
            let key = key.unwrap_or_else(|| {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
                format!("cli-test-{now}")
            });
            let message = OutboundMessage {
                recipient: Recipient { address: to, name, member_id: "cli-test".to_string() },
                subject,
                text,
                html,
                idempotency_key: key,
                channel_data: Vec::new(),
                metadata: vec![("source".to_string(), "rekindle plugin send".to_string())],
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|err| PluginError::Io { context: "starting the async runtime".to_string(), source: err })?;
            match runtime.block_on(host.send(&channel, message)) {
                Ok(delivery) => {
                    writeln!(out, "sent     provider id {}", delivery.provider_id).map_err(io)?;
                    for (key, value) in &delivery.metadata {
                        writeln!(out, "         {key} = {value}").map_err(io)?;
                    }
                }
                Err(err) => return Err(PluginError::Usage(format!("channel `{channel}`: {err}"))),
            }
        }
    }
    Ok(())
}

/// Write the crate; refuse to overwrite anything.
fn scaffold(name: &str, dir: &Path, sdk: &Path, standalone: bool) -> Result<PathBuf, PluginError> {
    let valid = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(PluginError::Usage(format!("plugin name `{name}`: use lower-case letters, digits and `-`, starting with a letter")));
    }
    let crate_dir = dir.join(name);
    if crate_dir.exists() {
        return Err(PluginError::Usage(format!("{} already exists", crate_dir.display())));
    }
    let sdk_dir = std::path::absolute(sdk).map_err(|err| PluginError::Io { context: format!("sdk path {}", sdk.display()), source: err })?;
    if !sdk_dir.join("wit").is_dir() {
        return Err(PluginError::Usage(format!("{} is not the rekindle plugin SDK (no wit/ folder); pass --sdk", sdk.display())));
    }
    let absolute_crate = std::path::absolute(&crate_dir).map_err(|err| PluginError::Io { context: "crate path".to_string(), source: err })?;
    let sdk_path = relative_path(&absolute_crate, &sdk_dir);
    let write = |relative: &str, contents: String| {
        let path = crate_dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|err| PluginError::Io { context: format!("creating {}", parent.display()), source: err })?;
        }
        std::fs::write(&path, contents).map_err(|err| PluginError::Io { context: format!("writing {}", path.display()), source: err })
    };
    let crate_name = format!("rekindle-plugin-{name}");
    let workspace = if standalone { "\n[workspace]\n" } else { "" };
    write(
        "Cargo.toml",
        format!(
            "[package]\nname = \"{crate_name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\nrekindle-plugin-sdk = {{ path = {:?} }}\nserde_json = \"1\"\n{workspace}",
            sdk_path.display().to_string()
        ),
    )?;
    write("plugin.toml", SCAFFOLD_MANIFEST.replace("{name}", name))?;
    write("src/lib.rs", SCAFFOLD_LIB.replace("{name}", name))?;
    Ok(crate_dir)
}

/// The plugin SDK crate as this binary was built with it, file by file, so that a plugin
/// can be written outside the rekindle repository.
const SDK_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../plugins/sdk/Cargo.toml")),
    ("src/lib.rs", include_str!("../../plugins/sdk/src/lib.rs")),
    ("src/mime.rs", include_str!("../../plugins/sdk/src/mime.rs")),
    ("wit/channel.wit", include_str!("../../plugins/sdk/wit/channel.wit")),
];

/// The version in the SDK's Cargo.toml.
const SDK_VERSION: &str = "0.1.0";

/// Writes the embedded SDK crate into `dir` (which must not exist yet).
fn write_sdk(dir: &Path) -> Result<(), PluginError> {
    for (relative, contents) in SDK_FILES {
        let path = dir.join(relative);
        let parent = path.parent().expect("a file in a folder");
        std::fs::create_dir_all(parent).map_err(|err| PluginError::Io { context: format!("creating {}", parent.display()), source: err })?;
        std::fs::write(&path, contents).map_err(|err| PluginError::Io { context: format!("writing {}", path.display()), source: err })?;
    }
    Ok(())
}

/// `to` as seen from `from` (both absolute), with `..` where needed.
fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part.as_os_str());
    }
    path
}

const SCAFFOLD_MANIFEST: &str = r#"# The manifest of the {name} channel: `describe` returns this file; the host
# refuses the plugin unless config.toml grants what [capabilities] asks for.
name = "{name}"
version = "0.1.0"
kind = "webhook"
description = "Posts each message as JSON to the `endpoint` setting."

[config]
required = ["endpoint"]
optional = []
secrets = []

[capabilities]
http = true
"#;

const SCAFFOLD_LIB: &str = r##"//! The {name} channel: posts each message as JSON to the `endpoint` setting.
//!
//! Start here: `body` is pure and tested below (`cargo test`); `send` does
//! the one host call. See PLUGINS.md for the whole contract.

use rekindle_plugin_sdk::{http, Channel, Config, Delivery, OutboundMessage, SendError};

pub struct Plugin;

/// The JSON body for one message.
pub fn body(message: &OutboundMessage) -> String {
    serde_json::json!({
        "to": message.recipient.address,
        "text": message.text,
        "key": message.idempotency_key,
    })
    .to_string()
}

impl Channel for Plugin {
    fn validate_config(config: &Config) -> Result<(), Vec<String>> {
        let problems = config.missing(&["endpoint"]);
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    fn send(config: &Config, message: OutboundMessage) -> Result<Delivery, SendError> {
        let request = http::Request {
            method: "POST".into(),
            url: config.require("endpoint")?.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body(&message).into_bytes(),
        };
        match http::send(&request) {
            Ok(response) if (200..300).contains(&response.status) => {
                Ok(Delivery { provider_id: message.idempotency_key, metadata: vec![] })
            }
            Ok(response) if response.status == 429 || response.status >= 500 => {
                Err(SendError::Retryable(format!("endpoint answered {}", response.status)))
            }
            Ok(response) => Err(SendError::Permanent(format!("endpoint answered {}", response.status))),
            // waiting may help a timeout or a dropped connection
            Err(http::HttpError::Timeout(why) | http::HttpError::Transport(why)) => Err(SendError::Retryable(why)),
            // a URL outside the channel's grant, or an answer over its cap, stays so:
            // the operator's configuration has to change
            Err(http::HttpError::Denied(why) | http::HttpError::TooLarge(why)) => Err(SendError::Permanent(why)),
        }
    }
}

rekindle_plugin_sdk::export_channel!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use rekindle_plugin_sdk::Recipient;

    #[test]
    fn body_is_json_whatever_the_text() {
        let message = OutboundMessage {
            recipient: Recipient { address: "c-1".into(), name: None, member_id: "m-1".into() },
            subject: None,
            text: "say \"hi\"\n你好".into(),
            html: None,
            idempotency_key: "k-1".into(),
            channel_data: vec![],
            metadata: vec![],
        };
        let sent: serde_json::Value = serde_json::from_str(&body(&message)).expect("JSON");
        assert_eq!(sent, serde_json::json!({ "to": "c-1", "text": "say \"hi\"\n你好", "key": "k-1" }));
    }
}
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_folder() {
        let cases = [
            ("/repo/plugins/hello", "/repo/plugins/sdk", "../sdk"),
            ("/tmp/x/hello", "/repo/plugins/sdk", "../../../repo/plugins/sdk"),
            ("/repo/a", "/repo/a/b", "b"),
        ];
        for (from, to, expected) in cases {
            assert_eq!(relative_path(Path::new(from), Path::new(to)), PathBuf::from(expected));
        }
    }

    #[test]
    fn scaffold_refuses_bad_names_and_existing_folders() {
        let dir = tempfile::tempdir().expect("dir");
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/sdk");
        let mut files: Vec<String> = Vec::new();
        let mut stack = vec![sdk.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("sdk folder") {
                let path = e.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push(path.strip_prefix(&sdk).expect("below").to_string_lossy().into_owned());
                }
            }
        }
        files.sort();
        assert_eq!(files, SDK_FILES.iter().map(|(f, _)| f.to_string()).collect::<Vec<_>>(), "every SDK file is embedded");
        assert!(SDK_FILES[0].1.contains(&format!("version = \"{SDK_VERSION}\"")));
        for bad in ["", "Hello", "1abc", "a_b", "a/b"] {
            assert!(scaffold(bad, dir.path(), &sdk, true).is_err(), "{bad}");
        }
        scaffold("hello", dir.path(), &sdk, true).expect("first");
        assert!(scaffold("hello", dir.path(), &sdk, true).is_err());
    }
}
