//! The delayed-disconnect demo: the advanced server with its CRL check, and five real TLS
//! clients against it.
//!
//! This runs the handler of the `crl` example (the "advanced" example of
//! POE::Component::SSLify::NonBlock plus the CRL check of its "complicated way": a client
//! certificate is requested, a certificate that verifies is looked up in `certs/crl.pem`,
//! and the handler answers `[id] NoClientCertExists`, `[id] ClientCertInvalid`, `[id] CRL`
//! or `[id] Yeah! You're authenticated!` and disconnects one second later) on a free
//! loopback port, then connects five clients built on the openssl crate, one after the
//! other, each in a blocking thread so that the server's thread stays free:
//!
//! | client | certificate | expected answer |
//! | --- | --- | --- |
//! | valid | `certs/client-valid.pem` | `Yeah! You're authenticated!` |
//! | revoked | `certs/client-revoked.pem` (valid, but listed in the CRL) | `CRL` |
//! | none | none | `NoClientCertExists` |
//! | untrusted | `certs/client-untrusted.pem` (other CA) | `ClientCertInvalid` |
//! | expired | `certs/client-expired.pem` | `ClientCertInvalid` |
//!
//! Each client checks the server against `certs/ca.pem` under the name `localhost`. For
//! each one the demo prints what the client received, how and when the connection ended
//! (close_notify about one second after the handshake), and the events the handler saw
//! for that connection, in order, with its CRL check (for the revoked client: serial,
//! date and reason). It exits with status 0 when all five outcomes are as expected, and
//! with status 1 and a message naming what differed otherwise.
//!
//! Run it:
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! To try the same server by hand, keep it serving on a fixed address:
//!
//! ```text
//! cargo run --example demo -- --listen 127.0.0.1:8443
//! ```
//!
//! and from the crate's directory:
//!
//! ```text
//! openssl s_client -connect 127.0.0.1:8443 -CAfile certs/ca.pem -cert certs/client-valid.pem -key certs/client-valid.key
//! openssl s_client -connect 127.0.0.1:8443 -CAfile certs/ca.pem -cert certs/client-revoked.pem -key certs/client-revoked.key
//! ```
//!
//! `s_client` sends only the client's own certificate; the default client CA file,
//! `certs/client-ca-bundle.pem`, holds the intermediate CA that issued it as well as the
//! root, so it still chains. The demo's own clients send their whole chain (leaf and
//! intermediate, as the `.pem` files hold them). Press Ctrl-C to stop the server: open
//! connections get 5 s to end, the rest are closed. A second Ctrl-C exits at once.
//!
//! Start-up errors (a missing or bad file, an address in use) are printed and end the
//! process with status 1. This example unwraps nothing; a client that cannot be set up
//! counts as an unexpected outcome.

mod common;

use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::channel::mpsc::{self, UnboundedReceiver};
use futures::StreamExt;
use openssl::error::ErrorStack;
use openssl::ssl::{ErrorCode, SslConnector, SslFiletype, SslMethod, SslStream};
use sslify::{CertProblem, ClientCertReport, ConnectionId, CrlVerdict, DisconnectReason, Listener};

use crate::common::{
    cert_path, or_exit, serve_until_ctrl_c, AdvancedHandler, Args, CrlCheck, Event, Seen,
    CLOSE_DELAY, DEFAULT_CRL, SHUTDOWN_GRACE,
};

/// How long a client waits for the connection, and for each read.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the demo waits for the handler's `Disconnect` once a client is done.
const JOURNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// The close must come this long after the handshake at the earliest ...
const EARLIEST_CLOSE: Duration = Duration::from_millis(900);
/// ... and at the latest.
const LATEST_CLOSE: Duration = Duration::from_secs(3);

/// One client of the demo and what the advanced handler should make of it.
struct Case {
    /// The client's name; `client-<name>.pem` and `.key` in `certs/` are its identity.
    name: &'static str,
    /// Whether the client presents its certificate.
    presents: bool,
    expect: Expect,
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Valid and not in the CRL.
    Authenticated,
    /// Valid, but the CRL lists it.
    Revoked,
    NoCert,
    Invalid(CertProblem),
}

