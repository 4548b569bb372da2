//! Pieces shared by the examples: command-line parsing, logging set-up, start-up error
//! handling, the Ctrl-C shutdown, and the handler of the advanced example, with the CRL
//! check that the `crl` example and the delayed-disconnect demo add to it.
//!
//! Each example compiles this module on its own and uses only part of it, hence the
//! `dead_code` allowance below.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use env_logger::Env;
use futures::channel::mpsc::UnboundedSender;
use futures::future::{self, Either};
use log::{debug, error, info, warn};
use openssl::asn1::Asn1Time;
use sslify::{
    CertProblem, CertRejected, ClientCertReport, ClientInput, ConnectionHandle, ConnectionId,
    CrlSet, CrlVerdict, Disconnect, DisconnectReason, ListenerHandle, Options, Revocation, SslDone,
    SslHandler,
};

/// The address the servers listen on unless `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// How long the advanced handler waits between its verdict and the disconnect.
pub const CLOSE_DELAY: Duration = Duration::from_secs(1);

/// How long open connections get to end on their own after Ctrl-C before they are closed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The client CA file unless `--client-ca` says otherwise: the root and the intermediate
/// CA, so that a client sending only its own certificate still chains.
pub const DEFAULT_CLIENT_CA: &str = "client-ca-bundle.pem";

/// The CRL file unless `--crl` says otherwise: the intermediate CA's CRL, which lists
/// `client-revoked.pem`.
pub const DEFAULT_CRL: &str = "crl.pem";

/// Path of a file in the crate's test PKI, whatever the current directory.
pub fn cert_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

/// A path as short as it can be told: relative to the crate's directory when inside it.
pub fn show_path(path: &Path) -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(crate_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The command line every server example accepts.
#[derive(Debug, Clone)]
pub struct Args {
    /// `--listen ADDR`; `None` when not given and the example has no default.
    pub listen: Option<String>,
    /// `--cert FILE`: the server's certificate chain.
    pub cert: PathBuf,
    /// `--key FILE`: the server's private key.
    pub key: PathBuf,
    /// `--client-ca FILE`: the CAs that client certificates must chain to.
    pub client_ca: PathBuf,
    /// `--debug`: log every handshake step (`Options::debug`).
    pub debug: bool,
    /// `--crl FILE`: the CRL to check clients against (only where CRL flags are accepted).
    pub crl: PathBuf,
    /// `--crl-in-handshake`: check the CRL in the handshake rather than in the handler.
    pub crl_in_handshake: bool,
}

/// Which flags an example accepts beyond the ones every server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    None,
    Crl,
}

impl Args {
    /// Parses the process's arguments; prints usage and exits on `--help` (status 0) or on
    /// a bad command line (status 2).
    ///
    /// `name` is the example's name, `about` one line on what it does, and
    /// `default_listen` the address used when `--listen` is absent (`None`: no default,
    /// the example decides what no address means).
    pub fn parse(name: &str, about: &str, default_listen: Option<&str>) -> Args {
        Args::parse_as(Usage {
            name,
            about,
            default_listen,
            extra: Extra::None,
        })
    }

    /// Like [`parse`](Args::parse), also accepting `--crl FILE` and `--crl-in-handshake`.
    pub fn parse_with_crl(name: &str, about: &str, default_listen: Option<&str>) -> Args {
        Args::parse_as(Usage {
            name,
            about,
            default_listen,
            extra: Extra::Crl,
        })
    }

    fn parse_as(usage: Usage<'_>) -> Args {
        let words = std::env::args().skip(1);
        match Args::parse_from(words, usage.default_listen, usage.extra) {
            Ok(Parsed::Run(args)) => args,
            Ok(Parsed::Help) => {
                print!("{usage}");
                process::exit(0);
            }
            Err(message) => {
                eprintln!("{}: {message}", usage.name);
                eprintln!("try `cargo run --example {} -- --help`", usage.name);
                process::exit(2);
            }
        }
    }

