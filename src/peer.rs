//! The client-certificate report: what one connection's client presented and what
//! verification made of it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::hash::MessageDigest;
use openssl::ssl::SslRef;
use openssl::stack::StackRef;
use openssl::x509::{X509NameRef, X509Ref, X509StoreContextRef, X509VerifyResult, X509};

use foreign_types::ForeignTypeRef;
use log::{debug, warn};

use crate::crl::{CrlScope, CrlSet, CrlUnusable, CrlVerdict, Revocation, UnusableCrlPolicy};
use crate::events::ConnectionId;
use crate::hexdump::hexdump;

// OpenSSL's X509_V_ERR_* codes used to sort failures into problems.
const ERR_UNABLE_TO_GET_ISSUER_CERT: i32 = 2;
pub(crate) const ERR_UNABLE_TO_GET_CRL: i32 = 3;
pub(crate) const ERR_CRL_SIGNATURE_FAILURE: i32 = 8;
const ERR_CERT_NOT_YET_VALID: i32 = 9;
pub(crate) const ERR_CRL_NOT_YET_VALID: i32 = 11;
pub(crate) const ERR_CRL_HAS_EXPIRED: i32 = 12;
const ERR_CERT_HAS_EXPIRED: i32 = 10;
const ERR_DEPTH_ZERO_SELF_SIGNED_CERT: i32 = 18;
const ERR_SELF_SIGNED_CERT_IN_CHAIN: i32 = 19;
const ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i32 = 20;
const ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: i32 = 21;
pub(crate) const ERR_CERT_REVOKED: i32 = 23;
const ERR_HOSTNAME_MISMATCH: i32 = 62;
const ERR_EMAIL_MISMATCH: i32 = 63;
const ERR_IP_ADDRESS_MISMATCH: i32 = 64;
const ERR_CERT_UNTRUSTED: i32 = 27;

/// One certificate of the chain a client presented.
///
/// The common facts are fields; the rest is computed on request from the certificate,
/// which [`certificate`](CertEntry::certificate) gives in full.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertEntry {
    /// Subject in OpenSSL's one-line form, e.g. `/C=US/O=Example/CN=alice`.
    pub subject: String,
    /// Issuer in the same form.
    pub issuer: String,
    /// Serial number as big-endian bytes without leading zeros (a zero serial is `[0]`).
    pub serial: Vec<u8>,
    cert: X509,
}

impl CertEntry {
    pub(crate) fn from_x509(cert: &X509Ref) -> Self {
        CertEntry {
            subject: one_line(cert.subject_name()),
            issuer: one_line(cert.issuer_name()),
            serial: serial_bytes(cert),
            cert: cert.to_owned(),
        }
    }

    /// The serial as colon-separated lower-case hex, e.g. `01:f3:9a`; see
    /// [`hexdump`](crate::hexdump). Leading zero bytes of the DER encoding are not shown.
    ///
    /// The Perl module could only show serials with a patched Net::SSLeay (`getserial`);
    /// here they are always available.
    pub fn serial_hex(&self) -> String {
        hexdump(&self.serial)
    }

    /// Subject in RFC 4514 form, most specific attribute first, e.g.
    /// `CN=alice,O=Example,C=US`.
    pub fn subject_rfc4514(&self) -> String {
        rfc4514(self.cert.subject_name())
    }

    /// Issuer in RFC 4514 form.
    pub fn issuer_rfc4514(&self) -> String {
        rfc4514(self.cert.issuer_name())
    }

    /// SHA-256 fingerprint of the DER certificate as colon-separated lower-case hex, the
    /// value `openssl x509 -fingerprint -sha256` prints (in upper case).
    pub fn sha256_fingerprint(&self) -> String {
        self.cert
            .digest(MessageDigest::sha256())
            .map(|digest| hexdump(&digest))
            .unwrap_or_default()
    }

