//! A server whose test keeps the listener's handle: for the listener's counts, its caps,
//! stopping and graceful shutdown. The handler is the recording one of [`TestServer`] or
//! one the test writes itself.
//!
//! [`TestServer`]: super::TestServer

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sslify::{Listener, ListenerHandle, ListenerStats, Options, SslHandler};

use super::{Journal, Recorder, Reply};

/// The recording handler of [`TestServer`](super::TestServer), for [`Served::start`].
pub fn recorder(journal: Journal, reply: Reply) -> impl SslHandler {
    Recorder { journal, reply }
}

/// A listener running in its own thread and actix system, with its handle.
pub struct Served<H: SslHandler> {
    pub addr: SocketAddr,
    pub listener: ListenerHandle<H>,
    system: actix::System,
    thread: Option<thread::JoinHandle<()>>,
}

impl<H: SslHandler> Served<H> {
    /// Builds `options` and serves on a free loopback port with the handler `make_handler`
    /// returns (called inside the server's system).
    pub fn start<F>(options: Options, make_handler: F) -> Served<H>
    where
        F: FnOnce() -> H + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let system = actix::System::new();
            system.block_on(async move {
                let config = options.build().expect("test options build");
                let handler = make_handler().start();
                let listener =
                    Listener::bind("127.0.0.1:0", config, handler).expect("bind loopback");
                tx.send((listener, actix::System::current())).unwrap();
            });
            system.run().unwrap();
        });
        let (listener, system) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server started");
        Served {
            addr: listener.local_addr(),
            listener,
            system,
            thread: Some(thread),
        }
    }

    /// The listener's counts now.
    pub fn stats(&self) -> ListenerStats {
        self.listener.stats()
    }

    /// Polls the listener's counts until `done` holds for them and returns them; panics
    /// with `what` and the last counts if that takes longer than `limit`.
    pub fn wait_stats(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&ListenerStats) -> bool,
    ) -> ListenerStats {
        let deadline = Instant::now() + limit;
        loop {
            let stats = self.stats();
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "waited {limit:?} for {what}; the listener's counts are {stats:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts [`ListenerHandle::shutdown`] with `grace` inside the server's system; the
    /// receiver gets a message once its future has resolved.
    pub fn shutdown(&self, grace: Duration) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        let future = self.listener.shutdown(grace);
        let spawned = self.system.arbiter().spawn(async move {
            future.await;
            let _ = tx.send(());
        });
        assert!(spawned, "the server's system is not running");
        rx
    }
}

impl<H: SslHandler> Drop for Served<H> {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
