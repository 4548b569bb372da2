//! Certificate revocation lists: loading, checking a chain, and reloading on change.
//!
//! One engine serves both places a CRL is checked: the handshake (through
//! [`Options::crl_file`](crate::Options::crl_file)) and the handler (through
//! [`CrlSet::check`]). Its rules:
//!
//! - a CRL applies only to certificates of its own issuer, and only once its signature
//!   verifies with that issuer's key;
//! - a valid CRL with no entries revokes nobody;
//! - serials are compared as integers, so DER padding never changes the answer;
//! - a CA certificate's serial is only ever looked up in the CRL of the CA above it;
//! - an expired CRL, a missing, unreadable, empty or half-written file, or a CRL whose
//!   signature does not verify is *unusable*: neither good nor revoked.
//!
//! The Perl module's `Server_SSLify_NonBlock_ClientCertVerifyAgainstCRL` read the file on
//! every call, took only its first CRL, compared serials as strings without looking at the
//! issuer, checked no signature or date, and refused everyone when the CRL had no entries.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use log::{debug, warn};
use openssl::asn1::Asn1IntegerRef;
use openssl::x509::{ReasonCode, X509Crl, X509Ref};

use crate::peer::{one_line, system_time, ClientCertReport};

/// Which certificates of a client's chain are looked up in CRLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrlScope {
    /// Only the client's own certificate (the default).
    #[default]
    Leaf,
    /// Every certificate below the trust anchor: the client's and each intermediate CA's.
    /// Each CA in the chain then needs a CRL of its own issuer.
    Chain,
}

/// What to do with a client when the CRL that should decide cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnusableCrlPolicy {
    /// Refuse the client, with the reason (the default).
    #[default]
    Refuse,
    /// Let the client through and log a warning each time.
    ///
    /// This trades safety for availability: while the CRL is unusable, revoked clients get
    /// in too.
    Allow,
}

/// One revocation found for a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Revocation {
    /// The revoked serial as big-endian bytes without leading zeros.
    pub serial: Vec<u8>,
    /// The revoked certificate's subject, one-line form.
    pub subject: String,
    /// Chain depth of the revoked certificate (0 is the client's own).
    pub depth: usize,
    /// When the CA revoked it.
    pub revoked_at: Option<SystemTime>,
    /// The RFC 5280 reason code, when the entry has one (1 is keyCompromise).
    pub reason_code: Option<i64>,
    /// The CRL file that listed it.
    pub crl_file: PathBuf,
}

/// Why no CRL could decide.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrlUnusable {
    /// The file could not be read.
    Unreadable {
        /// The CRL file.
        path: PathBuf,
        /// The operating system's error.
        error: String,
    },
    /// The file holds no CRL.
    NoCrl {
        /// The CRL file.
        path: PathBuf,
    },
    /// The file ends inside a CRL (a write in progress) or a CRL in it does not parse.
    Malformed {
        /// The CRL file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// No loaded CRL was issued by the certificate's issuer.
    NoCrlForIssuer {
        /// The issuer, one-line form.
        issuer: String,
    },
    /// A CRL names the issuer but its signature does not verify with the issuer's key.
    BadSignature {
        /// The issuer, one-line form.
        issuer: String,
        /// The CRL file.
        path: PathBuf,
    },
    /// The issuer's CRL is past its nextUpdate.
    Expired {
        /// The issuer, one-line form.
        issuer: String,
        /// The CRL file.
        path: PathBuf,
    },
    /// The issuer's CRL has a lastUpdate in the future.
    NotYetValid {
        /// The issuer, one-line form.
        issuer: String,
        /// The CRL file.
        path: PathBuf,
    },
    /// The report holds no chain to check (no certificate was presented).
    NoChain,
    /// The certificate did not pass verification, so no CRL can vouch for it.
    NotVerified,
    /// The chain lacks the certificate of this issuer, whose key must check its CRL.
    NoIssuerCertificate {
        /// The issuer, one-line form.
        issuer: String,
    },
}

/// The answer of a CRL check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlVerdict {
    /// Every checked certificate has a usable CRL from its issuer, and none lists it.
    Good,
    /// A checked certificate is listed.
    Revoked(Revocation),
    /// A CRL needed for the answer cannot be used.
    Unusable(CrlUnusable),
}

