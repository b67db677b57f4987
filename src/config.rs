//! The operator's configuration (`config.toml`): raw serde structs parsed strictly, then a
//! check pass that reports every problem at once, each naming its exact key.
//!
//! Each stage owns its table's struct and check (`profile::ProfileConfig`,
//! `predict::PredictSettings`, `api::ApiConfig`, ...); this module assembles them, keeps
//! the tables no single stage owns, and hands each stage its settings
//! ([`Config::plan_settings`], [`Config::api_settings`]). It sits above those stages, so
//! none of them imports it.
//!
//! Every field has a documented default, so an empty file is a valid configuration; the
//! annotated default lives in the repository's `config.toml`.

use serde::Deserialize;

use crate::api::ApiSettings;
use crate::plan::links::Links;
use crate::plan::PlanSettings;
use crate::profile::ProfileConfig;
use std::path::{Path, PathBuf};

/// The checked configuration.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreConfig,
    pub members: MembersConfig,
    pub profile: ProfileConfig,
    /// Predicted member value (BG/NBD + Gamma-Gamma).
    pub predict: crate::predict::PredictSettings,
    /// Limits across all rules, where rules live, and the links messages carry.
    pub campaigns: CampaignsConfig,
    /// The daemon's HTTP API (unsubscribe links, admin endpoints).
    pub api: crate::api::ApiConfig,
    /// Co-purchase rules the daemon keeps fresh for bundle offers and likely_to_buy.
    pub bundles: BundlesConfig,
    /// Rate limits, concurrency, retries and shutdown grace of the dispatcher.
    pub dispatch: crate::dispatch::DispatchConfig,
    /// What delivery reports, bounces and complaints do to an address.
    pub feedback: crate::feedback::FeedbackConfig,
    /// Channel plugins by channel name: `[channels.email]`, `[channels.sms]`, ...
    pub channels: std::collections::BTreeMap<String, crate::plugin::ChannelConfig>,
    /// The folder of the config file: relative plugin paths and grants start here.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// What the tables above hold as text, parsed once by the check.
    #[serde(skip)]
    pub checked: Checked,
}

/// Values config.toml writes as text, parsed by the check that accepted them, so no one
/// parses them again (or falls back to something when that fails).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checked {
    /// `[members] default_timezone`.
    pub default_tz: chrono_tz::Tz,
    /// `[members] phone_region`; `None` when "" (phones kept as given).
    pub phone_region: Option<crate::domain::PhoneRegion>,
    /// `[campaigns] quiet_hours`.
    pub quiet_hours: crate::rules::QuietHours,
}