static CASES: [Case; 5] = [
    Case {
        name: "valid",
        presents: true,
        expect: Expect::Authenticated,
    },
    Case {
        name: "revoked",
        presents: true,
        expect: Expect::Revoked,
    },
    Case {
        name: "none",
        presents: false,
        expect: Expect::NoCert,
    },
    Case {
        name: "untrusted",
        presents: true,
        expect: Expect::Invalid(CertProblem::Untrusted),
    },
    Case {
        name: "expired",
        presents: true,
        expect: Expect::Invalid(CertProblem::Expired),
    },
];

impl Case {
    fn describe(&self) -> String {
        if self.presents {
            format!(
                "client with certificate certs/client-{}.pem ({})",
                self.name,
                self.expect.summary()
            )
        } else {
            "client without a certificate".to_owned()
        }
    }
}

impl Expect {
    /// The answer the handler should give, without the `[id] ` prefix.
    fn answer(self) -> &'static str {
        match self {
            Expect::Authenticated => "Yeah! You're authenticated!",
            Expect::Revoked => "CRL",
            Expect::NoCert => "NoClientCertExists",
            Expect::Invalid(_) => "ClientCertInvalid",
        }
    }

    fn summary(self) -> String {
        match self {
            Expect::Authenticated => "valid".to_owned(),
            Expect::Revoked => format!("valid, but listed in certs/{DEFAULT_CRL}"),
            Expect::NoCert => "none".to_owned(),
            Expect::Invalid(problem) => format!("{problem}"),
        }
    }

    /// How the outcome reads in the demo's last line.
    fn outcome(self) -> &'static str {
        match self {
            Expect::Authenticated => "authenticated",
            Expect::Revoked => "CRL",
            Expect::NoCert => "NoClientCertExists",
            Expect::Invalid(_) => "ClientCertInvalid",
        }
    }

    /// Whether `report` says what this client should have been found to present.
    fn check_report(self, report: &ClientCertReport) -> Result<(), String> {
        let wanted = match self {
            Expect::Authenticated | Expect::Revoked => None,
            Expect::NoCert => Some(CertProblem::Missing),
            Expect::Invalid(problem) => Some(problem),
        };
        let found = report.problem();
        if found == wanted {
            Ok(())
        } else {
            Err(format!(
                "the report should say {}, it says {report}",
                match wanted {
                    None => "valid".to_owned(),
                    Some(problem) => format!("{problem}"),
                }
            ))
        }
    }
}

/// What one client went through.
struct ClientRun {
    /// The client's own address: the handler's events carry it as the peer.
    local: Option<SocketAddr>,
    /// Everything up to a finished handshake, or why it failed.
    handshake: Result<(), String>,
    /// The bytes the server sent.
    received: Vec<u8>,
    /// How the connection ended and how long after the handshake.
    ending: Ending,
    after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// The client never got that far.
    NotConnected,
    /// The server sent TLS close_notify.
    CloseNotify,
    /// The stream ended some other way; OpenSSL's or the system's reason.
    Failed(String),
    /// Nothing arrived for `CLIENT_TIMEOUT`.
    TimedOut,
}

impl ClientRun {
    fn failed(local: Option<SocketAddr>, why: String) -> Self {
        ClientRun {
            local,
            handshake: Err(why),
            received: Vec::new(),
            ending: Ending::NotConnected,
            after: Duration::ZERO,
        }
    }

    fn ended(&self) -> String {
        let after = format!("after {:.1} s", self.after.as_secs_f64());
        match &self.ending {
            Ending::NotConnected => "never connected".to_owned(),
            Ending::CloseNotify => format!("closed with close_notify {after}"),
            Ending::Failed(why) => format!("ended without close_notify {after}: {why}"),
            Ending::TimedOut => format!("still open {after}, gave up waiting"),
        }
    }
}

