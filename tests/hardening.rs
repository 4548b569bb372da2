//! Protocol hardening: old protocol versions off by default, the version ceiling,
//! client-initiated renegotiation refused, and TLS 1.3 session tickets on request.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslSession, SslStream, SslVerifyMode, SslVersion};
use sslify::{DisconnectReason, Options};
use support::{cert, connect_with, send, Event, Reply, TestServer};

/// The longest wait for something that should happen.
const WAIT: Duration = Duration::from_secs(10);

/// A client that accepts exactly the versions `min..=max` and, for the old ones, the
/// ciphers and signatures OpenSSL only allows at security level 0.
fn client(min: SslVersion, max: SslVersion) -> SslConnector {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_ca_file(cert("ca.pem")).unwrap();
    builder.set_verify(SslVerifyMode::PEER);
    builder.set_min_proto_version(Some(min)).unwrap();
    builder.set_max_proto_version(Some(max)).unwrap();
    builder.set_security_level(0);
    builder.set_cipher_list("DEFAULT@SECLEVEL=0").unwrap();
    builder.build()
}

/// The handshake fails on the client's side and the server reports a failed handshake
/// as the connection's only event; returns the server's reason.
fn assert_refused(server: &TestServer, id: u64, connector: &SslConnector, what: &str) -> String {
    if let Ok(mut stream) = connect_with(connector, server.addr) {
        // Whatever the client thinks, it must not be served.
        let _ = send(&mut stream, b"hello?\n");
        let mut buf = [0u8; 7];
        assert!(
            stream.read_exact(&mut buf).is_err(),
            "{what}: the client was served ({:?})",
            stream.ssl().version_str()
        );
    }
    let journal = server.journal.wait_disconnects(id as usize, WAIT);
    match journal[&id].as_slice() {
        [Event::Disconnect(DisconnectReason::HandshakeFailed(reason))] => reason.clone(),
        events => panic!("{what}: expected only a failed handshake: {events:#?}"),
    }
}

/// The client is served over `protocol`: its line is echoed.
fn assert_served(server: &TestServer, connector: &SslConnector, protocol: &str, what: &str) {
    let mut stream = connect_with(connector, server.addr).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(stream.ssl().version_str(), protocol, "{what}");
    send(&mut stream, b"hello\n").unwrap();
    let mut echo = [0u8; 6];
    stream
        .read_exact(&mut echo)
        .unwrap_or_else(|e| panic!("{what}: {}", support::error_text(&e)));
    assert_eq!(&echo, b"hello\n", "{what}");
    let _ = stream.shutdown();
}

#[test]
fn tls10_and_tls11_clients_are_refused_by_default() {
    let server = TestServer::start(support::options(), Reply::Echo);
    for (n, version) in [SslVersion::TLS1, SslVersion::TLS1_1]
        .into_iter()
        .enumerate()
    {
        let what = format!("{version:?} client");
        let reason = assert_refused(&server, n as u64 + 1, &client(version, version), &what);
        assert!(
            reason.contains("unsupported protocol"),
            "{what}: {reason:?}"
        );
    }
    // The same server serves TLS 1.2 and 1.3.
    assert_served(
        &server,
        &client(SslVersion::TLS1_2, SslVersion::TLS1_2),
        "TLSv1.2",
        "TLS 1.2 client",
    );
    assert_served(
        &server,
        &client(SslVersion::TLS1_3, SslVersion::TLS1_3),
        "TLSv1.3",
        "TLS 1.3 client",
    );
}

#[test]
fn tls10_and_tls11_clients_are_served_only_when_asked_for() {
    // The clients of the test above are willing: a server that allows the old versions
    // (and the security level they need) serves them.
    let server = TestServer::start(
        support::options()
            .min_version(SslVersion::TLS1)
            .cipher_list("DEFAULT@SECLEVEL=0"),
        Reply::Echo,
    );
    assert_served(
        &server,
        &client(SslVersion::TLS1, SslVersion::TLS1),
        "TLSv1",
        "TLS 1.0 client",
    );
    assert_served(
        &server,
        &client(SslVersion::TLS1_1, SslVersion::TLS1_1),
        "TLSv1.1",
        "TLS 1.1 client",
    );
}

