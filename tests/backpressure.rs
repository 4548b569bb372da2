//! Flow control both ways. A handler that writes a lot to a slow reader waits for its
//! queue to drain and the server's memory stays bounded; one that ignores `full` is cut
//! at the hard limit; a client sending flat out to a slow handler is held back by the
//! input credit, with memory bounded and every byte delivered in order.
//!
//! The server runs in this test process, so the process's resident set size (VmRSS in
//! /proc/self/status) is the server's memory plus the client's. The tests that measure it
//! run one at a time.

mod support;

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use openssl::ssl::{ShutdownState, SslStream};
use sslify::{
    CertRejected, ClientInput, Connected, ConnectionHandle, Disconnect, DisconnectReason, Options,
    SslDone,
};
use support::pattern_byte;
use support::served::Served;
use support::starttls::{PlainClient, PlainFirstServer};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// The longest wait for something that should happen.
const WAIT: Duration = Duration::from_secs(20);
/// The most the process's resident set may grow while a transfer is under way. Without
/// flow control the server would hold most of the bytes in transit, five times this or
/// more.
const RSS_GROWTH_LIMIT: u64 = 40 * MIB as u64;

/// Serializes the tests of this file, so that one test's memory does not count as
/// another's.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The bulk pattern from `offset % 251` on, long enough for any slice of up to `len` bytes.
fn pattern_table(len: usize) -> Arc<Vec<u8>> {
    Arc::new((0..len + 251).map(pattern_byte).collect())
}

/// `len` bytes of the pattern starting at stream offset `offset`.
fn pattern_at(table: &[u8], offset: usize, len: usize) -> &[u8] {
    let start = offset % 251;
    &table[start..start + len]
}

