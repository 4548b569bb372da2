//! Helpers for the CRL tests: scratch directories holding copies of CRL files and the ways
//! of replacing such a file under a running server, a forged CRL made with the `openssl`
//! command, a handler that checks each client against a CRL set of its own, and a client
//! that says whether it was served or refused.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use openssl::ssl::SslVersion;
use openssl::x509::{X509Ref, X509};
use sslify::{
    CertProblem, CertRejected, ClientInput, CrlScope, CrlSet, CrlVerdict, Disconnect,
    DisconnectReason, Listener, Options, SslDone,
};

use super::{cert, Event, Journal, TestServer};

/// The one-line name of the intermediate CA, the issuer of every test client.
pub const INTERMEDIATE: &str = "/C=US/O=sslify test/CN=sslify test intermediate CA";
/// The one-line name of the root CA.
pub const ROOT: &str = "/C=US/O=sslify test/CN=sslify test root CA";
/// Upper bound for the server to report the end of connections.
pub const WAIT: Duration = Duration::from_secs(10);

/// A directory of its own under the system's temporary directory, removed on drop.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Makes a fresh, empty directory whose name contains `label`.
    pub fn new(label: &str) -> Scratch {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "sslify-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Scratch { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Copies `certs/<source>` to `name` in the directory and returns the copy's path.
    pub fn copy(&self, source: &str, name: &str) -> PathBuf {
        let path = self.path(name);
        fs::copy(cert(source), &path).unwrap();
        path
    }

    /// Writes `contents` to `name` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).unwrap();
        path
    }

    /// Replaces `name` with `certs/<source>` the way careful tools do: the new contents
    /// go to a temporary file in the same directory, which is then renamed over `name`.
    pub fn replace_by_rename(&self, name: &str, source: &str) {
        let target = self.path(name);
        let before = inode(&target);
        let temporary = self.path(&format!(".{name}.new"));
        fs::write(&temporary, fs::read(cert(source)).unwrap()).unwrap();
        fs::rename(&temporary, &target).unwrap();
        assert_ne!(
            inode(&target),
            before,
            "the renamed file should be a new inode"
        );
    }

    /// Overwrites `name` with `certs/<source>` in place: same inode, truncated and written.
    pub fn rewrite_in_place(&self, name: &str, source: &str) {
        self.overwrite(name, &fs::read(cert(source)).unwrap());
    }

    /// Puts `certs/<source>` at `name`: in place if the file exists, as a new file if not.
    pub fn rewrite_or_create(&self, name: &str, source: &str) {
        if self.path(name).exists() {
            self.rewrite_in_place(name, source);
        } else {
            self.copy(source, name);
        }
    }

    /// Overwrites `name` in place with `contents`.
    pub fn overwrite(&self, name: &str, contents: &[u8]) {
        let target = self.path(name);
        let before = inode(&target);
        let mut file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&target)
            .unwrap();
        file.write_all(contents).unwrap();
        file.sync_all().unwrap();
        drop(file);
        assert_eq!(inode(&target), before, "an in-place write keeps the inode");
    }

    /// Overwrites `name` in place with the first half of `certs/<source>`: a write caught
    /// in the middle.
    pub fn cut_in_place(&self, name: &str, source: &str) {
        self.overwrite(name, &half_of(source));
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The first half of `certs/<source>`, cut inside the base64 body.
pub fn half_of(source: &str) -> Vec<u8> {
    let mut bytes = fs::read(cert(source)).unwrap();
    bytes.truncate(bytes.len() / 2);
    assert!(
        bytes.starts_with(b"-----BEGIN X509 CRL-----"),
        "{source} should start with its CRL"
    );
    bytes
}

fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&fs::metadata(path).unwrap())
}

/// The certificates of `certs/<file>`, in file order.
pub fn pem_certs(file: &str) -> Vec<X509> {
    X509::stack_from_pem(&fs::read(cert(file)).unwrap()).unwrap()
}

/// The serial of the first certificate of `certs/<file>`, as big-endian bytes.
pub fn serial_of(file: &str) -> Vec<u8> {
    pem_certs(file)[0].serial_number().to_bn().unwrap().to_vec()
}

