//! The caps on handshakes and on connections: at a cap the listener stops accepting and
//! the kernel's backlog holds newcomers; as soon as a slot frees up, accepting resumes.
//! The listener's counts follow every step.

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use openssl::ssl::SslStream;
use sslify::{DisconnectReason, ListenerStats, Options, SslHandler};
use support::served::{recorder, Served};
use support::{connect, connector, send, Event, Journal, Reply};

/// The longest wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);
/// How long a client held in the backlog is watched to see that it is not served.
const HELD: Duration = Duration::from_millis(300);

fn echo_server(options: Options) -> (Served<impl SslHandler>, Journal) {
    let journal = Journal::default();
    let events = journal.clone();
    let server = Served::start(options, move || recorder(events, Reply::Echo));
    (server, journal)
}

fn counts(accepted: u64, open: usize, handshaking: usize) -> impl Fn(&ListenerStats) -> bool {
    move |stats| {
        stats.accepted == accepted && stats.open == open && stats.handshaking == handshaking
    }
}

/// The listener's counts right now are (accepted, open, handshaking).
fn assert_counts(
    server: &Served<impl SslHandler>,
    what: &str,
    (accepted, open, handshaking): (u64, usize, usize),
) {
    let stats = server.stats();
    assert!(
        counts(accepted, open, handshaking)(&stats),
        "{what}: expected {accepted} accepted, {open} open, {handshaking} handshaking; got {stats:?}"
    );
}

/// A client whose TCP connection is made (it may wait in the kernel's backlog) and whose
/// TLS handshake runs in its own thread; the receiver gets the outcome.
fn waiting_client(addr: SocketAddr) -> Receiver<Result<SslStream<TcpStream>, String>> {
    let tcp = TcpStream::connect(addr).expect("TCP connect goes to the backlog");
    tcp.set_read_timeout(Some(WAIT * 2)).unwrap();
    tcp.set_write_timeout(Some(WAIT * 2)).unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let outcome = connector(None, None)
            .connect("localhost", tcp)
            .map_err(|e| e.to_string());
        let _ = tx.send(outcome);
    });
    rx
}

/// The client's handshake has not finished, and does not within `HELD`.
fn assert_not_served(client: &Receiver<Result<SslStream<TcpStream>, String>>, what: &str) {
    match client.recv_timeout(HELD) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok(Ok(_)) => panic!("{what}: the client was served while the cap was reached"),
        Ok(Err(e)) => panic!("{what}: the client's handshake failed: {e}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the client thread died"),
    }
}

/// The client's handshake finishes.
fn served(
    client: Receiver<Result<SslStream<TcpStream>, String>>,
    what: &str,
) -> SslStream<TcpStream> {
    match client.recv_timeout(WAIT) {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => panic!("{what}: the client's handshake failed: {e}"),
        Err(e) => panic!("{what}: the client was not served once a slot was free: {e}"),
    }
}

/// Sends a line and reads its echo.
fn assert_echo(stream: &mut SslStream<TcpStream>, line: &[u8]) {
    send(stream, line).unwrap();
    let mut echo = vec![0u8; line.len()];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(echo, line);
}

/// Sends close_notify and reads the server's.
fn close(mut stream: SslStream<TcpStream>) {
    stream.shutdown().unwrap();
    let (rest, end) = support::read_to_end(&mut stream);
    assert!(rest.is_empty(), "unexpected bytes at close: {rest:?}");
    assert_eq!(end, Ok(()), "the server did not answer close_notify");
}

/// Each of `ids` was served: SslDone first and, once, the client's own close last.
fn assert_served_and_closed(journal: &Journal, ids: &[u64], count: usize) {
    let events = journal.wait_disconnects(count, WAIT);
    for id in ids {
        let events = &events[id];
        assert!(
            matches!(events.first(), Some(Event::SslDone { .. })),
            "connection {id}: {events:#?}"
        );
        assert!(
            matches!(
                events.last(),
                Some(Event::Disconnect(DisconnectReason::PeerClosed))
            ),
            "connection {id}: {events:#?}"
        );
        let disconnects = events
            .iter()
            .filter(|e| matches!(e, Event::Disconnect(_)))
            .count();
        assert_eq!(disconnects, 1, "connection {id}: {events:#?}");
    }
}

