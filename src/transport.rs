//! The byte stream under a connection: a TCP socket, plain or wrapped in TLS, and how
//! its errors read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use openssl::error::ErrorStack;
use openssl::ssl::{self, ErrorCode, Ssl};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::events::DisconnectReason;

/// Which way the socket last had to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

/// The TCP socket, remembering which way it last had to wait (for the handshake log) and
/// whether the peer has closed its side.
pub(crate) struct Socket {
    tcp: TcpStream,
    pub(crate) blocked: Option<Direction>,
    /// The peer closed its side of the TCP connection. OpenSSL reports a clean
    /// close_notify and a bare TCP close the same way through this adapter, so this
    /// tells them apart: a close_notify is read without reaching the end of the stream.
    pub(crate) eof: bool,
}

impl Socket {
    pub(crate) fn new(tcp: TcpStream) -> Self {
        Socket {
            tcp,
            blocked: None,
            eof: false,
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.tcp).poll_read(cx, buf);
        match &poll {
            Poll::Pending => this.blocked = Some(Direction::Read),
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                this.eof = true;
            }
            Poll::Ready(_) => {}
        }
        poll
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.tcp).poll_write(cx, buf);
        if poll.is_pending() {
            this.blocked = Some(Direction::Write);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// A connection's stream: plaintext before a STARTTLS switch, TLS after (or from the
/// start).
pub(crate) enum Transport {
    Plain(Socket),
    Tls(SslStream<Socket>),
    /// Only while switching from one to the other.
    Switching,
}

impl Transport {
    pub(crate) fn socket(&self) -> Option<&Socket> {
        match self {
            Transport::Plain(socket) => Some(socket),
            Transport::Tls(stream) => Some(stream.get_ref()),
            Transport::Switching => None,
        }
    }

    pub(crate) fn socket_mut(&mut self) -> Option<&mut Socket> {
        match self {
            Transport::Plain(socket) => Some(socket),
            Transport::Tls(stream) => Some(stream.get_mut()),
            Transport::Switching => None,
        }
    }

    pub(crate) fn tls(&self) -> Option<&SslStream<Socket>> {
        match self {
            Transport::Tls(stream) => Some(stream),
            _ => None,
        }
    }

    pub(crate) fn tls_mut(&mut self) -> Option<&mut SslStream<Socket>> {
        match self {
            Transport::Tls(stream) => Some(stream),
            _ => None,
        }
    }

    /// Wraps the plain socket in TLS; a stream that is TLS already stays as it is.
    pub(crate) fn upgrade(&mut self, ssl: Ssl) -> Result<(), ErrorStack> {
        match std::mem::replace(self, Transport::Switching) {
            Transport::Plain(socket) => {
                *self = Transport::Tls(SslStream::new(ssl, socket)?);
                Ok(())
            }
            other => {
                *self = other;
                Ok(())
            }
        }
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(socket) => Pin::new(socket).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Switching => Poll::Ready(Err(switching())),
        }
    }

    /// Reads from the TCP socket under TLS, bypassing it (for draining after close).
    pub(crate) fn poll_read_raw(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.socket_mut() {
            Some(socket) => Pin::new(socket).poll_read(cx, buf),
            None => Poll::Ready(Err(switching())),
        }
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self {
            Transport::Plain(socket) => Pin::new(socket).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Switching => Poll::Ready(Err(switching())),
        }
    }

    /// Sends close_notify (under TLS) and shuts down the TCP write side.
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(socket) => Pin::new(socket).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Switching => Poll::Ready(Err(switching())),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Transport::poll_read(self.get_mut(), cx, buf)
    }
}

fn switching() -> io::Error {
    io::Error::other("stream is switching to TLS")
}

/// OpenSSL's reasons for an error, or the I/O error beneath it.
pub(crate) fn describe_ssl_error(error: &ssl::Error) -> String {
    if let Some(stack) = error.ssl_error() {
        return crate::error::openssl_reason(stack);
    }
    if let Some(io_error) = error.io_error() {
        return io_error.to_string();
    }
    match error.code() {
        ErrorCode::SYSCALL => "peer closed the connection".to_owned(),
        ErrorCode::ZERO_RETURN => "peer sent close_notify".to_owned(),
        code => format!("OpenSSL error code {}", code.as_raw()),
    }
}

/// Sorts an error from reading or writing an established connection into a reason.
pub(crate) fn classify_io_error(error: &io::Error) -> DisconnectReason {
    match error.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => return DisconnectReason::PeerReset,
        io::ErrorKind::UnexpectedEof => return DisconnectReason::PeerTruncated,
        _ => {}
    }
    let Some(ssl_error) = error.get_ref().and_then(|e| e.downcast_ref::<ssl::Error>()) else {
        return DisconnectReason::Io(error.to_string());
    };
    if let Some(io_error) = ssl_error.io_error() {
        return classify_io_error(io_error);
    }
    let reason = describe_ssl_error(ssl_error);
    if reason.contains("unexpected eof") {
        DisconnectReason::PeerTruncated
    } else if reason.contains("alert") {
        DisconnectReason::PeerAlert(reason)
    } else {
        DisconnectReason::Protocol(reason)
    }
}
