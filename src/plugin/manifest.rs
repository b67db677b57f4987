//! A plugin's manifest (its plugin.toml, returned by `describe`) and the grant check.
//!
//! It owns the rule that a plugin runs only if the operator granted every
//! capability its manifest asks for, and that the manifest declares every
//! capability the component actually imports. Both checks run at load and in
//! `rekindle plugin check`, and report every problem at once.

use serde::Deserialize;

use super::config::ChannelConfig;

/// The parsed plugin.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginManifest {
    pub name: String,
    pub version: String,
    /// What it delivers: `email`, `sms`, `shop`, `file` or another word.
    pub kind: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: ConfigKeys,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Capabilities the plugin uses when the channel grants them and works without
    /// (the email plugin's HTTP, for SNS certificates): never a missing-grant problem.
    #[serde(default)]
    pub optional_capabilities: Capabilities,
}

/// The settings and secrets a plugin reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigKeys {
    /// Settings that must be present.
    #[serde(default)]
    pub required: Vec<String>,
    /// Settings it reads when present.
    #[serde(default)]
    pub optional: Vec<String>,
    /// Keys that must be present under `secrets`.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// The host capabilities a plugin asks for (logging and the clock are free).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default)]
    pub http: bool,
    #[serde(default)]
    pub smtp: bool,
    #[serde(default)]
    pub files: bool,
}

impl PluginManifest {
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|err| format!("manifest (plugin.toml) is invalid: {err}"))
    }

    /// Every way in which `channel` does not give this plugin what it needs.
    pub fn problems_with(&self, channel_name: &str, channel: &ChannelConfig) -> Vec<String> {
        let mut problems = Vec::new();
        let table = format!("[channels.{channel_name}]");
        if self.capabilities.http && channel.grants.http.is_empty() {
            problems.push(format!(
                "plugin `{}` asks for http, which {table} does not grant (add hosts to grants.http)",
                self.name
            ));
        }
        if self.capabilities.smtp && channel.smtp.is_none() {
            problems.push(format!(
                "plugin `{}` asks for smtp, which {table} does not grant (add a [channels.{channel_name}.smtp] relay)",
                self.name
            ));
        }
        if self.capabilities.files && channel.grants.files.is_none() {
            problems.push(format!(
                "plugin `{}` asks for files, which {table} does not grant (set grants.files to a folder)",
                self.name
            ));
        }
        for key in &self.config.required {
            if !channel.settings.contains_key(key) {
                problems.push(format!("{table} settings lacks `{key}`, which plugin `{}` requires", self.name));
            }
        }
        for key in &self.config.secrets {
            if !channel.secrets.contains_key(key) {
                problems.push(format!("{table} secrets lacks `{key}`, which plugin `{}` requires", self.name));
            }
        }
        problems
    }

    /// Capabilities the component imports without declaring them.
    pub fn undeclared(&self, imported: Capabilities) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, imports, declares) in [
            ("http", imported.http, self.capabilities.http || self.optional_capabilities.http),
            ("smtp", imported.smtp, self.capabilities.smtp || self.optional_capabilities.smtp),
            ("files", imported.files, self.capabilities.files || self.optional_capabilities.files),
        ] {
            if imports && !declares {
                problems.push(format!(
                    "plugin `{}` imports {name} but its manifest does not ask for it ([capabilities] {name} = true)",
                    self.name
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(toml_text: &str) -> ChannelConfig {
        toml::from_str(toml_text).expect("channel config")
    }

    #[test]
    fn grant_check_names_every_missing_grant_and_key() {
        let manifest = PluginManifest::parse(
            r#"
            name = "sms"
            version = "0.1.0"
            kind = "sms"
            [config]
            required = ["provider", "from"]
            secrets = ["api_key"]
            [capabilities]
            http = true
            files = true
            "#,
        )
        .expect("manifest");
        let cases: &[(&str, &[&str])] = &[
            (
                "plugin = \"sms.wasm\"\nsettings = { provider = \"kannel\" }\n",
                &["asks for http", "asks for files", "lacks `from`", "secrets lacks `api_key`"],
            ),
            (
                "plugin = \"sms.wasm\"\nsettings = { provider = \"kannel\", from = \"Shop\" }\nsecrets = { api_key = \"k\" }\n[grants]\nhttp = [\"127.0.0.1:13013\"]\nfiles = \"out\"\n",
                &[],
            ),
        ];
        for (config, expected) in cases {
            let problems = manifest.problems_with("sms", &channel(config));
            assert_eq!(problems.len(), expected.len(), "{problems:?}");
            for (problem, fragment) in problems.iter().zip(expected.iter()) {
                assert!(problem.contains(fragment), "{problem} should contain {fragment}");
            }
        }
        let undeclared = manifest.undeclared(Capabilities { http: true, smtp: true, files: false });
        assert_eq!(undeclared.len(), 1);
        assert!(undeclared[0].contains("imports smtp"));
    }
}
