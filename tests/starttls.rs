//! STARTTLS over real TLS on loopback: connections that start in plaintext, switch on a
//! command, and must never let plaintext sent after that command through, either as
//! plaintext or as if it had come over TLS.
//!
//! The clients are the openssl crate over a std `TcpStream`: they read the plaintext
//! greeting, send commands, and after the go-ahead do the TLS handshake on the same
//! socket. Most tests use [`Probe`], a handler written here that records everything it
//! sees; the last ones run the examples' FTP and SMTP handlers (`examples/proto`) against
//! `openssl s_client -starttls`, skipped where the `openssl` command is missing.

mod support;

#[path = "../examples/proto/mod.rs"]
mod proto;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use actix::prelude::*;
use openssl::ssl::SslStream;
use sslify::{
    CertProblem, CertRejected, ClientCertReport, ClientInput, Connected, ConnectionHandle,
    ConnectionId, Disconnect, DisconnectReason, Options, SslDone, StartTlsError,
};
use support::starttls::{
    read_line, read_reply, write_line, PlainClient, PlainFirstServer, Trickle,
};
use support::{cert, pattern_byte};

use crate::proto::{Action, Ftp, LineServer, Lines, Note, Protocol, Smtp};

/// Upper bound for the server to report what a test waits for.
const WAIT: Duration = Duration::from_secs(10);
/// The greeting [`Probe`] puts on `Connected`.
const BANNER: &str = "220 probe ready";
/// The go-ahead [`Probe`] puts before switching.
const GO_AHEAD: &str = "220 go ahead";

/// Which call to `start_tls` a [`Seen::StartTls`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `ClientInput::start_tls` on the input that carried the command.
    Input,
    /// `ConnectionHandle::start_tls`, right after the call on the input.
    HandleAgain,
    /// `ConnectionHandle::start_tls` on `SslDone`.
    OnSslDone,
    /// `ConnectionHandle::start_tls` on `Disconnect`.
    OnDisconnect,
}

/// One thing [`Probe`] saw or did, in order.
#[derive(Debug, Clone)]
enum Seen {
    Connected,
    Input {
        data: Vec<u8>,
        tls: bool,
    },
    /// A command line the probe acted on.
    Command {
        line: String,
        tls: bool,
    },
    /// The bytes after the STARTTLS command in its input, dropped.
    Dropped(Vec<u8>),
    StartTls {
        call: Call,
        result: Result<(), StartTlsError>,
    },
    SslDone {
        report: ClientCertReport,
    },
    CertRejected {
        problem: CertProblem,
        report: ClientCertReport,
    },
    Disconnect(DisconnectReason),
}

/// Events per connection id, and the condition variable signalled on each new one.
type LogState = (Mutex<BTreeMap<u64, Vec<Seen>>>, Condvar);

/// What [`Probe`] saw, per connection.
#[derive(Clone, Default)]
struct Log {
    inner: Arc<LogState>,
}

