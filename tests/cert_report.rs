//! The client-certificate report in full: names in both forms, serial, fingerprint,
//! alternative names, validity and the one-line description, each compared with what
//! the openssl crate reads from the certificate files themselves.

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use openssl::asn1::Asn1TimeRef;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use sslify::{CertEntry, ClientCertReport, Options};
use support::crl::{
    assert_served, pem_certs, self_signed_certificate, Scratch, INTERMEDIATE, ROOT, WAIT,
};
use support::{Reply, TestServer};

const VALID: &str = "/C=US/O=sslify test/CN=client valid";

/// A server that lets every client through the handshake and answers with the verdict.
fn optional_server() -> TestServer {
    server(support::options().request_client_cert())
}

fn server(options: Options) -> TestServer {
    TestServer::start(
        options,
        Reply::Verdict {
            close_after: Duration::ZERO,
        },
    )
}

/// Connects with the certificate chain and key in `certs/<chain>` and `certs/<key>`, reads
/// until the server closes, and returns the report the handler got for connection `id`.
fn report_for(server: &TestServer, id: u64, chain: &str, key: &str) -> ClientCertReport {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_ca_file(support::cert("ca.pem")).unwrap();
    builder
        .set_certificate_chain_file(support::cert(chain))
        .unwrap();
    builder
        .set_private_key_file(support::cert(key), SslFiletype::PEM)
        .unwrap();
    builder.set_verify(SslVerifyMode::PEER);
    let connector = builder.build();
    let mut stream = support::connect_with(&connector, server.addr)
        .unwrap_or_else(|e| panic!("{chain}: handshake failed: {e}"));
    let (_, end) = support::read_to_end(&mut stream);
    assert_eq!(end, Ok(()), "{chain}: the server should close cleanly");
    drop(stream);
    let events = server.journal.wait_disconnects(id as usize, WAIT);
    assert_served(&events, id, chain).0
}

/// The report for `certs/client-<name>.pem` as connection `id`.
fn client_report(server: &TestServer, id: u64, name: &str) -> ClientCertReport {
    report_for(
        server,
        id,
        &format!("client-{name}.pem"),
        &format!("client-{name}.key"),
    )
}

fn only_hex(text: &str) -> String {
    text.replace(':', "").to_ascii_lowercase()
}

/// The serial as `openssl x509 -serial` prints it, read with the openssl crate.
fn openssl_serial(cert: &X509) -> String {
    cert.serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_string()
}

fn system_time(time: &Asn1TimeRef) -> SystemTime {
    let diff = openssl::asn1::Asn1Time::from_unix(0)
        .unwrap()
        .diff(time)
        .unwrap();
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap())
}

fn leaf(report: &ClientCertReport) -> &CertEntry {
    report.leaf().expect("a presented certificate")
}

#[test]
fn reports_valid_client_subject_and_issuer_in_one_line_and_rfc4514_forms() {
    let server = server(support::options().require_client_cert());
    let report = client_report(&server, 1, "valid");
    assert!(report.presented && report.valid, "{report:#?}");

    let client = leaf(&report);
    assert_eq!(client.subject, VALID);
    assert_eq!(
        client.subject_rfc4514(),
        "CN=client valid,O=sslify test,C=US"
    );
    assert_eq!(client.issuer, INTERMEDIATE);
    assert_eq!(
        client.issuer_rfc4514(),
        "CN=sslify test intermediate CA,O=sslify test,C=US"
    );

    assert_eq!(
        report.chain.len(),
        2,
        "the client sends its intermediate along"
    );
    let intermediate = &report.chain[1];
    assert_eq!(intermediate.subject, INTERMEDIATE);
    assert_eq!(
        intermediate.subject_rfc4514(),
        "CN=sslify test intermediate CA,O=sslify test,C=US"
    );
    assert_eq!(intermediate.issuer, ROOT);
    assert_eq!(
        intermediate.issuer_rfc4514(),
        "CN=sslify test root CA,O=sslify test,C=US"
    );
}

