//! An FTP control channel that starts in plaintext and switches to TLS on `AUTH TLS`,
//! then tells the client what its certificate is worth.
//!
//! This mirrors the FTP example of POE::Component::SSLify::NonBlock. The listener is
//! [`Listener::bind_starttls`]: each connection starts in plaintext and its first event is
//! [`Connected`](sslify::Connected), on which the server puts its banner:
//!
//! ```text
//! 220 sslify FTP example ready; send AUTH TLS
//! ```
//!
//! `AUTH TLS` (or `AUTH SSL`, in any case, as the whole command line) is answered with
//! `234 ...` and the connection switches to TLS. Anything else the client sent after that
//! command in the same packet is dropped and logged, never run: a client (or someone on
//! the path) cannot slip commands in front of the handshake. Other commands before TLS
//! get `530 Send AUTH TLS first`; so `USER tlsfan` does not start TLS.
//!
//! A client certificate is asked for but not required (the advanced example's mode).
//! Once the handshake is done the server answers with the advanced example's verdict:
//!
//! - `230 [3] Yeah! You're authenticated!` when the certificate verifies; the client is
//!   then logged in (`USER`, `PASS`, `PWD`, `PBSZ`, `PROT P` get simple replies),
//! - `530 [3] NoClientCertExists` when it presented none,
//! - `530 [3] ClientCertInvalid` when it presented one that does not verify,
//!
//! where `3` is the connection's id; without a valid certificate commands get `530`.
//! `QUIT` answers `221` and closes; commands the example does not know get `502`.
//!
//! Run it:
//!
//! ```text
//! cargo run --example starttls_ftp
//! ```
//!
//! Then, from the crate's directory:
//!
//! ```text
//! openssl s_client -starttls ftp -connect 127.0.0.1:2121 -CAfile certs/ca.pem -cert certs/client-valid.pem -key certs/client-valid.key
//! ```
//!
//! `s_client` sends `AUTH TLS` itself and shows the verdict line; type `PWD` or `QUIT`.
//! Leave out `-cert` and `-key`, or use `client-expired`, for the other verdicts.
//!
//! Options: `--listen ADDR` (default 127.0.0.1:2121), `--cert FILE`, `--key FILE`,
//! `--client-ca FILE` (defaults in `certs/`: `server-ec.pem`, `server-ec.key`,
//! `client-ca-bundle.pem`) and `--debug` to log every handshake step. Ctrl-C stops the
//! server gracefully. Start-up errors are printed and end the process with status 1;
//! this example unwraps nothing.

mod common;
mod proto;

use actix::prelude::*;
use sslify::Listener;

use crate::common::{or_exit, serve_until_ctrl_c, Args};
use crate::proto::{Ftp, LineServer};

/// Where the server listens unless `--listen` says otherwise.
const DEFAULT_FTP_LISTEN: &str = "127.0.0.1:2121";

#[actix::main]
async fn main() {
    let args = Args::parse(
        "starttls_ftp",
        "FTP control channel that switches to TLS on AUTH TLS and answers with the client \
         certificate's verdict.",
        Some(DEFAULT_FTP_LISTEN),
    );
    common::init_logging(&args);

    let config = or_exit(args.options().request_client_cert().build());
    let listen = args.listen.as_deref().unwrap_or(DEFAULT_FTP_LISTEN);
    let handler = LineServer::new(Ftp).start();
    let listener = or_exit(Listener::bind_starttls(listen, config, handler));
    println!("listening on {}", listener.local_addr());

    serve_until_ctrl_c(&listener).await;
}