/// The process's resident set size in bytes, if /proc tells.
fn rss() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Samples the resident set size every few milliseconds and keeps the highest.
struct PeakRss {
    baseline: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PeakRss {
    /// Starts sampling; `None` (with the reason printed) where /proc is missing.
    fn start() -> Option<PeakRss> {
        let Some(baseline) = rss() else {
            eprintln!("skipping the memory check: /proc/self/status has no VmRSS here");
            return None;
        };
        let peak = Arc::new(AtomicU64::new(baseline));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if let Some(now) = rss() {
                        peak.fetch_max(now, Ordering::AcqRel);
                    }
                    thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Some(PeakRss {
            baseline,
            peak,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops sampling and asserts the peak grew less than the limit over the baseline.
    fn assert_bounded(mut self, what: &str, moved: usize) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        if let Some(now) = rss() {
            self.peak.fetch_max(now, Ordering::AcqRel);
        }
        let peak = self.peak.load(Ordering::Acquire);
        let growth = peak.saturating_sub(self.baseline);
        eprintln!(
            "{what}: resident set {} MiB before, {} MiB at the peak, {} MiB moved",
            self.baseline / MIB as u64,
            peak / MIB as u64,
            moved / MIB
        );
        assert!(
            growth < RSS_GROWTH_LIMIT,
            "{what}: the resident set grew by {} MiB (from {} to {} MiB) while {} MiB moved",
            growth / MIB as u64,
            self.baseline / MIB as u64,
            peak / MIB as u64,
            moved / MIB
        );
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// A handler that writes `total` bytes of the pattern in `chunk`-sized puts.

/// What a writing handler saw of its one connection.
#[derive(Debug)]
struct WriterReport {
    /// Bytes put.
    put: usize,
    /// How many puts reported `full`.
    fulls: usize,
    /// The largest `queued` any put reported.
    max_queued: usize,
    reason: DisconnectReason,
}

struct Writer {
    total: usize,
    chunk: usize,
    /// Wait for `drained` after a put reports `full`; otherwise keep putting every
    /// millisecond regardless.
    respect_full: bool,
    table: Arc<Vec<u8>>,
    put: usize,
    fulls: usize,
    max_queued: usize,
    report: Sender<WriterReport>,
}

impl Writer {
    fn new(total: usize, chunk: usize, respect_full: bool, report: Sender<WriterReport>) -> Self {
        Writer {
            total,
            chunk,
            respect_full,
            table: pattern_table(chunk),
            put: 0,
            fulls: 0,
            max_queued: 0,
            report,
        }
    }

    /// Puts the next chunk, if any; returns whether the put reported `full`.
    fn put_next(&mut self, handle: &ConnectionHandle) -> bool {
        let len = self.chunk.min(self.total - self.put);
        let data = Bytes::copy_from_slice(pattern_at(&self.table, self.put, len));
        let status = handle.put(data);
        self.put += len;
        self.max_queued = self.max_queued.max(status.queued);
        if status.full {
            self.fulls += 1;
        }
        status.full
    }

    /// Puts until the queue is full, then waits for it to drain and goes on; closes after
    /// the last byte.
    fn pump(&mut self, handle: ConnectionHandle, ctx: &mut Context<Self>) {
        while self.put < self.total {
            if !handle.connected() {
                return;
            }
            if self.put_next(&handle) {
                let drained = handle.drained();
                ctx.wait(
                    drained
                        .into_actor(self)
                        .map(move |(), act, ctx| act.pump(handle, ctx)),
                );
                return;
            }
        }
        handle.close();
    }
}

impl Actor for Writer {
    type Context = Context<Self>;
}

impl Handler<SslDone> for Writer {
    type Result = ();
    fn handle(&mut self, done: SslDone, ctx: &mut Context<Self>) {
        if self.respect_full {
            self.pump(done.handle, ctx);
            return;
        }
        let handle = done.handle;
        ctx.run_interval(Duration::from_millis(1), move |act, _| {
            if act.put < act.total {
                act.put_next(&handle);
            }
        });
    }
}

impl Handler<ClientInput> for Writer {
    type Result = ();
    fn handle(&mut self, _: ClientInput, _: &mut Context<Self>) {}
}

impl Handler<CertRejected> for Writer {
    type Result = ();
    fn handle(&mut self, _: CertRejected, _: &mut Context<Self>) {}
}

impl Handler<Disconnect> for Writer {
    type Result = ();
    fn handle(&mut self, gone: Disconnect, ctx: &mut Context<Self>) {
        let _ = self.report.send(WriterReport {
            put: self.put,
            fulls: self.fulls,
            max_queued: self.max_queued,
            reason: gone.reason,
        });
        ctx.stop();
    }
}

fn writer_server(options: Options, writer: Writer) -> Served<Writer> {
    Served::start(options, move || writer)
}

/// Reads the stream to its end, checking on the fly that it is the pattern; sleeps
/// `pause` after every `every` bytes. Returns the byte count and how the stream ended.
fn read_pattern(
    stream: &mut SslStream<TcpStream>,
    every: usize,
    pause: Duration,
) -> (usize, Result<(), String>) {
    let table = pattern_table(64 * KIB);
    let mut buf = vec![0u8; 64 * KIB];
    let mut got = 0usize;
    let mut since_pause = 0usize;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => n,
            Err(e) => return (got, Err(support::error_text(&e))),
        };
        if buf[..n] != *pattern_at(&table, got, n) {
            let at = (0..n)
                .find(|&i| buf[i] != pattern_byte(got + i))
                .unwrap_or(0);
            panic!(
                "byte {} is {} instead of {}",
                got + at,
                buf[at],
                pattern_byte(got + at)
            );
        }
        got += n;
        since_pause += n;
        if since_pause >= every {
            since_pause = 0;
            thread::sleep(pause);
        }
    }
}

#[test]
fn slow_reader_gets_100_mib_in_order_while_server_memory_stays_bounded() {
    let _serial = serial();
    const TOTAL: usize = 100 * MIB;
    const CHUNK: usize = 256 * KIB;
    let (tx, reports) = mpsc::channel();
    let server = writer_server(support::options(), Writer::new(TOTAL, CHUNK, true, tx));

    let peak = PeakRss::start();
    let mut stream = support::connect(server.addr, None).expect("client handshake");
    // Read nothing for a while: the server's queue fills to its high-water mark and the
    // handler waits. Without flow control all 100 MiB would be queued by now.
    thread::sleep(Duration::from_millis(500));
    // Then read in bursts with short pauses.
    let (got, end) = read_pattern(&mut stream, 512 * KIB, Duration::from_millis(2));
    assert_eq!(
        end,
        Ok(()),
        "the stream did not end with close_notify after {got} bytes"
    );
    assert!(stream.get_shutdown().contains(ShutdownState::RECEIVED));
    assert_eq!(got, TOTAL, "bytes received");
    if let Some(peak) = peak {
        peak.assert_bounded("100 MiB to a slow reader", TOTAL);
    }
    drop(stream);

    let report = reports.recv_timeout(WAIT).expect("the handler's report");
    assert_eq!(
        report.reason,
        DisconnectReason::ClosedByHandler,
        "{report:?}"
    );
    assert_eq!(report.put, TOTAL, "{report:?}");
    assert!(
        report.fulls > 0,
        "no put ever reported a full queue: {report:?}"
    );
    // The handler stops at the first `full`, so the queue never holds more than the high
    // mark (1 MiB by default) plus one chunk.
    assert!(
        report.max_queued < MIB + CHUNK,
        "a put reported {} bytes queued: {report:?}",
        report.max_queued
    );
}

#[test]
fn handler_that_waits_for_drained_is_never_cut_with_small_marks() {
    let _serial = serial();
    const TOTAL: usize = 8 * MIB;
    const CHUNK: usize = 32 * KIB;
    let (tx, reports) = mpsc::channel();
    let server = writer_server(
        support::options().write_water_marks(16 * KIB, 64 * KIB, 256 * KIB),
        Writer::new(TOTAL, CHUNK, true, tx),
    );

    let mut stream = support::connect(server.addr, None).expect("client handshake");
    thread::sleep(Duration::from_millis(200));
    let (got, end) = read_pattern(&mut stream, 256 * KIB, Duration::from_millis(1));
    assert_eq!(
        end,
        Ok(()),
        "the stream did not end with close_notify after {got} bytes"
    );
    assert_eq!(got, TOTAL);
    drop(stream);

    let report = reports.recv_timeout(WAIT).expect("the handler's report");
    assert_eq!(
        report.reason,
        DisconnectReason::ClosedByHandler,
        "{report:?}"
    );
    assert!(report.fulls > 0, "{report:?}");
    assert!(report.max_queued < 64 * KIB + CHUNK, "{report:?}");
}

#[test]
fn handler_that_ignores_full_is_cut_at_the_hard_limit() {
    let _serial = serial();
    // Far more than the kernel's socket buffers and the 256 KiB limit together.
    const TOTAL: usize = 256 * MIB;
    const CHUNK: usize = 64 * KIB;
    let (tx, reports) = mpsc::channel();
    let server = writer_server(
        support::options().write_water_marks(16 * KIB, 64 * KIB, 256 * KIB),
        Writer::new(TOTAL, CHUNK, false, tx),
    );

    // The client reads nothing until the server has given up on it.
    let mut stream = support::connect(server.addr, None).expect("client handshake");
    let report = reports
        .recv_timeout(WAIT)
        .expect("the connection of a client that reads nothing should end");
    assert_eq!(
        report.reason,
        DisconnectReason::WriteQueueOverflow,
        "{report:?}"
    );
    assert!(
        report.fulls > 0,
        "puts past the high mark did not report full: {report:?}"
    );
    assert!(report.put < TOTAL, "{report:?}");

    // What did reach the client is a prefix of what was put, and then the stream ends.
    let (got, end) = read_pattern(&mut stream, usize::MAX, Duration::ZERO);
    assert!(
        got < report.put,
        "the client got {got} bytes of {} put, though the connection was cut",
        report.put
    );
    eprintln!(
        "cut after {} bytes put, {got} received, end: {end:?}",
        report.put
    );
}

// ---------------------------------------------------------------------------------------
// A handler that holds each input for up to a millisecond before it is done with it.

#[derive(Debug)]
struct HolderReport {
    received: usize,
    /// Offset of the first byte that was not the pattern.
    mismatch: Option<usize>,
    /// The most inputs the handler held at once.
    max_held: usize,
    /// Inputs not marked as having come over TLS.
    plaintext_inputs: usize,
    reason: DisconnectReason,
}

struct Holder {
    table: Arc<Vec<u8>>,
    held: VecDeque<ClientInput>,
    max_held: usize,
    received: usize,
    mismatch: Option<usize>,
    plaintext_inputs: usize,
    report: Sender<HolderReport>,
}

impl Holder {
    fn new(report: Sender<HolderReport>) -> Self {
        Holder {
            table: pattern_table(64 * KIB),
            held: VecDeque::new(),
            max_held: 0,
            received: 0,
            mismatch: None,
            plaintext_inputs: 0,
            report,
        }
    }

    /// Checks the held inputs against the pattern and lets go of them.
    fn release(&mut self) {
        while let Some(input) = self.held.pop_front() {
            let data = &input.data;
            if self.mismatch.is_none()
                && (data.len() > 64 * KIB
                    || **data != *pattern_at(&self.table, self.received, data.len()))
            {
                let at = (0..data.len())
                    .find(|&i| data[i] != pattern_byte(self.received + i))
                    .unwrap_or(0);
                self.mismatch = Some(self.received + at);
            }
            if !input.tls {
                self.plaintext_inputs += 1;
            }
            self.received += data.len();
        }
    }
}

impl Actor for Holder {
    type Context = Context<Self>;
}

impl Handler<SslDone> for Holder {
    type Result = ();
    fn handle(&mut self, _: SslDone, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(1), |act, _| act.release());
    }
}

impl Handler<ClientInput> for Holder {
    type Result = ();
    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        self.held.push_back(input);
        self.max_held = self.max_held.max(self.held.len());
    }
}

impl Handler<CertRejected> for Holder {
    type Result = ();
    fn handle(&mut self, _: CertRejected, _: &mut Context<Self>) {}
}

impl Handler<Disconnect> for Holder {
    type Result = ();
    fn handle(&mut self, gone: Disconnect, ctx: &mut Context<Self>) {
        self.release();
        let _ = self.report.send(HolderReport {
            received: self.received,
            mismatch: self.mismatch,
            max_held: self.max_held,
            plaintext_inputs: self.plaintext_inputs,
            reason: gone.reason,
        });
        ctx.stop();
    }
}

/// Writes `total` bytes of the pattern as fast as the connection takes them, then sends
/// close_notify and reads the server's.
fn send_pattern(stream: &mut SslStream<TcpStream>, total: usize) -> io::Result<()> {
    const WRITE: usize = 256 * KIB;
    let table = pattern_table(WRITE);
    let mut sent = 0;
    while sent < total {
        let len = WRITE.min(total - sent);
        stream.write_all(pattern_at(&table, sent, len))?;
        sent += len;
    }
    stream.flush()?;
    stream.shutdown().map(|_| ()).map_err(io::Error::other)
}

#[test]
fn flat_out_sender_to_a_slow_handler_is_held_back_with_bounded_memory() {
    let _serial = serial();
    // The handler lets go of at most 4 inputs of 16 KiB per millisecond, about 60 MiB/s:
    // 200 MiB take a few seconds.
    const TOTAL: usize = 200 * MIB;
    let (tx, reports): (Sender<HolderReport>, Receiver<HolderReport>) = mpsc::channel();
    // Connections run on worker threads, the handler on the listener's: without flow
    // control the connection would read on while the handler's mailbox grows.
    let server = Served::start(support::options().workers(2), move || Holder::new(tx));

    let peak = PeakRss::start();
    let mut stream = support::connect(server.addr, None).expect("client handshake");
    send_pattern(&mut stream, TOTAL).expect("the client sends everything");
    let (rest, end) = support::read_to_end(&mut stream);
    assert!(rest.is_empty());
    assert_eq!(end, Ok(()), "the server did not answer close_notify");
    if let Some(peak) = peak {
        peak.assert_bounded("200 MiB from a flat-out sender", TOTAL);
    }
    drop(stream);

    let report = reports.recv_timeout(WAIT).expect("the handler's report");
    assert_eq!(report.reason, DisconnectReason::PeerClosed, "{report:?}");
    assert_eq!(report.mismatch, None, "input out of order: {report:?}");
    assert_eq!(report.received, TOTAL, "{report:?}");
    assert_eq!(report.plaintext_inputs, 0, "{report:?}");
    assert!(
        report.max_held <= 4,
        "the handler held {} unfinished inputs at once; reading should pause at 4",
        report.max_held
    );
    eprintln!(
        "the handler held at most {} inputs at once",
        report.max_held
    );
}

// ---------------------------------------------------------------------------------------
// A handler that puts a burst far past the hard limit in one turn, ignoring `full`.

/// The default hard limit of the write queue.
const DEFAULT_LIMIT: usize = 16 * MIB;
/// How many 1 MiB puts a burst makes: well past the default hard limit.
const BURST_PUTS: usize = 40;
/// The most the resident set may grow while a burst is put. A connection that keeps
/// only what fits under the hard limit holds 16 MiB of the burst at most; one that keeps
/// the whole burst holds 40 MiB.
const BURST_RSS_LIMIT: u64 = 30 * MIB as u64;

/// What a bursting handler saw of its one connection.
#[derive(Debug)]
struct BurstReport {
    /// The largest `queued` any put of the burst reported.
    max_queued: usize,
    /// `handle.queued()` right after the last put of the burst.
    queued_after: usize,
    /// The `unsent` of the connection's `Disconnect`.
    unsent: usize,
    reason: DisconnectReason,
}

/// Puts `BURST_PUTS` fresh 1 MiB buffers in one go, with every page written so that each
/// one counts in the resident set while it is kept. Returns the largest `queued` a put
/// reported and the queue length after the last.
fn put_burst(handle: &ConnectionHandle) -> (usize, usize) {
    let mut max_queued = 0;
    for n in 0..BURST_PUTS {
        let status = handle.put(vec![0xa5 ^ n as u8; MIB]);
        max_queued = max_queued.max(status.queued);
    }
    (max_queued, handle.queued())
}

/// Bursts on `SslDone` (TLS-first), or on the `STARTTLS` command right after asking for
/// the switch (plaintext first). Reports once its connection has ended.
struct Burster {
    burst: Option<(usize, usize)>,
    report: Sender<BurstReport>,
}

impl Burster {
    fn new(report: Sender<BurstReport>) -> Self {
        Burster {
            burst: None,
            report,
        }
    }
}

impl Actor for Burster {
    type Context = Context<Self>;
}

impl Handler<Connected> for Burster {
    type Result = ();
    fn handle(&mut self, connected: Connected, _: &mut Context<Self>) {
        connected.handle.put(&b"220 ready\r\n"[..]);
    }
}

impl Handler<SslDone> for Burster {
    type Result = ();
    fn handle(&mut self, done: SslDone, _: &mut Context<Self>) {
        if self.burst.is_none() {
            self.burst = Some(put_burst(&done.handle));
        }
    }
}

impl Handler<ClientInput> for Burster {
    type Result = ();
    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        if input.tls || self.burst.is_some() || !input.data.starts_with(b"STARTTLS\r\n") {
            return;
        }
        input.handle.put(&b"220 go ahead\r\n"[..]);
        input
            .start_tls(b"STARTTLS\r\n".len())
            .expect("the switch is asked for once, on a plaintext connection");
        self.burst = Some(put_burst(&input.handle));
    }
}

