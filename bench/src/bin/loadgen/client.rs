//! The TLS client every mode uses: rustls with ring, TLS 1.3 only, X25519 only, a client
//! certificate, no resumption. It counts the session tickets servers send.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls12Resumption,
    Tls13ClientSessionValue,
};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, NamedGroup, RootCertStore};
use sslify_bench::REPLY;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Where the client's certificates come from.
pub struct Files {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub server_name: String,
}

pub struct Client {
    addr: SocketAddr,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
    connector: TlsConnector,
    tickets: Arc<TicketCounter>,
}

impl Client {
    pub fn new(addr: SocketAddr, files: &Files) -> Result<Client, String> {
        let mut roots = RootCertStore::empty();
        let cas =
            CertificateDer::pem_file_iter(&files.ca).map_err(|e| format!("{}: {e}", files.ca))?;
        for ca in cas {
            let ca = ca.map_err(|e| format!("{}: {e}", files.ca))?;
            roots.add(ca).map_err(|e| format!("{}: {e}", files.ca))?;
        }
        let chain = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", files.cert))?;
        let key =
            PrivateKeyDer::from_pem_file(&files.key).map_err(|e| format!("{}: {e}", files.key))?;

        let provider = CryptoProvider {
            kx_groups: vec![ring::kx_group::X25519],
            ..ring::default_provider()
        };
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS client: {e}"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client certificate {}: {e}", files.cert))?;
        let tickets = Arc::new(TicketCounter::default());
        config.resumption = Resumption::store(tickets.clone() as Arc<dyn ClientSessionStore>)
            .tls12_resumption(Tls12Resumption::Disabled);
        let config = Arc::new(config);
        let name = ServerName::try_from(files.server_name.clone())
            .map_err(|e| format!("server name {}: {e}", files.server_name))?;

        Ok(Client {
            addr,
            name,
            connector: TlsConnector::from(Arc::clone(&config)),
            config,
            tickets,
        })
    }

    /// A TCP connection to the server, nothing sent.
    pub async fn tcp(&self) -> io::Result<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    /// A TCP connection and a full TLS handshake.
    pub async fn connect(&self) -> io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp().await?;
        self.connector.connect(self.name.clone(), tcp).await
    }

    /// One full handshake and the server's reply line; returns how long it took from the
    /// start of the TCP connect to the end of the line, then closes.
    pub async fn exchange(&self) -> io::Result<Duration> {
        let start = Instant::now();
        let mut tls = self.connect().await?;
        let line = read_line(&mut tls).await?;
        let took = start.elapsed();
        if !line.contains(REPLY) {
            return Err(io::Error::other(format!("unexpected reply {line:?}")));
        }
        // close_notify and FIN; the server may already have closed, which is fine.
        let _ = tls.shutdown().await;
        Ok(took)
    }

    /// The bytes of a ClientHello, to send on a connection that then goes silent.
    pub fn client_hello(&self) -> Result<Vec<u8>, rustls::Error> {
        let mut connection = ClientConnection::new(Arc::clone(&self.config), self.name.clone())?;
        let mut hello = Vec::new();
        while connection.wants_write() {
            connection
                .write_tls(&mut hello)
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        }
        Ok(hello)
    }

    /// Session tickets received so far, over all connections.
    pub fn tickets(&self) -> u64 {
        self.tickets.received.load(Ordering::Relaxed)
    }
}

/// Reads up to and without the first newline.
pub async fn read_line<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<String> {
    let mut line = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the reply line",
            ));
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() > 4096 {
            return Err(io::Error::other("reply line longer than 4 KiB"));
        }
    }
}

/// A session store that keeps nothing, so no connection resumes, and counts the TLS 1.3
/// tickets servers send (to check that the servers compared send the same number).
#[derive(Debug, Default)]
struct TicketCounter {
    received: AtomicU64,
}

impl ClientSessionStore for TicketCounter {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, _: ServerName<'static>, _: Tls13ClientSessionValue) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        None
    }
}

/// Failed attempts, grouped by what went wrong.
#[derive(Debug, Default)]
pub struct Failures {
    pub count: u64,
    kinds: BTreeMap<String, u64>,
}

impl Failures {
    pub fn add(&mut self, what: impl fmt::Display) {
        self.count += 1;
        *self.kinds.entry(what.to_string()).or_default() += 1;
    }

    pub fn merge(&mut self, other: Failures) {
        self.count += other.count;
        for (kind, n) in other.kinds {
            *self.kinds.entry(kind).or_default() += n;
        }
    }
}

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.count)?;
        if self.count > 0 {
            let mut kinds: Vec<_> = self.kinds.iter().collect();
            kinds.sort_by(|a, b| b.1.cmp(a.1));
            let shown: Vec<String> = kinds
                .iter()
                .take(3)
                .map(|(kind, n)| format!("{n}× {kind}"))
                .collect();
            write!(f, " ({})", shown.join("; "))?;
        }
        Ok(())
    }
}
