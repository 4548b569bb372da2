//! Pieces shared by the benchmark's binaries: command-line parsing, the default test
//! certificates, CPU accounting and latency summaries.

use std::fmt;
use std::net::SocketAddr;
use std::process;
use std::str::FromStr;
use std::time::Duration;

/// The reply each server sends once a handshake is done, after the connection's id in
/// brackets. The load client checks for it.
pub const REPLY: &str = "Yeah! You're authenticated!";

/// A file of the sslify test PKI (`certs/` of the sslify repository).
pub fn cert_file(name: &str) -> String {
    format!("{}/../certs/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Prints `program: message` to stderr and exits with status 2.
pub fn die(program: &str, message: impl fmt::Display) -> ! {
    eprintln!("{program}: {message}");
    process::exit(2);
}

/// A small command-line parser: `--name value`, `--name=value` and `--flag`, plus one
/// optional leading subcommand.
pub struct Args {
    program: &'static str,
    usage: &'static str,
    words: Vec<String>,
}

impl Args {
    /// Takes the process arguments; `-h` or `--help` prints `usage` and exits.
    pub fn from_env(program: &'static str, usage: &'static str) -> Self {
        let words: Vec<String> = std::env::args().skip(1).collect();
        if words.iter().any(|w| w == "-h" || w == "--help") {
            print!("{usage}");
            process::exit(0);
        }
        Args {
            program,
            usage,
            words,
        }
    }

    /// The first argument when it is not an option.
    pub fn subcommand(&mut self) -> Option<String> {
        match self.words.first() {
            Some(word) if !word.starts_with('-') => Some(self.words.remove(0)),
            _ => None,
        }
    }

    /// Whether `--name` was given (and removes it).
    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.words.len();
        self.words.retain(|w| w != name);
        self.words.len() != before
    }

    /// The value of `--name`, if given; exits with a message when it is missing or invalid.
    pub fn value<T>(&mut self, name: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let prefix = format!("{name}=");
        let position = self
            .words
            .iter()
            .position(|w| w == name || w.starts_with(&prefix))?;
        let word = self.words.remove(position);
        let text = match word.strip_prefix(&prefix) {
            Some(text) => text.to_owned(),
            None if position < self.words.len() => self.words.remove(position),
            None => die(self.program, format_args!("{name} needs a value")),
        };
        match text.parse() {
            Ok(value) => Some(value),
            Err(error) => die(self.program, format_args!("{name} {text}: {error}")),
        }
    }

    /// The value of `--name`, or `default`.
    pub fn value_or<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.value(name).unwrap_or(default)
    }

    /// A duration given in (possibly fractional) seconds.
    pub fn seconds_or(&mut self, name: &str, default: f64) -> Duration {
        let seconds: f64 = self.value_or(name, default);
        if !(seconds.is_finite() && seconds >= 0.0) {
            die(
                self.program,
                format_args!("{name}: not a duration: {seconds}"),
            );
        }
        Duration::from_secs_f64(seconds)
    }

    /// Exits with the usage text if anything was left unparsed.
    pub fn finish(self) {
        if let Some(word) = self.words.first() {
            eprint!("{}", self.usage);
            die(self.program, format_args!("unexpected argument {word:?}"));
        }
    }
}

/// Exits unless `addr` is a loopback address: the load client sends to this machine only.
pub fn require_loopback(program: &str, addr: SocketAddr) {
    if !addr.ip().is_loopback() {
        die(
            program,
            format_args!("{addr} is not a loopback address; only 127.0.0.0/8 and ::1 are allowed"),
        );
    }
}

/// Asks the kernel to send this process SIGTERM when the process that started it ends, so
/// that no server or client outlives the script that ran it.
pub fn exit_with_parent() {
    // SAFETY: system calls that take no pointers.
    unsafe {
        let parent = libc::getppid();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::getppid() != parent {
            // The parent ended before the request took effect.
            libc::raise(libc::SIGTERM);
        }
    }
}

/// CPU time (user + system) this process has used so far.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given; an all-zero `rusage` is valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// Share of one core used over `wall`, in percent.
pub fn cpu_percent(cpu: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        return 0.0;
    }
    100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
}

/// Latency percentiles of a set of samples in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest sample.
    pub max: u64,
}

impl Latency {
    /// Summarises `samples` (microseconds); sorts them in place.
    pub fn of(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        let at = |q: f64| -> u64 {
            if samples.is_empty() {
                return 0;
            }
            // Nearest rank: the smallest sample with at least q of all samples at or below it.
            let rank = (q * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Latency {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or(0),
        }
    }
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        let latency = Latency::of(&mut samples);
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50, 50);
        assert_eq!(latency.p90, 90);
        assert_eq!(latency.p99, 99);
        assert_eq!(latency.max, 100);
        assert_eq!(Latency::of(&mut []).p99, 0);
        assert_eq!(Latency::of(&mut [7]).p50, 7);
    }

    #[test]
    fn parses_values_and_flags() {
        let mut args = Args {
            program: "t",
            usage: "",
            words: ["probe", "--duration", "2.5", "--echo", "--workers=8"]
                .map(String::from)
                .to_vec(),
        };
        assert_eq!(args.subcommand().as_deref(), Some("probe"));
        assert!(args.flag("--echo"));
        assert!(!args.flag("--echo"));
        assert_eq!(args.value::<usize>("--workers"), Some(8));
        assert_eq!(
            args.seconds_or("--duration", 1.0),
            Duration::from_millis(2500)
        );
        assert_eq!(args.value_or("--size", 16384usize), 16384);
        args.finish();
    }
}
