//! The `Listener` actor: binds, accepts and starts one `Connection` per socket.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{self, Poll};
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFuture, Addr, Arbiter, ArbiterHandle, AsyncContext, Context, Handler,
    Message, Recipient,
};
use futures::task::AtomicWaker;
use log::{debug, error, info};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, Sleep};

use crate::connection::{Connection, Seat, Side};
use crate::error::ListenerError;
use crate::events::{Command, Connected, ConnectionId};
use crate::flow::Flow;
use crate::options::TlsConfig;
use crate::SslHandler;

/// Reaching a cap, or failing to accept, is logged at warn at most this often.
const PAUSE_WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// How long accepting pauses after an error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts TCP connections and turns each into a TLS connection whose events go to one
/// handler actor.
///
/// This is `Server_SSLify_NonBlock` and the POE server component's accept loop in one.
/// Each accepted socket gets the next [`ConnectionId`] (counted from 1) and its own
/// connection actor; the handshake then runs without ever blocking that thread, so a slow
/// or silent client delays no one. The listener stops accepting while the handshake or
/// connection cap is reached and resumes as soon as there is room.
pub struct Listener<H: SslHandler> {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: TlsConfig,
    handler: Addr<H>,
    /// Set for listeners whose connections start in plaintext.
    connected: Option<Recipient<Connected>>,
    shared: Arc<Shared>,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    backoff: Option<Pin<Box<Sleep>>>,
    paused: bool,
    last_pause_warning: Option<Instant>,
    last_accept_warning: Option<Instant>,
}

