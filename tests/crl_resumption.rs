//! Session resumption with CRLs: a resumed handshake carries no certificate, so a session
//! must not outlive the CRL it was made under. A valid client resumes while the CRL is
//! unchanged; a client revoked after its session was made does not get back in; and the
//! handler's own CRL check gives a resumed connection the verdict of a fresh one.

mod support;

use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslSession, SslStream, SslVersion};
use sslify::{CertProblem, ClientCertReport, CrlSet, CrlVerdict};
use support::crl::{
    assert_rejected, assert_served, openssl_command, start_judge, Scratch, Seen, ALERT_REVOKED,
    WAIT,
};
use support::{Event, Reply, TestServer};

const AUTHENTICATED: &str = "Yeah! You're authenticated!";

/// The watched CRL file's name in each test's scratch directory.
const WATCHED: &str = "current-crl.pem";

/// A server that requires a client certificate and checks it against `crl` in the
/// handshake, answering with the verdict line.
fn handshake_server(crl: &Path) -> TestServer {
    TestServer::start(
        support::options().require_client_cert().crl_file(crl),
        Reply::Verdict {
            close_after: Duration::ZERO,
        },
    )
}

/// One connection of a client that may offer a saved session.
struct Visit {
    seen: Seen,
    /// Whether the client's side reports the session as resumed.
    reused: bool,
    /// The session to offer next time, when the server served the client.
    session: Option<SslSession>,
}

fn visit(addr: SocketAddr, connector: &SslConnector, offer: Option<&SslSession>) -> Visit {
    let mut config = connector.configure().unwrap();
    if let Some(session) = offer {
        // SAFETY: every session offered here was made by this same connector.
        unsafe { config.set_session(session).unwrap() };
    }
    let ssl = config.into_ssl("localhost").unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut stream = SslStream::new(ssl, tcp).unwrap();
    if let Err(error) = stream.connect() {
        return Visit {
            seen: Seen::Refused(error.to_string()),
            reused: stream.ssl().session_reused(),
            session: None,
        };
    }
    let reused = stream.ssl().session_reused();
    let (bytes, end) = support::read_to_end(&mut stream);
    match end {
        Ok(()) => {
            // Answer the server's close_notify: a session whose connection was dropped
            // without one is not resumable.
            stream.shutdown().expect("close_notify to the server");
            Visit {
                seen: Seen::Served(String::from_utf8(bytes).unwrap()),
                reused,
                session: stream.ssl().session().map(|s| s.to_owned()),
            }
        }
        Err(error) => {
            assert!(bytes.is_empty(), "a refused client got data: {bytes:?}");
            Visit {
                seen: Seen::Refused(error),
                reused,
                session: None,
            }
        }
    }
}

/// The report of a connection that was served, and whether the server resumed it.
fn served(server: &TestServer, id: u64, case: &str) -> (ClientCertReport, bool) {
    let events = server.journal.wait_disconnects(id as usize, WAIT);
    assert_served(&events, id, case)
}

fn valid_client_resumes_under_unchanged_crl(version: SslVersion) {
    let case = format!("unchanged crl.pem, {version:?}");
    let scratch = Scratch::new("resume-unchanged");
    let crl = scratch.copy("crl.pem", WATCHED);
    let server = handshake_server(&crl);
    let connector = support::connector(Some("valid"), Some(version));

    let first = visit(server.addr, &connector, None);
    assert_eq!(
        first.seen,
        Seen::Served(format!("[1] {AUTHENTICATED}\n")),
        "{case}"
    );
    assert!(!first.reused, "{case}: nothing to resume yet");
    let (full, full_resumed) = served(&server, 1, &case);
    assert!(!full_resumed, "{case}");

    let session = first.session.expect("a session after the first visit");
    let second = visit(server.addr, &connector, Some(&session));
    assert_eq!(
        second.seen,
        Seen::Served(format!("[2] {AUTHENTICATED}\n")),
        "{case}"
    );
    assert!(second.reused, "{case}: the client should have resumed");
    let (again, again_resumed) = served(&server, 2, &case);
    assert!(
        again_resumed,
        "{case}: the server should report the resumption"
    );

    assert!(full.presented && full.valid, "{case}: {full:#?}");
    assert_eq!(again.presented, full.presented, "{case}: presented");
    assert_eq!(again.valid, full.valid, "{case}: valid");
    let leaf = |report: &ClientCertReport| {
        report
            .leaf()
            .map(|leaf| (leaf.subject.clone(), leaf.serial.clone()))
    };
    assert_eq!(leaf(&again), leaf(&full), "{case}: leaf");
    assert_eq!(
        leaf(&full).map(|(_, serial)| serial),
        Some(support::crl::serial_of("client-valid.pem")),
        "{case}"
    );
    assert_eq!(again.chain.len(), full.chain.len(), "{case}: chain length");
}

