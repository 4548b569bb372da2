//! The `Connection` actor: one socket, from accept (or connect) to close.
//!
//! All socket work happens in one [`ActorFuture`] (the driver) that the actor spawns into
//! its own context. Each time the socket is ready, or the handler sends a command, the
//! driver takes as many steps as it can without blocking: a handshake step, queued writes,
//! available reads. It then returns `Pending` and the thread serves other actors.
//!
//! The phases: `Plain` (STARTTLS connections before the switch), `Switching` (the
//! handler's last plaintext is being written), `Handshaking`, `Established`, `Flushing`
//! (closing: queued bytes, then close_notify), `Lingering` (waiting briefly for the peer's
//! own close) and `Done`.

use std::collections::VecDeque;
use std::mem;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{self, Poll};
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFuture, Addr, AsyncContext, Context, Recipient, Running, SpawnHandle,
};
use bytes::{Bytes, BytesMut};
use log::{debug, log, trace, warn, Level};
use openssl::error::ErrorStack;
use openssl::ssl::{self, ErrorCode, Ssl, SslVerifyMode};
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

use crate::connector::ConnectorConfig;
use crate::events::{
    CertRejected, ClientInput, Command, Connected, ConnectionHandle, ConnectionId, Disconnect,
    DisconnectReason, SslDone,
};
use crate::flow::{Flow, TlsState, WaterMarks};
use crate::listener::{Counted, Shared};
use crate::options::{ClientCertMode, TlsConfig};
use crate::peer::{self, CertProblem, ClientCertReport, SharedRecord, Verifier, VerifyRecord};
use crate::transport::{classify_io_error, describe_ssl_error, Direction, Socket, Transport};
use crate::SslHandler;

/// Bytes read from the socket per read call.
const READ_CHUNK: usize = 16 * 1024;
/// Reads of at most this many bytes are copied out of the read buffer.
const SMALL_READ: usize = 2048;
/// Reads taken in one turn before yielding, so that a peer sending flat out cannot keep
/// the thread from other connections.
const READS_PER_TURN: usize = 16;
/// How long a closing connection waits for the peer's own close before dropping the
/// socket. Closing with unread input would make the kernel send a reset, which can destroy
/// the last bytes written before the peer reads them.
const LINGER: Duration = Duration::from_secs(2);
/// How often a STARTTLS switch waiting for a handshake slot looks again.
const SLOT_RETRY: Duration = Duration::from_millis(20);
/// How long a plaintext (pre-STARTTLS) connection may go without a byte moving when no
/// idle timeout is set.
const PLAINTEXT_IDLE: Duration = Duration::from_secs(60);
/// How long a close may go on without a byte moving when no idle timeout is set.
const CLOSE_STALL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Plain,
    Switching,
    Handshaking,
    Established,
    Flushing,
    Lingering,
    Done,
}

/// Which end of TLS this connection is, and the settings that go with it.
pub(crate) enum Side {
    Server(TlsConfig),
    Client {
        config: ConnectorConfig,
        server_name: String,
    },
}

impl Side {
    /// The TLS object for one handshake, with its own verify callback.
    fn ssl(&self, id: ConnectionId, record: &SharedRecord) -> Result<Ssl, ErrorStack> {
        match self {
            Side::Server(config) => {
                let mut ssl = Ssl::new(&config.context())?;
                let (mode, tolerate) = match config.client_cert_mode() {
                    ClientCertMode::None => return Ok(ssl),
                    ClientCertMode::Required => (
                        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
                        false,
                    ),
                    ClientCertMode::Optional => (SslVerifyMode::PEER, true),
                };
                let verifier = Verifier {
                    record: Arc::clone(record),
                    tolerate,
                    crls: config
                        .crls()
                        .map(|crls| (crls.clone(), config.crl_scope(), config.unusable_crl())),
                    id,
                };
                ssl.set_verify_callback(mode, move |ok, store| verifier.observe(ok, store));
                Ok(ssl)
            }
            Side::Client {
                config,
                server_name,
            } => {
                let mut ssl = config.ssl(server_name)?;
                if config.verifies_server() {
                    let verifier = Verifier {
                        record: Arc::clone(record),
                        tolerate: false,
                        crls: None,
                        id,
                    };
                    ssl.set_verify_callback(SslVerifyMode::PEER, move |ok, store| {
                        verifier.observe(ok, store)
                    });
                }
                Ok(ssl)
            }
        }
    }

