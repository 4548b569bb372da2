//! The `Connection` actor: one accepted socket, from the first handshake step to close.
//!
//! All socket work happens in one [`ActorFuture`] (the driver) that the actor spawns into
//! its own context. Each time the socket is ready, or the handler sends a command, the
//! driver takes as many steps as it can without blocking: a handshake step, queued writes,
//! available reads. It then returns `Pending` and the thread serves other actors.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{self, Poll};
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, ActorFuture, Addr, AsyncContext, Context, Handler, Running};
use bytes::Bytes;
use log::{debug, log, trace, warn, Level};
use openssl::ssl::{self, ErrorCode, Ssl, SslVerifyMode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::events::{
    CertRejected, ClientInput, Command, ConnectionHandle, ConnectionId, Disconnect,
    DisconnectReason, SslDone,
};
use crate::flow::Flow;
use crate::listener::{Counted, Shared};
use crate::options::{ClientCertMode, TlsConfig};
use crate::peer::{self, CertProblem, ClientCertReport, SharedRecord, Verifier, VerifyRecord};
use crate::SslHandler;

/// Bytes read from the socket per read call.
const READ_CHUNK: usize = 16 * 1024;
/// Reads taken in one turn before yielding, so that a client sending flat out cannot keep
/// the thread from other connections.
const READS_PER_TURN: usize = 16;
/// How long a closing connection waits for the client's own close before dropping the
/// socket. Closing with unread input would make the kernel send a reset, which can destroy
/// the last bytes written before the client reads them.
const LINGER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Established,
    /// `Close` was asked for: write what is queued, then send close_notify.
    Flushing,
    /// close_notify is sent; drain input until the client closes or `LINGER` passes.
    Lingering,
    Done,
}

pub(crate) struct Connection<H: SslHandler> {
    id: ConnectionId,
    peer: SocketAddr,
    handler: Addr<H>,
    config: TlsConfig,
    stream: SslStream<Socket>,
    record: SharedRecord,
    phase: Phase,
    handle: Option<ConnectionHandle>,
    outbound: VecDeque<Bytes>,
    flow: Arc<Flow>,
    /// Why the connection is being closed once `Flushing` is done.
    closing_reason: DisconnectReason,
    last_activity: Instant,
    shared: Arc<Shared>,
    /// Held while the handshake runs; counts towards the listener's handshake cap.
    handshake_slot: Option<Counted>,
    /// Held for the connection's whole life; counts towards the connection cap.
    _open_slot: Counted,
    disconnected: bool,
    step_level: Level,
}

impl<H: SslHandler> Connection<H> {
    /// Sets up TLS for an accepted socket and starts its actor on the current arbiter.
    pub(crate) fn start(
        id: ConnectionId,
        tcp: TcpStream,
        peer: SocketAddr,
        config: TlsConfig,
        handler: Addr<H>,
        shared: Arc<Shared>,
        slots: (Counted, Counted),
    ) -> Result<(), openssl::error::ErrorStack> {
        let record: SharedRecord = Arc::new(Mutex::new(VerifyRecord::default()));
        let mut ssl = Ssl::new(&config.context())?;
        let (mode, tolerate) = match config.client_cert_mode() {
            ClientCertMode::None => (SslVerifyMode::NONE, false),
            ClientCertMode::Required => (
                SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
                false,
            ),
            ClientCertMode::Optional => (SslVerifyMode::PEER, true),
        };
        if mode != SslVerifyMode::NONE {
            let verifier = Verifier {
                record: Arc::clone(&record),
                tolerate,
                crls: config
                    .crls()
                    .map(|crls| (crls.clone(), config.crl_scope(), config.unusable_crl())),
                id,
            };
            ssl.set_verify_callback(mode, move |ok, store| verifier.observe(ok, store));
        }
        let stream = SslStream::new(ssl, Socket::new(tcp))?;
        let step_level = if config.debug() {
            Level::Debug
        } else {
            Level::Trace
        };
        let flow = Flow::new(config.water_marks());
        let (handshake_slot, open_slot) = slots;

        Connection::create(|_| Connection {
            id,
            peer,
            handler,
            config,
            stream,
            record,
            phase: Phase::Handshaking,
            handle: None,
            outbound: VecDeque::new(),
            flow,
            closing_reason: DisconnectReason::ClosedByHandler,
            last_activity: Instant::now(),
            shared,
            handshake_slot: Some(handshake_slot),
            _open_slot: open_slot,
            disconnected: false,
            step_level,
        });
        Ok(())
    }