    fn parse_from(
        mut words: impl Iterator<Item = String>,
        default_listen: Option<&str>,
        extra: Extra,
    ) -> Result<Parsed, String> {
        let mut args = Args {
            listen: default_listen.map(str::to_owned),
            cert: cert_path("server-ec.pem"),
            key: cert_path("server-ec.key"),
            client_ca: cert_path(DEFAULT_CLIENT_CA),
            debug: false,
            crl: cert_path(DEFAULT_CRL),
            crl_in_handshake: false,
        };
        let crl_flags = extra == Extra::Crl;

        while let Some(word) = words.next() {
            // Both `--cert FILE` and `--cert=FILE` are accepted.
            let (flag, inline) = match word.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
                _ => (word.as_str(), None),
            };
            match flag {
                "-h" | "--help" => return Ok(Parsed::Help),
                "--debug" => args.debug = switch(flag, inline)?,
                "--listen" => args.listen = Some(value(flag, "ADDR", inline, &mut words)?),
                "--cert" => args.cert = value(flag, "FILE", inline, &mut words)?.into(),
                "--key" => args.key = value(flag, "FILE", inline, &mut words)?.into(),
                "--client-ca" => args.client_ca = value(flag, "FILE", inline, &mut words)?.into(),
                "--crl" if crl_flags => args.crl = value(flag, "FILE", inline, &mut words)?.into(),
                "--crl-in-handshake" if crl_flags => args.crl_in_handshake = switch(flag, inline)?,
                _ if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
                _ => return Err(format!("unexpected argument `{word}`")),
            }
        }
        Ok(Parsed::Run(args))
    }

    /// Server options from the files on the command line, with `--debug` applied. The
    /// caller picks the client-certificate mode (and adds the CRL, when it checks one in
    /// the handshake).
    pub fn options(&self) -> Options {
        Options::new(&self.cert, &self.key)
            .client_ca_file(&self.client_ca)
            .debug(self.debug)
    }
}

#[derive(Debug)]
enum Parsed {
    Run(Args),
    Help,
}

/// The value of an option: the text after `=`, or else the next word.
fn value(
    flag: &str,
    what: &str,
    inline: Option<String>,
    words: &mut impl Iterator<Item = String>,
) -> Result<String, String> {
    let value = match inline {
        Some(value) => Some(value),
        None => words.next(),
    };
    match value {
        Some(value) if !value.is_empty() && !value.starts_with("--") => Ok(value),
        _ => Err(format!("{flag} needs a value ({flag} {what})")),
    }
}

/// A flag without a value, such as `--debug`.
fn switch(flag: &str, inline: Option<String>) -> Result<bool, String> {
    match inline {
        None => Ok(true),
        Some(_) => Err(format!("{flag} takes no value")),
    }
}

struct Usage<'a> {
    name: &'a str,
    about: &'a str,
    default_listen: Option<&'a str>,
    extra: Extra,
}

impl fmt::Display for Usage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listen_default = match self.default_listen {
            Some(addr) => format!("default {addr}"),
            None => "no default: see above".to_owned(),
        };
        let crl_usage = match self.extra {
            Extra::None => "",
            Extra::Crl => " [--crl FILE] [--crl-in-handshake]",
        };
        writeln!(f, "{}", self.about)?;
        writeln!(f)?;
        writeln!(
            f,
            "usage: cargo run --example {} -- [--listen ADDR] [--cert FILE] [--key FILE] \
             [--client-ca FILE]{crl_usage} [--debug]",
            self.name
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "  --listen ADDR       address to listen on ({listen_default})"
        )?;
        writeln!(
            f,
            "  --cert FILE         server certificate chain, PEM (default {})",
            cert_path("server-ec.pem").display()
        )?;
        writeln!(
            f,
            "  --key FILE          server private key, PEM (default {})",
            cert_path("server-ec.key").display()
        )?;
        writeln!(
            f,
            "  --client-ca FILE    CAs that client certificates must chain to, PEM \
             (default {}: root and intermediate)",
            cert_path(DEFAULT_CLIENT_CA).display()
        )?;
        if self.extra == Extra::Crl {
            writeln!(
                f,
                "  --crl FILE          CRL to check client certificates against, PEM \
                 (default {})",
                cert_path(DEFAULT_CRL).display()
            )?;
            writeln!(
                f,
                "  --crl-in-handshake  check the CRL in the TLS handshake instead of in the \
                 handler"
            )?;
        }
        writeln!(
            f,
            "  --debug             log every TLS handshake step of every connection"
        )?;
        writeln!(f, "  -h, --help          print this help")?;
        writeln!(f)?;
        writeln!(
            f,
            "Logging goes to stderr; RUST_LOG overrides the level (e.g. RUST_LOG=debug)."
        )
    }
}

