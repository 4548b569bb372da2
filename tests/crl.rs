//! The CRL rules, each checked twice: in the handshake (`Options::crl_file`), where the
//! client sees an alert and the handler `CertRejected`, and in the handler, which checks
//! each client itself with `CrlSet::check` and answers `[id] CRL`, `[id] CRL unusable` or
//! `[id] Yeah! You're authenticated!`.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use openssl::asn1::Asn1Time;
use openssl::ssl::{
    ShutdownState, SslConnector, SslFiletype, SslMethod, SslSession, SslStream, SslVerifyMode,
    SslVersion,
};
use openssl::x509::X509Crl;
use sslify::{
    CertProblem, CertRejected, ClientInput, ConfigError, CrlScope, CrlSet, CrlUnusable, CrlVerdict,
    Disconnect, DisconnectReason, Options, SslDone, UnusableCrlPolicy,
};
use support::crl::{
    assert_served, forge_intermediate_crl, judge_probe, judge_text, pem_certs, probe, serial_of,
    start_judge, Expect, Scratch, Verdicts, ALERT_BAD_SIGNATURE, ALERT_CRL_EXPIRED, ALERT_NO_CRL,
    ALERT_REVOKED, AUTHENTICATED, INTERMEDIATE, ROOT, WAIT,
};
use support::served::Served;
use support::{Reply, TestServer};

const REVOKED: Expect = Expect::Refused(CertProblem::Revoked, ALERT_REVOKED);
const NO_CRL: Expect = Expect::Refused(CertProblem::CrlUnusable, ALERT_NO_CRL);

/// A server that requires a client certificate and checks it against `crls` in the
/// handshake; its handler answers with the verdict line and closes.
fn handshake_server(crls: &[PathBuf], configure: impl FnOnce(Options) -> Options) -> TestServer {
    let mut options = support::options().require_client_cert();
    for file in crls {
        options = options.crl_file(file);
    }
    TestServer::start(
        configure(options),
        Reply::Verdict {
            close_after: Duration::ZERO,
        },
    )
}

/// Paths of files in certs/.
fn certs(names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(|name| support::cert(name)).collect()
}

/// A server that lets every chained certificate through the handshake and whose handler
/// checks the client's own certificate against `crls`, opened once.
fn handler_server(crls: &[PathBuf]) -> (TestServer, Verdicts) {
    let set = CrlSet::open(crls).expect("CRL files open");
    start_judge(support::options().request_client_cert(), set, None)
}

/// Like [`handler_server`], checking the whole chain up to the root CA.
fn chain_handler_server(crls: &[PathBuf]) -> (TestServer, Verdicts) {
    let set = CrlSet::open(crls).expect("CRL files open");
    let root = pem_certs("ca.pem").remove(0);
    start_judge(support::options().request_client_cert(), set, Some(root))
}

fn unusable(verdict: CrlVerdict, case: &str) -> CrlUnusable {
    match verdict {
        CrlVerdict::Unusable(why) => why,
        other => panic!("{case}: expected an unusable CRL, got {other:?}"),
    }
}

fn revocation(verdict: CrlVerdict, case: &str) -> sslify::Revocation {
    match verdict {
        CrlVerdict::Revoked(revocation) => revocation,
        other => panic!("{case}: expected revoked, got {other:?}"),
    }
}

