//! A client that finishes sending before it has read the answers: it still gets every
//! answer to what it sent, then the server's close. Under TLS the client's close_notify
//! ends its half; on a plaintext STARTTLS connection the end of its TCP stream does. (A
//! bare TCP close under TLS, which may be a truncation, is covered by bad_input.rs.)

mod support;

#[path = "../examples/proto/mod.rs"]
mod proto;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use actix::prelude::*;
use openssl::ssl::{ShutdownState, SslVersion};
use sslify::{CertRejected, ClientInput, Disconnect, DisconnectReason, SslDone};
use support::served::Served;
use support::starttls::{PlainClient, PlainFirstServer};

use crate::proto::{LineServer, Note, Smtp};

/// The longest wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);
/// Connections per TLS scenario.
const TLS_ROUNDS: usize = 100;
/// Connections per plaintext scenario.
const PLAIN_ROUNDS: usize = 30;

/// What [`Answerer`] saw of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    SslDone,
    Input(String),
    /// The reason, and the bytes put that were never written.
    Disconnect(DisconnectReason, usize),
}

/// Echoes every input; with `greeting`, first puts that line on `SslDone`, as protocols
/// whose server speaks first do.
struct Answerer {
    greeting: Option<&'static str>,
    heard: mpsc::Sender<(u64, Heard)>,
}

impl Actor for Answerer {
    type Context = Context<Self>;
}

impl Handler<SslDone> for Answerer {
    type Result = ();
    fn handle(&mut self, done: SslDone, _: &mut Context<Self>) {
        let _ = self.heard.send((done.id.0, Heard::SslDone));
        if let Some(greeting) = self.greeting {
            done.handle.put(greeting);
        }
    }
}

impl Handler<ClientInput> for Answerer {
    type Result = ();
    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        let text = String::from_utf8_lossy(&input.data).into_owned();
        let _ = self.heard.send((input.id.0, Heard::Input(text)));
        input.handle.put(input.data);
    }
}

impl Handler<CertRejected> for Answerer {
    type Result = ();
    fn handle(&mut self, _: CertRejected, _: &mut Context<Self>) {}
}

impl Handler<Disconnect> for Answerer {
    type Result = ();
    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        let _ = self
            .heard
            .send((gone.id.0, Heard::Disconnect(gone.reason, gone.unsent)));
    }
}

/// Sends `line` and close_notify at once, without reading in between; returns what came
/// back before the server's close, and whether that close was a close_notify.
fn send_then_close_notify(addr: SocketAddr, line: &[u8]) -> (Vec<u8>, bool) {
    let connector = support::connector(None, Some(SslVersion::TLS1_3));
    let mut stream = support::connect_with(&connector, addr).expect("handshake");
    stream.write_all(line).unwrap();
    stream.flush().unwrap();
    stream.shutdown().expect("close_notify sent");
    let (answer, end) = support::read_to_end(&mut stream);
    assert_eq!(
        end,
        Ok(()),
        "the stream ended with an error after {} bytes",
        answer.len()
    );
    (
        answer,
        stream.get_shutdown().contains(ShutdownState::RECEIVED),
    )
}

/// Everything heard so far, by connection.
fn drain(heard: &Receiver<(u64, Heard)>, into: &mut BTreeMap<u64, Vec<Heard>>) {
    while let Ok((id, event)) = heard.try_recv() {
        into.entry(id).or_default().push(event);
    }
}

