//! Pieces shared by the examples: command-line parsing, logging set-up, start-up error
//! handling, the Ctrl-C wait, and the handler of the advanced example (which the
//! delayed-disconnect demo runs too).
//!
//! Each example compiles this module on its own and uses only part of it, hence the
//! `dead_code` allowance below.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process;
use std::time::Duration;

use actix::prelude::*;
use env_logger::Env;
use futures::channel::mpsc::UnboundedSender;
use log::{error, info};
use sslify::{
    CertProblem, CertRejected, ClientCertReport, ClientInput, ConnectionHandle, ConnectionId,
    Disconnect, DisconnectReason, Options, SslDone,
};

/// The address the servers listen on unless `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// How long the advanced handler waits between its verdict and the disconnect.
pub const CLOSE_DELAY: Duration = Duration::from_secs(1);

/// Path of a file in the crate's test PKI, whatever the current directory.
pub fn cert_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
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
    /// `--client-ca FILE`: the CA that client certificates must chain to.
    pub client_ca: PathBuf,
    /// `--debug`: log every handshake step (`Options::debug`).
    pub debug: bool,
}

impl Args {
    /// Parses the process's arguments; prints usage and exits on `--help` (status 0) or on
    /// a bad command line (status 2).
    ///
    /// `name` is the example's name, `about` one line on what it does, and
    /// `default_listen` the address used when `--listen` is absent (`None`: no default,
    /// the example decides what no address means).
    pub fn parse(name: &str, about: &str, default_listen: Option<&str>) -> Args {
        let usage = Usage {
            name,
            about,
            default_listen,
        };
        match Args::parse_from(std::env::args().skip(1), default_listen) {
            Ok(Parsed::Run(args)) => args,
            Ok(Parsed::Help) => {
                print!("{usage}");
                process::exit(0);
            }
            Err(message) => {
                eprintln!("{name}: {message}");
                eprintln!("try `cargo run --example {name} -- --help`");
                process::exit(2);
            }
        }
    }

    fn parse_from(
        mut words: impl Iterator<Item = String>,
        default_listen: Option<&str>,
    ) -> Result<Parsed, String> {
        let mut args = Args {
            listen: default_listen.map(str::to_owned),
            cert: cert_path("server-ec.pem"),
            key: cert_path("server-ec.key"),
            client_ca: cert_path("client-ca.pem"),
            debug: false,
        };

        while let Some(word) = words.next() {
            // Both `--cert FILE` and `--cert=FILE` are accepted.
            let (flag, inline) = match word.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
                _ => (word.as_str(), None),
            };
            match flag {
                "-h" | "--help" => return Ok(Parsed::Help),
                "--debug" if inline.is_none() => args.debug = true,
                "--debug" => return Err("--debug takes no value".to_owned()),
                "--listen" => args.listen = Some(value(flag, "ADDR", inline, &mut words)?),
                "--cert" => args.cert = value(flag, "FILE", inline, &mut words)?.into(),
                "--key" => args.key = value(flag, "FILE", inline, &mut words)?.into(),
                "--client-ca" => args.client_ca = value(flag, "FILE", inline, &mut words)?.into(),
                _ if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
                _ => return Err(format!("unexpected argument `{word}`")),
            }
        }
        Ok(Parsed::Run(args))
    }

    /// Server options from the files on the command line, with `--debug` applied. The
    /// caller picks the client-certificate mode.
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

struct Usage<'a> {
    name: &'a str,
    about: &'a str,
    default_listen: Option<&'a str>,
}