/// Runs `openssl` with `args` in `dir`, configured by `dir/openssl.cnf` only.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .env("OPENSSL_CONF", dir.join("openssl.cnf"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Whether the `openssl` command can be run; the reason when it cannot.
pub fn openssl_command() -> Result<(), String> {
    match Command::new("openssl")
        .arg("version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!("`openssl version` exited with {}", output.status)),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err("the openssl command is not installed".to_owned())
        }
        Err(e) => Err(format!("cannot run the openssl command: {e}")),
    }
}

/// A working directory for `openssl ca`: a minimal configuration and an empty database.
fn ca_workdir(scratch: &Scratch, label: &str) -> Result<PathBuf, String> {
    openssl_command()?;
    let work = scratch.path(label);
    fs::create_dir(&work).unwrap();
    fs::write(work.join("index.txt"), b"").unwrap();
    fs::write(work.join("crlnumber"), b"1000\n").unwrap();
    let config = format!(
        "[ req ]\n\
         distinguished_name = req_dn\n\
         prompt = no\n\
         string_mask = utf8only\n\
         [ req_dn ]\n\
         CN = unused\n\
         [ ca ]\n\
         default_ca = issuer\n\
         [ issuer ]\n\
         database = {}\n\
         crlnumber = {}\n\
         default_md = sha256\n\
         default_crl_days = 30\n",
        work.join("index.txt").display(),
        work.join("crlnumber").display()
    );
    fs::write(work.join("openssl.cnf"), config).unwrap();
    Ok(work)
}

/// Has the CA of `ca_cert`/`ca_key` issue a current CRL revoking the certificates in
/// `revoke` (keyCompromise), with `openssl ca` in a directory of its own under `scratch`.
fn gencrl(
    work: &Path,
    ca_cert: &Path,
    ca_key: &Path,
    revoke: &[PathBuf],
) -> Result<PathBuf, String> {
    let cert_arg = ca_cert.to_str().unwrap();
    let key_arg = ca_key.to_str().unwrap();
    for victim in revoke {
        openssl(
            work,
            &[
                "ca",
                "-batch",
                "-config",
                "openssl.cnf",
                "-keyfile",
                key_arg,
                "-cert",
                cert_arg,
                "-revoke",
                victim.to_str().unwrap(),
                "-crl_reason",
                "keyCompromise",
            ],
        )?;
    }
    openssl(
        work,
        &[
            "ca",
            "-batch",
            "-config",
            "openssl.cnf",
            "-gencrl",
            "-keyfile",
            key_arg,
            "-cert",
            cert_arg,
            "-out",
            "crl.pem",
        ],
    )?;
    Ok(work.join("crl.pem"))
}

/// Makes a CRL in `scratch` that names the intermediate CA as its issuer but is signed by
/// a throwaway key: a self-signed certificate with the intermediate's subject and a new
/// key, used by `openssl ca -gencrl`. The CRL has no entries. `Err` says why it could not
/// be made (no `openssl` command).
pub fn forge_intermediate_crl(scratch: &Scratch) -> Result<PathBuf, String> {
    let work = ca_workdir(scratch, "forge")?;
    openssl(
        &work,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "forger.key",
        ],
    )?;
    openssl(
        &work,
        &[
            "req",
            "-new",
            "-x509",
            "-sha256",
            "-days",
            "30",
            "-key",
            "forger.key",
            "-subj",
            INTERMEDIATE,
            "-out",
            "forger.pem",
        ],
    )?;
    let path = gencrl(
        &work,
        &work.join("forger.pem"),
        &work.join("forger.key"),
        &[],
    )?;

    // The forgery is only meaningful if its issuer is byte for byte the intermediate's
    // subject.
    let crl = openssl::x509::X509Crl::from_pem(&fs::read(&path).unwrap()).unwrap();
    let intermediate = X509::from_pem(&fs::read(cert("intermediate.pem")).unwrap()).unwrap();
    assert_eq!(
        crl.issuer_name().to_der().unwrap(),
        intermediate.subject_name().to_der().unwrap(),
        "the forged CRL should name the intermediate as issuer"
    );
    Ok(path)
}

/// Has the root CA issue a CRL in `scratch` that revokes the intermediate CA. `Err` says
/// why it could not be made (no `openssl` command).
pub fn root_crl_revoking_intermediate(scratch: &Scratch) -> Result<PathBuf, String> {
    let work = ca_workdir(scratch, "root-revokes")?;
    gencrl(
        &work,
        &cert("ca.pem"),
        &cert("ca.key"),
        &[cert("intermediate.pem")],
    )
}