/// CRL files, parsed once and reloaded when a file changes on disk.
///
/// Cheap to clone; clones share the parsed CRLs. Each check looks at the files' size,
/// modification time and inode (a `stat` per file, no read), so a CRL replaced by an atomic
/// rename or rewritten in place takes effect on the next check. A file that cannot be
/// parsed after a change makes every check answer [`CrlVerdict::Unusable`] until it is
/// fixed; the CRLs loaded before are not kept, so a half-written update never lets a
/// revoked client in.
#[derive(Clone)]
pub struct CrlSet {
    inner: Arc<Mutex<State>>,
}

struct State {
    paths: Vec<PathBuf>,
    stamps: Vec<Option<Stamp>>,
    generation: u64,
    loaded: Result<Arc<Loaded>, CrlUnusable>,
    /// A loaded CRL has passed its nextUpdate (counted once per load).
    expired: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

struct Loaded {
    crls: Vec<LoadedCrl>,
    /// The earliest nextUpdate of the loaded CRLs: the moment one of them stops being
    /// usable, which counts as a change.
    first_expiry: Option<SystemTime>,
}

struct LoadedCrl {
    crl: X509Crl,
    path: PathBuf,
    issuer_der: Vec<u8>,
    revoked: HashMap<SerialKey, usize>,
    /// A CRL that names an issuer but fails its signature has been warned about.
    warned: AtomicBool,
    /// DER public keys that this CRL's signature has been checked against, with the result.
    signature_checks: Mutex<Vec<(Vec<u8>, bool)>>,
}

/// A serial as an integer: sign and magnitude without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SerialKey {
    negative: bool,
    magnitude: Vec<u8>,
}

impl CrlSet {
    /// Loads every CRL in the given PEM files (a file may hold several).
    ///
    /// # Errors
    ///
    /// The first file that is missing, unreadable, holds no CRL or holds one that does not
    /// parse, with the path and the reason.
    pub fn open<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<CrlSet, CrlUnusable> {
        let paths: Vec<PathBuf> = paths
            .into_iter()
            .map(|p| p.as_ref().to_path_buf())
            .collect();
        let stamps = paths.iter().map(|p| stamp(p)).collect();
        let loaded = load(&paths)?;
        for crl in &loaded.crls {
            debug!(
                "loaded CRL of {} from {} ({} entries)",
                one_line(crl.crl.issuer_name()),
                crl.path.display(),
                crl.revoked.len()
            );
        }
        Ok(CrlSet {
            inner: Arc::new(Mutex::new(State {
                paths,
                stamps,
                generation: 0,
                loaded: Ok(Arc::new(loaded)),
                expired: false,
            })),
        })
    }

    /// Checks the client certificate of `report` (its own certificate only) against the
    /// CRLs, reloading them first if a file changed.
    ///
    /// The issuer's certificate is taken from the chain OpenSSL verified (so it may come
    /// from the client CA file), or, for a resumed session, from the chain the client
    /// presented, completed from the client CA file. The report must be
    /// [`valid`](ClientCertReport::valid): a CRL only speaks for certificates that chain to
    /// its issuer, so an unverified one is answered [`CrlUnusable::NotVerified`].
    pub fn check(&self, report: &ClientCertReport) -> CrlVerdict {
        if !report.valid {
            return CrlVerdict::Unusable(CrlUnusable::NotVerified);
        }
        self.check_chain(&report.issuer_chain(), CrlScope::Leaf)
    }

    /// Checks a chain (client's certificate first, each followed by its issuer).
    pub fn check_chain(&self, chain: &[&X509Ref], scope: CrlScope) -> CrlVerdict {
        self.check_chain_at(chain, scope, true).1
    }

    /// Like [`check_chain`](Self::check_chain), also giving the chain depth the verdict is
    /// about (0 when every checked certificate is good). With `look_at_files` false the
    /// CRLs as last loaded are used: a handshake's TLS context was built from this set a
    /// moment before, after looking at the files.
    pub(crate) fn check_chain_at(
        &self,
        chain: &[&X509Ref],
        scope: CrlScope,
        look_at_files: bool,
    ) -> (usize, CrlVerdict) {
        let loaded = match self.current(look_at_files) {
            Ok(loaded) => loaded,
            Err(unusable) => return (0, CrlVerdict::Unusable(unusable)),
        };
        let Some(leaf) = chain.first() else {
            return (0, CrlVerdict::Unusable(CrlUnusable::NoChain));
        };
        let checked = match scope {
            CrlScope::Leaf => 1,
            // Every certificate up to, not including, a self-issued trust anchor.
            CrlScope::Chain => chain
                .iter()
                .take_while(|cert| !self_issued(cert))
                .count()
                .max(1),
        };
        for depth in 0..checked {
            let cert = if depth == 0 { leaf } else { &chain[depth] };
            let Some(issuer) = chain.get(depth + 1) else {
                let issuer = one_line(cert.issuer_name());
                return (
                    depth,
                    CrlVerdict::Unusable(CrlUnusable::NoIssuerCertificate { issuer }),
                );
            };
            let verdict = loaded.check_one(cert, issuer, depth);
            if verdict != CrlVerdict::Good {
                return (depth, verdict);
            }
        }
        (0, CrlVerdict::Good)
    }