/// Connects to `addr` as the client of `case`, reads until the server closes, and
/// answers the server's close_notify with its own. Runs in a blocking thread.
fn run_client(addr: SocketAddr, case: &Case) -> ClientRun {
    let connector = match connector(case) {
        Ok(connector) => connector,
        Err(why) => return ClientRun::failed(None, why),
    };
    let tcp = match TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT) {
        Ok(tcp) => tcp,
        Err(error) => return ClientRun::failed(None, format!("cannot connect to {addr}: {error}")),
    };
    let local = tcp.local_addr().ok();
    if let Err(error) = tcp.set_read_timeout(Some(CLIENT_TIMEOUT)) {
        return ClientRun::failed(local, format!("cannot set a read timeout: {error}"));
    }
    let mut stream = match connector.connect("localhost", tcp) {
        Ok(stream) => stream,
        Err(error) => return ClientRun::failed(local, format!("handshake failed: {error}")),
    };

    let started = Instant::now();
    let (received, ending) = read_until_closed(&mut stream);
    let after = started.elapsed();
    if ending == Ending::CloseNotify {
        // Answer with our own close_notify; the server is waiting for it.
        let _ = stream.shutdown();
    }
    ClientRun {
        local,
        handshake: Ok(()),
        received,
        ending,
        after,
    }
}

/// A client context that trusts `certs/ca.pem` and presents the case's certificate.
fn connector(case: &Case) -> Result<SslConnector, String> {
    let mut builder = SslConnector::builder(SslMethod::tls_client())
        .map_err(|error| setup_failed(&"context", error))?;
    let ca = cert_path("ca.pem");
    builder
        .set_ca_file(&ca)
        .map_err(|error| setup_failed(&ca.display(), error))?;
    if case.presents {
        let chain = cert_path(&format!("client-{}.pem", case.name));
        let key = cert_path(&format!("client-{}.key", case.name));
        builder
            .set_certificate_chain_file(&chain)
            .map_err(|error| setup_failed(&chain.display(), error))?;
        builder
            .set_private_key_file(&key, SslFiletype::PEM)
            .map_err(|error| setup_failed(&key.display(), error))?;
    }
    Ok(builder.build())
}

fn setup_failed(what: &dyn fmt::Display, error: ErrorStack) -> String {
    format!("cannot set up the client ({what}): {error}")
}

fn read_until_closed(stream: &mut SslStream<TcpStream>) -> (Vec<u8>, Ending) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.ssl_read(&mut buf) {
            Ok(count) => received.extend_from_slice(&buf[..count]),
            Err(error) if error.code() == ErrorCode::ZERO_RETURN => {
                return (received, Ending::CloseNotify);
            }
            // A bare TCP close shows up as a system-call error without an errno.
            Err(error) if error.code() == ErrorCode::SYSCALL && error.io_error().is_none() => {
                let why = "the TCP connection closed".to_owned();
                return (received, Ending::Failed(why));
            }
            Err(error) => {
                let timed_out = error.io_error().is_some_and(|io| {
                    matches!(
                        io.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                });
                let ending = if timed_out {
                    Ending::TimedOut
                } else {
                    Ending::Failed(describe(&error))
                };
                return (received, ending);
            }
        }
    }
}

/// OpenSSL's reasons for a client error, or the I/O error beneath it.
fn describe(error: &openssl::ssl::Error) -> String {
    if let Some(stack) = error.ssl_error() {
        let reasons: Vec<&str> = stack.errors().iter().filter_map(|e| e.reason()).collect();
        if !reasons.is_empty() {
            return reasons.join("; ");
        }
    }
    match error.io_error() {
        Some(io) => io.to_string(),
        None => format!("{error}"),
    }
}

/// The handler's events as they arrive over the channel, kept for lookup by client.
struct Journal {
    incoming: UnboundedReceiver<Seen>,
    seen: Vec<Seen>,
}

impl Journal {
    fn new(incoming: UnboundedReceiver<Seen>) -> Self {
        Journal {
            incoming,
            seen: Vec::new(),
        }
    }

