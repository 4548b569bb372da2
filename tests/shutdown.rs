//! Stopping a listener and shutting it down gracefully with connections open: newcomers
//! are refused, every connection ends exactly once, established clients get what was
//! put and close_notify, and the shutdown future resolves with nothing left open.

mod support;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use openssl::ssl::{ShutdownState, SslStream};
use sslify::{DisconnectReason, SslHandler};
use support::served::{recorder, Served};
use support::{connect, connector, send, Event, Journal, Reply};

/// The longest wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_millis(500);

/// A recording server whose connections run on `workers` threads: with one, on the
/// listener's own thread; with more, on worker threads the listener starts.
fn server(workers: usize, reply: Reply) -> (Served<impl SslHandler>, Journal) {
    let journal = Journal::default();
    let events = journal.clone();
    let options = support::options().workers(workers);
    let server = Served::start(options, move || recorder(events, reply));
    (server, journal)
}

/// A client that has had one line echoed.
fn established(addr: SocketAddr, line: &str) -> SslStream<TcpStream> {
    let mut stream = connect(addr, None).expect("handshake");
    send(&mut stream, line.as_bytes()).unwrap();
    let mut echo = vec![0u8; line.len()];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(echo, line.as_bytes());
    stream
}

/// Reads until the server's close_notify; returns what came before it.
fn read_until_close_notify(stream: &mut SslStream<TcpStream>, what: &str) -> Vec<u8> {
    stream.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    let (data, end) = support::read_to_end(stream);
    assert_eq!(end, Ok(()), "{what}: the stream ended with an error");
    assert!(
        stream.get_shutdown().contains(ShutdownState::RECEIVED),
        "{what}: the server closed without close_notify"
    );
    data
}

/// Waits for the listener socket to be gone. Connections made before it closed must not be
/// served.
fn assert_refusing(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    let tls = connector(None, None);
    loop {
        let tcp = match TcpStream::connect(addr) {
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused,
                    "connecting to a stopped listener: {e}"
                );
                return;
            }
            Ok(tcp) => tcp,
        };
        tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        if let Ok(mut stream) = tls.connect("localhost", tcp) {
            // A TLS 1.3 client finishes before the server's first bytes after the
            // handshake; a served connection would echo.
            let _ = send(&mut stream, b"anyone?\n");
            let mut buf = [0u8; 8];
            assert!(
                stream.read_exact(&mut buf).is_err(),
                "a connection made while stopping was served"
            );
        }
        assert!(
            Instant::now() < deadline,
            "the listener still accepts connections {WAIT:?} after stopping"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the shutdown future.
fn assert_resolves(done: &Receiver<()>, what: &str) {
    done.recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("{what}: the shutdown future did not resolve within {WAIT:?}"));
}

/// Each connection's events in short, inputs counted rather than shown.
fn summary(journal: &Journal) -> Vec<(u64, String)> {
    journal
        .snapshot()
        .into_iter()
        .map(|(id, events)| {
            let (inputs, bytes) = events
                .iter()
                .filter_map(|event| match event {
                    Event::Input { data, .. } => Some(data.len()),
                    _ => None,
                })
                .fold((0, 0), |(n, total), len| (n + 1, total + len));
            let others: Vec<String> = events
                .iter()
                .filter(|event| !matches!(event, Event::Input { .. }))
                .map(|event| match event {
                    Event::SslDone { .. } => "SslDone".to_owned(),
                    Event::CertRejected { problem, .. } => format!("CertRejected({problem:?})"),
                    Event::Disconnect(reason) => format!("Disconnect({reason:?})"),
                    Event::Input { .. } => unreachable!(),
                })
                .collect();
            (
                id,
                format!("{others:?} and {inputs} inputs of {bytes} bytes"),
            )
        })
        .collect()
}

/// Every connection ended exactly once and last; returns each one's reason.
fn reasons(journal: &Journal, count: usize) -> Vec<(u64, Vec<Event>, DisconnectReason)> {
    let events = journal.wait_disconnects(count, WAIT);
    assert_eq!(events.len(), count, "{events:#?}");
    events
        .into_iter()
        .map(|(id, events)| {
            let disconnects: Vec<&DisconnectReason> = events
                .iter()
                .filter_map(|event| match event {
                    Event::Disconnect(reason) => Some(reason),
                    _ => None,
                })
                .collect();
            assert_eq!(disconnects.len(), 1, "connection {id}: {events:#?}");
            let Some(Event::Disconnect(reason)) = events.last().cloned() else {
                panic!("connection {id} has events after its Disconnect: {events:#?}");
            };
            (id, events, reason)
        })
        .collect()
}