/// Has the intermediate CA issue a CRL in `scratch`, dated now, that revokes the first
/// certificate of each `certs/<file>` in `revoke`. `label` names its working directory,
/// which must be new. `Err` says why it could not be made (no `openssl` command).
pub fn intermediate_crl_revoking(
    scratch: &Scratch,
    label: &str,
    revoke: &[&str],
) -> Result<PathBuf, String> {
    let work = ca_workdir(scratch, label)?;
    let victims: Vec<PathBuf> = revoke.iter().map(|file| cert(file)).collect();
    gencrl(
        &work,
        &cert("intermediate.pem"),
        &cert("intermediate.key"),
        &victims,
    )
}

/// Makes a self-signed certificate for `subject` (in the form `openssl req -subj`
/// takes) and its key in `scratch` with `openssl req`; returns the certificate's path and
/// the key's. `label` names the working directory, which must be new. `Err` says why they
/// could not be made (no `openssl` command).
pub fn self_signed_certificate(
    scratch: &Scratch,
    label: &str,
    subject: &str,
) -> Result<(PathBuf, PathBuf), String> {
    let work = ca_workdir(scratch, label)?;
    openssl(
        &work,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-sha256",
            "-days",
            "30",
            "-subj",
            subject,
            "-keyout",
            "self.key",
            "-out",
            "self.pem",
        ],
    )?;
    Ok((work.join("self.pem"), work.join("self.key")))
}

/// What a client saw of its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The handshake completed and the server sent this text, then closed cleanly.
    Served(String),
    /// The server refused: OpenSSL's error text, which names the alert.
    Refused(String),
}

impl Seen {
    /// The text sent to a served client; panics with `case` if it was refused.
    pub fn served(self, case: &str) -> String {
        match self {
            Seen::Served(text) => text,
            Seen::Refused(error) => panic!("{case}: client was refused: {error}"),
        }
    }

    /// Asserts the client was refused with alert `number` (OpenSSL's `text` for it).
    pub fn assert_alert(&self, number: u8, text: &str, case: &str) {
        match self {
            Seen::Served(line) => {
                panic!("{case}: expected alert {number} ({text}), client was served: {line:?}")
            }
            Seen::Refused(error) => {
                assert!(
                    error.contains(&format!("alert {text}"))
                        && error.contains(&format!("SSL alert number {number}")),
                    "{case}: expected alert {number} ({text}), client got: {error}"
                );
            }
        }
    }
}

/// Connects as `certs/client-<client>.pem`, reads until the server closes, and says
/// whether the client was served. A refused client must receive no data.
pub fn attempt(addr: SocketAddr, client: &str, version: Option<SslVersion>) -> Seen {
    let connector = super::connector(Some(client), version);
    let mut stream = match super::connect_with(&connector, addr) {
        Ok(stream) => stream,
        // TLS 1.2: the refusal arrives inside the client's handshake.
        Err(error) => return Seen::Refused(error),
    };
    // TLS 1.3: the client's handshake is over before the server has judged the
    // certificate; a refusal arrives as the first record after it.
    let (bytes, end) = super::read_to_end(&mut stream);
    match end {
        Ok(()) => Seen::Served(String::from_utf8(bytes).unwrap()),
        Err(error) => {
            assert!(
                bytes.is_empty(),
                "a client that ends with an error ({error}) should have received nothing, got {:?}",
                String::from_utf8_lossy(&bytes)
            );
            Seen::Refused(error)
        }
    }
}

/// Asserts the events of connection `id` are the handshake refusal for `problem`:
/// `CertRejected` then `Disconnect(CertRejected)`, nothing else.
pub fn assert_rejected(
    events: &BTreeMap<u64, Vec<Event>>,
    id: u64,
    problem: CertProblem,
    case: &str,
) {
    let Some(seen) = events.get(&id) else {
        panic!("{case}: no events for connection {id}: {events:#?}")
    };
    match seen.as_slice() {
        [Event::CertRejected {
            problem: got,
            report,
        }, Event::Disconnect(DisconnectReason::CertRejected(also))] => {
            assert_eq!(*got, problem, "{case}: problem in CertRejected");
            assert_eq!(*also, problem, "{case}: problem in Disconnect");
            assert_eq!(report.problem(), Some(problem), "{case}: report.problem()");
            assert!(
                report.presented && !report.valid,
                "{case}: report {report:#?}"
            );
        }
        other => panic!(
            "{case}: connection {id}: expected CertRejected({problem:?}) then \
             Disconnect(CertRejected), got {other:#?}"
        ),
    }
}

