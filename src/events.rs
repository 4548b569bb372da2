//! Messages the library sends to the user's handler actor, and the handle the handler
//! uses to command a connection.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::{Actor, Context, Handler, Message};
use bytes::Bytes;

use crate::flow::{Drained, Flow, InputCredit, TlsState};
use crate::peer::{CertProblem, ClientCertReport};

/// A connection's number, unique within its listener and counted from 1.
///
/// Shown as `[7]` in every log line about the connection, like the POE wheel id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Commands a handler (or the listener) can give a connection.
#[derive(Debug)]
pub(crate) enum Command {
    Put(Bytes),
    Close,
    /// Switch a plaintext connection to TLS once what was put is written; `discarded`
    /// bytes of the handler's input followed the command and were dropped.
    StartTls {
        discarded: usize,
    },
    /// The listener is shutting down and the grace period is over.
    Shutdown,
    /// The handler put more than the write queue's hard limit.
    Overflow,
}

/// The handler's way to write to and close one connection.
///
/// Cheap to clone and safe to keep after the connection has ended: commands to an ended
/// connection are dropped.
#[derive(Clone)]
pub struct ConnectionHandle {
    // Shared, so that handing a handle out with every event costs one counter increment.
    inner: Arc<HandleInner>,
}

struct HandleInner {
    id: ConnectionId,
    flow: Arc<Flow>,
}

/// What [`ConnectionHandle::put`] found: how much is now waiting to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutStatus {
    /// Bytes put but not yet written to the socket, including these.
    pub queued: usize,
    /// The queue is at or above the high-water mark: wait for
    /// [`drained`](ConnectionHandle::drained) before putting more.
    pub full: bool,
}

impl ConnectionHandle {
    pub(crate) fn new(id: ConnectionId, flow: Arc<Flow>) -> Self {
        ConnectionHandle {
            inner: Arc::new(HandleInner { id, flow }),
        }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.inner.id
    }

    /// Queues bytes to be written to the client, in order.
    ///
    /// This is `$heap->{client}->put(...)` of a POE session. Bytes put before
    /// [`close`](Self::close) are all written before the connection closes.
    ///
    /// The returned status says when the write queue has reached its high-water mark
    /// ([`Options::write_water_marks`](crate::Options::write_water_marks), 1 MiB by
    /// default): a handler writing to a slow reader should then wait for
    /// [`drained`](Self::drained), as a POE session waited for its wheel's LowMark event
    /// after a HighMark. Putting past the hard limit (16 MiB by default) ends the
    /// connection with [`DisconnectReason::WriteQueueOverflow`], so memory stays bounded.
    pub fn put(&self, data: impl Into<Bytes>) -> PutStatus {
        let data = data.into();
        let queued = self.inner.flow.add_queued(data.len());
        self.inner.flow.command(Command::Put(data));
        PutStatus {
            queued,
            full: queued >= self.inner.flow.marks().high,
        }
    }

    /// Switches a plaintext connection to TLS: what was put before is written first, in
    /// plaintext and whole; then the handshake starts, with the listener's (or connector's)
    /// settings. Bytes put after this call are sent once the handshake is done.
    ///
    /// The connection reads plaintext one input at a time and reads nothing more while
    /// the handler holds the input that carried the command, so no byte the client sent
    /// after it is ever delivered: what arrives later is read by the TLS handshake (and a
    /// plaintext command there fails it). Bytes after the command *within* that input are
    /// the handler's to drop; [`ClientInput::start_tls`] does that and logs it. For the same
    /// reason a client that sends its ClientHello before it has read the go-ahead may have
    /// it dropped with the command's input, and its handshake then runs out the deadline:
    /// clients must wait for the go-ahead, as the protocols say.
    ///
    /// # Errors
    ///
    /// [`StartTlsError`] when the connection did not start in plaintext, is already TLS,
    /// has asked for the switch already, or has ended; the connection stays as it was.
    pub fn start_tls(&self) -> Result<(), StartTlsError> {
        self.request_tls(0)
    }

