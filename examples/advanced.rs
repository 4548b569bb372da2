//! Letting the handler decide about client certificates, then a delayed disconnect.
//!
//! This mirrors the "advanced" example of POE::Component::SSLify::NonBlock
//! (`clientcertrequest` with `noblockbadclientcert`, here
//! [`Options::request_client_cert`](sslify::Options::request_client_cert)): a certificate
//! is asked for, but every handshake completes, and the handler reads the report in
//! `SslDone` and answers with one line:
//!
//! - `[3] NoClientCertExists` when the client presented none,
//! - `[3] ClientCertInvalid` when it presented one that does not verify (unknown CA,
//!   expired, ...),
//! - `[3] Yeah! You're authenticated!` when it verifies,
//!
//! where `3` is the connection's id. One second later the handler closes the connection
//! (`ctx.run_later` then `handle.close()`), the Perl example's `$kernel->delay`. The
//! handler lives in `examples/common/mod.rs`, because the `demo` example runs it too.
//!
//! Run it:
//!
//! ```text
//! cargo run --example advanced
//! ```
//!
//! Then, from the crate's directory:
//!
//! ```text
//! openssl s_client -connect 127.0.0.1:8443 -CAfile certs/ca.pem -cert certs/client-valid.pem -key certs/client-valid.key
//! ```
//!
//! Swap `client-valid` for `client-untrusted` or `client-expired`, or leave out `-cert` and
//! `-key`, for the other answers; `s_client` shows the reply and the server's close one
//! second later.
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
use sslify::Listener;

use crate::common::{or_exit, serve_until_ctrl_c, AdvancedHandler, Args, DEFAULT_LISTEN};

#[actix::main]
async fn main() {
    let args = Args::parse(
        "advanced",
        "TLS server that asks for a client certificate, tells the client what it made of \
         it, and disconnects one second later.",
        Some(DEFAULT_LISTEN),
    );
    common::init_logging(&args);

    let config = or_exit(args.options().request_client_cert().build());
    let listen = args.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listener = or_exit(Listener::bind(
        listen,
        config,
        AdvancedHandler::new().start(),
    ));
    println!("listening on {}", listener.local_addr());

    serve_until_ctrl_c(&listener).await;
}