/// The revocation date of the only entry of `certs/<file>`, computed from the CRL itself.
fn revocation_date(file: &str) -> SystemTime {
    let crl = X509Crl::from_pem(&std::fs::read(support::cert(file)).unwrap()).unwrap();
    let entries = crl.get_revoked().expect("entries");
    assert_eq!(entries.len(), 1, "{file} entries");
    let since_epoch = Asn1Time::from_unix(0)
        .unwrap()
        .diff(entries.get(0).unwrap().revocation_date())
        .unwrap();
    let secs =
        u64::try_from(i64::from(since_epoch.days) * 86_400 + i64::from(since_epoch.secs)).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

// ---------------------------------------------------------------------------------------
// A revoked client.

fn refuses_revoked_client(version: SslVersion) {
    let case = format!("crl.pem, {version:?}");
    let server = handshake_server(&certs(&["crl.pem"]), |o| o);
    let report = probe(&server, 1, "revoked", Some(version), REVOKED, &case);
    assert_eq!(report.verify_code, 23, "{case}: {report:#?}");
    assert_eq!(report.failed_depth, Some(0), "{case}: {report:#?}");
    let leaf = report.leaf().expect("the refused certificate");
    assert_eq!(leaf.subject, "/C=US/O=sslify test/CN=client revoked");
    assert_eq!(leaf.serial, serial_of("client-revoked.pem"));
    // The same server still serves a good client.
    probe(&server, 2, "valid", Some(version), AUTHENTICATED, &case);
}

#[test]
fn refuses_revoked_client_in_handshake_with_alert_44_tls13() {
    refuses_revoked_client(SslVersion::TLS1_3);
}

#[test]
fn refuses_revoked_client_in_handshake_with_alert_44_tls12() {
    refuses_revoked_client(SslVersion::TLS1_2);
}

#[test]
fn reports_revoked_client_as_invalid_with_code_23_in_optional_mode() {
    for version in [SslVersion::TLS1_3, SslVersion::TLS1_2] {
        let case = format!("optional mode, crl.pem, {version:?}");
        let server = TestServer::start(
            support::options()
                .request_client_cert()
                .crl_file(support::cert("crl.pem")),
            Reply::Verdict {
                close_after: Duration::ZERO,
            },
        );
        let report = probe(
            &server,
            1,
            "revoked",
            Some(version),
            Expect::Served("ClientCertInvalid"),
            &case,
        );
        assert!(report.presented, "{case}: {report:#?}");
        assert!(!report.valid, "{case}: {report:#?}");
        assert_eq!(report.verify_code, 23, "{case}: {report:#?}");
        assert!(
            report.verify_text.contains("revoked"),
            "{case}: verify_text {:?}",
            report.verify_text
        );
        assert_eq!(report.problem(), Some(CertProblem::Revoked), "{case}");
        assert_eq!(
            report.leaf().map(|leaf| leaf.serial.clone()),
            Some(serial_of("client-revoked.pem")),
            "{case}"
        );
        let report = probe(&server, 2, "valid", Some(version), AUTHENTICATED, &case);
        assert!(report.valid, "{case}: {report:#?}");
    }
}

#[test]
fn handler_answers_crl_to_revoked_client_with_serial_date_reason_and_file() {
    let crl_file = support::cert("crl.pem");
    let (server, verdicts) = handler_server(std::slice::from_ref(&crl_file));
    let case = "handler, crl.pem";

    let verdict = judge_probe(&server, &verdicts, 1, "revoked", None, case);
    let revoked = revocation(verdict, case);
    assert_eq!(revoked.serial, serial_of("client-revoked.pem"), "{case}");
    assert_eq!(revoked.subject, "/C=US/O=sslify test/CN=client revoked");
    assert_eq!(revoked.depth, 0, "{case}");
    assert_eq!(
        revoked.revoked_at,
        Some(revocation_date("crl.pem")),
        "{case}"
    );
    assert_eq!(revoked.reason_code, Some(1), "{case}: keyCompromise");
    assert_eq!(revoked.crl_file, crl_file, "{case}");

    let verdict = judge_probe(&server, &verdicts, 2, "valid", None, case);
    assert_eq!(verdict, CrlVerdict::Good, "{case}");
}

#[test]
fn handler_verdict_is_the_same_over_tls12_and_tls13() {
    let (server, verdicts) = handler_server(&certs(&["crl.pem"]));
    let case = "handler, crl.pem";
    let over13 = judge_probe(
        &server,
        &verdicts,
        1,
        "revoked",
        Some(SslVersion::TLS1_3),
        case,
    );
    let over12 = judge_probe(
        &server,
        &verdicts,
        2,
        "revoked",
        Some(SslVersion::TLS1_2),
        case,
    );
    assert!(matches!(over13, CrlVerdict::Revoked(_)), "{over13:?}");
    assert_eq!(over13, over12);
}

// ---------------------------------------------------------------------------------------
// A CRL applies only to certificates of its own issuer.

#[test]
fn ignores_unrelated_ca_crl_so_intermediate_has_no_crl_and_refuses_in_handshake() {
    let case = "crl-other-ca.pem only";
    let server = handshake_server(&certs(&["crl-other-ca.pem"]), |o| o);
    for (id, client) in [(1, "revoked"), (2, "valid")] {
        let report = probe(&server, id, client, None, NO_CRL, case);
        assert_eq!(
            report.verify_code, 3,
            "{case}: unable to get CRL: {report:#?}"
        );
    }
}

#[test]
fn unrelated_ca_crl_does_not_revoke_client_beside_empty_crl_in_handshake() {
    let case = "crl-other-ca.pem + crl-empty.pem";
    let server = handshake_server(&certs(&["crl-other-ca.pem", "crl-empty.pem"]), |o| o);
    probe(&server, 1, "revoked", None, AUTHENTICATED, case);
    probe(&server, 2, "valid", None, AUTHENTICATED, case);
}

#[test]
fn handler_finds_no_crl_for_intermediate_with_only_unrelated_ca_crl() {
    let case = "handler, crl-other-ca.pem only";
    let (server, verdicts) = handler_server(&certs(&["crl-other-ca.pem"]));
    for (id, client) in [(1, "revoked"), (2, "valid")] {
        let why = unusable(
            judge_probe(&server, &verdicts, id, client, None, case),
            case,
        );
        assert_eq!(
            why,
            CrlUnusable::NoCrlForIssuer {
                issuer: INTERMEDIATE.to_owned()
            },
            "{case}"
        );
    }
}

#[test]
fn handler_unrelated_ca_crl_does_not_revoke_client_beside_empty_crl() {
    let case = "handler, crl-other-ca.pem + crl-empty.pem";
    let (server, verdicts) = handler_server(&certs(&["crl-other-ca.pem", "crl-empty.pem"]));
    for (id, client) in [(1, "revoked"), (2, "valid")] {
        let verdict = judge_probe(&server, &verdicts, id, client, None, case);
        assert_eq!(verdict, CrlVerdict::Good, "{case}");
    }
}

// ---------------------------------------------------------------------------------------
// A CRL whose signature does not verify with its issuer's key.

fn forged(scratch: &Scratch) -> Option<PathBuf> {
    match forge_intermediate_crl(scratch) {
        Ok(path) => Some(path),
        Err(reason) => {
            println!("skipped: cannot make a forged CRL: {reason}");
            None
        }
    }
}

#[test]
fn refuses_client_under_forged_crl_with_alert_51_in_handshake() {
    let scratch = Scratch::new("forged-handshake");
    let Some(forged) = forged(&scratch) else {
        return;
    };
    let case = "forged CRL";
    let server = handshake_server(&[forged], |o| o);
    let expect = Expect::Refused(CertProblem::CrlUnusable, ALERT_BAD_SIGNATURE);
    for (id, client) in [(1, "valid"), (2, "revoked")] {
        let report = probe(&server, id, client, None, expect, case);
        assert_eq!(report.verify_code, 8, "{case}: CRL signature failure");
        assert!(
            report.verify_text.contains("signature does not verify"),
            "{case}: {report:#?}"
        );
    }
}

#[test]
fn handler_finds_forged_crl_unusable_with_bad_signature() {
    let scratch = Scratch::new("forged-handler");
    let Some(forged) = forged(&scratch) else {
        return;
    };
    let case = "handler, forged CRL";
    let (server, verdicts) = handler_server(std::slice::from_ref(&forged));
    for (id, client) in [(1, "valid"), (2, "revoked")] {
        let why = unusable(
            judge_probe(&server, &verdicts, id, client, None, case),
            case,
        );
        assert_eq!(
            why,
            CrlUnusable::BadSignature {
                issuer: INTERMEDIATE.to_owned(),
                path: forged.clone()
            },
            "{case}"
        );
    }
}

#[test]
fn forged_empty_crl_does_not_hide_genuine_revocation() {
    let scratch = Scratch::new("forged-beside-genuine");
    let Some(forged) = forged(&scratch) else {
        return;
    };
    let files = vec![forged, support::cert("crl.pem")];

    let case = "forged CRL + crl.pem";
    let server = handshake_server(&files, |o| o);
    probe(&server, 1, "revoked", None, REVOKED, case);
    probe(&server, 2, "valid", None, AUTHENTICATED, case);
    drop(server);

    let case = "handler, forged CRL + crl.pem";
    let (server, verdicts) = handler_server(&files);
    let revoked = revocation(
        judge_probe(&server, &verdicts, 1, "revoked", None, case),
        case,
    );
    assert_eq!(revoked.crl_file, support::cert("crl.pem"), "{case}");
    let verdict = judge_probe(&server, &verdicts, 2, "valid", None, case);
    assert_eq!(verdict, CrlVerdict::Good, "{case}");
}

// ---------------------------------------------------------------------------------------
// A valid CRL with no entries.

#[test]
fn empty_crl_revokes_nobody_in_handshake() {
    let case = "crl-empty.pem";
    let server = handshake_server(&certs(&["crl-empty.pem"]), |o| o);
    for (id, client) in [(1, "revoked"), (2, "valid"), (3, "serialpad")] {
        let report = probe(&server, id, client, None, AUTHENTICATED, case);
        assert!(report.valid, "{case}: {report:#?}");
    }
}

#[test]
fn handler_finds_nobody_revoked_by_empty_crl() {
    let case = "handler, crl-empty.pem";
    let (server, verdicts) = handler_server(&certs(&["crl-empty.pem"]));
    for (id, client) in [(1, "revoked"), (2, "valid"), (3, "serialpad")] {
        let verdict = judge_probe(&server, &verdicts, id, client, None, case);
        assert_eq!(verdict, CrlVerdict::Good, "{case}");
    }
}

// ---------------------------------------------------------------------------------------
// An expired CRL.

#[test]
fn refuses_client_under_expired_crl_with_alert_45_in_handshake() {
    let case = "crl-expired.pem";
    let server = handshake_server(&certs(&["crl-expired.pem"]), |o| o);
    let expect = Expect::Refused(CertProblem::CrlUnusable, ALERT_CRL_EXPIRED);
    for (id, client) in [(1, "valid"), (2, "revoked")] {
        let report = probe(&server, id, client, None, expect, case);
        assert_eq!(report.verify_code, 12, "{case}: CRL has expired");
        assert!(
            report.verify_text.contains("expired"),
            "{case}: {report:#?}"
        );
    }
}

#[test]
fn lets_client_through_expired_crl_when_policy_allows() {
    let case = "crl-expired.pem, policy Allow";
    let server = handshake_server(&certs(&["crl-expired.pem"]), |o| {
        o.unusable_crl(UnusableCrlPolicy::Allow)
    });
    let report = probe(&server, 1, "valid", None, AUTHENTICATED, case);
    assert!(report.valid, "{case}: {report:#?}");
    // The expired CRL lists client-revoked, but it decides nothing: allowed too.
    probe(&server, 2, "revoked", None, AUTHENTICATED, case);
}

#[test]
fn handler_finds_expired_crl_unusable() {
    let case = "handler, crl-expired.pem";
    let file = support::cert("crl-expired.pem");
    let (server, verdicts) = handler_server(std::slice::from_ref(&file));
    for (id, client) in [(1, "valid"), (2, "revoked")] {
        let why = unusable(
            judge_probe(&server, &verdicts, id, client, None, case),
            case,
        );
        assert_eq!(
            why,
            CrlUnusable::Expired {
                issuer: INTERMEDIATE.to_owned(),
                path: file.clone()
            },
            "{case}"
        );
    }
}

#[test]
fn allow_policy_still_refuses_revoked_client_when_crl_is_usable() {
    let case = "crl.pem, policy Allow";
    let server = handshake_server(&certs(&["crl.pem"]), |o| {
        o.unusable_crl(UnusableCrlPolicy::Allow)
    });
    probe(&server, 1, "revoked", None, REVOKED, case);
    probe(&server, 2, "valid", None, AUTHENTICATED, case);
}

// ---------------------------------------------------------------------------------------
// Files that hold no usable CRL at start-up.

fn build_error(options: Options) -> ConfigError {
    match options.build() {
        Ok(config) => panic!("options should not build: {config:?}"),
        Err(error) => error,
    }
}

#[test]
fn refuses_to_start_with_missing_crl_file_naming_it() {
    let scratch = Scratch::new("missing-at-start");
    let path = scratch.path("absent.pem");
    let error = build_error(support::options().require_client_cert().crl_file(&path));
    assert!(
        matches!(&error, ConfigError::Crl(CrlUnusable::Unreadable { path: p, .. }) if *p == path),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );

    let error = CrlSet::open([&path]).expect_err("a missing file does not open");
    assert!(
        matches!(&error, CrlUnusable::Unreadable { path: p, .. } if *p == path),
        "{error:?}"
    );
}

#[test]
fn refuses_to_start_with_file_holding_no_crl_naming_it() {
    let scratch = Scratch::new("nocrl-at-start");
    // A certificate is PEM, but not a CRL.
    let path = scratch.copy("intermediate.pem", "not-a-crl.pem");
    let error = build_error(support::options().require_client_cert().crl_file(&path));
    assert!(
        matches!(&error, ConfigError::Crl(CrlUnusable::NoCrl { path: p }) if *p == path),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[test]
fn refuses_to_start_with_half_written_crl_file_naming_it() {
    let scratch = Scratch::new("half-at-start");
    let path = scratch.write("half.pem", &support::crl::half_of("crl.pem"));
    let error = build_error(support::options().require_client_cert().crl_file(&path));
    assert!(
        matches!(&error, ConfigError::Crl(CrlUnusable::Malformed { path: p, .. }) if *p == path),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------
// Serials compare as integers.

#[test]
fn revokes_padded_and_inner_zero_serials_in_handshake() {
    let case = "crl-serialpad.pem";
    let server = handshake_server(&certs(&["crl-serialpad.pem"]), |o| o);
    probe(&server, 1, "serialpad", None, REVOKED, case);
    probe(&server, 2, "serialzero", None, REVOKED, case);
    probe(&server, 3, "valid", None, AUTHENTICATED, case);
    probe(&server, 4, "revoked", None, AUTHENTICATED, case);

    let case = "crl.pem";
    let server = handshake_server(&certs(&["crl.pem"]), |o| o);
    probe(&server, 1, "serialpad", None, AUTHENTICATED, case);
    probe(&server, 2, "serialzero", None, AUTHENTICATED, case);
}

#[test]
fn handler_revokes_padded_and_inner_zero_serials() {
    let case = "handler, crl-serialpad.pem";
    let (server, verdicts) = handler_server(&certs(&["crl-serialpad.pem"]));
    let pad = revocation(
        judge_probe(&server, &verdicts, 1, "serialpad", None, case),
        case,
    );
    assert_eq!(pad.serial, vec![0x80, 0xab, 0x00, 0xcd, 0x12], "{case}");
    assert_eq!(pad.reason_code, Some(1), "{case}");
    let zero = revocation(
        judge_probe(&server, &verdicts, 2, "serialzero", None, case),
        case,
    );
    assert_eq!(zero.serial, vec![0x12, 0x00, 0x00, 0x34, 0x00], "{case}");
    for (id, client) in [(3, "valid"), (4, "revoked")] {
        let verdict = judge_probe(&server, &verdicts, id, client, None, case);
        assert_eq!(verdict, CrlVerdict::Good, "{case}");
    }

    let case = "handler, crl.pem";
    let (server, verdicts) = handler_server(&certs(&["crl.pem"]));
    for (id, client) in [(1, "serialpad"), (2, "serialzero")] {
        let verdict = judge_probe(&server, &verdicts, id, client, None, case);
        assert_eq!(verdict, CrlVerdict::Good, "{case}");
    }
}

// ---------------------------------------------------------------------------------------
// A CA's serial is never compared with a leaf's CRL entries.

#[test]
fn ca_serial_in_crl_revokes_nobody_with_leaf_scope_in_handshake() {
    let case = "crl-ca-serial.pem, leaf scope";
    let server = handshake_server(&certs(&["crl-ca-serial.pem"]), |o| o);
    probe(&server, 1, "valid", None, AUTHENTICATED, case);
    probe(&server, 2, "revoked", None, AUTHENTICATED, case);
}

#[test]
fn ca_serial_in_crl_revokes_nobody_with_chain_scope_in_handshake() {
    let case = "crl-ca-serial.pem + crl-root.pem, chain scope";
    let server = handshake_server(&certs(&["crl-ca-serial.pem", "crl-root.pem"]), |o| {
        o.crl_scope(CrlScope::Chain)
    });
    probe(&server, 1, "valid", None, AUTHENTICATED, case);
    probe(&server, 2, "serialzero", None, AUTHENTICATED, case);
}

#[test]
fn handler_ca_serial_in_crl_revokes_nobody_with_leaf_scope() {
    let case = "handler, crl-ca-serial.pem, leaf scope";
    let (server, verdicts) = handler_server(&certs(&["crl-ca-serial.pem"]));
    for (id, client) in [(1, "valid"), (2, "revoked")] {
        let verdict = judge_probe(&server, &verdicts, id, client, None, case);
        assert_eq!(verdict, CrlVerdict::Good, "{case}");
    }
}

#[test]
fn handler_ca_serial_in_crl_revokes_nobody_with_chain_scope() {
    let case = "handler, crl-ca-serial.pem + crl-root.pem, chain scope";
    let (server, verdicts) = chain_handler_server(&certs(&["crl-ca-serial.pem", "crl-root.pem"]));
    for (id, client) in [(1, "valid"), (2, "serialzero")] {
        let verdict = judge_probe(&server, &verdicts, id, client, None, case);
        assert_eq!(verdict, CrlVerdict::Good, "{case}");
    }
}

// ---------------------------------------------------------------------------------------
// Chain scope: every CA below the root needs a CRL from its own issuer.

#[test]
fn chain_scope_without_root_crl_refuses_every_client_in_handshake() {
    let case = "crl.pem alone, chain scope";
    let server = handshake_server(&certs(&["crl.pem"]), |o| o.crl_scope(CrlScope::Chain));
    for (id, client) in [(1, "valid"), (2, "serialpad")] {
        let report = probe(&server, id, client, None, NO_CRL, case);
        assert_eq!(report.verify_code, 3, "{case}: unable to get CRL");
        assert!(
            report.verify_text.contains(ROOT),
            "{case}: the missing CRL is the root's: {report:#?}"
        );
    }
    // The revoked client is refused too; its own certificate, checked first, is listed
    // in a usable CRL.
    probe(&server, 3, "revoked", None, REVOKED, case);
}

#[test]
fn chain_scope_reports_failure_at_depth_of_ca_whose_crl_is_missing() {
    let case = "crl.pem alone, chain scope";
    let server = handshake_server(&certs(&["crl.pem"]), |o| o.crl_scope(CrlScope::Chain));
    let report = probe(&server, 1, "valid", None, NO_CRL, case);
    // The certificate without a CRL is the intermediate, at depth 1, as OpenSSL's own
    // whole-chain CRL check reports it.
    assert_eq!(report.failed_depth, Some(1), "{case}: {report:#?}");
    assert!(
        report.to_string().ends_with(" at depth 1"),
        "{case}: {report}"
    );
}

#[test]
fn chain_scope_with_root_crl_serves_valid_and_refuses_revoked_in_handshake() {
    let case = "crl.pem + crl-root.pem, chain scope";
    let server = handshake_server(&certs(&["crl.pem", "crl-root.pem"]), |o| {
        o.crl_scope(CrlScope::Chain)
    });
    probe(&server, 1, "valid", None, AUTHENTICATED, case);
    probe(&server, 2, "revoked", None, REVOKED, case);
}

#[test]
fn handler_chain_scope_without_root_crl_finds_no_crl_for_root() {
    let case = "handler, crl.pem alone, chain scope";
    let (server, verdicts) = chain_handler_server(&certs(&["crl.pem"]));
    for (id, client) in [(1, "valid"), (2, "serialpad")] {
        let why = unusable(
            judge_probe(&server, &verdicts, id, client, None, case),
            case,
        );
        assert_eq!(
            why,
            CrlUnusable::NoCrlForIssuer {
                issuer: ROOT.to_owned()
            },
            "{case}"
        );
    }
    let verdict = judge_probe(&server, &verdicts, 3, "revoked", None, case);
    assert!(
        matches!(verdict, CrlVerdict::Revoked(ref r) if r.depth == 0),
        "{case}: {verdict:?}"
    );
}

#[test]
fn handler_chain_scope_with_root_crl_passes_valid_and_revokes_revoked() {
    let case = "handler, crl.pem + crl-root.pem, chain scope";
    let (server, verdicts) = chain_handler_server(&certs(&["crl.pem", "crl-root.pem"]));
    let verdict = judge_probe(&server, &verdicts, 1, "valid", None, case);
    assert_eq!(verdict, CrlVerdict::Good, "{case}");
    let revoked = revocation(
        judge_probe(&server, &verdicts, 2, "revoked", None, case),
        case,
    );
    assert_eq!(revoked.serial, serial_of("client-revoked.pem"), "{case}");
    assert_eq!(revoked.depth, 0, "{case}");
}

fn root_crl_revoking_intermediate(scratch: &Scratch) -> Option<PathBuf> {
    match support::crl::root_crl_revoking_intermediate(scratch) {
        Ok(path) => Some(path),
        Err(reason) => {
            println!("skipped: cannot make a root CRL revoking the intermediate: {reason}");
            None
        }
    }
}

#[test]
fn chain_scope_refuses_clients_of_revoked_intermediate_and_leaf_scope_does_not() {
    let scratch = Scratch::new("revoked-intermediate");
    let Some(root_crl) = root_crl_revoking_intermediate(&scratch) else {
        return;
    };
    let files = vec![support::cert("crl.pem"), root_crl];

    let case = "crl.pem + root CRL revoking the intermediate, chain scope";
    let server = handshake_server(&files, |o| o.crl_scope(CrlScope::Chain));
    let report = probe(&server, 1, "valid", None, REVOKED, case);
    assert_eq!(report.verify_code, 23, "{case}: {report:#?}");
    probe(&server, 2, "serialzero", None, REVOKED, case);
    drop(server);

    let case = "crl.pem + root CRL revoking the intermediate, leaf scope";
    let server = handshake_server(&files, |o| o);
    probe(&server, 1, "valid", None, AUTHENTICATED, case);
    probe(&server, 2, "revoked", None, REVOKED, case);
}

#[test]
fn chain_scope_reports_revoked_intermediate_at_depth_1() {
    let scratch = Scratch::new("revoked-intermediate-depth");
    let Some(root_crl) = root_crl_revoking_intermediate(&scratch) else {
        return;
    };
    let case = "crl.pem + root CRL revoking the intermediate, chain scope";
    let server = handshake_server(&[support::cert("crl.pem"), root_crl], |o| {
        o.crl_scope(CrlScope::Chain)
    });
    let report = probe(&server, 1, "valid", None, REVOKED, case);
    assert_eq!(report.failed_depth, Some(1), "{case}: {report:#?}");
}

#[test]
fn handler_chain_scope_revokes_intermediate_at_depth_1() {
    let scratch = Scratch::new("revoked-intermediate-handler");
    let Some(root_crl) = root_crl_revoking_intermediate(&scratch) else {
        return;
    };
    let files = vec![support::cert("crl.pem"), root_crl.clone()];
    let case = "handler, crl.pem + root CRL revoking the intermediate, chain scope";
    let (server, verdicts) = chain_handler_server(&files);
    let revoked = revocation(
        judge_probe(&server, &verdicts, 1, "valid", None, case),
        case,
    );
    assert_eq!(revoked.depth, 1, "{case}");
    assert_eq!(revoked.serial, serial_of("intermediate.pem"), "{case}");
    assert_eq!(revoked.subject, INTERMEDIATE, "{case}");
    assert_eq!(revoked.reason_code, Some(1), "{case}");
    assert_eq!(revoked.crl_file, root_crl, "{case}");
    drop(server);

    let case = "handler, crl.pem + root CRL revoking the intermediate, leaf scope";
    let (server, verdicts) = handler_server(&files);
    let verdict = judge_probe(&server, &verdicts, 1, "valid", None, case);
    assert_eq!(verdict, CrlVerdict::Good, "{case}");
}

/// The chain-scope rules as the engine sees them, without a server: the intermediate's
/// serial is looked up only in the root's CRL.
#[test]
fn check_chain_looks_up_intermediate_serial_only_in_root_crl() {
    let valid = pem_certs("client-valid.pem");
    let root = pem_certs("ca.pem").remove(0);
    let chain = [&*valid[0], &*valid[1], &*root];
    let set = CrlSet::open(certs(&["crl-ca-serial.pem", "crl-root.pem"])).unwrap();
    assert_eq!(set.check_chain(&chain, CrlScope::Chain), CrlVerdict::Good);
    assert_eq!(set.check_chain(&chain, CrlScope::Leaf), CrlVerdict::Good);

    // Were the intermediate's serial in a CRL of the root, it would be revoked at depth 1.
    // crl-ca-serial.pem is issued by the intermediate, so pretending the intermediate is
    // the root's child does not make that CRL apply to it.
    let only_ca_serial = CrlSet::open(certs(&["crl-ca-serial.pem"])).unwrap();
    assert_eq!(
        only_ca_serial.check_chain(&chain, CrlScope::Chain),
        CrlVerdict::Unusable(CrlUnusable::NoCrlForIssuer {
            issuer: ROOT.to_owned()
        })
    );
}

/// A handler holds the chain as the client presented it, which ends with the
/// intermediate: the root is not sent. Checked with chain scope, the intermediate is a CA
/// below the trust anchor and needs the root's CRL, so without that CRL the answer cannot
/// be good.
#[test]
fn check_chain_with_chain_scope_does_not_pass_presented_chain_without_root_crl() {
    let valid = pem_certs("client-valid.pem");
    let presented = [&*valid[0], &*valid[1]];
    let set = CrlSet::open(certs(&["crl.pem"])).unwrap();
    let verdict = set.check_chain(&presented, CrlScope::Chain);
    assert_ne!(
        verdict,
        CrlVerdict::Good,
        "the intermediate was never looked up in a CRL of the root"
    );
}

// ---------------------------------------------------------------------------------------
// Several CRLs of one issuer in one file: the newest whose signature verifies decides.

/// A CRL of the intermediate, revoking client-revoked, whose lastUpdate is strictly later
/// than crl-empty.pem's; `None` (with the reason printed) without the `openssl` command.
fn newer_revoking_crl(scratch: &Scratch) -> Option<Vec<u8>> {
    let older = X509Crl::from_pem(&std::fs::read(support::cert("crl-empty.pem")).unwrap()).unwrap();
    for attempt in 0..3 {
        let label = format!("newer-{attempt}");
        let path =
            match support::crl::intermediate_crl_revoking(scratch, &label, &["client-revoked.pem"])
            {
                Ok(path) => path,
                Err(reason) => {
                    println!("skipped: cannot make a newer CRL of the intermediate: {reason}");
                    return None;
                }
            };
        let pem = std::fs::read(&path).unwrap();
        let newer = X509Crl::from_pem(&pem).unwrap();
        let later = newer
            .last_update()
            .compare(older.last_update())
            .is_ok_and(|order| order.is_gt());
        if later {
            return Some(pem);
        }
        // Made within the second crl-empty.pem was: wait for the clock to move on.
        std::thread::sleep(Duration::from_millis(1100));
    }
    panic!("could not make a CRL with a lastUpdate later than crl-empty.pem's");
}

#[test]
fn newest_crl_of_an_issuer_decides_whatever_its_place_in_the_file() {
    let scratch = Scratch::new("older-and-newer");
    let Some(newer) = newer_revoking_crl(&scratch) else {
        return;
    };
    let older = std::fs::read(support::cert("crl-empty.pem")).unwrap();
    for (name, contents) in [
        (
            "older-then-newer.pem",
            [older.clone(), newer.clone()].concat(),
        ),
        (
            "newer-then-older.pem",
            [newer.clone(), older.clone()].concat(),
        ),
    ] {
        let file = scratch.write(name, &contents);
        let files = std::slice::from_ref(&file);

        let case = format!("{name} in the handshake");
        let server = handshake_server(files, |o| o);
        let report = probe(&server, 1, "revoked", None, REVOKED, &case);
        assert_eq!(report.verify_code, 23, "{case}: {report:#?}");
        probe(&server, 2, "valid", None, AUTHENTICATED, &case);
        drop(server);

        let case = format!("{name} in the handler");
        let (server, verdicts) = handler_server(files);
        let revoked = revocation(
            judge_probe(&server, &verdicts, 1, "revoked", None, &case),
            &case,
        );
        assert_eq!(revoked.serial, serial_of("client-revoked.pem"), "{case}");
        assert_eq!(revoked.crl_file, file, "{case}");
        let verdict = judge_probe(&server, &verdicts, 2, "valid", None, &case);
        assert_eq!(verdict, CrlVerdict::Good, "{case}");
    }
}

// ---------------------------------------------------------------------------------------
// A forged CRL in front of the genuine one in the same file: its failed signature check
// must not leave an error behind for the connection's next TLS operation.

/// What [`CheckingEcho`] saw of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Checked {
    Verdict(CrlVerdict),
    Disconnect(DisconnectReason),
}

/// A handler that checks each client against its own CRL set on `SslDone`, answers with
/// the verdict line, then echoes until the client closes.
struct CheckingEcho {
    crls: CrlSet,
    seen: mpsc::Sender<(u64, Checked)>,
}

impl Actor for CheckingEcho {
    type Context = Context<Self>;
}

impl Handler<SslDone> for CheckingEcho {
    type Result = ();
    fn handle(&mut self, done: SslDone, _: &mut Context<Self>) {
        let verdict = self.crls.check(&done.client_cert);
        done.handle
            .put(format!("[{}] {}\n", done.id, judge_text(&verdict)));
        let _ = self.seen.send((done.id.0, Checked::Verdict(verdict)));
    }
}

impl Handler<ClientInput> for CheckingEcho {
    type Result = ();
    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        input.handle.put(input.data);
    }
}

impl Handler<CertRejected> for CheckingEcho {
    type Result = ();
    fn handle(&mut self, _: CertRejected, _: &mut Context<Self>) {}
}

impl Handler<Disconnect> for CheckingEcho {
    type Result = ();
    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        let _ = self
            .seen
            .send((gone.id.0, Checked::Disconnect(gone.reason)));
    }
}

/// Connects as client-valid, reads the verdict line, has `lines` lines echoed, then
/// closes with close_notify and reads the server's.
fn talk_after_check(addr: std::net::SocketAddr, id: u64, lines: usize, case: &str) {
    let mut stream = support::connect(addr, Some("valid"))
        .unwrap_or_else(|e| panic!("{case}, connection {id}: handshake: {e}"));
    let verdict = support::starttls::read_line(&mut stream)
        .unwrap_or_else(|e| panic!("{case}, connection {id}: verdict line: {e}"));
    assert_eq!(
        verdict,
        format!("[{id}] Yeah! You're authenticated!"),
        "{case}"
    );
    for n in 0..lines {
        let line = format!("line {n} of connection {id}\n");
        support::send(&mut stream, line.as_bytes()).unwrap_or_else(|e| {
            panic!(
                "{case}, connection {id}: write {n}: {}",
                support::error_text(&e)
            )
        });
        let mut echo = vec![0u8; line.len()];
        stream.read_exact(&mut echo).unwrap_or_else(|e| {
            panic!(
                "{case}, connection {id}: echo {n}: {}",
                support::error_text(&e)
            )
        });
        assert_eq!(echo, line.as_bytes(), "{case}, connection {id}");
    }
    stream
        .shutdown()
        .unwrap_or_else(|e| panic!("{case}, connection {id}: close_notify: {e}"));
    let (rest, end) = support::read_to_end(&mut stream);
    assert_eq!(
        end,
        Ok(()),
        "{case}, connection {id}: the end of the stream"
    );
    assert!(rest.is_empty(), "{case}, connection {id}: {rest:?}");
    assert!(
        stream.get_shutdown().contains(ShutdownState::RECEIVED),
        "{case}, connection {id}: no close_notify from the server"
    );
}

#[test]
fn forged_crl_before_the_genuine_one_leaves_no_error_for_the_next_tls_operation() {
    let scratch = Scratch::new("forged-first");
    let Some(forged) = forged(&scratch) else {
        return;
    };
    let contents = [
        std::fs::read(&forged).unwrap(),
        std::fs::read(support::cert("crl.pem")).unwrap(),
    ]
    .concat();
    let file = scratch.write("forged-then-genuine.pem", &contents);

    // The same file is checked in the handshake (on the connection's thread) and by the
    // handler (on the connection's thread too when there is one worker).
    for workers in [1, 2] {
        let case = format!("forged CRL then crl.pem in one file, {workers} workers");
        let crls = CrlSet::open([&file]).expect("the CRL file opens");
        let (tx, seen) = mpsc::channel();
        let options = support::options()
            .require_client_cert()
            .crl_file(&file)
            .workers(workers);
        let server = Served::start(options, move || CheckingEcho { crls, seen: tx });

        let rounds = 5;
        for id in 1..=rounds {
            talk_after_check(server.addr, id, 3, &case);
        }
        let mut by_id: BTreeMap<u64, Vec<Checked>> = BTreeMap::new();
        while by_id
            .values()
            .filter(|events| matches!(events.last(), Some(Checked::Disconnect(_))))
            .count()
            < rounds as usize
        {
            let (id, event) = seen
                .recv_timeout(support::crl::WAIT)
                .unwrap_or_else(|_| panic!("{case}: connections did not end: {by_id:#?}"));
            by_id.entry(id).or_default().push(event);
        }
        for id in 1..=rounds {
            assert_eq!(
                by_id.get(&id).map(Vec::as_slice),
                Some(
                    &[
                        Checked::Verdict(CrlVerdict::Good),
                        Checked::Disconnect(DisconnectReason::PeerClosed)
                    ][..]
                ),
                "{case}, connection {id}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// A client that sends only its own certificate: the server completes the chain from its
// client CA file, on a full handshake and on a resumed one.

/// A client presenting only the first certificate of `certs/client-<name>.pem`, without
/// the intermediate.
fn leaf_only_connector(name: &str, version: SslVersion) -> SslConnector {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_ca_file(support::cert("ca.pem")).unwrap();
    builder
        .set_certificate_file(
            support::cert(&format!("client-{name}.pem")),
            SslFiletype::PEM,
        )
        .unwrap();
    builder
        .set_private_key_file(
            support::cert(&format!("client-{name}.key")),
            SslFiletype::PEM,
        )
        .unwrap();
    builder.set_min_proto_version(Some(version)).unwrap();
    builder.set_max_proto_version(Some(version)).unwrap();
    builder.set_verify(SslVerifyMode::PEER);
    builder.build()
}

/// Connects, offering `offer` when given; reads the server's line, answers its
/// close_notify and returns the line, whether the session was resumed, and the session
/// to offer next time.
fn visit_with_session(
    addr: std::net::SocketAddr,
    connector: &SslConnector,
    offer: Option<&SslSession>,
    case: &str,
) -> (String, bool, SslSession) {
    let mut config = connector.configure().unwrap();
    if let Some(session) = offer {
        // SAFETY: every session offered here was made by this same connector.
        unsafe { config.set_session(session).unwrap() };
    }
    let ssl = config.into_ssl("localhost").unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(support::crl::WAIT)).unwrap();
    let mut stream = SslStream::new(ssl, tcp).unwrap();
    stream
        .connect()
        .unwrap_or_else(|e| panic!("{case}: handshake: {e}"));
    let resumed = stream.ssl().session_reused();
    let (bytes, end) = support::read_to_end(&mut stream);
    assert_eq!(end, Ok(()), "{case}: the server should close cleanly");
    // A session whose connection was dropped without close_notify is not resumable.
    stream.shutdown().expect("close_notify to the server");
    let session = stream
        .ssl()
        .session()
        .map(|s| s.to_owned())
        .unwrap_or_else(|| panic!("{case}: no session"));
    (String::from_utf8(bytes).unwrap(), resumed, session)
}

fn handler_checks_a_leaf_only_client_on_full_and_resumed_handshakes(version: SslVersion) {
    let crls = CrlSet::open([support::cert("crl.pem")]).unwrap();
    let options = support::options()
        .client_ca_file(support::cert("client-ca-bundle.pem"))
        .request_client_cert();
    let (server, verdicts) = start_judge(options, crls, None);
    let mut id = 0;
    for (client, good) in [("valid", true), ("revoked", false)] {
        let connector = leaf_only_connector(client, version);
        let mut session = None;
        for resume in [false, true] {
            id += 1;
            let case = format!(
                "{client} client without its intermediate, {version:?}, {}",
                if resume { "resumed" } else { "full handshake" }
            );
            let (line, reused, next) =
                visit_with_session(server.addr, &connector, session.as_ref(), &case);
            assert_eq!(reused, resume, "{case}: the client's view of resumption");
            let events = server.journal.wait_disconnects(id, WAIT);
            let (report, resumed) = assert_served(&events, id as u64, &case);
            assert_eq!(resumed, resume, "{case}: the server's view of resumption");
            assert!(report.presented && report.valid, "{case}: {report:#?}");
            assert_eq!(
                report.chain.len(),
                1,
                "{case}: only the client's own certificate was sent: {report:#?}"
            );
            let verdict = verdicts.lock().unwrap()[&(id as u64)].clone();
            if good {
                assert_eq!(verdict, CrlVerdict::Good, "{case}");
            } else {
                let revoked = revocation(verdict, &case);
                assert_eq!(revoked.serial, serial_of("client-revoked.pem"), "{case}");
            }
            assert_eq!(
                line,
                format!(
                    "[{id}] {}\n",
                    if good {
                        "Yeah! You're authenticated!"
                    } else {
                        "CRL"
                    }
                ),
                "{case}"
            );
            session = Some(next);
        }
    }
}

#[test]
fn handler_checks_a_leaf_only_client_on_full_and_resumed_handshakes_tls12() {
    handler_checks_a_leaf_only_client_on_full_and_resumed_handshakes(SslVersion::TLS1_2);
}

#[test]
fn handler_checks_a_leaf_only_client_on_full_and_resumed_handshakes_tls13() {
    handler_checks_a_leaf_only_client_on_full_and_resumed_handshakes(SslVersion::TLS1_3);
}