impl Log {
    fn push(&self, id: ConnectionId, seen: Seen) {
        let (lock, cvar) = &*self.inner;
        lock.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.0)
            .or_default()
            .push(seen);
        cvar.notify_all();
    }

    /// Waits until `done` holds for connection `id`'s events and returns them; panics
    /// naming `what` after [`WAIT`].
    fn wait_for(&self, id: u64, what: &str, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let (lock, cvar) = &*self.inner;
        let deadline = Instant::now() + WAIT;
        let mut map = lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let events = map.get(&id).cloned().unwrap_or_default();
            if done(&events) {
                return events;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(map);
                panic!("connection {id}: waited {WAIT:?} for {what}; events: {events:#?}");
            }
            map = cvar
                .wait_timeout(map, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits for connection `id`'s `Disconnect` and the probe's look at the handle after
    /// it, and returns all its events.
    fn ended(&self, id: u64) -> Vec<Seen> {
        self.wait_for(id, "the end of the connection", |events| {
            events.iter().any(|seen| {
                matches!(
                    seen,
                    Seen::StartTls {
                        call: Call::OnDisconnect,
                        ..
                    }
                )
            })
        })
    }
}

/// One connection as [`Probe`] sees it.
struct ProbeSession {
    handle: ConnectionHandle,
    lines: Lines,
    /// The switch was asked for; plaintext input after it is recorded, never acted on.
    switching: bool,
}

/// The test handler: a small line protocol that records everything.
///
/// Commands: `STARTTLS` (go-ahead, then switch; over TLS: `503`), `HELD` (like `STARTTLS`
/// once the test opens the [`Gate`]), `TWICE` (go-ahead, then
/// asks to switch twice), `BIG n` (`n` bytes of the bulk pattern, the go-ahead, the switch,
/// then a line put after the switch), `GOCLOSE` (go-ahead, switch, close at once),
/// `CLOSETLS` (`221 closing`, close, then asks to switch), `NOOP` (`250 ok`), `QUIT`
/// (`221 bye` and close).
struct Probe {
    log: Log,
    sessions: HashMap<ConnectionId, ProbeSession>,
    /// What `HELD` waits for.
    gate: Gate,
}

/// A gate the test opens: `HELD` blocks the probe's thread until then, so that the
/// connection gets every chance to read past the command while the probe holds it.
#[derive(Clone, Default)]
struct Gate {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Gate {
    fn open(&self) {
        let (lock, cvar) = &*self.inner;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cvar.notify_all();
    }

    /// Blocks until the gate is open; panics after [`WAIT`].
    fn pass(&self) {
        let (lock, cvar) = &*self.inner;
        let open = cvar
            .wait_timeout_while(
                lock.lock().unwrap_or_else(PoisonError::into_inner),
                WAIT,
                |open| !*open,
            )
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        assert!(*open, "the test never opened the gate");
    }
}

impl Probe {
    fn new(log: Log) -> Self {
        Probe {
            log,
            sessions: HashMap::new(),
            gate: Gate::default(),
        }
    }
}

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<Connected> for Probe {
    type Result = ();

    fn handle(&mut self, connected: Connected, _: &mut Context<Self>) {
        self.log.push(connected.id, Seen::Connected);
        connected.handle.put(format!("{BANNER}\r\n"));
        self.sessions.insert(
            connected.id,
            ProbeSession {
                handle: connected.handle,
                lines: Lines::default(),
                switching: false,
            },
        );
    }
}

impl Handler<ClientInput> for Probe {
    type Result = ();

    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        let id = input.id;
        let log = &self.log;
        log.push(
            id,
            Seen::Input {
                data: input.data.to_vec(),
                tls: input.tls,
            },
        );
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        if session.switching {
            return;
        }
        let lines = session
            .lines
            .push(&input.data)
            .expect("probe lines are short");
        let handle = &input.handle;

        for (line, end) in lines {
            log.push(
                id,
                Seen::Command {
                    line: line.clone(),
                    tls: input.tls,
                },
            );
            let (verb, argument) = proto::split_command(&line);
            let switch = |log: &Log, session: &mut ProbeSession, result| {
                log.push(
                    id,
                    Seen::StartTls {
                        call: Call::Input,
                        result,
                    },
                );
                if input.data.len() > end {
                    log.push(id, Seen::Dropped(input.data[end..].to_vec()));
                }
                session.switching = true;
                session.lines.clear();
            };
            match (verb.as_str(), input.tls) {
                ("STARTTLS" | "HELD", false) => {
                    if verb == "HELD" {
                        self.gate.pass();
                    }
                    handle.put(format!("{GO_AHEAD}\r\n"));
                    let result = input.start_tls(end);
                    switch(log, session, result);
                    break;
                }
                ("STARTTLS", true) => {
                    let result = input.start_tls(end);
                    log.push(
                        id,
                        Seen::StartTls {
                            call: Call::Input,
                            result,
                        },
                    );
                    handle.put("503 already TLS\r\n");
                }
                ("TWICE", false) => {
                    handle.put(format!("{GO_AHEAD}\r\n"));
                    let result = input.start_tls(end);
                    let again = handle.start_tls();
                    switch(log, session, result);
                    log.push(
                        id,
                        Seen::StartTls {
                            call: Call::HandleAgain,
                            result: again,
                        },
                    );
                    break;
                }
                ("BIG", false) => {
                    let size: usize = argument.parse().expect("BIG takes a byte count");
                    let mut offset = 0;
                    while offset < size {
                        let chunk = (size - offset).min(1 << 20);
                        handle.put(
                            (offset..offset + chunk)
                                .map(pattern_byte)
                                .collect::<Vec<u8>>(),
                        );
                        offset += chunk;
                    }
                    handle.put(format!("{GO_AHEAD}\r\n"));
                    let result = input.start_tls(end);
                    handle.put("after the switch\r\n");
                    switch(log, session, result);
                    break;
                }
                ("GOCLOSE", false) => {
                    handle.put(format!("{GO_AHEAD}\r\n"));
                    let result = input.start_tls(end);
                    handle.close();
                    switch(log, session, result);
                    break;
                }
                ("CLOSETLS", false) => {
                    handle.put("221 closing\r\n");
                    handle.close();
                    let result = input.start_tls(end);
                    log.push(
                        id,
                        Seen::StartTls {
                            call: Call::Input,
                            result,
                        },
                    );
                    session.switching = true;
                    break;
                }
                ("NOOP", _) => {
                    handle.put("250 ok\r\n");
                }
                ("QUIT", _) => {
                    handle.put("221 bye\r\n");
                    handle.close();
                    session.switching = true;
                    break;
                }
                _ => {
                    handle.put("500 unknown command\r\n");
                }
            }
        }
    }
}

impl Handler<SslDone> for Probe {
    type Result = ();

    fn handle(&mut self, done: SslDone, _: &mut Context<Self>) {
        self.log.push(
            done.id,
            Seen::SslDone {
                report: done.client_cert,
            },
        );
        let result = done.handle.start_tls();
        self.log.push(
            done.id,
            Seen::StartTls {
                call: Call::OnSslDone,
                result,
            },
        );
        // A TLS-first connection's session starts here.
        let session = self.sessions.entry(done.id).or_insert(ProbeSession {
            handle: done.handle,
            lines: Lines::default(),
            switching: false,
        });
        session.switching = false;
        session.lines.clear();
    }
}

impl Handler<CertRejected> for Probe {
    type Result = ();

    fn handle(&mut self, rejected: CertRejected, _: &mut Context<Self>) {
        self.log.push(
            rejected.id,
            Seen::CertRejected {
                problem: rejected.problem,
                report: rejected.report,
            },
        );
    }
}

impl Handler<Disconnect> for Probe {
    type Result = ();

    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        self.log.push(gone.id, Seen::Disconnect(gone.reason));
        if let Some(session) = self.sessions.remove(&gone.id) {
            self.log.push(
                gone.id,
                Seen::StartTls {
                    call: Call::OnDisconnect,
                    result: session.handle.start_tls(),
                },
            );
        } else {
            // A connection that never reached SslDone or Connected has no handle.
            self.log.push(
                gone.id,
                Seen::StartTls {
                    call: Call::OnDisconnect,
                    result: Err(StartTlsError::Ended),
                },
            );
        }
    }
}

/// A STARTTLS listener with [`Probe`], and its log.
fn probe_server(options: Options) -> (PlainFirstServer<Probe>, Log) {
    let log = Log::default();
    let probe_log = log.clone();
    let server = PlainFirstServer::start(options, move || Probe::new(probe_log));
    (server, log)
}

/// Connects and reads the probe's banner.
fn greeted(addr: SocketAddr) -> PlainClient {
    let mut client = PlainClient::connect(addr);
    assert_eq!(client.line().expect("banner"), BANNER);
    client
}

/// The command lines the probe acted on, with whether each came over TLS.
fn commands(events: &[Seen]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|seen| match seen {
            Seen::Command { line, tls } => Some((line.clone(), *tls)),
            _ => None,
        })
        .collect()
}