impl Handler<CertRejected> for Burster {
    type Result = ();
    fn handle(&mut self, _: CertRejected, _: &mut Context<Self>) {}
}

impl Handler<Disconnect> for Burster {
    type Result = ();
    fn handle(&mut self, gone: Disconnect, ctx: &mut Context<Self>) {
        let (max_queued, queued_after) = self.burst.unwrap_or_default();
        let _ = self.report.send(BurstReport {
            max_queued,
            queued_after,
            unsent: gone.unsent,
            reason: gone.reason,
        });
        ctx.stop();
    }
}

/// The burst ended the connection for overflow, without the queue ever holding it.
fn assert_burst_cut(report: &BurstReport, what: &str) {
    assert_eq!(
        report.reason,
        DisconnectReason::WriteQueueOverflow,
        "{what}: {report:?}"
    );
    // At most the limit plus the put that crossed it is ever counted.
    assert!(
        report.max_queued <= DEFAULT_LIMIT + MIB,
        "{what}: a put reported {} MiB queued with a {} MiB limit: {report:?}",
        report.max_queued / MIB,
        DEFAULT_LIMIT / MIB
    );
    assert!(
        report.queued_after <= DEFAULT_LIMIT,
        "{what}: {} MiB stayed queued after the burst: {report:?}",
        report.queued_after / MIB
    );
    assert!(
        report.unsent <= DEFAULT_LIMIT + KIB,
        "{what}: the connection held {} MiB it never sent: {report:?}",
        report.unsent / MIB
    );
}