    /// The file, issuer (one-line form) and DER issuer name of every loaded CRL.
    pub(crate) fn issuers(&self) -> Vec<(PathBuf, String, Vec<u8>)> {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Ok(loaded) = &state.loaded else {
            return Vec::new();
        };
        loaded
            .crls
            .iter()
            .map(|crl| {
                (
                    crl.path.clone(),
                    one_line(crl.crl.issuer_name()),
                    crl.issuer_der.clone(),
                )
            })
            .collect()
    }

    /// A number that changes whenever the loaded CRLs change (including to unusable).
    pub fn generation(&self) -> u64 {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        state.refresh();
        state.generation
    }

    fn current(&self, look_at_files: bool) -> Result<Arc<Loaded>, CrlUnusable> {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if look_at_files {
            state.refresh();
        }
        state.loaded.clone()
    }
}

impl fmt::Debug for CrlSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("CrlSet")
            .field("paths", &state.paths)
            .field("generation", &state.generation)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Reloads the files if any changed since the last look.
    fn refresh(&mut self) {
        let stamps: Vec<Option<Stamp>> = self.paths.iter().map(|p| stamp(p)).collect();
        if stamps == self.stamps {
            // A CRL passing its nextUpdate changes what the set decides, as an edit would.
            let expiry = self
                .loaded
                .as_ref()
                .ok()
                .and_then(|loaded| loaded.first_expiry);
            if !self.expired && expiry.is_some_and(|at| at <= SystemTime::now()) {
                self.expired = true;
                self.generation += 1;
                warn!("a loaded CRL has passed its nextUpdate; replace it with a current one");
            }
            return;
        }
        self.expired = false;
        self.stamps = stamps;
        self.generation += 1;
        self.loaded = load(&self.paths).map(Arc::new);
        match &self.loaded {
            Ok(loaded) => debug!(
                "reloaded CRLs ({} in {} files), generation {}",
                loaded.crls.len(),
                self.paths.len(),
                self.generation
            ),
            Err(unusable) => {
                warn!("CRL reload failed, clients will be judged unusable: {unusable}")
            }
        }
    }
}

