//! Bytes that are not TLS, handshakes cut short, and the ways an established connection
//! can end from the client's side. Each ends one connection with a reason, and the
//! listener serves the next client as if nothing happened.

mod support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use sslify::DisconnectReason;
use support::{client_hello, connect, send, Event, Reply, TestServer};

/// Deterministic pseudo-random bytes (xorshift64).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn echo_server() -> TestServer {
    TestServer::start(support::options(), Reply::Echo)
}

fn raw_client(server: &TestServer) -> TcpStream {
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    tcp
}

/// Reads until the server closes the socket; fails if it stays open for seconds.
fn wait_for_close(tcp: &mut TcpStream) {
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
                panic!("the server did not close the connection")
            }
            Err(_) => return,
        }
    }
}

/// Waits for connection `id` to end and returns its events.
fn events_of(server: &TestServer, id: u64) -> Vec<Event> {
    let journal = server
        .journal
        .wait_disconnects(id as usize, Duration::from_secs(10));
    journal
        .get(&id)
        .cloned()
        .unwrap_or_else(|| panic!("no events for connection {id}: {journal:#?}"))
}

/// The reason of a connection that ended in the handshake with nothing else reported.
fn handshake_failure(server: &TestServer, id: u64) -> String {
    match events_of(server, id).as_slice() {
        [Event::Disconnect(DisconnectReason::HandshakeFailed(reason))] => {
            assert!(!reason.trim().is_empty(), "empty handshake failure reason");
            reason.clone()
        }
        events => panic!("connection {id} should only have failed its handshake: {events:#?}"),
    }
}

/// A normal client, connection `id`, gets its line echoed and ends with close_notify.
fn assert_serves(server: &TestServer, id: u64) {
    let mut stream = connect(server.addr, None).expect("normal client handshake");
    send(&mut stream, b"still serving?\n").unwrap();
    let mut echo = [0u8; 15];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"still serving?\n");
    stream.shutdown().unwrap();

    let events = events_of(server, id);
    let input: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Event::Input { data, tls: true } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(input, b"still serving?\n");
    assert!(
        matches!(events.first(), Some(Event::SslDone { .. })),
        "normal client {id}: {events:#?}"
    );
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnect(DisconnectReason::PeerClosed))
        ),
        "normal client {id}: {events:#?}"
    );
}

#[test]
fn http_request_fails_the_handshake() {
    let server = echo_server();
    let mut tcp = raw_client(&server);
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    wait_for_close(&mut tcp);

    let reason = handshake_failure(&server, 1);
    assert!(
        reason.contains("http request"),
        "reason does not say it was HTTP: {reason:?}"
    );
    assert_serves(&server, 2);
}

#[test]
fn random_bytes_fail_the_handshake() {
    let server = echo_server();
    let mut id = 0;
    for seed in [0x9e37_79b9_7f4a_7c15, 0x0123_4567_89ab_cdef, 42] {
        let bytes = noise(seed, 600);
        let mut tcp = raw_client(&server);
        tcp.write_all(&bytes).unwrap();
        wait_for_close(&mut tcp);
        id += 1;
        let reason = handshake_failure(&server, id);
        // None of these starts with a handshake record header, so OpenSSL rejects the
        // first record's version field.
        assert!(
            reason.contains("wrong version number"),
            "seed {seed:#x} (first byte {:#04x}): {reason:?}",
            bytes[0]
        );
    }
    assert_serves(&server, id + 1);
}

#[test]
fn garbage_inside_a_handshake_record_fails_the_handshake() {
    let server = echo_server();
    let mut record = vec![22, 3, 1, 0, 200];
    record.extend(noise(7, 200));
    let mut tcp = raw_client(&server);
    tcp.write_all(&record).unwrap();
    wait_for_close(&mut tcp);

    let reason = handshake_failure(&server, 1);
    assert!(
        reason.contains("unexpected message"),
        "garbage handshake message: {reason:?}"
    );
    assert_serves(&server, 2);
}

