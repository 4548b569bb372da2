//! The idle timeout of established connections and the default handshake deadline. (A
//! custom handshake deadline is covered by stalled_clients.rs.)

mod support;

use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use actix::prelude::*;
use openssl::ssl::{ShutdownState, SslStream};
use sslify::{CertRejected, ClientInput, Disconnect, DisconnectReason, Options, SslDone};
use support::served::Served;
use support::{connect, connector, send, Event, Reply, TestServer};

/// The longest wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_millis(300);

/// Reads until the server's close_notify; returns what came before it.
fn read_until_close_notify(stream: &mut SslStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    let (data, end) = support::read_to_end(stream);
    assert_eq!(end, Ok(()), "the stream ended with an error");
    assert!(
        stream.get_shutdown().contains(ShutdownState::RECEIVED),
        "the server closed without close_notify"
    );
    data
}

/// The events of connection `id` once it has ended.
fn ended(server: &TestServer, id: u64) -> Vec<Event> {
    let journal = server.journal.wait_disconnects(id as usize, WAIT);
    journal[&id].clone()
}

/// Whether connection `id` has ended yet.
fn has_ended(server: &TestServer, id: u64) -> bool {
    server.journal.snapshot().get(&id).is_some_and(|events| {
        events
            .iter()
            .any(|event| matches!(event, Event::Disconnect(_)))
    })
}

#[test]
fn idle_connection_is_closed_with_close_notify_and_idle_timed_out() {
    let server = TestServer::start(support::options().idle_timeout(IDLE), Reply::Echo);
    let mut stream = connect(server.addr, None).expect("handshake");

    let data = read_until_close_notify(&mut stream);
    assert!(data.is_empty(), "unexpected bytes: {data:?}");
    let _ = stream.shutdown();

    let events = ended(&server, 1);
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::SslDone { .. },
                Event::Disconnect(DisconnectReason::IdleTimedOut)
            ]
        ),
        "{events:#?}"
    );
}

#[test]
fn client_traffic_keeps_the_connection_alive_past_the_idle_timeout() {
    let server = TestServer::start(support::options().idle_timeout(IDLE), Reply::Echo);
    let mut stream = connect(server.addr, None).expect("handshake");

    // A line every 100 ms for six times the idle timeout.
    let lines = 18;
    for n in 0..lines {
        let line = format!("line {n}\n");
        send(&mut stream, line.as_bytes()).unwrap();
        let mut echo = vec![0u8; line.len()];
        stream.read_exact(&mut echo).unwrap_or_else(|e| {
            panic!(
                "line {n}: the connection ended while in use: {}",
                support::error_text(&e)
            )
        });
        assert_eq!(echo, line.as_bytes());
        assert!(!has_ended(&server, 1), "ended while in use");
        thread::sleep(Duration::from_millis(100));
    }

    // Quiet from now on: the idle timeout closes it.
    let data = read_until_close_notify(&mut stream);
    assert!(data.is_empty(), "unexpected bytes: {data:?}");
    let events = ended(&server, 1);
    let inputs = events
        .iter()
        .filter(|event| matches!(event, Event::Input { .. }))
        .count();
    assert!(inputs >= 1, "{events:#?}");
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnect(DisconnectReason::IdleTimedOut))
        ),
        "{events:#?}"
    );
}

/// A handler that writes: `bulk` bytes at once when the handshake is done, then `ticks`
/// lines, one every 100 ms. It reports how its connection ended.
struct Talker {
    bulk: usize,
    ticks: usize,
    ticked: usize,
    ended: Sender<DisconnectReason>,
}

impl Talker {
    fn server(
        options: Options,
        bulk: usize,
        ticks: usize,
    ) -> (Served<Talker>, Receiver<DisconnectReason>) {
        let (tx, rx) = mpsc::channel();
        let server = Served::start(options, move || Talker {
            bulk,
            ticks,
            ticked: 0,
            ended: tx,
        });
        (server, rx)
    }
}

impl Actor for Talker {
    type Context = Context<Self>;
}

