//! STARTTLS pieces: a listener whose connections start in plaintext, running in its own
//! thread with a handler the test writes, and a client that talks plaintext over a std
//! `TcpStream` and then does the TLS handshake on the same socket.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use actix::prelude::*;
use openssl::ssl::{SslConnector, SslStream};
use sslify::{Connected, Listener, ListenerHandle, Options, SslHandler};

/// How long a test client waits for any one read or write before failing.
pub const IO_LIMIT: Duration = Duration::from_secs(20);

/// A listener made with [`Listener::bind_starttls`] (or, for comparison, [`Listener::bind`])
/// in its own thread and actix system.
pub struct PlainFirstServer<H: SslHandler> {
    pub addr: SocketAddr,
    pub listener: ListenerHandle<H>,
    system: actix::System,
    thread: Option<thread::JoinHandle<()>>,
}

impl<H: SslHandler + Handler<Connected>> PlainFirstServer<H> {
    /// Serves `options` on a free loopback port; connections start in plaintext. The
    /// handler is made by `make_handler` inside the server's system.
    pub fn start<F>(options: Options, make_handler: F) -> Self
    where
        F: FnOnce() -> H + Send + 'static,
    {
        Self::start_with(options, make_handler, true)
    }

    /// Like [`start`](Self::start), but connections start in TLS ([`Listener::bind`]).
    pub fn start_tls_first<F>(options: Options, make_handler: F) -> Self
    where
        F: FnOnce() -> H + Send + 'static,
    {
        Self::start_with(options, make_handler, false)
    }

    fn start_with<F>(options: Options, make_handler: F, plain_first: bool) -> Self
    where
        F: FnOnce() -> H + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let system = actix::System::new();
            system.block_on(async move {
                let config = options.build().expect("test options build");
                let handler = make_handler().start();
                let listener = if plain_first {
                    Listener::bind_starttls("127.0.0.1:0", config, handler)
                } else {
                    Listener::bind("127.0.0.1:0", config, handler)
                }
                .expect("bind loopback");
                tx.send((listener, actix::System::current())).unwrap();
            });
            system.run().unwrap();
        });
        let (listener, system) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server started");
        PlainFirstServer {
            addr: listener.local_addr(),
            listener,
            system,
            thread: Some(thread),
        }
    }
}

impl<H: SslHandler> Drop for PlainFirstServer<H> {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client in the plaintext part of a STARTTLS protocol.
pub struct PlainClient {
    pub tcp: TcpStream,
}

impl PlainClient {
    /// Connects to `addr` with [`IO_LIMIT`] on every read and write.
    pub fn connect(addr: SocketAddr) -> PlainClient {
        let tcp = TcpStream::connect(addr).expect("connect to the test server");
        tcp.set_read_timeout(Some(IO_LIMIT)).unwrap();
        tcp.set_write_timeout(Some(IO_LIMIT)).unwrap();
        tcp.set_nodelay(true).unwrap();
        PlainClient { tcp }
    }

    /// Writes `data` with one `write` call, as far as the kernel takes it whole.
    pub fn send(&mut self, data: &[u8]) {
        self.tcp.write_all(data).expect("write plaintext");
        self.tcp.flush().expect("flush plaintext");
    }

    /// One line, without its line end. Reads a byte at a time, so that nothing after the
    /// line is taken from the socket (it may be the server's first TLS record).
    pub fn line(&mut self) -> io::Result<String> {
        read_line(&mut self.tcp)
    }

    /// A whole reply, which may span several `NNN-` lines.
    pub fn reply(&mut self) -> io::Result<Vec<String>> {
        read_reply(&mut self.tcp)
    }

    /// Does the client side of the TLS handshake over this socket with `connector`,
    /// expecting the certificate of `localhost`.
    pub fn start_tls(self, connector: &SslConnector) -> Result<SslStream<TcpStream>, String> {
        connector
            .connect("localhost", self.tcp)
            .map_err(|error| error.to_string())
    }
}

/// Reads one line (up to `\n`) a byte at a time and returns it without `\r\n`.
///
/// # Errors
///
/// The read error, or `UnexpectedEof` when the stream ends before the line does.
pub fn read_line(stream: &mut impl Read) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "stream ended after {:?}",
                        String::from_utf8_lossy(&line).into_owned()
                    ),
                ))
            }
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Reads the lines of one FTP/SMTP-style reply: `NNN-` lines up to the `NNN ` line.
///
/// # Errors
///
/// As for [`read_line`].
pub fn read_reply(stream: &mut impl Read) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let line = read_line(stream)?;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return Ok(lines);
        }
    }
}

/// Writes one line with `\r\n` and flushes.
///
/// # Errors
///
/// The write error.
pub fn write_line(stream: &mut impl Write, line: &str) -> io::Result<()> {
    stream.write_all(format!("{line}\r\n").as_bytes())?;
    stream.flush()
}

/// A stream that writes one byte per `write` call and pauses after each, so that the
/// peer sees every byte arrive on its own (a TLS ClientHello split into 1-byte reads).
#[derive(Debug)]
pub struct Trickle {
    pub tcp: TcpStream,
    pub pause: Duration,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(first) = buf.first() else {
            return Ok(0);
        };
        let written = self.tcp.write(std::slice::from_ref(first))?;
        self.tcp.flush()?;
        thread::sleep(self.pause);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}
