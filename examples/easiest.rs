//! The easiest way to check client certificates: require one and let the handshake reject
//! any client without a valid one.
//!
//! This mirrors the "easiest" example of POE::Component::SSLify::NonBlock
//! (`clientcertrequest` alone, here
//! [`Options::require_client_cert`](sslify::Options::require_client_cert)): OpenSSL refuses a
//! missing, untrusted or expired certificate during the handshake, so such clients never
//! reach the application. The handler only learns of them through `CertRejected`, which
//! it logs with the reason, followed by `Disconnect`. A client with a valid certificate
//! is greeted by name.
//!
//! Run it:
//!
//! ```text
//! cargo run --example easiest
//! ```
//!
//! Then, from the crate's directory:
//!
//! ```text
//! openssl s_client -connect 127.0.0.1:8443 -CAfile certs/ca.pem -cert certs/client-valid.pem -key certs/client-valid.key
//! ```
//!
//! Swap `client-valid` for `client-untrusted` or `client-expired`, or leave out `-cert` and
//! `-key`, to see a rejection in the server's log (and a TLS alert in `s_client`).
//!
//! `s_client` sends only the first certificate of its `-cert` file, the client's own. It
//! still chains because the default client CA file, `certs/client-ca-bundle.pem`, holds
//! the intermediate CA that issued it as well as the root. With `--client-ca
//! certs/client-ca.pem` (the root alone) the client has to send the intermediate too: add
//! `-cert_chain certs/intermediate.pem`.
//!
//! Press Ctrl-C to stop the server: it stops accepting, gives open connections 5 s to
//! end, closes the rest and exits. A second Ctrl-C exits at once.
//!
//! Start-up errors (a missing or bad file, an address in use) are printed and end the
//! process with status 1. This example unwraps nothing.

mod common;

use actix::prelude::*;
use log::info;
use sslify::{CertRejected, ClientInput, Disconnect, Listener, SslDone};

use crate::common::{or_exit, serve_until_ctrl_c, Args, DEFAULT_LISTEN};

/// Greets every client that got through the handshake, which here means every client
/// with a valid certificate.
struct Greeter;

impl Actor for Greeter {
    type Context = Context<Self>;
}

impl Handler<SslDone> for Greeter {
    type Result = ();

    fn handle(&mut self, done: SslDone, _: &mut Context<Self>) {
        // The handshake only completes with a valid certificate, so there is a leaf.
        let subject = done
            .client_cert
            .leaf()
            .map_or("(no certificate)", |leaf| leaf.subject.as_str());
        info!(
            "[{}] TLS ready with {}: {}",
            done.id, done.peer, done.client_cert
        );
        done.handle.put(format!(
            "[{}] Hello {subject}, your certificate is valid.\n",
            done.id
        ));
    }
}

impl Handler<ClientInput> for Greeter {
    type Result = ();

    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        info!("[{}] received {} bytes", input.id, input.data.len());
    }
}

impl Handler<CertRejected> for Greeter {
    type Result = ();

    fn handle(&mut self, rejected: CertRejected, _: &mut Context<Self>) {
        let report = &rejected.report;
        let depth = match report.failed_depth {
            Some(depth) => format!(" at depth {depth}"),
            None => String::new(),
        };
        let presented = match report.leaf() {
            Some(leaf) => format!(
                "; presented {} (serial {})",
                leaf.subject,
                leaf.serial_hex()
            ),
            None => String::new(),
        };
        info!(
            "[{}] rejected {} in the handshake, client certificate {}: {}{depth}{presented}",
            rejected.id, rejected.peer, rejected.problem, report.verify_text
        );
    }
}

impl Handler<Disconnect> for Greeter {
    type Result = ();

    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        info!(
            "[{}] disconnected from {}: {}",
            gone.id, gone.peer, gone.reason
        );
    }
}

#[actix::main]
async fn main() {
    let args = Args::parse(
        "easiest",
        "TLS server that requires a valid client certificate and greets its owner.",
        Some(DEFAULT_LISTEN),
    );
    common::init_logging(&args);

    let config = or_exit(args.options().require_client_cert().build());
    let listen = args.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listener = or_exit(Listener::bind(listen, config, Greeter.start()));
    println!("listening on {}", listener.local_addr());

    serve_until_ctrl_c(&listener).await;
}
