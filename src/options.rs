//! TLS options for a listener and the shared TLS context they build.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use log::{error, info, warn};
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVersion};
use openssl::x509::X509;

use crate::crl::{CrlScope, CrlSet, UnusableCrlPolicy};
use crate::error::{ConfigError, FileRole};
use crate::flow::WaterMarks;

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
/// deadline 10 s, at most 2,048 handshakes and 10,000 connections at once, no idle timeout,
/// write queue marks of 256 KiB / 1 MiB / 16 MiB, one worker thread per core, one TLS 1.3
/// session ticket, step logging off.
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
    session_tickets: usize,
    crl_files: Vec<PathBuf>,
    crl_scope: CrlScope,
    unusable_crl: UnusableCrlPolicy,
    limits: Limits,
    min_version: SslVersion,
    max_version: Option<SslVersion>,
    cipher_list: Option<String>,
    ciphersuites: Option<String>,
}

/// Per-listener limits and timeouts, with their defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_handshakes: usize,
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) water_marks: WaterMarks,
    pub(crate) workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_handshakes: 2048,
            max_connections: 10_000,
            idle_timeout: None,
            water_marks: WaterMarks {
                low: 256 * 1024,
                high: 1024 * 1024,
                limit: 16 * 1024 * 1024,
            },
            workers: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

impl Options {
    /// Starts options from the server's certificate file and private key file (both PEM).
    ///
    /// The certificate file may hold the server's certificate followed by the
    /// intermediate CA certificates to send with it. Exactly these are sent: no chain is
    /// built from other certificates on each handshake. This is `SSLify_Options` in the Perl
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
            session_tickets: 1,
            crl_files: Vec::new(),
            crl_scope: CrlScope::Leaf,
            unusable_crl: UnusableCrlPolicy::Refuse,
            limits: Limits::default(),
            min_version: SslVersion::TLS1_2,
            max_version: None,
            cipher_list: None,
            ciphersuites: None,
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

    /// Sets the deadline for the whole handshake; defaults to 10 s.
    ///
    /// It counts from accept, or on a STARTTLS listener from the `start_tls` call, so it
    /// also covers writing the go-ahead (a very large one read slowly can run out the
    /// deadline) and waiting for a handshake slot. The deadline is absolute: a client that
    /// trickles bytes does not extend it.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how many TLS 1.3 session tickets are sent after each full handshake; defaults
    /// to 1.
    ///
    /// One ticket lets a client resume its next connection. OpenSSL's own default is 2,
    /// for clients that open connections in parallel; each ticket costs server time on
    /// every full handshake and a place in the session cache. 0 turns TLS 1.3 resumption
    /// off (TLS 1.2 session-id resumption keeps working).
    pub fn session_tickets(mut self, count: usize) -> Self {
        self.session_tickets = count;
        self
    }

    /// Caps the handshakes in progress at once; defaults to 2,048.
    ///
    /// At the cap the listener stops accepting and the kernel's backlog holds newcomers;
    /// accepting resumes as soon as a handshake ends. Accepting and then dropping would
    /// waste the work of the TCP handshake and tell the client nothing.
    ///
    /// A client that connects and goes silent holds its slot until the handshake deadline,
    /// so a low cap lets a handful of silent clients lock everyone else out for that long.
    /// The default keeps a thousand stalled handshakes from doing so; a silent handshake
    /// costs a few KiB (its read buffer is released while it waits).
    pub fn max_handshakes(mut self, count: usize) -> Self {
        self.limits.max_handshakes = count.max(1);
        self
    }

    /// Caps the open connections (handshaking or established); defaults to 10,000.
    ///
    /// At the cap the listener stops accepting until a connection ends.
    pub fn max_connections(mut self, count: usize) -> Self {
        self.limits.max_connections = count.max(1);
        self
    }

