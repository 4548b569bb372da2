//! Every client-certificate mode against every kind of client, over TLS 1.3 and TLS 1.2:
//! the events the handler sees, in order, the report they carry, and what the client
//! sees (the verdict line or the TLS alert).

mod support;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use openssl::ssl::{SslStream, SslVersion};
use openssl::x509::X509;
use sslify::{CertProblem, ClientCertReport, DisconnectReason, Options};
use support::{Event, Reply, TestServer};

/// How long the handler waits after the verdict before closing.
const CLOSE_AFTER: Duration = Duration::from_millis(100);
/// Upper bound for the server to report a connection's end.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No certificate is requested.
    NoRequest,
    Required,
    Optional,
}

impl Mode {
    fn options(self) -> Options {
        match self {
            Mode::NoRequest => support::options(),
            Mode::Required => support::options().require_client_cert(),
            Mode::Optional => support::options().request_client_cert(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Valid,
    NoCert,
    Untrusted,
    Expired,
    SelfSigned,
}

impl Client {
    /// The name of the client's files in certs/, `None` for a client without certificate.
    fn file(self) -> Option<&'static str> {
        match self {
            Client::Valid => Some("valid"),
            Client::NoCert => None,
            Client::Untrusted => Some("untrusted"),
            Client::Expired => Some("expired"),
            Client::SelfSigned => Some("selfsigned"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    V13,
    V12,
}

impl Tls {
    fn version(self) -> SslVersion {
        match self {
            Tls::V13 => SslVersion::TLS1_3,
            Tls::V12 => SslVersion::TLS1_2,
        }
    }

    fn protocol(self) -> &'static str {
        match self {
            Tls::V13 => "TLSv1.3",
            Tls::V12 => "TLSv1.2",
        }
    }
}

/// A distinguished name of the test PKI in the report's one-line form.
fn dn(common_name: &str) -> String {
    format!("/C=US/O=sslify test/CN={common_name}")
}

/// One certificate the report should list.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    subject: String,
    issuer: String,
    serial: Vec<u8>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let serial: Vec<String> = self.serial.iter().map(|b| format!("{b:02x}")).collect();
        write!(
            f,
            "{} issued by {} serial {}",
            self.subject,
            self.issuer,
            serial.join(":")
        )
    }
}

/// The serial numbers of the certificates in a PEM file of the test PKI, in file order.
fn pem_serials(file: &str) -> Vec<Vec<u8>> {
    let pem = std::fs::read(support::cert(file)).unwrap();
    X509::stack_from_pem(&pem)
        .unwrap()
        .iter()
        .map(|cert| cert.serial_number().to_bn().unwrap().to_vec())
        .collect()
}

/// The chain a client presents, as the report should list it: (subject CN, issuer CN) per
/// certificate, with the serials read from the client's PEM file.
fn presented_chain(client: Client) -> Vec<Entry> {
    let names: &[(&str, &str)] = match client {
        Client::NoCert => return Vec::new(),
        Client::Valid => &[
            ("client valid", "sslify test intermediate CA"),
            ("sslify test intermediate CA", "sslify test root CA"),
        ],
        Client::Expired => &[
            ("client expired", "sslify test intermediate CA"),
            ("sslify test intermediate CA", "sslify test root CA"),
        ],
        Client::Untrusted => &[
            ("client untrusted", "sslify test other CA"),
            ("sslify test other CA", "sslify test other CA"),
        ],
        Client::SelfSigned => &[("client selfsigned", "client selfsigned")],
    };
    let serials = pem_serials(&format!("client-{}.pem", client.file().unwrap()));
    assert_eq!(
        serials.len(),
        names.len(),
        "certificates in the {client:?} PEM file"
    );
    names
        .iter()
        .zip(serials)
        .map(|((subject, issuer), serial)| Entry {
            subject: dn(subject),
            issuer: dn(issuer),
            serial,
        })
        .collect()
}

/// The report fields a case should produce.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    presented: bool,
    valid: bool,
    verify_code: i32,
    verify_text: String,
    failed_depth: Option<u32>,
    chain: Vec<Entry>,
}

impl Expected {
    fn of(report: &ClientCertReport) -> Expected {
        Expected {
            presented: report.presented,
            valid: report.valid,
            verify_code: report.verify_code,
            verify_text: report.verify_text.clone(),
            failed_depth: report.failed_depth,
            chain: report
                .chain
                .iter()
                .map(|entry| Entry {
                    subject: entry.subject.clone(),
                    issuer: entry.issuer.clone(),
                    serial: entry.serial.clone(),
                })
                .collect(),
        }
    }
}

/// Checks a report field by field, so that a failure names the field.
fn assert_report(report: &ClientCertReport, expected: &Expected, what: &str) {
    let got = Expected::of(report);
    assert_eq!(got.presented, expected.presented, "{what}: presented");
    assert_eq!(got.valid, expected.valid, "{what}: valid");
    assert_eq!(got.verify_code, expected.verify_code, "{what}: verify_code");
    assert_eq!(got.verify_text, expected.verify_text, "{what}: verify_text");
    assert_eq!(
        got.failed_depth, expected.failed_depth,
        "{what}: failed_depth"
    );
    assert_eq!(
        got.chain, expected.chain,
        "{what}: chain (the certificates the client presented, its own first)"
    );
}

/// The report for a client whose certificate was sent (or not) in a mode that asked for it.
fn expected_report(mode: Mode, client: Client) -> Expected {
    let none = Expected {
        presented: false,
        valid: false,
        verify_code: 0,
        verify_text: "no certificate presented".to_owned(),
        failed_depth: None,
        chain: Vec::new(),
    };
    if mode == Mode::NoRequest {
        // Nothing was requested, so nothing was sent, whatever the client holds.
        return none;
    }
    let (valid, verify_code, verify_text, failed_depth) = match client {
        Client::NoCert => return none,
        Client::Valid => (true, 0, "ok", None),
        Client::Untrusted => (
            false,
            19,
            "self-signed certificate in certificate chain",
            Some(1),
        ),
        Client::Expired => (false, 10, "certificate has expired", Some(0)),
        Client::SelfSigned => (false, 18, "self-signed certificate", Some(0)),
    };
    Expected {
        presented: true,
        valid,
        verify_code,
        verify_text: verify_text.to_owned(),
        failed_depth,
        chain: presented_chain(client),
    }
}

/// What the client should see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The verdict line after `[id] `.
    Verdict(&'static str),
    /// A fatal alert: its number and OpenSSL's text for it.
    Alert(u8, &'static str),
}

/// Whether the handshake is refused in `mode` for `client`, and why.
fn refusal(mode: Mode, client: Client) -> Option<CertProblem> {
    if mode != Mode::Required {
        return None;
    }
    match client {
        Client::Valid => None,
        Client::NoCert => Some(CertProblem::Missing),
        Client::Untrusted | Client::SelfSigned => Some(CertProblem::Untrusted),
        Client::Expired => Some(CertProblem::Expired),
    }
}

fn expected_seen(mode: Mode, client: Client, tls: Tls) -> Seen {
    match refusal(mode, client) {
        None => {
            let report = expected_report(mode, client);
            Seen::Verdict(if !report.presented {
                "NoClientCertExists"
            } else if report.valid {
                "Yeah! You're authenticated!"
            } else {
                "ClientCertInvalid"
            })
        }
        Some(CertProblem::Missing) => match tls {
            Tls::V13 => Seen::Alert(116, "certificate required"),
            Tls::V12 => Seen::Alert(40, "handshake failure"),
        },
        Some(CertProblem::Expired) => Seen::Alert(45, "certificate expired"),
        Some(_) => Seen::Alert(48, "unknown ca"),
    }
}

fn assert_alert(error: &str, number: u8, text: &str, case: &str) {
    assert!(
        error.contains(&format!("alert {text}")),
        "{case}: expected alert '{text}', client got: {error}"
    );
    assert!(
        error.contains(&format!("SSL alert number {number}")),
        "{case}: expected alert number {number}, client got: {error}"
    );
}

/// The events of the only connection the server saw.
fn only_connection(events: BTreeMap<u64, Vec<Event>>, case: &str) -> (u64, Vec<Event>) {
    assert_eq!(events.len(), 1, "{case}: connections seen: {events:#?}");
    events.into_iter().next().unwrap()
}

/// Runs one client of kind `client` against a server in `mode`, restricted to `tls`, and
/// checks everything both sides saw.
fn run_case(mode: Mode, client: Client, tls: Tls) {
    let case = format!("{mode:?} mode, {client:?} client, {tls:?}");
    let server = TestServer::start(
        mode.options(),
        Reply::Verdict {
            close_after: CLOSE_AFTER,
        },
    );
    let connector = support::connector(client.file(), Some(tls.version()));
    let outcome = support::connect_with(&connector, server.addr);

    // What the client sees.
    let seen = expected_seen(mode, client, tls);
    let mut wrote_early = false;
    match (seen, outcome) {
        (Seen::Verdict(_), Err(error)) => panic!("{case}: handshake failed: {error}"),
        (Seen::Verdict(text), Ok(mut stream)) => {
            let (bytes, end) = support::read_to_end(&mut stream);
            assert_eq!(
                end,
                Ok(()),
                "{case}: the server should close with close_notify"
            );
            let line = String::from_utf8(bytes).unwrap();
            // A fresh server, so this is its first connection.
            assert_eq!(line, format!("[1] {text}\n"), "{case}: verdict line");
        }
        (Seen::Alert(number, text), Err(error)) => {
            // TLS 1.2: the client learns of the refusal inside its own handshake.
            assert_eq!(
                tls,
                Tls::V12,
                "{case}: TLS 1.3 client handshake should complete"
            );
            assert_alert(&error, number, text, &case);
        }
        (Seen::Alert(number, text), Ok(mut stream)) => {
            // TLS 1.3: the client's side of the handshake completes before the server has
            // looked at its certificate. Data it writes at once must never be delivered.
            assert_eq!(
                tls,
                Tls::V13,
                "{case}: TLS 1.2 handshake should have failed"
            );
            wrote_early = support::send(&mut stream, b"written before the verdict\n").is_ok();
            let (bytes, end) = support::read_to_end(&mut stream);
            assert!(
                bytes.is_empty(),
                "{case}: refused client got data: {bytes:?}"
            );
            let error = end.expect_err("refused client should get an alert, not a clean close");
            assert_alert(&error, number, text, &case);
        }
    }

    // What the handler sees.
    let (id, events) = only_connection(server.journal.wait_disconnects(1, WAIT), &case);
    assert_eq!(id, 1, "{case}");
    let expected = expected_report(mode, client);
    match refusal(mode, client) {
        None => {
            assert_eq!(events.len(), 2, "{case}: events {events:#?}");
            match &events[0] {
                Event::SslDone {
                    report,
                    protocol,
                    resumed,
                } => {
                    assert_report(report, &expected, &format!("{case}: SslDone"));
                    assert_eq!(protocol, tls.protocol(), "{case}: protocol");
                    assert!(!resumed, "{case}: a first handshake cannot be resumed");
                    assert_eq!(report.problem(), problem_of(&expected), "{case}: problem()");
                }
                other => panic!("{case}: first event should be SslDone, got {other:?}"),
            }
            match &events[1] {
                Event::Disconnect(DisconnectReason::ClosedByHandler) => {}
                other => panic!(
                    "{case}: second event should be Disconnect(ClosedByHandler), got {other:?}"
                ),
            }
        }
        Some(problem) => {
            assert_eq!(events.len(), 2, "{case}: events {events:#?}");
            match &events[0] {
                Event::CertRejected {
                    problem: got,
                    report,
                } => {
                    assert_eq!(*got, problem, "{case}: problem in CertRejected");
                    assert_report(report, &expected, &format!("{case}: CertRejected"));
                    assert_eq!(report.problem(), Some(problem), "{case}: problem()");
                }
                other => panic!("{case}: first event should be CertRejected, got {other:?}"),
            }
            match &events[1] {
                Event::Disconnect(DisconnectReason::CertRejected(got)) => {
                    assert_eq!(*got, problem, "{case}: problem in Disconnect")
                }
                other => {
                    panic!("{case}: second event should be Disconnect(CertRejected), got {other:?}")
                }
            }
            if tls == Tls::V13 {
                // Checked by the event count too; stated here for the early write.
                assert!(
                    !events
                        .iter()
                        .any(|e| matches!(e, Event::Input { .. } | Event::SslDone { .. })),
                    "{case}: refused client reached the handler (wrote early: {wrote_early})"
                );
            }
        }
    }
}

/// What `ClientCertReport::problem` should say for a report.
fn problem_of(expected: &Expected) -> Option<CertProblem> {
    if !expected.presented {
        return Some(CertProblem::Missing);
    }
    match expected.verify_code {
        0 => None,
        10 => Some(CertProblem::Expired),
        _ => Some(CertProblem::Untrusted),
    }
}

macro_rules! cases {
    ($($name:ident: $mode:ident, $client:ident, $tls:ident;)*) => {
        $(
            #[test]
            fn $name() {
                run_case(Mode::$mode, Client::$client, Tls::$tls);
            }
        )*
    };
}

cases! {
    no_request_reports_no_cert_for_valid_client_tls13: NoRequest, Valid, V13;
    no_request_reports_no_cert_for_certless_client_tls13: NoRequest, NoCert, V13;
    no_request_reports_no_cert_for_untrusted_client_tls13: NoRequest, Untrusted, V13;
    no_request_reports_no_cert_for_expired_client_tls13: NoRequest, Expired, V13;
    no_request_reports_no_cert_for_selfsigned_client_tls13: NoRequest, SelfSigned, V13;
    no_request_reports_no_cert_for_valid_client_tls12: NoRequest, Valid, V12;
    no_request_reports_no_cert_for_certless_client_tls12: NoRequest, NoCert, V12;
    no_request_reports_no_cert_for_untrusted_client_tls12: NoRequest, Untrusted, V12;
    no_request_reports_no_cert_for_expired_client_tls12: NoRequest, Expired, V12;
    no_request_reports_no_cert_for_selfsigned_client_tls12: NoRequest, SelfSigned, V12;

    accepts_valid_cert_in_required_mode_tls13: Required, Valid, V13;
    rejects_missing_cert_in_required_mode_tls13: Required, NoCert, V13;
    rejects_untrusted_cert_in_required_mode_tls13: Required, Untrusted, V13;
    rejects_expired_cert_in_required_mode_tls13: Required, Expired, V13;
    rejects_selfsigned_cert_in_required_mode_tls13: Required, SelfSigned, V13;
    accepts_valid_cert_in_required_mode_tls12: Required, Valid, V12;
    rejects_missing_cert_in_required_mode_tls12: Required, NoCert, V12;
    rejects_untrusted_cert_in_required_mode_tls12: Required, Untrusted, V12;
    rejects_expired_cert_in_required_mode_tls12: Required, Expired, V12;
    rejects_selfsigned_cert_in_required_mode_tls12: Required, SelfSigned, V12;

    authenticates_valid_cert_in_optional_mode_tls13: Optional, Valid, V13;
    reports_missing_cert_in_optional_mode_tls13: Optional, NoCert, V13;
    reports_untrusted_cert_in_optional_mode_tls13: Optional, Untrusted, V13;
    reports_expired_cert_in_optional_mode_tls13: Optional, Expired, V13;
    reports_selfsigned_cert_in_optional_mode_tls13: Optional, SelfSigned, V13;
    authenticates_valid_cert_in_optional_mode_tls12: Optional, Valid, V12;
    reports_missing_cert_in_optional_mode_tls12: Optional, NoCert, V12;
    reports_untrusted_cert_in_optional_mode_tls12: Optional, Untrusted, V12;
    reports_expired_cert_in_optional_mode_tls12: Optional, Expired, V12;
    reports_selfsigned_cert_in_optional_mode_tls12: Optional, SelfSigned, V12;
}

/// A socket that holds back everything written until the next read or an explicit
/// [`release`](Corked::release), so that what a client writes right after its handshake
/// reaches the server in the same segment as the end of that handshake.
#[derive(Debug)]
struct Corked {
    tcp: TcpStream,
    held: Vec<u8>,
}

impl Corked {
    fn release(&mut self) -> io::Result<()> {
        let held = std::mem::take(&mut self.held);
        self.tcp.write_all(&held)
    }
}

impl Read for Corked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.release()?;
        self.tcp.read(buf)
    }
}

