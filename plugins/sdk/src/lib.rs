//! The SDK for rekindle channel plugins.
//!
//! It owns the guest side of the `rekindle:channel@0.1.0` contract (the WIT in
//! `wit/`): the bindings are generated in a private module, and an author sees
//! only the [`Channel`] trait, the plain message types, the host capabilities
//! ([`http`], [`smtp`], [`files`], [`log`], [`clock`]) and the
//! [`export_channel!`] macro, which also embeds the crate's `plugin.toml` as the
//! answer to `describe`. See PLUGINS.md for a walk-through.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
    });
}

pub mod mime;

pub use bindings::rekindle::channel::types::{
    CallbackRequest, Delivery, DeliveryState, OutboundMessage, Recipient, SendError, StatusUpdate,
};

/// Operator settings and secrets of one channel (`[channels.NAME]` in
/// config.toml), handed to the plugin on every call.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `key`, if the operator set it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or a permanent send error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, SendError> {
        self.get(key)
            .ok_or_else(|| SendError::Permanent(format!("channel config has no `{key}`")))
    }

    /// One message per key of `keys` that is missing or empty.
    pub fn missing(&self, keys: &[&str]) -> Vec<String> {
        keys.iter()
            .filter(|key| self.get(key).is_none_or(str::is_empty))
            .map(|key| format!("missing config key `{key}`"))
            .collect()
    }
}

/// What a channel plugin implements. Only `send` is required.
pub trait Channel {
    /// Check the operator's settings; return every problem at once.
    fn validate_config(_config: &Config) -> Result<(), Vec<String>> {
        Ok(())
    }

    /// Send one rendered message to its recipient.
    fn send(config: &Config, message: OutboundMessage) -> Result<Delivery, SendError>;

    /// Turn a provider's webhook into status updates.
    fn parse_callback(
        _config: &Config,
        _request: CallbackRequest,
    ) -> Result<Vec<StatusUpdate>, String> {
        Err("this channel takes no callbacks".to_string())
    }
}

/// How a parse-callback error says the request failed authentication (a missing or
/// bad provider signature) rather than being unreadable: the host answers it with 403
/// instead of 400.
pub const UNAUTHENTICATED: &str = "unauthenticated: ";

/// A parse-callback error for a request that failed authentication.
pub fn unauthenticated(why: impl std::fmt::Display) -> String {
    format!("{UNAUTHENTICATED}{why}")
}

/// Look up a key in a list of pairs (channel data, metadata, headers).
pub fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// Outbound HTTP(S) through the host, limited to the channel's grant.
pub mod http {
    pub use crate::bindings::rekindle::channel::http::{HttpError, Request, Response};

    /// Send one request; the host applies the allowlist, timeout and size cap.
    pub fn send(request: &Request) -> Result<Response, HttpError> {
        crate::bindings::rekindle::channel::http::send(request)
    }
}

/// SMTP submission through the operator's relay.
pub mod smtp {
    pub use crate::bindings::rekindle::channel::smtp::SmtpError;

    /// Submit one RFC 5322 message; returns the relay's reply.
    pub fn submit(mail_from: &str, rcpt_to: &[String], message: &[u8]) -> Result<String, SmtpError> {
        crate::bindings::rekindle::channel::smtp::submit(mail_from, rcpt_to, message)
    }
}

/// Writing into the one folder the operator granted.
pub mod files {
    /// Write (or replace) the file `name` in the granted folder.
    pub fn write(name: &str, contents: &[u8]) -> Result<(), String> {
        crate::bindings::rekindle::channel::files::write(name, contents)
    }
}

/// Log lines, tagged with the channel name by the host.
pub mod log {
    use crate::bindings::rekindle::channel::log::{log, Level};

    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }
    pub fn info(message: &str) {
        log(Level::Info, message)
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// The host's wall clock.
pub mod clock {
    /// Milliseconds since the Unix epoch, UTC.
    pub fn now_unix_ms() -> i64 {
        crate::bindings::rekindle::channel::clock::now_unix_ms()
    }
}

/// Report a panic through the host log before the instance traps, so the
/// host's error says what went wrong. Called by [`export_channel!`].
#[doc(hidden)]
pub fn __install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| log::error(&format!("plugin panicked: {info}"))));
    });
}

/// Export a type implementing [`Channel`] as the plugin, with the crate's
/// `plugin.toml` as its manifest.
#[macro_export]
macro_rules! export_channel {
    ($channel:ty) => {
        #[doc(hidden)]
        pub struct __RekindleChannelExport;

        impl $crate::bindings::exports::rekindle::channel::channel::Guest for __RekindleChannelExport {
            fn describe() -> ::std::string::String {
                ::std::string::String::from(include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/plugin.toml"
                )))
            }

            fn validate_config(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::std::result::Result<(), ::std::vec::Vec<::std::string::String>> {
                $crate::__install_panic_hook();
                <$channel as $crate::Channel>::validate_config(&$crate::Config::new(config))
            }

            fn send(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                message: $crate::OutboundMessage,
            ) -> ::std::result::Result<$crate::Delivery, $crate::SendError> {
                $crate::__install_panic_hook();
                <$channel as $crate::Channel>::send(&$crate::Config::new(config), message)
            }

            fn parse_callback(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                request: $crate::CallbackRequest,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::StatusUpdate>, ::std::string::String> {
                $crate::__install_panic_hook();
                <$channel as $crate::Channel>::parse_callback(&$crate::Config::new(config), request)
            }
        }

        // Only a wasm build exports symbols; a native build (for `cargo test`) has
        // no component ABI to export to.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_plugin_world!(__RekindleChannelExport with_types_in $crate::bindings);
    };
}
