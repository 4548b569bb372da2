//! Ten thousand failed handshakes of every kind, from many client threads at once; then a
//! normal client is served, every accepted connection has had exactly one Disconnect, and
//! the process's open files and the listeners' open counts are back where they started.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use openssl::ssl::SslConnector;
use sslify::{CertProblem, DisconnectReason, SslHandler};
use support::served::{recorder, Served};
use support::{client_hello, connect_with, connector, send, Event, Journal, Reply};

/// The longest wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);
const CLIENT_THREADS: usize = 16;
/// Silent connections one timeout job holds at once.
const TIMEOUT_BATCH: usize = 25;

/// The ways a client fails its handshake here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Bytes that are not TLS.
    Garbage,
    /// TCP connect, then close.
    ConnectClose,
    /// A whole ClientHello, then close.
    HelloClose,
    /// A whole ClientHello, then a TCP reset once the server has answered.
    HelloReset,
    /// No client certificate where one is required.
    NoCert,
    /// A client certificate from a CA the server does not trust.
    Untrusted,
    /// Silent until the server's short handshake deadline cuts it (on the second server).
    Timeout,
}

/// How many connections of each kind; 10,000 in all.
const PLAN: [(Kind, usize); 7] = [
    (Kind::Garbage, 2500),
    (Kind::ConnectClose, 2500),
    (Kind::HelloClose, 2000),
    (Kind::HelloReset, 1500),
    (Kind::NoCert, 500),
    (Kind::Untrusted, 500),
    (Kind::Timeout, 500),
];

/// Deterministic bytes that are not a TLS record (xorshift64, first byte not 20..=24).
fn garbage(seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes: Vec<u8> = (0..64)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    if (20..=24).contains(&bytes[0]) {
        bytes[0] = b'G';
    }
    bytes
}

/// Everything a client thread needs.
struct Clients {
    required: SocketAddr,
    deadline: SocketAddr,
    hello: Vec<u8>,
    no_cert: SslConnector,
    untrusted: SslConnector,
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.set_write_timeout(Some(WAIT)).unwrap();
    tcp
}

/// Reads until the server closes; fails if it has not within `WAIT`.
fn wait_for_close(tcp: &mut TcpStream, kind: Kind) {
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("{kind:?}: the server did not close the connection within {WAIT:?}")
            }
            Err(_) => return,
        }
    }
}

/// A TLS client whose handshake the server must refuse: it never gets application data.
fn refused_tls(connector: &SslConnector, addr: SocketAddr, kind: Kind) {
    match connect_with(connector, addr) {
        Err(_) => {}
        Ok(mut stream) => {
            // In TLS 1.3 the client finishes first and learns of the refusal on reading.
            let mut buf = [0u8; 256];
            if let Ok(n) = stream.read(&mut buf) {
                assert_eq!(n, 0, "{kind:?}: a refused client got data");
            }
        }
    }
}

impl Clients {
    /// Runs `count` connections of one kind (for `Timeout`, `count` is at most a batch).
    fn run(&self, kind: Kind, seed: u64, count: usize) {
        match kind {
            Kind::Garbage => {
                let mut tcp = tcp(self.required);
                // The server may fail and close before it has read everything.
                let _ = tcp.write_all(&garbage(seed));
                let _ = tcp.shutdown(Shutdown::Write);
                wait_for_close(&mut tcp, kind);
            }
            Kind::ConnectClose => {
                let mut tcp = tcp(self.required);
                tcp.shutdown(Shutdown::Write).unwrap();
                wait_for_close(&mut tcp, kind);
            }
            Kind::HelloClose => {
                let mut tcp = tcp(self.required);
                tcp.write_all(&self.hello).unwrap();
                tcp.shutdown(Shutdown::Write).unwrap();
                wait_for_close(&mut tcp, kind);
            }
            Kind::HelloReset => {
                let tcp = tcp(self.required);
                (&tcp).write_all(&self.hello).unwrap();
                // Wait for the server's answer, so the reset comes mid-handshake.
                let mut first = [0u8; 1];
                assert_eq!(tcp.peek(&mut first).unwrap(), 1, "no answer to the hello");
                let socket = tokio::net::TcpSocket::from_std_stream(tcp);
                socket.set_zero_linger().unwrap();
                drop(socket);
            }
            Kind::NoCert => refused_tls(&self.no_cert, self.required, kind),
            Kind::Untrusted => refused_tls(&self.untrusted, self.required, kind),
            Kind::Timeout => {
                let mut silent: Vec<TcpStream> = (0..count).map(|_| tcp(self.deadline)).collect();
                for tcp in &mut silent {
                    wait_for_close(tcp, kind);
                }
            }
        }
    }
}