#[test]
fn tls13_only_client_is_refused_under_a_tls12_ceiling() {
    let server = TestServer::start(
        support::options().max_version(SslVersion::TLS1_2),
        Reply::Echo,
    );
    let reason = assert_refused(
        &server,
        1,
        &client(SslVersion::TLS1_3, SslVersion::TLS1_3),
        "TLS 1.3 only client",
    );
    assert!(reason.contains("unsupported protocol"), "{reason:?}");
    // A client that offers both gets TLS 1.2.
    assert_served(
        &server,
        &client(SslVersion::TLS1_2, SslVersion::TLS1_3),
        "TLSv1.2",
        "TLS 1.2 and 1.3 client",
    );
}

// ---------------------------------------------------------------------------------------
// Renegotiation, with `openssl s_client` as the client: the openssl crate cannot start one.

/// The longest one s_client run may take before it is killed.
const RUN_LIMIT: Duration = Duration::from_secs(15);

fn openssl_available() -> bool {
    match Command::new("openssl").arg("version").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!("skipping: `openssl version` failed with {}", out.status);
            false
        }
        Err(e) => {
            eprintln!("skipping: openssl command not found ({e})");
            false
        }
    }
}

/// Forwards a child's output, line by line, to a channel.
fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = std::io::BufReader::new(pipe);
        let mut line = String::new();
        while {
            line.clear();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) > 0
        } {
            if tx.send(line.trim_end().to_owned()).is_err() {
                return;
            }
        }
    });
    rx
}

