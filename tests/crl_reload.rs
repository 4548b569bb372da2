//! CRL files changing under a running server: a replaced CRL decides from the next
//! connection on, whether it was renamed into place or rewritten in place, and a file
//! that goes missing, holds no CRL or is caught half-written makes the CRL unusable:
//! clients are refused with that reason (or let through when the policy allows), and a
//! revoked client never gets in. Every case runs in the handshake and in the handler.

mod support;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use sslify::{CertProblem, CrlSet, CrlUnusable, CrlVerdict, Options, UnusableCrlPolicy};
use support::crl::{
    judge_probe, probe, start_judge, Expect, Scratch, Verdicts, ALERT_NO_CRL, ALERT_REVOKED,
    AUTHENTICATED,
};
use support::{Reply, TestServer};

const REVOKED: Expect = Expect::Refused(CertProblem::Revoked, ALERT_REVOKED);
const UNUSABLE: Expect = Expect::Refused(CertProblem::CrlUnusable, ALERT_NO_CRL);

/// The name of the watched CRL file in each test's scratch directory.
const WATCHED: &str = "current-crl.pem";

/// A scratch directory holding a copy of `certs/<initial>` as the watched CRL file.
fn watched(label: &str, initial: &str) -> (Scratch, PathBuf) {
    let scratch = Scratch::new(label);
    let path = scratch.copy(initial, WATCHED);
    (scratch, path)
}

/// A server that requires a client certificate and checks it against `crl` in the
/// handshake, with the unusable-CRL `policy`.
fn handshake_server(crl: &PathBuf, policy: UnusableCrlPolicy) -> TestServer {
    let options: Options = support::options()
        .require_client_cert()
        .crl_file(crl)
        .unusable_crl(policy);
    TestServer::start(
        options,
        Reply::Verdict {
            close_after: Duration::ZERO,
        },
    )
}

/// A server whose handler checks clients against `crl` with a `CrlSet` opened once.
fn handler_server(crl: &PathBuf) -> (TestServer, Verdicts) {
    let set = CrlSet::open([crl]).expect("CRL file opens");
    start_judge(support::options().request_client_cert(), set, None)
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Rename,
    InPlace,
}

impl Change {
    fn apply(self, scratch: &Scratch, source: &str) {
        match self {
            Change::Rename => scratch.replace_by_rename(WATCHED, source),
            Change::InPlace => scratch.rewrite_in_place(WATCHED, source),
        }
    }
}

fn replaced_crl_decides_next_handshake(change: Change) {
    let (scratch, crl) = watched(&format!("reload-handshake-{change:?}"), "crl-empty.pem");
    let server = handshake_server(&crl, UnusableCrlPolicy::Refuse);

    let case = format!("{change:?}: crl-empty.pem");
    probe(&server, 1, "revoked", None, AUTHENTICATED, &case);

    change.apply(&scratch, "crl.pem");
    let case = format!("{change:?}: replaced by crl.pem");
    probe(&server, 2, "revoked", None, REVOKED, &case);
    probe(&server, 3, "valid", None, AUTHENTICATED, &case);

    change.apply(&scratch, "crl-empty.pem");
    let case = format!("{change:?}: back to crl-empty.pem");
    probe(&server, 4, "revoked", None, AUTHENTICATED, &case);
}

#[test]
fn crl_renamed_into_place_decides_next_handshake() {
    replaced_crl_decides_next_handshake(Change::Rename);
}

#[test]
fn crl_rewritten_in_place_decides_next_handshake() {
    replaced_crl_decides_next_handshake(Change::InPlace);
}

fn replaced_crl_decides_next_handler_check(change: Change) {
    let (scratch, crl) = watched(&format!("reload-handler-{change:?}"), "crl-empty.pem");
    let (server, verdicts) = handler_server(&crl);

    let case = format!("handler, {change:?}: crl-empty.pem");
    let verdict = judge_probe(&server, &verdicts, 1, "revoked", None, &case);
    assert_eq!(verdict, CrlVerdict::Good, "{case}");

    change.apply(&scratch, "crl.pem");
    let case = format!("handler, {change:?}: replaced by crl.pem");
    match judge_probe(&server, &verdicts, 2, "revoked", None, &case) {
        CrlVerdict::Revoked(revocation) => {
            assert_eq!(revocation.crl_file, crl, "{case}");
            assert_eq!(revocation.reason_code, Some(1), "{case}");
        }
        other => panic!("{case}: expected revoked, got {other:?}"),
    }
    let verdict = judge_probe(&server, &verdicts, 3, "valid", None, &case);
    assert_eq!(verdict, CrlVerdict::Good, "{case}");

    change.apply(&scratch, "crl-empty.pem");
    let case = format!("handler, {change:?}: back to crl-empty.pem");
    let verdict = judge_probe(&server, &verdicts, 4, "revoked", None, &case);
    assert_eq!(verdict, CrlVerdict::Good, "{case}");
}

