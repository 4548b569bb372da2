//! The client-certificate report: what one connection's client presented and what
//! verification made of it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use openssl::ssl::SslRef;
use openssl::x509::{X509NameRef, X509Ref, X509StoreContextRef, X509VerifyResult};

use crate::hexdump::hexdump;

// OpenSSL's X509_V_ERR_* codes used to sort failures into problems.
const ERR_UNABLE_TO_GET_ISSUER_CERT: i32 = 2;
const ERR_CERT_NOT_YET_VALID: i32 = 9;
const ERR_CERT_HAS_EXPIRED: i32 = 10;
const ERR_DEPTH_ZERO_SELF_SIGNED_CERT: i32 = 18;
const ERR_SELF_SIGNED_CERT_IN_CHAIN: i32 = 19;
const ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i32 = 20;
const ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: i32 = 21;
const ERR_CERT_REVOKED: i32 = 23;
const ERR_CERT_UNTRUSTED: i32 = 27;

/// One certificate of the chain a client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertEntry {
    /// Subject in OpenSSL's one-line form, e.g. `/C=US/O=Example/CN=alice`.
    pub subject: String,
    /// Issuer in the same form.
    pub issuer: String,
    /// Serial number as big-endian bytes without leading zeros (a zero serial is `[0]`).
    pub serial: Vec<u8>,
}

impl CertEntry {
    pub(crate) fn from_x509(cert: &X509Ref) -> Self {
        let serial = cert
            .serial_number()
            .to_bn()
            .map(|bn| bn.to_vec())
            .unwrap_or_default();
        CertEntry {
            subject: one_line(cert.subject_name()),
            issuer: one_line(cert.issuer_name()),
            serial: if serial.is_empty() { vec![0] } else { serial },
        }
    }

    /// The serial as colon-separated hex, e.g. `01:f3:9a`; see [`hexdump`](crate::hexdump).
    ///
    /// The Perl module could only show serials with a patched Net::SSLeay (`getserial`);
    /// here they are always available.
    pub fn serial_hex(&self) -> String {
        hexdump(&self.serial)
    }
}

/// What a connection's client presented and what verification made of it.
///
/// Built from the connection's own verify callback and OpenSSL's result for that
/// connection alone. The Perl module kept this in one global variable, so two handshakes
/// in flight could report each other's certificates; here no connection can see another's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClientCertReport {
    /// The client sent a certificate.
    pub presented: bool,
    /// The certificate chains to the configured CA and passed every check.
    pub valid: bool,
    /// OpenSSL's verify result code (`X509_V_OK` is 0) for the first failure, or the final
    /// result when nothing failed.
    pub verify_code: i32,
    /// OpenSSL's text for `verify_code`, e.g. `certificate has expired`.
    pub verify_text: String,
    /// The chain depth of the first failure (0 is the client's own certificate), when known.
    ///
    /// A resumed session carries the verify result of its full handshake but not the depth.
    pub failed_depth: Option<u32>,
    /// The chain as presented, the client's own certificate first.
    pub chain: Vec<CertEntry>,
}

/// Why a client certificate is not acceptable, sorted from OpenSSL's verify result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertProblem {
    /// No certificate was presented.
    Missing,
    /// The chain does not lead to the configured CA (unknown CA, self-signed, …).
    Untrusted,
    /// A certificate in the chain has expired.
    Expired,
    /// A certificate in the chain is not valid yet.
    NotYetValid,
    /// A certificate in the chain is revoked.
    Revoked,
    /// Any other verification failure; the report's `verify_text` says which.
    Invalid,
}

impl ClientCertReport {
    /// The problem with the certificate, or `None` when it is present and valid.
    pub fn problem(&self) -> Option<CertProblem> {
        if !self.presented {
            return Some(CertProblem::Missing);
        }
        if self.valid {
            return None;
        }
        Some(problem_of(self.verify_code))
    }

    /// The client's own certificate, if one was presented.
    pub fn leaf(&self) -> Option<&CertEntry> {
        self.chain.first()
    }

