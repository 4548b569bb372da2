//! The server under test: an sslify `Listener` and a handler that replies one line per
//! connection and closes it, or echoes with `--echo`. A client certificate is required.

use std::net::SocketAddr;

use actix::prelude::*;
use sslify::{CertRejected, ClientInput, Disconnect, Listener, Options, SslDone};
use sslify_bench::{cert_file, die, exit_with_parent, Args, REPLY};

const PROGRAM: &str = "sslify-server";
const USAGE: &str = "\
usage: sslify-server [options]

An sslify server requiring a client certificate. Replies one line per connection and
closes, or echoes with --echo.

  --listen ADDR      address to listen on (127.0.0.1:8443)
  --cert FILE        certificate chain, PEM (certs/server-ec.pem)
  --key FILE         private key, PEM (certs/server-ec.key)
  --client-ca FILE   CA certificates client certificates must chain to (certs/client-ca.pem)
  --tickets N        TLS 1.3 session tickets per handshake (sslify's default when absent)
  --echo             echo what the client sends instead of replying and closing
  --max-handshakes N handshakes in progress at once before accepting pauses
                     (sslify's default when absent)
";

struct Bench {
    echo: bool,
}

impl Actor for Bench {
    type Context = Context<Self>;
}

impl Handler<SslDone> for Bench {
    type Result = ();

    fn handle(&mut self, done: SslDone, _: &mut Context<Self>) {
        if !self.echo {
            done.handle.put(format!("[{}] {REPLY}\n", done.id));
            done.handle.close();
        }
    }
}

impl Handler<ClientInput> for Bench {
    type Result = ();

    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        if self.echo {
            input.handle.put(input.data);
        }
    }
}

impl Handler<CertRejected> for Bench {
    type Result = ();

    fn handle(&mut self, _: CertRejected, _: &mut Context<Self>) {}
}

impl Handler<Disconnect> for Bench {
    type Result = ();

    fn handle(&mut self, _: Disconnect, _: &mut Context<Self>) {}
}

fn main() {
    exit_with_parent();
    let mut args = Args::from_env(PROGRAM, USAGE);
    let listen = args.value_or("--listen", SocketAddr::from(([127, 0, 0, 1], 8443)));
    let cert: String = args.value_or("--cert", cert_file("server-ec.pem"));
    let key: String = args.value_or("--key", cert_file("server-ec.key"));
    let client_ca: String = args.value_or("--client-ca", cert_file("client-ca.pem"));
    let tickets: Option<usize> = args.value("--tickets");
    let echo = args.flag("--echo");
    let max_handshakes: Option<usize> = args.value("--max-handshakes");
    args.finish();

    // One worker: the server is pinned to one core, like the bare server's one thread.
    let mut options = Options::new(&cert, &key)
        .client_ca_file(&client_ca)
        .require_client_cert()
        .workers(1);
    if let Some(count) = tickets {
        options = options.session_tickets(count);
    }
    if let Some(count) = max_handshakes {
        options = options.max_handshakes(count);
    }
    let config = options.build().unwrap_or_else(|e| die(PROGRAM, e));
    let config_max_handshakes = config.max_handshakes();

    let system = actix_rt::System::new();
    system.block_on(async move {
        let handler = Bench { echo }.start();
        let listener = Listener::bind(listen, config, handler).unwrap_or_else(|e| die(PROGRAM, e));
        println!(
            "{PROGRAM} listening on {} ({}; {}; tickets {}; at most {} handshakes at once)",
            listener.local_addr(),
            openssl::version::version(),
            if echo { "echo" } else { "reply" },
            tickets.map_or("default".to_owned(), |n| n.to_string()),
            config_max_handshakes,
        );
        std::future::pending::<()>().await;
    });
}
