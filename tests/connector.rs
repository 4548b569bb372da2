//! The client side against real sslify servers on loopback: server-certificate and name
//! checks, client certificates as the server's advanced check sees them, STARTTLS with
//! sslify on both ends, and connection errors.

mod support;

#[path = "../examples/proto/mod.rs"]
mod proto;

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::channel::oneshot;
use sslify::{
    CertProblem, CertRejected, ClientCertReport, ClientInput, ConnectError, Connected,
    ConnectionHandle, Connector, ConnectorConfig, ConnectorOptions, Disconnect, DisconnectReason,
    SslDone, StartTlsError,
};
use support::starttls::PlainFirstServer;
use support::{cert, Event, Reply, TestServer};

use crate::proto::{LineServer, Lines, Note, Smtp};

/// Upper bound for a connection to end.
const WAIT: Duration = Duration::from_secs(10);

/// One event as the client's handler saw it.
#[derive(Debug, Clone)]
enum Got {
    Connected,
    SslDone {
        /// The server's certificate, as judged by the client.
        report: ClientCertReport,
    },
    /// One line received, and whether it came over TLS.
    Line {
        text: String,
        tls: bool,
    },
    StartTls(Result<(), StartTlsError>),
    CertRejected {
        problem: CertProblem,
        report: ClientCertReport,
    },
    Disconnect(DisconnectReason),
}

/// What the client says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Nothing: reads what the server says until it closes.
    Listen,
    /// SMTP: EHLO, STARTTLS, EHLO over TLS, QUIT.
    Smtp,
}

/// The client's handler: records events, speaks its script, and hands the record to the
/// test on `Disconnect`.
struct ClientProbe {
    script: Script,
    got: Vec<Got>,
    lines: Lines,
    /// QUIT was sent; the server's close follows.
    quit: bool,
    done: Option<oneshot::Sender<Vec<Got>>>,
}

impl ClientProbe {
    fn on_line(&mut self, line: &str, tls: bool, end: usize, input: &ClientInput) -> bool {
        self.got.push(Got::Line {
            text: line.to_owned(),
            tls,
        });
        if self.script != Script::Smtp || self.quit {
            return false;
        }
        let handle = &input.handle;
        let last = line.as_bytes().get(3) != Some(&b'-');
        match (&line[..line.len().min(4)], tls) {
            ("220 ", false) if line.starts_with("220 Ready") => {
                let result = input.start_tls(end);
                self.got.push(Got::StartTls(result));
                return true;
            }
            ("220 ", false) => say(handle, "EHLO client.example"),
            ("250 ", false) if last => say(handle, "STARTTLS"),
            ("250 ", true) if last => {
                say(handle, "QUIT");
                self.quit = true;
            }
            _ => {}
        }
        false
    }
}

fn say(handle: &ConnectionHandle, line: &str) {
    handle.put(format!("{line}\r\n"));
}

impl Actor for ClientProbe {
    type Context = Context<Self>;
}

impl Handler<Connected> for ClientProbe {
    type Result = ();

    fn handle(&mut self, _: Connected, _: &mut Context<Self>) {
        self.got.push(Got::Connected);
    }
}

impl Handler<SslDone> for ClientProbe {
    type Result = ();

    fn handle(&mut self, done: SslDone, _: &mut Context<Self>) {
        self.got.push(Got::SslDone {
            report: done.client_cert,
        });
        self.lines.clear();
        if self.script == Script::Smtp {
            say(&done.handle, "EHLO client.example");
        }
    }
}

impl Handler<ClientInput> for ClientProbe {
    type Result = ();

    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        let lines = self
            .lines
            .push(&input.data)
            .expect("server lines are short");
        for (line, end) in lines {
            if self.on_line(&line, input.tls, end, &input) {
                self.lines.clear();
                break;
            }
        }
    }
}

impl Handler<CertRejected> for ClientProbe {
    type Result = ();

    fn handle(&mut self, rejected: CertRejected, _: &mut Context<Self>) {
        self.got.push(Got::CertRejected {
            problem: rejected.problem,
            report: rejected.report,
        });
    }
}

impl Handler<Disconnect> for ClientProbe {
    type Result = ();

    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        self.got.push(Got::Disconnect(gone.reason));
        if let Some(done) = self.done.take() {
            let _ = done.send(std::mem::take(&mut self.got));
        }
    }
}

