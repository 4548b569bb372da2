//! Session resumption while client certificates are requested: a resumed connection must
//! be resumed on both sides and report the same client certificate as the full handshake
//! it resumes.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use openssl::ssl::{
    SslConnector, SslFiletype, SslMethod, SslOptions, SslSession, SslStream, SslVersion,
};
use openssl::x509::X509;
use sslify::{ClientCertReport, DisconnectReason, Options};
use support::{Event, Reply, TestServer};

const CLOSE_AFTER: Duration = Duration::from_millis(100);
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Required,
    Optional,
}

/// How the client offers to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    /// As `support::connector` sets it up: it accepts and presents session tickets.
    Default,
    /// TLS 1.2 with tickets turned off on the client, so only the session id is offered.
    SessionIdOnly,
}

fn options(mode: Mode) -> Options {
    match mode {
        Mode::Required => support::options().require_client_cert(),
        Mode::Optional => support::options().request_client_cert(),
    }
}

fn connector(client: Option<&str>, version: SslVersion, resume: Resume) -> SslConnector {
    if resume == Resume::Default {
        return support::connector(client, Some(version));
    }
    // The same client as `support::connector`, without the session ticket extension.
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_ca_file(support::cert("ca.pem")).unwrap();
    if let Some(name) = client {
        builder
            .set_certificate_chain_file(support::cert(&format!("client-{name}.pem")))
            .unwrap();
        builder
            .set_private_key_file(
                support::cert(&format!("client-{name}.key")),
                SslFiletype::PEM,
            )
            .unwrap();
    }
    builder.set_min_proto_version(Some(version)).unwrap();
    builder.set_max_proto_version(Some(version)).unwrap();
    builder.set_options(SslOptions::NO_TICKET);
    builder.build()
}

/// Reads the verdict line and the server's close; returns the line.
fn read_verdict(stream: &mut SslStream<TcpStream>, what: &str) -> String {
    let (bytes, end) = support::read_to_end(stream);
    assert_eq!(
        end,
        Ok(()),
        "{what}: the server should close with close_notify"
    );
    // Answer with our own close_notify: OpenSSL marks the session of a connection freed
    // without one as not resumable.
    stream.shutdown().expect("close_notify to the server");
    String::from_utf8(bytes).unwrap()
}

/// The first SslDone of a connection and the events around it.
fn ssl_done(events: &[Event], what: &str) -> (ClientCertReport, bool, String) {
    match events {
        [Event::SslDone {
            report,
            protocol,
            resumed,
        }, Event::Disconnect(DisconnectReason::ClosedByHandler)] => {
            (report.clone(), *resumed, protocol.clone())
        }
        other => panic!("{what}: expected SslDone then Disconnect(ClosedByHandler): {other:#?}"),
    }
}

/// The serials of the certificates in a client's PEM file, in file order.
fn pem_serials(client: &str) -> Vec<Vec<u8>> {
    let pem = std::fs::read(support::cert(&format!("client-{client}.pem"))).unwrap();
    X509::stack_from_pem(&pem)
        .unwrap()
        .iter()
        .map(|cert| cert.serial_number().to_bn().unwrap().to_vec())
        .collect()
}

/// The serial of the client's own certificate.
fn leaf_serial(client: &str) -> Vec<u8> {
    pem_serials(client).remove(0)
}