/// Starts logging at info level, or with sslify's own lines at debug level when
/// `--debug` was given (handshake steps are logged at debug then). `RUST_LOG` overrides
/// both.
pub fn init_logging(args: &Args) {
    let default = if args.debug {
        "info,sslify=debug"
    } else {
        "info"
    };
    env_logger::Builder::from_env(Env::default().default_filter_or(default)).init();
}

/// The value of a start-up step, or: print the error (which names the file or address
/// at fault) and exit with status 1.
pub fn or_exit<T, E: fmt::Display>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => {
            eprintln!("error: {error}");
            process::exit(1);
        }
    }
}

/// Serves until Ctrl-C, then shuts `listener` down gracefully and stops the actor system.
///
/// After Ctrl-C no connection is accepted; open ones get [`SHUTDOWN_GRACE`] to end on
/// their own, then the rest are closed (their queued bytes and close_notify still go out).
/// A second Ctrl-C stops at once. Serves until killed if Ctrl-C cannot be watched.
pub async fn serve_until_ctrl_c<H: SslHandler>(listener: &ListenerHandle<H>) {
    if let Err(error) = actix_rt::signal::ctrl_c().await {
        error!("cannot watch for Ctrl-C ({error}); serving until killed");
        future::pending::<()>().await;
    }
    info!(
        "Ctrl-C: no new connections; open ones get {} s to finish (Ctrl-C again to stop now)",
        SHUTDOWN_GRACE.as_secs()
    );

    let shutdown = Box::pin(listener.shutdown(SHUTDOWN_GRACE));
    let again = Box::pin(actix_rt::signal::ctrl_c());
    match future::select(shutdown, again).await {
        Either::Left(((), _)) => info!("every connection has ended, stopping"),
        Either::Right((Ok(()), _)) => warn!("Ctrl-C again: stopping without waiting"),
        Either::Right((Err(error), shutdown)) => {
            error!("cannot watch for a second Ctrl-C ({error}); waiting for the shutdown");
            shutdown.await;
        }
    }
    System::current().stop();
}

/// The line the advanced handler answers with, for the connection `id`.
///
/// The three answers of the Perl module's advanced example (no certificate, a certificate
/// that did not verify, a certificate that did), and the two of its "complicated way"
/// when a verified certificate was also looked up in a CRL (`crl`): listed, or the CRL
/// could not be used.
pub fn verdict(id: ConnectionId, report: &ClientCertReport, crl: Option<&CrlVerdict>) -> String {
    let text = if !report.presented {
        "NoClientCertExists"
    } else if !report.valid {
        "ClientCertInvalid"
    } else {
        match crl {
            Some(CrlVerdict::Revoked(_)) => "CRL",
            Some(CrlVerdict::Unusable(_)) => "CRL unusable",
            Some(CrlVerdict::Good) | None => "Yeah! You're authenticated!",
        }
    };
    format!("[{id}] {text}\n")
}

/// The handler's CRL check: a CRL file, parsed once and reloaded whenever it changes on
/// disk.
#[derive(Clone)]
pub struct CrlCheck {
    crls: CrlSet,
}

impl CrlCheck {
    /// Loads the CRL file.
    ///
    /// # Errors
    ///
    /// A message naming the file at fault and the reason.
    pub fn open(crl: &Path) -> Result<CrlCheck, String> {
        let crls = CrlSet::open([crl]).map_err(|why| why.to_string())?;
        Ok(CrlCheck { crls })
    }