#[test]
fn crl_renamed_into_place_decides_next_handler_check() {
    replaced_crl_decides_next_handler_check(Change::Rename);
}

#[test]
fn crl_rewritten_in_place_decides_next_handler_check() {
    replaced_crl_decides_next_handler_check(Change::InPlace);
}

#[test]
fn generation_changes_with_each_change_of_the_crl_file() {
    let (scratch, crl) = watched("generation", "crl-empty.pem");
    let set = CrlSet::open([&crl]).unwrap();
    let start = set.generation();
    assert_eq!(set.generation(), start, "nothing changed yet");
    scratch.replace_by_rename(WATCHED, "crl.pem");
    let renamed = set.generation();
    assert_ne!(renamed, start, "after a rename");
    scratch.rewrite_in_place(WATCHED, "crl-empty.pem");
    let rewritten = set.generation();
    assert_ne!(rewritten, renamed, "after an in-place rewrite");
    fs::remove_file(&crl).unwrap();
    assert_ne!(set.generation(), rewritten, "after removal");
}

// ---------------------------------------------------------------------------------------
// Files that stop holding a usable CRL.

/// Ways a CRL file can go bad under a running server.
#[derive(Debug, Clone, Copy)]
enum Breakage {
    Removed,
    NoCrl,
    HalfWritten,
}

impl Breakage {
    fn apply(self, scratch: &Scratch) {
        match self {
            Breakage::Removed => fs::remove_file(scratch.path(WATCHED)).unwrap(),
            Breakage::NoCrl => scratch.overwrite(WATCHED, b"this file holds no CRL\n"),
            // The new CRL is written over the old one and the writer is not done yet.
            Breakage::HalfWritten => scratch.cut_in_place(WATCHED, "crl.pem"),
        }
    }

    /// Whether `why` is the reason this breakage should give for `path`.
    fn explains(self, why: &CrlUnusable, path: &PathBuf) -> bool {
        match (self, why) {
            (Breakage::Removed, CrlUnusable::Unreadable { path: p, .. }) => p == path,
            (Breakage::NoCrl, CrlUnusable::NoCrl { path: p }) => p == path,
            (Breakage::HalfWritten, CrlUnusable::Malformed { path: p, .. }) => p == path,
            _ => false,
        }
    }
}

fn broken_crl_refuses_everyone_in_handshake(breakage: Breakage) {
    let (scratch, crl) = watched(&format!("broken-handshake-{breakage:?}"), "crl.pem");
    let server = handshake_server(&crl, UnusableCrlPolicy::Refuse);
    let case = format!("{breakage:?}: before");
    probe(&server, 1, "revoked", None, REVOKED, &case);
    probe(&server, 2, "valid", None, AUTHENTICATED, &case);

    breakage.apply(&scratch);
    let case = format!("{breakage:?}: after");
    for (id, client) in [(3, "revoked"), (4, "valid")] {
        let report = probe(&server, id, client, None, UNUSABLE, &case);
        assert_eq!(report.verify_code, 3, "{case}: unable to get CRL");
        assert!(
            report.verify_text.contains(&crl.display().to_string()),
            "{case}: the reason should name the file: {report:#?}"
        );
    }

    // Once the file is whole again, it decides again.
    scratch.rewrite_or_create(WATCHED, "crl.pem");
    let case = format!("{breakage:?}: repaired");
    probe(&server, 5, "revoked", None, REVOKED, &case);
    probe(&server, 6, "valid", None, AUTHENTICATED, &case);
}

#[test]
fn removed_crl_file_refuses_clients_as_crl_unusable_in_handshake() {
    broken_crl_refuses_everyone_in_handshake(Breakage::Removed);
}

#[test]
fn crl_file_without_crl_refuses_clients_as_crl_unusable_in_handshake() {
    broken_crl_refuses_everyone_in_handshake(Breakage::NoCrl);
}

#[test]
fn half_written_crl_never_lets_revoked_client_in_and_blocks_valid_in_handshake() {
    broken_crl_refuses_everyone_in_handshake(Breakage::HalfWritten);
}

fn broken_crl_lets_clients_through_when_policy_allows(breakage: Breakage) {
    let (scratch, crl) = watched(&format!("broken-allow-{breakage:?}"), "crl.pem");
    let server = handshake_server(&crl, UnusableCrlPolicy::Allow);
    let case = format!("{breakage:?}, policy Allow: before");
    probe(&server, 1, "revoked", None, REVOKED, &case);

    breakage.apply(&scratch);
    let case = format!("{breakage:?}, policy Allow: after");
    let report = probe(&server, 2, "valid", None, AUTHENTICATED, &case);
    assert!(report.valid, "{case}: {report:#?}");
}

