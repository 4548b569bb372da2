//! The client side: dial a TLS server with [`Connector`], print what it says and every
//! event the connection produced, and exit 0 if it ended cleanly.
//!
//! It is made to talk to the `advanced` example. Start that in one terminal:
//!
//! ```text
//! cargo run --example advanced
//! ```
//!
//! and this in another, from the crate's directory:
//!
//! ```text
//! cargo run --example client -- --cert certs/client-valid.pem --key certs/client-valid.key
//! ```
//!
//! The server checks the certificate and answers with one line, which this client prints
//! (`[1] Yeah! You're authenticated!`, or `NoClientCertExists` without `--cert`), then
//! closes one second later. The client checks the server in turn: its certificate must
//! chain to `--ca` and carry `--server-name`; otherwise the handshake fails and the
//! client reports the refused certificate.
//!
//! ```text
//! --connect ADDR      server address, an IP address and port (default 127.0.0.1:8443)
//! --server-name NAME  name the server's certificate must carry (default localhost)
//! --ca FILE           CA certificates to trust for the server (default certs/ca.pem)
//! --cert FILE         client certificate chain to present (default: none)
//! --key FILE          its private key (needed with --cert)
//! --debug             log every handshake step
//! ```
//!
//! `--connect` takes an address, not a host name: nothing is looked up. The exit status is
//! 0 when the server closed the connection cleanly (TLS close_notify), 1 when connecting,
//! the handshake or the connection failed, and 2 for a bad command line. This example
//! unwraps nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process;
use std::time::Duration;

use actix::prelude::*;
use env_logger::Env;
use futures::channel::oneshot;
use sslify::{
    CertRejected, ClientInput, Connector, ConnectorOptions, Disconnect, DisconnectReason, SslDone,
};

/// The address dialed unless `--connect` says otherwise: the advanced example's.
const DEFAULT_CONNECT: &str = "127.0.0.1:8443";

/// How long the whole exchange may take before the client gives up.
const OVERALL_LIMIT: Duration = Duration::from_secs(30);

#[actix::main]
async fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return;
        }
        Err(message) => {
            eprintln!("client: {message}");
            eprintln!("try `cargo run --example client -- --help`");
            process::exit(2);
        }
    };
    let default_level = if args.debug {
        "info,sslify=debug"
    } else {
        "info"
    };
    env_logger::Builder::from_env(Env::default().default_filter_or(default_level)).init();

    let mut options = ConnectorOptions::new().ca_file(&args.ca).debug(args.debug);
    if let Some((cert, key)) = &args.identity {
        options = options.client_cert(cert, key);
    }
    let config = match options.build() {
        Ok(config) => config,
        Err(error) => exit_with(&format!("error: {error}")),
    };

    let (done_tx, done_rx) = oneshot::channel();
    let handler = Printer {
        events: Vec::new(),
        done: Some(done_tx),
    }
    .start();
    println!(
        "connecting to {} as {}{}",
        args.connect,
        args.server_name,
        match &args.identity {
            Some((cert, _)) => format!(" with client certificate {}", cert.display()),
            None => " without client certificate".to_owned(),
        }
    );
    if let Err(error) = Connector::connect(args.connect, &args.server_name, &config, handler).await
    {
        exit_with(&format!("error: {error}"));
    }

    let outcome = tokio::time::timeout(OVERALL_LIMIT, done_rx).await;
    match outcome {
        Ok(Ok(Outcome { events, reason })) => {
            println!("events: {}", events.join(", "));
            if reason == DisconnectReason::PeerClosed {
                println!("connection ended cleanly");
            } else {
                exit_with(&format!("connection did not end cleanly: {reason}"));
            }
        }
        Ok(Err(_)) => exit_with("the connection's handler stopped without a result"),
        Err(_) => exit_with(&format!(
            "no end of the connection after {} s, giving up",
            OVERALL_LIMIT.as_secs()
        )),
    }
}

fn exit_with(message: &str) -> ! {
    eprintln!("{message}");
    process::exit(1);
}

/// How the connection went: the events in order and why it ended.
struct Outcome {
    events: Vec<String>,
    reason: DisconnectReason,
}

