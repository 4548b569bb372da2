//! Shared pieces of the integration tests: a server running in its own thread with a
//! recording handler, and blocking TLS clients built on the openssl crate.

#![allow(dead_code)]

pub mod crl;
pub mod served;
pub mod starttls;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use actix::prelude::*;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslStream, SslVerifyMode, SslVersion};
use sslify::{
    CertProblem, CertRejected, ClientCertReport, ClientInput, ConnectionId, Disconnect,
    DisconnectReason, Listener, Options, SslDone,
};

/// Path of a file in the test PKI.
pub fn cert(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

/// Server options with the EC server certificate and the test root as client CA.
pub fn options() -> Options {
    Options::new(cert("server-ec.pem"), cert("server-ec.key")).client_ca_file(cert("client-ca.pem"))
}

/// One event as the handler saw it.
#[derive(Debug, Clone)]
pub enum Event {
    SslDone {
        report: ClientCertReport,
        protocol: String,
        resumed: bool,
    },
    Input {
        data: Vec<u8>,
        tls: bool,
    },
    CertRejected {
        problem: CertProblem,
        report: ClientCertReport,
    },
    Disconnect(DisconnectReason),
}

/// What the recording handler does when a handshake completes.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Nothing: wait for input, echo it.
    Echo,
    /// Put the verdict line of the advanced example, then close after the delay.
    Verdict { close_after: Duration },
    /// Put `bytes` bytes (a repeating pattern), then close immediately.
    Bulk { bytes: usize },
}

/// The events by connection id, and the condition variable that signals a new one.
type JournalState = (Mutex<BTreeMap<u64, Vec<Event>>>, Condvar);

/// Events per connection, in the order the handler received them.
#[derive(Clone, Default)]
pub struct Journal {
    inner: Arc<JournalState>,
}

impl Journal {
    fn push(&self, id: ConnectionId, event: Event) {
        let (lock, cvar) = &*self.inner;
        lock.lock().unwrap().entry(id.0).or_default().push(event);
        cvar.notify_all();
    }

    /// A copy of all events so far.
    pub fn snapshot(&self) -> BTreeMap<u64, Vec<Event>> {
        self.inner.0.lock().unwrap().clone()
    }

    /// Waits until `count` connections have ended (seen their `Disconnect`).
    pub fn wait_disconnects(&self, count: usize, timeout: Duration) -> BTreeMap<u64, Vec<Event>> {
        let (lock, cvar) = &*self.inner;
        let deadline = Instant::now() + timeout;
        let mut map = lock.lock().unwrap();
        loop {
            let ended = map
                .values()
                .filter(|events| events.iter().any(|e| matches!(e, Event::Disconnect(_))))
                .count();
            if ended >= count {
                return map.clone();
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "only {ended} of {count} connections ended: {map:#?}"
            );
            map = cvar.wait_timeout(map, deadline - now).unwrap().0;
        }
    }
}

/// The verdict line the advanced example sends.
pub fn verdict(id: ConnectionId, report: &ClientCertReport) -> String {
    let text = if !report.presented {
        "NoClientCertExists"
    } else if !report.valid {
        "ClientCertInvalid"
    } else {
        "Yeah! You're authenticated!"
    };
    format!("[{id}] {text}\n")
}

struct Recorder {
    journal: Journal,
    reply: Reply,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<SslDone> for Recorder {
    type Result = ();
    fn handle(&mut self, done: SslDone, ctx: &mut Context<Self>) {
        self.journal.push(
            done.id,
            Event::SslDone {
                report: done.client_cert.clone(),
                protocol: done.protocol.to_owned(),
                resumed: done.resumed,
            },
        );
        match self.reply {
            Reply::Echo => {}
            Reply::Verdict { close_after } => {
                done.handle.put(verdict(done.id, &done.client_cert));
                let handle = done.handle.clone();
                ctx.run_later(close_after, move |_, _| handle.close());
            }
            Reply::Bulk { bytes } => {
                // Several puts, so that the queue holds more than one buffer.
                let mut left = bytes;
                let mut offset = 0usize;
                while left > 0 {
                    let n = left.min(1 << 20);
                    let chunk: Vec<u8> = (offset..offset + n).map(pattern_byte).collect();
                    done.handle.put(chunk);
                    offset += n;
                    left -= n;
                }
                done.handle.close();
            }
        }
    }
}

impl Handler<ClientInput> for Recorder {
    type Result = ();
    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        self.journal.push(
            input.id,
            Event::Input {
                data: input.data.to_vec(),
                tls: input.tls,
            },
        );
        if let Reply::Echo = self.reply {
            input.handle.put(input.data);
        }
    }
}