    /// Subject alternative names as `DNS:…`, `IP:…`, `email:…` and `URI:…` strings, in
    /// the certificate's order.
    pub fn subject_alt_names(&self) -> Vec<String> {
        let Some(names) = self.cert.subject_alt_names() else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|name| {
                if let Some(dns) = name.dnsname() {
                    Some(format!("DNS:{dns}"))
                } else if let Some(ip) = name.ipaddress() {
                    ip_text(ip).map(|ip| format!("IP:{ip}"))
                } else if let Some(email) = name.email() {
                    Some(format!("email:{email}"))
                } else {
                    name.uri().map(|uri| format!("URI:{uri}"))
                }
            })
            .collect()
    }

    /// Start of the validity period.
    pub fn not_before(&self) -> Option<SystemTime> {
        system_time(self.cert.not_before())
    }

    /// End of the validity period.
    pub fn not_after(&self) -> Option<SystemTime> {
        system_time(self.cert.not_after())
    }

    /// The validity period as OpenSSL prints it, e.g. `Jan  1 00:00:00 2020 GMT`.
    pub fn validity_text(&self) -> (String, String) {
        (
            self.cert.not_before().to_string(),
            self.cert.not_after().to_string(),
        )
    }

    /// The certificate itself.
    pub fn certificate(&self) -> &X509Ref {
        &self.cert
    }
}

impl fmt::Debug for CertEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertEntry")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("serial", &self.serial_hex())
            .finish_non_exhaustive()
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
    /// The CRL entry that revoked a certificate of the chain, when the handshake's CRL
    /// check found one.
    pub revocation: Option<Revocation>,
    /// The chain OpenSSL verified, up to the trust anchor, when a full handshake verified
    /// one; used to find issuers for CRL checks.
    verified: VerifiedChain,
}

/// The verified chain of a report. Not part of a report's identity: a resumed session
/// reports the same certificate without one.
#[derive(Clone, Default)]
struct VerifiedChain(Vec<X509>);