/// Entries in /proc/self/fd, if there is such a directory.
fn open_files() -> Option<usize> {
    fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count())
}

fn recording_server(options: sslify::Options) -> (Served<impl SslHandler>, Journal) {
    let journal = Journal::default();
    let events = journal.clone();
    let server = Served::start(options, move || recorder(events, Reply::Echo));
    (server, journal)
}

/// A normal client is served: its line comes back and it closes cleanly.
fn assert_served(connector: &SslConnector, addr: SocketAddr, what: &str) {
    let mut stream =
        connect_with(connector, addr).unwrap_or_else(|e| panic!("{what}: handshake: {e}"));
    send(&mut stream, b"served?\n").unwrap();
    let mut echo = [0u8; 8];
    stream
        .read_exact(&mut echo)
        .unwrap_or_else(|e| panic!("{what}: {}", support::error_text(&e)));
    assert_eq!(&echo, b"served?\n", "{what}");
    stream.shutdown().unwrap();
    let (rest, end) = support::read_to_end(&mut stream);
    assert!(rest.is_empty() && end.is_ok(), "{what}: {end:?}");
}

/// Checks that each connection has exactly one Disconnect, as its last event, and
/// returns the reasons with how often each came.
fn tally(events: &BTreeMap<u64, Vec<Event>>) -> BTreeMap<String, usize> {
    let mut reasons = BTreeMap::new();
    for (id, events) in events {
        let disconnects = events
            .iter()
            .filter(|event| matches!(event, Event::Disconnect(_)))
            .count();
        assert_eq!(disconnects, 1, "connection {id}: {events:#?}");
        let Some(Event::Disconnect(reason)) = events.last() else {
            panic!("connection {id}: events after its Disconnect: {events:#?}");
        };
        if let DisconnectReason::CertRejected(problem) = reason {
            assert!(
                matches!(
                    events.as_slice(),
                    [Event::CertRejected { problem: p, .. }, Event::Disconnect(_)] if p == problem
                ),
                "connection {id}: {events:#?}"
            );
        }
        let key = match reason {
            DisconnectReason::HandshakeFailed(_) => "HandshakeFailed".to_owned(),
            other => format!("{other:?}"),
        };
        *reasons.entry(key).or_default() += 1;
    }
    reasons
}