#[test]
fn valid_client_resumes_under_unchanged_crl_tls12() {
    valid_client_resumes_under_unchanged_crl(SslVersion::TLS1_2);
}

#[test]
fn valid_client_resumes_under_unchanged_crl_tls13() {
    valid_client_resumes_under_unchanged_crl(SslVersion::TLS1_3);
}

fn revoked_client_cannot_resume_after_crl_revokes_it(version: SslVersion) {
    let case = format!("revoked after its session was made, {version:?}");
    let scratch = Scratch::new("resume-revoked");
    let crl = scratch.copy("crl-empty.pem", WATCHED);
    let server = handshake_server(&crl);
    let connector = support::connector(Some("revoked"), Some(version));

    let first = visit(server.addr, &connector, None);
    assert_eq!(
        first.seen,
        Seen::Served(format!("[1] {AUTHENTICATED}\n")),
        "{case}: not revoked yet"
    );
    served(&server, 1, &case);
    let session = first.session.expect("a session after the first visit");

    scratch.replace_by_rename(WATCHED, "crl.pem");
    let second = visit(server.addr, &connector, Some(&session));
    let events = server.journal.wait_disconnects(2, WAIT);
    assert!(
        !events[&2]
            .iter()
            .any(|e| matches!(e, Event::SslDone { .. } | Event::Input { .. })),
        "{case}: the revoked client got in (client resumed: {}): {:#?}",
        second.reused,
        events[&2]
    );
    if !second.reused {
        // A full handshake, which looked at the certificate again.
        second
            .seen
            .assert_alert(ALERT_REVOKED.0, ALERT_REVOKED.1, &case);
        assert_rejected(&events, 2, CertProblem::Revoked, &case);
    } else {
        assert!(
            matches!(second.seen, Seen::Refused(_)),
            "{case}: resumed and served: {:?}",
            second.seen
        );
    }
}

#[test]
fn revoked_client_cannot_resume_after_crl_revokes_it_tls12() {
    revoked_client_cannot_resume_after_crl_revokes_it(SslVersion::TLS1_2);
}

#[test]
fn revoked_client_cannot_resume_after_crl_revokes_it_tls13() {
    revoked_client_cannot_resume_after_crl_revokes_it(SslVersion::TLS1_3);
}

/// Sessions made under an earlier CRL are forgotten, even for a client the new CRL does
/// not list: it is served again after a full handshake.
fn session_from_before_crl_change_is_not_resumed(version: SslVersion) {
    let case = format!("session from before a CRL change, {version:?}");
    let scratch = Scratch::new("resume-after-change");
    let crl = scratch.copy("crl-empty.pem", WATCHED);
    let server = handshake_server(&crl);
    let connector = support::connector(Some("valid"), Some(version));

    let first = visit(server.addr, &connector, None);
    let session = first.session.expect("a session after the first visit");
    served(&server, 1, &case);

    scratch.rewrite_in_place(WATCHED, "crl.pem");
    let second = visit(server.addr, &connector, Some(&session));
    assert_eq!(
        second.seen,
        Seen::Served(format!("[2] {AUTHENTICATED}\n")),
        "{case}"
    );
    assert!(!second.reused, "{case}: the old session should not resume");
    let (_, resumed) = served(&server, 2, &case);
    assert!(
        !resumed,
        "{case}: the server should not report a resumption"
    );

    // The session of that full handshake resumes while the CRL stays as it is.
    let session = second.session.expect("a session after the second visit");
    let third = visit(server.addr, &connector, Some(&session));
    assert!(third.reused, "{case}: the new session should resume");
    let (_, resumed) = served(&server, 3, &case);
    assert!(resumed, "{case}");
}

#[test]
fn session_from_before_crl_change_is_not_resumed_tls12() {
    session_from_before_crl_change_is_not_resumed(SslVersion::TLS1_2);
}

#[test]
fn session_from_before_crl_change_is_not_resumed_tls13() {
    session_from_before_crl_change_is_not_resumed(SslVersion::TLS1_3);
}

// ---------------------------------------------------------------------------------------
// The handler's check on resumed connections.

