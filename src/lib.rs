//! TLS servers as actix actors.
//!
//! sslify turns accepted sockets into TLS connections without ever blocking the server
//! thread, and tells the server exactly which client certificate each connection
//! presented. It is the Rust counterpart of the Perl module
//! POE::Component::SSLify::NonBlock: a [`Listener`] accepts and starts one connection actor
//! per socket; the connection runs the handshake one step per socket readiness and sends
//! the user's handler actor [`SslDone`], [`ClientInput`], [`CertRejected`] and
//! [`Disconnect`]; the handler answers through a [`ConnectionHandle`] with `put` and
//! `close`.
//!
//! # Client certificates, three ways
//!
//! No certificate is requested unless asked for. When one is:
//!
//! 1. **Reject in the handshake** ([`Options::require_client_cert`]): a missing or bad
//!    certificate fails the handshake; the handler gets [`CertRejected`] then
//!    [`Disconnect`], and never sees data from that client.
//! 2. **Decide in the handler** ([`Options::request_client_cert`]): the handshake completes
//!    and [`SslDone::client_cert`] says whether a certificate was presented, whether it is
//!    valid, OpenSSL's verify result and depth, and the chain.
//! 3. **Also check a CRL**, in the handshake ([`Options::crl_file`]) or in the handler
//!    ([`CrlSet::check`]), with the same rules in both places and reloads when the file
//!    changes.
//!
//! Each connection's report comes from its own verify callback; no connection can see
//! another's.
//!
//! # Beyond the handshake
//!
//! - [`Listener::bind_starttls`] starts connections in plaintext for protocols that upgrade
//!   with a STARTTLS-style command; see [`ConnectionHandle::start_tls`].
//! - [`Connector`] dials TLS servers with the same events and commands.
//! - [`ConnectionHandle::put`] reports when the write queue is full and
//!   [`ConnectionHandle::drained`] resolves when it has drained; reading pauses while the
//!   handler is behind, so memory stays bounded both ways.
//! - [`ListenerHandle::shutdown`] stops accepting and closes connections gracefully.
//!
//! # Examples
//!
//! A handler that greets each client by certificate and closes one second later:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use actix::prelude::*;
//! use sslify::{CertRejected, ClientInput, Disconnect, Listener, Options, SslDone};
//!
//! struct Greeter;
//!
//! impl Actor for Greeter {
//!     type Context = Context<Self>;
//! }
//!
//! impl Handler<SslDone> for Greeter {
//!     type Result = ();
//!     fn handle(&mut self, done: SslDone, ctx: &mut Context<Self>) {
//!         let reply = if done.client_cert.valid { "welcome" } else { "who are you?" };
//!         done.handle.put(format!("[{}] {reply}\n", done.id));
//!         let handle = done.handle.clone();
//!         ctx.run_later(Duration::from_secs(1), move |_, _| handle.close());
//!     }
//! }
//!
//! impl Handler<ClientInput> for Greeter {
//!     type Result = ();
//!     fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
//!         input.handle.put(input.data); // echo
//!     }
//! }
//!
//! impl Handler<CertRejected> for Greeter {
//!     type Result = ();
//!     fn handle(&mut self, rejected: CertRejected, _: &mut Context<Self>) {
//!         log::info!("[{}] rejected: {}", rejected.id, rejected.problem);
//!     }
//! }
//!
//! impl Handler<Disconnect> for Greeter {
//!     type Result = ();
//!     fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
//!         log::info!("[{}] gone: {}", gone.id, gone.reason);
//!     }
//! }
//!
//! #[actix::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = Options::new("certs/server-ec.pem", "certs/server-ec.key")
//!         .client_ca_file("certs/client-ca-bundle.pem")
//!         .request_client_cert()
//!         .build()?;
//!     let listener = Listener::bind("127.0.0.1:8443", config, Greeter.start())?;
//!     println!("listening on {}", listener.local_addr());
//!     actix_rt::signal::ctrl_c().await?;
//!     Ok(())
//! }
//! ```
//!
//! # Logging
//!
//! Everything goes through the `log` crate. Every line about a connection starts with its
//! id in brackets, e.g. `[7]`, so `RUST_LOG=sslify=debug` output can be followed per
//! client. Handshake steps are logged at trace level, or debug with
//! [`Options::debug`]. Private keys and session secrets are never logged.

#![warn(missing_docs)]

mod connection;
mod connector;
mod crl;
mod error;
mod events;
mod flow;
mod hexdump;
mod listener;
mod options;
mod peer;
mod transport;

pub use crate::connector::{Connector, ConnectorConfig, ConnectorOptions};
pub use crate::crl::{CrlScope, CrlSet, CrlUnusable, CrlVerdict, Revocation, UnusableCrlPolicy};
pub use crate::error::{ConfigError, ConnectError, FileRole, ListenerError};
pub use crate::events::{
    CertRejected, ClientInput, Connected, ConnectionHandle, ConnectionId, Disconnect,
    DisconnectReason, PutStatus, SslDone, SslHandler, StartTlsError,
};
pub use crate::flow::Drained;
pub use crate::hexdump::hexdump;
pub use crate::listener::{Listener, ListenerHandle, ListenerStats, StopListening};
pub use crate::options::{ClientCertMode, Options, TlsConfig};
pub use crate::peer::{CertEntry, CertProblem, ClientCertReport};
