//! The "complicated way" of checking client certificates: the advanced example plus a
//! certificate revocation list (CRL).
//!
//! This mirrors the CRL example of POE::Component::SSLify::NonBlock: a certificate is
//! requested ([`Options::request_client_cert`](sslify::Options::request_client_cert)),
//! every handshake completes, and the handler reads the report in `SslDone`. A
//! certificate that verifies is then looked up in the CRL with
//! [`CrlSet::check`](sslify::CrlSet::check), and the handler answers with one line:
//!
//! - `[3] NoClientCertExists` when the client presented no certificate,
//! - `[3] ClientCertInvalid` when it presented one that does not verify,
//! - `[3] CRL` when the certificate verifies but the CRL lists it (the server's log gives
//!   the serial, the revocation date and the reason),
//! - `[3] CRL unusable` when the CRL cannot decide (expired, not issued by the client's
//!   CA, signature wrong, file broken; the log says which),
//! - `[3] Yeah! You're authenticated!` when the certificate verifies and is not listed,
//!
//! where `3` is the connection's id, and closes the connection one second later. The
//! handler is the one of the `advanced` example, in `examples/common/mod.rs`; the demo runs
//! it with the same CRL check.
//!
//! The CRL file is read once at start-up: a missing or unreadable file, or one that holds
//! no CRL or a broken one, is reported with its name and ends the process with status 1.
//! After that the file is watched: each check looks at its size, modification time and
//! inode, and a changed file is read again, so a new CRL (written in place or renamed
//! over the old one) decides from the next client on, without a restart. While the file
//! is broken every verified client gets `CRL unusable`, never a pass.
//!
//! With `--crl-in-handshake` the handler checks nothing: the CRL is given to the TLS
//! layer ([`Options::crl_file`](sslify::Options::crl_file)) and a certificate is
//! required ([`Options::require_client_cert`](sslify::Options::require_client_cert)), so
//! the handshake itself refuses a revoked client (TLS alert 44, certificate revoked), as
//! it refuses a missing, untrusted or expired certificate. The handler only learns of
//! those clients through `CertRejected`, which it logs, then `Disconnect`; valid clients
//! get `[3] Yeah! You're authenticated!` as before. The file is watched in this mode too.
//!
//! Run it:
//!
//! ```text
//! cargo run --example crl
//! cargo run --example crl -- --crl-in-handshake
//! cargo run --example crl -- --crl certs/crl-empty.pem
//! ```
//!
//! Then, from the crate's directory, a valid client and a revoked one:
//!
//! ```text
//! openssl s_client -connect 127.0.0.1:8443 -CAfile certs/ca.pem -cert certs/client-valid.pem -key certs/client-valid.key
//! openssl s_client -connect 127.0.0.1:8443 -CAfile certs/ca.pem -cert certs/client-revoked.pem -key certs/client-revoked.key
//! ```
//!
//! The first gets `Yeah! You're authenticated!`; the second `CRL`, or with
//! `--crl-in-handshake` the alert `tlsv1 alert certificate revoked` (alert number 44)
//! instead of a reply. `certs/crl.pem`, the default CRL, is the intermediate CA's and lists
//! `client-revoked.pem`; `certs/crl-expired.pem` shows `CRL unusable`.
//!
//! `s_client` sends only the client's own certificate; the default client CA file,
//! `certs/client-ca-bundle.pem`, holds the intermediate CA that issued it as well as the
//! root, so it still chains, and the handler takes the issuer it needs for the CRL from
//! there.
//!
//! Press Ctrl-C to stop the server: it stops accepting, gives open connections 5 s to
//! end, closes the rest and exits. A second Ctrl-C exits at once.
//!
//! Start-up errors (a missing or bad file, an address in use) are printed and end the
//! process with status 1. This example unwraps nothing.

mod common;

use actix::prelude::*;
use log::info;
use sslify::Listener;

use crate::common::{
    or_exit, serve_until_ctrl_c, show_path, AdvancedHandler, Args, CrlCheck, DEFAULT_LISTEN,
};

#[actix::main]
async fn main() {
    let args = Args::parse_with_crl(
        "crl",
        "TLS server that asks for a client certificate, looks it up in a CRL (in the handler, \
         or with --crl-in-handshake in the TLS handshake), tells the client the verdict and \
         disconnects one second later.",
        Some(DEFAULT_LISTEN),
    );
    common::init_logging(&args);

    let (config, handler) = if args.crl_in_handshake {
        let options = args.options().require_client_cert().crl_file(&args.crl);
        let config = or_exit(options.build());
        info!(
            "the TLS handshake checks client certificates against {}",
            show_path(&args.crl)
        );
        (config, AdvancedHandler::new())
    } else {
        let config = or_exit(args.options().request_client_cert().build());
        let crl = or_exit(CrlCheck::open(&args.crl));
        info!(
            "the handler checks client certificates against {}",
            show_path(&args.crl)
        );
        (config, AdvancedHandler::new().with_crl(crl))
    };

    let listen = args.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listener = or_exit(Listener::bind(listen, config, handler.start()));
    println!("listening on {}", listener.local_addr());

    serve_until_ctrl_c(&listener).await;
}
