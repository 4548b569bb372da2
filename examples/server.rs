//! Server-side usage: a TLS echo server, no client certificate asked for.
//!
//! This mirrors the "server-side usage" example of POE::Component::SSLify::NonBlock: every
//! accepted socket is turned into TLS without blocking the server, the client is greeted
//! once the handshake is done, each line it sends comes back, and every event is logged
//! with the connection's id (`[3] ...`).
//!
//! Run it (from anywhere inside the crate; the default files are found through the
//! crate's directory):
//!
//! ```text
//! cargo run --example server
//! cargo run --example server -- --listen 127.0.0.1:9443 --debug
//! ```
//!
//! Then, from the crate's directory, type lines into:
//!
//! ```text
//! openssl s_client -connect 127.0.0.1:8443 -CAfile certs/ca.pem -cert certs/client-valid.pem -key certs/client-valid.key
//! ```
//!
//! (The server asks for no certificate, so `-cert` and `-key` change nothing here; the
//! line is the same for every example.)
//!
//! Press Ctrl-C to stop the server: it stops accepting and gives open connections 5 s to
//! end on their own; then it sends each remaining client what was queued for it and
//! close_notify, and exits. A second Ctrl-C exits at once.
//!
//! Start-up errors (a missing or bad file, an address in use) are printed and end the
//! process with status 1. This example unwraps nothing.

mod common;

use std::collections::HashMap;

use actix::prelude::*;
use bytes::{Buf, BytesMut};
use log::{debug, info, warn};
use sslify::{CertRejected, ClientInput, ConnectionId, Disconnect, Listener, SslDone};

use crate::common::{or_exit, serve_until_ctrl_c, Args, DEFAULT_LISTEN};

/// The longest line the server waits for; a client sending more without a newline is
/// told so and disconnected, so no client can make the server buffer without bound.
const MAX_LINE: usize = 8 * 1024;

/// The server's handler. Its field is what the POE session kept in its heap: the part of
/// a line each client has sent so far.
#[derive(Default)]
struct EchoServer {
    partial: HashMap<ConnectionId, BytesMut>,
}

impl Actor for EchoServer {
    type Context = Context<Self>;
}

impl Handler<SslDone> for EchoServer {
    type Result = ();

    fn handle(&mut self, done: SslDone, _: &mut Context<Self>) {
        info!(
            "[{}] TLS ready with {}: {} {}{}",
            done.id,
            done.peer,
            done.protocol,
            done.cipher,
            if done.resumed { " (resumed)" } else { "" }
        );
        self.partial.insert(done.id, BytesMut::new());
        done.handle.put(format!(
            "[{}] Hello {}, you are on {} with {}; every line you send comes back.\n",
            done.id, done.peer, done.protocol, done.cipher
        ));
    }
}

impl Handler<ClientInput> for EchoServer {
    type Result = ();

    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        debug!("[{}] received {} bytes", input.id, input.data.len());
        let buffer = self.partial.entry(input.id).or_default();
        buffer.extend_from_slice(&input.data);

        let mut lines = 0;
        while let Some(end) = buffer.iter().position(|&byte| byte == b'\n') {
            let line = buffer.split_to(end + 1).freeze();
            input.handle.put(line);
            lines += 1;
        }
        if lines > 0 {
            info!("[{}] echoed {lines} line(s)", input.id);
        }

        if buffer.len() > MAX_LINE {
            warn!(
                "[{}] line longer than {MAX_LINE} bytes, disconnecting",
                input.id
            );
            buffer.advance(buffer.len());
            input
                .handle
                .put(format!("[{}] line too long, goodbye\n", input.id));
            input.handle.close();
        }
    }
}

impl Handler<CertRejected> for EchoServer {
    type Result = ();

    fn handle(&mut self, rejected: CertRejected, _: &mut Context<Self>) {
        // No certificate is requested, so this does not happen here.
        info!(
            "[{}] client certificate rejected: {}",
            rejected.id, rejected.problem
        );
    }
}

impl Handler<Disconnect> for EchoServer {
    type Result = ();

    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        if let Some(rest) = self.partial.remove(&gone.id) {
            if !rest.is_empty() {
                debug!(
                    "[{}] dropped {} bytes without a newline",
                    gone.id,
                    rest.len()
                );
            }
        }
        info!(
            "[{}] disconnected from {}: {}",
            gone.id, gone.peer, gone.reason
        );
    }
}

#[actix::main]
async fn main() {
    let args = Args::parse(
        "server",
        "TLS echo server: greets each client, echoes its lines, asks for no certificate.",
        Some(DEFAULT_LISTEN),
    );
    common::init_logging(&args);

    let config = or_exit(args.options().build());
    let listen = args.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listener = or_exit(Listener::bind(
        listen,
        config,
        EchoServer::default().start(),
    ));
    println!("listening on {}", listener.local_addr());

    serve_until_ctrl_c(&listener).await;
}
