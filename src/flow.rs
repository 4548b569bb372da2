//! Flow control between one connection and its handler: how many bytes wait to be
//! written, and how many reads the handler has not finished with.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::task::AtomicWaker;

use crate::events::Command;

/// Reads delivered to the handler but not yet dropped by it; past this the connection
/// stops reading from its socket until the handler catches up.
pub(crate) const UNFINISHED_INPUTS: usize = 4;

/// Write-queue thresholds of one connection, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaterMarks {
    pub(crate) low: usize,
    pub(crate) high: usize,
    pub(crate) limit: usize,
}

/// Where a connection stands with TLS, as far as `start_tls` is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TlsState {
    /// Plaintext; a STARTTLS switch may be asked for.
    Plain = 0,
    /// The switch was asked for.
    Requested = 1,
    /// TLS from the start, or switched.
    Tls = 2,
    /// The connection is over.
    Ended = 3,
}

pub(crate) struct Flow {
    marks: WaterMarks,
    tls_state: AtomicU8,
    /// Commands from the handle, in the order given; the driver takes them on its next turn.
    commands: Mutex<VecDeque<Command>>,
    /// The handler has asked for a close.
    closing: AtomicBool,
    queued: AtomicUsize,
    unfinished_inputs: AtomicUsize,
    /// The connection's driver, woken when the handler finishes with an input.
    driver: AtomicWaker,
    /// Handler-side futures waiting for the write queue to drain.
    drain_waiters: Mutex<Vec<Waker>>,
}

impl Flow {
    pub(crate) fn new(marks: WaterMarks, tls_state: TlsState) -> Arc<Flow> {
        Arc::new(Flow {
            marks,
            tls_state: AtomicU8::new(tls_state as u8),
            commands: Mutex::new(VecDeque::new()),
            closing: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            unfinished_inputs: AtomicUsize::new(0),
            driver: AtomicWaker::new(),
            drain_waiters: Mutex::new(Vec::new()),
        })
    }

    /// Queues a command for the connection and wakes its driver. Commands to a connection
    /// that has ended are dropped.
    pub(crate) fn command(&self, mut command: Command) {
        if self.ended() {
            if let Command::Put(data) = &command {
                self.remove_queued(data.len());
            }
            return;
        }
        match &command {
            Command::Put(data) if self.queued() > self.marks.limit => {
                // Past the hard limit the bytes are not kept: the connection ends instead.
                self.remove_queued(data.len());
                command = Command::Overflow;
            }
            Command::Close => self.closing.store(true, Ordering::Release),
            _ => {}
        }
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(command);
        self.wake_driver();
    }

    /// Takes every command queued so far.
    pub(crate) fn take_commands(&self) -> VecDeque<Command> {
        let mut commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        if commands.is_empty() {
            VecDeque::new()
        } else {
            std::mem::take(&mut *commands)
        }
    }

    /// Whether the handler has asked for a close.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Whether the handler holds any input it has not finished with.
    pub(crate) fn inputs_unfinished(&self) -> bool {
        self.unfinished_inputs.load(Ordering::Acquire) > 0
    }

    /// Whether the connection has ended.
    pub(crate) fn ended(&self) -> bool {
        self.tls_state.load(Ordering::Acquire) == TlsState::Ended as u8
    }

    /// Counts bytes put by the handler; returns the new queue length.
    pub(crate) fn add_queued(&self, bytes: usize) -> usize {
        self.queued
            .fetch_add(bytes, Ordering::AcqRel)
            .saturating_add(bytes)
    }

    /// Counts bytes written to the socket (or dropped); wakes drain waiters at the low mark.
    pub(crate) fn remove_queued(&self, bytes: usize) {
        let before = self.queued.fetch_sub(bytes, Ordering::AcqRel);
        let now = before.saturating_sub(bytes);
        if now <= self.marks.low && before > self.marks.low {
            self.wake_drain_waiters();
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub(crate) fn marks(&self) -> WaterMarks {
        self.marks
    }

    /// Wakes anyone waiting for a drain, e.g. because the connection ended.
    pub(crate) fn wake_drain_waiters(&self) {
        let waiters = std::mem::take(
            &mut *self
                .drain_waiters
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for waker in waiters {
            waker.wake();
        }
    }

    pub(crate) fn register_driver(&self, waker: &Waker) {
        self.driver.register(waker);
    }

    pub(crate) fn wake_driver(&self) {
        self.driver.wake();
    }

    /// Whether the handler has room for another read, holding at most `limit` at once.
    pub(crate) fn input_allowed(&self, limit: usize) -> bool {
        self.unfinished_inputs.load(Ordering::Acquire) < limit
    }

    pub(crate) fn set_tls_state(&self, state: TlsState) {
        self.tls_state.store(state as u8, Ordering::Release);
    }

    /// Whether the handler has asked for the STARTTLS switch (set before the handler
    /// lets go of the input that carried the command).
    pub(crate) fn tls_requested(&self) -> bool {
        self.tls_state.load(Ordering::Acquire) == TlsState::Requested as u8
    }

    /// Claims the one STARTTLS switch of a plaintext connection.
    pub(crate) fn request_tls(&self) -> Result<(), TlsState> {
        self.tls_state
            .compare_exchange(
                TlsState::Plain as u8,
                TlsState::Requested as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ())
            .map_err(|state| match state {
                0 => TlsState::Plain,
                1 => TlsState::Requested,
                2 => TlsState::Tls,
                _ => TlsState::Ended,
            })
    }

    /// Takes a credit for one input; it comes back when the returned guard is dropped.
    pub(crate) fn input_credit(self: &Arc<Self>) -> InputCredit {
        self.unfinished_inputs.fetch_add(1, Ordering::AcqRel);
        InputCredit {
            flow: Arc::clone(self),
        }
    }
}

/// Returned to the connection when the handler drops the input it was attached to. A
/// clone of the input holds a credit of its own, so reading stays paused until every
/// copy is gone.
pub(crate) struct InputCredit {
    flow: Arc<Flow>,
}

impl Clone for InputCredit {
    fn clone(&self) -> Self {
        self.flow.input_credit()
    }
}

impl Drop for InputCredit {
    fn drop(&mut self) {
        self.flow.unfinished_inputs.fetch_sub(1, Ordering::AcqRel);
        self.flow.wake_driver();
    }
}

/// Resolves when a connection's write queue is at or below its low-water mark, or the
/// connection has ended. Made by [`ConnectionHandle::drained`](crate::ConnectionHandle::drained).
#[must_use = "futures do nothing unless polled"]
pub struct Drained {
    flow: Arc<Flow>,
}

impl Drained {
    pub(crate) fn new(flow: Arc<Flow>) -> Self {
        Drained { flow }
    }

    fn ready(&self) -> bool {
        self.flow.queued() <= self.flow.marks.low || self.flow.ended()
    }
}

impl Future for Drained {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.ready() {
            return Poll::Ready(());
        }
        {
            let mut waiters = self
                .flow
                .drain_waiters
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !waiters.iter().any(|waker| waker.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
        }
        // Checked again so that a drain between the first check and the push is not missed.
        if self.ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl std::fmt::Debug for Drained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drained")
            .field("queued", &self.flow.queued())
            .finish()
    }
}

impl std::fmt::Debug for InputCredit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputCredit")
    }
}