    fn request_tls(&self, discarded: usize) -> Result<(), StartTlsError> {
        if self.inner.flow.closing() {
            return Err(StartTlsError::Ended);
        }
        self.inner.flow.request_tls().map_err(|state| match state {
            TlsState::Requested => StartTlsError::AlreadyRequested,
            TlsState::Tls => StartTlsError::AlreadyTls,
            _ => StartTlsError::Ended,
        })?;
        self.inner.flow.command(Command::StartTls { discarded });
        Ok(())
    }

    /// Bytes put but not yet written to the socket.
    pub fn queued(&self) -> usize {
        self.inner.flow.queued()
    }

    /// A future that resolves once the write queue is at or below its low-water mark
    /// (256 KiB by default), or the connection has ended.
    ///
    /// In an actor: `ctx.wait(handle.drained().into_actor(self).map(|_, act, ctx| …))`.
    pub fn drained(&self) -> Drained {
        Drained::new(Arc::clone(&self.inner.flow))
    }

    /// Writes whatever was put, sends TLS close_notify and closes the connection.
    ///
    /// The handler then gets [`Disconnect`] with [`DisconnectReason::ClosedByHandler`]. A
    /// delayed disconnect is `ctx.run_later(delay, move |_, _| handle.close())`.
    pub fn close(&self) {
        self.inner.flow.command(Command::Close);
    }

    /// Whether the connection is still running (it may end at any moment).
    pub fn connected(&self) -> bool {
        !self.inner.flow.ended()
    }
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

/// The handshake finished; the connection is ready for application data.
///
/// Sent also when the client certificate is bad in [`Optional`](crate::ClientCertMode::Optional)
/// mode: the report says what is wrong and the handler decides.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SslDone {
    /// The connection's id.
    pub id: ConnectionId,
    /// Commands for this connection.
    pub handle: ConnectionHandle,
    /// The client's address.
    pub peer: SocketAddr,
    /// The negotiated protocol, e.g. `TLSv1.3`.
    pub protocol: &'static str,
    /// The negotiated cipher suite in OpenSSL's naming, e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// Whether an earlier session was resumed.
    pub resumed: bool,
    /// What the client presented and what verification made of it.
    pub client_cert: ClientCertReport,
}

impl Message for SslDone {
    type Result = ();
}

/// Bytes arrived from the client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientInput {
    /// The connection's id.
    pub id: ConnectionId,
    /// Commands for this connection.
    pub handle: ConnectionHandle,
    /// The bytes, as they were read: one read may hold part of a line or several lines.
    pub data: Bytes,
    /// Whether the bytes came over TLS (always, unless the connection started in plaintext).
    pub tls: bool,
    /// Holds back further reads until the handler has dropped this input (never read:
    /// dropping it is what counts).
    #[allow(dead_code)]
    pub(crate) credit: InputCredit,
}

impl Message for ClientInput {
    type Result = ();
}

impl ClientInput {
    /// Switches to TLS after a STARTTLS-style command that ends at byte `command_end` of
    /// this input; any bytes after it are discarded (and logged at warn with their count),
    /// never delivered. See [`ConnectionHandle::start_tls`].
    ///
    /// # Errors
    ///
    /// As for [`ConnectionHandle::start_tls`].
    pub fn start_tls(&self, command_end: usize) -> Result<(), StartTlsError> {
        let discarded = self.data.len().saturating_sub(command_end);
        self.handle.request_tls(discarded)
    }
}

/// A connection that starts in plaintext is open (STARTTLS listeners and
/// [`Connector::connect_plain`](crate::Connector::connect_plain)).
///
/// The first event of such a connection; the handler typically puts its greeting.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Connected {
    /// The connection's id.
    pub id: ConnectionId,
    /// Commands for this connection.
    pub handle: ConnectionHandle,
    /// The peer's address.
    pub peer: SocketAddr,
}

impl Message for Connected {
    type Result = ();
}

/// Why [`ConnectionHandle::start_tls`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartTlsError {
    /// The connection is TLS already (it started in TLS, or has switched).
    AlreadyTls,
    /// The switch was asked for already.
    AlreadyRequested,
    /// The connection has ended, or the handler has asked for it to close.
    Ended,
}

impl fmt::Display for StartTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartTlsError::AlreadyTls => "connection is already TLS",
            StartTlsError::AlreadyRequested => "STARTTLS was already requested",
            StartTlsError::Ended => "connection has ended or is closing",
        })
    }
}