    /// The configured CAs for the peer's certificate (none known on the client side).
    fn anchors(&self) -> &[openssl::x509::X509] {
        match self {
            Side::Server(config) => config.client_cas(),
            Side::Client { .. } => &[],
        }
    }

    fn is_server(&self) -> bool {
        matches!(self, Side::Server(_))
    }

    /// Whether a failed handshake may be the peer certificate's fault.
    fn judges_peer(&self) -> bool {
        match self {
            Side::Server(config) => config.client_cert_mode() == ClientCertMode::Required,
            Side::Client { config, .. } => config.verifies_server(),
        }
    }

    fn handshake_timeout(&self) -> Duration {
        match self {
            Side::Server(config) => config.handshake_timeout(),
            Side::Client { config, .. } => config.handshake_timeout(),
        }
    }

    fn idle_timeout(&self) -> Option<Duration> {
        match self {
            Side::Server(config) => config.idle_timeout(),
            Side::Client { .. } => None,
        }
    }

    fn debug(&self) -> bool {
        match self {
            Side::Server(config) => config.debug(),
            Side::Client { config, .. } => config.debug(),
        }
    }

    fn water_marks(&self) -> WaterMarks {
        match self {
            Side::Server(config) => config.water_marks(),
            Side::Client { config, .. } => config.water_marks(),
        }
    }
}

/// A listener's bookkeeping for one of its connections: the counts it holds.
pub(crate) struct Seat {
    pub(crate) shared: Arc<Shared>,
    /// Held while a handshake runs; counts towards the handshake cap.
    pub(crate) handshake: Option<Counted>,
    /// Held for the connection's whole life; counts towards the connection cap (only
    /// dropping it matters).
    #[allow(dead_code)]
    pub(crate) open: Counted,
}

pub(crate) struct Connection<H: SslHandler> {
    id: ConnectionId,
    peer: SocketAddr,
    side: Side,
    handler: Addr<H>,
    /// Where `Connected` goes, for connections that start in plaintext.
    connected: Option<Recipient<Connected>>,
    transport: Transport,
    record: SharedRecord,
    phase: Phase,
    handle: Option<ConnectionHandle>,
    /// Bytes to write, in order.
    outbound: VecDeque<Bytes>,
    /// Where reads land; empty, with no capacity, while the connection is idle.
    read_buf: BytesMut,
    /// Bytes put after `StartTls`, held until the handshake is done.
    after_handshake: VecDeque<Bytes>,
    flow: Arc<Flow>,
    /// Why the connection is being closed once `Flushing` is done.
    closing_reason: DisconnectReason,
    last_activity: Instant,
    seat: Option<Seat>,
    /// The handshake deadline's timer, cancelled once the handshake is done.
    deadline: Option<SpawnHandle>,
    /// A STARTTLS switch waiting for a handshake slot has its next look scheduled.
    slot_retry_armed: bool,
    /// The peer has finished sending; the connection closes once the handler is done.
    peer_finished: bool,
    disconnected: bool,
    step_level: Level,
}

impl<H: SslHandler> Connection<H> {
    /// Starts the actor for a socket on the current arbiter: in TLS straight away, or in
    /// plaintext when `connected` says where to announce it.
    pub(crate) fn start(
        id: ConnectionId,
        tcp: TcpStream,
        peer: SocketAddr,
        side: Side,
        handler: Addr<H>,
        connected: Option<Recipient<Connected>>,
        mut seat: Option<Seat>,
    ) -> Result<(), ErrorStack> {
        let record: SharedRecord = Arc::new(Mutex::new(VerifyRecord::default()));
        let socket = Socket::new(tcp);
        let plain = connected.is_some();
        let (transport, phase) = if plain {
            // A plaintext connection holds no handshake slot until it switches.
            if let Some(seat) = &mut seat {
                seat.handshake = None;
            }
            (Transport::Plain(socket), Phase::Plain)
        } else {
            let mut transport = Transport::Plain(socket);
            transport.upgrade(side.ssl(id, &record)?)?;
            (transport, Phase::Handshaking)
        };
        let step_level = if side.debug() {
            Level::Debug
        } else {
            Level::Trace
        };
        let tls_state = if plain {
            TlsState::Plain
        } else {
            TlsState::Tls
        };
        let flow = Flow::new(side.water_marks(), tls_state);

        Connection::create(|_| Connection {
            id,
            peer,
            side,
            handler,
            connected,
            transport,
            record,
            phase,
            handle: None,
            outbound: VecDeque::new(),
            read_buf: BytesMut::new(),
            after_handshake: VecDeque::new(),
            flow,
            closing_reason: DisconnectReason::ClosedByHandler,
            last_activity: Instant::now(),
            seat,
            deadline: None,
            slot_retry_armed: false,
            peer_finished: false,
            disconnected: false,
            step_level,
        });
        Ok(())
    }