    /// Takes every step the socket allows right now. `Ready` means the connection is over.
    fn drive(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Poll<()> {
        self.flow.register_driver(task.waker());

        loop {
            let step = match self.phase {
                Phase::Handshaking => self.handshake(ctx, task),
                Phase::Established | Phase::Flushing => self.transfer(ctx, task),
                Phase::Lingering => self.linger(ctx, task),
                Phase::Done => return Poll::Ready(()),
            };
            match step {
                Step::Again => continue,
                Step::Wait => return Poll::Pending,
                Step::End(reason) => {
                    self.finish(reason, ctx);
                    return Poll::Ready(());
                }
            }
        }
    }

    fn handshake(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Step {
        self.stream.get_mut().blocked = None;
        match Pin::new(&mut self.stream).poll_accept(task) {
            Poll::Pending => {
                let want = match self.stream.get_ref().blocked {
                    Some(Direction::Write) => "want-write",
                    _ => "want-read",
                };
                log!(self.step_level, "[{}] handshake step: {want}", self.id);
                Step::Wait
            }
            Poll::Ready(Ok(())) => {
                self.on_established(ctx);
                Step::Again
            }
            Poll::Ready(Err(error)) => Step::End(self.on_handshake_error(error)),
        }
    }

    fn on_established(&mut self, ctx: &mut Context<Self>) {
        let handle =
            ConnectionHandle::new(self.id, ctx.address().recipient(), Arc::clone(&self.flow));
        let ssl = self.stream.ssl();
        let report = {
            let record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
            ClientCertReport::from_ssl(ssl, &record)
        };
        let protocol = ssl.version_str();
        let cipher = ssl
            .current_cipher()
            .map(|c| c.name())
            .unwrap_or("none")
            .to_owned();
        let resumed = ssl.session_reused();

        log!(
            self.step_level,
            "[{}] handshake done: {protocol} {cipher}{}, {report}",
            self.id,
            if resumed { " (resumed)" } else { "" }
        );
        debug!("[{}] established with {}: {report}", self.id, self.peer);

        self.phase = Phase::Established;
        self.handshake_slot = None;
        self.last_activity = Instant::now();
        if let Some(idle) = self.config.idle_timeout() {
            ctx.run_later(idle, move |act, ctx| act.check_idle(idle, ctx));
        }
        self.handle = Some(handle.clone());
        self.handler.do_send(SslDone {
            id: self.id,
            handle,
            peer: self.peer,
            protocol,
            cipher,
            resumed,
            client_cert: report,
        });
    }

    fn on_handshake_error(&mut self, error: ssl::Error) -> DisconnectReason {
        let reason = describe_ssl_error(&error);
        log!(
            self.step_level,
            "[{}] handshake step: failed: {reason}",
            self.id
        );

        if self.config.client_cert_mode() == ClientCertMode::Required {
            if let Some(problem) = self.rejected_cert(&error) {
                let report = {
                    let record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
                    ClientCertReport::from_ssl(self.stream.ssl(), &record)
                };
                debug!(
                    "[{}] client certificate rejected ({problem}): {report}",
                    self.id
                );
                self.handler.do_send(CertRejected {
                    id: self.id,
                    peer: self.peer,
                    problem,
                    report,
                });
                return DisconnectReason::CertRejected(problem);
            }
        }
        match error.code() {
            ErrorCode::ZERO_RETURN => {
                DisconnectReason::HandshakeFailed("peer closed during the handshake".into())
            }
            _ => DisconnectReason::HandshakeFailed(reason),
        }
    }

    /// Whether a failed handshake was the client certificate's fault, and why.
    fn rejected_cert(&self, error: &ssl::Error) -> Option<CertProblem> {
        let record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(failure) = &record.failure {
            return Some(peer::problem_of(failure.code));
        }
        let missing = error.ssl_error().is_some_and(|stack| {
            stack.errors().iter().any(|e| {
                e.reason()
                    .is_some_and(|r| r.contains("did not return a certificate"))
            })
        });
        missing.then_some(CertProblem::Missing)
    }

    /// Writes what is queued, then reads what is available. Used once established.
    fn transfer(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Step {
        if let Err(reason) = self.flush(task) {
            return Step::End(reason);
        }

        if self.phase == Phase::Flushing {
            if !self.outbound.is_empty() {
                return Step::Wait;
            }
            return match Pin::new(&mut self.stream).poll_shutdown(task) {
                Poll::Pending => Step::Wait,
                Poll::Ready(result) => {
                    if let Err(error) = result {
                        debug!("[{}] close_notify not sent: {error}", self.id);
                        return Step::End(self.closing_reason.clone());
                    }
                    if self.closing_reason == DisconnectReason::PeerClosed {
                        // The peer has closed already; nothing more will come.
                        return Step::End(DisconnectReason::PeerClosed);
                    }
                    trace!(
                        "[{}] close_notify sent, waiting for the peer to close",
                        self.id
                    );
                    self.phase = Phase::Lingering;
                    ctx.run_later(LINGER, |act, ctx| {
                        if act.phase == Phase::Lingering {
                            act.finish(act.closing_reason.clone(), ctx);
                        }
                    });
                    Step::Again
                }
            };
        }

        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..READS_PER_TURN {
            if !self.flow.input_allowed() {
                // The handler is behind; the credit it returns wakes this driver.
                trace!("[{}] reading paused until the handler catches up", self.id);
                return Step::Wait;
            }
            let mut read_buf = ReadBuf::new(&mut buf);
            match Pin::new(&mut self.stream).poll_read(task, &mut read_buf) {
                Poll::Pending => return Step::Wait,
                Poll::Ready(Ok(())) if read_buf.filled().is_empty() => {
                    if self.stream.get_ref().eof {
                        return Step::End(DisconnectReason::PeerTruncated);
                    }
                    // The client sent close_notify: answer with ours after what is queued.
                    debug!("[{}] peer sent close_notify", self.id);
                    self.begin_close(DisconnectReason::PeerClosed);
                    return Step::Again;
                }
                Poll::Ready(Ok(())) => {
                    let data = Bytes::copy_from_slice(read_buf.filled());
                    trace!("[{}] read {} bytes", self.id, data.len());
                    self.last_activity = Instant::now();
                    if let Some(handle) = &self.handle {
                        self.handler.do_send(ClientInput {
                            id: self.id,
                            handle: handle.clone(),
                            data,
                            tls: true,
                            credit: self.flow.input_credit(),
                        });
                    }
                }
                Poll::Ready(Err(error)) => return Step::End(classify_io_error(&error)),
            }
            if self.phase != Phase::Established {
                return Step::Again;
            }
        }
        // More input may be waiting; let other connections run first.
        task.waker().wake_by_ref();
        Step::Wait
    }

    /// Writes queued bytes until the queue is empty or the socket is full.
    fn flush(&mut self, task: &mut task::Context<'_>) -> Result<(), DisconnectReason> {
        while let Some(front) = self.outbound.front_mut() {
            match Pin::new(&mut self.stream).poll_write(task, front) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(0)) => {
                    return Err(DisconnectReason::Io("socket accepted no bytes".into()));
                }
                Poll::Ready(Ok(written)) => {
                    trace!("[{}] wrote {written} bytes", self.id);
                    self.last_activity = Instant::now();
                    if written >= front.len() {
                        self.outbound.pop_front();
                    } else {
                        let _ = front.split_to(written);
                    }
                    self.flow.remove_queued(written);
                }
                Poll::Ready(Err(error)) => return Err(classify_io_error(&error)),
            }
        }
        Ok(())
    }

    /// After close_notify: discard input until the peer closes.
    fn linger(&mut self, _ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Step {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let mut read_buf = ReadBuf::new(&mut buf);
            let socket = Pin::new(self.stream.get_mut());
            match socket.poll_read(task, &mut read_buf) {
                Poll::Pending => return Step::Wait,
                Poll::Ready(Ok(())) if read_buf.filled().is_empty() => {
                    return Step::End(self.closing_reason.clone());
                }
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Step::End(self.closing_reason.clone()),
            }
        }
    }

    /// Ends the connection: the handler gets its one `Disconnect` and the actor stops,
    /// which drops the socket.
    fn finish(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) {
        self.phase = Phase::Done;
        self.notify_disconnect(reason);
        ctx.stop();
    }

    /// Starts an orderly close: queued bytes are written, then close_notify is sent.
    fn begin_close(&mut self, reason: DisconnectReason) {
        self.closing_reason = reason;
        self.phase = Phase::Flushing;
        self.flow.wake_driver();
    }

    /// Closes the connection if nothing moved for the idle timeout; otherwise looks again
    /// when the timeout would next expire.
    fn check_idle(&mut self, idle: Duration, ctx: &mut Context<Self>) {
        if self.phase != Phase::Established {
            return;
        }
        let quiet = self.last_activity.elapsed();
        if quiet >= idle {
            debug!("[{}] idle for {quiet:?}, closing", self.id);
            self.begin_close(DisconnectReason::IdleTimedOut);
        } else {
            ctx.run_later(idle - quiet, move |act, ctx| act.check_idle(idle, ctx));
        }
    }

    fn notify_disconnect(&mut self, reason: DisconnectReason) {
        if mem::replace(&mut self.disconnected, true) {
            return;
        }
        // Bytes still queued will never be written; release them and their waiters.
        let unsent: usize = self.outbound.drain(..).map(|chunk| chunk.len()).sum();
        self.flow.remove_queued(unsent);
        self.flow.wake_drain_waiters();
        debug!("[{}] disconnected: {reason}", self.id);
        self.handler.do_send(Disconnect {
            id: self.id,
            peer: self.peer,
            reason,
        });
    }
}

impl<H: SslHandler> Actor for Connection<H> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        debug!("[{}] accepted from {}", self.id, self.peer);
        self.shared.register(self.id, ctx.address().recipient());
        ctx.spawn(Driver);
        ctx.run_later(self.config.handshake_timeout(), |act, ctx| {
            if act.phase == Phase::Handshaking {
                log!(
                    act.step_level,
                    "[{}] handshake step: deadline passed",
                    act.id
                );
                act.finish(DisconnectReason::HandshakeTimedOut, ctx);
            }
        });
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> Running {
        Running::Stop
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Reached without `finish` only when the actor system itself is stopping.
        self.notify_disconnect(DisconnectReason::Shutdown);
        self.shared.deregister(self.id);
    }
}