/// Asserts connection `id` completed its handshake and was closed by the handler, and
/// returns the report its `SslDone` carried and whether it was resumed.
pub fn assert_served(
    events: &BTreeMap<u64, Vec<Event>>,
    id: u64,
    case: &str,
) -> (sslify::ClientCertReport, bool) {
    let Some(seen) = events.get(&id) else {
        panic!("{case}: no events for connection {id}: {events:#?}")
    };
    match seen.as_slice() {
        [Event::SslDone {
            report, resumed, ..
        }, Event::Disconnect(DisconnectReason::ClosedByHandler)] => (report.clone(), *resumed),
        other => panic!(
            "{case}: connection {id}: expected SslDone then Disconnect(ClosedByHandler), \
             got {other:#?}"
        ),
    }
}

/// The verdicts a [`CrlJudge`] reached, per connection id.
pub type Verdicts = Arc<Mutex<BTreeMap<u64, CrlVerdict>>>;

/// A handler that decides in the application, as the Perl module's advanced example did:
/// a valid certificate is checked against a CRL set opened once, and the client is told
/// `[id] CRL` when revoked, `[id] CRL unusable` when no CRL could decide, and
/// `[id] Yeah! You're authenticated!` otherwise. Certificates that are missing or invalid
/// get the recording handler's answers. Each connection is closed right after its line.
pub struct CrlJudge {
    crls: CrlSet,
    /// When set, the whole chain is checked: the presented chain followed by this trust
    /// anchor, in [`CrlScope::Chain`]. Otherwise only the client's own certificate.
    anchor: Option<X509>,
    journal: Journal,
    verdicts: Verdicts,
}

/// The line a [`CrlJudge`] sends for a verdict, without the id.
pub fn judge_text(verdict: &CrlVerdict) -> &'static str {
    match verdict {
        CrlVerdict::Good => "Yeah! You're authenticated!",
        CrlVerdict::Revoked(_) => "CRL",
        CrlVerdict::Unusable(_) => "CRL unusable",
    }
}

impl Actor for CrlJudge {
    type Context = Context<Self>;
}

impl Handler<SslDone> for CrlJudge {
    type Result = ();
    fn handle(&mut self, done: SslDone, _: &mut Context<Self>) {
        self.journal.push(
            done.id,
            Event::SslDone {
                report: done.client_cert.clone(),
                protocol: done.protocol.to_owned(),
                resumed: done.resumed,
            },
        );
        let report = &done.client_cert;
        let line = if report.presented && report.valid {
            let verdict = match &self.anchor {
                None => self.crls.check(report),
                Some(anchor) => {
                    let mut chain: Vec<&X509Ref> =
                        report.chain.iter().map(|e| e.certificate()).collect();
                    chain.push(anchor);
                    self.crls.check_chain(&chain, CrlScope::Chain)
                }
            };
            let line = format!("[{}] {}\n", done.id, judge_text(&verdict));
            self.verdicts.lock().unwrap().insert(done.id.0, verdict);
            line
        } else {
            super::verdict(done.id, report)
        };
        done.handle.put(line);
        done.handle.close();
    }
}

impl Handler<ClientInput> for CrlJudge {
    type Result = ();
    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        self.journal.push(
            input.id,
            Event::Input {
                data: input.data.to_vec(),
                tls: input.tls,
            },
        );
    }
}

impl Handler<CertRejected> for CrlJudge {
    type Result = ();
    fn handle(&mut self, rejected: CertRejected, _: &mut Context<Self>) {
        self.journal.push(
            rejected.id,
            Event::CertRejected {
                problem: rejected.problem,
                report: rejected.report,
            },
        );
    }
}

impl Handler<Disconnect> for CrlJudge {
    type Result = ();
    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        self.journal.push(gone.id, Event::Disconnect(gone.reason));
    }
}