fn graceful_shutdown_ends_every_connection_once_and_resolves(workers: usize) {
    let (server, journal) = server(workers, Reply::Echo);
    let mut idle: Vec<SslStream<TcpStream>> = (1..=3)
        .map(|n| established(server.addr, &format!("idle {n}\n")))
        .collect();
    let mut leaving = established(server.addr, "leaving\n");
    let mut half_open = TcpStream::connect(server.addr).unwrap();
    server.wait_stats("4 established and 1 handshaking", WAIT, |s| {
        s.accepted == 5 && s.open == 5 && s.handshaking == 1
    });

    let done = server.shutdown(GRACE);
    // One client closes on its own within the grace period.
    leaving.shutdown().unwrap();
    leaving.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    let (rest, end) = support::read_to_end(&mut leaving);
    assert!(
        end.is_ok() && leaving.get_shutdown().contains(ShutdownState::RECEIVED),
        "a client closing during the grace period got no close_notify back ({end:?}); \
         events {:?}",
        summary(&journal)
    );
    assert!(rest.is_empty());
    drop(leaving);

    assert_refusing(server.addr);

    // The others are closed once the grace period is over.
    for (n, stream) in idle.iter_mut().enumerate() {
        let rest = read_until_close_notify(stream, &format!("idle client {}", n + 1));
        assert!(rest.is_empty());
    }
    half_open.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    match half_open.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the half-open client got {n} bytes"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "the half-open handshake was not cut: {e}"
        ),
    }
    drop(idle);

    assert_resolves(&done, "3 idle, 1 leaving, 1 half-open");
    assert_eq!(server.stats().open, 0, "{:?}", server.stats());
    assert_eq!(server.stats().handshaking, 0, "{:?}", server.stats());
    let refused = TcpStream::connect(server.addr);
    assert!(refused.is_err(), "connected after shutdown");

    for (id, events, reason) in reasons(&journal, 5) {
        let expected = match id {
            4 => DisconnectReason::PeerClosed,
            _ => DisconnectReason::Shutdown,
        };
        assert_eq!(reason, expected, "connection {id}: {events:#?}");
        match id {
            5 => assert_eq!(events.len(), 1, "half-open: {events:#?}"),
            _ => assert!(
                matches!(events.first(), Some(Event::SslDone { .. })),
                "connection {id}: {events:#?}"
            ),
        }
    }
}

fn shutdown_resolves_as_soon_as_every_connection_has_ended_on_its_own(workers: usize) {
    let (server, journal) = server(workers, Reply::Echo);
    let clients: Vec<SslStream<TcpStream>> = (1..=2)
        .map(|n| established(server.addr, &format!("client {n}\n")))
        .collect();

    // A grace period far longer than the wait: the future resolves because nothing is left.
    let done = server.shutdown(Duration::from_secs(3600));
    assert_refusing(server.addr);
    for (n, mut stream) in clients.into_iter().enumerate() {
        send(&mut stream, b"still served\n").unwrap();
        let mut echo = [0u8; 13];
        stream.read_exact(&mut echo).unwrap_or_else(|e| {
            panic!(
                "client {} was not served during the grace period: {}; events {:?}",
                n + 1,
                support::error_text(&e),
                summary(&journal)
            )
        });
        assert_eq!(&echo, b"still served\n", "client {}", n + 1);
        stream.shutdown().unwrap();
        read_until_close_notify(&mut stream, "client closing");
    }
    assert_resolves(&done, "two clients that closed on their own");
    assert_eq!(server.stats().open, 0);
    for (id, events, reason) in reasons(&journal, 2) {
        assert_eq!(reason, DisconnectReason::PeerClosed, "{id}: {events:#?}");
    }
}