fn handler_verdict_on_resumed_connection_equals_fresh_one(version: SslVersion) {
    let set = CrlSet::open([support::cert("crl.pem")]).unwrap();
    let (server, verdicts) = start_judge(support::options().request_client_cert(), set, None);
    let mut id = 0;
    for (client, text) in [("revoked", "CRL"), ("valid", AUTHENTICATED)] {
        let case = format!("handler, client {client}, {version:?}");
        let connector = support::connector(Some(client), Some(version));

        id += 1;
        let fresh_id = id;
        let first = visit(server.addr, &connector, None);
        assert_eq!(
            first.seen,
            Seen::Served(format!("[{fresh_id}] {text}\n")),
            "{case}"
        );
        let (_, resumed) = served(&server, fresh_id, &case);
        assert!(!resumed, "{case}");

        id += 1;
        let session = first.session.expect("a session after the first visit");
        let second = visit(server.addr, &connector, Some(&session));
        assert!(second.reused, "{case}: the client should have resumed");
        assert_eq!(
            second.seen,
            Seen::Served(format!("[{id}] {text}\n")),
            "{case}"
        );
        let (_, resumed) = served(&server, id, &case);
        assert!(resumed, "{case}: the server should report the resumption");

        let verdicts = verdicts.lock().unwrap();
        let fresh = &verdicts[&fresh_id];
        assert_eq!(&verdicts[&id], fresh, "{case}: verdicts");
        if client == "revoked" {
            assert!(matches!(fresh, CrlVerdict::Revoked(_)), "{case}: {fresh:?}");
        } else {
            assert_eq!(*fresh, CrlVerdict::Good, "{case}");
        }
    }
}

#[test]
fn handler_verdict_on_resumed_connection_equals_fresh_one_tls12() {
    handler_verdict_on_resumed_connection_equals_fresh_one(SslVersion::TLS1_2);
}

#[test]
fn handler_verdict_on_resumed_connection_equals_fresh_one_tls13() {
    handler_verdict_on_resumed_connection_equals_fresh_one(SslVersion::TLS1_3);
}

// ---------------------------------------------------------------------------------------
// The same with the `openssl s_client` command as the client.

/// Runs `openssl s_client` against `addr` as client-valid, with `extra` arguments, and
/// returns what it printed. The command is killed if it has not ended within `WAIT`.
fn s_client(addr: SocketAddr, scratch: &Scratch, run: &str, extra: &[&str]) -> String {
    let output = scratch.path(&format!("s_client-{run}.out"));
    let cert = |name: &str| support::cert(name).display().to_string();
    let mut child = Command::new("openssl")
        .arg("s_client")
        .args(["-connect", &addr.to_string(), "-servername", "localhost"])
        .args(["-CAfile", &cert("ca.pem")])
        .args(["-cert", &cert("client-valid.pem")])
        .args(["-cert_chain", &cert("intermediate.pem")])
        .args(["-key", &cert("client-valid.key")])
        // Keep reading after stdin ends, until the server closes.
        .arg("-ign_eof")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(File::create(&output).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client starts");
    let deadline = Instant::now() + WAIT;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() >= deadline {
            // Child::kill signals this child's own PID.
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "openssl s_client ({run}) did not end within {WAIT:?}; it printed:\n{}",
                fs::read_to_string(&output).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    fs::read_to_string(&output).unwrap()
}

fn s_client_resumes_under_unchanged_crl(version_flag: &str) {
    if let Err(reason) = openssl_command() {
        println!("skipped: {reason}");
        return;
    }
    let case = format!("openssl s_client {version_flag}");
    let scratch = Scratch::new("s_client");
    let crl = scratch.copy("crl.pem", WATCHED);
    let server = handshake_server(&crl);
    let session: PathBuf = scratch.path("session.pem");
    let session_arg = session.display().to_string();

    let first = s_client(
        server.addr,
        &scratch,
        "first",
        &[version_flag, "-sess_out", &session_arg],
    );
    assert!(first.contains("\nNew, "), "{case}: first run:\n{first}");
    assert!(
        first.contains(&format!("[1] {AUTHENTICATED}")),
        "{case}: first run:\n{first}"
    );
    assert!(session.exists(), "{case}: no session was saved");
    let (_, resumed) = served(&server, 1, &case);
    assert!(!resumed, "{case}");

    let second = s_client(
        server.addr,
        &scratch,
        "second",
        &[version_flag, "-sess_in", &session_arg],
    );
    assert!(
        second.contains("\nReused, "),
        "{case}: second run:\n{second}"
    );
    assert!(
        second.contains(&format!("[2] {AUTHENTICATED}")),
        "{case}: second run:\n{second}"
    );
    let (report, resumed) = served(&server, 2, &case);
    assert!(resumed, "{case}: the server should report the resumption");
    assert!(report.valid, "{case}: {report:#?}");
}

#[test]
fn openssl_s_client_resumes_under_unchanged_crl_tls12() {
    s_client_resumes_under_unchanged_crl("-tls1_2");
}

#[test]
fn openssl_s_client_resumes_under_unchanged_crl_tls13() {
    s_client_resumes_under_unchanged_crl("-tls1_3");
}