#[test]
fn close_in_the_middle_of_the_client_hello() {
    let server = echo_server();
    let hello = client_hello();
    let mut tcp = raw_client(&server);
    tcp.write_all(&hello[..hello.len() / 2]).unwrap();
    tcp.shutdown(Shutdown::Write).unwrap();
    wait_for_close(&mut tcp);

    let reason = handshake_failure(&server, 1);
    assert!(
        reason.contains("closed"),
        "half hello then close: {reason:?}"
    );
    assert_serves(&server, 2);
}

#[test]
fn close_after_the_client_hello() {
    let server = echo_server();
    let hello = client_hello();
    let mut tcp = raw_client(&server);
    tcp.write_all(&hello).unwrap();
    // The server answers the ClientHello and waits for the client's next flight.
    let mut first = [0u8; 1];
    assert_eq!(tcp.peek(&mut first).unwrap(), 1);
    assert_eq!(first[0], 22, "server's answer is not a handshake record");
    tcp.shutdown(Shutdown::Write).unwrap();
    wait_for_close(&mut tcp);

    let reason = handshake_failure(&server, 1);
    assert!(
        reason.contains("closed"),
        "whole hello then close: {reason:?}"
    );
    assert_serves(&server, 2);
}

#[test]
fn reset_after_the_client_hello() {
    let server = echo_server();
    let hello = client_hello();
    let tcp = raw_client(&server);
    (&tcp).write_all(&hello).unwrap();
    let mut first = [0u8; 1];
    assert_eq!(tcp.peek(&mut first).unwrap(), 1);
    // Closing a socket with unread input makes the kernel send a reset instead of a FIN.
    drop(tcp);

    let reason = handshake_failure(&server, 1);
    assert!(
        reason.to_lowercase().contains("reset"),
        "whole hello then reset: {reason:?}"
    );
    assert_serves(&server, 2);
}

/// Connects and has one line echoed.
fn established(server: &TestServer) -> openssl::ssl::SslStream<TcpStream> {
    let mut stream = connect(server.addr, None).expect("handshake");
    send(&mut stream, b"hello\n").unwrap();
    let mut echo = [0u8; 6];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"hello\n");
    stream
}

fn assert_ended_with(server: &TestServer, id: u64, expected: DisconnectReason) {
    let events = events_of(server, id);
    let input: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Event::Input { data, tls: true } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(input, b"hello\n", "connection {id}: {events:#?}");
    assert!(
        matches!(events.first(), Some(Event::SslDone { .. })),
        "connection {id}: {events:#?}"
    );
    match events.last() {
        Some(Event::Disconnect(reason)) => assert_eq!(*reason, expected, "{events:#?}"),
        other => panic!("connection {id} did not end with Disconnect: {other:?}"),
    }
}

#[test]
fn close_notify_from_the_client_is_peer_closed() {
    let server = echo_server();
    let mut stream = established(&server);
    stream.shutdown().unwrap();
    assert_ended_with(&server, 1, DisconnectReason::PeerClosed);
    assert_serves(&server, 2);
}

#[test]
fn tcp_close_without_close_notify_is_peer_truncated() {
    let server = echo_server();
    let mut stream = established(&server);
    stream.get_ref().shutdown(Shutdown::Write).unwrap();
    wait_for_close(stream.get_mut());
    assert_ended_with(&server, 1, DisconnectReason::PeerTruncated);
    assert_serves(&server, 2);
}

#[test]
fn reset_after_the_handshake_is_peer_reset() {
    let server = echo_server();
    let mut stream = established(&server);
    send(&mut stream, b"unread\n").unwrap();
    // Wait until the echo is in the socket's receive queue, then close without reading it.
    let mut first = [0u8; 1];
    assert_eq!(stream.get_ref().peek(&mut first).unwrap(), 1);
    drop(stream);

    let events = events_of(&server, 1);
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnect(DisconnectReason::PeerReset))
        ),
        "{events:#?}"
    );
    assert_serves(&server, 2);
}
