//! The plaintext-then-TLS protocols of the STARTTLS examples: an FTP control channel that
//! upgrades on `AUTH TLS` and a minimal SMTP front that upgrades on `STARTTLS`.
//!
//! [`LineServer`] is the handler actor. It splits each connection's input into command
//! lines, asks the [`Protocol`] what to answer, and does the STARTTLS switch safely: the
//! go-ahead reply is put first, then [`ClientInput::start_tls`] is called with the end of
//! the command, so that whatever the client sent after the command in the same read is
//! dropped (and logged by sslify) instead of being run. The connection reads no more
//! plaintext while this handler still holds the input, so later bytes can only reach the
//! TLS handshake. This is what keeps the command-injection class of STARTTLS bugs out.
//!
//! The integration tests run this same module against `openssl s_client -starttls`, so
//! it depends on nothing else in `examples/`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::mpsc::Sender;

use actix::prelude::*;
use log::{debug, info, warn};
use sslify::{
    CertProblem, CertRejected, ClientCertReport, ClientInput, Connected, ConnectionHandle,
    ConnectionId, Disconnect, DisconnectReason, SslDone, StartTlsError,
};

/// The longest command line accepted, line end included; RFC 5321 allows 512 bytes for
/// SMTP and FTP servers use similar limits. A longer line ends the connection.
pub const MAX_LINE: usize = 1024;

/// What the handler does with one command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Put this reply and read on.
    Reply(String),
    /// The protocol's STARTTLS command: on a plaintext connection put `go_ahead` and switch
    /// to TLS; on a TLS connection put `refusal` (after asking sslify anyway, which refuses
    /// and says why).
    StartTls {
        /// The reply that tells the client to begin its handshake.
        go_ahead: String,
        /// The reply when the connection is TLS already.
        refusal: String,
    },
    /// Put this reply and close the connection.
    Quit(String),
}

/// One line-based protocol that upgrades to TLS with a command.
pub trait Protocol: Unpin + 'static {
    /// What one connection remembers between commands; reset to its default when TLS
    /// starts, as RFC 3207 asks of SMTP servers.
    type State: Default + Unpin;

    /// The protocol's name in log lines.
    const NAME: &'static str;

    /// The banner put as soon as a client connects.
    fn greeting(&self) -> String;

    /// The answer to one command line (without its line end).
    fn command(&self, line: &str, tls: bool, state: &mut Self::State) -> Action;

    /// Called once the handshake is done; may return a line to put.
    fn secured(
        &self,
        id: ConnectionId,
        report: &ClientCertReport,
        state: &mut Self::State,
    ) -> Option<String>;
}

/// Something the handler did, for whoever watches it (the tests).
#[derive(Debug, Clone)]
pub enum Note {
    /// A client connected and got the greeting.
    Connected(ConnectionId),
    /// A command line was acted on; `tls` says whether it came over TLS.
    Command {
        /// The connection.
        id: ConnectionId,
        /// The line, without its line end.
        line: String,
        /// Whether it came over TLS.
        tls: bool,
    },
    /// Bytes after a STARTTLS command in the same input were dropped.
    Dropped {
        /// The connection.
        id: ConnectionId,
        /// How many bytes.
        bytes: usize,
    },
    /// sslify refused a STARTTLS switch.
    Refused {
        /// The connection.
        id: ConnectionId,
        /// Why.
        error: StartTlsError,
    },
    /// The handshake is done.
    Secured {
        /// The connection.
        id: ConnectionId,
        /// What the client presented.
        report: ClientCertReport,
    },
    /// The client certificate was refused in the handshake.
    Rejected {
        /// The connection.
        id: ConnectionId,
        /// Why.
        problem: CertProblem,
    },
    /// The connection ended.
    Disconnected {
        /// The connection.
        id: ConnectionId,
        /// Why.
        reason: DisconnectReason,
    },
}

/// The handler actor: one [`Session`] per connection, commands answered by `P`.
pub struct LineServer<P: Protocol> {
    protocol: P,
    sessions: HashMap<ConnectionId, Session<P::State>>,
    observer: Option<Sender<Note>>,
}

/// One connection as the handler sees it.
struct Session<S> {
    handle: ConnectionHandle,
    lines: Lines,
    tls: bool,
    /// STARTTLS was accepted; nothing more is read until the handshake is done.
    switching: bool,
    /// QUIT was answered (or the line was too long); the rest is ignored.
    closing: bool,
    state: S,
}

