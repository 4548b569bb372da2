//! Connections dealt to several worker threads: each connection's events still reach the
//! handler in order, SslDone first and Disconnect last, once each.

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use openssl::ssl::{ShutdownState, SslStream};
use sslify::DisconnectReason;
use support::{connect, send, Event, Reply, TestServer};

const CLIENTS: usize = 40;
const LINES: usize = 50;
const WAIT: Duration = Duration::from_secs(30);

/// What client `client` sends, line by line.
fn lines(client: usize) -> Vec<String> {
    (0..LINES)
        .map(|n| format!("client {client:02} line {n:02}\n"))
        .collect()
}

fn read_exactly(stream: &mut SslStream<TcpStream>, len: usize, what: &str) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    stream
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: {}", support::error_text(&e)));
    buf
}

/// One client: sends its lines (each in its own record) and checks the echo, either after
/// each line or after all of them, then closes.
fn client(addr: SocketAddr, client: usize, ping_pong: bool, start: &Barrier) {
    let what = format!("client {client}");
    let mut stream = connect(addr, None).unwrap_or_else(|e| panic!("{what}: handshake: {e}"));
    start.wait();
    let lines = lines(client);
    if ping_pong {
        for line in &lines {
            send(&mut stream, line.as_bytes()).unwrap();
            let echo = read_exactly(&mut stream, line.len(), &what);
            assert_eq!(echo, line.as_bytes(), "{what}");
        }
    } else {
        for line in &lines {
            send(&mut stream, line.as_bytes()).unwrap();
        }
        let all = lines.concat();
        let echo = read_exactly(&mut stream, all.len(), &what);
        assert_eq!(echo, all.as_bytes(), "{what}");
    }
    stream.shutdown().unwrap();
    let (rest, end) = support::read_to_end(&mut stream);
    assert!(rest.is_empty(), "{what}: bytes after the echo: {rest:?}");
    assert_eq!(end, Ok(()), "{what}");
    assert!(
        stream.get_shutdown().contains(ShutdownState::RECEIVED),
        "{what}"
    );
}

fn run(workers: usize, ping_pong: bool) {
    let server = TestServer::start(support::options().workers(workers), Reply::Echo);
    let start = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (addr, start) = (server.addr, Arc::clone(&start));
            thread::spawn(move || client(addr, n, ping_pong, &start))
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client failed");
    }

    let journal = server.journal.wait_disconnects(CLIENTS, WAIT);
    assert_eq!(journal.len(), CLIENTS, "connections");
    let mut seen = BTreeSet::new();
    for (id, events) in &journal {
        let (first, rest) = events.split_first().expect("events");
        let (last, middle) = rest
            .split_last()
            .unwrap_or_else(|| panic!("{id}: {events:#?}"));
        assert!(
            matches!(first, Event::SslDone { .. }),
            "connection {id} did not start with SslDone: {events:#?}"
        );
        assert!(
            matches!(last, Event::Disconnect(DisconnectReason::PeerClosed)),
            "connection {id} did not end with Disconnect(PeerClosed): {events:#?}"
        );
        let mut input = Vec::new();
        for event in middle {
            match event {
                Event::Input { data, tls: true } => input.extend_from_slice(data),
                other => panic!("connection {id}: {other:?} between SslDone and Disconnect"),
            }
        }
        let input = String::from_utf8(input).unwrap();
        let client: usize = input
            .strip_prefix("client ")
            .and_then(|rest| rest.get(..2))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("connection {id}: input {input:?}"));
        assert_eq!(
            input,
            lines(client).concat(),
            "connection {id}: input not what client {client} sent, in order"
        );
        assert!(
            seen.insert(client),
            "client {client} seen on two connections"
        );
    }
    assert_eq!(seen.len(), CLIENTS);
}

#[test]
fn lines_from_40_concurrent_clients_arrive_in_order_on_two_workers() {
    run(2, false);
}

#[test]
fn ping_pong_lines_from_40_concurrent_clients_arrive_in_order_on_four_workers() {
    run(4, true);
}

#[test]
fn lines_from_40_concurrent_clients_arrive_in_order_on_one_worker() {
    run(1, false);
}