    /// Looks the client's own certificate up in the CRL. Only meaningful for a
    /// [`valid`](ClientCertReport::valid) report. The issuer's certificate comes from the
    /// chain OpenSSL verified, so a client that sent only its own certificate (as
    /// `openssl s_client -cert` does) is checked too.
    pub fn check(&self, id: ConnectionId, report: &ClientCertReport) -> CrlVerdict {
        let verdict = self.crls.check(report);
        debug!("[{id}] CRL check: {verdict}");
        verdict
    }
}

/// One line on a revocation: serial, date, reason and CRL file.
pub fn describe_revocation(revocation: &Revocation) -> String {
    format!(
        "serial {}, revoked {}, reason {}, listed in {}",
        sslify::hexdump(&revocation.serial),
        revocation
            .revoked_at
            .map_or_else(|| "at an unknown date".to_owned(), date),
        revocation
            .reason_code
            .map_or_else(|| "not given".to_owned(), reason_name),
        show_path(&revocation.crl_file)
    )
}

/// A moment as OpenSSL prints certificate dates, e.g. `Dec  4 16:36:00 2025 GMT`.
fn date(at: SystemTime) -> String {
    let seconds = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    };
    match Asn1Time::from_unix(seconds) {
        Ok(time) => time.to_string(),
        Err(_) => format!("{seconds} s after 1970"),
    }
}

/// The RFC 5280 name of a CRL reason code, with the code.
fn reason_name(code: i64) -> String {
    let name = match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        _ => "unknown",
    };
    format!("{name} ({code})")
}

/// One event as the advanced handler received it, for whoever watches the handler.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The connection it concerns.
    pub id: ConnectionId,
    /// The client's address, for the events that carry it (all but input).
    pub peer: Option<SocketAddr>,
    /// What happened.
    pub event: Event,
}

/// The events of one connection, as the handler saw them, and its own CRL check.
#[derive(Debug, Clone)]
pub enum Event {
    /// Handshake done, with the client-certificate report.
    SslDone(ClientCertReport),
    /// The handler looked the client's certificate up in the CRL.
    CrlChecked(CrlVerdict),
    /// Bytes arrived (their number).
    Input(usize),
    /// The certificate was refused in the handshake (not when the handler decides).
    CertRejected(CertProblem),
    /// The connection ended.
    Disconnect(DisconnectReason),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::SslDone(report) => write!(f, "SslDone       {report}"),
            Event::CrlChecked(CrlVerdict::Good) => write!(f, "CRL check     not revoked"),
            Event::CrlChecked(CrlVerdict::Revoked(revocation)) => {
                write!(
                    f,
                    "CRL check     revoked: {}",
                    describe_revocation(revocation)
                )
            }
            Event::CrlChecked(CrlVerdict::Unusable(why)) => {
                write!(f, "CRL check     unusable: {why}")
            }
            Event::Input(bytes) => write!(f, "ClientInput   {bytes} bytes"),
            Event::CertRejected(problem) => write!(f, "CertRejected  {problem}"),
            Event::Disconnect(reason) => write!(f, "Disconnect    {reason}"),
        }
    }
}

/// The advanced example's handler: it requests a client certificate, lets every handshake
/// finish, and decides itself. On `SslDone` it answers with [`verdict`] and disconnects
/// one second later. With [`with_crl`](AdvancedHandler::with_crl) it also looks every
/// verified certificate up in a CRL first (the `crl` example and the demo).
///
/// The Perl example did this in its `SSLDone` state with `$heap->{client}->put(...)` and
/// `$kernel->delay(...)`; here it is `handle.put` and `ctx.run_later`.
pub struct AdvancedHandler {
    close_after: Duration,
    /// The CRL check for verified certificates, when asked for.
    crl: Option<CrlCheck>,
    /// Where each event is also sent, when someone watches (the demo does).
    journal: Option<UnboundedSender<Seen>>,
    /// Pending delayed disconnects, so that a connection that ends early has its timer
    /// cancelled instead of firing at a closed connection.
    pending: HashMap<ConnectionId, SpawnHandle>,
}

