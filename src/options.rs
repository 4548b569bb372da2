//! TLS options for a listener and the shared TLS context they build.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVersion};
use openssl::x509::X509;

use crate::error::{ConfigError, FileRole};

/// How a listener treats client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCertMode {
    /// No certificate is requested (the default).
    #[default]
    None,
    /// A certificate is required and must verify; otherwise the handshake fails, the handler
    /// gets [`CertRejected`](crate::CertRejected) and then [`Disconnect`](crate::Disconnect).
    ///
    /// This is the Perl module's `clientcertrequest`.
    Required,
    /// A certificate is requested; the handshake completes whatever the client sends and
    /// [`SslDone`](crate::SslDone) carries the verdict for the handler to act on.
    ///
    /// This is the Perl module's `clientcertrequest` together with `noblockbadclientcert`.
    Optional,
}

/// Settings for the TLS side of a listener, turned into a [`TlsConfig`] by
/// [`build`](Options::build).
///
/// The defaults: TLS 1.2 and 1.3, no client certificate, verify depth 5, handshake
/// deadline 10 s, step logging off.
///
/// # Examples
///
/// ```no_run
/// use sslify::Options;
///
/// let config = Options::new("certs/server-ec.pem", "certs/server-ec.key")
///     .client_ca_file("certs/client-ca.pem")
///     .require_client_cert()
///     .build()?;
/// # Ok::<(), sslify::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    certificate: PathBuf,
    private_key: PathBuf,
    client_ca: Option<PathBuf>,
    client_cert: ClientCertMode,
    verify_depth: u32,
    debug: bool,
    handshake_timeout: Duration,
    session_tickets: Option<usize>,
}

impl Options {
    /// Starts options from the server's certificate file and private key file (both PEM).
    ///
    /// The certificate file may hold the server's certificate followed by the
    /// intermediate CA certificates to send with it. This is `SSLify_Options` in the Perl
    /// module, with the arguments in certificate-then-key order.
    pub fn new(certificate: impl AsRef<Path>, private_key: impl AsRef<Path>) -> Self {
        Options {
            certificate: certificate.as_ref().to_path_buf(),
            private_key: private_key.as_ref().to_path_buf(),
            client_ca: None,
            client_cert: ClientCertMode::None,
            verify_depth: 5,
            debug: false,
            handshake_timeout: Duration::from_secs(10),
            session_tickets: None,
        }
    }

    /// Sets the PEM file of CA certificates that client certificates must chain to.
    ///
    /// Their subjects are also sent to clients as the list of acceptable CAs. This is
    /// `SSLify_Options_NonBlock_ClientCert` in the Perl module.
    pub fn client_ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.client_ca = Some(path.as_ref().to_path_buf());
        self
    }

    /// Sets how client certificates are treated; see [`ClientCertMode`].
    pub fn client_cert(mut self, mode: ClientCertMode) -> Self {
        self.client_cert = mode;
        self
    }

    /// Requires a valid client certificate, refusing the handshake otherwise.
    pub fn require_client_cert(self) -> Self {
        self.client_cert(ClientCertMode::Required)
    }

    /// Requests a client certificate but lets the handler decide what a bad or missing one
    /// means.
    pub fn request_client_cert(self) -> Self {
        self.client_cert(ClientCertMode::Optional)
    }

    /// Sets the longest certificate chain accepted from a client; defaults to 5.
    pub fn verify_depth(mut self, depth: u32) -> Self {
        self.verify_depth = depth;
        self
    }

    /// Logs every handshake step of every connection at debug level instead of trace.
    ///
    /// Steps are want-read, want-write, done (with protocol, cipher and verdict) and
    /// failed (with OpenSSL's reason), each prefixed with the connection id. The Perl
    /// module printed the same to stdout without an id; here it goes through `log`.
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }

    /// Sets the deadline for the whole handshake, counted from accept; defaults to 10 s.
    ///
    /// The deadline is absolute: a client that trickles bytes does not extend it.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how many TLS 1.3 session tickets are sent after each full handshake.
    ///
    /// OpenSSL sends 2 by default. Each ticket costs server time per handshake; 0 turns
    /// ticket-based resumption off (TLS 1.2 session-id resumption keeps working).
    pub fn session_tickets(mut self, count: usize) -> Self {
        self.session_tickets = Some(count);
        self
    }

    /// Reads the files and builds the TLS context shared by all connections.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the file and the reason when a file is missing or
    /// unreadable, holds no PEM data of the right kind, cannot be parsed, or when the key
    /// does not match the certificate.
    pub fn build(&self) -> Result<TlsConfig, ConfigError> {
        let chain = read_certificates(&self.certificate, FileRole::Certificate)?;
        let key = read_private_key(&self.private_key)?;

        let mut builder =
            SslContextBuilder::new(SslMethod::tls_server()).map_err(tls("context"))?;
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(tls("minimum protocol version"))?;
        builder.set_options(
            SslOptions::NO_RENEGOTIATION
                | SslOptions::CIPHER_SERVER_PREFERENCE
                | SslOptions::NO_COMPRESSION,
        );
        builder.set_mode(
            SslMode::ENABLE_PARTIAL_WRITE
                | SslMode::ACCEPT_MOVING_WRITE_BUFFER
                | SslMode::RELEASE_BUFFERS,
        );
        // Sessions are cached per context; without an id context OpenSSL refuses to resume
        // sessions of clients that presented a certificate.
        builder
            .set_session_id_context(b"sslify")
            .map_err(tls("session id context"))?;
        if let Some(count) = self.session_tickets {
            builder
                .set_num_tickets(count)
                .map_err(tls("session ticket count"))?;
        }

        let mut chain = chain.into_iter();
        // `read_certificates` never returns an empty list.
        let leaf = chain.next().ok_or_else(|| ConfigError::NoPem {
            role: FileRole::Certificate,
            path: self.certificate.clone(),
        })?;
        builder
            .set_certificate(&leaf)
            .map_err(tls("server certificate"))?;
        for extra in chain {
            builder
                .add_extra_chain_cert(extra)
                .map_err(tls("server certificate chain"))?;
        }
        builder.set_private_key(&key).map_err(tls("private key"))?;
        builder
            .check_private_key()
            .map_err(|_| ConfigError::KeyMismatch {
                certificate: self.certificate.clone(),
                key: self.private_key.clone(),
            })?;

        match (&self.client_ca, self.client_cert) {
            (None, ClientCertMode::None) => {}
            (None, _) => return Err(ConfigError::MissingClientCa),
            (Some(path), _) => {
                let cas = read_certificates(path, FileRole::ClientCa)?;
                for ca in &cas {
                    builder
                        .cert_store_mut()
                        .add_cert(ca.clone())
                        .map_err(tls("client CA"))?;
                    builder.add_client_ca(ca).map_err(tls("client CA list"))?;
                }
            }
        }
        builder.set_verify_depth(self.verify_depth);

        Ok(TlsConfig {
            inner: Arc::new(Inner {
                context: builder.build(),
                client_cert: self.client_cert,
                debug: self.debug,
                handshake_timeout: self.handshake_timeout,
            }),
        })
    }
}