impl Handler<SslDone> for Talker {
    type Result = ();
    fn handle(&mut self, done: SslDone, ctx: &mut Context<Self>) {
        let handle = done.handle;
        let mut left = self.bulk;
        while left > 0 {
            let n = left.min(1 << 20);
            handle.put(vec![b'b'; n]);
            left -= n;
        }
        if self.ticks > 0 {
            ctx.run_interval(Duration::from_millis(100), move |act, _| {
                if act.ticked < act.ticks {
                    act.ticked += 1;
                    handle.put(&b"tick\n"[..]);
                }
            });
        }
    }
}

impl Handler<ClientInput> for Talker {
    type Result = ();
    fn handle(&mut self, _: ClientInput, _: &mut Context<Self>) {}
}

impl Handler<CertRejected> for Talker {
    type Result = ();
    fn handle(&mut self, _: CertRejected, _: &mut Context<Self>) {}
}

impl Handler<Disconnect> for Talker {
    type Result = ();
    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        let _ = self.ended.send(gone.reason);
    }
}

#[test]
fn server_writes_alone_keep_the_connection_alive_past_the_idle_timeout() {
    // 18 ticks, 100 ms apart, last six times the idle timeout; the client only reads.
    let ticks = 18;
    let (server, ended) = Talker::server(support::options().idle_timeout(IDLE), 0, ticks);
    let mut stream = connect(server.addr, None).expect("handshake");

    let data = read_until_close_notify(&mut stream);
    assert_eq!(
        data,
        b"tick\n".repeat(ticks),
        "the connection did not last through all ticks"
    );
    let _ = stream.shutdown();
    assert_eq!(
        ended.recv_timeout(WAIT).expect("the connection ended"),
        DisconnectReason::IdleTimedOut
    );
}

#[test]
fn idle_timeout_does_not_cut_a_slow_handshake() {
    let server = TestServer::start(
        support::options().idle_timeout(Duration::from_millis(100)),
        Reply::Echo,
    );
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    // Five idle timeouts pass before the ClientHello; only the handshake deadline (10 s by
    // default) applies until the handshake is done.
    thread::sleep(Duration::from_millis(500));
    let mut stream = connector(None, None)
        .connect("localhost", tcp)
        .expect("a slow but finished handshake is served");
    send(&mut stream, b"late\n").unwrap();
    let mut echo = [0u8; 5];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"late\n");

    // And then the idle timeout applies.
    let data = read_until_close_notify(&mut stream);
    assert!(data.is_empty());
    let events = ended(&server, 1);
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::SslDone { .. },
                Event::Input { .. },
                Event::Disconnect(DisconnectReason::IdleTimedOut)
            ]
        ),
        "{events:#?}"
    );
}

#[test]
fn idle_timeout_closes_a_connection_whose_client_stopped_reading() {
    // The handler puts far more than the socket buffers hold; the client reads none of it,
    // so after the buffers fill no byte moves either way.
    let (server, ended) = Talker::server(support::options().idle_timeout(IDLE), 8 << 20, 0);
    let stream = connect(server.addr, None).expect("handshake");

    // The idle timeout, then at most the 2 s the server waits for a closing client, are
    // well within this limit.
    let reason = ended.recv_timeout(WAIT).unwrap_or_else(|_| {
        panic!(
            "a connection with no bytes moving for {WAIT:?} was not closed by an idle \
             timeout of {IDLE:?}; listener: {:?}",
            server.stats()
        )
    });
    assert_eq!(reason, DisconnectReason::IdleTimedOut);
    drop(stream);
}

#[test]
fn default_handshake_deadline_cuts_a_silent_client() {
    let options = support::options();
    let deadline = options.build().unwrap().handshake_timeout();
    assert_eq!(deadline, Duration::from_secs(10), "the documented default");

    let server = TestServer::start(options, Reply::Echo);
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    let started = Instant::now();
    tcp.set_read_timeout(Some(deadline + WAIT)).unwrap();
    let mut buf = [0u8; 64];
    match tcp.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the server sent {n} bytes to a client that sent none"),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            panic!(
                "a silent client was still connected after {:?}",
                started.elapsed()
            )
        }
        Err(_) => {}
    }

    let events = ended(&server, 1);
    assert!(
        matches!(
            events.as_slice(),
            [Event::Disconnect(DisconnectReason::HandshakeTimedOut)]
        ),
        "{events:#?}"
    );
}