impl fmt::Display for Usage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listen_default = match self.default_listen {
            Some(addr) => format!("default {addr}"),
            None => "no default: see above".to_owned(),
        };
        writeln!(f, "{}", self.about)?;
        writeln!(f)?;
        writeln!(
            f,
            "usage: cargo run --example {} -- [--listen ADDR] [--cert FILE] [--key FILE] \
             [--client-ca FILE] [--debug]",
            self.name
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "  --listen ADDR     address to listen on ({listen_default})"
        )?;
        writeln!(
            f,
            "  --cert FILE       server certificate chain, PEM (default {})",
            cert_path("server-ec.pem").display()
        )?;
        writeln!(
            f,
            "  --key FILE        server private key, PEM (default {})",
            cert_path("server-ec.key").display()
        )?;
        writeln!(
            f,
            "  --client-ca FILE  CA that client certificates must chain to, PEM (default {})",
            cert_path("client-ca.pem").display()
        )?;
        writeln!(
            f,
            "  --debug           log every TLS handshake step of every connection"
        )?;
        writeln!(f, "  -h, --help        print this help")?;
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

/// Waits for Ctrl-C, then stops the actor system. Serves forever if Ctrl-C cannot be
/// watched.
pub async fn serve_until_ctrl_c() {
    match actix_rt::signal::ctrl_c().await {
        Ok(()) => info!("Ctrl-C: shutting down"),
        Err(error) => {
            error!("cannot watch for Ctrl-C ({error}); serving until killed");
            futures::future::pending::<()>().await;
        }
    }
    System::current().stop();
}

/// The line the advanced handler answers with, for the connection `id`.
///
/// The three answers of the Perl module's advanced example: no certificate, a
/// certificate that did not verify, a certificate that did.
pub fn verdict(id: ConnectionId, report: &ClientCertReport) -> String {
    let text = if !report.presented {
        "NoClientCertExists"
    } else if !report.valid {
        "ClientCertInvalid"
    } else {
        "Yeah! You're authenticated!"
    };
    format!("[{id}] {text}\n")
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

/// The events of one connection, as the handler saw them.
#[derive(Debug, Clone)]
pub enum Event {
    /// Handshake done, with the client-certificate report.
    SslDone(ClientCertReport),
    /// Bytes arrived (their number).
    Input(usize),
    /// The certificate was refused in the handshake (not in the advanced mode).
    CertRejected(CertProblem),
    /// The connection ended.
    Disconnect(DisconnectReason),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::SslDone(report) => write!(f, "SslDone       {report}"),
            Event::Input(bytes) => write!(f, "ClientInput   {bytes} bytes"),
            Event::CertRejected(problem) => write!(f, "CertRejected  {problem}"),
            Event::Disconnect(reason) => write!(f, "Disconnect    {reason}"),
        }
    }
}

/// The advanced example's handler: it requests a client certificate, lets every handshake
/// finish, and decides itself. On `SslDone` it answers with [`verdict`] and disconnects
/// one second later.
///
/// The Perl example did this in its `SSLDone` state with `$heap->{client}->put(...)` and
/// `$kernel->delay(...)`; here it is `handle.put` and `ctx.run_later`.
pub struct AdvancedHandler {
    close_after: Duration,
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
            journal: None,
            pending: HashMap::new(),
        }
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

        let reply = verdict(id, &done.client_cert);
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
        // Not sent when the handler decides, but harmless to handle.
        info!(
            "[{}] client certificate rejected: {}",
            rejected.id, rejected.problem
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

    fn parse(words: &[&str]) -> Result<Parsed, String> {
        Args::parse_from(words.iter().map(|w| w.to_string()), Some(DEFAULT_LISTEN))
    }

    fn run(words: &[&str]) -> Args {
        match parse(words) {
            Ok(Parsed::Run(args)) => args,
            Ok(Parsed::Help) => panic!("{words:?} asked for help"),
            Err(message) => panic!("{words:?} failed: {message}"),
        }
    }

    #[test]
    fn defaults_point_into_the_test_pki() {
        let args = run(&[]);
        assert_eq!(args.listen.as_deref(), Some("127.0.0.1:8443"));
        assert!(args.cert.ends_with("certs/server-ec.pem"));
        assert!(args.cert.is_absolute());
        assert!(!args.debug);
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
        assert!(parse(&["stray"])
            .unwrap_err()
            .contains("unexpected argument"));
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help)));
    }
}
