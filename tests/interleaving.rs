//! Many clients of different kinds handshaking at the same moment: each connection's
//! report must describe its own client and no other.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use openssl::ssl::{SslStream, SslVersion};
use openssl::x509::X509;
use sslify::{CertProblem, ClientCertReport, DisconnectReason};
use support::{Event, Reply, TestServer};

/// Clients per run; every kind appears the same number of times.
const CLIENTS: usize = 60;
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Valid,
    NoCert,
    Untrusted,
    Expired,
    SelfSigned,
}

const KINDS: [Kind; 5] = [
    Kind::Valid,
    Kind::NoCert,
    Kind::Untrusted,
    Kind::Expired,
    Kind::SelfSigned,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::NoCert => "none",
            Kind::Untrusted => "untrusted",
            Kind::Expired => "expired",
            Kind::SelfSigned => "selfsigned",
        }
    }

    fn from_name(name: &str) -> Kind {
        *KINDS
            .iter()
            .find(|kind| kind.name() == name)
            .unwrap_or_else(|| panic!("unknown client kind {name:?}"))
    }

    fn file(self) -> Option<&'static str> {
        match self {
            Kind::NoCert => None,
            other => Some(other.name()),
        }
    }

    /// The common name of the client's own certificate.
    fn common_name(self) -> Option<String> {
        self.file().map(|name| format!("client {name}"))
    }

    /// The serial of the client's own certificate, read from its PEM file.
    fn leaf_serial(self) -> Option<Vec<u8>> {
        let name = self.file()?;
        let pem = std::fs::read(support::cert(&format!("client-{name}.pem"))).unwrap();
        let certs = X509::stack_from_pem(&pem).unwrap();
        Some(certs[0].serial_number().to_bn().unwrap().to_vec())
    }

    /// How many certificates the client sends.
    fn chain_len(self) -> usize {
        match self {
            Kind::NoCert => 0,
            Kind::SelfSigned => 1,
            _ => 2,
        }
    }

    /// What required mode makes of this client.
    fn problem(self) -> Option<CertProblem> {
        match self {
            Kind::Valid => None,
            Kind::NoCert => Some(CertProblem::Missing),
            Kind::Untrusted | Kind::SelfSigned => Some(CertProblem::Untrusted),
            Kind::Expired => Some(CertProblem::Expired),
        }
    }

    /// OpenSSL's verify result for this client's certificate (0 when valid or absent).
    fn verify_code(self) -> i32 {
        match self {
            Kind::Valid | Kind::NoCert => 0,
            Kind::Untrusted => 19,
            Kind::Expired => 10,
            Kind::SelfSigned => 18,
        }
    }

    /// The alert a refused client of this kind receives.
    fn alert(self, version: SslVersion) -> &'static str {
        match self {
            Kind::Valid => unreachable!("valid clients are not refused"),
            Kind::NoCert if version == SslVersion::TLS1_3 => "alert certificate required",
            Kind::NoCert => "alert handshake failure",
            Kind::Expired => "alert certificate expired",
            Kind::Untrusted | Kind::SelfSigned => "alert unknown ca",
        }
    }
}

/// The kind and TLS version of client number `index`.
fn client_plan(index: usize) -> (Kind, SslVersion) {
    let kind = KINDS[index % KINDS.len()];
    // Alternate versions within each kind as well as across kinds.
    let version = if (index / KINDS.len()) % 2 == 0 {
        SslVersion::TLS1_3
    } else {
        SslVersion::TLS1_2
    };
    (kind, version)
}

fn version_name(version: SslVersion) -> &'static str {
    if version == SslVersion::TLS1_3 {
        "TLSv1.3"
    } else {
        "TLSv1.2"
    }
}

/// The line a client sends to say who it is.
fn hello(index: usize, kind: Kind) -> String {
    format!("client {index} kind {}\n", kind.name())
}

/// Reads one line (the echo of what was sent), or the error that ended the stream.
fn read_line(stream: &mut SslStream<TcpStream>) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    while !line.ends_with(b"\n") {
        match stream.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {line:?}")),
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(error) => return Err(support::error_text(&error)),
        }
    }
    Ok(line)
}

/// What one client thread saw.
#[derive(Debug)]
enum ClientOutcome {
    Echoed,
    Refused(String),
}