    /// The id the handler gave the client at `peer`, and that connection's events in
    /// order. Waits until its `Disconnect` is in, or `JOURNAL_TIMEOUT` has passed.
    async fn connection_of(&mut self, peer: SocketAddr) -> Option<(ConnectionId, Vec<Event>)> {
        let deadline = Instant::now() + JOURNAL_TIMEOUT;
        loop {
            let id = self
                .seen
                .iter()
                .find(|seen| seen.peer == Some(peer))
                .map(|seen| seen.id);
            if let Some(id) = id {
                let events: Vec<Event> = self
                    .seen
                    .iter()
                    .filter(|seen| seen.id == id)
                    .map(|seen| seen.event.clone())
                    .collect();
                if events.iter().any(|e| matches!(e, Event::Disconnect(_))) {
                    return Some((id, events));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match actix_rt::time::timeout(left, self.incoming.next()).await {
                Ok(Some(seen)) => self.seen.push(seen),
                // Out of time, or the handler is gone: report what there is.
                Ok(None) | Err(_) => {
                    return id.map(|id| (id, self.events_of(id)));
                }
            }
        }
    }

    fn events_of(&self, id: ConnectionId) -> Vec<Event> {
        self.seen
            .iter()
            .filter(|seen| seen.id == id)
            .map(|seen| seen.event.clone())
            .collect()
    }
}

/// Everything about one client's outcome that differs from what the case expects.
fn check(case: &Case, run: &ClientRun, events: Option<&(ConnectionId, Vec<Event>)>) -> Vec<String> {
    let mut wrong = Vec::new();
    if let Err(why) = &run.handshake {
        wrong.push(format!("the client's {why}"));
        return wrong;
    }

    let reply = String::from_utf8_lossy(&run.received);
    let answer = case.expect.answer();
    match events {
        Some((id, _)) => {
            let expected = format!("[{id}] {answer}\n");
            if reply != expected {
                wrong.push(format!("expected the reply {expected:?}, got {reply:?}"));
            }
        }
        None => {
            if !reply.ends_with(&format!("] {answer}\n")) {
                wrong.push(format!(
                    "expected a reply ending in {answer:?}, got {reply:?}"
                ));
            }
        }
    }

    if run.ending != Ending::CloseNotify {
        wrong.push(format!(
            "expected the server to close with close_notify, but the connection {}",
            run.ended()
        ));
    } else if run.after < EARLIEST_CLOSE || run.after > LATEST_CLOSE {
        wrong.push(format!(
            "expected the close about {:.1} s after the handshake, it came after {:.1} s",
            CLOSE_DELAY.as_secs_f64(),
            run.after.as_secs_f64()
        ));
    }

    let Some((_, events)) = events else {
        wrong.push("the handler recorded no event for this client".to_owned());
        return wrong;
    };
    let closed =
        |event: &Event| matches!(event, Event::Disconnect(DisconnectReason::ClosedByHandler));
    match (case.expect, events.as_slice()) {
        (
            Expect::Authenticated | Expect::Revoked,
            [Event::SslDone(report), Event::CrlChecked(crl), last],
        ) if closed(last) => {
            wrong.extend(case.expect.check_report(report).err());
            wrong.extend(check_crl(case.expect, report, crl).err());
        }
        (Expect::NoCert | Expect::Invalid(_), [Event::SslDone(report), last]) if closed(last) => {
            wrong.extend(case.expect.check_report(report).err());
        }
        (Expect::Authenticated | Expect::Revoked, _) => wrong.push(
            "expected the handler to see exactly SslDone, its CRL check, then Disconnect \
             (closed by handler)"
                .to_owned(),
        ),
        _ => wrong.push(
            "expected the handler to see exactly SslDone, then Disconnect (closed by handler), \
             with no CRL check"
                .to_owned(),
        ),
    }
    wrong
}

/// Whether the handler's CRL check found what this client should have been found: not
/// listed, or listed with the serial of the certificate it presented.
fn check_crl(expect: Expect, report: &ClientCertReport, crl: &CrlVerdict) -> Result<(), String> {
    let serial = report.leaf().map(|leaf| leaf.serial.as_slice());
    match (expect, crl) {
        (Expect::Authenticated, CrlVerdict::Good) => Ok(()),
        (Expect::Revoked, CrlVerdict::Revoked(revocation))
            if Some(revocation.serial.as_slice()) == serial && revocation.depth == 0 =>
        {
            Ok(())
        }
        (Expect::Revoked, _) => Err(format!(
            "the CRL check should find the client's own certificate listed, it says: {crl}"
        )),
        _ => Err(format!(
            "the CRL check should find the certificate not listed, it says: {crl}"
        )),
    }
}

fn print_outcome(
    number: usize,
    case: &Case,
    run: &ClientRun,
    events: Option<&(ConnectionId, Vec<Event>)>,
    wrong: &[String],
) {
    println!();
    println!("client {number}/{}: {}", CASES.len(), case.describe());
    match &run.handshake {
        Ok(()) => {
            println!(
                "  received: {:?}",
                String::from_utf8_lossy(&run.received).as_ref()
            );
            println!("  ended:    {}", run.ended());
        }
        Err(why) => println!("  {why}"),
    }
    match events {
        Some((id, events)) => {
            println!("  the handler saw, for connection [{id}]:");
            for event in events {
                println!("    {event}");
            }
        }
        None => println!("  the handler saw nothing for this client"),
    }
    if wrong.is_empty() {
        println!("  as expected");
    } else {
        for why in wrong {
            println!("  NOT AS EXPECTED: {why}");
        }
    }
}

/// Runs the five clients in turn against the server at `addr`; true when all went as
/// expected.
async fn run_clients(addr: SocketAddr, mut journal: Journal) -> bool {
    let mut failures = 0;
    for (index, case) in CASES.iter().enumerate() {
        let run = match actix_rt::task::spawn_blocking(move || run_client(addr, case)).await {
            Ok(run) => run,
            Err(error) => ClientRun::failed(None, format!("client thread failed: {error}")),
        };
        let events = match run.local {
            Some(local) => journal.connection_of(local).await,
            None => None,
        };

        let wrong = check(case, &run, events.as_ref());
        print_outcome(index + 1, case, &run, events.as_ref(), &wrong);
        if !wrong.is_empty() {
            failures += 1;
        }
    }

    println!();
    if failures == 0 {
        let outcomes: Vec<String> = CASES
            .iter()
            .map(|case| format!("{}: {}", case.name, case.expect.outcome()))
            .collect();
        println!(
            "all {} outcomes as expected: {}",
            CASES.len(),
            outcomes.join(", ")
        );
        true
    } else {
        eprintln!(
            "demo failed: {failures} of {} outcomes not as expected (see NOT AS EXPECTED above)",
            CASES.len()
        );
        false
    }
}

#[actix::main]
async fn main() -> ExitCode {
    let args = Args::parse(
        "demo",
        "Delayed-disconnect demo: runs the advanced server with its CRL check on a free \
         loopback port and five TLS clients (valid, revoked, no, untrusted, expired \
         certificate) against it, then exits 0 if all five outcomes are as expected. With \
         --listen ADDR it serves there until Ctrl-C instead.",
        None,
    );
    common::init_logging(&args);

    let config = or_exit(args.options().request_client_cert().build());
    let crl = or_exit(CrlCheck::open(&cert_path(DEFAULT_CRL)));

    if let Some(listen) = &args.listen {
        let handler = AdvancedHandler::new().with_crl(crl).start();
        let listener = or_exit(Listener::bind(listen.as_str(), config, handler));
        println!("listening on {}", listener.local_addr());
        serve_until_ctrl_c(&listener).await;
        return ExitCode::SUCCESS;
    }

    let (sender, receiver) = mpsc::unbounded();
    let handler = AdvancedHandler::new()
        .with_crl(crl)
        .with_journal(sender)
        .start();
    let listener = or_exit(Listener::bind("127.0.0.1:0", config, handler));
    println!("listening on {}", listener.local_addr());

    let all_good = run_clients(listener.local_addr(), Journal::new(receiver)).await;
    listener.shutdown(SHUTDOWN_GRACE).await;
    if all_good {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