fn stop_refuses_newcomers_while_open_connections_carry_on(workers: usize) {
    let (server, journal) = server(workers, Reply::Echo);
    let mut stream = established(server.addr, "before\n");
    server.listener.stop();
    assert_refusing(server.addr);

    send(&mut stream, b"after\n").unwrap();
    let mut echo = [0u8; 6];
    stream.read_exact(&mut echo).unwrap_or_else(|e| {
        panic!(
            "the established connection did not carry on after stop(): {}; events {:?}",
            support::error_text(&e),
            summary(&journal)
        )
    });
    assert_eq!(&echo, b"after\n");
    assert_eq!(server.stats().open, 1);

    stream.shutdown().unwrap();
    read_until_close_notify(&mut stream, "client closing");
    server.wait_stats("no connections", WAIT, |s| s.open == 0);
    let ended = reasons(&journal, 1);
    assert_eq!(ended[0].2, DisconnectReason::PeerClosed, "{ended:#?}");
}

/// A client that sends `bytes` of echo fodder and reads none of the echo.
fn non_reader(addr: SocketAddr, bytes: usize) -> (SslStream<TcpStream>, Vec<u8>) {
    let mut stream = connect(addr, None).expect("handshake");
    let sent: Vec<u8> = (0..bytes).map(|i| b'a' + (i % 26) as u8).collect();
    send(&mut stream, &sent).unwrap();
    (stream, sent)
}

fn shutdown_writes_what_was_put_before_close_notify(workers: usize) {
    let (server, journal) = server(workers, Reply::Echo);
    // 8 MiB of echo: more than the socket buffers hold, so much of it still waits in the
    // server's queue when the grace period ends.
    let (mut stream, sent) = non_reader(server.addr, 8 << 20);
    let done = server.shutdown(GRACE);
    thread::sleep(GRACE + Duration::from_millis(200));

    let echoed = read_until_close_notify(&mut stream, "client with queued echo");
    assert_eq!(echoed.len(), sent.len());
    assert!(echoed == sent, "the echo differs from what was sent");
    drop(stream);
    assert_resolves(&done, "client with queued echo");
    let ended = reasons(&journal, 1);
    assert_eq!(ended[0].2, DisconnectReason::Shutdown, "{ended:#?}");
}

fn shutdown_resolves_with_a_client_that_stopped_reading(workers: usize) {
    // The listener's documentation: closing connections wait at most 2 s for their peer,
    // so the future resolves soon after the grace period even with unresponsive clients.
    let (server, journal) = server(workers, Reply::Echo);
    let (stream, _) = non_reader(server.addr, 8 << 20);
    let done = server.shutdown(GRACE);

    let resolved = done.recv_timeout(WAIT).is_ok();
    let stats = server.stats();
    let events = summary(&journal);
    drop(stream);
    assert!(
        resolved,
        "the shutdown future had not resolved {WAIT:?} after a {GRACE:?} grace period; \
         listener {stats:?}, events {events:?}"
    );
    assert_eq!(stats.open, 0);
    let ended = reasons(&journal, 1);
    assert_eq!(
        ended[0].2,
        DisconnectReason::Shutdown,
        "{:?}",
        summary(&journal)
    );
}

fn shutdown_resolves_while_a_handler_close_waits_on_a_client_that_stopped_reading(workers: usize) {
    // The handler puts 8 MiB and closes at once; the client reads none of it, so the
    // connection is still writing when the shutdown comes.
    let (server, journal) = server(workers, Reply::Bulk { bytes: 8 << 20 });
    let stream = connect(server.addr, None).expect("handshake");
    server.wait_stats("the client established", WAIT, |s| {
        s.handshaking == 0 && s.open == 1
    });
    let done = server.shutdown(GRACE);

    let resolved = done.recv_timeout(WAIT).is_ok();
    let stats = server.stats();
    let events = summary(&journal);
    drop(stream);
    assert!(
        resolved,
        "the shutdown future had not resolved {WAIT:?} after a {GRACE:?} grace period; \
         listener {stats:?}, events {events:?}"
    );
    assert_eq!(stats.open, 0);
    let ended = reasons(&journal, 1);
    assert_eq!(
        ended[0].2,
        DisconnectReason::Shutdown,
        "{:?}",
        summary(&journal)
    );
}

/// Runs each scenario with connections on the listener's thread and on worker threads.
macro_rules! with_workers {
    ($($name:ident),* $(,)?) => {
        mod one_worker {
            $(
                #[test]
                fn $name() {
                    super::$name(1);
                }
            )*
        }

        mod two_workers {
            $(
                #[test]
                fn $name() {
                    super::$name(2);
                }
            )*
        }
    };
}

