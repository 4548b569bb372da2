//! Clients that stop talking: silent after connect, or silent after their ClientHello.
//! Neither may delay anyone else, and the handshake deadline cuts both off.

mod support;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use openssl::ssl::{HandshakeError, MidHandshakeSslStream, ShutdownState, SslStream};
use sslify::DisconnectReason;
use support::{client_hello, connect, connector, read_to_end, Event, Reply, TestServer};

/// How many stalled clients of each kind stay open while a normal client is served.
const STALLED: usize = 4;

/// A connected socket that will send nothing.
fn silent_client(server: &TestServer) -> TcpStream {
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp
}

/// A client transport whose reads report "nothing yet" while `hold` is set, so that the
/// client's handshake stops right after it has sent its ClientHello.
#[derive(Debug)]
struct Held {
    tcp: TcpStream,
    hold: bool,
}

impl Read for Held {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.hold {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.tcp.read(buf)
    }
}

impl Write for Held {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.tcp.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// A client that sent its ClientHello and then stopped, before reading the server's answer.
fn hello_then_silent(server: &TestServer) -> MidHandshakeSslStream<Held> {
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ssl = connector(Some("valid"), None)
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    match ssl.connect(Held { tcp, hold: true }) {
        Err(HandshakeError::WouldBlock(mid)) => mid,
        Err(other) => panic!("client handshake failed instead of waiting: {other}"),
        Ok(_) => panic!("client handshake finished without reading the server's answer"),
    }
}

/// Whether the server has closed `tcp`: EOF or an error on read. Reads and discards
/// whatever the server sent first; waits at most `wait` for the server's closing.
fn closed_by_server(tcp: &mut TcpStream, wait: Duration) -> bool {
    tcp.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Whether a non-blocking read finds the socket open with nothing to read.
fn open_and_quiet(tcp: &TcpStream) -> bool {
    tcp.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let quiet = matches!((&*tcp).read(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
    tcp.set_nonblocking(false).unwrap();
    quiet
}

/// Completes a handshake that stopped after the ClientHello and reads until the server closes.
fn resume(mut mid: MidHandshakeSslStream<Held>) -> (SslStream<Held>, Vec<u8>) {
    mid.get_mut().hold = false;
    let mut stream = match mid.handshake() {
        Ok(stream) => stream,
        Err(e) => panic!("stalled handshake could not be resumed: {e}"),
    };
    let mut data = Vec::new();
    stream
        .read_to_end(&mut data)
        .expect("resumed client reads until the server closes");
    assert!(
        stream.get_shutdown().contains(ShutdownState::RECEIVED),
        "resumed client did not get close_notify"
    );
    (stream, data)
}

fn verdict_server() -> TestServer {
    TestServer::start(
        support::options().request_client_cert(),
        Reply::Verdict {
            close_after: Duration::from_millis(20),
        },
    )
}

/// The connections that have ended, once at least one has, with their events.
fn ended_connections(server: &TestServer) -> Vec<(u64, Vec<Event>)> {
    server
        .journal
        .wait_disconnects(1, Duration::from_secs(5))
        .into_iter()
        .filter(|(_, events)| matches!(events.last(), Some(Event::Disconnect(_))))
        .collect()
}

fn assert_served_valid(events: &[Event]) {
    assert!(
        matches!(
            events,
            [
                Event::SslDone { report, .. },
                Event::Disconnect(DisconnectReason::ClosedByHandler)
            ] if report.presented && report.valid
        ),
        "unexpected events for a served client: {events:#?}"
    );
}

#[test]
fn normal_client_is_served_while_others_stall() {
    let server = verdict_server();

    let mut silent: Vec<TcpStream> = (0..STALLED).map(|_| silent_client(&server)).collect();
    let mut stalled: Vec<MidHandshakeSslStream<Held>> =
        (0..STALLED).map(|_| hello_then_silent(&server)).collect();
    // The server has answered every stalled ClientHello, so each of those handshakes is in
    // progress on the server when the normal client arrives.
    for mid in &stalled {
        let mut first = [0u8; 1];
        let seen = mid
            .get_ref()
            .tcp
            .peek(&mut first)
            .expect("server answered the ClientHello");
        assert_eq!(seen, 1);
        assert_eq!(first[0], 22, "server's answer is not a handshake record");
    }

    let mut client = connect(server.addr, Some("valid")).expect("normal client handshake");
    let (line, end) = read_to_end(&mut client);
    assert_eq!(end, Ok(()), "normal client did not see a clean close");
    // Closing lets the server's linger after close_notify end at once.
    drop(client);
    let line = String::from_utf8(line).unwrap();
    assert!(
        line.starts_with('[') && line.ends_with("] Yeah! You're authenticated!\n"),
        "normal client got {line:?}"
    );

    let served = ended_connections(&server);
    assert_eq!(
        served.len(),
        1,
        "only the normal client may have ended: {served:#?}"
    );
    assert_eq!(
        line,
        format!("[{}] Yeah! You're authenticated!\n", served[0].0)
    );
    assert_served_valid(&served[0].1);

    // The stalled clients are all still connected and have had no event at all.
    for tcp in &silent {
        assert!(open_and_quiet(tcp), "a silent client was disconnected");
    }
    let journal = server.journal.snapshot();
    assert_eq!(journal.len(), 1, "stalled clients got events: {journal:#?}");

    // And they are still usable: each finishes its handshake now and is served.
    for mid in stalled.drain(..) {
        let (_stream, data) = resume(mid);
        let line = String::from_utf8(data).unwrap();
        assert!(
            line.ends_with("] Yeah! You're authenticated!\n"),
            "resumed client got {line:?}"
        );
    }
    let none = connector(None, None);
    for tcp in silent.drain(..) {
        let mut stream = none.connect("localhost", tcp).expect("late handshake");
        let (data, end) = read_to_end(&mut stream);
        assert_eq!(end, Ok(()));
        let line = String::from_utf8(data).unwrap();
        assert!(
            line.ends_with("] NoClientCertExists\n"),
            "late client got {line:?}"
        );
    }

    let journal = server
        .journal
        .wait_disconnects(1 + 2 * STALLED, Duration::from_secs(10));
    assert_eq!(journal.len(), 1 + 2 * STALLED);
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

fn short_deadline_server() -> TestServer {
    TestServer::start(
        support::options().handshake_timeout(Duration::from_millis(300)),
        Reply::Echo,
    )
}

#[test]
fn silent_client_is_cut_at_the_deadline() {
    let server = short_deadline_server();
    let mut tcp = silent_client(&server);

    assert!(
        closed_by_server(&mut tcp, Duration::from_secs(10)),
        "the server kept a silent client open past its handshake deadline"
    );
    let journal = server.journal.wait_disconnects(1, Duration::from_secs(5));
    let events: Vec<&Event> = journal.values().flatten().collect();
    assert!(
        matches!(
            events.as_slice(),
            [Event::Disconnect(DisconnectReason::HandshakeTimedOut)]
        ),
        "unexpected events: {journal:#?}"
    );
}

#[test]
fn client_silent_after_hello_is_cut_at_the_deadline() {
    let server = short_deadline_server();
    let mid = hello_then_silent(&server);
    let mut tcp = mid.get_ref().tcp.try_clone().unwrap();

    assert!(
        closed_by_server(&mut tcp, Duration::from_secs(10)),
        "the server kept a stalled handshake open past its deadline"
    );
    let journal = server.journal.wait_disconnects(1, Duration::from_secs(5));
    let events: Vec<&Event> = journal.values().flatten().collect();
    assert!(
        matches!(
            events.as_slice(),
            [Event::Disconnect(DisconnectReason::HandshakeTimedOut)]
        ),
        "unexpected events: {journal:#?}"
    );
    drop(mid);
}

#[test]
fn dribbled_hello_is_cut_at_the_absolute_deadline() {
    let server = short_deadline_server();
    let hello = client_hello();
    // Sending a byte every 100 ms keeps the connection busy far longer than the 300 ms
    // deadline; a deadline that restarted with every byte would never fire.
    let sent_at_most = 40;
    assert!(
        hello.len() > sent_at_most,
        "ClientHello is only {} bytes",
        hello.len()
    );

    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut cut_after = None;
    for (sent, byte) in hello.iter().take(sent_at_most).enumerate() {
        if tcp.write_all(&[*byte]).is_err() {
            cut_after = Some(sent);
            break;
        }
        thread::sleep(Duration::from_millis(100));
        if closed_by_server(&mut tcp, Duration::from_millis(1)) {
            cut_after = Some(sent + 1);
            break;
        }
    }
    let cut_after = cut_after.unwrap_or_else(|| {
        panic!(
            "the server was still waiting after {sent_at_most} bytes dribbled over {} ms",
            sent_at_most * 100
        )
    });
    assert!(cut_after < hello.len());

    let journal = server.journal.wait_disconnects(1, Duration::from_secs(5));
    let events: Vec<&Event> = journal.values().flatten().collect();
    assert!(
        matches!(
            events.as_slice(),
            [Event::Disconnect(DisconnectReason::HandshakeTimedOut)]
        ),
        "unexpected events after {cut_after} bytes: {journal:#?}"
    );
}

/// The open-file limit of this process, from /proc (None where it cannot be read).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn five_hundred_silent_and_a_hundred_stalled_do_not_stop_a_normal_client() {
    // Each stalled client holds a socket on both ends, in this one process.
    let (silent_count, stalled_count) = match open_file_limit() {
        Some(limit) if limit >= 1400 => (500, 100),
        limit => {
            println!("open-file limit {limit:?} is below 1400: running 300 silent and 60 stalled");
            (300, 60)
        }
    };
    // Setting up hundreds of stalled handshakes takes seconds on a busy machine; a long
    // deadline keeps them all in progress while the normal client is served.
    let server = TestServer::start(
        support::options()
            .request_client_cert()
            .handshake_timeout(Duration::from_secs(120)),
        Reply::Verdict {
            close_after: Duration::from_millis(20),
        },
    );
    let silent: Vec<TcpStream> = (0..silent_count).map(|_| silent_client(&server)).collect();
    let stalled: Vec<MidHandshakeSslStream<Held>> = (0..stalled_count)
        .map(|_| hello_then_silent(&server))
        .collect();

    let mut client = connect(server.addr, Some("valid")).expect("normal client handshake");
    let (line, end) = read_to_end(&mut client);
    assert_eq!(end, Ok(()), "normal client did not see a clean close");
    let line = String::from_utf8(line).unwrap();
    assert!(
        line.ends_with("] Yeah! You're authenticated!\n"),
        "normal client got {line:?}"
    );

    let served = ended_connections(&server);
    assert_eq!(
        served.len(),
        1,
        "only the normal client may have ended: {served:#?}"
    );
    assert_served_valid(&served[0].1);
    assert!(
        silent.iter().all(open_and_quiet),
        "a silent client was disconnected while the normal one was served"
    );
    drop(stalled);
}
