//! The SMTP capability: submission through the operator's relay, on connections the host owns.
//!
//! It owns the relay connection pool. lettre's pooled transport never sets
//! TCP_NODELAY, so on loopback each message waited ~40 ms on Nagle's algorithm
//! (23 messages/s); the host therefore opens each TCP stream itself with
//! nodelay, hands it to lettre's `AsyncSmtpConnection`, does STARTTLS and AUTH
//! on it and keeps a few idle connections. lettre does implicit TLS (SMTPS)
//! only on a stream it opens itself, without nodelay (44 ms per message was
//! measured), so for SMTPS the host does the TLS handshake with tokio-rustls on
//! its own nodelay stream and hands lettre the encrypted stream. The relay
//! address and credentials live here and never reach the plugin.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Address;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::config::{SmtpRelayConfig, SmtpTls};

/// A failed submission, mapped onto the WIT `smtp-error` by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SmtpFailure {
    Transient(String),
    Permanent(String),
}

/// How the connection to the relay is encrypted.
enum RelayTls {
    None,
    /// lettre upgrades the plain connection after EHLO.
    Starttls(TlsParameters),
    /// The host's own handshake before the relay's greeting.
    Implicit { connector: TlsConnector, server_name: ServerName<'static> },
}

pub(crate) struct SmtpRelay {
    config: SmtpRelayConfig,
    tls: RelayTls,
    hello: ClientId,
    timeout: Duration,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
}

impl SmtpRelay {
    pub(crate) fn new(config: &SmtpRelayConfig, timeout: Duration) -> Result<Self, String> {
        let name = config.tls_name.clone().unwrap_or_else(|| config.host.clone());
        let ca_pem = match &config.ca_file {
            Some(ca_file) => Some(std::fs::read(ca_file).map_err(|err| format!("smtp.ca_file {}: {err}", ca_file.display()))?),
            None => None,
        };
        let ca_problem = |err: &dyn std::fmt::Display| {
            let file = config.ca_file.as_deref().map(|f| f.display().to_string()).unwrap_or_default();
            format!("smtp.ca_file {file}: {err}")
        };
        let tls = match config.tls {
            SmtpTls::None => RelayTls::None,
            SmtpTls::Starttls => {
                let mut builder = TlsParameters::builder(name);
                if let Some(pem) = &ca_pem {
                    builder = builder.add_root_certificate(Certificate::from_pem(pem).map_err(|err| ca_problem(&err))?);
                }
                RelayTls::Starttls(builder.build_rustls().map_err(|err| format!("smtp tls: {err}"))?)
            }
            SmtpTls::Implicit => {
                let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
                if let Some(pem) = &ca_pem {
                    let certificates = CertificateDer::pem_slice_iter(pem)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|err| ca_problem(&err))?;
                    if certificates.is_empty() {
                        return Err(ca_problem(&"no PEM certificate in the file"));
                    }
                    for certificate in certificates {
                        roots.add(certificate).map_err(|err| ca_problem(&err))?;
                    }
                }
                let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
                let client = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|err| format!("smtp tls: {err}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let server_name = ServerName::try_from(name.clone())
                    .map_err(|err| format!("smtp.tls_name `{name}` is not a host name or address: {err}"))?;
                RelayTls::Implicit { connector: TlsConnector::from(Arc::new(client)), server_name }
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
        let tcp = TcpStream::connect(address).await.map_err(|err| connect_failed(&err))?;
        tcp.set_nodelay(true).map_err(|err| connect_failed(&err))?;
        let stream: Box<dyn AsyncTokioStream> = match &self.tls {
            RelayTls::Implicit { connector, server_name } => {
                let tls = connector.connect(server_name.clone(), tcp).await.map_err(|err| connect_failed(&err))?;
                Box::new(ImplicitTlsStream(tls))
            }
            RelayTls::None | RelayTls::Starttls(_) => Box::new(tcp),
        };
        let mut connection =
            AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await.map_err(|err| connect_failed(&err))?;
        if let RelayTls::Starttls(tls) = &self.tls {
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

/// A TLS stream the host opened, handed to lettre as a plain transport.
#[derive(Debug)]
struct ImplicitTlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTlsStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
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