/// Dials `addr` for `server_name` in a fresh actix system and returns the client's
/// events once the connection has ended; `plain` dials with `connect_plain`.
fn dial(
    addr: SocketAddr,
    server_name: &str,
    config: &ConnectorConfig,
    plain: bool,
    script: Script,
) -> Result<Vec<Got>, ConnectError> {
    let system = actix::System::new();
    let result = system.block_on(async move {
        let (tx, rx) = oneshot::channel();
        let probe = ClientProbe {
            script,
            got: Vec::new(),
            lines: Lines::default(),
            quit: false,
            done: Some(tx),
        }
        .start();
        if plain {
            Connector::connect_plain(addr, server_name, config, probe).await?;
        } else {
            Connector::connect(addr, server_name, config, probe).await?;
        }
        match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(got)) => Ok(got),
            Ok(Err(_)) => panic!("the client handler went away without a Disconnect"),
            Err(_) => panic!("the client connection did not end within {WAIT:?}"),
        }
    });
    result
}

/// Trusts the test root, with the valid client certificate when `with_cert`.
fn client_config(with_cert: bool) -> ConnectorConfig {
    let options = ConnectorOptions::new().ca_file(cert("ca.pem"));
    let options = if with_cert {
        options.client_cert(cert("client-valid.pem"), cert("client-valid.key"))
    } else {
        options
    };
    options.build().expect("client options build")
}

/// A TLS-first server running the advanced example's check (optional client
/// certificate, the verdict line, then close).
fn verdict_server() -> TestServer {
    TestServer::start(
        support::options().request_client_cert(),
        Reply::Verdict {
            close_after: Duration::from_millis(50),
        },
    )
}