#[test]
fn reports_serial_hex_as_openssl_prints_it() {
    let server = optional_server();
    for (id, name) in [
        (1, "valid"),
        (2, "serialpad"),
        (3, "serialzero"),
        (4, "expired"),
    ] {
        let report = client_report(&server, id, name);
        let file = pem_certs(&format!("client-{name}.pem"));
        for (entry, cert) in report.chain.iter().zip(&file) {
            assert_eq!(
                only_hex(&entry.serial_hex()),
                only_hex(&openssl_serial(cert)),
                "client {name}: serial of {}",
                entry.subject
            );
            assert_eq!(
                entry.serial,
                cert.serial_number().to_bn().unwrap().to_vec(),
                "client {name}: serial bytes of {}",
                entry.subject
            );
        }
        assert_eq!(report.chain.len(), file.len(), "client {name}: chain");
    }
}

#[test]
fn reports_padded_and_inner_zero_serials_without_padding() {
    let server = optional_server();
    let pad = client_report(&server, 1, "serialpad");
    assert_eq!(leaf(&pad).serial_hex(), "80:ab:00:cd:12");
    assert_eq!(leaf(&pad).serial, vec![0x80, 0xab, 0x00, 0xcd, 0x12]);
    let zero = client_report(&server, 2, "serialzero");
    assert_eq!(leaf(&zero).serial_hex(), "12:00:00:34:00");
}

#[test]
fn reports_sha256_fingerprint_of_each_presented_certificate() {
    let server = optional_server();
    let report = client_report(&server, 1, "valid");
    let file = pem_certs("client-valid.pem");
    assert_eq!(report.chain.len(), file.len());
    for (entry, cert) in report.chain.iter().zip(&file) {
        let digest = cert.digest(MessageDigest::sha256()).unwrap();
        let fingerprint = entry.sha256_fingerprint();
        assert_eq!(
            only_hex(&fingerprint),
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "{}",
            entry.subject
        );
        // Colon-separated lower-case pairs, as documented.
        assert_eq!(fingerprint, sslify::hexdump(&digest));
        assert_eq!(fingerprint.len(), 32 * 3 - 1);
    }
    assert_ne!(
        report.chain[0].sha256_fingerprint(),
        report.chain[1].sha256_fingerprint()
    );
}

#[test]
fn reports_the_presented_certificates_themselves() {
    let server = optional_server();
    let report = client_report(&server, 1, "valid");
    let file = pem_certs("client-valid.pem");
    for (entry, cert) in report.chain.iter().zip(&file) {
        assert_eq!(
            entry.certificate().to_der().unwrap(),
            cert.to_der().unwrap(),
            "{}",
            entry.subject
        );
    }
}

#[test]
fn reports_no_alternative_names_for_clients_without_them() {
    let server = optional_server();
    for (id, name) in [(1, "valid"), (2, "expired")] {
        assert!(
            pem_certs(&format!("client-{name}.pem"))[0]
                .subject_alt_names()
                .is_none(),
            "client-{name}.pem has no subjectAltName"
        );
        let report = client_report(&server, id, name);
        assert_eq!(leaf(&report).subject_alt_names(), Vec::<String>::new());
    }
}