/// Prints each event of the one connection and reports the end to `main`.
struct Printer {
    events: Vec<String>,
    done: Option<oneshot::Sender<Outcome>>,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<SslDone> for Printer {
    type Result = ();

    fn handle(&mut self, done: SslDone, _: &mut Context<Self>) {
        // On a client connection the report describes the server's certificate.
        let subject = done
            .client_cert
            .leaf()
            .map_or("none", |leaf| leaf.subject.as_str());
        println!(
            "[{}] handshake done: {} {}; server certificate {subject}: {}",
            done.id,
            done.protocol,
            done.cipher,
            if done.client_cert.valid {
                "verified"
            } else {
                "NOT verified"
            }
        );
        self.events.push("SslDone".to_owned());
    }
}

impl Handler<ClientInput> for Printer {
    type Result = ();

    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        let text = String::from_utf8_lossy(&input.data);
        for line in text.lines() {
            println!("[{}] received: {line}", input.id);
        }
        self.events
            .push(format!("ClientInput ({} bytes)", input.data.len()));
    }
}

impl Handler<CertRejected> for Printer {
    type Result = ();

    fn handle(&mut self, rejected: CertRejected, _: &mut Context<Self>) {
        println!(
            "[{}] server certificate refused: {} ({})",
            rejected.id, rejected.problem, rejected.report.verify_text
        );
        self.events
            .push(format!("CertRejected ({})", rejected.problem));
    }
}

impl Handler<Disconnect> for Printer {
    type Result = ();

    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        println!("[{}] disconnected: {}", gone.id, gone.reason);
        self.events.push(format!("Disconnect ({})", gone.reason));
        if let Some(done) = self.done.take() {
            let _ = done.send(Outcome {
                events: std::mem::take(&mut self.events),
                reason: gone.reason,
            });
        }
    }
}

const USAGE: &str = "\
TLS client for the advanced example: prints the server's answer and the connection's events.

usage: cargo run --example client -- [--connect ADDR] [--server-name NAME] [--ca FILE] \
[--cert FILE --key FILE] [--debug]

  --connect ADDR      server address, IP and port (default 127.0.0.1:8443)
  --server-name NAME  name the server certificate must carry (default localhost)
  --ca FILE           CA certificates to trust for the server (default certs/ca.pem)
  --cert FILE         client certificate chain to present (default: none)
  --key FILE          the client certificate's private key
  --debug             log every TLS handshake step
  -h, --help          print this help

Logging goes to stderr; RUST_LOG overrides the level (e.g. RUST_LOG=debug).
";

/// The client's command line.
#[derive(Debug)]
struct Args {
    connect: SocketAddr,
    server_name: String,
    ca: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
    debug: bool,
}

impl Args {
    /// The arguments, `None` for `--help`, or what is wrong with them.
    fn parse(mut words: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
        let mut connect = DEFAULT_CONNECT.to_owned();
        let mut server_name = "localhost".to_owned();
        let mut ca = cert_path("ca.pem");
        let mut cert = None;
        let mut key = None;
        let mut debug = false;

        while let Some(word) = words.next() {
            let (flag, inline) = match word.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
                _ => (word.as_str(), None),
            };
            let mut value = || match inline.clone().or_else(|| words.next()) {
                Some(value) if !value.is_empty() && !value.starts_with("--") => Ok(value),
                _ => Err(format!("{flag} needs a value")),
            };
            match flag {
                "-h" | "--help" => return Ok(None),
                "--debug" if inline.is_none() => debug = true,
                "--connect" => connect = value()?,
                "--server-name" => server_name = value()?,
                "--ca" => ca = value()?.into(),
                "--cert" => cert = Some(PathBuf::from(value()?)),
                "--key" => key = Some(PathBuf::from(value()?)),
                _ if flag.starts_with('-') => return Err(format!("unknown option `{word}`")),
                _ => return Err(format!("unexpected argument `{word}`")),
            }
        }

        // Parsed, never resolved: only an IP address and port are accepted.
        let connect = connect.parse().map_err(|_| {
            format!("--connect needs an IP address and port, e.g. 127.0.0.1:8443, not `{connect}`")
        })?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("--cert and --key go together".to_owned()),
        };
        Ok(Some(Args {
            connect,
            server_name,
            ca,
            identity,
            debug,
        }))
    }
}

/// Path of a file in the crate's test PKI, whatever the current directory.
fn cert_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}