impl Handler<CertRejected> for Recorder {
    type Result = ();
    fn handle(&mut self, rejected: CertRejected, _: &mut Context<Self>) {
        self.journal.push(
            rejected.id,
            Event::CertRejected {
                problem: rejected.problem,
                report: rejected.report,
            },
        );
    }
}

impl Handler<Disconnect> for Recorder {
    type Result = ();
    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        self.journal.push(gone.id, Event::Disconnect(gone.reason));
    }
}

/// The byte at `offset` of the bulk pattern.
pub fn pattern_byte(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// A server running in its own thread with its own actix system.
pub struct TestServer {
    pub addr: SocketAddr,
    pub journal: Journal,
    system: actix::System,
    thread: Option<thread::JoinHandle<()>>,
}

impl TestServer {
    /// Builds `options` and serves with a recording handler that answers as `reply` says.
    pub fn start(options: Options, reply: Reply) -> TestServer {
        let journal = Journal::default();
        let (tx, rx) = mpsc::channel();
        let recorder_journal = journal.clone();
        let thread = thread::spawn(move || {
            let system = actix::System::new();
            system.block_on(async move {
                let config = options.build().expect("test options build");
                let handler = Recorder {
                    journal: recorder_journal,
                    reply,
                }
                .start();
                let listener =
                    Listener::bind("127.0.0.1:0", config, handler).expect("bind loopback");
                tx.send((listener.local_addr(), actix::System::current()))
                    .unwrap();
            });
            system.run().unwrap();
        });
        let (addr, system) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server started");
        TestServer {
            addr,
            journal,
            system,
            thread: Some(thread),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client identity from the test PKI: `Some("valid")` uses `client-valid.pem`.
pub fn connector(client: Option<&str>, version: Option<SslVersion>) -> SslConnector {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_ca_file(cert("ca.pem")).unwrap();
    if let Some(name) = client {
        builder
            .set_certificate_chain_file(cert(&format!("client-{name}.pem")))
            .unwrap();
        builder
            .set_private_key_file(cert(&format!("client-{name}.key")), SslFiletype::PEM)
            .unwrap();
    }
    if let Some(version) = version {
        builder.set_min_proto_version(Some(version)).unwrap();
        builder.set_max_proto_version(Some(version)).unwrap();
    }
    builder.set_verify(SslVerifyMode::PEER);
    builder.build()
}

/// Connects and completes the client side of the handshake.
pub fn connect(addr: SocketAddr, client: Option<&str>) -> Result<SslStream<TcpStream>, String> {
    connect_with(&connector(client, None), addr)
}

pub fn connect_with(
    connector: &SslConnector,
    addr: SocketAddr,
) -> Result<SslStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    connector
        .connect("localhost", tcp)
        .map_err(|e| e.to_string())
}

/// Reads until the server closes; returns the bytes and how the stream ended.
pub fn read_to_end(stream: &mut SslStream<TcpStream>) -> (Vec<u8>, Result<(), String>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(error_text(&e))),
        }
    }
}

/// OpenSSL's text for an error that came through `std::io`.
pub fn error_text(error: &io::Error) -> String {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<openssl::ssl::Error>())
    {
        Some(ssl) => format!("{ssl} {:?}", ssl.ssl_error()),
        None => error.to_string(),
    }
}

/// Writes a line and flushes.
pub fn send(stream: &mut SslStream<TcpStream>, data: &[u8]) -> io::Result<()> {
    stream.write_all(data)?;
    stream.flush()
}

/// An in-memory transport that keeps what the client writes and never has anything to read.
#[derive(Debug, Default)]
struct Capture {
    written: Vec<u8>,
}

impl Read for Capture {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bytes of a real ClientHello from the openssl crate's client, as one whole record.
pub fn client_hello() -> Vec<u8> {
    let ssl = connector(None, None)
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    let hello = match ssl.connect(Capture::default()) {
        Err(openssl::ssl::HandshakeError::WouldBlock(mid)) => mid.get_ref().written.clone(),
        Err(other) => panic!("client handshake did not stop for input: {other}"),
        Ok(_) => panic!("client handshake finished without a server"),
    };
    // One handshake record: type 22, then a length that covers the rest.
    assert_eq!(hello[0], 22, "not a handshake record: {hello:?}");
    let length = u16::from_be_bytes([hello[3], hello[4]]) as usize;
    assert_eq!(
        hello.len(),
        5 + length,
        "ClientHello is not one whole record"
    );
    hello
}