impl<H: SslHandler> Listener<H> {
    /// Binds `addr` and starts accepting; returns once the socket is listening.
    ///
    /// Port 0 picks a free port; [`ListenerHandle::local_addr`] tells which. When `addr`
    /// resolves to several addresses, the first that binds is used.
    ///
    /// # Errors
    ///
    /// [`ListenerError`] naming the address when it cannot be resolved or bound.
    ///
    /// # Panics
    ///
    /// When called outside a running actix system.
    pub fn bind<A>(
        addr: A,
        config: TlsConfig,
        handler: Addr<H>,
    ) -> Result<ListenerHandle<H>, ListenerError>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        Self::bind_with(addr, config, handler, None)
    }

    /// Like [`bind`](Self::bind), but connections start in plaintext, for protocols that
    /// upgrade with a STARTTLS-style command (FTP `AUTH TLS`, SMTP `STARTTLS`, …).
    ///
    /// Each connection's first event is [`Connected`]; [`ClientInput`](crate::ClientInput)
    /// then carries plaintext (`tls == false`) until the handler calls
    /// [`ConnectionHandle::start_tls`](crate::ConnectionHandle::start_tls); from
    /// [`SslDone`](crate::SslDone) on, everything is as on a listener that starts in TLS,
    /// with the same client-certificate modes and CRL checks. The handshake deadline runs
    /// from the switch. The plaintext part ends with
    /// [`DisconnectReason::IdleTimedOut`](crate::DisconnectReason::IdleTimedOut) after the
    /// idle timeout without traffic, or 60 s when none is set.
    ///
    /// # Errors
    ///
    /// As for [`bind`](Self::bind).
    ///
    /// # Panics
    ///
    /// When called outside a running actix system.
    pub fn bind_starttls<A>(
        addr: A,
        config: TlsConfig,
        handler: Addr<H>,
    ) -> Result<ListenerHandle<H>, ListenerError>
    where
        A: ToSocketAddrs + fmt::Display,
        H: Handler<Connected>,
    {
        let connected = handler.clone().recipient();
        Self::bind_with(addr, config, handler, Some(connected))
    }

    fn bind_with<A>(
        addr: A,
        config: TlsConfig,
        handler: Addr<H>,
        connected: Option<Recipient<Connected>>,
    ) -> Result<ListenerHandle<H>, ListenerError>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        let std_listener = bind_first(&addr)?;
        let local_addr = std_listener
            .local_addr()
            .map_err(|source| ListenerError::Setup {
                addr: local_or_unknown(&std_listener),
                source,
            })?;
        std_listener
            .set_nonblocking(true)
            .map_err(|source| ListenerError::Setup {
                addr: local_addr,
                source,
            })?;
        let listener =
            TcpListener::from_std(std_listener).map_err(|source| ListenerError::Setup {
                addr: local_addr,
                source,
            })?;

        let arbiters: Vec<Arbiter> = if config.workers() > 1 {
            (0..config.workers()).map(|_| Arbiter::new()).collect()
        } else {
            Vec::new()
        };
        let workers = arbiters.iter().map(Arbiter::handle).collect();
        let shared = Arc::new(Shared::new(
            arbiters,
            config.max_handshakes(),
            config.max_connections(),
        ));
        info!(
            "listening on {local_addr} ({} worker thread{})",
            config.workers(),
            if config.workers() == 1 { "" } else { "s" }
        );
        let actor = Listener {
            listener,
            local_addr,
            config,
            handler,
            connected,
            shared: Arc::clone(&shared),
            workers,
            next_worker: 0,
            backoff: None,
            paused: false,
            last_pause_warning: None,
            last_accept_warning: None,
        }
        .start();
        Ok(ListenerHandle {
            actor,
            local_addr,
            shared,
        })
    }

    /// Accepts every pending connection there is room for. `Ready` means the listener is
    /// done.
    fn accept_all(&mut self, task: &mut task::Context<'_>) -> Poll<()> {
        loop {
            if let Some(backoff) = &mut self.backoff {
                if backoff.as_mut().poll(task).is_pending() {
                    return Poll::Pending;
                }
                self.backoff = None;
            }
            if !self.shared.has_room(task) {
                if !self.paused {
                    self.paused = true;
                    // Worth an operator's attention, but not once per flap.
                    let level = match self.last_pause_warning {
                        Some(at) if at.elapsed() < PAUSE_WARNING_INTERVAL => log::Level::Debug,
                        _ => {
                            self.last_pause_warning = Some(Instant::now());
                            log::Level::Warn
                        }
                    };
                    log::log!(
                        level,
                        "accepting on {} paused at the cap: {} handshakes, {} connections",
                        self.local_addr,
                        self.shared.handshaking.load(Ordering::Acquire),
                        self.shared.open.load(Ordering::Acquire)
                    );
                }
                return Poll::Pending;
            }
            if self.paused {
                self.paused = false;
                debug!("accepting on {} resumed", self.local_addr);
            }
            match self.listener.poll_accept(task) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((tcp, peer))) => self.start_connection(tcp, peer),
                Poll::Ready(Err(error)) if is_per_connection(&error) => {
                    debug!("accept on {} lost a connection: {error}", self.local_addr);
                }
                Poll::Ready(Err(error)) => {
                    let level = match self.last_accept_warning {
                        Some(at) if at.elapsed() < PAUSE_WARNING_INTERVAL => log::Level::Debug,
                        _ => {
                            self.last_accept_warning = Some(Instant::now());
                            log::Level::Warn
                        }
                    };
                    log::log!(
                        level,
                        "accept on {} failed, pausing: {error}",
                        self.local_addr
                    );
                    self.backoff = Some(Box::pin(sleep(ACCEPT_BACKOFF)));
                }
            }
        }
    }

    fn start_connection(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let id = ConnectionId(self.shared.accepted.fetch_add(1, Ordering::AcqRel) + 1);
        if let Err(error) = tcp.set_nodelay(true) {
            debug!("[{id}] cannot turn off Nagle's algorithm: {error}");
        }
        // Counted here, before the connection starts, so the caps hold even while sockets
        // are on their way to a worker.
        let seat = Seat {
            shared: Arc::clone(&self.shared),
            handshake: Some(Counted::handshake(&self.shared)),
            open: Counted::open(&self.shared),
        };
        let start = Start {
            id,
            peer,
            config: self.config.clone(),
            handler: self.handler.clone(),
            connected: self.connected.clone(),
            seat,
        };

        if self.workers.is_empty() {
            start.run(tcp);
            return;
        }
        // A socket belongs to the reactor of the thread that registered it; hand the
        // worker the plain socket and let it register its own.
        let std_tcp = match tcp.into_std() {
            Ok(std_tcp) => std_tcp,
            Err(error) => {
                error!("[{id}] cannot move socket from {peer} to a worker: {error}");
                return;
            }
        };
        let worker = &self.workers[self.next_worker % self.workers.len()];
        self.next_worker = self.next_worker.wrapping_add(1);
        let sent = worker.spawn_fn(move || match TcpStream::from_std(std_tcp) {
            Ok(tcp) => start.run(tcp),
            Err(error) => error!("[{id}] cannot register socket from {peer}: {error}"),
        });
        if !sent {
            error!("[{id}] worker thread is gone; dropping connection from {peer}");
        }
    }
}