impl PartialEq for VerifiedChain {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for VerifiedChain {}

impl fmt::Debug for VerifiedChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} certificates", self.0.len())
    }
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
    /// The CRL needed to decide is unusable (expired, missing, malformed, bad signature).
    CrlUnusable,
    /// The certificate is not for the name (or address) that was dialed; only on a
    /// [`Connector`](crate::Connector).
    NameMismatch,
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

    /// The report of a finished (or refused) handshake. `anchors` are the configured CAs,
    /// used to complete the chain of a resumed session, which OpenSSL does not verify
    /// again.
    pub(crate) fn from_ssl(ssl: &SslRef, record: &VerifyRecord, anchors: &[X509]) -> Self {
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
                    revocation: failure.revocation.clone(),
                    verified: VerifiedChain::default(),
                };
            }
            return ClientCertReport {
                presented: false,
                valid: false,
                verify_code: 0,
                verify_text: "no certificate presented".to_owned(),
                failed_depth: None,
                chain: Vec::new(),
                revocation: None,
                verified: VerifiedChain::default(),
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

        let verified = match ssl.verified_chain() {
            Some(verified) if verified.len() > 1 => {
                verified.iter().map(X509Ref::to_owned).collect()
            }
            _ => complete_chain(&chain, anchors),
        };
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
            revocation: record.failure.as_ref().and_then(|f| f.revocation.clone()),
            verified: VerifiedChain(verified),
        }
    }

    /// The certificates to look issuers up in: the verified chain when there is one (it
    /// ends at the trust anchor from the CA file), the presented chain otherwise.
    pub(crate) fn issuer_chain(&self) -> Vec<&X509Ref> {
        if self.verified.0.len() > 1 {
            self.verified.0.iter().map(|cert| &**cert).collect()
        } else {
            self.chain.iter().map(CertEntry::certificate).collect()
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
            CertProblem::CrlUnusable => "CRL unusable",
            CertProblem::NameMismatch => "name mismatch",
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
    /// The chain as the client presented it, its own certificate first.
    pub(crate) chain: Vec<CertEntry>,
    /// The CRL entry behind a revocation.
    pub(crate) revocation: Option<Revocation>,
}

/// What one connection's verify callback saw. Owned by that connection alone.
#[derive(Debug, Default)]
pub(crate) struct VerifyRecord {
    pub(crate) failure: Option<VerifyFailure>,
    pub(crate) crl_checked: bool,
}

/// A connection's verify record, shared only between its verify callback and itself.
pub(crate) type SharedRecord = Arc<Mutex<VerifyRecord>>;

/// One connection's verify callback: notes what it sees in the connection's own record,
/// applies the CRLs, and tells OpenSSL whether to go on.
pub(crate) struct Verifier {
    pub(crate) record: SharedRecord,
    /// Carry on after a failure (the handler decides) instead of failing the handshake.
    pub(crate) tolerate: bool,
    pub(crate) crls: Option<(CrlSet, CrlScope, UnusableCrlPolicy)>,
    pub(crate) id: ConnectionId,
}

impl Verifier {
    pub(crate) fn observe(&self, preverify_ok: bool, store: &mut X509StoreContextRef) -> bool {
        let mut record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        if !preverify_ok {
            if record.failure.is_none() {
                let error = store.error();
                record.failure = Some(self.failure(store, error.as_raw(), error.error_string()));
            }
            return self.tolerate;
        }

        // The chain is complete and trusted once OpenSSL reaches the client's certificate.
        if store.error_depth() != 0 || record.failure.is_some() || record.crl_checked {
            return true;
        }
        record.crl_checked = true;
        let Some((crls, scope, policy)) = &self.crls else {
            return true;
        };
        let chain: Vec<X509> = match store.chain() {
            Some(chain) => chain.iter().map(X509Ref::to_owned).collect(),
            None => Vec::new(),
        };
        let refs: Vec<&X509Ref> = chain.iter().map(|cert| &**cert).collect();
        let (depth, verdict) = crls.check_chain_at(&refs, *scope, false);
        let mut revoked = None;
        let (code, text) = match verdict {
            CrlVerdict::Good => {
                debug!("[{}] CRL check: not revoked", self.id);
                return true;
            }
            CrlVerdict::Revoked(revocation) => {
                debug!(
                    "[{}] CRL check: {}",
                    self.id,
                    CrlVerdict::Revoked(revocation.clone())
                );
                let text = format!("certificate revoked: {}", revocation.subject);
                revoked = Some(revocation);
                (ERR_CERT_REVOKED, text)
            }
            CrlVerdict::Unusable(why) => {
                if *policy == UnusableCrlPolicy::Allow {
                    warn!(
                        "[{}] CRL unusable, client let through by policy: {why}",
                        self.id
                    );
                    return true;
                }
                debug!("[{}] CRL check: unusable: {why}", self.id);
                let code = match why {
                    CrlUnusable::Expired { .. } => ERR_CRL_HAS_EXPIRED,
                    CrlUnusable::NotYetValid { .. } => ERR_CRL_NOT_YET_VALID,
                    CrlUnusable::BadSignature { .. } => ERR_CRL_SIGNATURE_FAILURE,
                    _ => ERR_UNABLE_TO_GET_CRL,
                };
                (code, format!("CRL unusable: {why}"))
            }
        };
        // SAFETY: `code` is one of OpenSSL's own X509_V_ERR constants, the kind of value
        // `from_raw` expects. Setting it makes OpenSSL send the matching alert (44 for
        // revoked, 45 for an expired CRL, 51 for a bad CRL signature).
        store.set_error(unsafe { X509VerifyResult::from_raw(code) });
        let mut failure = self.failure(store, code, &text);
        failure.depth = u32::try_from(depth).unwrap_or(u32::MAX);
        failure.revocation = revoked;
        record.failure = Some(failure);
        self.tolerate
    }

    /// The record of a failure, with the chain as the client presented it: OpenSSL keeps
    /// no chain for a refused client, and the chain it built would include the trust
    /// anchor from the CA file.
    fn failure(&self, store: &X509StoreContextRef, code: i32, text: &str) -> VerifyFailure {
        let chain = presented_chain(store)
            .or_else(|| {
                store
                    .chain()
                    .map(|chain| chain.iter().map(CertEntry::from_x509).collect())
            })
            .unwrap_or_default();
        VerifyFailure {
            code,
            text: text.to_owned(),
            depth: store.error_depth(),
            chain,
            revocation: None,
        }
    }
}

extern "C" {
    // Part of OpenSSL's public API since 1.1.0, though the openssl crates do not bind it.
    fn X509_STORE_CTX_get0_untrusted(
        ctx: *mut openssl_sys::X509_STORE_CTX,
    ) -> *mut openssl_sys::stack_st_X509;
}

/// The certificates the peer sent, in the order sent, from the store context being
/// verified. During a TLS handshake OpenSSL verifies with the peer's whole certificate
/// list (its own certificate first) as the untrusted set.
fn presented_chain(store: &X509StoreContextRef) -> Option<Vec<CertEntry>> {
    // SAFETY: `store` is a live X509_STORE_CTX for the duration of the verify callback, and
    // get0 returns a pointer borrowed from it (or null), which is only read here, before
    // the callback returns, through a reference that cannot outlive `store`.
    let untrusted = unsafe {
        let ptr = X509_STORE_CTX_get0_untrusted(store.as_ptr());
        if ptr.is_null() {
            return None;
        }
        StackRef::<X509>::from_ptr(ptr)
    };
    Some(untrusted.iter().map(CertEntry::from_x509).collect())
}

pub(crate) fn problem_of(code: i32) -> CertProblem {
    match code {
        ERR_CERT_HAS_EXPIRED => CertProblem::Expired,
        ERR_CERT_NOT_YET_VALID => CertProblem::NotYetValid,
        ERR_CERT_REVOKED => CertProblem::Revoked,
        ERR_UNABLE_TO_GET_CRL
        | ERR_CRL_SIGNATURE_FAILURE
        | ERR_CRL_NOT_YET_VALID
        | ERR_CRL_HAS_EXPIRED => CertProblem::CrlUnusable,
        ERR_HOSTNAME_MISMATCH | ERR_EMAIL_MISMATCH | ERR_IP_ADDRESS_MISMATCH => {
            CertProblem::NameMismatch
        }
        ERR_UNABLE_TO_GET_ISSUER_CERT
        | ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        | ERR_SELF_SIGNED_CERT_IN_CHAIN
        | ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | ERR_CERT_UNTRUSTED => CertProblem::Untrusted,
        _ => CertProblem::Invalid,
    }
}

/// The presented chain followed by the configured CAs it leads to, each found by name and
/// checked by signature; used where OpenSSL keeps no verified chain (a resumed session).
fn complete_chain(presented: &[CertEntry], anchors: &[X509]) -> Vec<X509> {
    let mut chain: Vec<X509> = presented.iter().map(|entry| entry.cert.clone()).collect();
    while let Some(last) = chain.last() {
        if chain.len() > 16 || last.issued(last) == X509VerifyResult::OK {
            break;
        }
        let issuer = anchors.iter().find(|ca| {
            ca.issued(last) == X509VerifyResult::OK
                && ca
                    .public_key()
                    .and_then(|key| last.verify(&key))
                    .unwrap_or(false)
        });
        match issuer {
            Some(ca) if !chain.contains(ca) => chain.push(ca.clone()),
            _ => break,
        }
    }
    crate::crl::clear_openssl_errors();
    chain
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
            Ok(value) => push_printable(&mut out, &value),
            Err(_) => out.push_str(&hexdump(entry.data().as_slice())),
        }
    }
    out
}