/// An s_client run that is killed (by its own handle, i.e. its PID) if still running when
/// dropped.
struct SClient {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

impl SClient {
    fn start(args: &[&str]) -> SClient {
        let mut child = Command::new("openssl")
            .arg("s_client")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start openssl s_client");
        let stdin = child.stdin.take();
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        SClient {
            child,
            stdin,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Types a line; returns whether s_client took it (not if it has exited).
    fn type_line(&mut self, line: &str) -> bool {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .is_ok()
    }

    /// Collects output until a line so far satisfies `want` or the time is up.
    fn wait_for(&mut self, limit: Duration, want: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.seen.extend(self.stdout.try_iter());
            self.seen.extend(self.stderr.try_iter());
            if self.seen.iter().any(|line| want(line)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to exit (at most `RUN_LIMIT`) and collects the rest of its
    /// output; returns whether it exited by itself.
    fn finish(&mut self) -> bool {
        self.stdin = None;
        let deadline = Instant::now() + RUN_LIMIT;
        let exited = loop {
            if self.child.try_wait().unwrap().is_some() {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.wait_for(Duration::from_millis(200), |_| false);
        exited
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn client_initiated_renegotiation_is_refused() {
    if !openssl_available() {
        return;
    }
    let server = TestServer::start(support::options(), Reply::Echo);
    let addr = server.addr.to_string();
    let ca = cert("ca.pem");
    let mut s_client = SClient::start(&[
        "-connect",
        &addr,
        "-tls1_2",
        "-CAfile",
        ca.to_str().unwrap(),
    ]);

    // An ordinary exchange first: the connection is established.
    assert!(s_client.type_line("ping"));
    assert!(
        s_client.wait_for(WAIT, |line| line == "ping"),
        "no echo before renegotiating:\n{}",
        s_client.output()
    );
    // "R" at the start of a line makes s_client renegotiate.
    assert!(s_client.type_line("R"));
    assert!(
        s_client.wait_for(WAIT, |line| line.contains("RENEGOTIATING")),
        "s_client did not try to renegotiate:\n{}",
        s_client.output()
    );
    // The server refuses: s_client reports OpenSSL's "no renegotiation" and gives up.
    assert!(
        s_client.wait_for(WAIT, |line| line.contains("no renegotiation")),
        "s_client did not report the refusal:\n{}",
        s_client.output()
    );
    let _ = s_client.type_line("after");
    let exited = s_client.finish();
    let output = s_client.output();
    assert!(
        exited,
        "s_client still running after {RUN_LIMIT:?}:\n{output}"
    );
    let after_renegotiating = output.split("RENEGOTIATING").nth(1).unwrap_or_default();
    assert!(
        !after_renegotiating.lines().any(|line| line == "after"),
        "the connection went on after the refused renegotiation:\n{output}"
    );

    // One handshake only, the line before it, and the client's alert ended the connection.
    let journal = server.journal.wait_disconnects(1, WAIT);
    let events = &journal[&1];
    assert!(
        matches!(
            events.as_slice(),
            [
                Event::SslDone { protocol, .. },
                Event::Input { data, tls: true },
                Event::Disconnect(DisconnectReason::PeerAlert(_)),
            ] if protocol == "TLSv1.2" && data == b"ping\n"
        ),
        "{events:#?}"
    );
    // And the server serves on.
    assert_served(
        &server,
        &client(SslVersion::TLS1_2, SslVersion::TLS1_2),
        "TLSv1.2",
        "TLS 1.2 client after the renegotiation attempt",
    );
}

// ---------------------------------------------------------------------------------------
// TLS 1.3 session tickets.

/// Connects, reads the server's verdict and close, answers with close_notify and returns
/// the session the client holds.
fn session_of(
    server: &TestServer,
    connector: &SslConnector,
    session: Option<&SslSession>,
) -> (bool, SslSession) {
    let mut config = connector.configure().unwrap();
    if let Some(session) = session {
        // SAFETY: the session was made by a connection of this same connector.
        unsafe { config.set_session(session).unwrap() };
    }
    let ssl = config.into_ssl("localhost").unwrap();
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut stream = SslStream::new(ssl, tcp).unwrap();
    stream.connect().expect("handshake");
    // Reading takes in whatever tickets the server sends after its handshake.
    let (_, end) = support::read_to_end(&mut stream);
    assert_eq!(end, Ok(()));
    stream.shutdown().unwrap();
    let reused = stream.ssl().session_reused();
    let session = stream.ssl().session().expect("a session").to_owned();
    (reused, session)
}

fn tickets_server(options: Options) -> TestServer {
    TestServer::start(
        options,
        Reply::Verdict {
            close_after: Duration::from_millis(50),
        },
    )
}

/// Whether the server reported connection `id` as resumed.
fn server_resumed(server: &TestServer, id: u64) -> bool {
    let journal = server.journal.wait_disconnects(id as usize, WAIT);
    match journal[&id].first() {
        Some(Event::SslDone { resumed, .. }) => *resumed,
        _ => panic!("connection {id}: {:#?}", journal[&id]),
    }
}

#[test]
fn no_session_tickets_means_tls13_does_not_resume() {
    let server = tickets_server(support::options().session_tickets(0));
    let connector = support::connector(None, Some(SslVersion::TLS1_3));
    let (first_reused, session) = session_of(&server, &connector, None);
    assert!(!first_reused);
    let (reused, _) = session_of(&server, &connector, Some(&session));
    assert!(!reused, "the client resumed a session without a ticket");
    assert!(!server_resumed(&server, 2));
}

#[test]
fn default_session_tickets_let_tls13_resume() {
    let server = tickets_server(support::options());
    let connector = support::connector(None, Some(SslVersion::TLS1_3));
    let (first_reused, session) = session_of(&server, &connector, None);
    assert!(!first_reused);
    let (reused, _) = session_of(&server, &connector, Some(&session));
    assert!(reused, "the client did not resume with the server's ticket");
    assert!(server_resumed(&server, 2));
}

#[test]
fn no_session_tickets_still_lets_tls12_resume_by_session_id() {
    let server = tickets_server(support::options().session_tickets(0));
    let connector = support::connector(None, Some(SslVersion::TLS1_2));
    let (_, session) = session_of(&server, &connector, None);
    let (reused, _) = session_of(&server, &connector, Some(&session));
    assert!(reused, "TLS 1.2 did not resume");
    assert!(server_resumed(&server, 2));
}