impl AdvancedHandler {
    /// A handler that disconnects [`CLOSE_DELAY`] after its verdict.
    pub fn new() -> Self {
        AdvancedHandler {
            close_after: CLOSE_DELAY,
            crl: None,
            journal: None,
            pending: HashMap::new(),
        }
    }

    /// Also looks every verified client certificate up in a CRL, answering `CRL` when it
    /// is listed and `CRL unusable` when the CRL cannot decide.
    pub fn with_crl(mut self, crl: CrlCheck) -> Self {
        self.crl = Some(crl);
        self
    }

    /// Also sends every event received to `journal`, in order.
    pub fn with_journal(mut self, journal: UnboundedSender<Seen>) -> Self {
        self.journal = Some(journal);
        self
    }

    fn record(&self, id: ConnectionId, peer: Option<SocketAddr>, event: Event) {
        if let Some(journal) = &self.journal {
            // A closed journal means nobody watches any more; the server carries on.
            let _ = journal.unbounded_send(Seen { id, peer, event });
        }
    }

    /// The CRL's word on a verified certificate, logged; `None` when no CRL is checked
    /// or the certificate did not verify.
    fn crl_verdict(&self, id: ConnectionId, report: &ClientCertReport) -> Option<CrlVerdict> {
        let crl = self.crl.as_ref()?;
        if !report.valid {
            return None;
        }
        let verdict = crl.check(id, report);
        match &verdict {
            CrlVerdict::Good => info!("[{id}] CRL check: not revoked"),
            CrlVerdict::Revoked(revocation) => info!(
                "[{id}] CRL check: client certificate revoked: {}",
                describe_revocation(revocation)
            ),
            CrlVerdict::Unusable(why) => {
                warn!("[{id}] CRL check: CRL unusable, refusing the client: {why}")
            }
        }
        Some(verdict)
    }

    fn close_later(&mut self, handle: ConnectionHandle, ctx: &mut Context<Self>) {
        let id = handle.id();
        let timer = ctx.run_later(self.close_after, move |act, _| {
            act.pending.remove(&id);
            info!("[{id}] delay over, disconnecting");
            handle.close();
        });
        self.pending.insert(id, timer);
    }
}

impl Default for AdvancedHandler {
    fn default() -> Self {
        AdvancedHandler::new()
    }
}

impl Actor for AdvancedHandler {
    type Context = Context<Self>;
}

impl Handler<SslDone> for AdvancedHandler {
    type Result = ();

    fn handle(&mut self, done: SslDone, ctx: &mut Context<Self>) {
        let id = done.id;
        info!(
            "[{id}] TLS ready with {} ({}, {}): {}",
            done.peer, done.protocol, done.cipher, done.client_cert
        );
        self.record(
            id,
            Some(done.peer),
            Event::SslDone(done.client_cert.clone()),
        );

        let crl = self.crl_verdict(id, &done.client_cert);
        if let Some(crl) = &crl {
            self.record(id, Some(done.peer), Event::CrlChecked(crl.clone()));
        }

        let reply = verdict(id, &done.client_cert, crl.as_ref());
        info!(
            "[{id}] answering {:?}, disconnecting in {} s",
            reply.trim_end(),
            self.close_after.as_secs_f64()
        );
        done.handle.put(reply);
        self.close_later(done.handle, ctx);
    }
}

impl Handler<ClientInput> for AdvancedHandler {
    type Result = ();

    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        info!(
            "[{}] ignoring {} bytes of input, a disconnect is pending",
            input.id,
            input.data.len()
        );
        self.record(input.id, None, Event::Input(input.data.len()));
    }
}

impl Handler<CertRejected> for AdvancedHandler {
    type Result = ();

    fn handle(&mut self, rejected: CertRejected, _: &mut Context<Self>) {
        // Only sent when the handshake decides (the `crl` example's --crl-in-handshake).
        let presented = match rejected.report.leaf() {
            Some(leaf) => format!(" ({}, serial {})", leaf.subject, leaf.serial_hex()),
            None => String::new(),
        };
        info!(
            "[{}] client certificate rejected in the handshake: {}{presented}: {}",
            rejected.id, rejected.problem, rejected.report.verify_text
        );
        self.record(
            rejected.id,
            Some(rejected.peer),
            Event::CertRejected(rejected.problem),
        );
    }
}

