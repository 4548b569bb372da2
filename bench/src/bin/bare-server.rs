//! The baseline: the same TLS server as `sslify-server`, written directly on tokio and
//! tokio-openssl, one task per connection on a current-thread runtime, no actors.
//!
//! The OpenSSL context is set up exactly as sslify's `Options::build` does it with default
//! options (protocol floor, options, modes, session id context, ticket count, certificate
//! chain, client CA store and list, verify depth; keep `build_context` in step with
//! sslify's `src/options.rs`), with the client certificate required. What sslify adds on
//! top (its verify callback and certificate report, actors and messages) is what the
//! comparison measures.
//!
//! `--plain --echo` runs a plaintext TCP echo instead, which the runner puts behind nginx.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use openssl::pkey::PKey;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVerifyMode, SslVersion,
};
use openssl::x509::X509;
use sslify_bench::{cert_file, die, exit_with_parent, Args, REPLY};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_openssl::SslStream;

const PROGRAM: &str = "bare-server";
const USAGE: &str = "\
usage: bare-server [options]

A tokio + tokio-openssl TLS server configured like sslify, requiring a client certificate.
Replies one line per connection and closes, or echoes with --echo.

  --listen ADDR      address to listen on (127.0.0.1:8443)
  --cert FILE        certificate chain, PEM (certs/server-ec.pem)
  --key FILE         private key, PEM (certs/server-ec.key)
  --client-ca FILE   CA certificates client certificates must chain to (certs/client-ca.pem)
  --tickets N        TLS 1.3 session tickets per handshake (OpenSSL's default when absent)
  --echo             echo what the client sends instead of replying and closing
  --plain            no TLS: a plaintext TCP echo (implies --echo)
";

/// Same as sslify's defaults.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const LINGER: Duration = Duration::from_secs(2);
const VERIFY_DEPTH: u32 = 5;
/// Bytes read per read call, as sslify.
const READ_CHUNK: usize = 16 * 1024;

struct Settings {
    listen: SocketAddr,
    cert: String,
    key: String,
    client_ca: String,
    tickets: Option<usize>,
    echo: bool,
    plain: bool,
}

fn main() {
    exit_with_parent();
    let mut args = Args::from_env(PROGRAM, USAGE);
    let plain = args.flag("--plain");
    let settings = Settings {
        listen: args.value_or("--listen", SocketAddr::from(([127, 0, 0, 1], 8443))),
        cert: args.value_or("--cert", cert_file("server-ec.pem")),
        key: args.value_or("--key", cert_file("server-ec.key")),
        client_ca: args.value_or("--client-ca", cert_file("client-ca.pem")),
        tickets: args.value("--tickets"),
        echo: args.flag("--echo") || plain,
        plain,
    };
    args.finish();

    let context = if settings.plain {
        None
    } else {
        Some(build_context(&settings).unwrap_or_else(|e| die(PROGRAM, e)))
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(PROGRAM, format_args!("runtime: {e}")));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(settings, context.map(Rc::new)));
}