    /// Closes a connection after this long with no bytes either way; off by default.
    ///
    /// It applies once the handshake is done, and to the plaintext part of a STARTTLS
    /// connection (which is closed after 60 s without traffic when no idle timeout is
    /// set). Time in which reading is paused because the handler still holds the
    /// connection's input does not count. The handler gets
    /// [`DisconnectReason::IdleTimedOut`](crate::DisconnectReason::IdleTimedOut).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = Some(timeout);
        self
    }

    /// Sets the write queue's low- and high-water marks and its hard limit, in bytes;
    /// defaults to 256 KiB, 1 MiB and 16 MiB.
    ///
    /// [`put`](crate::ConnectionHandle::put) reports `full` at the high mark and
    /// [`drained`](crate::ConnectionHandle::drained) resolves at the low mark; a put past the
    /// limit ends the connection. With the read side held to 4 unfinished reads of at most
    /// 16 KiB each, a connection buffers at most `limit + 64 KiB` in user space, plus
    /// OpenSSL's record buffers and the kernel's socket buffers.
    pub fn write_water_marks(mut self, low: usize, high: usize, limit: usize) -> Self {
        let high = high.max(1);
        self.limits.water_marks = WaterMarks {
            low: low.min(high - 1),
            high,
            limit: limit.max(high),
        };
        self
    }

    /// Runs connections on this many threads (actix arbiters); defaults to one per core.
    ///
    /// With one, connections run on the listener's own thread. With more, accepted
    /// sockets are dealt to that many new arbiters in turn. Each
    /// connection stays on its worker for life, so its events reach the handler in
    /// order; the handler actor runs wherever it was started.
    pub fn workers(mut self, count: usize) -> Self {
        self.limits.workers = count.max(1);
        self
    }

    /// Sets the oldest protocol version accepted; defaults to TLS 1.2 (1.0 and 1.1 are
    /// off unless asked for here, and then only if OpenSSL's security level allows them).
    pub fn min_version(mut self, version: SslVersion) -> Self {
        self.min_version = version;
        self
    }

    /// Sets the newest protocol version offered; defaults to the newest OpenSSL supports
    /// (TLS 1.3).
    pub fn max_version(mut self, version: SslVersion) -> Self {
        self.max_version = Some(version);
        self
    }

    /// Sets the TLS 1.2 cipher list in OpenSSL's syntax (e.g. `ECDHE+AESGCM`); defaults to
    /// OpenSSL's.
    pub fn cipher_list(mut self, ciphers: impl Into<String>) -> Self {
        self.cipher_list = Some(ciphers.into());
        self
    }

    /// Sets the TLS 1.3 cipher suites, colon-separated (e.g.
    /// `TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256`); defaults to OpenSSL's.
    pub fn ciphersuites(mut self, suites: impl Into<String>) -> Self {
        self.ciphersuites = Some(suites.into());
        self
    }

    /// Checks client certificates against the CRLs in this PEM file during the handshake;
    /// may be given several times, and a file may hold several CRLs.
    ///
    /// The rules are those of [`CrlSet`]. The files are watched: a changed CRL applies
    /// from the next handshake on, and sessions made under the old CRLs no longer resume.
    /// A revoked certificate is refused like any other bad certificate: in
    /// [`Required`](ClientCertMode::Required) mode with [`CertProblem::Revoked`] and alert
    /// 44 certificate_revoked; in [`Optional`](ClientCertMode::Optional) mode the report says
    /// revoked.
    ///
    /// Put every intermediate CA whose CRL is given into the client CA file as well: a CRL
    /// whose issuer is not there is logged with a warning at start-up, since it can only
    /// apply when a client happens to present its issuer.
    ///
    /// [`CertProblem::Revoked`]: crate::CertProblem::Revoked
    pub fn crl_file(mut self, path: impl AsRef<Path>) -> Self {
        self.crl_files.push(path.as_ref().to_path_buf());
        self
    }

    /// Sets which certificates are looked up in CRLs; defaults to the client's own only.
    pub fn crl_scope(mut self, scope: CrlScope) -> Self {
        self.crl_scope = scope;
        self
    }

    /// Sets what happens when a needed CRL is unusable (expired, missing, malformed);
    /// defaults to refusing the client.
    pub fn unusable_crl(mut self, policy: UnusableCrlPolicy) -> Self {
        self.unusable_crl = policy;
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
        let mut chain = read_certificates(&self.certificate, FileRole::Certificate)?;
        let key = read_private_key(&self.private_key)?;
        // `read_certificates` never returns an empty list.
        let leaf = chain.remove(0);
        let matches = leaf.public_key().is_ok_and(|public| public.public_eq(&key));
        if !matches {
            return Err(ConfigError::KeyMismatch {
                certificate: self.certificate.clone(),
                key: self.private_key.clone(),
            });
        }

        let client_cas = match (&self.client_ca, self.client_cert) {
            (None, ClientCertMode::None) => Vec::new(),
            (None, _) => return Err(ConfigError::MissingClientCa),
            (Some(path), _) => read_certificates(path, FileRole::ClientCa)?,
        };

        if self.client_cert == ClientCertMode::None {
            if let Some(path) = &self.client_ca {
                warn!(
                    "client CA file {} is set but no client certificate is requested; \
                     use require_client_cert() or request_client_cert()",
                    path.display()
                );
            }
            if !self.crl_files.is_empty() {
                warn!(
                    "CRL files are set but no client certificate is requested, so none is checked"
                );
            }
        }
        let crls = if self.crl_files.is_empty() {
            None
        } else {
            let set = CrlSet::open(&self.crl_files).map_err(ConfigError::Crl)?;
            warn_unknown_crl_issuers(&set, &client_cas);
            Some(set)
        };

        let parts = Parts {
            leaf,
            chain,
            key,
            client_cas,
            verify_depth: self.verify_depth,
            session_tickets: self.session_tickets,
            min_version: self.min_version,
            max_version: self.max_version,
            cipher_list: self.cipher_list.clone(),
            ciphersuites: self.ciphersuites.clone(),
        };
        let context = parts.context().map_err(|error| match error {
            PartsError::Tls(what, source) => {
                // Name the file behind the setting OpenSSL refused, e.g. a key too small
                // for its security level.
                let file = match what {
                    "server certificate" | "server certificate chain" => {
                        Some((FileRole::Certificate, self.certificate.clone()))
                    }
                    "private key" => Some((FileRole::PrivateKey, self.private_key.clone())),
                    "client CA" | "client CA list" => self
                        .client_ca
                        .clone()
                        .map(|path| (FileRole::ClientCa, path)),
                    _ => None,
                };
                match file {
                    Some((role, path)) => ConfigError::Refused { role, path, source },
                    None => ConfigError::Tls { what, source },
                }
            }
            PartsError::KeyMismatch => ConfigError::KeyMismatch {
                certificate: self.certificate.clone(),
                key: self.private_key.clone(),
            },
        })?;
        let generation = crls.as_ref().map_or(0, CrlSet::generation);

        Ok(TlsConfig {
            inner: Arc::new(Inner {
                parts,
                current: Mutex::new((generation, context)),
                crls,
                crl_scope: self.crl_scope,
                unusable_crl: self.unusable_crl,
                client_cert: self.client_cert,
                debug: self.debug,
                handshake_timeout: self.handshake_timeout,
                limits: self.limits,
            }),
        })
    }
}