fn close_notify_right_after_a_line_still_gets_the_answers(
    workers: usize,
    greeting: Option<&'static str>,
) {
    let (tx, heard) = mpsc::channel();
    let server = Served::start(support::options().workers(workers), move || Answerer {
        greeting,
        heard: tx,
    });
    let what = format!("TLS 1.3, {workers} workers, greeting {greeting:?}");
    let mut by_id = BTreeMap::new();
    for id in 1..=TLS_ROUNDS as u64 {
        let line = format!("connection {id}, then close_notify\n");
        let (answer, close_notify) = send_then_close_notify(server.addr, line.as_bytes());
        let expected = format!("{}{line}", greeting.unwrap_or(""));
        if answer != expected.as_bytes() {
            // Let the server's record of the connection arrive before showing it.
            std::thread::sleep(Duration::from_millis(100));
            drain(&heard, &mut by_id);
            panic!(
                "{what}, connection {id}: got {:?} instead of {expected:?} before the \
                 close; the handler saw {:?}",
                String::from_utf8_lossy(&answer),
                by_id.get(&id)
            );
        }
        assert!(
            close_notify,
            "{what}, connection {id}: the server closed without close_notify"
        );
    }

    let deadline = Instant::now() + WAIT;
    let ended = |by_id: &BTreeMap<u64, Vec<Heard>>| {
        by_id
            .values()
            .filter(|events| matches!(events.last(), Some(Heard::Disconnect(..))))
            .count()
    };
    while ended(&by_id) < TLS_ROUNDS {
        let left = deadline.saturating_duration_since(Instant::now());
        let (id, event) = heard
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{what}: connections did not end: {by_id:#?}"));
        by_id.entry(id).or_default().push(event);
    }
    for id in 1..=TLS_ROUNDS as u64 {
        let line = format!("connection {id}, then close_notify\n");
        assert_eq!(
            by_id[&id],
            [
                Heard::SslDone,
                Heard::Input(line),
                Heard::Disconnect(DisconnectReason::PeerClosed, 0)
            ],
            "{what}, connection {id}"
        );
    }
}

#[test]
fn tls13_close_notify_right_after_a_line_still_gets_the_echo_one_worker() {
    close_notify_right_after_a_line_still_gets_the_answers(1, None);
}

#[test]
fn tls13_close_notify_right_after_a_line_still_gets_the_echo_two_workers() {
    close_notify_right_after_a_line_still_gets_the_answers(2, None);
}

#[test]
fn tls13_close_notify_right_after_a_line_still_gets_greeting_and_echo_one_worker() {
    close_notify_right_after_a_line_still_gets_the_answers(1, Some("hello\n"));
}

#[test]
fn tls13_close_notify_right_after_a_line_still_gets_greeting_and_echo_two_workers() {
    close_notify_right_after_a_line_still_gets_the_answers(2, Some("hello\n"));
}

/// The notes of connection `id` up to its end.
fn notes_until_end(notes: &Receiver<Note>, ended: &mut Vec<(u64, DisconnectReason)>, id: u64) {
    let deadline = Instant::now() + WAIT;
    while !ended.iter().any(|(done, _)| *done == id) {
        let left = deadline.saturating_duration_since(Instant::now());
        match notes.recv_timeout(left) {
            Ok(Note::Disconnected { id, reason }) => ended.push((id.0, reason)),
            Ok(_) => {}
            Err(_) => panic!("connection {id} did not end within {WAIT:?}; ended: {ended:?}"),
        }
    }
}

fn plaintext_half_close_still_gets_the_reply(workers: usize) {
    let (tx, notes) = mpsc::channel();
    let server = PlainFirstServer::start(support::options().workers(workers), move || {
        LineServer::new(Smtp::default()).with_observer(tx)
    });
    let mut ended = Vec::new();
    for round in 1..=PLAIN_ROUNDS {
        // The command and the end of the stream go out before the greeting is read.
        let mut client = PlainClient::connect(server.addr);
        client.send(b"NOOP\r\n");
        client.tcp.shutdown(Shutdown::Write).unwrap();
        let greeting = client.line();
        let reply = client.line();
        let after = client.line();
        assert_eq!(
            greeting.as_deref().ok(),
            Some("220 localhost ESMTP sslify example"),
            "{workers} workers, round {round}: {greeting:?}"
        );
        assert_eq!(
            reply.as_deref().ok(),
            Some("250 2.0.0 OK"),
            "{workers} workers, round {round}: no answer to NOOP before the close: \
             {reply:?}"
        );
        let after = after.expect_err("nothing after the answer");
        assert_eq!(
            after.kind(),
            std::io::ErrorKind::UnexpectedEof,
            "{workers} workers, round {round}: the server should close after answering: \
             {after}"
        );
        notes_until_end(&notes, &mut ended, round as u64);
    }
    ended.sort_by_key(|(id, _)| *id);
    let reasons: Vec<&DisconnectReason> = ended.iter().map(|(_, reason)| reason).collect();
    assert_eq!(
        reasons,
        vec![&DisconnectReason::PeerClosed; PLAIN_ROUNDS],
        "{workers} workers: {ended:?}"
    );
}

#[test]
fn plaintext_half_close_still_gets_the_reply_one_worker() {
    plaintext_half_close_still_gets_the_reply(1);
}

#[test]
fn plaintext_half_close_still_gets_the_reply_two_workers() {
    plaintext_half_close_still_gets_the_reply(2);
}