/// The server's certificate has DNS and IP alternative names; presented as a client
/// certificate it fails verification (it is not for client authentication), so the
/// handshake only completes in optional mode, where the report still lists it.
#[test]
fn reports_dns_and_ip_alternative_names_in_certificate_order() {
    let server = optional_server();
    let report = report_for(&server, 1, "server-ec.pem", "server-ec.key");
    assert!(report.presented && !report.valid, "{report:#?}");
    assert_eq!(leaf(&report).subject, "/C=US/O=sslify test/CN=localhost");
    assert_eq!(
        leaf(&report).subject_alt_names(),
        vec!["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    );
}

#[test]
fn reports_validity_of_valid_client_far_into_the_future() {
    let server = optional_server();
    let report = client_report(&server, 1, "valid");
    let cert = &pem_certs("client-valid.pem")[0];
    let entry = leaf(&report);
    let now = SystemTime::now();

    let not_before = entry.not_before().expect("notBefore");
    let not_after = entry.not_after().expect("notAfter");
    assert_eq!(not_before, system_time(cert.not_before()));
    assert_eq!(not_after, system_time(cert.not_after()));
    assert!(not_before <= now, "{not_before:?}");
    let fifty_years = Duration::from_secs(50 * 365 * 86_400);
    assert!(not_after > now + fifty_years, "{not_after:?}");

    let (from, until) = entry.validity_text();
    assert_eq!(from, cert.not_before().to_string());
    assert_eq!(until, cert.not_after().to_string());
    assert!(
        from.ends_with(" GMT") && until.ends_with(" GMT"),
        "{from} {until}"
    );
}

#[test]
fn reports_validity_of_expired_client_in_the_past_in_optional_mode() {
    let server = optional_server();
    let report = client_report(&server, 1, "expired");
    assert!(report.presented && !report.valid, "{report:#?}");
    let entry = leaf(&report);
    let not_after = entry.not_after().expect("notAfter");
    assert!(not_after < SystemTime::now(), "{not_after:?}");
    // 2021-01-01T00:00:00Z and 2020-01-01T00:00:00Z.
    assert_eq!(
        not_after,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_609_459_200)
    );
    assert_eq!(
        entry.not_before(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800))
    );
    assert_eq!(
        entry.validity_text(),
        (
            "Jan  1 00:00:00 2020 GMT".to_owned(),
            "Jan  1 00:00:00 2021 GMT".to_owned()
        )
    );
}

#[test]
fn displays_valid_report_with_subject_and_serial() {
    let server = optional_server();
    let report = client_report(&server, 1, "valid");
    let serial = leaf(&report).serial_hex();
    let text = report.to_string();
    assert_eq!(
        text,
        format!("valid client certificate {VALID} (serial {serial})")
    );
    assert!(text.contains("valid client certificate"));
    assert!(!text.contains("depth"), "{text}");
}

#[test]
fn displays_invalid_report_with_verify_text_and_depth() {
    let server = optional_server();
    let report = client_report(&server, 1, "expired");
    let serial = leaf(&report).serial_hex();
    assert_eq!(report.verify_text, "certificate has expired");
    assert_eq!(report.failed_depth, Some(0));
    assert_eq!(
        report.to_string(),
        format!(
            "invalid client certificate /C=US/O=sslify test/CN=client expired \
             (serial {serial}): certificate has expired at depth 0"
        )
    );
}

#[test]
fn displays_revoked_report_with_crl_reason_and_depth() {
    let server = server(
        support::options()
            .request_client_cert()
            .crl_file(support::cert("crl.pem")),
    );
    let report = client_report(&server, 1, "revoked");
    let text = report.to_string();
    assert!(
        text.starts_with("invalid client certificate /C=US/O=sslify test/CN=client revoked"),
        "{text}"
    );
    assert!(text.contains(&leaf(&report).serial_hex()), "{text}");
    assert!(text.contains(&report.verify_text), "{text}");
    assert!(report.verify_text.contains("revoked"), "{text}");
    assert!(text.ends_with(" at depth 0"), "{text}");
}

#[test]
fn displays_missing_certificate() {
    let server = optional_server();
    let connector = support::connector(None, None);
    let mut stream = support::connect_with(&connector, server.addr).unwrap();
    let (line, end) = support::read_to_end(&mut stream);
    assert_eq!(end, Ok(()));
    assert_eq!(String::from_utf8(line).unwrap(), "[1] NoClientCertExists\n");
    let events = server.journal.wait_disconnects(1, WAIT);
    let (report, _) = assert_served(&events, 1, "no certificate");
    assert!(!report.presented);
    assert_eq!(report.to_string(), "no client certificate");
}