impl Write for Corked {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.held.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connects a TLS 1.3 client whose handshake flight and `line` reach the server together.
fn connect_corked(server: &TestServer, client: Client, line: &[u8]) -> SslStream<Corked> {
    let connector = support::connector(client.file(), Some(SslVersion::TLS1_3));
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let corked = Corked {
        tcp,
        held: Vec::new(),
    };
    let mut stream = connector
        .connect("localhost", corked)
        .unwrap_or_else(|e| panic!("{client:?}: TLS 1.3 client handshake failed: {e}"));
    // The certificate, Finished and this line leave together.
    stream.write_all(line).unwrap();
    stream.get_mut().release().unwrap();
    stream
}

#[test]
fn refused_client_data_sent_with_its_finished_never_reaches_handler_tls13() {
    for client in [
        Client::NoCert,
        Client::Untrusted,
        Client::Expired,
        Client::SelfSigned,
    ] {
        let case = format!("{client:?}");
        let server = TestServer::start(Mode::Required.options(), Reply::Echo);
        let mut stream = connect_corked(&server, client, b"GET /secret\n");

        let mut buf = [0u8; 1024];
        let error = stream
            .read(&mut buf)
            .expect_err("the server must refuse, not answer");
        let Seen::Alert(number, alert) = expected_seen(Mode::Required, client, Tls::V13) else {
            unreachable!("{case} is refused in required mode")
        };
        assert_alert(&support::error_text(&error), number, alert, &case);

        let (_, events) = only_connection(server.journal.wait_disconnects(1, WAIT), &case);
        assert!(
            matches!(
                events.as_slice(),
                [Event::CertRejected { .. }, Event::Disconnect(_)]
            ),
            "{case}: a refused client's data reached the handler: {events:#?}"
        );
    }
}

/// The counterpart of the test above: the same early line from an accepted client is
/// delivered, so the refused client's line was really sent.
#[test]
fn accepted_client_data_sent_with_its_finished_is_delivered_tls13() {
    let server = TestServer::start(Mode::Required.options(), Reply::Echo);
    let mut stream = connect_corked(&server, Client::Valid, b"GET /secret\n");
    let mut echoed = Vec::new();
    let mut buf = [0u8; 1024];
    while !echoed.ends_with(b"\n") {
        let n = stream.read(&mut buf).expect("echo from the server");
        assert_ne!(n, 0, "server closed before echoing");
        echoed.extend_from_slice(&buf[..n]);
    }
    assert_eq!(echoed, b"GET /secret\n");
    stream.shutdown().unwrap();
    // The close_notify is held like every other write.
    stream.get_mut().release().unwrap();
    drop(stream);

    let (_, events) = only_connection(server.journal.wait_disconnects(1, WAIT), "valid");
    let input: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Event::Input { data, tls: true } => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(input, b"GET /secret\n", "events: {events:#?}");
    assert!(
        matches!(events.first(), Some(Event::SslDone { .. })),
        "{events:#?}"
    );
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnect(DisconnectReason::PeerClosed))
        ),
        "{events:#?}"
    );
}