    pub(crate) fn from_ssl(ssl: &SslRef, record: &VerifyRecord) -> Self {
        let Some(leaf) = ssl.peer_certificate() else {
            // A certificate refused in the handshake is not kept by OpenSSL; the verify
            // callback saved what it saw.
            if let Some(failure) = &record.failure {
                return ClientCertReport {
                    presented: true,
                    valid: false,
                    verify_code: failure.code,
                    verify_text: failure.text.clone(),
                    failed_depth: Some(failure.depth),
                    chain: failure.chain.clone(),
                };
            }
            return ClientCertReport {
                presented: false,
                valid: false,
                verify_code: 0,
                verify_text: "no certificate presented".to_owned(),
                failed_depth: None,
                chain: Vec::new(),
            };
        };

        let mut chain = vec![CertEntry::from_x509(&leaf)];
        if let Some(rest) = ssl.peer_cert_chain() {
            // A server's view of the peer chain leaves out the client's own certificate;
            // skip it anyway should a future OpenSSL start including it.
            chain.extend(
                rest.iter()
                    .filter(|cert| **cert != *leaf)
                    .map(CertEntry::from_x509),
            );
        }

        let final_result = ssl.verify_result();
        let (verify_code, verify_text, failed_depth) = match &record.failure {
            Some(failure) => (failure.code, failure.text.clone(), Some(failure.depth)),
            None => (
                final_result.as_raw(),
                final_result.error_string().to_owned(),
                None,
            ),
        };
        ClientCertReport {
            presented: true,
            valid: record.failure.is_none() && final_result == X509VerifyResult::OK,
            verify_code,
            verify_text,
            failed_depth,
            chain,
        }
    }
}

impl fmt::Display for ClientCertReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(leaf) = self.leaf() else {
            return f.write_str("no client certificate");
        };
        if self.valid {
            f.write_str("valid")?;
        } else {
            f.write_str("invalid")?;
        }
        write!(
            f,
            " client certificate {} (serial {})",
            leaf.subject,
            leaf.serial_hex()
        )?;
        if !self.valid {
            write!(f, ": {}", self.verify_text)?;
            if let Some(depth) = self.failed_depth {
                write!(f, " at depth {depth}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertProblem::Missing => "missing",
            CertProblem::Untrusted => "untrusted",
            CertProblem::Expired => "expired",
            CertProblem::NotYetValid => "not yet valid",
            CertProblem::Revoked => "revoked",
            CertProblem::Invalid => "invalid",
        })
    }
}

/// The first verification failure seen by one connection's verify callback.
#[derive(Debug, Clone)]
pub(crate) struct VerifyFailure {
    pub(crate) code: i32,
    pub(crate) text: String,
    pub(crate) depth: u32,
    /// The chain as far as OpenSSL had built it, the client's certificate first.
    pub(crate) chain: Vec<CertEntry>,
}

/// What one connection's verify callback saw. Owned by that connection alone.
#[derive(Debug, Default)]
pub(crate) struct VerifyRecord {
    pub(crate) failure: Option<VerifyFailure>,
    pub(crate) called: bool,
}

/// A connection's verify record, shared only between its verify callback and itself.
pub(crate) type SharedRecord = Arc<Mutex<VerifyRecord>>;

/// Notes the first failure in `record` and returns what OpenSSL should do: carry on when
/// `tolerate` is set (the handler decides), otherwise OpenSSL's own verdict.
pub(crate) fn observe(
    record: &SharedRecord,
    preverify_ok: bool,
    store: &X509StoreContextRef,
    tolerate: bool,
) -> bool {
    let mut record = record.lock().unwrap_or_else(PoisonError::into_inner);
    record.called = true;
    if !preverify_ok && record.failure.is_none() {
        let error = store.error();
        record.failure = Some(VerifyFailure {
            code: error.as_raw(),
            text: error.error_string().to_owned(),
            depth: store.error_depth(),
            chain: store
                .chain()
                .map(|chain| chain.iter().map(CertEntry::from_x509).collect())
                .unwrap_or_default(),
        });
    }
    preverify_ok || tolerate
}

pub(crate) fn problem_of(code: i32) -> CertProblem {
    match code {
        ERR_CERT_HAS_EXPIRED => CertProblem::Expired,
        ERR_CERT_NOT_YET_VALID => CertProblem::NotYetValid,
        ERR_CERT_REVOKED => CertProblem::Revoked,
        ERR_UNABLE_TO_GET_ISSUER_CERT
        | ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        | ERR_SELF_SIGNED_CERT_IN_CHAIN
        | ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | ERR_CERT_UNTRUSTED => CertProblem::Untrusted,
        _ => CertProblem::Invalid,
    }
}

/// Formats a distinguished name as `/C=US/O=Example/CN=alice`, the form
/// `X509_NAME_oneline` gives and the Perl module reported.
pub(crate) fn one_line(name: &X509NameRef) -> String {
    let mut out = String::new();
    for entry in name.entries() {
        let key = entry.object().nid().short_name().unwrap_or("?");
        out.push('/');
        out.push_str(key);
        out.push('=');
        match entry.data().to_string() {
            Ok(value) => out.push_str(&value),
            Err(_) => out.push_str(&hexdump(entry.data().as_slice())),
        }
    }
    out
}