/// Starts every client at once (a barrier holds them until all are ready) and returns
/// what each saw, by client index. With `required`, clients other than the valid ones
/// expect to be refused and only read, for the alert.
fn run_clients(addr: SocketAddr, required: bool) -> Vec<ClientOutcome> {
    // One connector per kind and version, made up front: making one loads the system's CA
    // store, which would otherwise dominate the run.
    let mut connectors = BTreeMap::new();
    for index in 0..CLIENTS {
        let (kind, version) = client_plan(index);
        connectors
            .entry((kind, version_name(version)))
            .or_insert_with(|| support::connector(kind.file(), Some(version)));
    }
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let barrier = Arc::clone(&barrier);
            let (kind, version) = client_plan(index);
            let connector = connectors[&(kind, version_name(version))].clone();
            thread::spawn(move || {
                barrier.wait();
                let mut stream = match support::connect_with(&connector, addr) {
                    Ok(stream) => stream,
                    Err(error) => return ClientOutcome::Refused(error),
                };
                if required && kind != Kind::Valid {
                    // Over TLS 1.3 the client's side of the handshake completes; the
                    // refusal comes with the first read.
                    return ClientOutcome::Refused(match stream.read(&mut [0u8; 64]) {
                        Ok(n) => format!("read {n} bytes instead of an alert"),
                        Err(error) => support::error_text(&error),
                    });
                }
                let line = hello(index, kind);
                if let Err(error) = support::send(&mut stream, line.as_bytes()) {
                    return ClientOutcome::Refused(support::error_text(&error));
                }
                let echoed = match read_line(&mut stream) {
                    Ok(echoed) => echoed,
                    Err(error) => return ClientOutcome::Refused(error),
                };
                assert_eq!(
                    String::from_utf8_lossy(&echoed),
                    line,
                    "client {index} got someone else's echo"
                );
                stream.shutdown().expect("close_notify");
                ClientOutcome::Echoed
            })
        })
        .collect();
    threads
        .into_iter()
        .enumerate()
        .map(|(index, thread)| {
            thread
                .join()
                .unwrap_or_else(|_| panic!("client {index} panicked"))
        })
        .collect()
}

/// The client index and kind a connection's input names.
fn announced(id: u64, events: &[Event]) -> Option<(usize, Kind)> {
    let input: Vec<u8> = events
        .iter()
        .filter_map(|event| match event {
            Event::Input { data, tls } => {
                assert!(tls, "[{id}] input outside TLS");
                Some(data.clone())
            }
            _ => None,
        })
        .flatten()
        .collect();
    if input.is_empty() {
        return None;
    }
    let text = String::from_utf8(input).unwrap();
    let words: Vec<&str> = text.trim_end().split(' ').collect();
    match words.as_slice() {
        ["client", index, "kind", kind] => Some((index.parse().unwrap(), Kind::from_name(kind))),
        _ => panic!("[{id}] unexpected input {text:?}"),
    }
}

/// Checks that `report` describes a client of `kind` and nobody else.
fn assert_describes(report: &ClientCertReport, kind: Kind, context: &str) {
    assert_eq!(
        report.presented,
        kind != Kind::NoCert,
        "{context}: presented"
    );
    assert_eq!(report.valid, kind == Kind::Valid, "{context}: valid");
    assert_eq!(report.chain.len(), kind.chain_len(), "{context}: chain");
    if let Some(common_name) = kind.common_name() {
        let leaf = report.leaf().unwrap();
        assert_eq!(
            leaf.subject,
            format!("/C=US/O=sslify test/CN={common_name}"),
            "{context}: leaf subject"
        );
        assert_eq!(
            Some(leaf.serial.clone()),
            kind.leaf_serial(),
            "{context}: leaf serial"
        );
    }
    if kind != Kind::NoCert {
        assert_eq!(
            report.verify_code,
            kind.verify_code(),
            "{context}: verify code"
        );
    }
}