impl Loaded {
    fn check_one(&self, cert: &X509Ref, issuer: &X509Ref, depth: usize) -> CrlVerdict {
        let issuer_text = one_line(cert.issuer_name());
        let Ok(issuer_der) = cert.issuer_name().to_der() else {
            return CrlVerdict::Unusable(CrlUnusable::NoCrlForIssuer {
                issuer: issuer_text,
            });
        };
        let Ok(issuer_key) = issuer.public_key() else {
            return CrlVerdict::Unusable(CrlUnusable::NoCrlForIssuer {
                issuer: issuer_text,
            });
        };
        let key_der = issuer_key.public_key_to_der().unwrap_or_default();

        // Of the issuer's CRLs whose signature verifies, the newest decides: a file may
        // hold an old CRL beside its successor.
        let mut forged = None;
        let mut usable: Option<&LoadedCrl> = None;
        for crl in self.crls.iter().filter(|crl| crl.issuer_der == issuer_der) {
            if !crl.signed_by(&key_der, &issuer_key) {
                forged.get_or_insert(crl);
                continue;
            }
            let newer = usable.is_none_or(|best| {
                crl.crl
                    .last_update()
                    .compare(best.crl.last_update())
                    .is_ok_and(|order| order.is_ge())
            });
            if newer {
                usable = Some(crl);
            }
        }
        clear_openssl_errors();
        let Some(crl) = usable else {
            return CrlVerdict::Unusable(match forged {
                Some(crl) => {
                    let log_level = if crl.warned.swap(true, AtomicOrdering::Relaxed) {
                        log::Level::Debug
                    } else {
                        log::Level::Warn
                    };
                    log::log!(
                        log_level,
                        "CRL in {} names {issuer_text} as issuer but is not signed by its key",
                        crl.path.display()
                    );
                    CrlUnusable::BadSignature {
                        issuer: issuer_text,
                        path: crl.path.clone(),
                    }
                }
                None => CrlUnusable::NoCrlForIssuer {
                    issuer: issuer_text,
                },
            });
        };

        let now = SystemTime::now();
        if system_time(crl.crl.last_update()).is_some_and(|t| t > now) {
            return CrlVerdict::Unusable(CrlUnusable::NotYetValid {
                issuer: issuer_text,
                path: crl.path.clone(),
            });
        }
        let expired = crl
            .crl
            .next_update()
            .and_then(system_time)
            .is_some_and(|t| t < now);
        if expired {
            return CrlVerdict::Unusable(CrlUnusable::Expired {
                issuer: issuer_text,
                path: crl.path.clone(),
            });
        }

        let key = serial_key(cert.serial_number());
        let Some(&index) = crl.revoked.get(&key) else {
            return CrlVerdict::Good;
        };
        let revoked = crl.crl.get_revoked().and_then(|stack| stack.get(index));
        CrlVerdict::Revoked(Revocation {
            serial: key.magnitude,
            subject: one_line(cert.subject_name()),
            depth,
            revoked_at: revoked.and_then(|entry| system_time(entry.revocation_date())),
            reason_code: revoked.and_then(|entry| {
                entry
                    .extension::<ReasonCode>()
                    .ok()
                    .flatten()
                    .and_then(|(_, code)| code.get_i64().ok())
            }),
            crl_file: crl.path.clone(),
        })
    }
}

impl LoadedCrl {
    /// Whether the CRL's signature verifies with `key`, remembering the answer per key.
    fn signed_by(
        &self,
        key_der: &[u8],
        key: &openssl::pkey::PKeyRef<openssl::pkey::Public>,
    ) -> bool {
        let mut checks = self
            .signature_checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, ok)) = checks.iter().find(|(der, _)| der == key_der) {
            return *ok;
        }
        let ok = self.crl.verify(key).unwrap_or(false);
        // A failed check leaves OpenSSL's per-thread error queue filled, and the next TLS
        // operation on this thread would take those errors for its own.
        clear_openssl_errors();
        checks.push((key_der.to_vec(), ok));
        ok
    }
}

impl fmt::Display for CrlUnusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrlUnusable::Unreadable { path, error } => {
                write!(f, "cannot read CRL file {}: {error}", path.display())
            }
            CrlUnusable::NoCrl { path } => write!(f, "CRL file {} holds no CRL", path.display()),
            CrlUnusable::Malformed { path, detail } => {
                write!(f, "CRL file {} is malformed: {detail}", path.display())
            }
            CrlUnusable::NoCrlForIssuer { issuer } => write!(f, "no CRL issued by {issuer}"),
            CrlUnusable::BadSignature { issuer, path } => write!(
                f,
                "CRL in {} claims issuer {issuer} but its signature does not verify",
                path.display()
            ),
            CrlUnusable::Expired { issuer, path } => {
                write!(f, "CRL of {issuer} in {} has expired", path.display())
            }
            CrlUnusable::NotYetValid { issuer, path } => {
                write!(f, "CRL of {issuer} in {} is not valid yet", path.display())
            }
            CrlUnusable::NoChain => f.write_str("no certificate chain to check"),
            CrlUnusable::NotVerified => f.write_str("the certificate did not verify"),
            CrlUnusable::NoIssuerCertificate { issuer } => {
                write!(f, "the certificate of issuer {issuer} is not in the chain")
            }
        }
    }
}

impl std::error::Error for CrlUnusable {}

impl fmt::Display for CrlVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrlVerdict::Good => f.write_str("not revoked"),
            CrlVerdict::Revoked(revocation) => write!(
                f,
                "revoked: {} (serial {}) listed in {}",
                revocation.subject,
                crate::hexdump(&revocation.serial),
                revocation.crl_file.display()
            ),
            CrlVerdict::Unusable(why) => write!(f, "CRL unusable: {why}"),
        }
    }
}

