//! The `openssl s_client` command as the client: an independent TLS implementation's view
//! of the verdicts and alerts. Skipped where the command is not installed.

mod support;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sslify::{CertProblem, ConnectionId, DisconnectReason};
use support::{cert, Event, Reply, TestServer};

/// The longest one s_client run may take before it is killed.
const RUN_LIMIT: Duration = Duration::from_secs(15);

/// Whether `openssl version` runs; says why not otherwise.
fn openssl_available() -> bool {
    match Command::new("openssl").arg("version").output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!("skipping: `openssl version` failed with {}", out.status);
            false
        }
        Err(e) => {
            eprintln!("skipping: openssl command not found ({e})");
            false
        }
    }
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child`, killing it (by its own handle, i.e. its PID) if it overruns.
fn wait_bounded(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs s_client against `server` with the client identity `client` (`None`: no
/// certificate). Stdin is closed at once; `-ign_eof` keeps s_client reading until the
/// server closes.
fn s_client(server: &TestServer, client: Option<&str>, extra: &[&str]) -> Run {
    let mut command = Command::new("openssl");
    command
        .arg("s_client")
        .arg("-connect")
        .arg(server.addr.to_string())
        .arg("-CAfile")
        .arg(cert("ca.pem"))
        .args([
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-ign_eof",
        ]);
    if let Some(name) = client {
        // `-cert` sends only the file's first certificate; `-cert_chain` adds the
        // intermediates that follow it, without which the server cannot build the chain.
        let chain = cert(&format!("client-{name}.pem"));
        command
            .arg("-cert")
            .arg(&chain)
            .arg("-cert_chain")
            .arg(&chain)
            .arg("-key")
            .arg(cert(&format!("client-{name}.key")));
    }
    command
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start openssl s_client");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child);
    let run = Run {
        success: status.is_some_and(|s| s.success()),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        status.is_some(),
        "s_client ({client:?}) still running after {RUN_LIMIT:?}, killed:\n{}",
        run.all()
    );
    run
}

fn verdict_server(options: sslify::Options) -> TestServer {
    TestServer::start(
        options,
        Reply::Verdict {
            close_after: Duration::from_millis(50),
        },
    )
}

#[test]
fn optional_mode_verdicts() {
    if !openssl_available() {
        return;
    }
    let server = verdict_server(support::options().request_client_cert());
    let cases = [
        (Some("valid"), "Yeah! You're authenticated!"),
        (None, "NoClientCertExists"),
        (Some("untrusted"), "ClientCertInvalid"),
        (Some("expired"), "ClientCertInvalid"),
    ];
    for (n, (client, text)) in cases.iter().enumerate() {
        let id = ConnectionId(n as u64 + 1);
        let run = s_client(&server, *client, &[]);
        let line = format!("[{id}] {text}");
        assert!(
            run.stdout.lines().any(|l| l == line),
            "{client:?}: no line {line:?} in the output:\n{}",
            run.all()
        );
        assert!(
            run.stdout.contains("Verify return code: 0 (ok)"),
            "{client:?}: s_client did not verify the server:\n{}",
            run.all()
        );
        assert!(run.success, "{client:?}: s_client failed:\n{}", run.all());
    }

    let journal = server
        .journal
        .wait_disconnects(cases.len(), Duration::from_secs(10));
    for (n, (client, _)) in cases.iter().enumerate() {
        let events = &journal[&(n as u64 + 1)];
        let Some(Event::SslDone { report, .. }) = events.first() else {
            panic!("{client:?}: {events:#?}");
        };
        let expected = match client {
            None => Some(CertProblem::Missing),
            Some("valid") => None,
            Some("untrusted") => Some(CertProblem::Untrusted),
            Some(_) => Some(CertProblem::Expired),
        };
        assert_eq!(report.problem(), expected, "{client:?}: {report:#?}");
        assert!(
            matches!(
                events.last(),
                Some(Event::Disconnect(DisconnectReason::ClosedByHandler))
            ),
            "{client:?}: {events:#?}"
        );
    }
}

#[test]
fn required_mode_alerts() {
    if !openssl_available() {
        return;
    }
    let server = verdict_server(support::options().require_client_cert());
    let refused = [
        (None, "alert certificate required", CertProblem::Missing),
        (
            Some("untrusted"),
            "alert unknown ca",
            CertProblem::Untrusted,
        ),
        (
            Some("expired"),
            "alert certificate expired",
            CertProblem::Expired,
        ),
    ];
    for (client, alert, _) in &refused {
        let run = s_client(&server, *client, &[]);
        assert!(
            run.all().contains(alert),
            "{client:?}: s_client did not report {alert:?}:\n{}",
            run.all()
        );
        assert!(
            !run.stdout.contains("] Yeah!") && !run.stdout.contains("] Client"),
            "{client:?}: a refused client got a verdict:\n{}",
            run.all()
        );
    }
    let run = s_client(&server, Some("valid"), &[]);
    let line = format!("[{}] Yeah! You're authenticated!", refused.len() + 1);
    assert!(
        run.stdout.lines().any(|l| l == line),
        "valid client: no line {line:?}:\n{}",
        run.all()
    );

    let journal = server
        .journal
        .wait_disconnects(refused.len() + 1, Duration::from_secs(10));
    for (n, (client, _, problem)) in refused.iter().enumerate() {
        let events = &journal[&(n as u64 + 1)];
        assert!(
            matches!(
                events.as_slice(),
                [
                    Event::CertRejected { problem: p, .. },
                    Event::Disconnect(DisconnectReason::CertRejected(q))
                ] if p == problem && q == problem
            ),
            "{client:?}: {events:#?}"
        );
    }
}

#[test]
fn required_mode_alerts_over_tls12() {
    if !openssl_available() {
        return;
    }
    // In TLS 1.2 the server refuses before its Finished, so s_client's handshake fails.
    let server = verdict_server(support::options().require_client_cert());
    let refused = [
        (None, "alert handshake failure", CertProblem::Missing),
        (
            Some("untrusted"),
            "alert unknown ca",
            CertProblem::Untrusted,
        ),
        (
            Some("expired"),
            "alert certificate expired",
            CertProblem::Expired,
        ),
    ];
    for (client, alert, _) in &refused {
        let run = s_client(&server, *client, &["-tls1_2"]);
        assert!(
            run.all().contains(alert),
            "{client:?}: s_client did not report {alert:?}:\n{}",
            run.all()
        );
        assert!(
            !run.success,
            "{client:?}: s_client succeeded:\n{}",
            run.all()
        );
    }

    let journal = server
        .journal
        .wait_disconnects(refused.len(), Duration::from_secs(10));
    for (n, (client, _, problem)) in refused.iter().enumerate() {
        let events = &journal[&(n as u64 + 1)];
        assert!(
            matches!(
                events.as_slice(),
                [
                    Event::CertRejected { problem: p, .. },
                    Event::Disconnect(DisconnectReason::CertRejected(q))
                ] if p == problem && q == problem
            ),
            "{client:?}: {events:#?}"
        );
    }
}