impl<P: Protocol> LineServer<P> {
    /// A handler speaking `protocol`.
    pub fn new(protocol: P) -> Self {
        LineServer {
            protocol,
            sessions: HashMap::new(),
            observer: None,
        }
    }

    /// Also reports what the handler does to `observer`.
    pub fn with_observer(mut self, observer: Sender<Note>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn note(&self, note: Note) {
        if let Some(observer) = &self.observer {
            // Nobody listening any more is no reason to stop serving.
            let _ = observer.send(note);
        }
    }

    /// Runs the complete lines of one input, in order, until one of them ends the
    /// plaintext part or the connection.
    fn run_lines(&mut self, input: &ClientInput) {
        let id = input.id;
        let Some(session) = self.sessions.get_mut(&id) else {
            debug!("[{id}] input for a connection without session, ignored");
            return;
        };
        if session.closing || session.switching {
            debug!(
                "[{id}] {} bytes after the last command, ignored",
                input.data.len()
            );
            return;
        }
        let lines = match session.lines.push(&input.data) {
            Ok(lines) => lines,
            Err(LineTooLong) => {
                warn!("[{id}] command line longer than {MAX_LINE} bytes, closing");
                session.closing = true;
                session.handle.put("500 Line too long\r\n");
                session.handle.close();
                return;
            }
        };

        let mut notes = Vec::new();
        for (line, end) in lines {
            debug!(
                "[{id}] {} {} command: {line:?}",
                if input.tls { "TLS" } else { "plaintext" },
                P::NAME
            );
            notes.push(Note::Command {
                id,
                line: line.clone(),
                tls: input.tls,
            });
            match self.protocol.command(&line, input.tls, &mut session.state) {
                Action::Reply(reply) => {
                    session.handle.put(reply);
                }
                Action::Quit(reply) => {
                    info!("[{id}] {line:?}: closing");
                    session.handle.put(reply);
                    session.handle.close();
                    session.closing = true;
                    break;
                }
                Action::StartTls { refusal, .. } if input.tls => {
                    // sslify refuses this; asking shows how, and the handler answers as
                    // the protocol says.
                    match input.start_tls(end) {
                        Err(error) => {
                            warn!("[{id}] {line:?} over TLS refused: {error}");
                            notes.push(Note::Refused { id, error });
                        }
                        Ok(()) => warn!("[{id}] {line:?} over TLS was accepted"),
                    }
                    session.handle.put(refusal);
                }
                Action::StartTls { go_ahead, .. } => {
                    // The go-ahead goes first: what is put after `start_tls` is sent only
                    // once the handshake is done.
                    session.handle.put(go_ahead);
                    match input.start_tls(end) {
                        Ok(()) => {
                            let dropped = input.data.len() - end;
                            info!("[{id}] {line:?}: switching to TLS");
                            if dropped > 0 {
                                notes.push(Note::Dropped { id, bytes: dropped });
                            }
                            session.switching = true;
                            session.lines.clear();
                            break;
                        }
                        Err(error) => {
                            warn!("[{id}] {line:?} refused: {error}");
                            notes.push(Note::Refused { id, error });
                        }
                    }
                }
            }
        }
        for note in notes {
            self.note(note);
        }
    }
}

impl<P: Protocol> Actor for LineServer<P> {
    type Context = Context<Self>;
}

impl<P: Protocol> Handler<Connected> for LineServer<P> {
    type Result = ();

    fn handle(&mut self, connected: Connected, _: &mut Context<Self>) {
        let id = connected.id;
        info!(
            "[{id}] {} client connected from {}",
            P::NAME,
            connected.peer
        );
        connected.handle.put(self.protocol.greeting());
        self.sessions.insert(
            id,
            Session {
                handle: connected.handle,
                lines: Lines::default(),
                tls: false,
                switching: false,
                closing: false,
                state: P::State::default(),
            },
        );
        self.note(Note::Connected(id));
    }
}

impl<P: Protocol> Handler<ClientInput> for LineServer<P> {
    type Result = ();

    fn handle(&mut self, input: ClientInput, _: &mut Context<Self>) {
        self.run_lines(&input);
    }
}

impl<P: Protocol> Handler<SslDone> for LineServer<P> {
    type Result = ();