with_workers!(
    graceful_shutdown_ends_every_connection_once_and_resolves,
    shutdown_resolves_as_soon_as_every_connection_has_ended_on_its_own,
    stop_refuses_newcomers_while_open_connections_carry_on,
    shutdown_writes_what_was_put_before_close_notify,
    shutdown_resolves_with_a_client_that_stopped_reading,
    shutdown_resolves_while_a_handler_close_waits_on_a_client_that_stopped_reading,
);

/// How long the client threads of the race keep connecting: half before the shutdown,
/// half after.
const RACE: Duration = Duration::from_secs(1);
/// How many client threads race. Enough to keep both workers busy, so that accepted
/// connections wait a while on their way to a worker.
const RACERS: usize = 16;

/// One client thread of the race: connects again and again until `stop` is set. Every
/// `keep_every`-th connection that completes its handshake is kept open and returned, for
/// the shutdown to close; the others have a line echoed and close. Errors are expected
/// once the listener is gone and end nothing.
fn racing_client(
    addr: SocketAddr,
    stop: &AtomicBool,
    keep_every: usize,
) -> (usize, Vec<SslStream<TcpStream>>) {
    let tls = connector(None, None);
    let mut kept = Vec::new();
    let mut attempts = 0;
    while !stop.load(Ordering::Acquire) {
        attempts += 1;
        let tcp = match TcpStream::connect(addr) {
            Ok(tcp) => tcp,
            Err(_) => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let Ok(mut stream) = tls.connect("localhost", tcp) else {
            continue;
        };
        if attempts % keep_every == 0 {
            kept.push(stream);
            continue;
        }
        if send(&mut stream, b"racing\n").is_ok() {
            let mut echo = [0u8; 7];
            let _ = stream.read_exact(&mut echo);
        }
        let _ = stream.shutdown();
    }
    (attempts, kept)
}

fn shutdown_during_a_stream_of_new_connections(round: usize) {
    let (server, journal) = server(2, Reply::Echo);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<thread::JoinHandle<(usize, Vec<SslStream<TcpStream>>)>> = (0..RACERS)
        .map(|n| {
            let (addr, stop) = (server.addr, Arc::clone(&stop));
            thread::spawn(move || racing_client(addr, &stop, 2 + n % 4))
        })
        .collect();

    // The shutdown comes while connections are being accepted.
    server.wait_stats("the first connections", WAIT, |s| s.accepted >= 10);
    thread::sleep(RACE / 2);
    let done = server.shutdown(Duration::ZERO);
    thread::sleep(RACE / 2);
    stop.store(true, Ordering::Release);
    let mut attempts = 0;
    let mut kept = Vec::new();
    for client in clients {
        let (tried, streams) = client.join().unwrap();
        attempts += tried;
        kept.extend(streams);
    }
    // The kept clients stay connected and silent: only the shutdown can end their
    // connections, so a connection it misses keeps the future from resolving.
    let resolved = done.recv_timeout(WAIT).is_ok();
    let stats = server.stats();
    let still_open: Vec<(u64, String)> = summary(&journal)
        .into_iter()
        .filter(|(_, events)| !events.contains("Disconnect"))
        .collect();
    drop(kept);
    assert!(
        resolved,
        "round {round}: the shutdown future had not resolved after {WAIT:?}; listener \
         {stats:?}, connections without Disconnect {still_open:?}"
    );
    assert_eq!(stats.open, 0, "round {round}: {stats:?}");
    assert_eq!(stats.handshaking, 0, "round {round}: {stats:?}");

    // Every accepted connection got its one Disconnect, last.
    let accepted = usize::try_from(stats.accepted).unwrap();
    let ended = reasons(&journal, accepted);
    let ids: Vec<u64> = ended.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=stats.accepted).collect::<Vec<u64>>(),
        "round {round}: connections with events"
    );
    let shut = ended
        .iter()
        .filter(|(_, _, reason)| *reason == DisconnectReason::Shutdown)
        .count();
    eprintln!(
        "round {round}: {attempts} attempts, {accepted} accepted, {shut} ended by the shutdown"
    );
}

#[test]
fn shutdown_while_clients_keep_connecting_ends_every_connection_once() {
    for round in 1..=5 {
        shutdown_during_a_stream_of_new_connections(round);
    }
}