/// A built TLS context and the per-connection settings that go with it.
///
/// Cheap to clone; every connection of a listener shares the same OpenSSL context, so the
/// session cache and the parsed certificates exist once.
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<Inner>,
}

struct Inner {
    context: SslContext,
    client_cert: ClientCertMode,
    debug: bool,
    handshake_timeout: Duration,
}

impl TlsConfig {
    /// The OpenSSL context every connection is created from.
    pub fn context(&self) -> &SslContext {
        &self.inner.context
    }

    /// The client-certificate mode.
    pub fn client_cert_mode(&self) -> ClientCertMode {
        self.inner.client_cert
    }

    /// Whether handshake steps are logged at debug level.
    pub fn debug(&self) -> bool {
        self.inner.debug
    }

    /// The deadline for a whole handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.inner.handshake_timeout
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("client_cert", &self.inner.client_cert)
            .field("debug", &self.inner.debug)
            .field("handshake_timeout", &self.inner.handshake_timeout)
            .finish_non_exhaustive()
    }
}

fn tls(what: &'static str) -> impl Fn(openssl::error::ErrorStack) -> ConfigError {
    move |source| ConfigError::Tls { what, source }
}

fn read_file(path: &Path, role: FileRole) -> Result<Vec<u8>, ConfigError> {
    fs::read(path).map_err(|source| ConfigError::Read {
        role,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certificates(path: &Path, role: FileRole) -> Result<Vec<X509>, ConfigError> {
    let pem = read_file(path, role)?;
    if !contains(&pem, b"-----BEGIN CERTIFICATE-----")
        && !contains(&pem, b"-----BEGIN TRUSTED CERTIFICATE-----")
    {
        return Err(ConfigError::NoPem {
            role,
            path: path.to_path_buf(),
        });
    }
    let certs = X509::stack_from_pem(&pem).map_err(|source| ConfigError::Parse {
        role,
        path: path.to_path_buf(),
        source,
    })?;
    if certs.is_empty() {
        return Err(ConfigError::NoPem {
            role,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PKey<Private>, ConfigError> {
    let role = FileRole::PrivateKey;
    let pem = read_file(path, role)?;
    if !contains(&pem, b"PRIVATE KEY-----") {
        return Err(ConfigError::NoPem {
            role,
            path: path.to_path_buf(),
        });
    }
    PKey::private_key_from_pem(&pem).map_err(|source| ConfigError::Parse {
        role,
        path: path.to_path_buf(),
        source,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