/// Everything a new connection needs, sendable to a worker thread.
struct Start<H: SslHandler> {
    id: ConnectionId,
    peer: SocketAddr,
    config: TlsConfig,
    handler: Addr<H>,
    connected: Option<Recipient<Connected>>,
    seat: Seat,
}

impl<H: SslHandler> Start<H> {
    fn run(self, tcp: TcpStream) {
        let Start {
            id,
            peer,
            config,
            handler,
            connected,
            seat,
        } = self;
        let side = Side::Server(config);
        if let Err(error) = Connection::start(id, tcp, peer, side, handler, connected, Some(seat)) {
            error!("[{id}] cannot set up TLS for {peer}: {error}");
        }
    }
}

impl<H: SslHandler> Actor for Listener<H> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.spawn(Acceptor);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // The worker threads carry on with their connections; they stop when the last
        // connection, listener handle and listener are gone (see `Shared`'s drop).
        info!("stopped listening on {}", self.local_addr);
    }
}

/// Stops accepting new connections. Connections already accepted carry on.
#[derive(Debug, Clone, Copy)]
pub struct StopListening;

impl Message for StopListening {
    type Result = ();
}

impl<H: SslHandler> Handler<StopListening> for Listener<H> {
    type Result = ();

    fn handle(&mut self, _: StopListening, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Counts of one listener's connections at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Connections accepted since the listener started.
    pub accepted: u64,
    /// Connections open now, handshaking or established.
    pub open: usize,
    /// Connections whose handshake is in progress now.
    pub handshaking: usize,
}

/// A running listener: its address, its counts, and ways to stop it.
pub struct ListenerHandle<H: SslHandler> {
    actor: Addr<Listener<H>>,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl<H: SslHandler> ListenerHandle<H> {
    /// The address the listener is bound to, with the real port when port 0 was asked for.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The listener actor's address.
    pub fn actor(&self) -> &Addr<Listener<H>> {
        &self.actor
    }

    /// Current counts; cheap enough to call from a handler on every event.
    pub fn stats(&self) -> ListenerStats {
        ListenerStats {
            accepted: self.shared.accepted.load(Ordering::Acquire),
            open: self.shared.open.load(Ordering::Acquire),
            handshaking: self.shared.handshaking.load(Ordering::Acquire),
        }
    }

    /// Stops accepting new connections; those already accepted carry on.
    pub fn stop(&self) {
        self.actor.do_send(StopListening);
    }

    /// Shuts down gracefully: stops accepting, gives open connections `grace` to end on
    /// their own, then closes the rest (handshakes are cut, established connections get
    /// their queued bytes and close_notify) with
    /// [`DisconnectReason::Shutdown`](crate::DisconnectReason::Shutdown).
    ///
    /// The returned future resolves when every connection has ended, each with its one
    /// [`Disconnect`](crate::Disconnect). After the grace period a connection gets at most
    /// 2 s to write what is queued and 2 s more for its peer's close, so the future
    /// resolves within about 4 s of the grace period even with unresponsive clients.
    pub fn shutdown(&self, grace: Duration) -> impl Future<Output = ()> + 'static {
        self.stop();
        let shared = Arc::clone(&self.shared);
        async move {
            let open = shared.open.load(Ordering::Acquire);
            info!("shutting down: {open} connections open, {grace:?} to finish");
            let deadline = tokio::time::Instant::now() + grace;
            while shared.open.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline
            {
                sleep(Duration::from_millis(20)).await;
            }
            shared.shutting_down.store(true, Ordering::Release);
            let left = shared.close_all();
            if left > 0 {
                info!("grace period over, closing {left} connections");
            }
            while shared.open.load(Ordering::Acquire) > 0 {
                sleep(Duration::from_millis(20)).await;
            }
            info!("all connections closed");
        }
    }
}

impl<H: SslHandler> Clone for ListenerHandle<H> {
    fn clone(&self) -> Self {
        ListenerHandle {
            actor: self.actor.clone(),
            local_addr: self.local_addr,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<H: SslHandler> fmt::Debug for ListenerHandle<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerHandle")
            .field("local_addr", &self.local_addr)
            .field("stats", &self.stats())
            .finish()
    }
}

/// State shared by a listener and its connections, on whatever thread they run.
pub(crate) struct Shared {
    /// The worker threads, stopped when nothing uses them any more.
    workers: Vec<Arbiter>,
    accepted: AtomicU64,
    open: AtomicUsize,
    handshaking: AtomicUsize,
    max_handshakes: usize,
    max_connections: usize,
    /// The acceptor, woken when a slot frees up.
    acceptor: AtomicWaker,
    connections: Mutex<HashMap<ConnectionId, Arc<Flow>>>,
    /// The grace period of a shutdown is over: connections starting now close at once.
    shutting_down: AtomicBool,
}

impl Shared {
    fn new(workers: Vec<Arbiter>, max_handshakes: usize, max_connections: usize) -> Self {
        Shared {
            workers,
            accepted: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            handshaking: AtomicUsize::new(0),
            max_handshakes,
            max_connections,
            acceptor: AtomicWaker::new(),
            connections: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Whether another connection may be accepted; if not, the acceptor is woken when one
    /// may.
    fn has_room(&self, task: &task::Context<'_>) -> bool {
        let room = || {
            self.handshaking.load(Ordering::Acquire) < self.max_handshakes
                && self.open.load(Ordering::Acquire) < self.max_connections
        };
        if room() {
            return true;
        }
        self.acceptor.register(task.waker());
        // A slot freed between the check and the registration would wake no one.
        room()
    }

    pub(crate) fn register(&self, id: ConnectionId, commands: Arc<Flow>) {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, commands);
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn deregister(&self, id: ConnectionId) {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Tells every open connection to close for shutdown; returns how many were told.
    fn close_all(&self) -> usize {
        let connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for commands in connections.values() {
            commands.command(Command::Shutdown);
        }
        connections.len()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.stop();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Handshake,
    Open,
}

/// One unit of a listener's handshake or connection count, given back when dropped, so
/// that no way out of a connection can leak a slot.
pub(crate) struct Counted {
    shared: Arc<Shared>,
    slot: Slot,
}

impl Counted {
    /// One handshake in progress.
    pub(crate) fn handshake(shared: &Arc<Shared>) -> Self {
        Counted::new(shared, Slot::Handshake)
    }

    /// One handshake in progress, if the cap leaves room for it.
    pub(crate) fn try_handshake(shared: &Arc<Shared>) -> Option<Self> {
        let room = shared.handshaking.load(Ordering::Acquire) < shared.max_handshakes;
        room.then(|| Counted::handshake(shared))
    }

    /// One open connection.
    pub(crate) fn open(shared: &Arc<Shared>) -> Self {
        Counted::new(shared, Slot::Open)
    }

    fn new(shared: &Arc<Shared>, slot: Slot) -> Self {
        shared.counter(slot).fetch_add(1, Ordering::AcqRel);
        Counted {
            shared: Arc::clone(shared),
            slot,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.shared
            .counter(self.slot)
            .fetch_sub(1, Ordering::AcqRel);
        self.shared.acceptor.wake();
    }
}

impl Shared {
    fn counter(&self, slot: Slot) -> &AtomicUsize {
        match slot {
            Slot::Handshake => &self.handshaking,
            Slot::Open => &self.open,
        }
    }
}

/// Polls the listening socket from inside the listener's actor context.
struct Acceptor;

impl<H: SslHandler> ActorFuture<Listener<H>> for Acceptor {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Listener<H>,
        _ctx: &mut Context<Listener<H>>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        act.accept_all(task)
    }
}

fn bind_first<A: ToSocketAddrs + fmt::Display>(addr: &A) -> Result<StdTcpListener, ListenerError> {
    let candidates = addr
        .to_socket_addrs()
        .map_err(|source| ListenerError::Resolve {
            addr: addr.to_string(),
            source,
        })?;
    let mut last = None;
    for candidate in candidates {
        match StdTcpListener::bind(candidate) {
            Ok(listener) => return Ok(listener),
            Err(source) => {
                last = Some(ListenerError::Bind {
                    addr: candidate,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| ListenerError::Resolve {
        addr: addr.to_string(),
        source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
    }))
}

fn local_or_unknown(listener: &StdTcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Accept errors that concern one incoming connection only, not the listener.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}