/// A full handshake, then a second connection resuming its session; checks both sides
/// agree it was resumed and the resumed report matches the first one.
fn run_case(mode: Mode, client: Option<&str>, version: SslVersion, resume: Resume) {
    let case = format!("{mode:?} mode, client {client:?}, {version:?}, {resume:?}");
    let server = TestServer::start(
        options(mode),
        Reply::Verdict {
            close_after: CLOSE_AFTER,
        },
    );
    let connector = connector(client, version, resume);

    // Full handshake. Reading the verdict also takes in the TLS 1.3 session tickets, which
    // the server sends after its handshake and before any data.
    let mut first = support::connect_with(&connector, server.addr)
        .unwrap_or_else(|e| panic!("{case}: first handshake failed: {e}"));
    assert!(
        !first.ssl().session_reused(),
        "{case}: nothing to resume yet"
    );
    let first_verdict = read_verdict(&mut first, &case);
    let session: SslSession = first
        .ssl()
        .session()
        .expect("a session after the first handshake")
        .to_owned();
    drop(first);
    let first_events = server.journal.wait_disconnects(1, WAIT);

    // Resumed handshake.
    let mut config = connector.configure().unwrap();
    // SAFETY: the session was made by this connector's own context.
    unsafe { config.set_session(&session).unwrap() };
    let ssl = config.into_ssl("localhost").unwrap();
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut second = SslStream::new(ssl, tcp).unwrap();
    second
        .connect()
        .unwrap_or_else(|e| panic!("{case}: resumed handshake failed: {e}"));
    assert!(
        second.ssl().session_reused(),
        "{case}: the client should have resumed"
    );
    let second_verdict = read_verdict(&mut second, &case);
    drop(second);

    let journal = server.journal.wait_disconnects(2, WAIT);
    assert_eq!(journal.len(), 2, "{case}: connections {journal:#?}");
    let (full, full_resumed, full_protocol) = ssl_done(&first_events[&1], &case);
    let (again, again_resumed, again_protocol) = ssl_done(&journal[&2], &case);
    assert!(!full_resumed, "{case}: first handshake reported as resumed");
    assert!(
        again_resumed,
        "{case}: server did not report the resumption"
    );
    assert_eq!(full_protocol, again_protocol, "{case}: protocol");

    // The full handshake's report is what the client holds.
    let expected_valid = client == Some("valid");
    assert_eq!(full.presented, client.is_some(), "{case}: full presented");
    assert_eq!(full.valid, expected_valid, "{case}: full valid");
    if let Some(name) = client {
        let leaf = full.leaf().expect("leaf in the full report");
        assert_eq!(
            leaf.subject,
            format!("/C=US/O=sslify test/CN=client {name}"),
            "{case}"
        );
        assert_eq!(leaf.serial, leaf_serial(name), "{case}: full leaf serial");
        // The client's certificate and the intermediate it sends along.
        let serials: Vec<&Vec<u8>> = full.chain.iter().map(|entry| &entry.serial).collect();
        assert_eq!(
            serials,
            pem_serials(name).iter().collect::<Vec<_>>(),
            "{case}: full chain"
        );
    } else {
        assert!(full.chain.is_empty(), "{case}: full chain");
    }

    // The resumed report says the same. The failure depth is not kept in a session, so
    // it is left out of the comparison.
    assert_eq!(again.presented, full.presented, "{case}: resumed presented");
    assert_eq!(again.valid, full.valid, "{case}: resumed valid");
    assert_eq!(
        again.verify_code, full.verify_code,
        "{case}: resumed verify code"
    );
    assert_eq!(
        again.verify_text, full.verify_text,
        "{case}: resumed verify text"
    );
    assert_eq!(
        again.leaf().map(|leaf| (&leaf.subject, &leaf.serial)),
        full.leaf().map(|leaf| (&leaf.subject, &leaf.serial)),
        "{case}: resumed leaf"
    );
    assert_eq!(again.chain, full.chain, "{case}: resumed chain");
    assert_eq!(again.problem(), full.problem(), "{case}: resumed problem");

    // Both connections got the same verdict, each with its own id.
    assert_eq!(
        first_verdict.strip_prefix("[1] "),
        second_verdict.strip_prefix("[2] "),
        "{case}: verdicts {first_verdict:?} and {second_verdict:?}"
    );
}

macro_rules! cases {
    ($($name:ident: $mode:ident, $client:expr, $version:ident, $resume:ident;)*) => {
        $(
            #[test]
            fn $name() {
                run_case(Mode::$mode, $client, SslVersion::$version, Resume::$resume);
            }
        )*
    };
}

cases! {
    resumes_with_valid_cert_in_optional_mode_tls13: Optional, Some("valid"), TLS1_3, Default;
    resumes_with_valid_cert_in_optional_mode_tls12: Optional, Some("valid"), TLS1_2, Default;
    resumes_by_session_id_with_valid_cert_in_optional_mode_tls12:
        Optional, Some("valid"), TLS1_2, SessionIdOnly;
    resumes_without_cert_in_optional_mode_tls13: Optional, None, TLS1_3, Default;
    resumes_without_cert_in_optional_mode_tls12: Optional, None, TLS1_2, Default;
    resumes_by_session_id_without_cert_in_optional_mode_tls12: Optional, None, TLS1_2, SessionIdOnly;
    resumes_with_expired_cert_still_invalid_in_optional_mode_tls13:
        Optional, Some("expired"), TLS1_3, Default;
    resumes_with_expired_cert_still_invalid_in_optional_mode_tls12:
        Optional, Some("expired"), TLS1_2, Default;
    resumes_with_valid_cert_in_required_mode_tls13: Required, Some("valid"), TLS1_3, Default;
    resumes_with_valid_cert_in_required_mode_tls12: Required, Some("valid"), TLS1_2, Default;
    resumes_by_session_id_with_valid_cert_in_required_mode_tls12:
        Required, Some("valid"), TLS1_2, SessionIdOnly;
}