/// Runs one TLS 1.3 client against a fresh server in `mode` and returns the report the
/// handler got, from `SslDone` or `CertRejected`.
fn report_for(mode: Mode, connector: &openssl::ssl::SslConnector) -> ClientCertReport {
    let server = TestServer::start(
        mode.options(),
        Reply::Verdict {
            close_after: CLOSE_AFTER,
        },
    );
    if let Ok(mut stream) = support::connect_with(connector, server.addr) {
        // What the client sees is checked by the tests above; only the report matters here.
        let _ = support::read_to_end(&mut stream);
    }
    let (_, events) = only_connection(
        server.journal.wait_disconnects(1, WAIT),
        &format!("{mode:?}"),
    );
    match events.first() {
        Some(Event::SslDone { report, .. } | Event::CertRejected { report, .. }) => report.clone(),
        other => panic!("{mode:?}: first event {other:?}"),
    }
}

#[test]
fn refused_report_lists_the_chain_as_presented_when_the_client_sends_the_root_too() {
    // The expired client's chain followed by the root it chains to, in a file of our own.
    let mut pem = std::fs::read(support::cert("client-expired.pem")).unwrap();
    pem.extend(std::fs::read(support::cert("ca.pem")).unwrap());
    let path = std::env::temp_dir().join(format!(
        "sslify-client-expired-with-root-{}.pem",
        std::process::id()
    ));
    std::fs::write(&path, &pem).unwrap();
    let mut builder =
        openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    builder.set_ca_file(support::cert("ca.pem")).unwrap();
    builder.set_certificate_chain_file(&path).unwrap();
    builder
        .set_private_key_file(
            support::cert("client-expired.key"),
            openssl::ssl::SslFiletype::PEM,
        )
        .unwrap();
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_3))
        .unwrap();
    let connector = builder.build();
    std::fs::remove_file(&path).unwrap();

    let mut presented = presented_chain(Client::Expired);
    presented.push(Entry {
        subject: dn("sslify test root CA"),
        issuer: dn("sslify test root CA"),
        serial: pem_serials("ca.pem").remove(0),
    });

    let optional = report_for(Mode::Optional, &connector);
    assert_eq!(
        Expected::of(&optional).chain,
        presented,
        "optional mode: chain as presented"
    );
    let refused = report_for(Mode::Required, &connector);
    assert_eq!(refused.problem(), Some(CertProblem::Expired), "{refused:?}");
    assert_eq!(
        Expected::of(&refused).chain,
        presented,
        "required mode: the refused chain as presented, root included"
    );
}
