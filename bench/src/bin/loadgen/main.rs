//! A cheap TLS load client: rustls on one current-thread tokio runtime, meant to be pinned
//! to a core of its own. It measures itself too, and says when it used so much of its core
//! that it, not the server, may have been the limit.
//!
//! Every mode prints a human-readable summary and one `RESULT mode=... key=value ...` line
//! for scripts; the holding modes (`idle`, `stall`) print a `READY ...` line once their
//! connections are up, then hold them until SIGTERM or `--hold` seconds.

mod client;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sslify_bench::{
    cert_file, cpu_percent, die, exit_with_parent, ms, process_cpu, require_loopback, Args, Latency,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};

use crate::client::{Client, Failures, Files};

const PROGRAM: &str = "loadgen";
const USAGE: &str = "\
usage: loadgen MODE [options]

A TLS 1.3 load client (rustls, X25519, client certificate, no resumption) for loopback
servers. One thread; pin it to a core of its own.

Modes:
  handshakes   full handshakes, each reading the server's reply line, then closing
                 --workers N (32)  --duration S (5)
  probe        sequential full handshakes; latency of each, from the start of the TCP
               connect to the end of the server's reply line
                 --duration S (3)  --max N (100000)  --timeout S (5)
  idle         open N established connections (each checked with one echoed line,
               so the server must echo) and hold them
                 --connections N (5000)  --concurrency N (64)  --hold S (300)
  stall        open TCP connections that send nothing, and others that send a
               ClientHello and then nothing, all at once, and hold them; READY once
               all are connected or after 5 s (the rest keep trying)
                 --silent N (1000)  --stalled N (200)  --hold S (300)
  echo         C connections each sending a message and reading it back, repeatedly
                 --connections N (1)  --duration S (5)  --size BYTES (16384)

Common options:
  --connect ADDR       server address, loopback only (127.0.0.1:8443)
  --ca FILE            CA certificate the server's chain must lead to (certs/ca.pem)
  --cert FILE          client certificate chain (certs/client-valid.pem)
  --key FILE           client private key (certs/client-valid.key)
  --server-name NAME   name to verify the server's certificate against (localhost)
";

/// Longest wait for one connection in the modes that count failures.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the stalling connections to open before reporting them ready.
const STALL_SETUP: Duration = Duration::from_secs(5);
/// Client CPU share above which the client may have been the bottleneck.
const BUSY_PERCENT: f64 = 90.0;

type Run = Pin<Box<dyn Future<Output = ()>>>;

fn main() {
    exit_with_parent();
    let mut args = Args::from_env(PROGRAM, USAGE);
    let mode = args.subcommand().unwrap_or_else(|| {
        eprint!("{USAGE}");
        die(
            PROGRAM,
            "a mode is needed: handshakes, probe, idle, stall or echo",
        )
    });
    let addr: SocketAddr = args.value_or("--connect", SocketAddr::from(([127, 0, 0, 1], 8443)));
    require_loopback(PROGRAM, addr);
    let files = Files {
        ca: args.value_or("--ca", cert_file("ca.pem")),
        cert: args.value_or("--cert", cert_file("client-valid.pem")),
        key: args.value_or("--key", cert_file("client-valid.key")),
        server_name: args.value_or("--server-name", "localhost".to_owned()),
    };
    let client = Arc::new(Client::new(addr, &files).unwrap_or_else(|e| die(PROGRAM, e)));

    let run: Run = match mode.as_str() {
        "handshakes" => {
            let workers: usize = args.value_or("--workers", 32);
            let duration = args.seconds_or("--duration", 5.0);
            Box::pin(handshakes(client, workers.max(1), duration))
        }
        "probe" => {
            let duration = args.seconds_or("--duration", 3.0);
            let max: usize = args.value_or("--max", 100_000);
            let limit = args.seconds_or("--timeout", 5.0);
            Box::pin(probe(client, duration, max, limit))
        }
        "idle" => {
            let connections: usize = args.value_or("--connections", 5000);
            let concurrency: usize = args.value_or("--concurrency", 64);
            let hold_for = args.seconds_or("--hold", 300.0);
            Box::pin(idle(client, connections, concurrency.max(1), hold_for))
        }
        "stall" => {
            let silent: usize = args.value_or("--silent", 1000);
            let stalled: usize = args.value_or("--stalled", 200);
            let hold_for = args.seconds_or("--hold", 300.0);
            Box::pin(stall(client, silent, stalled, hold_for))
        }
        "echo" => {
            let connections: usize = args.value_or("--connections", 1);
            let duration = args.seconds_or("--duration", 5.0);
            let size: usize = args.value_or("--size", 16384);
            Box::pin(echo(client, connections.max(1), duration, size.max(1)))
        }
        other => die(PROGRAM, format_args!("unknown mode {other:?}")),
    };
    args.finish();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(PROGRAM, format_args!("runtime: {e}")));
    runtime.block_on(run);
}