impl PeakRss {
    /// Stops sampling and asserts the peak grew less than `limit` over the baseline.
    fn assert_grew_less_than(mut self, limit: u64, what: &str) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        if let Some(now) = rss() {
            self.peak.fetch_max(now, Ordering::AcqRel);
        }
        let peak = self.peak.load(Ordering::Acquire);
        let growth = peak.saturating_sub(self.baseline);
        eprintln!(
            "{what}: resident set {} MiB before, {} MiB at the peak",
            self.baseline / MIB as u64,
            peak / MIB as u64
        );
        assert!(
            growth < limit,
            "{what}: the resident set grew by {} MiB (from {} to {} MiB), {} MiB allowed",
            growth / MIB as u64,
            self.baseline / MIB as u64,
            peak / MIB as u64,
            limit / MIB as u64
        );
    }
}

#[test]
fn burst_past_the_default_limit_in_one_turn_ends_with_overflow_and_is_never_kept() {
    let _serial = serial();
    // With one worker the connection shares the handler's thread, so the whole burst is
    // put before the connection takes a single command: nothing is written in between.
    for workers in [1, 2] {
        let what = format!("{BURST_PUTS} x 1 MiB in one turn, {workers} workers");
        let (tx, reports) = mpsc::channel();
        let server = Served::start(support::options().workers(workers), move || {
            Burster::new(tx)
        });

        let peak = PeakRss::start();
        // The client reads nothing while the burst is put.
        let mut stream = support::connect(server.addr, None).expect("client handshake");
        let report = reports
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("{what}: the connection did not end"));
        if let Some(peak) = peak {
            peak.assert_grew_less_than(BURST_RSS_LIMIT, &what);
        }
        assert_burst_cut(&report, &what);

        // The client is cut off: no close_notify.
        stream.get_ref().set_read_timeout(Some(WAIT)).unwrap();
        let (got, end) = read_any(&mut stream);
        assert!(
            end.is_err() || !stream.get_shutdown().contains(ShutdownState::RECEIVED),
            "{what}: the client got a clean close after {got} bytes"
        );
        eprintln!("{what}: {report:?}, client got {got} bytes, end {end:?}");
    }
}