/// Appends `value` with control characters written as `\xHH`, as `X509_NAME_oneline`
/// does, so that a peer's certificate cannot break or forge log lines.
fn push_printable(out: &mut String, value: &str) {
    for c in value.chars() {
        if c.is_control() {
            let mut bytes = [0u8; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("\\x{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

/// Formats a distinguished name as RFC 4514 says: last attribute first, comma-separated,
/// with special characters escaped.
pub(crate) fn rfc4514(name: &X509NameRef) -> String {
    let mut parts: Vec<String> = Vec::new();
    for entry in name.entries() {
        let key = entry.object().nid().short_name().unwrap_or("?");
        let value = match entry.data().to_string() {
            Ok(value) => escape_rfc4514(&value),
            Err(_) => format!("#{}", hexdump(entry.data().as_slice()).replace(':', "")),
        };
        parts.push(format!("{key}={value}"));
    }
    parts.reverse();
    parts.join(",")
}

fn escape_rfc4514(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if c.is_control() {
            // RFC 4514 hex pairs, one per byte of the character's UTF-8.
            let mut bytes = [0u8; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("\\{byte:02X}"));
            }
            continue;
        }
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The serial as big-endian magnitude bytes without leading zeros; `[0]` for zero.
pub(crate) fn serial_bytes(cert: &X509Ref) -> Vec<u8> {
    let bytes = cert
        .serial_number()
        .to_bn()
        .map(|bn| bn.to_vec())
        .unwrap_or_default();
    if bytes.is_empty() {
        vec![0]
    } else {
        bytes
    }
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

pub(crate) fn system_time(time: &Asn1TimeRef) -> Option<SystemTime> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(time).ok()?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::escape_rfc4514;

    #[test]
    fn escapes_rfc4514_specials() {
        assert_eq!(escape_rfc4514("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc4514("#lead"), "\\#lead");
        assert_eq!(escape_rfc4514(" pad "), "\\ pad\\ ");
        assert_eq!(escape_rfc4514("plain text"), "plain text");
        assert_eq!(escape_rfc4514("a\nb\0"), "a\\0Ab\\00");
    }

    #[test]
    fn control_characters_never_reach_a_one_line_name() {
        let mut out = String::new();
        super::push_printable(&mut out, "evil\n[7] forged\x1b[2J");
        assert_eq!(out, "evil\\x0A[7] forged\\x1B[2J");
    }
}