/// Whether a certificate names itself as issuer and is signed by its own key.
fn self_issued(cert: &X509Ref) -> bool {
    cert.issued(cert) == openssl::x509::X509VerifyResult::OK
}

/// Empties OpenSSL's error queue for this thread.
pub(crate) fn clear_openssl_errors() {
    let _ = openssl::error::ErrorStack::get();
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

fn load(paths: &[PathBuf]) -> Result<Loaded, CrlUnusable> {
    let mut crls = Vec::new();
    for path in paths {
        let pem = fs::read(path).map_err(|error| CrlUnusable::Unreadable {
            path: path.clone(),
            error: describe_io(&error),
        })?;
        for block in pem_blocks(&pem, path)? {
            let crl = X509Crl::from_pem(block).map_err(|error| CrlUnusable::Malformed {
                path: path.clone(),
                detail: crate::error::openssl_reason(&error),
            })?;
            crls.push(index(crl, path));
        }
    }
    let first_expiry = crls
        .iter()
        .filter_map(|crl| crl.crl.next_update().and_then(system_time))
        .min();
    Ok(Loaded { crls, first_expiry })
}

fn index(crl: X509Crl, path: &Path) -> LoadedCrl {
    let mut revoked = HashMap::new();
    if let Some(stack) = crl.get_revoked() {
        for (i, entry) in stack.iter().enumerate() {
            revoked.insert(serial_key(entry.serial_number()), i);
        }
    }
    LoadedCrl {
        issuer_der: crl.issuer_name().to_der().unwrap_or_default(),
        crl,
        path: path.to_path_buf(),
        revoked,
        signature_checks: Mutex::new(Vec::new()),
        warned: AtomicBool::new(false),
    }
}

/// Splits a PEM file into its CRL blocks; a block without its end line is malformed.
fn pem_blocks<'a>(pem: &'a [u8], path: &Path) -> Result<Vec<&'a [u8]>, CrlUnusable> {
    const BEGIN: &[u8] = b"-----BEGIN X509 CRL-----";
    const END: &[u8] = b"-----END X509 CRL-----";

    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(start) = find(rest, BEGIN) {
        let Some(end) = find(&rest[start..], END) else {
            return Err(CrlUnusable::Malformed {
                path: path.to_path_buf(),
                detail: "a CRL has no end line (incomplete file?)".to_owned(),
            });
        };
        let stop = start + end + END.len();
        blocks.push(&rest[start..stop]);
        rest = &rest[stop..];
    }
    if blocks.is_empty() {
        return Err(CrlUnusable::NoCrl {
            path: path.to_path_buf(),
        });
    }
    Ok(blocks)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn serial_key(serial: &Asn1IntegerRef) -> SerialKey {
    match serial.to_bn() {
        Ok(bn) => SerialKey {
            negative: bn.is_negative(),
            magnitude: bn.to_vec(),
        },
        Err(_) => SerialKey {
            negative: false,
            magnitude: Vec::new(),
        },
    }
}

fn describe_io(error: &io::Error) -> String {
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_pem_blocks_and_rejects_an_unfinished_one() {
        let path = Path::new("x.pem");
        let two = b"junk\n-----BEGIN X509 CRL-----\nAA\n-----END X509 CRL-----\n-----BEGIN X509 CRL-----\nBB\n-----END X509 CRL-----\n";
        assert_eq!(pem_blocks(two, path).unwrap().len(), 2);

        let cut =
            b"-----BEGIN X509 CRL-----\nAA\n-----END X509 CRL-----\n-----BEGIN X509 CRL-----\nBB";
        assert!(matches!(
            pem_blocks(cut, path),
            Err(CrlUnusable::Malformed { .. })
        ));

        assert!(matches!(
            pem_blocks(b"nothing here", path),
            Err(CrlUnusable::NoCrl { .. })
        ));
    }

    #[test]
    fn serials_compare_as_integers() {
        use openssl::asn1::Asn1Integer;
        use openssl::bn::BigNum;

        let a = Asn1Integer::from_bn(&BigNum::from_hex_str("0080AB00CD12").unwrap()).unwrap();
        let b = Asn1Integer::from_bn(&BigNum::from_hex_str("80AB00CD12").unwrap()).unwrap();
        let c = Asn1Integer::from_bn(&BigNum::from_hex_str("80AB0CD12").unwrap()).unwrap();
        assert_eq!(serial_key(&a), serial_key(&b));
        assert_ne!(serial_key(&b), serial_key(&c));
    }
}
