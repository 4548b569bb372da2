//! A minimal SMTP front that starts in plaintext and switches to TLS on `STARTTLS`.
//!
//! The listener is [`Listener::bind_starttls`]: each connection starts in plaintext and
//! its first event is [`Connected`](sslify::Connected), on which the server puts its
//! greeting. The dialogue (RFC 5321 with RFC 3207's STARTTLS):
//!
//! ```text
//! S: 220 localhost ESMTP sslify example
//! C: EHLO client.example
//! S: 250-localhost greets client.example
//! S: 250-8BITMIME
//! S: 250-STARTTLS
//! S: 250 HELP
//! C: STARTTLS
//! S: 220 Ready to start TLS
//!    (TLS handshake)
//! C: EHLO client.example
//! S: 250-localhost greets client.example      (no STARTTLS any more)
//! S: 250-8BITMIME
//! S: 250 HELP
//! C: QUIT
//! S: 221 2.0.0 Bye
//! ```
//!
//! Whatever the client sent after `STARTTLS` in the same packet is dropped and logged,
//! never run. `STARTTLS` over TLS gets `503` (sslify refuses the second switch with
//! `StartTlsError::AlreadyTls`, which the server logs); `MAIL`, `RCPT` and `DATA` before
//! TLS get `530`; commands the example does not implement get `502`. No mail is taken.
//!
//! A client certificate is asked for but not required; the server logs what it made of
//! it.
//!
//! Run it:
//!
//! ```text
//! cargo run --example starttls_smtp
//! ```
//!
//! Then, from the crate's directory:
//!
//! ```text
//! openssl s_client -starttls smtp -connect 127.0.0.1:2525 -CAfile certs/ca.pem -crlf
//! ```
//!
//! `s_client` sends `EHLO` and `STARTTLS` itself; type `EHLO me` and `QUIT` once it shows
//! the handshake.
//!
//! Options: `--listen ADDR` (default 127.0.0.1:2525), `--cert FILE`, `--key FILE`,
//! `--client-ca FILE` (defaults in `certs/`) and `--debug`. Ctrl-C stops the server
//! gracefully. Start-up errors are printed and end the process with status 1; this
//! example unwraps nothing.

mod common;
mod proto;

use actix::prelude::*;
use sslify::Listener;

use crate::common::{or_exit, serve_until_ctrl_c, Args};
use crate::proto::{LineServer, Smtp};

/// Where the server listens unless `--listen` says otherwise.
const DEFAULT_SMTP_LISTEN: &str = "127.0.0.1:2525";

#[actix::main]
async fn main() {
    let args = Args::parse(
        "starttls_smtp",
        "Minimal SMTP front that switches to TLS on STARTTLS.",
        Some(DEFAULT_SMTP_LISTEN),
    );
    common::init_logging(&args);

    let config = or_exit(args.options().request_client_cert().build());
    let listen = args.listen.as_deref().unwrap_or(DEFAULT_SMTP_LISTEN);
    let handler = LineServer::new(Smtp::default()).start();
    let listener = or_exit(Listener::bind_starttls(listen, config, handler));
    println!("listening on {}", listener.local_addr());

    serve_until_ctrl_c(&listener).await;
}
