//! The `Listener` actor: binds, accepts and starts one `Connection` per socket.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::pin::Pin;
use std::task::{self, Poll};
use std::time::Duration;

use actix::{Actor, ActorContext, ActorFuture, Addr, AsyncContext, Context, Handler, Message};
use log::{debug, error, info, warn};
use tokio::net::TcpListener;
use tokio::time::{sleep, Sleep};

use crate::connection::Connection;
use crate::error::ListenerError;
use crate::events::ConnectionId;
use crate::options::TlsConfig;
use crate::SslHandler;

/// How long accepting pauses after an error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts TCP connections and turns each into a TLS connection whose events go to one
/// handler actor.
///
/// This is `Server_SSLify_NonBlock` and the POE server component's accept loop in one.
/// Each accepted socket gets the next [`ConnectionId`] (counted from 1) and its own
/// connection actor on the listener's arbiter; the handshake then runs without ever
/// blocking that thread, so a slow or silent client delays no one.
pub struct Listener<H: SslHandler> {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: TlsConfig,
    handler: Addr<H>,
    next_id: u64,
    backoff: Option<Pin<Box<Sleep>>>,
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

        info!("listening on {local_addr}");
        let actor = Listener {
            listener,
            local_addr,
            config,
            handler,
            next_id: 0,
            backoff: None,
        }
        .start();
        Ok(ListenerHandle { actor, local_addr })
    }

    /// Accepts every pending connection. `Ready` means the listener is done.
    fn accept_all(&mut self, task: &mut task::Context<'_>) -> Poll<()> {
        loop {
            if let Some(backoff) = &mut self.backoff {
                if backoff.as_mut().poll(task).is_pending() {
                    return Poll::Pending;
                }
                self.backoff = None;
            }
            match self.listener.poll_accept(task) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((tcp, peer))) => self.start_connection(tcp, peer),
                Poll::Ready(Err(error)) if is_per_connection(&error) => {
                    debug!("accept on {} lost a connection: {error}", self.local_addr);
                }
                Poll::Ready(Err(error)) => {
                    warn!("accept on {} failed, pausing: {error}", self.local_addr);
                    self.backoff = Some(Box::pin(sleep(ACCEPT_BACKOFF)));
                }
            }
        }
    }

    fn start_connection(&mut self, tcp: tokio::net::TcpStream, peer: SocketAddr) {
        self.next_id += 1;
        let id = ConnectionId(self.next_id);
        if let Err(error) = tcp.set_nodelay(true) {
            debug!("[{id}] cannot turn off Nagle's algorithm: {error}");
        }
        if let Err(error) =
            Connection::start(id, tcp, peer, self.config.clone(), self.handler.clone())
        {
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

/// A running listener: its address and a way to stop it.
pub struct ListenerHandle<H: SslHandler> {
    actor: Addr<Listener<H>>,
    local_addr: SocketAddr,
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

    /// Stops accepting new connections; those already accepted carry on.
    pub fn stop(&self) {
        self.actor.do_send(StopListening);
    }
}

impl<H: SslHandler> Clone for ListenerHandle<H> {
    fn clone(&self) -> Self {
        ListenerHandle {
            actor: self.actor.clone(),
            local_addr: self.local_addr,
        }
    }
}

impl<H: SslHandler> fmt::Debug for ListenerHandle<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerHandle")
            .field("local_addr", &self.local_addr)
            .finish()
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