    fn handle(&mut self, done: SslDone, _: &mut Context<Self>) {
        let id = done.id;
        info!(
            "[{id}] TLS ready ({}, {}): {}",
            done.protocol, done.cipher, done.client_cert
        );
        let Some(session) = self.sessions.get_mut(&id) else {
            debug!("[{id}] handshake done for a connection without session");
            return;
        };
        session.tls = true;
        session.switching = false;
        session.lines.clear();
        session.state = P::State::default();
        if let Some(line) = self
            .protocol
            .secured(id, &done.client_cert, &mut session.state)
        {
            session.handle.put(line);
        }
        self.note(Note::Secured {
            id,
            report: done.client_cert,
        });
    }
}

impl<P: Protocol> Handler<CertRejected> for LineServer<P> {
    type Result = ();

    fn handle(&mut self, rejected: CertRejected, _: &mut Context<Self>) {
        info!(
            "[{}] client certificate rejected in the handshake: {}: {}",
            rejected.id, rejected.problem, rejected.report.verify_text
        );
        self.note(Note::Rejected {
            id: rejected.id,
            problem: rejected.problem,
        });
    }
}

impl<P: Protocol> Handler<Disconnect> for LineServer<P> {
    type Result = ();

    fn handle(&mut self, gone: Disconnect, _: &mut Context<Self>) {
        info!("[{}] disconnected: {}", gone.id, gone.reason);
        self.sessions.remove(&gone.id);
        self.note(Note::Disconnected {
            id: gone.id,
            reason: gone.reason,
        });
    }
}

/// FTP's control channel, as far as getting to TLS and telling the client what its
/// certificate is worth (POE::Component::SSLify::NonBlock's FTP example).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ftp;

/// What an FTP session knows about its client.
#[derive(Debug, Default)]
pub struct FtpState {
    /// Set once TLS is up: whether the client certificate logs the client in.
    logged_in: bool,
}

impl Protocol for Ftp {
    type State = FtpState;

    const NAME: &'static str = "FTP";

    fn greeting(&self) -> String {
        "220 sslify FTP example ready; send AUTH TLS\r\n".to_owned()
    }

    fn command(&self, line: &str, tls: bool, state: &mut FtpState) -> Action {
        let (verb, argument) = split_command(line);
        let reply = |text: &str| Action::Reply(format!("{text}\r\n"));
        match verb.as_str() {
            "AUTH" => match argument.to_ascii_uppercase().as_str() {
                "TLS" | "SSL" => Action::StartTls {
                    go_ahead: format!("234 AUTH {argument} accepted, start the handshake\r\n"),
                    refusal: "503 TLS is already on\r\n".to_owned(),
                },
                "" => reply("501 AUTH needs a mechanism: AUTH TLS"),
                _ => reply("504 Only AUTH TLS is supported"),
            },
            "QUIT" => Action::Quit("221 Goodbye\r\n".to_owned()),
            "NOOP" => reply("200 NOOP ok"),
            "SYST" => reply("215 UNIX Type: L8"),
            "FEAT" => reply("211-Features:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n211 End"),
            _ if !tls => reply("530 Send AUTH TLS first"),
            _ if !state.logged_in => reply("530 Not logged in: no valid client certificate"),
            "USER" | "PASS" => reply("230 Already logged in by client certificate"),
            "PWD" => reply("257 \"/\" is the current directory"),
            "PBSZ" => reply("200 PBSZ=0"),
            "PROT" if argument.eq_ignore_ascii_case("P") => reply("200 Protection level Private"),
            "PROT" => reply("536 Only PROT P is supported"),
            _ => reply("502 Command not implemented"),
        }
    }

    fn secured(
        &self,
        id: ConnectionId,
        report: &ClientCertReport,
        state: &mut FtpState,
    ) -> Option<String> {
        state.logged_in = report.presented && report.valid;
        let code = if state.logged_in { 230 } else { 530 };
        let verdict = verdict(report);
        info!("[{id}] client certificate verdict: {verdict}");
        Some(format!("{code} [{id}] {verdict}\r\n"))
    }
}

/// The answers of the Perl module's advanced example.
pub fn verdict(report: &ClientCertReport) -> &'static str {
    if !report.presented {
        "NoClientCertExists"
    } else if !report.valid {
        "ClientCertInvalid"
    } else {
        "Yeah! You're authenticated!"
    }
}