/// Wall time and this process's CPU time over a measured interval.
struct Meter {
    wall: Instant,
    cpu: Duration,
}

impl Meter {
    fn start() -> Self {
        Meter {
            wall: Instant::now(),
            cpu: process_cpu(),
        }
    }

    /// Elapsed wall time and the client's CPU share of one core, in percent.
    fn read(&self) -> (Duration, f64) {
        let wall = self.wall.elapsed();
        (wall, cpu_percent(process_cpu() - self.cpu, wall))
    }
}

fn warn_if_busy(cpu: f64) {
    if cpu >= BUSY_PERCENT {
        println!(
            "WARNING: the load client used {cpu:.0} % of its core: it, not the server, may be \
             the bottleneck, so the rates above understate the server"
        );
    }
}

/// Waits for SIGTERM, SIGINT or `limit`, whichever comes first.
async fn hold(limit: Duration) {
    let mut term = signal(SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = sleep(limit) => {}
        _ = terminated => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn handshakes(client: Arc<Client>, workers: usize, duration: Duration) {
    let meter = Meter::start();
    let deadline = Instant::now() + duration;
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let client = Arc::clone(&client);
        set.spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = Failures::default();
            // Attempts started before the deadline run to the end, so that every handshake
            // the server worked on is counted.
            while Instant::now() < deadline {
                match timeout(ATTEMPT_TIMEOUT, client.exchange()).await {
                    Ok(Ok(took)) => latencies.push(took.as_micros() as u64),
                    Ok(Err(error)) => failures.add(error),
                    Err(_) => failures.add("timed out"),
                }
            }
            (latencies, failures)
        });
    }
    let mut latencies = Vec::new();
    let mut failures = Failures::default();
    while let Some(joined) = set.join_next().await {
        let (mut more, fails) = joined.unwrap_or_else(|e| die(PROGRAM, e));
        latencies.append(&mut more);
        failures.merge(fails);
    }
    let (wall, cpu) = meter.read();
    let latency = Latency::of(&mut latencies);
    let rate = latency.count as f64 / wall.as_secs_f64();
    let tickets = client.tickets() as f64 / latency.count.max(1) as f64;

    println!(
        "handshakes: {} done in {:.2} s with {workers} workers: {rate:.1}/s; failed: {failures}",
        latency.count,
        wall.as_secs_f64()
    );
    println!(
        "latency ms: p50 {} p90 {} p99 {} max {}; tickets per handshake {tickets:.2}; \
         client CPU {cpu:.0} %",
        ms(latency.p50),
        ms(latency.p90),
        ms(latency.p99),
        ms(latency.max)
    );
    warn_if_busy(cpu);
    println!(
        "RESULT mode=handshakes ok={} failed={} secs={:.3} rate={rate:.1} p50_ms={} \
         p90_ms={} p99_ms={} max_ms={} tickets={tickets:.2} client_cpu={cpu:.1}",
        latency.count,
        failures.count,
        wall.as_secs_f64(),
        ms(latency.p50),
        ms(latency.p90),
        ms(latency.p99),
        ms(latency.max)
    );
}

async fn probe(client: Arc<Client>, duration: Duration, max: usize, limit: Duration) {
    let meter = Meter::start();
    let deadline = Instant::now() + duration;
    let mut latencies = Vec::new();
    let mut failures = Failures::default();
    let mut attempts = 0;
    while Instant::now() < deadline && attempts < max {
        attempts += 1;
        match timeout(limit, client.exchange()).await {
            Ok(Ok(took)) => latencies.push(took.as_micros() as u64),
            Ok(Err(error)) => failures.add(error),
            Err(_) => failures.add(format_args!("no reply within {} s", limit.as_secs_f64())),
        }
    }
    let (wall, cpu) = meter.read();
    let latency = Latency::of(&mut latencies);
    let ms = |micros| {
        if latency.count == 0 {
            "NA".to_owned()
        } else {
            ms(micros)
        }
    };
    println!(
        "probe: {attempts} sequential handshakes in {:.2} s; failed: {failures}",
        wall.as_secs_f64()
    );
    println!(
        "latency ms: p50 {} p90 {} p99 {} max {}; client CPU {cpu:.0} %",
        ms(latency.p50),
        ms(latency.p90),
        ms(latency.p99),
        ms(latency.max)
    );
    println!(
        "RESULT mode=probe attempts={attempts} ok={} failed={} secs={:.3} p50_ms={} p90_ms={} p99_ms={} max_ms={} \
         client_cpu={cpu:.1}",
        latency.count,
        failures.count,
        wall.as_secs_f64(),
        ms(latency.p50),
        ms(latency.p90),
        ms(latency.p99),
        ms(latency.max)
    );
}