#[test]
fn handshake_cap_holds_newcomers_in_the_backlog_until_a_slot_frees() {
    let (server, journal) = echo_server(support::options().max_handshakes(2));
    server.wait_stats("a fresh listener", WAIT, counts(0, 0, 0));

    // Two clients that connect and never send a ClientHello hold both handshake slots.
    let first_silent = TcpStream::connect(server.addr).unwrap();
    let second_silent = TcpStream::connect(server.addr).unwrap();
    server.wait_stats("two silent handshakes", WAIT, counts(2, 2, 2));

    let third = waiting_client(server.addr);
    assert_not_served(&third, "third client, both slots held");
    assert_counts(&server, "still at the cap", (2, 2, 2));

    // One silent client goes away: its slot lets the third in.
    drop(first_silent);
    let mut third = served(third, "third client, one slot free");
    assert_echo(&mut third, b"third\n");
    server.wait_stats(
        "one silent handshake and the established third client",
        WAIT,
        counts(3, 2, 1),
    );

    drop(second_silent);
    server.wait_stats("the established third client alone", WAIT, counts(3, 1, 0));
    close(third);
    server.wait_stats("no connections", WAIT, counts(3, 0, 0));

    let events = journal.wait_disconnects(3, WAIT);
    assert_eq!(events.len(), 3, "{events:#?}");
    for id in [1, 2] {
        assert!(
            matches!(
                events[&id].as_slice(),
                [Event::Disconnect(DisconnectReason::HandshakeFailed(_))]
            ),
            "silent connection {id}: {events:#?}"
        );
    }
    assert_served_and_closed(&journal, &[3], 3);
}

#[test]
fn connection_cap_holds_newcomers_in_the_backlog_until_a_connection_ends() {
    let (server, journal) = echo_server(support::options().max_connections(2));

    let mut first = connect(server.addr, None).expect("first handshake");
    assert_echo(&mut first, b"first\n");
    let mut second = connect(server.addr, None).expect("second handshake");
    assert_echo(&mut second, b"second\n");
    server.wait_stats("two established idle clients", WAIT, counts(2, 2, 0));

    let third = waiting_client(server.addr);
    assert_not_served(&third, "third client, two connections open");
    assert_counts(&server, "still at the cap", (2, 2, 0));

    close(first);
    let mut third = served(third, "third client after the first closed");
    assert_echo(&mut third, b"third\n");
    server.wait_stats("second and third established", WAIT, counts(3, 2, 0));

    // At the cap again: the next newcomer waits in turn.
    let fourth = waiting_client(server.addr);
    assert_not_served(&fourth, "fourth client, two connections open");
    assert_counts(&server, "still at the cap again", (3, 2, 0));

    close(second);
    let mut fourth = served(fourth, "fourth client after the second closed");
    assert_echo(&mut fourth, b"fourth\n");
    server.wait_stats("third and fourth established", WAIT, counts(4, 2, 0));

    close(third);
    close(fourth);
    server.wait_stats("no connections", WAIT, counts(4, 0, 0));
    assert_served_and_closed(&journal, &[1, 2, 3, 4], 4);
}

#[test]
fn established_connections_do_not_hold_handshake_slots() {
    let (server, journal) = echo_server(support::options().max_handshakes(1));

    let mut clients = Vec::new();
    for n in 1..=4u64 {
        let mut stream = connect(server.addr, None)
            .unwrap_or_else(|e| panic!("client {n} with {} open: {e}", n - 1));
        assert_echo(&mut stream, format!("client {n}\n").as_bytes());
        server.wait_stats("established clients only", WAIT, counts(n, n as usize, 0));
        clients.push(stream);
    }
    for stream in clients {
        close(stream);
    }
    server.wait_stats("no connections", WAIT, counts(4, 0, 0));
    assert_served_and_closed(&journal, &[1, 2, 3, 4], 4);
}

#[test]
fn handshake_deadline_frees_the_slot_of_a_silent_client() {
    let (server, journal) = echo_server(
        support::options()
            .max_handshakes(1)
            .handshake_timeout(Duration::from_millis(300)),
    );

    let silent = TcpStream::connect(server.addr).unwrap();
    server.wait_stats("one silent handshake", WAIT, counts(1, 1, 1));
    // Nothing is done on the client side: the deadline alone must let the next one in.
    let second = waiting_client(server.addr);
    let mut second = served(second, "client behind a silent one");
    assert_echo(&mut second, b"behind\n");
    server.wait_stats("the second client established", WAIT, counts(2, 1, 0));

    let events = journal.wait_disconnects(1, WAIT);
    assert!(
        matches!(
            events[&1].as_slice(),
            [Event::Disconnect(DisconnectReason::HandshakeTimedOut)]
        ),
        "{events:#?}"
    );
    close(second);
    drop(silent);
    server.wait_stats("no connections", WAIT, counts(2, 0, 0));
    assert_served_and_closed(&journal, &[2], 2);
}