/// A minimal SMTP front: greeting, EHLO, STARTTLS, NOOP, RSET, HELP and QUIT. Mail
/// itself is not taken.
#[derive(Debug, Clone)]
pub struct Smtp {
    /// The server's name in its greeting and EHLO answer.
    pub host: String,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            host: "localhost".to_owned(),
        }
    }
}

/// What an SMTP session knows about its client.
#[derive(Debug, Default)]
pub struct SmtpState {
    /// The name the client gave in EHLO or HELO.
    greeted: Option<String>,
}

impl Protocol for Smtp {
    type State = SmtpState;

    const NAME: &'static str = "SMTP";

    fn greeting(&self) -> String {
        format!("220 {} ESMTP sslify example\r\n", self.host)
    }

    fn command(&self, line: &str, tls: bool, state: &mut SmtpState) -> Action {
        let (verb, argument) = split_command(line);
        let reply = |text: &str| Action::Reply(format!("{text}\r\n"));
        match verb.as_str() {
            "EHLO" | "HELO" if argument.is_empty() => {
                reply(&format!("501 5.5.4 Syntax: {verb} hostname"))
            }
            "EHLO" => {
                state.greeted = Some(argument.to_owned());
                let mut lines = vec![
                    format!("250-{} greets {argument}", self.host),
                    "250-8BITMIME".to_owned(),
                ];
                // Advertised only before TLS (RFC 3207).
                if !tls {
                    lines.push("250-STARTTLS".to_owned());
                }
                lines.push("250 HELP".to_owned());
                Action::Reply(lines.join("\r\n") + "\r\n")
            }
            "HELO" => {
                state.greeted = Some(argument.to_owned());
                reply(&format!("250 {}", self.host))
            }
            "STARTTLS" if !argument.is_empty() => {
                reply("501 5.5.4 Syntax: STARTTLS takes no parameters")
            }
            "STARTTLS" => Action::StartTls {
                go_ahead: "220 Ready to start TLS\r\n".to_owned(),
                refusal: "503 5.5.1 TLS already active\r\n".to_owned(),
            },
            "NOOP" | "RSET" => reply("250 2.0.0 OK"),
            "HELP" => reply("214 2.0.0 EHLO HELO STARTTLS NOOP RSET HELP QUIT"),
            "QUIT" => Action::Quit("221 2.0.0 Bye\r\n".to_owned()),
            "MAIL" | "RCPT" | "DATA" if !tls => {
                reply("530 5.7.0 Must issue a STARTTLS command first")
            }
            _ => reply("502 5.5.2 Command not implemented"),
        }
    }

    fn secured(
        &self,
        id: ConnectionId,
        report: &ClientCertReport,
        _state: &mut SmtpState,
    ) -> Option<String> {
        debug!("[{id}] SMTP over TLS; client certificate: {report}");
        // The client speaks first after STARTTLS (it sends EHLO again).
        None
    }
}

/// The command word in upper case, and the rest of the line trimmed.
pub fn split_command(line: &str) -> (String, &str) {
    let line = line.trim();
    match line.split_once(char::is_whitespace) {
        Some((verb, rest)) => (verb.to_ascii_uppercase(), rest.trim()),
        None => (line.to_ascii_uppercase(), ""),
    }
}

/// A line longer than [`MAX_LINE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// Collects one connection's bytes into lines; a line may arrive over several inputs.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Adds one input and returns the lines it completes, each without its line end
    /// (`\r\n` or `\n`) and with the offset in `input` just past that line end, which is
    /// what [`ClientInput::start_tls`] takes.
    ///
    /// # Errors
    ///
    /// [`LineTooLong`] when a line, complete or not, exceeds [`MAX_LINE`] bytes.
    pub fn push(&mut self, input: &[u8]) -> Result<Vec<(String, usize)>, LineTooLong> {
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(at) = input[start..].iter().position(|&byte| byte == b'\n') {
            let end = start + at + 1;
            self.partial.extend_from_slice(&input[start..end]);
            if self.partial.len() > MAX_LINE {
                return Err(LineTooLong);
            }
            let mut line = std::mem::take(&mut self.partial);
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push((String::from_utf8_lossy(&line).into_owned(), end));
            start = end;
        }
        self.partial.extend_from_slice(&input[start..]);
        if self.partial.len() > MAX_LINE {
            return Err(LineTooLong);
        }
        Ok(lines)
    }

    /// Forgets a partial line.
    pub fn clear(&mut self) {
        self.partial.clear();
    }
}