/// The text received over TLS, line by line.
fn tls_lines(got: &[Got]) -> Vec<String> {
    got.iter()
        .filter_map(|g| match g {
            Got::Line { text, tls: true } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn plain_lines(got: &[Got]) -> Vec<String> {
    got.iter()
        .filter_map(|g| match g {
            Got::Line { text, tls: false } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn last_reason(got: &[Got]) -> DisconnectReason {
    let reasons: Vec<&DisconnectReason> = got
        .iter()
        .filter_map(|g| match g {
            Got::Disconnect(reason) => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1, "exactly one Disconnect: {got:#?}");
    assert!(
        matches!(got.last(), Some(Got::Disconnect(_))),
        "Disconnect comes last: {got:#?}"
    );
    reasons[0].clone()
}

fn server_report(got: &[Got]) -> ClientCertReport {
    got.iter()
        .find_map(|g| match g {
            Got::SslDone { report } => Some(report.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no SslDone: {got:#?}"))
}

/// The server's record of its `id`-th connection once it has ended.
fn server_events(server: &TestServer, id: u64) -> Vec<Event> {
    server
        .journal
        .wait_disconnects(id as usize, WAIT)
        .remove(&id)
        .expect("the server saw the connection")
}

#[test]
fn passes_the_advanced_check_with_a_client_certificate() {
    let server = verdict_server();
    let got = dial(
        server.addr,
        "localhost",
        &client_config(true),
        false,
        Script::Listen,
    )
    .expect("connect");

    let report = server_report(&got);
    assert!(report.presented && report.valid, "{report:#?}");
    let leaf = report.leaf().expect("the server's certificate");
    assert!(leaf.subject.ends_with("CN=localhost"), "{}", leaf.subject);
    assert_eq!(tls_lines(&got), ["[1] Yeah! You're authenticated!"]);
    assert_eq!(last_reason(&got), DisconnectReason::PeerClosed);

    let events = server_events(&server, 1);
    assert!(
        matches!(&events[0], Event::SslDone { report, .. } if report.valid),
        "{events:#?}"
    );
}

#[test]
fn gets_no_client_cert_exists_without_a_client_certificate() {
    let server = verdict_server();
    let got = dial(
        server.addr,
        "localhost",
        &client_config(false),
        false,
        Script::Listen,
    )
    .expect("connect");

    assert!(server_report(&got).valid);
    assert_eq!(tls_lines(&got), ["[1] NoClientCertExists"]);
    assert_eq!(last_reason(&got), DisconnectReason::PeerClosed);
}

#[test]
fn checks_an_ip_address_as_the_server_name() {
    // The server certificate carries 127.0.0.1 but not 127.0.0.2.
    let server = verdict_server();
    let got = dial(
        server.addr,
        "127.0.0.1",
        &client_config(false),
        false,
        Script::Listen,
    )
    .expect("connect");
    assert!(server_report(&got).valid, "{got:#?}");
    assert_eq!(last_reason(&got), DisconnectReason::PeerClosed);

    let got = dial(
        server.addr,
        "127.0.0.2",
        &client_config(false),
        false,
        Script::Listen,
    )
    .expect("connect");
    assert!(
        matches!(&got[0], Got::CertRejected { report, .. } if report.verify_text == "IP address mismatch"),
        "{got:#?}"
    );
}

#[test]
fn refuses_a_server_certificate_for_another_name() {
    let server = verdict_server();
    let got = dial(
        server.addr,
        "example.invalid",
        &client_config(true),
        false,
        Script::Listen,
    )
    .expect("connect");

    assert_eq!(got.len(), 2, "CertRejected and Disconnect only: {got:#?}");
    let Got::CertRejected { problem, report } = &got[0] else {
        panic!("{got:#?}");
    };
    assert_eq!(report.verify_text, "hostname mismatch", "{report:#?}");
    assert_eq!(*problem, CertProblem::NameMismatch, "{report:#?}");
    assert!(report.presented && !report.valid);
    assert_eq!(report.failed_depth, Some(0));
    assert_eq!(last_reason(&got), DisconnectReason::CertRejected(*problem));

    // The server sees the client give up, with no verdict sent.
    let events = server_events(&server, 1);
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnect(DisconnectReason::HandshakeFailed(_)))
        ),
        "{events:#?}"
    );
    assert!(!events.iter().any(|e| matches!(e, Event::SslDone { .. })));
}

#[test]
fn refuses_a_server_from_another_ca() {
    let server = verdict_server();
    let config = ConnectorOptions::new()
        .ca_file(cert("other-ca.pem"))
        .build()
        .unwrap();
    let got = dial(server.addr, "localhost", &config, false, Script::Listen).expect("connect");

    assert_eq!(got.len(), 2, "CertRejected and Disconnect only: {got:#?}");
    let Got::CertRejected { problem, report } = &got[0] else {
        panic!("{got:#?}");
    };
    assert_eq!(*problem, CertProblem::Untrusted, "{report:#?}");
    assert!(!report.valid);
    assert!(
        report
            .chain
            .first()
            .is_some_and(|leaf| leaf.subject.ends_with("CN=localhost")),
        "the report names the refused certificate: {report:#?}"
    );
    assert_eq!(
        last_reason(&got),
        DisconnectReason::CertRejected(CertProblem::Untrusted)
    );
}

#[test]
fn danger_accept_any_server_certificate_connects_to_the_other_ca_server() {
    let server = verdict_server();
    let config = ConnectorOptions::new()
        .ca_file(cert("other-ca.pem"))
        .danger_accept_any_server_certificate()
        .build()
        .unwrap();
    let got = dial(
        server.addr,
        "example.invalid",
        &config,
        false,
        Script::Listen,
    )
    .expect("connect");

    assert!(
        !got.iter().any(|g| matches!(g, Got::CertRejected { .. })),
        "{got:#?}"
    );
    let report = server_report(&got);
    assert!(
        report.presented && !report.valid,
        "the report still says the certificate did not verify: {report:#?}"
    );
    assert_eq!(tls_lines(&got), ["[1] NoClientCertExists"]);
    assert_eq!(last_reason(&got), DisconnectReason::PeerClosed);
}

#[test]
fn tls_first_client_fails_against_a_plaintext_greeting() {
    let (tx, _notes) = mpsc::channel();
    let server = PlainFirstServer::start(support::options(), move || {
        LineServer::new(Smtp::default()).with_observer(tx)
    });
    let got = dial(
        server.addr,
        "localhost",
        &client_config(false),
        false,
        Script::Listen,
    )
    .expect("connect");

    assert!(
        matches!(last_reason(&got), DisconnectReason::HandshakeFailed(_)),
        "{got:#?}"
    );
    assert!(!got
        .iter()
        .any(|g| matches!(g, Got::SslDone { .. } | Got::Line { .. })));
}

#[test]
fn starttls_with_sslify_on_both_ends() {
    let (tx, notes) = mpsc::channel();
    let options = support::options()
        .client_ca_file(cert("client-ca.pem"))
        .request_client_cert();
    let server = PlainFirstServer::start(options, move || {
        LineServer::new(Smtp::default()).with_observer(tx)
    });
    let got = dial(
        server.addr,
        "localhost",
        &client_config(true),
        true,
        Script::Smtp,
    )
    .expect("connect_plain");

    assert!(matches!(got[0], Got::Connected), "{got:#?}");
    assert_eq!(
        plain_lines(&got),
        [
            "220 localhost ESMTP sslify example",
            "250-localhost greets client.example",
            "250-8BITMIME",
            "250-STARTTLS",
            "250 HELP",
            "220 Ready to start TLS"
        ]
    );
    assert!(
        got.iter().any(|g| matches!(g, Got::StartTls(Ok(())))),
        "{got:#?}"
    );
    assert!(server_report(&got).valid);
    assert_eq!(
        tls_lines(&got),
        [
            "250-localhost greets client.example",
            "250-8BITMIME",
            "250 HELP",
            "221 2.0.0 Bye"
        ]
    );
    assert_eq!(last_reason(&got), DisconnectReason::PeerClosed);

    // The server's side of the same conversation.
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let note = notes.recv_timeout(left).expect("the server's notes");
        let end = matches!(note, Note::Disconnected { .. });
        seen.push(note);
        if end {
            break;
        }
    }
    let commands: Vec<(String, bool)> = seen
        .iter()
        .filter_map(|note| match note {
            Note::Command { line, tls, .. } => Some((line.clone(), *tls)),
            _ => None,
        })
        .collect();
    assert_eq!(
        commands,
        [
            ("EHLO client.example".to_owned(), false),
            ("STARTTLS".to_owned(), false),
            ("EHLO client.example".to_owned(), true),
            ("QUIT".to_owned(), true)
        ]
    );
    assert!(
        seen.iter()
            .any(|note| matches!(note, Note::Secured { report, .. } if report.valid)),
        "the server verified the client's certificate: {seen:#?}"
    );
    assert!(seen.iter().any(|note| matches!(
        note,
        Note::Disconnected {
            reason: DisconnectReason::ClosedByHandler,
            ..
        }
    )));
}

#[test]
fn client_handshake_deadline_applies() {
    // A TCP server that accepts and never answers the ClientHello.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = thread::spawn(move || {
        let (socket, _) = silent.accept().unwrap();
        thread::sleep(Duration::from_secs(3));
        drop(socket);
    });
    let config = ConnectorOptions::new()
        .ca_file(cert("ca.pem"))
        .handshake_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let got = dial(addr, "localhost", &config, false, Script::Listen).expect("connect");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(last_reason(&got), DisconnectReason::HandshakeTimedOut);
    holder.join().unwrap();
}

#[test]
fn connecting_to_a_closed_port_names_the_address() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    for plain in [false, true] {
        let error = dial(
            addr,
            "localhost",
            &client_config(false),
            plain,
            Script::Listen,
        )
        .expect_err("nothing listens there");
        match &error {
            ConnectError::Connect { addr: dialed, .. } => assert_eq!(*dialed, addr),
            other => panic!("expected ConnectError::Connect, got {other:?}"),
        }
        let text = error.to_string();
        assert!(text.contains(&addr.to_string()), "{text}");
        assert!(
            std::error::Error::source(&error).is_some(),
            "the OS error is kept as the source"
        );
    }
}

/// A listening socket with an accept queue of one that is never accepted from, filled
/// with connections until the kernel stops completing new ones. Returns the listener,
/// the queued connections (to keep them there) and the address.
///
/// On Linux a listener whose accept queue is full drops incoming SYNs (and the client's
/// kernel retries them for about two minutes), so a connection attempt neither
/// completes nor fails; it only ends when the dialer gives up. The fill stops at the
/// first attempt that is still pending after 300 ms, which shows the queue is full here.
async fn full_accept_queue() -> (
    tokio::net::TcpListener,
    Vec<tokio::net::TcpStream>,
    SocketAddr,
) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..16 {
        let attempt = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_millis(300), attempt).await {
            Ok(Ok(tcp)) => queued.push(tcp),
            Ok(Err(error)) => panic!("filling the accept queue: {error}"),
            Err(_) => return (listener, queued, addr),
        }
    }
    panic!(
        "{} connections completed against a listener with a backlog of 1 that never \
         accepts; this kernel does not drop SYNs when the accept queue is full",
        queued.len()
    );
}

#[test]
fn connecting_to_a_full_accept_queue_gives_up_at_the_handshake_deadline() {
    let deadline = Duration::from_millis(500);
    // Far below the kernel's own SYN retries, far above the deadline.
    let bound = deadline + Duration::from_secs(5);
    let config = ConnectorOptions::new()
        .ca_file(cert("ca.pem"))
        .handshake_timeout(deadline)
        .build()
        .unwrap();
    let system = actix::System::new();
    system.block_on(async move {
        let (listener, queued, addr) = full_accept_queue().await;
        for plain in [false, true] {
            let probe = ClientProbe {
                script: Script::Listen,
                got: Vec::new(),
                lines: Lines::default(),
                quit: false,
                done: None,
            }
            .start();
            let dial = async {
                if plain {
                    Connector::connect_plain(addr, "localhost", &config, probe).await
                } else {
                    Connector::connect(addr, "localhost", &config, probe).await
                }
            };
            let started = Instant::now();
            let result = tokio::time::timeout(bound, dial).await;
            let took = started.elapsed();
            let Ok(result) = result else {
                panic!(
                    "plain {plain}: connecting to a full accept queue with a {deadline:?} \
                     handshake deadline had not given up after {took:?}"
                );
            };
            match result {
                Err(ConnectError::Connect {
                    addr: dialed,
                    source,
                }) => {
                    assert_eq!(dialed, addr, "plain {plain}");
                    assert_eq!(
                        source.kind(),
                        std::io::ErrorKind::TimedOut,
                        "plain {plain}: {source}"
                    );
                }
                other => panic!(
                    "plain {plain}: expected ConnectError::Connect (timed out) after {took:?}, \
                     got {other:?}"
                ),
            }
        }
        drop(queued);
        drop(listener);
    });
}