async fn idle(client: Arc<Client>, connections: usize, concurrency: usize, hold_for: Duration) {
    let meter = Meter::start();
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..concurrency.min(connections) {
        let client = Arc::clone(&client);
        let next = Arc::clone(&next);
        set.spawn(async move {
            let mut held = Vec::new();
            let mut failures = Failures::default();
            while next.fetch_add(1, Ordering::Relaxed) < connections {
                let opened = async {
                    let mut tls = client.connect().await?;
                    // One echoed line proves the server finished its side of the handshake.
                    tls.write_all(b"ping\n").await?;
                    tls.flush().await?;
                    let mut back = [0u8; 5];
                    tls.read_exact(&mut back).await?;
                    if &back != b"ping\n" {
                        return Err(std::io::Error::other("ping not echoed"));
                    }
                    Ok(tls)
                };
                match timeout(ATTEMPT_TIMEOUT, opened).await {
                    Ok(Ok(tls)) => held.push(tls),
                    Ok(Err(error)) => failures.add(error),
                    Err(_) => failures.add("timed out"),
                }
            }
            (held, failures)
        });
    }
    let mut held = Vec::with_capacity(connections);
    let mut failures = Failures::default();
    while let Some(joined) = set.join_next().await {
        let (mut more, fails) = joined.unwrap_or_else(|e| die(PROGRAM, e));
        held.append(&mut more);
        failures.merge(fails);
    }
    let (wall, cpu) = meter.read();
    println!(
        "idle: {} connections established in {:.2} s; failed: {failures}; client CPU {cpu:.0} %",
        held.len(),
        wall.as_secs_f64()
    );
    println!(
        "READY mode=idle up={} failed={} secs={:.3}",
        held.len(),
        failures.count,
        wall.as_secs_f64()
    );
    hold(hold_for).await;
    drop(held);
    println!("idle: released");
}

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Stalled {
    /// TCP only, nothing sent.
    Silent,
    /// A ClientHello sent, then nothing.
    MidHandshake,
}

async fn stall(client: Arc<Client>, silent: usize, stalled: usize, hold_for: Duration) {
    let hello = Arc::new(
        client
            .client_hello()
            .unwrap_or_else(|e| die(PROGRAM, format_args!("ClientHello: {e}"))),
    );
    // All connections are opened at once, as many clients would. One that the server's
    // backlog does not take keeps retrying its SYN like any client, and counts as pending.
    let opened = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let failed = Arc::new(AtomicUsize::new(0));
    let plan = std::iter::repeat_n(Stalled::Silent, silent)
        .chain(std::iter::repeat_n(Stalled::MidHandshake, stalled));
    let mut tasks = JoinSet::new();
    for kind in plan {
        let client = Arc::clone(&client);
        let hello = Arc::clone(&hello);
        let opened = Arc::clone(&opened);
        let failed = Arc::clone(&failed);
        tasks.spawn(async move {
            let connected = async {
                let mut tcp = client.tcp().await?;
                if kind == Stalled::MidHandshake {
                    tcp.write_all(&hello).await?;
                }
                Ok::<_, std::io::Error>(tcp)
            };
            let mut tcp = match connected.await {
                Ok(tcp) => tcp,
                Err(error) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return (kind, Err(error.to_string()));
                }
            };
            opened[kind as usize].fetch_add(1, Ordering::Relaxed);
            // Wait for the server to close; what it sends is discarded.
            let mut buf = [0u8; 4096];
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            (kind, Ok(Instant::now()))
        });
    }
    let total = silent + stalled;
    let setup_ends = Instant::now() + STALL_SETUP;
    let count = |kind: Stalled| opened[kind as usize].load(Ordering::Relaxed);
    while count(Stalled::Silent) + count(Stalled::MidHandshake) + failed.load(Ordering::Relaxed)
        < total
        && Instant::now() < setup_ends
    {
        sleep(Duration::from_millis(10)).await;
    }
    let ready = Instant::now();
    let (up_silent, up_stalled) = (count(Stalled::Silent), count(Stalled::MidHandshake));
    let failed_now = failed.load(Ordering::Relaxed);
    let pending = total - up_silent - up_stalled - failed_now;
    println!(
        "stall: {up_silent} silent and {up_stalled} mid-handshake connections open, \
         {pending} still connecting, {failed_now} failed"
    );
    println!(
        "READY mode=stall silent={up_silent} stalled={up_stalled} pending={pending} \
         failed={failed_now}"
    );

    hold(hold_for).await;
    let held_for = ready.elapsed();
    let (mut closed_silent, mut closed_stalled) = (0, 0);
    let mut first_close: Option<Duration> = None;
    let mut failures = Failures::default();
    while let Some(Ok((kind, outcome))) = tasks.try_join_next() {
        match outcome {
            Err(error) => failures.add(error),
            Ok(at) => {
                match kind {
                    Stalled::Silent => closed_silent += 1,
                    Stalled::MidHandshake => closed_stalled += 1,
                }
                let after = at.saturating_duration_since(ready);
                first_close = Some(first_close.map_or(after, |first| first.min(after)));
            }
        }
    }
    tasks.abort_all();
    let (up_silent, up_stalled) = (count(Stalled::Silent), count(Stalled::MidHandshake));
    println!(
        "stall: held {:.1} s; {up_silent} silent and {up_stalled} mid-handshake connections \
         were opened in all, of which the server closed {closed_silent} and {closed_stalled}{}; \
         failed: {failures}",
        held_for.as_secs_f64(),
        first_close.map_or(String::new(), |d| format!(
            " (the first {:.1} s after the setup)",
            d.as_secs_f64()
        ))
    );
    println!(
        "RESULT mode=stall opened_silent={up_silent} opened_stalled={up_stalled} failed={} held_s={:.1} \
         closed_silent={closed_silent} closed_stalled={closed_stalled}",
        failures.count,
        held_for.as_secs_f64()
    );
}