    /// Takes every step the socket allows right now. `Ready` means the connection is over.
    fn drive(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Poll<()> {
        self.flow.register_driver(task.waker());
        for command in self.flow.take_commands() {
            self.obey(command, ctx);
            if self.phase == Phase::Done {
                return Poll::Ready(());
            }
        }

        loop {
            let step = match self.phase {
                Phase::Handshaking => self.handshake(ctx, task),
                Phase::Switching => self.switch(ctx, task),
                Phase::Plain | Phase::Established | Phase::Flushing => self.transfer(ctx, task),
                Phase::Lingering => self.linger(task),
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

    fn handle(&mut self) -> ConnectionHandle {
        self.handle
            .get_or_insert_with(|| ConnectionHandle::new(self.id, Arc::clone(&self.flow)))
            .clone()
    }

    fn handshake(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Step {
        let server = self.side.is_server();
        let Some(stream) = self.transport.tls_mut() else {
            return Step::End(DisconnectReason::Io("no TLS stream to handshake on".into()));
        };
        stream.get_mut().blocked = None;
        let poll = if server {
            Pin::new(&mut *stream).poll_accept(task)
        } else {
            Pin::new(&mut *stream).poll_connect(task)
        };
        match poll {
            Poll::Pending => {
                let want = match stream.get_ref().blocked {
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
        let handle = self.handle();
        let Some(stream) = self.transport.tls() else {
            return;
        };
        let ssl = stream.ssl();
        let report = {
            let record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
            ClientCertReport::from_ssl(ssl, &record, self.side.anchors())
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
        if let Some(seat) = &mut self.seat {
            seat.handshake = None;
        }
        if let Some(timer) = self.deadline.take() {
            ctx.cancel_future(timer);
        }
        self.last_activity = Instant::now();
        if let Some(idle) = self.side.idle_timeout() {
            ctx.run_later(idle, move |act, ctx| {
                act.check_idle(idle, Phase::Established, ctx)
            });
        }
        self.outbound.append(&mut self.after_handshake);
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

        if self.side.judges_peer() {
            if let Some(problem) = self.rejected_cert(&error) {
                let report = {
                    let record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
                    match self.transport.tls() {
                        Some(stream) => {
                            ClientCertReport::from_ssl(stream.ssl(), &record, self.side.anchors())
                        }
                        None => ClientCertReport::default(),
                    }
                };
                debug!(
                    "[{}] peer certificate rejected ({problem}): {report}",
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

    /// Whether a failed handshake was the peer certificate's fault, and why.
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

    /// Writes the plaintext put before `StartTls`, then wraps the socket in TLS.
    fn switch(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Step {
        if let Err(reason) = self.flush(task) {
            return Step::End(reason);
        }
        if !self.outbound.is_empty() {
            return Step::Wait;
        }
        // A switch is a handshake like any other, under the listener's handshake cap.
        if let Some(seat) = &mut self.seat {
            if seat.handshake.is_none() {
                match Counted::try_handshake(&seat.shared) {
                    Some(slot) => seat.handshake = Some(slot),
                    None => {
                        if !mem::replace(&mut self.slot_retry_armed, true) {
                            trace!("[{}] STARTTLS waits for a handshake slot", self.id);
                            ctx.run_later(SLOT_RETRY, |act, _| {
                                act.slot_retry_armed = false;
                                act.flow.wake_driver();
                            });
                        }
                        return Step::Wait;
                    }
                }
            }
        }
        let ssl = match self.side.ssl(self.id, &self.record) {
            Ok(ssl) => ssl,
            Err(error) => {
                warn!("[{}] cannot set up TLS for STARTTLS: {error}", self.id);
                return Step::End(DisconnectReason::HandshakeFailed(error.to_string()));
            }
        };
        if let Err(error) = self.transport.upgrade(ssl) {
            return Step::End(DisconnectReason::HandshakeFailed(error.to_string()));
        }
        debug!("[{}] plaintext done, starting the TLS handshake", self.id);
        self.flow.set_tls_state(TlsState::Tls);
        self.phase = Phase::Handshaking;
        Step::Again
    }

    /// Writes what is queued, then reads what is available. Used in plaintext and once
    /// established.
    fn transfer(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Step {
        if let Err(reason) = self.flush(task) {
            return Step::End(reason);
        }

        if self.phase == Phase::Flushing {
            if !self.outbound.is_empty() {
                return Step::Wait;
            }
            return match self.transport.poll_shutdown(task) {
                Poll::Pending => Step::Wait,
                Poll::Ready(result) => {
                    if let Err(error) = result {
                        debug!("[{}] close not sent: {error}", self.id);
                        return Step::End(self.closing_reason.clone());
                    }
                    if self.closing_reason == DisconnectReason::PeerClosed {
                        // The peer has closed already; nothing more will come.
                        return Step::End(DisconnectReason::PeerClosed);
                    }
                    trace!("[{}] close sent, waiting for the peer to close", self.id);
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

        if self.peer_finished {
            if self.flow.inputs_unfinished() {
                // Woken when the handler lets go of its last input.
                return Step::Wait;
            }
            // The handler queued its answers before it let go of the inputs, perhaps on
            // another thread since this turn began: take them before closing.
            for command in self.flow.take_commands() {
                self.obey(command, ctx);
            }
            if matches!(self.phase, Phase::Plain | Phase::Established) {
                self.begin_close(DisconnectReason::PeerClosed, ctx);
            }
            return Step::Again;
        }

        let tls = self.phase == Phase::Established;
        // Plaintext is read one input at a time, so that nothing past a STARTTLS command
        // is ever read as plaintext.
        let allowed = if tls {
            crate::flow::UNFINISHED_INPUTS
        } else {
            1
        };
        for _ in 0..READS_PER_TURN {
            if !self.flow.input_allowed(allowed) {
                // The handler is behind; the credit it returns wakes this driver.
                trace!("[{}] reading paused until the handler catches up", self.id);
                return Step::Wait;
            }
            if !tls && self.flow.tls_requested() {
                // The handler has asked for TLS: whatever comes next is for the handshake.
                return Step::Wait;
            }
            if self.read_buf.capacity() < READ_CHUNK {
                self.read_buf.reserve(READ_CHUNK);
            }
            match poll_read_buf(Pin::new(&mut self.transport), task, &mut self.read_buf) {
                Poll::Pending => {
                    // Nothing to read: an idle connection keeps no read buffer.
                    if self.read_buf.is_empty() {
                        self.read_buf = BytesMut::new();
                    }
                    return Step::Wait;
                }
                Poll::Ready(Ok(0)) => {
                    let eof = self.transport.socket().is_some_and(|socket| socket.eof);
                    if tls && eof {
                        // No close_notify: the stream may have been cut, so nothing more
                        // is trusted or sent.
                        return Step::End(DisconnectReason::PeerTruncated);
                    }
                    // The peer is done sending (close_notify, or the end of a plaintext
                    // stream). The handler still answers what it was given; the close
                    // follows once it has let go of every input.
                    debug!("[{}] peer finished sending", self.id);
                    self.peer_finished = true;
                    return Step::Again;
                }
                Poll::Ready(Ok(_)) => {
                    // Large reads go to the handler without a copy. Small ones are copied
                    // out, so that a handler keeping many small inputs does not keep a
                    // whole read buffer alive with each.
                    let data = if self.read_buf.len() <= SMALL_READ {
                        let data = Bytes::copy_from_slice(&self.read_buf);
                        self.read_buf.clear();
                        data
                    } else {
                        self.read_buf.split().freeze()
                    };
                    trace!("[{}] read {} bytes", self.id, data.len());
                    self.last_activity = Instant::now();
                    let handle = self.handle();
                    self.handler.do_send(ClientInput {
                        id: self.id,
                        handle,
                        data,
                        tls,
                        credit: self.flow.input_credit(),
                    });
                }
                Poll::Ready(Err(error)) => return Step::End(classify_io_error(&error)),
            }
            if self.phase != Phase::Established && self.phase != Phase::Plain {
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
            match self.transport.poll_write(task, front) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(0)) => {
                    return Err(DisconnectReason::Io("socket accepted no bytes".into()));
                }
                Poll::Ready(Ok(written)) => {
                    trace!("[{}] wrote {written} bytes", self.id);
                    self.last_activity = Instant::now();
                    if written >= front.len() {
                        self.outbound.pop_front();
                        if self.outbound.is_empty() {
                            // An idle connection keeps no queue storage.
                            self.outbound = VecDeque::new();
                        }
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

    /// After our close: discard input until the peer closes.
    fn linger(&mut self, task: &mut task::Context<'_>) -> Step {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            let mut read_buf = ReadBuf::new(&mut buf);
            match self.transport.poll_read_raw(task, &mut read_buf) {
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
    ///
    /// A peer that stops reading cannot hold the close up for ever: a shutdown gets
    /// `LINGER` in all, any other close ends once no byte has moved for the idle timeout
    /// (or `CLOSE_STALL` without one).
    fn begin_close(&mut self, reason: DisconnectReason, ctx: &mut Context<Self>) {
        let stall = if reason == DisconnectReason::Shutdown {
            LINGER
        } else {
            self.side.idle_timeout().unwrap_or(CLOSE_STALL)
        };
        self.closing_reason = reason;
        self.phase = Phase::Flushing;
        self.flow.wake_driver();
        ctx.run_later(stall, move |act, ctx| act.check_closing(stall, ctx));
    }

    /// Ends a close that made no progress for `stall` (a shutdown's at once).
    fn check_closing(&mut self, stall: Duration, ctx: &mut Context<Self>) {
        if self.phase != Phase::Flushing {
            // Done already, or lingering under its own deadline.
            return;
        }
        let quiet = self.last_activity.elapsed();
        if self.closing_reason == DisconnectReason::Shutdown || quiet >= stall {
            debug!(
                "[{}] peer took no bytes for {quiet:?} while closing, dropping it",
                self.id
            );
            self.finish(self.closing_reason.clone(), ctx);
        } else {
            ctx.run_later(stall - quiet, move |act, ctx| act.check_closing(stall, ctx));
        }
    }

    fn arm_handshake_deadline(&mut self, ctx: &mut Context<Self>) {
        let timer = ctx.run_later(self.side.handshake_timeout(), |act, ctx| {
            if matches!(act.phase, Phase::Switching | Phase::Handshaking) {
                log!(
                    act.step_level,
                    "[{}] handshake step: deadline passed",
                    act.id
                );
                act.finish(DisconnectReason::HandshakeTimedOut, ctx);
            }
        });
        self.deadline = Some(timer);
    }

    /// Closes the connection if nothing moved for `idle` while it is in `phase`;
    /// otherwise looks again when that would next be the case.
    fn check_idle(&mut self, idle: Duration, phase: Phase, ctx: &mut Context<Self>) {
        if self.phase != phase {
            return;
        }
        if self.flow.inputs_unfinished() {
            // Reading is paused while the handler works: that is not the peer being idle.
            self.last_activity = Instant::now();
        }
        let quiet = self.last_activity.elapsed();
        if quiet >= idle {
            debug!("[{}] idle for {quiet:?}, closing", self.id);
            self.begin_close(DisconnectReason::IdleTimedOut, ctx);
        } else {
            ctx.run_later(idle - quiet, move |act, ctx| {
                act.check_idle(idle, phase, ctx)
            });
        }
    }

    fn notify_disconnect(&mut self, reason: DisconnectReason) {
        if mem::replace(&mut self.disconnected, true) {
            return;
        }
        // Bytes still queued will never be written; release them and their waiters.
        let still_commanded =
            self.flow
                .take_commands()
                .into_iter()
                .filter_map(|command| match command {
                    Command::Put(data) => Some(data),
                    _ => None,
                });
        let unsent: usize = self
            .outbound
            .drain(..)
            .chain(self.after_handshake.drain(..))
            .chain(still_commanded)
            .map(|chunk| chunk.len())
            .sum();
        self.flow.remove_queued(unsent);
        self.flow.set_tls_state(TlsState::Ended);
        self.flow.wake_drain_waiters();
        if unsent > 0 {
            debug!(
                "[{}] disconnected: {reason} ({unsent} bytes never sent)",
                self.id
            );
        } else {
            debug!("[{}] disconnected: {reason}", self.id);
        }
        self.handler.do_send(Disconnect {
            id: self.id,
            peer: self.peer,
            reason,
            unsent,
        });
    }

    fn start_tls(&mut self, discarded: usize, ctx: &mut Context<Self>) {
        if self.phase != Phase::Plain {
            debug!("[{}] STARTTLS ignored in phase {:?}", self.id, self.phase);
            return;
        }
        if discarded > 0 {
            warn!(
                "[{}] discarded {discarded} bytes of plaintext that followed the STARTTLS \
                 command; they are never delivered",
                self.id
            );
        }
        debug!(
            "[{}] STARTTLS: writing the last plaintext, then the handshake",
            self.id
        );
        self.phase = Phase::Switching;
        // Waiting for a handshake slot counts against the deadline too.
        self.arm_handshake_deadline(ctx);
        self.flow.wake_driver();
    }
}

impl<H: SslHandler> Actor for Connection<H> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        debug!(
            "[{}] {} {}",
            self.id,
            if self.side.is_server() {
                "accepted from"
            } else {
                "connected to"
            },
            self.peer
        );
        if let Some(seat) = &self.seat {
            seat.shared.register(self.id, Arc::clone(&self.flow));
            if seat.shared.shutting_down() {
                // Accepted just before the shutdown, started just after it told everyone.
                self.flow.command(Command::Shutdown);
            }
        }
        ctx.spawn(Driver);
        if self.phase == Phase::Handshaking {
            self.arm_handshake_deadline(ctx);
        } else if let Some(connected) = self.connected.clone() {
            // The plaintext part is bounded even without an idle timeout, or silent
            // clients could hold their connections, and the listener's slots, for ever.
            let idle = self.side.idle_timeout().unwrap_or(PLAINTEXT_IDLE);
            ctx.run_later(idle, move |act, ctx| {
                act.check_idle(idle, Phase::Plain, ctx)
            });
            let handle = self.handle();
            connected.do_send(Connected {
                id: self.id,
                handle,
                peer: self.peer,
            });
        }
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> Running {
        Running::Stop
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Reached without `finish` only when the actor system itself is stopping.
        self.notify_disconnect(DisconnectReason::Shutdown);
        if let Some(seat) = &self.seat {
            seat.shared.deregister(self.id);
        }
    }
}

impl<H: SslHandler> Connection<H> {
    /// Carries out one command from the handle (or the listener), in the order given.
    fn obey(&mut self, command: Command, ctx: &mut Context<Self>) {
        match (command, self.phase) {
            (Command::Put(data), Phase::Plain | Phase::Established) => {
                // The hard limit is applied where the bytes are put (see `Flow::command`).
                if !data.is_empty() {
                    self.outbound.push_back(data);
                }
            }
            (Command::Put(data), Phase::Switching | Phase::Handshaking) => {
                self.after_handshake.push_back(data);
            }
            (Command::Put(data), phase) => {
                self.flow.remove_queued(data.len());
                debug!(
                    "[{}] dropped {} bytes put while {phase:?}",
                    self.id,
                    data.len()
                );
            }
            (Command::StartTls { discarded }, _) => self.start_tls(discarded, ctx),
            (Command::Close, Phase::Plain | Phase::Established) => {
                debug!("[{}] close requested by handler", self.id);
                self.begin_close(DisconnectReason::ClosedByHandler, ctx);
            }
            (Command::Close, Phase::Switching) => {
                // Still plaintext: the go-ahead and what came before it are sent first.
                debug!("[{}] close requested by handler before the switch", self.id);
                self.begin_close(DisconnectReason::ClosedByHandler, ctx);
            }
            (Command::Close, Phase::Handshaking) => {
                self.finish(DisconnectReason::ClosedByHandler, ctx);
            }
            (Command::Close, _) => {}
            (Command::Shutdown, Phase::Plain | Phase::Established) => {
                debug!("[{}] closing for shutdown", self.id);
                self.begin_close(DisconnectReason::Shutdown, ctx);
            }
            (Command::Shutdown, Phase::Switching) => {
                self.begin_close(DisconnectReason::Shutdown, ctx);
            }
            (Command::Shutdown, Phase::Handshaking) => {
                self.finish(DisconnectReason::Shutdown, ctx);
            }
            (Command::Shutdown, Phase::Flushing | Phase::Lingering) => {
                // Already closing, perhaps towards a peer that stopped reading: a shutdown
                // gives it `LINGER` more at most. Cut while still writing, the connection
                // ends for the shutdown; cut while lingering, it had ended as it meant to.
                ctx.run_later(LINGER, |act, ctx| match act.phase {
                    Phase::Flushing => act.finish(DisconnectReason::Shutdown, ctx),
                    Phase::Lingering => act.finish(act.closing_reason.clone(), ctx),
                    _ => {}
                });
            }
            (Command::Shutdown, Phase::Done) => {}
            (Command::Overflow, Phase::Done) => {}
            (Command::Overflow, _) => {
                let limit = self.flow.marks().limit;
                warn!(
                    "[{}] handler queued more than {limit} bytes, closing",
                    self.id
                );
                self.finish(DisconnectReason::WriteQueueOverflow, ctx);
            }
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