/// What [`Sluggard`] reports when its connection ends.
#[derive(Debug)]
struct SluggardReport {
    reason: DisconnectReason,
    /// Input bytes received in all.
    received: usize,
    /// When the connection ended.
    at: Instant,
}

/// A handler that takes [`SLUGGISH`] over each input while `slow` is set, blocking its
/// thread, and writes nothing.
struct Sluggard {
    slow: Arc<AtomicBool>,
    received: usize,
    ended: Sender<SluggardReport>,
}

/// How long [`Sluggard`] takes over one input: longer than the idle timeout.
const SLUGGISH: Duration = Duration::from_millis(1500);

impl Actor for Sluggard {
    type Context = Context<Self>;
}

impl Handler<SslDone> for Sluggard {
    type Result = ();
    fn handle(&mut self, _: SslDone, _: &mut Context<Self>) {}
}

impl Handler<ClientInput> for Sluggard {
    type Result = ();
    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        self.received += input.data.len();
        if self.slow.load(Ordering::Acquire) {
            thread::sleep(SLUGGISH);
        }
    }
}

impl Handler<CertRejected> for Sluggard {
    type Result = ();
    fn handle(&mut self, _: CertRejected, _: &mut Context<Self>) {}
}

impl Handler<Disconnect> for Sluggard {
    type Result = ();
    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        let _ = self.ended.send(SluggardReport {
            reason: gone.reason,
            received: self.received,
            at: Instant::now(),
        });
    }
}

fn a_busy_handler_is_not_an_idle_peer(workers: usize) {
    let idle = Duration::from_secs(1);
    let slow = Arc::new(AtomicBool::new(true));
    let (tx, ended) = mpsc::channel();
    let handler_slow = Arc::clone(&slow);
    let server = Served::start(
        support::options().idle_timeout(idle).workers(workers),
        move || Sluggard {
            slow: handler_slow,
            received: 0,
            ended: tx,
        },
    );
    let mut stream = connect(server.addr, None).expect("handshake");

    // A small write every 50 ms for four idle timeouts. The handler, 1.5 s per input,
    // falls behind at once, so the connection stops reading while the client keeps
    // sending: no byte is read for longer than the idle timeout, yet the peer is anything
    // but idle.
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < idle * 4 {
        send(&mut stream, b"tick\n").unwrap_or_else(|e| {
            panic!(
                "{workers} workers: a write after {:?} failed: {}; the server's end: {:?}",
                started.elapsed(),
                support::error_text(&e),
                ended.try_recv()
            )
        });
        sent += 5;
        if let Ok(report) = ended.try_recv() {
            panic!(
                "{workers} workers: the connection of a client writing every 50 ms ended \
                 after {:?}: {report:?}",
                report.at - started
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
    let sending = started.elapsed();

    // The handler catches up; once everything is read and handled, the connection is
    // idle for real and the timeout closes it.
    slow.store(false, Ordering::Release);
    let data = read_until_close_notify(&mut stream);
    assert!(data.is_empty(), "unexpected bytes: {data:?}");
    let report = ended.recv_timeout(WAIT).expect("the connection ended");
    assert!(
        report.at - started >= sending,
        "{workers} workers: the connection ended {:?} after the first write, while the \
         client was still writing: {report:?}",
        report.at - started
    );
    assert_eq!(report.reason, DisconnectReason::IdleTimedOut, "{report:?}");
    assert_eq!(report.received, sent, "{workers} workers: {report:?}");
}

#[test]
fn a_busy_handler_is_not_an_idle_peer_on_its_own_thread() {
    a_busy_handler_is_not_an_idle_peer(2);
}

#[test]
fn a_busy_handler_is_not_an_idle_peer_on_the_connections_thread() {
    a_busy_handler_is_not_an_idle_peer(1);
}
