//! The SMTP capability: submission through the operator's relay, on connections the host owns.
//!
//! It owns the relay connection pool. lettre's pooled transport never sets
//! TCP_NODELAY, so on loopback each message waited ~40 ms on Nagle's algorithm
//! (23 messages/s); the host therefore opens each TCP stream itself with
//! nodelay, hands it to lettre's `AsyncSmtpConnection`, does STARTTLS and AUTH
//! on it and keeps a few idle connections. The relay address and credentials
//! live here and never reach the plugin.

use std::sync::Mutex;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Address;

use super::config::{SmtpRelayConfig, SmtpTls};

/// A failed submission, mapped onto the WIT `smtp-error` by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SmtpFailure {
    Transient(String),
    Permanent(String),
}

pub(crate) struct SmtpRelay {
    config: SmtpRelayConfig,
    tls: Option<TlsParameters>,
    hello: ClientId,
    timeout: Duration,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
}

impl SmtpRelay {
    pub(crate) fn new(config: &SmtpRelayConfig, timeout: Duration) -> Result<Self, String> {
        let tls = match config.tls {
            SmtpTls::None => None,
            SmtpTls::Starttls | SmtpTls::Implicit => {
                let name = config.tls_name.clone().unwrap_or_else(|| config.host.clone());
                let mut builder = TlsParameters::builder(name);
                if let Some(ca_file) = &config.ca_file {
                    let pem = std::fs::read(ca_file)
                        .map_err(|err| format!("smtp.ca_file {}: {err}", ca_file.display()))?;
                    let certificate = Certificate::from_pem(&pem)
                        .map_err(|err| format!("smtp.ca_file {}: {err}", ca_file.display()))?;
                    builder = builder.add_root_certificate(certificate);
                }
                Some(builder.build_rustls().map_err(|err| format!("smtp tls: {err}"))?)
            }
        };
        if config.username.is_some() != config.password.is_some() {
            return Err("smtp.username and smtp.password go together".to_string());
        }
        if config.username.is_some() && config.tls == SmtpTls::None {
            return Err("smtp credentials need tls = \"starttls\" or \"implicit\"; they are never sent in clear".to_string());
        }
        let hello = ClientId::Domain(config.hello_name.clone().unwrap_or_else(|| "localhost".to_string()));
        Ok(SmtpRelay { config: config.clone(), tls, hello, timeout, idle: Mutex::new(Vec::new()) })
    }

    /// Submit one message; bounded by the channel's I/O timeout.
    pub(crate) async fn submit(&self, mail_from: &str, rcpt_to: &[String], message: &[u8]) -> Result<String, SmtpFailure> {
        let envelope = envelope(mail_from, rcpt_to)?;
        match tokio::time::timeout(self.timeout, self.submit_on_pool(&envelope, message)).await {
            Ok(result) => result,
            Err(_) => Err(SmtpFailure::Transient(format!(
                "relay {}:{} gave no answer within {} ms",
                self.config.host,
                self.config.port,
                self.timeout.as_millis()
            ))),
        }
    }

    async fn submit_on_pool(&self, envelope: &Envelope, message: &[u8]) -> Result<String, SmtpFailure> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut connection = match pooled {
            Some(connection) => connection,
            None => self.connect().await?,
        };
        let result = connection.send(envelope, message).await;
        let reusable = !connection.has_broken();
        if reusable {
            if let Ok(mut idle) = self.idle.lock() {
                if idle.len() < self.config.pool_size {
                    idle.push(connection);
                }
            }
        }
        match result {
            Ok(response) => Ok(response.message().collect::<Vec<_>>().join(" ")),
            Err(err) if err.is_permanent() => Err(SmtpFailure::Permanent(error_text(&err))),
            Err(err) => Err(SmtpFailure::Transient(error_text(&err))),
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SmtpFailure> {
        let address = (self.config.host.as_str(), self.config.port);
        let connect_failed = |err: &dyn std::fmt::Display| {
            SmtpFailure::Transient(format!("cannot reach relay {}:{}: {err}", self.config.host, self.config.port))
        };
        let mut connection = if self.config.tls == SmtpTls::Implicit {
            // lettre does the TLS handshake before EHLO only on a stream it opens itself.
            AsyncSmtpConnection::connect_tokio1(address, Some(self.timeout), &self.hello, self.tls.clone(), None)
                .await
                .map_err(|err| connect_failed(&err))?
        } else {
            let tcp = tokio::net::TcpStream::connect(address).await.map_err(|err| connect_failed(&err))?;
            tcp.set_nodelay(true).map_err(|err| connect_failed(&err))?;
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                .await
                .map_err(|err| connect_failed(&err))?
        };
        if let (SmtpTls::Starttls, Some(tls)) = (self.config.tls, &self.tls) {
            connection
                .starttls(tls.clone(), &self.hello)
                .await
                .map_err(|err| SmtpFailure::Transient(format!("starttls with the relay failed: {}", error_text(&err))))?;
        }
        if let (Some(username), Some(password)) = (&self.config.username, &self.config.password) {
            let credentials = Credentials::new(username.clone(), password.clone());
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                .await
                .map_err(|err| SmtpFailure::Transient(format!("relay refused the login: {}", error_text(&err))))?;
        }
        Ok(connection)
    }
}

fn envelope(mail_from: &str, rcpt_to: &[String]) -> Result<Envelope, SmtpFailure> {
    let from: Address = mail_from
        .parse()
        .map_err(|err| SmtpFailure::Permanent(format!("bad envelope sender `{mail_from}`: {err}")))?;
    let mut to = Vec::with_capacity(rcpt_to.len());
    for rcpt in rcpt_to {
        to.push(
            rcpt.parse::<Address>()
                .map_err(|err| SmtpFailure::Permanent(format!("bad envelope recipient `{rcpt}`: {err}")))?,
        );
    }
    Envelope::new(Some(from), to).map_err(|err| SmtpFailure::Permanent(format!("bad envelope: {err}")))
}

fn error_text(err: &lettre::transport::smtp::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
