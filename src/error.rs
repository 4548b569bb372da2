//! Errors reported at start-up: building the TLS context and binding the listener.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use openssl::error::ErrorStack;

use crate::crl::CrlUnusable;

/// What a file was supposed to hold, named in [`ConfigError`] messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileRole {
    /// The server's certificate, optionally followed by its chain.
    Certificate,
    /// The server's private key.
    PrivateKey,
    /// The CA certificates that client certificates must chain to.
    ClientCa,
    /// The CA certificates that a server's certificate must chain to (client side).
    ServerCa,
}

impl fmt::Display for FileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileRole::Certificate => "certificate",
            FileRole::PrivateKey => "private key",
            FileRole::ClientCa => "client CA",
            FileRole::ServerCa => "server CA",
        })
    }
}

/// Why the TLS options could not be turned into a working TLS context.
///
/// Every variant that concerns a file carries its path, so the message alone tells an
/// operator which file to fix.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, a directory, no permission, …).
    Read {
        /// What the file was for.
        role: FileRole,
        /// The path as given in the options.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file was read but holds no PEM block of the expected kind.
    NoPem {
        /// What the file was for.
        role: FileRole,
        /// The path as given in the options.
        path: PathBuf,
    },
    /// The file holds PEM data that OpenSSL could not parse.
    Parse {
        /// What the file was for.
        role: FileRole,
        /// The path as given in the options.
        path: PathBuf,
        /// OpenSSL's errors.
        source: ErrorStack,
    },
    /// The private key file is encrypted; keys must be stored unencrypted (decrypt with
    /// `openssl pkey -in KEY -out PLAIN`), since a server cannot stop to ask for a password.
    EncryptedKey {
        /// The key file.
        path: PathBuf,
    },
    /// OpenSSL refused what the file holds (e.g. a key too small for its security level).
    Refused {
        /// What the file was for.
        role: FileRole,
        /// The path as given in the options.
        path: PathBuf,
        /// OpenSSL's errors.
        source: ErrorStack,
    },
    /// The private key does not belong to the certificate.
    KeyMismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A CRL file could not be loaded; the value names the file and the reason.
    Crl(CrlUnusable),
    /// A client-certificate mode that needs a CA file was chosen without one.
    MissingClientCa,
    /// OpenSSL refused a setting; `what` names it.
    Tls {
        /// The setting that failed.
        what: &'static str,
        /// OpenSSL's errors.
        source: ErrorStack,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { role, path, source } => {
                write!(f, "cannot read {role} file {}: {source}", path.display())
            }
            ConfigError::NoPem { role, path } => {
                write!(
                    f,
                    "{role} file {} holds no PEM {}",
                    path.display(),
                    pem_kind(*role)
                )
            }
            ConfigError::Parse { role, path, source } => {
                write!(
                    f,
                    "cannot parse {role} file {}: {}",
                    path.display(),
                    openssl_reason(source)
                )
            }
            ConfigError::Refused { role, path, source } => write!(
                f,
                "OpenSSL refused the {role} in {}: {}",
                path.display(),
                openssl_reason(source)
            ),
            ConfigError::EncryptedKey { path } => write!(
                f,
                "private key file {} is encrypted; store the key unencrypted",
                path.display()
            ),
            ConfigError::KeyMismatch { certificate, key } => write!(
                f,
                "private key {} does not match certificate {}",
                key.display(),
                certificate.display()
            ),
            ConfigError::Crl(why) => write!(f, "{why}"),
            ConfigError::MissingClientCa => {
                f.write_str("client certificates are requested but no client CA file is set")
            }
            ConfigError::Tls { what, source } => {
                write!(f, "cannot set {what}: {}", openssl_reason(source))
            }
        }
    }
}

impl StdError for ConfigError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Parse { source, .. }
            | ConfigError::Tls { source, .. }
            | ConfigError::Refused { source, .. } => Some(source),
            ConfigError::Crl(why) => Some(why),
            _ => None,
        }
    }
}

/// Why a [`Listener`](crate::Listener) could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenerError {
    /// The address could not be bound (in use, not local, no permission, …).
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// The address string could not be resolved to a socket address.
    Resolve {
        /// The address as given.
        addr: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The bound socket could not be set up for asynchronous use.
    Setup {
        /// The bound address.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
}

impl fmt::Display for ListenerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenerError::Bind { addr, source } => write!(f, "cannot bind {addr}: {source}"),
            ListenerError::Resolve { addr, source } => {
                write!(f, "cannot resolve listen address {addr:?}: {source}")
            }
            ListenerError::Setup { addr, source } => {
                write!(f, "cannot set up listener on {addr}: {source}")
            }
        }
    }
}

impl StdError for ListenerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ListenerError::Bind { source, .. }
            | ListenerError::Resolve { source, .. }
            | ListenerError::Setup { source, .. } => Some(source),
        }
    }
}

fn pem_kind(role: FileRole) -> &'static str {
    match role {
        FileRole::Certificate | FileRole::ClientCa | FileRole::ServerCa => "certificate",
        FileRole::PrivateKey => "private key",
    }
}

/// Joins OpenSSL's reason strings into one short phrase, falling back to the full text.
pub(crate) fn openssl_reason(stack: &ErrorStack) -> String {
    let reasons: Vec<&str> = stack.errors().iter().filter_map(|e| e.reason()).collect();
    if reasons.is_empty() {
        stack.to_string()
    } else {
        reasons.join("; ")
    }
}

/// Why a [`Connector`](crate::Connector) could not connect.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The TCP connection failed (refused, unreachable, …).
    Connect {
        /// The address dialed.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// TLS could not be set up for the connection.
    Tls {
        /// The address dialed.
        addr: SocketAddr,
        /// OpenSSL's errors.
        source: ErrorStack,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {source}")
            }
            ConnectError::Tls { addr, source } => {
                write!(f, "cannot set up TLS to {addr}: {}", openssl_reason(source))
            }
        }
    }
}

impl StdError for ConnectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ConnectError::Connect { source, .. } => Some(source),
            ConnectError::Tls { source, .. } => Some(source),
        }
    }
}
