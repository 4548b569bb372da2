//! The client side: dialing TLS servers from an actor, with the same events and commands
//! as the server side.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Handler};
use log::warn;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslVerifyMode, SslVersion,
};
use tokio::net::TcpStream;

use crate::connection::{Connection, Side};
use crate::error::{ConfigError, ConnectError, FileRole};
use crate::events::{Connected, ConnectionId};
use crate::flow::WaterMarks;
use crate::options::{read_certificates, read_private_key};
use crate::SslHandler;

/// Client connections are numbered in their own sequence, from 1.
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// Settings for dialing TLS servers, turned into a [`ConnectorConfig`] by
/// [`build`](ConnectorOptions::build).
///
/// By default the server's certificate must chain to the system's trusted CAs (or to
/// [`ca_file`](Self::ca_file) when given) and name the host that was dialed; no client
/// certificate is sent; TLS 1.2 and 1.3; handshake deadline 10 s.
///
/// # Examples
///
/// ```no_run
/// use sslify::ConnectorOptions;
///
/// let config = ConnectorOptions::new()
///     .ca_file("certs/ca.pem")
///     .client_cert("certs/client-valid.pem", "certs/client-valid.key")
///     .build()?;
/// # Ok::<(), sslify::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConnectorOptions {
    ca_file: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    verify_server: bool,
    handshake_timeout: Duration,
    min_version: SslVersion,
    debug: bool,
}

impl Default for ConnectorOptions {
    fn default() -> Self {
        ConnectorOptions::new()
    }
}

impl ConnectorOptions {
    /// Starts from the defaults.
    pub fn new() -> Self {
        ConnectorOptions {
            ca_file: None,
            identity: None,
            verify_server: true,
            handshake_timeout: Duration::from_secs(10),
            min_version: SslVersion::TLS1_2,
            debug: false,
        }
    }

    /// Trusts the CA certificates in this PEM file for server certificates, instead of the
    /// system's.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.ca_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// Presents this certificate (the file may hold its chain too) and key to servers that
    /// ask for one. This is `Client_SSLify` with a certificate in the POE family.
    pub fn client_cert(mut self, certificate: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.identity = Some((
            certificate.as_ref().to_path_buf(),
            key.as_ref().to_path_buf(),
        ));
        self
    }

    /// Turns off every check of the server's certificate and name.
    ///
    /// Anyone on the path can then read and change the traffic; use it only against a
    /// test server you run yourself. Each connection made this way logs a warning.
    pub fn danger_accept_any_server_certificate(mut self) -> Self {
        self.verify_server = false;
        self
    }

    /// Sets the deadline for the whole handshake; defaults to 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets the oldest protocol version offered; defaults to TLS 1.2.
    pub fn min_version(mut self, version: SslVersion) -> Self {
        self.min_version = version;
        self
    }

    /// Logs every handshake step at debug level instead of trace.
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }

    /// Reads the files and builds the client TLS context.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the file and the reason when a file cannot be read or
    /// parsed, or when the key does not match the certificate.
    pub fn build(&self) -> Result<ConnectorConfig, ConfigError> {
        let tls = |what| move |source| ConfigError::Tls { what, source };
        let mut builder =
            SslContextBuilder::new(SslMethod::tls_client()).map_err(tls("context"))?;
        builder
            .set_min_proto_version(Some(self.min_version))
            .map_err(tls("minimum protocol version"))?;
        builder.set_mode(SslMode::ENABLE_PARTIAL_WRITE | SslMode::ACCEPT_MOVING_WRITE_BUFFER);

        match &self.ca_file {
            Some(path) => {
                for ca in read_certificates(path, FileRole::ServerCa)? {
                    builder.cert_store_mut().add_cert(ca).map_err(tls("CA"))?;
                }
            }
            None => builder
                .set_default_verify_paths()
                .map_err(tls("system CA paths"))?,
        }

        if let Some((certificate, key_path)) = &self.identity {
            let mut chain = read_certificates(certificate, FileRole::Certificate)?.into_iter();
            let key = read_private_key(key_path)?;
            // `read_certificates` never returns an empty list.
            if let Some(leaf) = chain.next() {
                if !leaf.public_key().is_ok_and(|public| public.public_eq(&key)) {
                    return Err(ConfigError::KeyMismatch {
                        certificate: certificate.clone(),
                        key: key_path.clone(),
                    });
                }
                builder
                    .set_certificate(&leaf)
                    .map_err(tls("client certificate"))?;
            }
            for extra in chain {
                builder
                    .add_extra_chain_cert(extra)
                    .map_err(tls("client certificate chain"))?;
            }
            builder.set_private_key(&key).map_err(tls("private key"))?;
        }

        Ok(ConnectorConfig {
            inner: Arc::new(ClientInner {
                context: builder.build(),
                verify_server: self.verify_server,
                handshake_timeout: self.handshake_timeout,
                debug: self.debug,
            }),
        })
    }
}