#[test]
fn removed_crl_file_lets_clients_through_when_policy_allows() {
    broken_crl_lets_clients_through_when_policy_allows(Breakage::Removed);
}

#[test]
fn crl_file_without_crl_lets_clients_through_when_policy_allows() {
    broken_crl_lets_clients_through_when_policy_allows(Breakage::NoCrl);
}

#[test]
fn half_written_crl_lets_clients_through_when_policy_allows() {
    broken_crl_lets_clients_through_when_policy_allows(Breakage::HalfWritten);
}

fn broken_crl_is_unusable_in_handler(breakage: Breakage) {
    let (scratch, crl) = watched(&format!("broken-handler-{breakage:?}"), "crl.pem");
    let (server, verdicts) = handler_server(&crl);
    let case = format!("handler, {breakage:?}: before");
    let verdict = judge_probe(&server, &verdicts, 1, "revoked", None, &case);
    assert!(
        matches!(verdict, CrlVerdict::Revoked(_)),
        "{case}: {verdict:?}"
    );

    breakage.apply(&scratch);
    let case = format!("handler, {breakage:?}: after");
    for (id, client) in [(2, "revoked"), (3, "valid")] {
        match judge_probe(&server, &verdicts, id, client, None, &case) {
            CrlVerdict::Unusable(why) => {
                assert!(breakage.explains(&why, &crl), "{case}: reason {why:?}");
            }
            other => panic!("{case}: expected unusable, got {other:?}"),
        }
    }

    scratch.rewrite_or_create(WATCHED, "crl.pem");
    let case = format!("handler, {breakage:?}: repaired");
    let verdict = judge_probe(&server, &verdicts, 4, "revoked", None, &case);
    assert!(
        matches!(verdict, CrlVerdict::Revoked(_)),
        "{case}: {verdict:?}"
    );
    let verdict = judge_probe(&server, &verdicts, 5, "valid", None, &case);
    assert_eq!(verdict, CrlVerdict::Good, "{case}");
}

#[test]
fn handler_finds_removed_crl_file_unreadable() {
    broken_crl_is_unusable_in_handler(Breakage::Removed);
}

#[test]
fn handler_finds_crl_file_without_crl_unusable() {
    broken_crl_is_unusable_in_handler(Breakage::NoCrl);
}

#[test]
fn handler_finds_half_written_crl_malformed_and_never_passes_revoked_client() {
    broken_crl_is_unusable_in_handler(Breakage::HalfWritten);
}

/// A CRL that was good before the file went bad is not kept: a half-written update of a
/// CRL that revoked nobody does not leave the old, empty one in force.
#[test]
fn half_written_update_does_not_keep_earlier_crl_in_force() {
    let (scratch, crl) = watched("half-over-empty", "crl-empty.pem");
    let server = handshake_server(&crl, UnusableCrlPolicy::Refuse);
    probe(&server, 1, "revoked", None, AUTHENTICATED, "crl-empty.pem");
    scratch.cut_in_place(WATCHED, "crl.pem");
    probe(
        &server,
        2,
        "revoked",
        None,
        UNUSABLE,
        "half-written crl.pem",
    );
    drop(server);

    scratch.rewrite_in_place(WATCHED, "crl-empty.pem");
    let (server, verdicts) = handler_server(&crl);
    let verdict = judge_probe(&server, &verdicts, 1, "revoked", None, "handler, empty");
    assert_eq!(verdict, CrlVerdict::Good);
    scratch.cut_in_place(WATCHED, "crl.pem");
    let verdict = judge_probe(&server, &verdicts, 2, "revoked", None, "handler, half");
    assert!(
        matches!(verdict, CrlVerdict::Unusable(CrlUnusable::Malformed { .. })),
        "{verdict:?}"
    );
}

/// Two CRLs of the same size written one after the other into the same file: only the
/// contents and the modification time tell them apart.
#[test]
fn same_size_crl_rewritten_in_place_is_noticed() {
    assert_eq!(
        fs::metadata(support::cert("crl-ca-serial.pem"))
            .unwrap()
            .len(),
        fs::metadata(support::cert("crl-expired.pem"))
            .unwrap()
            .len(),
        "the two CRLs this test swaps should have the same size"
    );
    let (scratch, crl) = watched("same-size", "crl-ca-serial.pem");
    let set = CrlSet::open([&crl]).unwrap();
    let valid = support::crl::pem_certs("client-valid.pem");
    let chain = [&*valid[0], &*valid[1]];
    assert_eq!(
        set.check_chain(&chain, sslify::CrlScope::Leaf),
        CrlVerdict::Good
    );

    scratch.rewrite_in_place(WATCHED, "crl-expired.pem");
    assert!(
        matches!(
            set.check_chain(&chain, sslify::CrlScope::Leaf),
            CrlVerdict::Unusable(CrlUnusable::Expired { .. })
        ),
        "the expired CRL written over the current one should be noticed"
    );
}