/// The report belongs to the connection: two clients in a row get their own.
#[test]
fn reports_each_connection_its_own_certificate() {
    let server = optional_server();
    let first = client_report(&server, 1, "valid");
    let second = client_report(&server, 2, "serialpad");
    assert_eq!(leaf(&first).subject, VALID);
    assert_eq!(
        leaf(&second).subject,
        "/C=US/O=sslify test/CN=client serialpad"
    );
    assert_ne!(
        leaf(&first).sha256_fingerprint(),
        leaf(&second).sha256_fingerprint()
    );
}

/// Like [`report_for`], with the certificate chain and key in files anywhere.
fn report_for_files(server: &TestServer, id: u64, chain: &Path, key: &Path) -> ClientCertReport {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_ca_file(support::cert("ca.pem")).unwrap();
    builder.set_certificate_chain_file(chain).unwrap();
    builder.set_private_key_file(key, SslFiletype::PEM).unwrap();
    builder.set_verify(SslVerifyMode::PEER);
    let connector = builder.build();
    let case = chain.display().to_string();
    let mut stream = support::connect_with(&connector, server.addr)
        .unwrap_or_else(|e| panic!("{case}: handshake failed: {e}"));
    let (_, end) = support::read_to_end(&mut stream);
    assert_eq!(end, Ok(()), "{case}: the server should close cleanly");
    drop(stream);
    let events = server.journal.wait_disconnects(id as usize, WAIT);
    assert_served(&events, id, &case).0
}

/// The control characters in `text`, if any.
fn control_characters(text: &str) -> Vec<char> {
    text.chars().filter(|c| c.is_control()).collect()
}

#[test]
fn control_characters_in_a_client_name_are_escaped_in_every_form() {
    let scratch = Scratch::new("control-name");
    // A line break and an ANSI escape sequence: enough to forge a log line and clear a
    // terminal if written out raw.
    let subject = "/C=US/O=sslify test/CN=evil\n[7] forged\x1b[2J";
    let (chain, key) = match self_signed_certificate(&scratch, "control", subject) {
        Ok(files) => files,
        Err(reason) => {
            println!("skipped: cannot make a certificate with control characters: {reason}");
            return;
        }
    };
    // The certificate really carries the raw characters.
    let made = X509::from_pem(&std::fs::read(&chain).unwrap()).unwrap();
    let cn = made
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .expect("a common name")
        .data()
        .as_slice()
        .to_vec();
    assert_eq!(cn, b"evil\n[7] forged\x1b[2J", "the CN as made");

    let server = optional_server();
    let report = report_for_files(&server, 1, &chain, &key);
    assert!(report.presented && !report.valid, "{report:#?}");
    let entry = leaf(&report);

    for (form, text) in [
        ("subject", entry.subject.clone()),
        ("issuer", entry.issuer.clone()),
        ("subject_rfc4514", entry.subject_rfc4514()),
        ("issuer_rfc4514", entry.issuer_rfc4514()),
        ("Display", report.to_string()),
    ] {
        assert_eq!(
            control_characters(&text),
            [],
            "{form} holds raw control characters: {text:?}"
        );
    }
    assert_eq!(
        entry.subject,
        "/C=US/O=sslify test/CN=evil\\x0A[7] forged\\x1B[2J"
    );
    assert!(entry.subject.contains("\\x0A"), "{:?}", entry.subject);
    assert!(entry.subject.contains("\\x1B"), "{:?}", entry.subject);
    let rfc4514 = entry.subject_rfc4514();
    assert!(
        rfc4514.contains("\\0A") && rfc4514.contains("\\1B"),
        "the RFC 4514 form writes control characters as hex pairs: {rfc4514:?}"
    );
}