/// A built client TLS context. Cheap to clone.
#[derive(Clone)]
pub struct ConnectorConfig {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    context: SslContext,
    verify_server: bool,
    handshake_timeout: Duration,
    debug: bool,
}

impl ConnectorConfig {
    /// A TLS object for one connection to `server_name`, with name checking and SNI.
    pub(crate) fn ssl(&self, server_name: &str) -> Result<Ssl, openssl::error::ErrorStack> {
        let mut ssl = Ssl::new(&self.inner.context)?;
        let is_ip = server_name.parse::<std::net::IpAddr>().is_ok();
        if !is_ip {
            ssl.set_hostname(server_name)?;
        }
        if self.inner.verify_server {
            ssl.set_verify(SslVerifyMode::PEER);
            match server_name.parse::<std::net::IpAddr>() {
                Ok(ip) => ssl.param_mut().set_ip(ip)?,
                Err(_) => ssl.param_mut().set_host(server_name)?,
            }
        } else {
            warn!("connecting to {server_name} without checking its certificate");
            ssl.set_verify(SslVerifyMode::NONE);
        }
        Ok(ssl)
    }

    pub(crate) fn verifies_server(&self) -> bool {
        self.inner.verify_server
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.inner.handshake_timeout
    }

    pub(crate) fn debug(&self) -> bool {
        self.inner.debug
    }

    pub(crate) fn water_marks(&self) -> WaterMarks {
        crate::options::Limits::default().water_marks
    }
}

impl fmt::Debug for ConnectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorConfig")
            .field("verify_server", &self.inner.verify_server)
            .field("handshake_timeout", &self.inner.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Dials TLS servers; each connection becomes a connection actor that sends `handler`
/// the same events a [`Listener`](crate::Listener)'s connections do.
///
/// On these connections [`SslDone::client_cert`](crate::SslDone::client_cert) describes the
/// *server's* certificate, and [`CertRejected`](crate::CertRejected) means the server's
/// certificate (or name) was refused.
#[derive(Debug, Clone, Copy)]
pub struct Connector;

impl Connector {
    /// Connects to `addr` and starts the TLS handshake for `server_name` (the name the
    /// server's certificate must carry: a DNS name or an IP address).
    ///
    /// Resolves once the TCP connection is up and the connection actor runs; the handshake
    /// goes on without blocking, and the handler then gets `SslDone` (or `CertRejected`
    /// and `Disconnect`).
    ///
    /// # Errors
    ///
    /// [`ConnectError`] when the TCP connection cannot be made or TLS cannot be set up.
    pub async fn connect<H: SslHandler>(
        addr: SocketAddr,
        server_name: &str,
        config: &ConnectorConfig,
        handler: Addr<H>,
    ) -> Result<ConnectionId, ConnectError> {
        let tcp = dial(addr, config.handshake_timeout()).await?;
        let id = ConnectionId(NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed));
        let side = Side::Client {
            config: config.clone(),
            server_name: server_name.to_owned(),
        };
        Connection::start(id, tcp, addr, side, handler, None, None)
            .map_err(|source| ConnectError::Tls { addr, source })?;
        Ok(id)
    }

    /// Connects to `addr` in plaintext, for protocols that upgrade with STARTTLS.
    ///
    /// The handler gets [`Connected`] with the handle, talks the protocol's plaintext part,
    /// and calls [`ConnectionHandle::start_tls`](crate::ConnectionHandle::start_tls) once
    /// the server has agreed; the handshake for `server_name` follows.
    ///
    /// # Errors
    ///
    /// [`ConnectError`] when the TCP connection cannot be made.
    pub async fn connect_plain<H: SslHandler + Handler<Connected>>(
        addr: SocketAddr,
        server_name: &str,
        config: &ConnectorConfig,
        handler: Addr<H>,
    ) -> Result<ConnectionId, ConnectError> {
        let tcp = dial(addr, config.handshake_timeout()).await?;
        let id = ConnectionId(NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed));
        let side = Side::Client {
            config: config.clone(),
            server_name: server_name.to_owned(),
        };
        let connected = handler.clone().recipient();
        Connection::start(id, tcp, addr, side, handler, Some(connected), None)
            .map_err(|source| ConnectError::Tls { addr, source })?;
        Ok(id)
    }
}

async fn dial(addr: SocketAddr, limit: Duration) -> Result<TcpStream, ConnectError> {
    // A server whose accept queue is full drops the SYN, and the kernel would retry for
    // minutes; the handshake deadline bounds the TCP connect too.
    let tcp = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(result) => result.map_err(|source| ConnectError::Connect { addr, source })?,
        Err(_) => {
            return Err(ConnectError::Connect {
                addr,
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            })
        }
    };
    if let Err(error) = tcp.set_nodelay(true) {
        log::debug!("cannot turn off Nagle's algorithm for {addr}: {error}");
    }
    Ok(tcp)
}
