//! Bad configuration fails at start-up, without a panic, with an error that names the file
//! (or the address) and says what is wrong with it.

mod support;

use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{self, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use actix::prelude::*;
use openssl::pkey::PKey;
use openssl::symm::Cipher;
use sslify::{
    CertRejected, ClientCertMode, ClientInput, ConfigError, Disconnect, FileRole, Listener,
    ListenerError, Options, SslDone,
};
use support::cert;

/// A directory of its own under the system's temporary directory, removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sslify-startup-{}-{}-{name}",
            process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn build_error(options: Options) -> ConfigError {
    match options.build() {
        Ok(config) => panic!("options built despite the bad configuration: {config:?}"),
        Err(error) => error,
    }
}

/// The message names `path` and contains `reason`.
fn assert_message(error: &ConfigError, path: &Path, reason: &str) {
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "message does not name {}: {message:?}",
        path.display()
    );
    assert!(
        message.contains(reason),
        "message does not say {reason:?}: {message:?}"
    );
}

const NOT_PEM: &[u8] = b"This is a plain text file.\nIt holds no certificate and no key.\n";

#[test]
fn missing_certificate_file() {
    let scratch = Scratch::new("missing-cert");
    let missing = scratch.dir.join("no-such-certificate.pem");
    let error = build_error(Options::new(&missing, cert("server-ec.key")));
    match &error {
        ConfigError::Read {
            role: FileRole::Certificate,
            path,
            source,
        } => {
            assert_eq!(path, &missing);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected a read error for the certificate: {other:?}"),
    }
    assert_message(&error, &missing, "No such file or directory");
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[test]
fn missing_key_file() {
    let scratch = Scratch::new("missing-key");
    let missing = scratch.dir.join("no-such-key.pem");
    let error = build_error(Options::new(cert("server-ec.pem"), &missing));
    match &error {
        ConfigError::Read {
            role: FileRole::PrivateKey,
            path,
            source,
        } => {
            assert_eq!(path, &missing);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("expected a read error for the key: {other:?}"),
    }
    assert_message(&error, &missing, "No such file or directory");
    assert!(error.to_string().contains("private key"), "{error}");
}

#[test]
fn certificate_file_without_pem() {
    let scratch = Scratch::new("cert-no-pem");
    let text = scratch.file("notes.txt", NOT_PEM);
    let error = build_error(Options::new(&text, cert("server-ec.key")));
    assert!(
        matches!(&error, ConfigError::NoPem { role: FileRole::Certificate, path } if *path == text),
        "{error:?}"
    );
    assert_message(&error, &text, "no PEM certificate");
}

#[test]
fn key_file_without_pem() {
    let scratch = Scratch::new("key-no-pem");
    let text = scratch.file("notes.txt", NOT_PEM);
    let error = build_error(Options::new(cert("server-ec.pem"), &text));
    assert!(
        matches!(&error, ConfigError::NoPem { role: FileRole::PrivateKey, path } if *path == text),
        "{error:?}"
    );
    assert_message(&error, &text, "no PEM private key");
}

#[test]
fn key_given_as_certificate_and_certificate_as_key() {
    // PEM of the wrong kind counts as no PEM of the right kind.
    let error = build_error(Options::new(cert("server-ec.key"), cert("server-ec.key")));
    assert!(
        matches!(
            &error,
            ConfigError::NoPem {
                role: FileRole::Certificate,
                ..
            }
        ),
        "{error:?}"
    );
    assert_message(&error, &cert("server-ec.key"), "no PEM certificate");

    let error = build_error(Options::new(cert("server-ec.pem"), cert("server-ec.pem")));
    assert!(
        matches!(
            &error,
            ConfigError::NoPem {
                role: FileRole::PrivateKey,
                ..
            }
        ),
        "{error:?}"
    );
    assert_message(&error, &cert("server-ec.pem"), "no PEM private key");
}

#[test]
fn key_of_another_type_does_not_match() {
    let certificate = cert("server-ec.pem");
    let key = cert("server-rsa.key");
    let error = build_error(Options::new(&certificate, &key));
    match &error {
        ConfigError::KeyMismatch {
            certificate: c,
            key: k,
        } => {
            assert_eq!(c, &certificate);
            assert_eq!(k, &key);
        }
        other => panic!("expected a key mismatch: {other:?}"),
    }
    assert_message(&error, &certificate, "does not match");
    assert_message(&error, &key, "does not match");
}

#[test]
fn key_of_the_same_type_does_not_match() {
    // An EC P-256 key that belongs to another certificate.
    let certificate = cert("server-ec.pem");
    let key = cert("client-valid.key");
    let error = build_error(Options::new(&certificate, &key));
    match &error {
        ConfigError::KeyMismatch {
            certificate: c,
            key: k,
        } => {
            assert_eq!(c, &certificate);
            assert_eq!(k, &key);
        }
        other => panic!("expected a key mismatch: {other:?} ({other})"),
    }
    assert_message(&error, &certificate, "does not match");
    assert_message(&error, &key, "does not match");
}

#[test]
fn client_ca_file_that_is_a_directory() {
    let scratch = Scratch::new("ca-dir");
    let error = build_error(
        support::options()
            .client_ca_file(&scratch.dir)
            .require_client_cert(),
    );
    match &error {
        ConfigError::Read {
            role: FileRole::ClientCa,
            path,
            ..
        } => assert_eq!(path, &scratch.dir),
        other => panic!("expected a read error for the client CA file: {other:?}"),
    }
    assert_message(&error, &scratch.dir, "Is a directory");
    assert!(error.to_string().contains("client CA"), "{error}");
}

#[test]
fn client_ca_file_without_pem() {
    let scratch = Scratch::new("ca-no-pem");
    let text = scratch.file("cas.txt", NOT_PEM);
    let error = build_error(
        support::options()
            .client_ca_file(&text)
            .request_client_cert(),
    );
    assert!(
        matches!(&error, ConfigError::NoPem { role: FileRole::ClientCa, path } if *path == text),
        "{error:?}"
    );
    assert_message(&error, &text, "no PEM certificate");
}

#[test]
fn corrupt_certificate_pem() {
    let scratch = Scratch::new("corrupt-cert");
    let corrupt = scratch.file(
        "corrupt.pem",
        b"-----BEGIN CERTIFICATE-----\n\
          @@ this is ~ not ~ base64 @@\n\
          -----END CERTIFICATE-----\n",
    );
    let error = build_error(Options::new(&corrupt, cert("server-ec.key")));
    assert!(
        matches!(&error, ConfigError::Parse { role: FileRole::Certificate, path, .. } if *path == corrupt),
        "{error:?}"
    );
    assert_message(&error, &corrupt, "cannot parse certificate file");
    let message = error.to_string();
    let prefix = format!("cannot parse certificate file {}: ", corrupt.display());
    let reason = message.strip_prefix(&prefix).unwrap_or_default();
    assert!(
        reason.contains("base64") || reason.contains("decode"),
        "reason does not say what is wrong: {message:?}"
    );
}

#[test]
fn certificate_pem_that_is_not_a_certificate() {
    // Valid base64, but the bytes inside are no DER certificate.
    let scratch = Scratch::new("not-der");
    let bogus = scratch.file(
        "bogus.pem",
        b"-----BEGIN CERTIFICATE-----\n\
          c2xpZnkgdGVzdDogbm90IGEgY2VydGlmaWNhdGU=\n\
          -----END CERTIFICATE-----\n",
    );
    let error = build_error(
        Options::new(cert("server-ec.pem"), cert("server-ec.key"))
            .client_ca_file(&bogus)
            .request_client_cert(),
    );
    assert!(
        matches!(&error, ConfigError::Parse { role: FileRole::ClientCa, path, .. } if *path == bogus),
        "{error:?}"
    );
    assert_message(&error, &bogus, "cannot parse client CA file");
    let message = error.to_string();
    assert!(
        message.to_lowercase().contains("asn1"),
        "reason does not say the contents are malformed: {message:?}"
    );
}

#[test]
fn corrupt_key_pem() {
    let scratch = Scratch::new("corrupt-key");
    let corrupt = scratch.file(
        "corrupt.key",
        b"-----BEGIN PRIVATE KEY-----\n\
          @@ this is ~ not ~ base64 @@\n\
          -----END PRIVATE KEY-----\n",
    );
    let error = build_error(Options::new(cert("server-ec.pem"), &corrupt));
    assert!(
        matches!(&error, ConfigError::Parse { role: FileRole::PrivateKey, path, .. } if *path == corrupt),
        "{error:?}"
    );
    assert_message(&error, &corrupt, "cannot parse private key file");
    // OpenSSL 3.0's decoders only say "unsupported" here; some reason must be given.
    let message = error.to_string();
    let prefix = format!("cannot parse private key file {}: ", corrupt.display());
    let reason = message.strip_prefix(&prefix).unwrap_or_default();
    assert!(!reason.trim().is_empty(), "no reason given: {message:?}");
}

#[test]
fn client_cert_modes_need_a_ca_file() {
    for mode in [ClientCertMode::Required, ClientCertMode::Optional] {
        let options = Options::new(cert("server-ec.pem"), cert("server-ec.key")).client_cert(mode);
        let error = build_error(options);
        assert!(
            matches!(error, ConfigError::MissingClientCa),
            "{mode:?}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("client CA file") && message.contains("no"),
            "{mode:?}: {message:?}"
        );
    }
}

/// Tells [`encrypted_key_child`] which key file to load.
const ENCRYPTED_KEY_VAR: &str = "SSLIFY_TEST_ENCRYPTED_KEY";

/// Builds options with the encrypted key named in `ENCRYPTED_KEY_VAR` and prints the
/// outcome; run as a separate process by [`encrypted_key_fails_without_a_prompt`].
#[test]
#[ignore = "run in a child process by encrypted_key_fails_without_a_prompt"]
fn encrypted_key_child() {
    let key = std::env::var(ENCRYPTED_KEY_VAR).expect("key path in the environment");
    match Options::new(cert("server-ec.pem"), &key).build() {
        Ok(_) => println!("OUTCOME built"),
        Err(error) => println!("OUTCOME {error:?}\nMESSAGE {error}"),
    }
}

#[test]
fn encrypted_key_fails_without_a_prompt() {
    // No option supplies a pass phrase, so an encrypted key can only be an error. Loading it
    // must not ask for a pass phrase on the terminal: a server would hang at start-up.
    // The check runs in a child process in a new session (no controlling terminal), so a
    // prompt shows up in its output instead of blocking a developer's terminal.
    if Command::new("setsid").arg("--version").output().is_err() {
        eprintln!("skipping: setsid command not found");
        return;
    }
    let scratch = Scratch::new("encrypted-key");
    let plain = PKey::private_key_from_pem(&fs::read(cert("server-ec.key")).unwrap()).unwrap();
    let encrypted = plain
        .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"not given")
        .unwrap();
    let key = scratch.file("encrypted.key", &encrypted);

    let mut child = Command::new("setsid")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "encrypted_key_child", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(ENCRYPTED_KEY_VAR, &key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("loading an encrypted key did not finish (waiting for a pass phrase?)");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");

    let outcome = stdout
        .lines()
        .find_map(|line| line.split_once("OUTCOME ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no outcome from the child:\n{stdout}\n{stderr}"));
    assert!(
        outcome.starts_with("EncryptedKey"),
        "expected the key to be reported as encrypted: {outcome}"
    );
    let message = stdout
        .lines()
        .find_map(|line| line.split_once("MESSAGE ").map(|(_, rest)| rest))
        .unwrap();
    assert!(message.contains(&key.display().to_string()), "{message:?}");
    assert!(message.contains("encrypted"), "{message:?}");
    assert!(
        !stdout.contains("pass phrase") && !stderr.contains("pass phrase"),
        "loading the key asked for a pass phrase:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// A handler for listeners that are never connected to.
struct Idle;

impl Actor for Idle {
    type Context = Context<Self>;
}

impl Handler<SslDone> for Idle {
    type Result = ();
    fn handle(&mut self, _: SslDone, _: &mut Context<Self>) {}
}

impl Handler<ClientInput> for Idle {
    type Result = ();
    fn handle(&mut self, _: ClientInput, _: &mut Context<Self>) {}
}

impl Handler<CertRejected> for Idle {
    type Result = ();
    fn handle(&mut self, _: CertRejected, _: &mut Context<Self>) {}
}

impl Handler<Disconnect> for Idle {
    type Result = ();
    fn handle(&mut self, _: Disconnect, _: &mut Context<Self>) {}
}

/// Calls `Listener::bind(addr, ..)` inside a fresh actix system.
fn bind_error(addr: String) -> ListenerError {
    let config = support::options().build().unwrap();
    System::new().block_on(async move {
        match Listener::bind(addr.as_str(), config, Idle.start()) {
            Ok(listener) => panic!("bound {} despite the conflict", listener.local_addr()),
            Err(error) => error,
        }
    })
}

#[test]
fn address_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let error = bind_error(addr.to_string());
    match &error {
        ListenerError::Bind { addr: a, source } => {
            assert_eq!(*a, addr);
            assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
        }
        other => panic!("expected a bind error: {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&addr.to_string()),
        "message does not name {addr}: {message:?}"
    );
    assert!(
        message.contains("in use"),
        "message does not say why: {message:?}"
    );
    drop(taken);
}

#[test]
fn address_that_does_not_parse() {
    let error = bind_error("127.0.0.1:99999".to_owned());
    assert!(
        matches!(&error, ListenerError::Resolve { addr, .. } if addr == "127.0.0.1:99999"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:99999"), "{message:?}");
    assert!(message.contains("port"), "{message:?}");
}