impl<H: SslHandler> Handler<Command> for Connection<H> {
    type Result = ();

    fn handle(&mut self, command: Command, ctx: &mut Context<Self>) {
        match (command, self.phase) {
            (Command::Put(data), Phase::Established) => {
                let limit = self.flow.marks().limit;
                if self.flow.queued() > limit {
                    self.flow.remove_queued(data.len());
                    warn!(
                        "[{}] handler queued more than {limit} bytes, closing",
                        self.id
                    );
                    self.finish(DisconnectReason::WriteQueueOverflow, ctx);
                } else if !data.is_empty() {
                    self.outbound.push_back(data);
                    self.flow.wake_driver();
                }
            }
            (Command::Put(data), phase) => {
                self.flow.remove_queued(data.len());
                debug!(
                    "[{}] dropped {} bytes put while {phase:?}",
                    self.id,
                    data.len()
                );
            }
            (Command::Close, Phase::Established) => {
                debug!("[{}] close requested by handler", self.id);
                self.begin_close(DisconnectReason::ClosedByHandler);
            }
            (Command::Close, _) => {}
            (Command::Shutdown, Phase::Established) => {
                debug!("[{}] closing for shutdown", self.id);
                self.begin_close(DisconnectReason::Shutdown);
            }
            (Command::Shutdown, Phase::Handshaking) => {
                self.finish(DisconnectReason::Shutdown, ctx);
            }
            (Command::Shutdown, _) => {}
        }
    }
}

