//! A handler that puts several MiB and closes at once: every byte arrives, in order, before
//! the close, whatever the pace of the client.

mod support;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use openssl::ssl::{ShutdownState, SslStream, SslVersion};
use sslify::DisconnectReason;
use support::{connect, connect_with, connector, pattern_byte, send, Event, Reply, TestServer};

const BULK: usize = 8 << 20;

fn bulk_server() -> TestServer {
    TestServer::start(support::options(), Reply::Bulk { bytes: BULK })
}

/// Reads until the server's close_notify, sleeping `pause` after each of the first `slow`
/// reads of up to 64 KiB.
fn read_all(stream: &mut SslStream<TcpStream>, slow: usize, pause: Duration) -> Vec<u8> {
    let mut out = Vec::with_capacity(BULK);
    let mut buf = vec![0u8; 64 << 10];
    let mut reads = 0;
    loop {
        // Fill the buffer as far as the stream allows, so that each slow read takes 64 KiB.
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) => panic!(
                "read failed after {} bytes: {}",
                out.len(),
                support::error_text(&e)
            ),
        };
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        reads += 1;
        if reads <= slow {
            let mut filled = n;
            while filled < buf.len() {
                match stream.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(m) => {
                        out.extend_from_slice(&buf[filled..filled + m]);
                        filled += m;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("read failed: {}", support::error_text(&e)),
                }
            }
            thread::sleep(pause);
        }
    }
    assert!(
        stream.get_shutdown().contains(ShutdownState::RECEIVED),
        "the stream ended without the server's close_notify after {} bytes",
        out.len()
    );
    out
}

/// The received bytes are the whole pattern, in order.
fn assert_pattern(data: &[u8]) {
    assert_eq!(data.len(), BULK, "wrong number of bytes received");
    if let Some(offset) = (0..data.len()).find(|&i| data[i] != pattern_byte(i)) {
        panic!(
            "byte {offset} is {} instead of {}",
            data[offset],
            pattern_byte(offset)
        );
    }
}

fn assert_closed_by_handler(server: &TestServer, count: usize) {
    let journal = server
        .journal
        .wait_disconnects(count, Duration::from_secs(10));
    assert_eq!(journal.len(), count);
    for (id, events) in &journal {
        assert!(
            matches!(
                events.as_slice(),
                [
                    Event::SslDone { .. },
                    Event::Disconnect(DisconnectReason::ClosedByHandler)
                ]
            ),
            "connection {id}: {events:#?}"
        );
    }
}

#[test]
fn bulk_put_arrives_whole_before_close() {
    let server = bulk_server();
    for version in [SslVersion::TLS1_3, SslVersion::TLS1_2] {
        let mut stream =
            connect_with(&connector(None, Some(version)), server.addr).expect("client handshake");
        let data = read_all(&mut stream, 0, Duration::ZERO);
        assert_pattern(&data);
    }
    assert_closed_by_handler(&server, 2);
}

#[test]
fn slow_reader_gets_every_byte() {
    let server = bulk_server();
    let mut stream = connect(server.addr, None).expect("client handshake");
    let data = read_all(&mut stream, 6, Duration::from_millis(80));
    assert_pattern(&data);
    drop(stream);
    assert_closed_by_handler(&server, 1);
}

#[test]
fn input_during_the_close_does_not_cut_the_output() {
    // The server reads nothing more once it is closing; what the client sends meanwhile
    // must not make the server's socket reset the connection before everything is read.
    let server = bulk_server();
    let mut stream = connect(server.addr, None).expect("client handshake");
    send(&mut stream, &[b'x'; 32 << 10]).unwrap();
    let data = read_all(&mut stream, 4, Duration::from_millis(50));
    assert_pattern(&data);
    drop(stream);

    let journal = server.journal.wait_disconnects(1, Duration::from_secs(10));
    let events = &journal[&1];
    assert!(
        matches!(events.first(), Some(Event::SslDone { .. })),
        "{events:#?}"
    );
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnect(DisconnectReason::ClosedByHandler))
        ),
        "{events:#?}"
    );
}

#[test]
fn client_that_stops_reading_delays_no_one() {
    let server = bulk_server();
    // This client completes its handshake and then reads nothing: the server's writes to it
    // fill the socket buffers and stay pending.
    let stuck = connect(server.addr, None).expect("stuck client handshake");

    let mut stream = connect(server.addr, None).expect("second client handshake");
    let data = read_all(&mut stream, 0, Duration::ZERO);
    assert_pattern(&data);
    drop(stream);

    let journal = server.journal.wait_disconnects(1, Duration::from_secs(10));
    assert!(
        matches!(
            journal[&2].as_slice(),
            [
                Event::SslDone { .. },
                Event::Disconnect(DisconnectReason::ClosedByHandler)
            ]
        ),
        "{journal:#?}"
    );
    assert!(
        matches!(journal[&1].as_slice(), [Event::SslDone { .. }]),
        "the stuck client's connection should still be open: {journal:#?}"
    );
    drop(stuck);
}