impl Default for Checked {
    /// The defaults of the tables, parsed (`empty_text_gives_defaults` pins them).
    fn default() -> Self {
        Checked {
            default_tz: chrono_tz::Asia::Shanghai,
            phone_region: "CN".parse().ok(),
            quiet_hours: crate::rules::QuietHours { start: 21 * 60, end: 9 * 60 },
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: StoreConfig::default(),
            members: MembersConfig::default(),
            profile: ProfileConfig::default(),
            predict: crate::predict::PredictSettings::default(),
            campaigns: CampaignsConfig::default(),
            dispatch: crate::dispatch::DispatchConfig::default(),
            feedback: crate::feedback::FeedbackConfig::default(),
            bundles: BundlesConfig::default(),
            api: crate::api::ApiConfig::default(),
            channels: Default::default(),
            base_dir: PathBuf::from("."),
            checked: Checked::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where the sled store lives; relative paths are relative to the config file.
    pub path: PathBuf,
    /// sled's page cache in MiB (bounds the resident memory of large imports).
    pub cache_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { path: PathBuf::from("data/rekindle.sled"), cache_mb: 256 }
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MembersConfig {
    /// IANA time zone for members whose `tz` is empty.
    pub default_timezone: String,
    /// ISO 3166 country whose national numbers phones without a country code are read in
    /// ("CN": `13800138000` is stored as `+8613800138000`); "" keeps phones as given.
    pub phone_region: String,
}

impl Default for MembersConfig {
    fn default() -> Self {
        MembersConfig { default_timezone: "Asia/Shanghai".into(), phone_region: "CN".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CampaignsConfig {
    /// The folder of rule files; relative to the config file.
    pub rules_dir: PathBuf,
    /// At most `messages` messages per member within any `days` days, across all rules.
    pub frequency_cap: FrequencyCap,
    /// Default quiet hours in each member's own time zone ("HH:MM" local; may wrap
    /// midnight); a rule may override them or turn them off.
    pub quiet_hours: QuietHoursConfig,
    /// Base URL of the public endpoints (unsubscribe links).
    pub public_url: String,
    /// When the daemon starts, run once each rule that missed a firing while it was down.
    pub catch_up: bool,
    /// An order within this many days after a message counts as its conversion.
    pub attribution_days: u32,
    /// Key of the unsubscribe-link signatures. Empty: a random key kept in the store
    /// (the REKINDLE_UNSUBSCRIBE_SECRET environment variable overrides both).
    pub unsubscribe_secret: String,
    /// The key read from this file instead (`*_file` keys, below).
    pub unsubscribe_secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BundlesConfig {
    /// The daemon re-mines a scope's rules when the stored ones are this many days old
    /// (0: never; `rekindle bundles mine` still works on demand).
    pub refresh_every_days: u32,
    /// The scopes the daemon mines.
    pub scopes: Vec<crate::basket::Scope>,
    pub min_support: f64,
    pub min_confidence: f64,
    pub min_lift: Option<f64>,
    /// Only orders within this many days before the mining day.
    pub lookback_days: Option<u32>,
}

impl Default for BundlesConfig {
    fn default() -> Self {
        BundlesConfig { refresh_every_days: 7, scopes: vec![crate::basket::Scope::Basket], min_support: 0.001, min_confidence: 0.1, min_lift: None, lookback_days: Some(365) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    pub messages: u32,
    pub days: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursConfig {
    pub start: String,
    pub end: String,
}

impl Default for CampaignsConfig {
    fn default() -> Self {
        CampaignsConfig {
            rules_dir: PathBuf::from("rules"),
            frequency_cap: FrequencyCap { messages: 2, days: 7 },
            quiet_hours: QuietHoursConfig { start: "21:00".into(), end: "09:00".into() },
            public_url: "http://127.0.0.1:8787".into(),
            catch_up: true,
            attribution_days: 7,
            unsubscribe_secret: String::new(),
            unsubscribe_secret_file: None,
        }
    }
}

/// A secret file larger than this is refused: it is not a secret but a mistake.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// One secret file's text (see `Config::read_secret_files`).
fn read_secret(path: &Path, dir: &Path, credentials: Option<&Path>) -> Result<String, String> {
    let full = match path.to_str().and_then(|p| p.strip_prefix("credential:")) {
        Some(name) if name.is_empty() || name.contains('/') || name == "." || name == ".." => {
            return Err(format!("`credential:{name}` is not a credential name"));
        }
        Some(name) => match credentials {
            Some(folder) => folder.join(name),
            None => return Err(format!("`credential:{name}` names a systemd credential, but CREDENTIALS_DIRECTORY is not set (LoadCredential= in the unit)")),
        },
        None if path.is_relative() => dir.join(path),
        None => path.to_path_buf(),
    };
    let bytes = crate::rules::read_capped_bytes(&full, MAX_SECRET_BYTES as u64).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => format!("{} is larger than {} KiB", full.display(), MAX_SECRET_BYTES / 1024),
        _ => format!("cannot read {}: {e}", full.display()),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", full.display()))?;
    let secret = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if secret.is_empty() {
        return Err(format!("{} is empty", full.display()));
    }
    Ok(secret.to_string())
}

/// What `rules check` and the daemon say about an http `public_url`.
pub const HTTP_PUBLIC_URL_WARNING: &str = "campaigns.public_url is http://: unsubscribe links and provider callbacks travel in clear, and emails carry no one-click List-Unsubscribe (RFC 8058 needs an https URL); use https behind a reverse proxy";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: invalid configuration:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

impl Config {
    /// Loads and checks a config file; a missing file at the default path gives the
    /// defaults. Relative store paths are resolved against the file's folder.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => String::new(),
            Err(source) => return Err(ConfigError::Read { path: path.into(), source }),
        };
        let mut config = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.into(), message },
            ConfigError::Invalid { problems, .. } => ConfigError::Invalid { path: path.into(), problems },
            other => other,
        })?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        config.base_dir = dir.to_path_buf();
        if config.store.path.is_relative() {
            config.store.path = dir.join(&config.store.path);
        }
        if config.campaigns.rules_dir.is_relative() {
            config.campaigns.rules_dir = dir.join(&config.campaigns.rules_dir);
        }
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        config.read_secret_files(dir, credentials.as_deref()).map_err(|problems| ConfigError::Invalid { path: path.into(), problems })?;
        config.api.check_tokens().map_err(|problem| ConfigError::Invalid { path: path.into(), problems: vec![problem] })?;
        Ok(config)
    }

    /// Fills every secret given as a file (`api.token_file`, `api.metrics_token_file`, `campaigns.
    /// unsubscribe_secret_file`, `channels.NAME.smtp.password_file`, and a channel's
    /// `secrets.NAME_file`) from its file, so that the rest of the program sees values
    /// only. A path is absolute, relative to the config's folder, or `credential:NAME`:
    /// a systemd credential (`LoadCredential=NAME:...`), read from `$CREDENTIALS_DIRECTORY`.
    /// One trailing line break is not part of the secret.
    pub(crate) fn read_secret_files(&mut self, dir: &Path, credentials: Option<&Path>) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let mut read = |key: &str, path: &Path, also_plain: bool| -> Option<String> {
            if also_plain {
                problems.push(format!("{key} and {key}_file are both set; keep one"));
                return None;
            }
            read_secret(path, dir, credentials).map_err(|e| problems.push(format!("{key}_file: {e}"))).ok()
        };
        if let Some(file) = self.api.token_file.take() {
            if let Some(v) = read("api.token", &file, !self.api.token.is_empty()) {
                self.api.token = v;
            }
        }
        if let Some(file) = self.api.metrics_token_file.take() {
            if let Some(v) = read("api.metrics_token", &file, !self.api.metrics_token.is_empty()) {
                self.api.metrics_token = v;
            }
        }
        if let Some(file) = self.campaigns.unsubscribe_secret_file.take() {
            if let Some(v) = read("campaigns.unsubscribe_secret", &file, !self.campaigns.unsubscribe_secret.is_empty()) {
                self.campaigns.unsubscribe_secret = v;
            }
        }
        for (name, channel) in &mut self.channels {
            if let Some(smtp) = &mut channel.smtp {
                if let Some(file) = smtp.password_file.take() {
                    if let Some(v) = read(&format!("channels.{name}.smtp.password"), &file, smtp.password.is_some()) {
                        smtp.password = Some(v);
                    }
                }
            }
            let files: Vec<String> = channel.secrets.keys().filter(|k| k.ends_with("_file")).cloned().collect();
            for key in files {
                let file = channel.secrets.remove(&key).unwrap_or_default();
                let secret = key.trim_end_matches("_file");
                if let Some(v) = read(&format!("channels.{name}.secrets.{secret}"), Path::new(&file), channel.secrets.contains_key(secret)) {
                    channel.secrets.insert(secret.to_string(), v);
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// What a run's planning reads: the profile thresholds, the value model's options,
    /// the frequency cap, quiet hours, the default time zone and the unsubscribe links.
    pub fn plan_settings(&self, unsubscribe_key: Vec<u8>) -> PlanSettings {
        PlanSettings {
            profile: self.profile.clone(),
            predict: self.predict.predict_options(),
            cap_messages: self.campaigns.frequency_cap.messages,
            cap_days: self.campaigns.frequency_cap.days,
            quiet_hours: self.checked.quiet_hours,
            default_tz: self.checked.default_tz,
            links: Links { public_url: self.campaigns.public_url.trim_end_matches('/').to_string(), key: unsubscribe_key },
        }
    }

    /// What the API reads: `[api]`, and the keys of other tables its handlers need.
    pub fn api_settings(&self) -> ApiSettings {
        ApiSettings {
            api: self.api.clone(),
            attribution_days: self.campaigns.attribution_days,
            rules_dir: self.campaigns.rules_dir.clone(),
            channel_names: self.channels.keys().cloned().collect(),
            phone_region: self.checked.phone_region,
        }
    }

    /// Parses and checks config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: PathBuf::new(), message: e.to_string() })?;
        config.checked = config.check().map_err(|problems| ConfigError::Invalid { path: PathBuf::new(), problems })?;
        Ok(config)
    }

    /// Every problem, each naming its key; without any, the values held as text, parsed.
    fn check(&self) -> Result<Checked, Vec<String>> {
        let mut out = Vec::new();
        out.extend(self.profile.check());
        let default_tz = crate::domain::parse_timezone(&self.members.default_timezone);
        if let Err(hint) = &default_tz {
            out.push(format!("members.default_timezone: {:?} is not an IANA time zone; {hint}", self.members.default_timezone));
        }
        let phone_region = match self.members.phone_region.as_str() {
            "" => Ok(None),
            region => region.parse::<crate::domain::PhoneRegion>().map(Some),
        };
        if let Err(e) = &phone_region {
            out.push(format!("members.phone_region: {e}, or \"\" to keep phones as given"));
        }
        if self.store.cache_mb == 0 {
            out.push("store.cache_mb: must be at least 1".into());
        }
        out.extend(self.predict.check());
        out.extend(self.dispatch.check());
        out.extend(self.api.check());
        out.extend(self.feedback.check());
        for (name, channel) in &self.channels {
            out.extend(channel.limits.problems(name));
        }
        let b = &self.bundles;
        if !((0.0..=1.0).contains(&b.min_support) && (0.0..=1.0).contains(&b.min_confidence)) {
            out.push("bundles: min_support and min_confidence must be between 0 and 1".into());
        }
        let c = &self.campaigns;
        if c.frequency_cap.messages == 0 || c.frequency_cap.days == 0 {
            out.push("campaigns.frequency_cap: `messages` and `days` must be at least 1".into());
        }
        let quiet_hours = crate::rules::QuietHours::parse(&c.quiet_hours.start, &c.quiet_hours.end);
        if let Err(e) = &quiet_hours {
            out.push(format!("campaigns.quiet_hours: {e}"));
        }
        if !(c.public_url.starts_with("http://") || c.public_url.starts_with("https://")) {
            out.push(format!("campaigns.public_url: {:?} must start with http:// or https://", c.public_url));
        }
        match (default_tz, phone_region, quiet_hours) {
            (Ok(default_tz), Ok(phone_region), Ok(quiet_hours)) if out.is_empty() => Ok(Checked { default_tz, phone_region, quiet_hours }),
            _ => Err(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_is_the_defaults() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.profile, ProfileConfig::default());
        assert_eq!(c.store.cache_mb, StoreConfig::default().cache_mb);
        assert_eq!(c.predict, crate::predict::PredictSettings::default());
        assert_eq!(c.campaigns, CampaignsConfig::default());
        assert_eq!(c.dispatch, crate::dispatch::DispatchConfig::default());
        assert_eq!(c.bundles, BundlesConfig::default());
        assert_eq!(c.api, crate::api::ApiConfig::default());
        assert_eq!(c.feedback, crate::feedback::FeedbackConfig::default());
    }

    #[test]
    fn empty_text_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.profile, ProfileConfig::default());
        assert_eq!(c.checked, Checked::default());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::parse("[profile]\nrepurchase_factr = 2.0\n").unwrap_err().to_string();
        assert!(err.contains("repurchase_factr") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Config::parse(
            "[profile]\nprice_tier_percentiles = [80, 30]\nrepurchase_factor = -1.0\n[members]\ndefault_timezone = \"Mars/Base\"\nphone_region = \"Mars\"\n",
        )
        .unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else { panic!("{err}") };
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn a_misspelt_default_time_zone_gets_a_did_you_mean() {
        let err = Config::parse("[members]\ndefault_timezone = \"Asia/Shangai\"\n").unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else { panic!("{err}") };
        assert_eq!(problems, ["members.default_timezone: \"Asia/Shangai\" is not an IANA time zone; did you mean \"Asia/Shanghai\"?"]);
    }

    #[test]
    fn api_limits_are_checked_by_key() {
        let err = Config::parse("[api]\nheader_timeout_seconds = 0\nbody_timeout_seconds = -1\nmax_connections = 0\n").unwrap_err().to_string();
        for key in ["api.header_timeout_seconds", "api.body_timeout_seconds", "api.max_connections"] {
            assert!(err.contains(key), "{key}: {err}");
        }
        let err = Config::parse("[api]\ntrusted_proxies = [\"127.0.0.1\", \"proxy.local\"]\n").unwrap_err().to_string();
        assert!(err.contains("trusted_proxies") && err.contains("\"proxy.local\" is not an IP address or network"), "{err}");
        let c = Config::parse("[api]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \"::1\"]\n").unwrap();
        assert_eq!(c.api.trusted_proxies.len(), 3);
    }

    #[test]
    fn secrets_come_from_files_and_systemd_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("token"), "t0ken\n").unwrap();
        std::fs::create_dir(d.join("creds")).unwrap();
        std::fs::write(d.join("creds/smtp"), "pa ss\r\n").unwrap();
        std::fs::write(d.join("creds/twilio"), "tw\n\n").unwrap();
        std::fs::write(d.join("creds/scrape"), "s1\n").unwrap();
        let text = format!(
            "[api]\ntoken_file = \"token\"\nmetrics_token_file = \"credential:scrape\"\n[campaigns]\nunsubscribe_secret_file = {:?}\n\
             [channels.sms]\nplugin = \"x.wasm\"\nsecrets = {{ auth_token_file = \"credential:twilio\", account = \"AC1\" }}\n\
             [channels.email]\nplugin = \"x.wasm\"\nsmtp = {{ host = \"h\", port = 25, username = \"u\", password_file = \"credential:smtp\" }}\n",
            d.join("token").display().to_string()
        );
        let mut c = Config::parse(&text).unwrap();
        c.read_secret_files(d, Some(&d.join("creds"))).unwrap();
        assert_eq!(c.api.token, "t0ken", "relative to the config's folder, one line break dropped");
        assert_eq!(c.api.metrics_token, "s1");
        assert_eq!(c.campaigns.unsubscribe_secret, "t0ken", "an absolute path");
        assert_eq!(c.channels["email"].smtp.as_ref().unwrap().password.as_deref(), Some("pa ss"), "a credential, CRLF dropped");
        let secrets: Vec<(&str, &str)> = c.channels["sms"].secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(secrets, [("account", "AC1"), ("auth_token", "tw\n")], "the plugin sees the secret, not the _file key");

        std::fs::write(d.join("empty"), "\n").unwrap();
        std::fs::write(d.join("big"), vec![b'x'; MAX_SECRET_BYTES + 1]).unwrap();
        let mut c = Config::parse(
            "[api]\ntoken = \"a\"\ntoken_file = \"token\"\n[campaigns]\nunsubscribe_secret_file = \"missing\"\n\
             [channels.sms]\nplugin = \"x.wasm\"\nsecrets = { k_file = \"empty\", j_file = \"credential:j\", l_file = \"credential:../token\", m_file = \"big\" }\n",
        )
        .unwrap();
        let problems = c.read_secret_files(d, None).unwrap_err().join("\n");
        for want in [
            "api.token and api.token_file are both set",
            "campaigns.unsubscribe_secret_file: cannot read",
            "channels.sms.secrets.k_file:",
            "empty",
            "channels.sms.secrets.j_file: `credential:j` names a systemd credential, but CREDENTIALS_DIRECTORY is not set",
            "channels.sms.secrets.l_file: `credential:../token` is not a credential name",
            "channels.sms.secrets.m_file:",
            "larger than 64 KiB",
        ] {
            assert!(problems.contains(want), "{want:?} missing in:\n{problems}");
        }

        std::fs::write(d.join("config.toml"), "[api]\ntoken = \"t0ken\"\nmetrics_token_file = \"token\"\n").unwrap();
        let err = Config::load(&d.join("config.toml"), true).unwrap_err().to_string();
        assert!(err.contains("api.metrics_token: must differ from api.token"), "the read-only token may not be the admin one: {err}");
    }
}