#[test]
fn concurrent_handshakes_in_optional_mode_each_report_their_own_client() {
    let server = TestServer::start(support::options().request_client_cert(), Reply::Echo);
    let outcomes = run_clients(server.addr, false);
    for (index, outcome) in outcomes.iter().enumerate() {
        assert!(
            matches!(outcome, ClientOutcome::Echoed),
            "client {index} ({:?}) should be accepted in optional mode: {outcome:?}",
            client_plan(index)
        );
    }

    let journal = server.journal.wait_disconnects(CLIENTS, WAIT);
    assert_eq!(journal.len(), CLIENTS, "connections");
    let mut seen = BTreeMap::new();
    for (id, events) in &journal {
        let (index, kind) = announced(*id, events)
            .unwrap_or_else(|| panic!("[{id}] never said who it is: {events:#?}"));
        assert_eq!(kind, client_plan(index).0, "[{id}] client {index} kind");
        assert!(
            seen.insert(index, *id).is_none(),
            "client {index} announced twice"
        );
        let context = format!("[{id}] client {index} ({kind:?})");
        match events.as_slice() {
            [Event::SslDone {
                report,
                protocol,
                resumed,
            }, .., Event::Disconnect(DisconnectReason::PeerClosed)] => {
                assert_describes(report, kind, &context);
                assert_eq!(protocol, version_name(client_plan(index).1), "{context}");
                assert!(!resumed, "{context}: resumed");
            }
            other => panic!("{context}: events {other:#?}"),
        }
    }
    assert_eq!(seen.len(), CLIENTS, "every client announced itself");
}

#[test]
fn concurrent_handshakes_in_required_mode_each_reject_for_their_own_reason() {
    let server = TestServer::start(support::options().require_client_cert(), Reply::Echo);
    let outcomes = run_clients(server.addr, true);
    for (index, outcome) in outcomes.iter().enumerate() {
        let (kind, version) = client_plan(index);
        match (kind, outcome) {
            (Kind::Valid, ClientOutcome::Echoed) => {}
            (Kind::Valid, ClientOutcome::Refused(error)) => {
                panic!("valid client {index} was refused: {error}")
            }
            (_, ClientOutcome::Echoed) => panic!("{kind:?} client {index} was accepted"),
            (_, ClientOutcome::Refused(error)) => assert!(
                error.contains(kind.alert(version)),
                "{kind:?} client {index} over {}: expected {:?}, got {error}",
                version_name(version),
                kind.alert(version)
            ),
        }
    }

    let journal = server.journal.wait_disconnects(CLIENTS, WAIT);
    assert_eq!(journal.len(), CLIENTS, "connections");
    let mut rejected_by_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut accepted = Vec::new();
    for (id, events) in &journal {
        match events.as_slice() {
            [Event::SslDone { report, .. }, .., Event::Disconnect(DisconnectReason::PeerClosed)] => {
                let (index, kind) = announced(*id, events)
                    .unwrap_or_else(|| panic!("[{id}] never said who it is: {events:#?}"));
                assert_eq!(kind, Kind::Valid, "[{id}] client {index} was accepted");
                assert_describes(report, kind, &format!("[{id}] client {index}"));
                accepted.push(index);
            }
            [Event::CertRejected { problem, report }, Event::Disconnect(DisconnectReason::CertRejected(reason))] =>
            {
                // No input to go by: the certificate itself says which client this was.
                let kind = match report.leaf() {
                    None => Kind::NoCert,
                    Some(leaf) => {
                        let name = leaf
                            .subject
                            .strip_prefix("/C=US/O=sslify test/CN=client ")
                            .unwrap_or_else(|| panic!("[{id}] leaf {}", leaf.subject));
                        Kind::from_name(name)
                    }
                };
                let context = format!("[{id}] rejected {kind:?} client");
                assert_eq!(Some(*problem), kind.problem(), "{context}: problem");
                assert_eq!(reason, problem, "{context}: disconnect reason");
                assert_eq!(report.problem(), Some(*problem), "{context}: report");
                assert_eq!(report.presented, kind != Kind::NoCert, "{context}");
                assert!(!report.valid, "{context}: valid");
                if let Some(leaf) = report.leaf() {
                    assert_eq!(Some(leaf.serial.clone()), kind.leaf_serial(), "{context}");
                    assert_eq!(report.verify_code, kind.verify_code(), "{context}");
                }
                *rejected_by_kind.entry(kind).or_default() += 1;
            }
            other => panic!("[{id}] events {other:#?}"),
        }
    }

    let planned = |wanted: Kind| (0..CLIENTS).filter(|&i| client_plan(i).0 == wanted).count();
    accepted.sort_unstable();
    let valid_clients: Vec<usize> = (0..CLIENTS)
        .filter(|&i| client_plan(i).0 == Kind::Valid)
        .collect();
    assert_eq!(accepted, valid_clients, "SslDone once per valid client");
    for kind in KINDS.into_iter().filter(|&kind| kind != Kind::Valid) {
        assert_eq!(
            rejected_by_kind.get(&kind).copied().unwrap_or(0),
            planned(kind),
            "rejections of {kind:?} clients"
        );
    }
}