/// A server whose handler is a [`CrlJudge`] over `crls` (checking the whole chain up to
/// `anchor` when one is given), with the verdicts it reaches.
pub fn start_judge(options: Options, crls: CrlSet, anchor: Option<X509>) -> (TestServer, Verdicts) {
    let journal = Journal::default();
    let verdicts = Verdicts::default();
    let (tx, rx) = mpsc::channel();
    let judge = CrlJudge {
        crls,
        anchor,
        journal: journal.clone(),
        verdicts: Arc::clone(&verdicts),
    };
    let thread = thread::spawn(move || {
        let system = actix::System::new();
        system.block_on(async move {
            let config = options.build().expect("test options build");
            let listener =
                Listener::bind("127.0.0.1:0", config, judge.start()).expect("bind loopback");
            tx.send((listener.local_addr(), actix::System::current()))
                .unwrap();
        });
        system.run().unwrap();
    });
    let (addr, system) = rx.recv_timeout(WAIT).expect("server started");
    let server = TestServer {
        addr,
        journal,
        system,
        thread: Some(thread),
    };
    (server, verdicts)
}

/// The alert for a revoked certificate.
pub const ALERT_REVOKED: (u8, &str) = (44, "certificate revoked");
/// The alert for an expired CRL.
pub const ALERT_CRL_EXPIRED: (u8, &str) = (45, "certificate expired");
/// The alert when no usable CRL could be found for the certificate's issuer.
pub const ALERT_NO_CRL: (u8, &str) = (48, "unknown ca");
/// The alert for a CRL whose signature does not verify.
pub const ALERT_BAD_SIGNATURE: (u8, &str) = (51, "decrypt error");

/// What a client should get from a server whose handler is the recording one answering
/// with its verdict line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The handshake completes and the handler answers this text after `[id] `.
    Served(&'static str),
    /// The handshake is refused for this problem with this alert.
    Refused(CertProblem, (u8, &'static str)),
}

/// The verdict line for a served client whose certificate is good.
pub const AUTHENTICATED: Expect = Expect::Served("Yeah! You're authenticated!");

/// Connects `client` as connection `id` of `server` (its connections so far all ended),
/// checks what the client and the handler saw against `expect`, and returns the report
/// the handler got.
pub fn probe(
    server: &TestServer,
    id: u64,
    client: &str,
    version: Option<SslVersion>,
    expect: Expect,
    case: &str,
) -> sslify::ClientCertReport {
    let case = format!("{case}, client {client} (connection {id})");
    let seen = attempt(server.addr, client, version);
    let events = server.journal.wait_disconnects(id as usize, WAIT);
    assert_eq!(events.len() as u64, id, "{case}: connections {events:#?}");
    match expect {
        Expect::Served(text) => {
            assert_eq!(seen.served(&case), format!("[{id}] {text}\n"), "{case}");
            assert_served(&events, id, &case).0
        }
        Expect::Refused(problem, (number, alert)) => {
            seen.assert_alert(number, alert, &case);
            assert_rejected(&events, id, problem, &case);
            match &events[&id][0] {
                Event::CertRejected { report, .. } => report.clone(),
                _ => unreachable!("checked by assert_rejected"),
            }
        }
    }
}

/// Connects `client` as connection `id` of a [`CrlJudge`] server, checks the line it got
/// matches the verdict the handler reached and the handler's events, and returns the
/// verdict.
pub fn judge_probe(
    server: &TestServer,
    verdicts: &Verdicts,
    id: u64,
    client: &str,
    version: Option<SslVersion>,
    case: &str,
) -> CrlVerdict {
    let case = format!("{case}, client {client} (connection {id})");
    let line = attempt(server.addr, client, version).served(&case);
    let events = server.journal.wait_disconnects(id as usize, WAIT);
    assert_eq!(events.len() as u64, id, "{case}: connections {events:#?}");
    let (report, _) = assert_served(&events, id, &case);
    assert!(
        report.valid,
        "{case}: the handshake should pass the certificate: {report:#?}"
    );
    let verdict = verdicts
        .lock()
        .unwrap()
        .get(&id)
        .cloned()
        .unwrap_or_else(|| panic!("{case}: the handler reached no verdict"));
    assert_eq!(line, format!("[{id}] {}\n", judge_text(&verdict)), "{case}");
    verdict
}