#[test]
fn ten_thousand_failed_handshakes_leave_nothing_behind() {
    let started = Instant::now();
    let (required, required_journal) =
        recording_server(support::options().require_client_cert().workers(2));
    let (deadline, deadline_journal) = recording_server(
        support::options()
            .handshake_timeout(Duration::from_millis(50))
            .workers(2),
    );
    let clients = Arc::new(Clients {
        required: required.addr,
        deadline: deadline.addr,
        hello: client_hello(),
        no_cert: connector(None, None),
        untrusted: connector(Some("untrusted"), None),
    });
    let valid = connector(Some("valid"), None);

    // One of each kind first, so that whatever is set up once (in OpenSSL, in the
    // runtime) is there before the baseline.
    for (kind, _) in PLAN {
        clients.run(kind, 1, 1);
    }
    assert_served(&valid, required.addr, "warm-up client, required mode");
    assert_served(
        &connector(None, None),
        deadline.addr,
        "warm-up client, short deadline",
    );
    let warm_required = required
        .wait_stats("warm-up over", WAIT, |s| s.open == 0)
        .accepted;
    let warm_deadline = deadline
        .wait_stats("warm-up over", WAIT, |s| s.open == 0)
        .accepted;
    let files_before = open_files();

    // Jobs: one connection each, except timeouts, which go in batches.
    let mut jobs: Vec<(Kind, usize)> = Vec::new();
    for (kind, count) in PLAN {
        if kind == Kind::Timeout {
            let mut left = count;
            while left > 0 {
                let batch = left.min(TIMEOUT_BATCH);
                jobs.push((kind, batch));
                left -= batch;
            }
        } else {
            jobs.extend((0..count).map(|_| (kind, 1)));
        }
    }
    // Interleave the kinds so that every kind runs alongside every other.
    jobs.sort_by_key(|&(kind, _)| kind);
    let mut mixed = Vec::with_capacity(jobs.len());
    let stride = 97;
    for start in 0..stride {
        mixed.extend(jobs.iter().skip(start).step_by(stride).copied());
    }
    let jobs = Arc::new(mixed);
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|_| {
            let (jobs, next, clients) =
                (Arc::clone(&jobs), Arc::clone(&next), Arc::clone(&clients));
            thread::spawn(move || loop {
                let n = next.fetch_add(1, Ordering::AcqRel);
                let Some(&(kind, count)) = jobs.get(n) else {
                    return;
                };
                clients.run(kind, n as u64, count);
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client thread failed");
    }
    eprintln!(
        "{} failing clients done after {:?}",
        10_000,
        started.elapsed()
    );

    // A normal client is served by each listener afterwards.
    assert_served(
        &valid,
        required.addr,
        "client after the soak, required mode",
    );
    assert_served(
        &connector(None, None),
        deadline.addr,
        "client after the soak, short deadline",
    );

    let planned = |kinds: &[Kind]| -> usize {
        PLAN.iter()
            .filter(|(kind, _)| kinds.contains(kind))
            .map(|(_, count)| count)
            .sum()
    };
    let required_stats = required.wait_stats("every connection closed", WAIT, |s| s.open == 0);
    let deadline_stats = deadline.wait_stats("every connection closed", WAIT, |s| s.open == 0);
    assert_eq!(required_stats.handshaking, 0);
    assert_eq!(deadline_stats.handshaking, 0);
    let soaked_required = planned(&[
        Kind::Garbage,
        Kind::ConnectClose,
        Kind::HelloClose,
        Kind::HelloReset,
        Kind::NoCert,
        Kind::Untrusted,
    ]);
    let soaked_deadline = planned(&[Kind::Timeout]);
    assert_eq!(
        required_stats.accepted,
        warm_required + soaked_required as u64 + 1,
        "connections accepted in required mode"
    );
    assert_eq!(
        deadline_stats.accepted,
        warm_deadline + soaked_deadline as u64 + 1,
        "connections accepted with the short deadline"
    );

    // Exactly one Disconnect per accepted connection.
    let events = required_journal.wait_disconnects(required_stats.accepted as usize, WAIT);
    assert_eq!(events.len() as u64, required_stats.accepted);
    let reasons = tally(&events);
    eprintln!("required mode: {reasons:?}");
    let count = |key: &str| reasons.get(key).copied().unwrap_or(0);
    let warm_each = 1; // each kind once in the warm-up
    assert_eq!(
        count(&format!(
            "{:?}",
            DisconnectReason::CertRejected(CertProblem::Missing)
        )),
        planned(&[Kind::NoCert]) + warm_each,
        "{reasons:?}"
    );
    assert_eq!(
        count(&format!(
            "{:?}",
            DisconnectReason::CertRejected(CertProblem::Untrusted)
        )),
        planned(&[Kind::Untrusted]) + warm_each,
        "{reasons:?}"
    );
    assert_eq!(
        count("HandshakeFailed"),
        planned(&[
            Kind::Garbage,
            Kind::ConnectClose,
            Kind::HelloClose,
            Kind::HelloReset
        ]) + 4 * warm_each,
        "{reasons:?}"
    );
    assert_eq!(
        count("PeerClosed"),
        2,
        "the two normal clients: {reasons:?}"
    );

    let events = deadline_journal.wait_disconnects(deadline_stats.accepted as usize, WAIT);
    assert_eq!(events.len() as u64, deadline_stats.accepted);
    let reasons = tally(&events);
    eprintln!("short deadline: {reasons:?}");
    assert_eq!(
        reasons.get("HandshakeTimedOut").copied(),
        Some(planned(&[Kind::Timeout]) + warm_each),
        "{reasons:?}"
    );
    assert_eq!(reasons.get("PeerClosed").copied(), Some(2), "{reasons:?}");

    // The process's open files are back where they were.
    match files_before {
        None => eprintln!("skipping the open-file check: /proc/self/fd is not available"),
        Some(before) => {
            let limit = Instant::now() + WAIT;
            loop {
                let now = open_files().expect("/proc/self/fd went away");
                if now <= before {
                    eprintln!("{before} files open before the soak, {now} after");
                    break;
                }
                assert!(
                    Instant::now() < limit,
                    "{now} files open, {before} before the soak"
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
    eprintln!("done after {:?}", started.elapsed());
}