/// A built TLS context and the per-connection settings that go with it.
///
/// Cheap to clone; every connection of a listener shares the same OpenSSL context, so the
/// session cache and the parsed certificates exist once. When CRL files are configured
/// and one changes, the context is rebuilt from the parsed certificates: the new one has
/// an empty session cache, so no session made under the old CRLs resumes.
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<Inner>,
}

struct Inner {
    parts: Parts,
    current: Mutex<(u64, SslContext)>,
    crls: Option<CrlSet>,
    crl_scope: CrlScope,
    unusable_crl: UnusableCrlPolicy,
    client_cert: ClientCertMode,
    debug: bool,
    handshake_timeout: Duration,
    limits: Limits,
}

impl TlsConfig {
    /// The OpenSSL context new connections are created from, rebuilt first if the CRL
    /// files changed.
    pub fn context(&self) -> SslContext {
        let inner = &*self.inner;
        let mut current = inner.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(crls) = &inner.crls {
            let generation = crls.generation();
            if generation != current.0 {
                match inner.parts.context() {
                    Ok(context) => {
                        info!("CRLs changed; new TLS context, earlier sessions will not resume");
                        *current = (generation, context);
                    }
                    Err(error) => error!("cannot rebuild TLS context after CRL change: {error}"),
                }
            }
        }
        current.1.clone()
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

    /// The idle timeout of established connections, if set.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.inner.limits.idle_timeout
    }

    /// The cap on handshakes in progress.
    pub fn max_handshakes(&self) -> usize {
        self.inner.limits.max_handshakes
    }

    /// The cap on open connections.
    pub fn max_connections(&self) -> usize {
        self.inner.limits.max_connections
    }

    /// How many threads run connections.
    pub fn workers(&self) -> usize {
        self.inner.limits.workers
    }

    pub(crate) fn water_marks(&self) -> WaterMarks {
        self.inner.limits.water_marks
    }

    /// The CA certificates of the client CA file.
    pub(crate) fn client_cas(&self) -> &[X509] {
        &self.inner.parts.client_cas
    }

    /// The CRLs checked in the handshake, if any.
    pub fn crls(&self) -> Option<&CrlSet> {
        self.inner.crls.as_ref()
    }

    /// Which certificates the handshake looks up in CRLs.
    pub fn crl_scope(&self) -> CrlScope {
        self.inner.crl_scope
    }

    /// What the handshake does when a needed CRL is unusable.
    pub fn unusable_crl(&self) -> UnusableCrlPolicy {
        self.inner.unusable_crl
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("client_cert", &self.inner.client_cert)
            .field("debug", &self.inner.debug)
            .field("handshake_timeout", &self.inner.handshake_timeout)
            .field("crls", &self.inner.crls)
            .finish_non_exhaustive()
    }
}

/// Everything parsed from the files, kept so that the context can be built again.
struct Parts {
    leaf: X509,
    chain: Vec<X509>,
    key: PKey<Private>,
    client_cas: Vec<X509>,
    verify_depth: u32,
    session_tickets: usize,
    min_version: SslVersion,
    max_version: Option<SslVersion>,
    cipher_list: Option<String>,
    ciphersuites: Option<String>,
}