fn command_list(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter()
        .map(|(line, tls)| (line.to_string(), *tls))
        .collect()
}

/// The results of the probe's `start_tls` calls of kind `call`.
fn start_tls_results(events: &[Seen], call: Call) -> Vec<Result<(), StartTlsError>> {
    events
        .iter()
        .filter_map(|seen| match seen {
            Seen::StartTls { call: c, result } if *c == call => Some(*result),
            _ => None,
        })
        .collect()
}

fn disconnect_reason(events: &[Seen]) -> DisconnectReason {
    let reasons: Vec<&DisconnectReason> = events
        .iter()
        .filter_map(|seen| match seen {
            Seen::Disconnect(reason) => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1, "exactly one Disconnect: {events:#?}");
    reasons[0].clone()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Every input that arrived after the first one holding `marker`, whatever its channel.
fn inputs_after(events: &[Seen], marker: &[u8]) -> Vec<(Vec<u8>, bool)> {
    let inputs = events.iter().filter_map(|seen| match seen {
        Seen::Input { data, tls } => Some((data.clone(), *tls)),
        _ => None,
    });
    inputs
        .skip_while(|(data, _)| !contains(data, marker))
        .skip(1)
        .collect()
}

/// `NOOP` gets `250 ok`, then `QUIT` gets `221 bye` and the server closes cleanly.
fn noop_and_quit(tls: &mut SslStream<TcpStream>) {
    write_line(tls, "NOOP").unwrap();
    assert_eq!(read_line(tls).unwrap(), "250 ok");
    write_line(tls, "QUIT").unwrap();
    assert_eq!(read_line(tls).unwrap(), "221 bye");
    let (rest, end) = support::read_to_end(tls);
    assert!(rest.is_empty(), "bytes after 221: {rest:?}");
    assert_eq!(end, Ok(()), "the server closes with close_notify");
}

#[test]
fn drops_a_command_written_with_starttls_in_one_write() {
    let (server, log) = probe_server(support::options());
    let mut client = greeted(server.addr);

    client.send(b"STARTTLS\r\nRSET\r\n");
    assert_eq!(client.line().unwrap(), GO_AHEAD);
    let mut tls = client
        .start_tls(&support::connector(None, None))
        .expect("handshake after the go-ahead");
    noop_and_quit(&mut tls);

    let events = log.ended(1);
    assert_eq!(
        commands(&events),
        command_list(&[("STARTTLS", false), ("NOOP", true), ("QUIT", true)]),
        "RSET must never be acted on: {events:#?}"
    );
    let dropped: Vec<&Vec<u8>> = events
        .iter()
        .filter_map(|seen| match seen {
            Seen::Dropped(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, [&b"RSET\r\n".to_vec()]);
    for (data, tls) in inputs_after(&events, b"STARTTLS") {
        assert!(
            !contains(&data, b"RSET"),
            "RSET came back as input (tls: {tls}): {events:#?}"
        );
    }
    assert_eq!(
        start_tls_results(&events, Call::Input),
        [Ok(())],
        "{events:#?}"
    );
    assert_eq!(
        disconnect_reason(&events),
        DisconnectReason::ClosedByHandler
    );
}

#[test]
fn never_delivers_a_command_written_right_after_starttls() {
    // The second write may land in the STARTTLS input (then it is dropped and the
    // handshake works) or after it (then the TLS layer reads it and the handshake fails);
    // it must never reach the handler as input of its own, least of all as TLS input.
    let (server, log) = probe_server(support::options());
    let connector = support::connector(None, None);
    let rounds = 20;
    for _ in 0..rounds {
        let mut client = greeted(server.addr);
        client.send(b"STARTTLS\r\n");
        client.send(b"RSET\r\n");
        assert_eq!(client.line().unwrap(), GO_AHEAD);
        if let Ok(mut tls) = client.start_tls(&connector) {
            noop_and_quit(&mut tls);
        }
    }

    for id in 1..=rounds {
        let events = log.ended(id);
        assert!(
            !commands(&events).iter().any(|(line, _)| line == "RSET"),
            "connection {id} acted on RSET: {events:#?}"
        );
        let later = inputs_after(&events, b"STARTTLS");
        assert!(
            later.iter().all(|(data, _)| !contains(data, b"RSET")),
            "connection {id} delivered RSET after STARTTLS: {events:#?}"
        );
        assert!(
            later.iter().all(|(_, tls)| *tls),
            "connection {id} delivered plaintext after STARTTLS: {events:#?}"
        );
    }
}

#[test]
fn a_command_sent_after_the_switch_fails_the_handshake() {
    let (server, log) = probe_server(support::options());
    let mut client = greeted(server.addr);

    client.send(b"STARTTLS\r\n");
    // Wait until the handler has asked for the switch, so that RSET cannot share the
    // STARTTLS input.
    log.wait_for(1, "the switch", |events| {
        !start_tls_results(events, Call::Input).is_empty()
    });
    client.send(b"RSET\r\n");
    assert_eq!(client.line().unwrap(), GO_AHEAD);
    let handshake = client.start_tls(&support::connector(None, None));

    let events = log.ended(1);
    assert!(
        handshake.is_err(),
        "the plaintext RSET was taken as the start of the handshake"
    );
    assert!(
        matches!(
            disconnect_reason(&events),
            DisconnectReason::HandshakeFailed(_)
        ),
        "{events:#?}"
    );
    let inputs: Vec<&Seen> = events
        .iter()
        .filter(|seen| matches!(seen, Seen::Input { .. }))
        .collect();
    assert_eq!(inputs.len(), 1, "only the STARTTLS input: {events:#?}");
    assert!(!events
        .iter()
        .any(|seen| matches!(seen, Seen::SslDone { .. })));
}

#[test]
fn reads_nothing_past_a_command_the_handler_still_holds() {
    // The connection and the handler on different threads, so that the connection could
    // read on while the handler is busy with the command.
    let log = Log::default();
    let gate = Gate::default();
    let (probe_log, probe_gate) = (log.clone(), gate.clone());
    let server = PlainFirstServer::start(support::options().workers(2), move || Probe {
        gate: probe_gate,
        ..Probe::new(probe_log)
    });
    let mut client = greeted(server.addr);

    client.send(b"HELD\r\n");
    log.wait_for(1, "the HELD command", |events| {
        commands(events).contains(&("HELD".to_owned(), false))
    });
    client.send(b"RSET\r\n");
    // Give a connection that wrongly reads on the time to do so.
    thread::sleep(Duration::from_millis(100));
    gate.open();
    assert_eq!(client.line().unwrap(), GO_AHEAD);
    // RSET is still in the socket, where the TLS layer reads it and fails; a handshake
    // that works means the connection took RSET away as plaintext.
    let handshake_failed = client.start_tls(&support::connector(None, None)).is_err();

    let events = log.ended(1);
    let inputs: Vec<&Seen> = events
        .iter()
        .filter(|seen| matches!(seen, Seen::Input { .. }))
        .collect();
    assert_eq!(inputs.len(), 1, "only the HELD input: {events:#?}");
    assert!(
        handshake_failed,
        "RSET did not reach the TLS layer: {events:#?}"
    );
    assert!(
        matches!(
            disconnect_reason(&events),
            DisconnectReason::HandshakeFailed(_)
        ),
        "{events:#?}"
    );
}

#[test]
fn a_large_reply_before_the_switch_arrives_whole_in_plaintext() {
    const SIZE: usize = 4 << 20;
    let (server, log) = probe_server(support::options());
    let mut client = greeted(server.addr);

    client.send(format!("BIG {SIZE}\r\n").as_bytes());
    // Read slowly, so that the server has to wait for room in the socket many times
    // before it may switch.
    thread::sleep(Duration::from_millis(200));
    let mut received = vec![0u8; SIZE];
    let mut filled = 0;
    while filled < SIZE {
        let end = (filled + 4096).min(SIZE);
        let n = client.tcp.read(&mut received[filled..end]).unwrap();
        assert!(n > 0, "stream ended after {filled} of {SIZE} bytes");
        filled += n;
        thread::sleep(Duration::from_micros(500));
    }
    if let Some(at) = (0..SIZE).find(|&at| received[at] != pattern_byte(at)) {
        panic!("plaintext byte {at} is {:#04x}", received[at]);
    }
    assert_eq!(client.line().unwrap(), GO_AHEAD);

    let mut tls = client
        .start_tls(&support::connector(None, None))
        .expect("handshake after the large reply");
    assert_eq!(
        read_line(&mut tls).unwrap(),
        "after the switch",
        "what was put after start_tls comes over TLS"
    );
    noop_and_quit(&mut tls);

    let events = log.ended(1);
    assert_eq!(start_tls_results(&events, Call::Input), [Ok(())]);
    assert!(events
        .iter()
        .any(|seen| matches!(seen, Seen::SslDone { .. })));
    assert_eq!(
        disconnect_reason(&events),
        DisconnectReason::ClosedByHandler
    );
}

#[test]
fn handshake_works_with_a_client_hello_in_single_bytes() {
    let (server, log) = probe_server(support::options());
    let client = greeted(server.addr);

    let mut trickle = Trickle {
        tcp: client.tcp,
        pause: Duration::from_millis(1),
    };
    // The command, too, arrives a byte at a time.
    write_line(&mut trickle, "STARTTLS").unwrap();
    assert_eq!(read_line(&mut trickle).unwrap(), GO_AHEAD);
    let mut tls = support::connector(Some("valid"), None)
        .connect("localhost", trickle)
        .expect("handshake over single-byte writes");
    write_line(&mut tls, "NOOP").unwrap();
    assert_eq!(read_line(&mut tls).unwrap(), "250 ok");
    write_line(&mut tls, "QUIT").unwrap();
    assert_eq!(read_line(&mut tls).unwrap(), "221 bye");

    let events = log.ended(1);
    assert_eq!(
        commands(&events),
        command_list(&[("STARTTLS", false), ("NOOP", true), ("QUIT", true)])
    );
    let report = events
        .iter()
        .find_map(|seen| match seen {
            Seen::SslDone { report } => Some(report.clone()),
            _ => None,
        })
        .expect("SslDone");
    assert!(!report.presented, "no certificate is requested by default");
    assert_eq!(
        disconnect_reason(&events),
        DisconnectReason::ClosedByHandler
    );
}

#[test]
fn start_tls_is_refused_on_a_tls_first_connection() {
    let log = Log::default();
    let probe_log = log.clone();
    let server =
        PlainFirstServer::start_tls_first(support::options(), move || Probe::new(probe_log));

    let mut tls = support::connect(server.addr, None).expect("TLS-first handshake");
    write_line(&mut tls, "STARTTLS").unwrap();
    assert_eq!(read_line(&mut tls).unwrap(), "503 already TLS");
    noop_and_quit(&mut tls);

    let events = log.ended(1);
    assert!(
        !events.iter().any(|seen| matches!(seen, Seen::Connected)),
        "TLS-first connections send no Connected: {events:#?}"
    );
    assert_eq!(
        start_tls_results(&events, Call::OnSslDone),
        [Err(StartTlsError::AlreadyTls)]
    );
    assert_eq!(
        start_tls_results(&events, Call::Input),
        [Err(StartTlsError::AlreadyTls)]
    );
    assert_eq!(
        start_tls_results(&events, Call::OnDisconnect),
        [Err(StartTlsError::Ended)]
    );
    assert_eq!(
        commands(&events),
        command_list(&[("STARTTLS", true), ("NOOP", true), ("QUIT", true)])
    );
}

#[test]
fn start_tls_is_refused_twice_and_after_the_switch() {
    let (server, log) = probe_server(support::options());
    let mut client = greeted(server.addr);

    client.send(b"TWICE\r\n");
    assert_eq!(client.line().unwrap(), GO_AHEAD);
    let mut tls = client
        .start_tls(&support::connector(None, None))
        .expect("one switch despite two requests");
    write_line(&mut tls, "STARTTLS").unwrap();
    assert_eq!(read_line(&mut tls).unwrap(), "503 already TLS");
    noop_and_quit(&mut tls);

    let events = log.ended(1);
    assert_eq!(start_tls_results(&events, Call::Input)[0], Ok(()));
    assert_eq!(
        start_tls_results(&events, Call::HandleAgain),
        [Err(StartTlsError::AlreadyRequested)]
    );
    assert_eq!(
        start_tls_results(&events, Call::OnSslDone),
        [Err(StartTlsError::AlreadyTls)]
    );
    assert_eq!(
        start_tls_results(&events, Call::Input),
        [Ok(()), Err(StartTlsError::AlreadyTls)],
        "STARTTLS over TLS is refused"
    );
    assert_eq!(
        start_tls_results(&events, Call::OnDisconnect),
        [Err(StartTlsError::Ended)]
    );
    assert_eq!(
        commands(&events),
        command_list(&[
            ("TWICE", false),
            ("STARTTLS", true),
            ("NOOP", true),
            ("QUIT", true)
        ])
    );
    assert_eq!(
        disconnect_reason(&events),
        DisconnectReason::ClosedByHandler
    );
}

#[test]
fn the_handshake_deadline_runs_from_the_switch() {
    let deadline = Duration::from_millis(300);
    let (server, log) = probe_server(support::options().handshake_timeout(deadline));
    let mut client = greeted(server.addr);

    // Plaintext is not bound by the handshake deadline.
    thread::sleep(deadline * 3);
    client.send(b"NOOP\r\n");
    assert_eq!(client.line().unwrap(), "250 ok");

    client.send(b"STARTTLS\r\n");
    assert_eq!(client.line().unwrap(), GO_AHEAD);
    // No ClientHello follows.
    let events = log.ended(1);
    assert_eq!(
        disconnect_reason(&events),
        DisconnectReason::HandshakeTimedOut
    );
    let mut rest = Vec::new();
    let _ = client.tcp.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the go-ahead: {rest:?}");
}

#[test]
fn close_right_after_start_tls_still_sends_the_go_ahead() {
    let (server, log) = probe_server(support::options());
    let mut client = greeted(server.addr);

    client.send(b"GOCLOSE\r\n");
    let line = client.line();
    let events = log.ended(1);
    assert_eq!(
        line.as_deref().ok(),
        Some(GO_AHEAD),
        "what was put before Close is sent before the socket closes ({line:?}): {events:#?}"
    );
    assert_eq!(
        disconnect_reason(&events),
        DisconnectReason::ClosedByHandler
    );
}

#[test]
fn start_tls_after_close_in_the_same_turn_is_refused_with_ended() {
    let (server, log) = probe_server(support::options());
    let mut client = greeted(server.addr);

    client.send(b"CLOSETLS\r\n");
    assert_eq!(client.line().unwrap(), "221 closing");
    // The close goes on in plaintext: no handshake record follows, only the end.
    let mut rest = Vec::new();
    let _ = client.tcp.read_to_end(&mut rest);
    assert!(rest.is_empty(), "bytes after the close: {rest:?}");

    let events = log.ended(1);
    assert_eq!(
        start_tls_results(&events, Call::Input),
        [Err(StartTlsError::Ended)],
        "start_tls after close() in the same turn: {events:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|seen| matches!(seen, Seen::SslDone { .. } | Seen::CertRejected { .. })),
        "{events:#?}"
    );
    assert_eq!(
        disconnect_reason(&events),
        DisconnectReason::ClosedByHandler
    );
}

#[test]
fn starttls_switches_respect_the_handshake_cap() {
    let (server, log) = probe_server(support::options().max_handshakes(2));
    // Five plaintext connections hold no handshake slot, so all five are accepted.
    let mut clients: Vec<PlainClient> = (0..5).map(|_| greeted(server.addr)).collect();
    for client in &mut clients {
        client.send(b"STARTTLS\r\n");
        assert_eq!(client.line().unwrap(), GO_AHEAD);
    }
    // All five have been told to go ahead; none has sent its ClientHello.
    let stats = server.listener.stats();
    assert!(
        stats.handshaking <= 2,
        "{} handshakes at once with max_handshakes(2): {stats:?}",
        stats.handshaking
    );

    let connector = support::connector(None, None);
    for client in clients {
        let mut tls = client
            .start_tls(&connector)
            .expect("handshake once a slot is free");
        noop_and_quit(&mut tls);
    }
    for id in 1..=5 {
        assert_eq!(
            disconnect_reason(&log.ended(id)),
            DisconnectReason::ClosedByHandler
        );
    }
}

/// The client certificate used by the mode tests, by name in certs/ (`None`: none).
const CLIENTS: [Option<&str>; 3] = [Some("valid"), None, Some("expired")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    NoRequest,
    Required,
    Optional,
}

impl Mode {
    fn options(self) -> Options {
        match self {
            Mode::NoRequest => support::options(),
            Mode::Required => support::options().require_client_cert(),
            Mode::Optional => support::options().request_client_cert(),
        }
    }
}

/// What a connection's TLS part came to, as the handler saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TlsOutcome {
    Done(ClientCertReport),
    Rejected(CertProblem, ClientCertReport),
}

/// The TLS part of one connection: how the handshake ended for the handler, the
/// disconnect reason, and whether the client got `250 ok` to `NOOP`.
fn tls_part(events: &[Seen], served: bool) -> (TlsOutcome, DisconnectReason, bool) {
    let outcomes: Vec<TlsOutcome> = events
        .iter()
        .filter_map(|seen| match seen {
            Seen::SslDone { report } => Some(TlsOutcome::Done(report.clone())),
            Seen::CertRejected { problem, report } => {
                Some(TlsOutcome::Rejected(*problem, report.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(outcomes.len(), 1, "one handshake outcome: {events:#?}");
    (outcomes[0].clone(), disconnect_reason(events), served)
}

/// After the handshake: `NOOP` answered with `250 ok` means the connection is served;
/// then `QUIT`.
fn try_noop(tls: Result<SslStream<TcpStream>, String>) -> bool {
    let Ok(mut tls) = tls else {
        return false;
    };
    if write_line(&mut tls, "NOOP").is_err() {
        return false;
    }
    match read_line(&mut tls) {
        Ok(line) if line == "250 ok" => {
            write_line(&mut tls, "QUIT").unwrap();
            assert_eq!(read_line(&mut tls).unwrap(), "221 bye");
            let _ = support::read_to_end(&mut tls);
            true
        }
        _ => false,
    }
}

#[test]
fn client_certificate_modes_over_starttls_match_tls_first() {
    for mode in [Mode::NoRequest, Mode::Required, Mode::Optional] {
        let (plain_first, plain_log) = probe_server(mode.options());
        let tls_log = Log::default();
        let probe_log = tls_log.clone();
        let tls_first =
            PlainFirstServer::start_tls_first(mode.options(), move || Probe::new(probe_log));

        for (n, client) in CLIENTS.iter().enumerate() {
            let id = n as u64 + 1;
            let connector = support::connector(*client, None);

            let mut plain = greeted(plain_first.addr);
            plain.send(b"STARTTLS\r\n");
            assert_eq!(plain.line().unwrap(), GO_AHEAD);
            let served = try_noop(plain.start_tls(&connector));
            let events = plain_log.ended(id);
            let over_starttls = tls_part(&events, served);

            let served = try_noop(support::connect_with(&connector, tls_first.addr));
            let events = tls_log.ended(id);
            let over_tls = tls_part(&events, served);

            assert_eq!(
                over_starttls, over_tls,
                "{mode:?} with client {client:?}: STARTTLS and TLS-first differ"
            );

            let (outcome, reason, served) = over_starttls;
            let context = format!("{mode:?} with client {client:?}: {outcome:#?}");
            match (mode, *client) {
                (Mode::NoRequest, _) => {
                    let TlsOutcome::Done(report) = outcome else {
                        panic!("{context}");
                    };
                    assert!(!report.presented, "{context}");
                    assert!(served, "{context}");
                    assert_eq!(reason, DisconnectReason::ClosedByHandler, "{context}");
                }
                (_, Some("valid")) => {
                    let TlsOutcome::Done(report) = outcome else {
                        panic!("{context}");
                    };
                    assert!(report.presented && report.valid, "{context}");
                    assert!(served, "{context}");
                }
                (Mode::Required, client) => {
                    let expected = match client {
                        None => CertProblem::Missing,
                        _ => CertProblem::Expired,
                    };
                    assert!(
                        matches!(outcome, TlsOutcome::Rejected(problem, _) if problem == expected),
                        "{context}"
                    );
                    assert_eq!(
                        reason,
                        DisconnectReason::CertRejected(expected),
                        "{context}"
                    );
                    assert!(!served, "{context}");
                }
                (Mode::Optional, client) => {
                    let TlsOutcome::Done(report) = outcome else {
                        panic!("{context}");
                    };
                    let expected = match client {
                        None => CertProblem::Missing,
                        _ => CertProblem::Expired,
                    };
                    assert_eq!(report.problem(), Some(expected), "{context}");
                    assert!(served, "{context}");
                }
            }
        }
    }
}

/// A STARTTLS listener with the examples' handler for `protocol`, and what it reports.
fn example_server<P: Protocol + Send>(
    protocol: P,
    options: Options,
) -> (PlainFirstServer<LineServer<P>>, mpsc::Receiver<Note>) {
    let (tx, rx) = mpsc::channel();
    let server =
        PlainFirstServer::start(options, move || LineServer::new(protocol).with_observer(tx));
    (server, rx)
}

/// The options the STARTTLS examples run with by default.
fn example_options() -> Options {
    Options::new(cert("server-ec.pem"), cert("server-ec.key"))
        .client_ca_file(cert("client-ca-bundle.pem"))
        .request_client_cert()
}

/// The notes of connection `id`, collected until its `Disconnected`.
fn notes_until_end(notes: &mpsc::Receiver<Note>, id: u64) -> Vec<Note> {
    let deadline = Instant::now() + WAIT;
    let mut collected = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let note = notes
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("connection {id} did not end: {collected:#?}"));
        let ended = matches!(&note, Note::Disconnected { id: gone, .. } if gone.0 == id);
        let mine = match &note {
            Note::Connected(c) => c.0 == id,
            Note::Command { id: c, .. }
            | Note::Dropped { id: c, .. }
            | Note::Refused { id: c, .. }
            | Note::Secured { id: c, .. }
            | Note::Rejected { id: c, .. }
            | Note::Disconnected { id: c, .. } => c.0 == id,
        };
        if mine {
            collected.push(note);
        }
        if ended {
            return collected;
        }
    }
}

fn note_commands(notes: &[Note]) -> Vec<(String, bool)> {
    notes
        .iter()
        .filter_map(|note| match note {
            Note::Command { line, tls, .. } => Some((line.clone(), *tls)),
            _ => None,
        })
        .collect()
}

#[test]
fn ftp_drops_commands_after_auth_tls_in_the_same_input() {
    let (server, notes) = example_server(Ftp, example_options());
    let mut client = PlainClient::connect(server.addr);
    assert!(client.line().unwrap().starts_with("220 "));

    client.send(b"AUTH TLS\r\nUSER evil\r\n");
    assert!(client.line().unwrap().starts_with("234 "));
    let mut tls = client
        .start_tls(&support::connector(Some("valid"), None))
        .expect("handshake after 234");
    assert_eq!(
        read_line(&mut tls).unwrap(),
        "230 [1] Yeah! You're authenticated!"
    );
    write_line(&mut tls, "PWD").unwrap();
    assert_eq!(
        read_line(&mut tls).unwrap(),
        "257 \"/\" is the current directory"
    );
    write_line(&mut tls, "QUIT").unwrap();
    assert_eq!(read_line(&mut tls).unwrap(), "221 Goodbye");

    let notes = notes_until_end(&notes, 1);
    assert_eq!(
        note_commands(&notes),
        command_list(&[("AUTH TLS", false), ("PWD", true), ("QUIT", true)]),
        "USER evil must never run: {notes:#?}"
    );
    assert!(
        notes.iter().any(
            |note| matches!(note, Note::Dropped { bytes, .. } if *bytes == "USER evil\r\n".len())
        ),
        "{notes:#?}"
    );
}

#[test]
fn ftp_starts_tls_only_on_the_whole_auth_command() {
    let (server, notes) = example_server(Ftp, example_options());
    let mut client = PlainClient::connect(server.addr);
    assert!(client.line().unwrap().starts_with("220 "));

    for (command, code) in [
        ("USER tlsfan", "530"),
        ("TLS", "530"),
        ("PASS tls", "530"),
        ("AUTH TLS please", "504"),
        ("XAUTH TLS", "530"),
    ] {
        client.send(format!("{command}\r\n").as_bytes());
        let reply = client.line().unwrap();
        assert!(
            reply.starts_with(code),
            "{command:?} got {reply:?}, expected {code}"
        );
    }
    client.send(b"auth tls\r\n");
    assert!(client.line().unwrap().starts_with("234 "));
    let mut tls = client
        .start_tls(&support::connector(None, None))
        .expect("handshake after lower-case auth tls");
    assert_eq!(read_line(&mut tls).unwrap(), "530 [1] NoClientCertExists");
    write_line(&mut tls, "PWD").unwrap();
    assert!(read_line(&mut tls).unwrap().starts_with("530 "));
    write_line(&mut tls, "QUIT").unwrap();
    assert_eq!(read_line(&mut tls).unwrap(), "221 Goodbye");

    let notes = notes_until_end(&notes, 1);
    let secured_after = note_commands(&notes)
        .iter()
        .position(|(_, tls)| *tls)
        .expect("commands over TLS");
    assert_eq!(
        note_commands(&notes)[secured_after - 1],
        ("auth tls".to_owned(), false),
        "only the last plaintext command switched: {notes:#?}"
    );
}

#[test]
fn smtp_drops_a_command_pipelined_after_starttls() {
    let (server, notes) = example_server(Smtp::default(), example_options());
    let mut client = PlainClient::connect(server.addr);
    assert!(client.line().unwrap().starts_with("220 "));

    client.send(b"EHLO me\r\n");
    let ehlo = client.reply().unwrap();
    assert!(ehlo.contains(&"250-STARTTLS".to_owned()), "{ehlo:?}");
    client.send(b"STARTTLS\r\nRSET\r\n");
    assert_eq!(client.line().unwrap(), "220 Ready to start TLS");
    let mut tls = client
        .start_tls(&support::connector(None, None))
        .expect("handshake after 220");
    write_line(&mut tls, "EHLO me").unwrap();
    let ehlo = read_reply(&mut tls).unwrap();
    assert!(
        !ehlo.iter().any(|line| line.contains("STARTTLS")),
        "STARTTLS advertised over TLS: {ehlo:?}"
    );
    assert_eq!(ehlo.last().map(String::as_str), Some("250 HELP"));
    write_line(&mut tls, "STARTTLS").unwrap();
    assert!(read_line(&mut tls).unwrap().starts_with("503 "));
    write_line(&mut tls, "WHAT").unwrap();
    assert!(read_line(&mut tls).unwrap().starts_with("502 "));
    write_line(&mut tls, "QUIT").unwrap();
    assert!(read_line(&mut tls).unwrap().starts_with("221 "));

    let notes = notes_until_end(&notes, 1);
    assert_eq!(
        note_commands(&notes),
        command_list(&[
            ("EHLO me", false),
            ("STARTTLS", false),
            ("EHLO me", true),
            ("STARTTLS", true),
            ("WHAT", true),
            ("QUIT", true)
        ])
    );
    assert!(notes.iter().any(|note| matches!(
        note,
        Note::Refused {
            error: StartTlsError::AlreadyTls,
            ..
        }
    )));
    assert!(notes.iter().any(|note| matches!(
        note,
        Note::Disconnected {
            reason: DisconnectReason::ClosedByHandler,
            ..
        }
    )));
}

#[test]
fn example_protocols_recognise_their_commands() {
    let ftp = Ftp;
    let mut state = Default::default();
    for line in ["AUTH TLS", "auth tls", "  AUTH   SSL  ", "Auth Tls"] {
        assert!(
            matches!(
                ftp.command(line, false, &mut state),
                Action::StartTls { .. }
            ),
            "{line:?}"
        );
    }
    for line in [
        "USER tlsfan",
        "AUTH TLS now",
        "AUTHTLS",
        "TLS",
        "FEAT",
        "AUTH",
    ] {
        assert!(
            !matches!(
                ftp.command(line, false, &mut state),
                Action::StartTls { .. }
            ),
            "{line:?}"
        );
    }

    let smtp = Smtp::default();
    let mut state = Default::default();
    let Action::Reply(plain) = smtp.command("EHLO x", false, &mut state) else {
        panic!("EHLO answers");
    };
    assert!(plain.contains("250-STARTTLS\r\n"), "{plain:?}");
    assert!(plain.ends_with("250 HELP\r\n"), "{plain:?}");
    let Action::Reply(secured) = smtp.command("EHLO x", true, &mut state) else {
        panic!("EHLO answers");
    };
    assert!(!secured.contains("STARTTLS"), "{secured:?}");
    assert!(matches!(
        smtp.command("starttls", false, &mut state),
        Action::StartTls { .. }
    ));
    assert!(!matches!(
        smtp.command("STARTTLS now", false, &mut state),
        Action::StartTls { .. }
    ));
    assert!(matches!(
        smtp.command("QUIT", true, &mut state),
        Action::Quit(reply) if reply.starts_with("221")
    ));
    assert!(matches!(
        smtp.command("VRFY x", true, &mut state),
        Action::Reply(reply) if reply.starts_with("502")
    ));
}

#[test]
fn lines_end_where_start_tls_must_cut() {
    let mut lines = Lines::default();
    assert_eq!(lines.push(b"AU").unwrap(), []);
    assert_eq!(
        lines.push(b"TH TLS\r\nUSER evil\r\nPA").unwrap(),
        [("AUTH TLS".to_owned(), 8), ("USER evil".to_owned(), 19)]
    );
    assert_eq!(
        lines.push(b"SS x\nNOOP\r\n").unwrap(),
        [("PASS x".to_owned(), 5), ("NOOP".to_owned(), 11)]
    );
    lines.push(b"partial").unwrap();
    lines.clear();
    assert_eq!(lines.push(b"QUIT\r\n").unwrap(), [("QUIT".to_owned(), 6)]);
    assert!(lines.push(&[b'x'; proto::MAX_LINE + 1]).is_err());
}

/// The longest one `openssl s_client` run may take before it is killed.
const RUN_LIMIT: Duration = Duration::from_secs(15);

/// Whether `openssl version` runs; prints why not otherwise.
fn openssl_available() -> bool {
    match Command::new("openssl").arg("version").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!("skipping: `openssl version` failed with {}", out.status);
            false
        }
        Err(error) => {
            eprintln!("skipping: the openssl command is not available ({error})");
            false
        }
    }
}

/// Waits for `child`, killing it (through its own handle, by its PID) after
/// [`RUN_LIMIT`].
fn wait_bounded(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

struct Run {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `openssl s_client -starttls PROTO` against `addr` with `args`, feeding `input`
/// on stdin; `-ign_eof` keeps it reading until the server closes.
fn s_client(starttls: &str, addr: SocketAddr, args: &[&str], input: &str) -> Run {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .args(["-starttls", starttls, "-connect", &addr.to_string()])
        .arg("-CAfile")
        .arg(cert("ca.pem"))
        .args([
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            "-ign_eof",
        ])
        .args(args)
        // Relative paths are the crate's, as in the examples' headers.
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start openssl s_client");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let status = wait_bounded(&mut child);
    let run = Run {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        run.status.is_some(),
        "s_client still running after {RUN_LIMIT:?}, killed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run
}

#[test]
fn openssl_s_client_starttls_ftp() {
    if !openssl_available() {
        return;
    }
    let (server, notes) = example_server(Ftp, example_options());
    let valid = [
        "-cert",
        "certs/client-valid.pem",
        "-key",
        "certs/client-valid.key",
    ];
    let expired = [
        "-cert",
        "certs/client-expired.pem",
        "-key",
        "certs/client-expired.key",
    ];
    let cases: [(&[&str], &str); 3] = [
        (&valid, "230 [1] Yeah! You're authenticated!"),
        (&[], "530 [2] NoClientCertExists"),
        (&expired, "530 [3] ClientCertInvalid"),
    ];
    for (n, (args, verdict)) in cases.into_iter().enumerate() {
        let id = n as u64 + 1;
        let run = s_client("ftp", server.addr, args, "PWD\r\nQUIT\r\n");
        let all = format!("{}\n{}", run.stdout, run.stderr);
        assert!(run.status.is_some_and(|s| s.success()), "{all}");
        assert!(all.contains("Verify return code: 0 (ok)"), "{all}");
        assert!(run.stdout.contains(verdict), "{verdict:?} missing:\n{all}");
        let pwd = if id == 1 {
            "257 \"/\" is the current directory"
        } else {
            "530 Not logged in"
        };
        assert!(run.stdout.contains(pwd), "{pwd:?} missing:\n{all}");
        assert!(run.stdout.contains("221 Goodbye"), "{all}");

        let notes = notes_until_end(&notes, id);
        assert_eq!(
            note_commands(&notes),
            command_list(&[("AUTH TLS", false), ("PWD", true), ("QUIT", true)]),
            "{notes:#?}"
        );
    }
}

#[test]
fn openssl_s_client_starttls_smtp() {
    if !openssl_available() {
        return;
    }
    let (server, notes) = example_server(Smtp::default(), example_options());
    let run = s_client(
        "smtp",
        server.addr,
        &["-name", "client.example"],
        "EHLO again\r\nSTARTTLS\r\nFOO\r\nQUIT\r\n",
    );
    let all = format!("{}\n{}", run.stdout, run.stderr);
    assert!(run.status.is_some_and(|s| s.success()), "{all}");
    assert!(
        !run.stderr.contains("Didn't find STARTTLS"),
        "STARTTLS not advertised in plaintext:\n{all}"
    );
    assert!(all.contains("Verify return code: 0 (ok)"), "{all}");
    for expected in [
        "250-localhost greets again",
        "503 5.5.1 TLS already active",
        "502 5.5.2 Command not implemented",
        "221 2.0.0 Bye",
    ] {
        assert!(
            run.stdout.contains(expected),
            "{expected:?} missing:\n{all}"
        );
    }
    assert!(
        !run.stdout.contains("250-STARTTLS"),
        "STARTTLS advertised over TLS:\n{all}"
    );

    let notes = notes_until_end(&notes, 1);
    assert_eq!(
        note_commands(&notes),
        command_list(&[
            ("EHLO client.example", false),
            ("STARTTLS", false),
            ("EHLO again", true),
            ("STARTTLS", true),
            ("FOO", true),
            ("QUIT", true)
        ]),
        "{notes:#?}"
    );
    assert!(notes.iter().any(|note| matches!(
        note,
        Note::Refused {
            error: StartTlsError::AlreadyTls,
            ..
        }
    )));
}