enum Step {
    /// The phase changed; run the next one now.
    Again,
    /// Nothing more can be done until the socket or the handler wakes us.
    Wait,
    /// The connection is over.
    End(DisconnectReason),
}

/// Polls the connection's socket work from inside its actor context.
struct Driver;

impl<H: SslHandler> ActorFuture<Connection<H>> for Driver {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Connection<H>,
        ctx: &mut Context<Connection<H>>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        act.drive(ctx, task)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

/// The TCP socket under TLS, remembering which way it last had to wait so that handshake
/// steps can be logged as want-read or want-write.
struct Socket {
    tcp: TcpStream,
    blocked: Option<Direction>,
    /// The peer closed its side of the TCP connection. OpenSSL reports a clean
    /// close_notify and a bare TCP close the same way through this adapter, so this
    /// tells them apart: a close_notify is read without reaching the end of the stream.
    eof: bool,
}

impl Socket {
    fn new(tcp: TcpStream) -> Self {
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
        cx: &mut task::Context<'_>,
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
        cx: &mut task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.tcp).poll_write(cx, buf);
        if poll.is_pending() {
            this.blocked = Some(Direction::Write);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// OpenSSL's reasons for an error, or the I/O error beneath it.
fn describe_ssl_error(error: &ssl::Error) -> String {
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
fn classify_io_error(error: &io::Error) -> DisconnectReason {
    match error.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            return DisconnectReason::PeerReset;
        }
        io::ErrorKind::BrokenPipe => return DisconnectReason::PeerReset,
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