/// Reads whatever comes until the stream ends; returns the byte count and the end.
fn read_any(stream: &mut SslStream<TcpStream>) -> (usize, Result<(), String>) {
    let mut buf = vec![0u8; 64 * KIB];
    let mut got = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got += n,
            Err(e) => return (got, Err(support::error_text(&e))),
        }
    }
}

#[test]
fn burst_past_the_default_limit_during_a_starttls_switch_ends_with_overflow() {
    let _serial = serial();
    for workers in [1, 2] {
        let what = format!("{BURST_PUTS} x 1 MiB after start_tls, {workers} workers");
        let (tx, reports) = mpsc::channel();
        let server = PlainFirstServer::start(support::options().workers(workers), move || {
            Burster::new(tx)
        });

        let peak = PeakRss::start();
        let mut client = PlainClient::connect(server.addr);
        assert_eq!(client.line().expect("banner"), "220 ready", "{what}");
        client.send(b"STARTTLS\r\n");
        let report = reports
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("{what}: the connection did not end"));
        if let Some(peak) = peak {
            peak.assert_grew_less_than(BURST_RSS_LIMIT, &what);
        }
        assert_burst_cut(&report, &what);

        // Whether the go-ahead, or even the handshake, got out before the cut depends on
        // the threads; either way the connection ends.
        let line = client.line();
        if matches!(&line, Ok(go) if go == "220 go ahead") {
            if let Ok(mut tls) = client.start_tls(&support::connector(None, None)) {
                let (_, end) = read_any(&mut tls);
                assert!(
                    end.is_err() || !tls.get_shutdown().contains(ShutdownState::RECEIVED),
                    "{what}: the client got a clean close after the overflow"
                );
            }
        }
        eprintln!("{what}: {report:?}, go-ahead line {line:?}");
    }
}