impl Handler<Disconnect> for AdvancedHandler {
    type Result = ();

    fn handle(&mut self, gone: Disconnect, ctx: &mut Context<Self>) {
        if let Some(timer) = self.pending.remove(&gone.id) {
            ctx.cancel_future(timer);
        }
        info!("[{}] disconnected: {}", gone.id, gone.reason);
        self.record(gone.id, Some(gone.peer), Event::Disconnect(gone.reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_as(extra: Extra, words: &[&str]) -> Result<Parsed, String> {
        let words = words.iter().map(|w| w.to_string());
        Args::parse_from(words, Some(DEFAULT_LISTEN), extra)
    }

    fn parse(words: &[&str]) -> Result<Parsed, String> {
        parse_as(Extra::None, words)
    }

    fn run_as(extra: Extra, words: &[&str]) -> Args {
        match parse_as(extra, words) {
            Ok(Parsed::Run(args)) => args,
            Ok(Parsed::Help) => panic!("{words:?} asked for help"),
            Err(message) => panic!("{words:?} failed: {message}"),
        }
    }

    fn run(words: &[&str]) -> Args {
        run_as(Extra::None, words)
    }

    #[test]
    fn defaults_point_into_the_test_pki() {
        let args = run(&[]);
        assert_eq!(args.listen.as_deref(), Some("127.0.0.1:8443"));
        assert!(args.cert.ends_with("certs/server-ec.pem"));
        assert!(args.cert.is_absolute());
        assert!(args.client_ca.ends_with("certs/client-ca-bundle.pem"));
        assert!(args.crl.ends_with("certs/crl.pem"));
        assert!(!args.debug);
        assert!(!args.crl_in_handshake);
    }

    #[test]
    fn accepts_separate_and_inline_values() {
        let args = run(&[
            "--listen",
            "[::1]:9000",
            "--cert=a.pem",
            "--key",
            "a.key",
            "--debug",
        ]);
        assert_eq!(args.listen.as_deref(), Some("[::1]:9000"));
        assert_eq!(args.cert, PathBuf::from("a.pem"));
        assert_eq!(args.key, PathBuf::from("a.key"));
        assert!(args.debug);
    }

    #[test]
    fn rejects_unknown_flags_and_missing_values() {
        assert!(parse(&["--verbose"])
            .unwrap_err()
            .contains("unknown option `--verbose`"));
        assert!(parse(&["--cert"])
            .unwrap_err()
            .contains("--cert needs a value"));
        assert!(parse(&["--cert", "--debug"])
            .unwrap_err()
            .contains("--cert needs a value"));
        assert!(parse(&["--debug=yes"])
            .unwrap_err()
            .contains("--debug takes no value"));
        assert!(parse(&["stray"])
            .unwrap_err()
            .contains("unexpected argument"));
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help)));
    }

    #[test]
    fn crl_flags_only_where_accepted() {
        assert!(parse(&["--crl", "x.pem"])
            .unwrap_err()
            .contains("unknown option `--crl`"));
        assert!(parse(&["--crl-in-handshake"])
            .unwrap_err()
            .contains("unknown option `--crl-in-handshake`"));

        let args = run_as(Extra::Crl, &["--crl=x.pem", "--crl-in-handshake"]);
        assert_eq!(args.crl, PathBuf::from("x.pem"));
        assert!(args.crl_in_handshake);
        assert!(parse_as(Extra::Crl, &["--crl"])
            .unwrap_err()
            .contains("--crl needs a value"));
    }

    #[test]
    fn names_reason_codes() {
        assert_eq!(reason_name(1), "keyCompromise (1)");
        assert_eq!(reason_name(7), "unknown (7)");
    }

    #[test]
    fn formats_dates_like_openssl() {
        let at = UNIX_EPOCH + Duration::from_secs(1_577_836_800);
        assert_eq!(date(at), "Jan  1 00:00:00 2020 GMT");
    }
}