#[derive(Debug)]
enum PartsError {
    Tls(&'static str, ErrorStack),
    KeyMismatch,
}

impl std::fmt::Display for PartsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartsError::Tls(what, source) => write!(f, "cannot set {what}: {source}"),
            PartsError::KeyMismatch => f.write_str("private key does not match certificate"),
        }
    }
}

impl Parts {
    fn context(&self) -> Result<SslContext, PartsError> {
        let tls = |what| move |source| PartsError::Tls(what, source);

        let mut builder =
            SslContextBuilder::new(SslMethod::tls_server()).map_err(tls("context"))?;
        builder
            .set_min_proto_version(Some(self.min_version))
            .map_err(tls("minimum protocol version"))?;
        builder
            .set_max_proto_version(self.max_version)
            .map_err(tls("maximum protocol version"))?;
        if let Some(list) = &self.cipher_list {
            builder.set_cipher_list(list).map_err(tls("cipher list"))?;
        }
        if let Some(suites) = &self.ciphersuites {
            builder
                .set_ciphersuites(suites)
                .map_err(tls("TLS 1.3 cipher suites"))?;
        }
        // Tickets are stateful (NO_TICKET makes TLS 1.3 tickets refer to the server's
        // session cache): a resumed session then still has the client's whole chain, and a
        // new context after a CRL change forgets every earlier session.
        builder.set_options(
            SslOptions::NO_RENEGOTIATION
                | SslOptions::CIPHER_SERVER_PREFERENCE
                | SslOptions::NO_COMPRESSION
                | SslOptions::NO_TICKET,
        );
        builder.set_mode(
            SslMode::ENABLE_PARTIAL_WRITE
                | SslMode::ACCEPT_MOVING_WRITE_BUFFER
                | SslMode::RELEASE_BUFFERS
                // The chain sent is the one in the certificate file; OpenSSL would
                // otherwise try to build one from the CA store on every handshake.
                | SslMode::NO_AUTO_CHAIN,
        );
        // Without an id context OpenSSL refuses to resume sessions of clients that
        // presented a certificate.
        builder
            .set_session_id_context(b"sslify")
            .map_err(tls("session id context"))?;
        builder
            .set_num_tickets(self.session_tickets)
            .map_err(tls("session ticket count"))?;

        builder
            .set_certificate(&self.leaf)
            .map_err(tls("server certificate"))?;
        for extra in &self.chain {
            builder
                .add_extra_chain_cert(extra.clone())
                .map_err(tls("server certificate chain"))?;
        }
        builder
            .set_private_key(&self.key)
            .map_err(tls("private key"))?;
        builder
            .check_private_key()
            .map_err(|_| PartsError::KeyMismatch)?;

        for ca in &self.client_cas {
            builder
                .cert_store_mut()
                .add_cert(ca.clone())
                .map_err(tls("client CA"))?;
            builder.add_client_ca(ca).map_err(tls("client CA list"))?;
        }
        builder.set_verify_depth(self.verify_depth);
        Ok(builder.build())
    }
}

fn warn_unknown_crl_issuers(crls: &CrlSet, cas: &[X509]) {
    let known: Vec<Vec<u8>> = cas
        .iter()
        .filter_map(|ca| ca.subject_name().to_der().ok())
        .collect();
    for (file, issuer, issuer_der) in crls.issuers() {
        if !known.contains(&issuer_der) {
            warn!(
                "a CRL in {} is issued by {issuer}, which is not in the client CA file; \
                 it applies only to clients that present that CA",
                file.display()
            );
        }
    }
}

fn read_file(path: &Path, role: FileRole) -> Result<Vec<u8>, ConfigError> {
    fs::read(path).map_err(|source| ConfigError::Read {
        role,
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn read_certificates(path: &Path, role: FileRole) -> Result<Vec<X509>, ConfigError> {
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

pub(crate) fn read_private_key(path: &Path) -> Result<PKey<Private>, ConfigError> {
    let role = FileRole::PrivateKey;
    let pem = read_file(path, role)?;
    if !contains(&pem, b"PRIVATE KEY-----") {
        return Err(ConfigError::NoPem {
            role,
            path: path.to_path_buf(),
        });
    }
    if contains(&pem, b"ENCRYPTED") {
        return Err(ConfigError::EncryptedKey {
            path: path.to_path_buf(),
        });
    }
    // The callback refuses to give a pass phrase, so OpenSSL never prompts on a terminal.
    PKey::private_key_from_pem_callback(&pem, |_| Ok(0)).map_err(|source| ConfigError::Parse {
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