impl std::error::Error for StartTlsError {}

/// The client certificate was refused during the handshake
/// ([`Required`](crate::ClientCertMode::Required) mode). [`Disconnect`] follows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CertRejected {
    /// The connection's id.
    pub id: ConnectionId,
    /// The client's address.
    pub peer: SocketAddr,
    /// Why the certificate was refused.
    pub problem: CertProblem,
    /// What the client presented; `verify_text` and `failed_depth` give OpenSSL's details.
    pub report: ClientCertReport,
}

impl Message for CertRejected {
    type Result = ();
}

/// The connection has ended. Always the last event for a connection, and sent exactly once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Disconnect {
    /// The connection's id.
    pub id: ConnectionId,
    /// The client's address.
    pub peer: SocketAddr,
    /// Why it ended.
    pub reason: DisconnectReason,
    /// Bytes put by the handler that were never written (0 when everything was sent).
    pub unsent: usize,
}

impl Message for Disconnect {
    type Result = ();
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client sent TLS close_notify.
    PeerClosed,
    /// The client closed the TCP connection without close_notify.
    PeerTruncated,
    /// The client reset the TCP connection.
    PeerReset,
    /// The client sent a fatal TLS alert; the text is OpenSSL's description.
    PeerAlert(String),
    /// The handler asked for [`close`](ConnectionHandle::close).
    ClosedByHandler,
    /// The peer's certificate was refused in the handshake (see [`CertRejected`]): the
    /// client's on a listener, the server's on a [`Connector`](crate::Connector).
    CertRejected(CertProblem),
    /// The handshake failed; the text is OpenSSL's reason (e.g. `http request`).
    HandshakeFailed(String),
    /// The handshake did not finish within the deadline.
    HandshakeTimedOut,
    /// No bytes went either way for the idle timeout.
    IdleTimedOut,
    /// The handler put more than the write queue's hard limit.
    WriteQueueOverflow,
    /// The TLS layer failed after the handshake; the text is OpenSSL's reason.
    Protocol(String),
    /// Reading or writing the socket failed.
    Io(String),
    /// The listener or the actor system shut down.
    Shutdown,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::PeerClosed => f.write_str("peer closed"),
            DisconnectReason::PeerTruncated => {
                f.write_str("peer closed the connection without close_notify")
            }
            DisconnectReason::PeerReset => f.write_str("peer reset the connection"),
            DisconnectReason::PeerAlert(alert) => write!(f, "peer sent alert: {alert}"),
            DisconnectReason::ClosedByHandler => f.write_str("closed by handler"),
            DisconnectReason::CertRejected(problem) => {
                write!(f, "peer certificate rejected: {problem}")
            }
            DisconnectReason::HandshakeFailed(reason) => write!(f, "handshake failed: {reason}"),
            DisconnectReason::HandshakeTimedOut => f.write_str("handshake timed out"),
            DisconnectReason::IdleTimedOut => f.write_str("idle timeout"),
            DisconnectReason::WriteQueueOverflow => f.write_str("write queue overflow"),
            DisconnectReason::Protocol(reason) => write!(f, "TLS error: {reason}"),
            DisconnectReason::Io(reason) => write!(f, "I/O error: {reason}"),
            DisconnectReason::Shutdown => f.write_str("shut down"),
        }
    }
}

/// An actor that can receive every event of a TLS listener.
///
/// Implemented automatically for any actor with a `Context` that handles [`SslDone`],
/// [`ClientInput`], [`CertRejected`] and [`Disconnect`]. Its fields play the part of a POE
/// session's heap, its handlers the part of `inline_states`, and `ctx.run_later` the part
/// of `$kernel->delay`.
pub trait SslHandler:
    Actor<Context = Context<Self>>
    + Handler<SslDone>
    + Handler<ClientInput>
    + Handler<CertRejected>
    + Handler<Disconnect>
{
}

impl<T> SslHandler for T where
    T: Actor<Context = Context<T>>
        + Handler<SslDone>
        + Handler<ClientInput>
        + Handler<CertRejected>
        + Handler<Disconnect>
{
}