async fn echo(client: Arc<Client>, connections: usize, duration: Duration, size: usize) {
    let mut streams = Vec::with_capacity(connections);
    let mut failures = Failures::default();
    for _ in 0..connections {
        match timeout(ATTEMPT_TIMEOUT, client.connect()).await {
            Ok(Ok(tls)) => streams.push(tls),
            Ok(Err(error)) => failures.add(error),
            Err(_) => failures.add("timed out"),
        }
    }
    if streams.is_empty() {
        die(PROGRAM, format_args!("echo: no connection: {failures}"));
    }
    let message: Arc<Vec<u8>> = Arc::new((0..size).map(|i| (i % 251) as u8).collect());

    let meter = Meter::start();
    let deadline = Instant::now() + duration;
    let mut set = JoinSet::new();
    for mut tls in streams {
        let message = Arc::clone(&message);
        set.spawn(async move {
            let mut back = vec![0u8; message.len()];
            let mut echoed: u64 = 0;
            while Instant::now() < deadline {
                let round = async {
                    tls.write_all(&message).await?;
                    tls.flush().await?;
                    tls.read_exact(&mut back).await?;
                    if back != *message {
                        return Err(std::io::Error::other("echo differs from what was sent"));
                    }
                    Ok(())
                };
                match timeout(ATTEMPT_TIMEOUT, round).await {
                    Ok(Ok(())) => echoed += message.len() as u64,
                    Ok(Err(error)) => return (echoed, Some(error.to_string())),
                    Err(_) => return (echoed, Some("timed out".to_owned())),
                }
            }
            let _ = tls.shutdown().await;
            (echoed, None)
        });
    }
    let mut echoed = 0;
    while let Some(joined) = set.join_next().await {
        let (bytes, error) = joined.unwrap_or_else(|e| die(PROGRAM, e));
        echoed += bytes;
        if let Some(error) = error {
            failures.add(error);
        }
    }
    let (wall, cpu) = meter.read();
    let mib_s = echoed as f64 / (1024.0 * 1024.0) / wall.as_secs_f64();
    println!(
        "echo: {connections} connections, {size}-byte messages: {:.1} MiB echoed in {:.2} s: \
         {mib_s:.1} MiB/s; failed: {failures}; client CPU {cpu:.0} %",
        echoed as f64 / (1024.0 * 1024.0),
        wall.as_secs_f64()
    );
    warn_if_busy(cpu);
    println!(
        "RESULT mode=echo connections={connections} size={size} bytes={echoed} secs={:.3} \
         mib_s={mib_s:.1} failed={} client_cpu={cpu:.1}",
        wall.as_secs_f64(),
        failures.count
    );
}