async fn serve(settings: Settings, context: Option<Rc<SslContext>>) {
    let listener = TcpListener::bind(settings.listen)
        .await
        .unwrap_or_else(|e| die(PROGRAM, format_args!("bind {}: {e}", settings.listen)));
    let addr = listener.local_addr().unwrap_or(settings.listen);
    println!(
        "{PROGRAM} listening on {addr} ({}; {}; tickets {})",
        if settings.plain {
            "plaintext".to_owned()
        } else {
            openssl::version::version().to_owned()
        },
        if settings.echo { "echo" } else { "reply" },
        settings
            .tickets
            .map_or("default".to_owned(), |n| n.to_string()),
    );

    let mut next_id: u64 = 0;
    loop {
        let (tcp, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("{PROGRAM}: accept: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        next_id += 1;
        let _ = tcp.set_nodelay(true);
        match &context {
            None => {
                tokio::task::spawn_local(async move {
                    let mut tcp = tcp;
                    let _ = echo(&mut tcp).await;
                });
            }
            Some(context) => {
                let context = Rc::clone(context);
                let echo_mode = settings.echo;
                tokio::task::spawn_local(async move {
                    let _ = connection(next_id, &context, tcp, echo_mode).await;
                });
            }
        }
    }
}

async fn connection(
    id: u64,
    context: &SslContext,
    tcp: TcpStream,
    echo_mode: bool,
) -> io::Result<()> {
    let ssl = Ssl::new(context).map_err(io::Error::other)?;
    let mut stream = SslStream::new(ssl, tcp).map_err(io::Error::other)?;
    match timeout(HANDSHAKE_TIMEOUT, Pin::new(&mut stream).accept()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(io::Error::other(error)),
        Err(_) => return Err(io::ErrorKind::TimedOut.into()),
    }
    if echo_mode {
        return echo(&mut stream).await;
    }
    stream
        .write_all(format!("[{id}] {REPLY}\n").as_bytes())
        .await?;
    // close_notify, then wait (bounded) for the client to close, as sslify does.
    stream.shutdown().await?;
    let _ = timeout(LINGER, drain(stream.get_mut())).await;
    Ok(())
}

/// Reads into a buffer that exists only while a read is being tried, so that an idle
/// connection holds no read buffer (sslify's connections hold none either).
async fn read_some<S: AsyncRead + Unpin>(stream: &mut S, into: &mut Vec<u8>) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut buf = [0u8; READ_CHUNK];
        let mut read_buf = ReadBuf::new(&mut buf);
        match Pin::new(&mut *stream).poll_read(cx, &mut read_buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Ready(Ok(())) => {
                into.extend_from_slice(read_buf.filled());
                Poll::Ready(Ok(read_buf.filled().len()))
            }
        }
    })
    .await
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<()> {
    loop {
        let mut data = Vec::new();
        if read_some(stream, &mut data).await? == 0 {
            return Ok(());
        }
        stream.write_all(&data).await?;
    }
}

/// Discards input until the peer closes.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) {
    loop {
        let mut data = Vec::new();
        match read_some(stream, &mut data).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn build_context(settings: &Settings) -> Result<SslContext, String> {
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("{path}: {e}"));
    let chain = X509::stack_from_pem(&read(&settings.cert)?)
        .map_err(|e| format!("{}: {e}", settings.cert))?;
    let key = PKey::private_key_from_pem(&read(&settings.key)?)
        .map_err(|e| format!("{}: {e}", settings.key))?;
    let cas = X509::stack_from_pem(&read(&settings.client_ca)?)
        .map_err(|e| format!("{}: {e}", settings.client_ca))?;
    let tls = |what: &str| {
        let what = what.to_owned();
        move |e: openssl::error::ErrorStack| format!("{what}: {e}")
    };

    let mut builder = SslContextBuilder::new(SslMethod::tls_server()).map_err(tls("context"))?;
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(tls("minimum protocol version"))?;
    // Stateful TLS 1.3 tickets (they name sessions in the server's cache), as sslify.
    builder.set_options(
        SslOptions::NO_RENEGOTIATION
            | SslOptions::CIPHER_SERVER_PREFERENCE
            | SslOptions::NO_COMPRESSION
            | SslOptions::NO_TICKET,
    );
    builder.set_mode(
        SslMode::ENABLE_PARTIAL_WRITE
            | SslMode::ACCEPT_MOVING_WRITE_BUFFER
            | SslMode::RELEASE_BUFFERS
            | SslMode::NO_AUTO_CHAIN,
    );
    builder
        .set_session_id_context(b"sslify")
        .map_err(tls("session id context"))?;
    if let Some(count) = settings.tickets {
        builder.set_num_tickets(count).map_err(tls("tickets"))?;
    }

    let mut chain = chain.into_iter();
    let leaf = chain
        .next()
        .ok_or_else(|| format!("{}: no certificate", settings.cert))?;
    builder.set_certificate(&leaf).map_err(tls("certificate"))?;
    for extra in chain {
        builder.add_extra_chain_cert(extra).map_err(tls("chain"))?;
    }
    builder.set_private_key(&key).map_err(tls("private key"))?;
    builder.check_private_key().map_err(tls("key check"))?;

    if cas.is_empty() {
        return Err(format!("{}: no certificate", settings.client_ca));
    }
    for ca in &cas {
        builder
            .cert_store_mut()
            .add_cert(ca.clone())
            .map_err(tls("client CA"))?;
        builder.add_client_ca(ca).map_err(tls("client CA list"))?;
    }
    builder.set_verify_depth(VERIFY_DEPTH);
    builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    Ok(builder.build())
}
