//! The real binary as a child process, for what the in-process server cannot show:
//! main(), the command line and the environment, stdout versus stderr, signals and exit
//! codes. `ChildServer` is the one way to start it, as a server (`start`) or as a
//! one-shot command (`run`). Either way the child's environment is cleared and holds only
//! what the test gives it, so the developer's shell cannot change what a test exercises.
//!
//! A server binds `127.0.0.1:0` and logs JSON; the harness reads the address from the
//! `listening` line on stderr, so no port is guessed and none is raced for. Synchronous on
//! purpose: the child is a process, not a future, and the readiness probe is one
//! HTTP/1.0 request that needs no client library.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bizkit-mirror");

/// From spawn to the logged address answering /readyz.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// From SIGTERM to exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// A one-shot command's whole run, unless the test sets its own.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The public example keys and identity that `serve --demo` seeds.
pub const DEMO_PROD: &str = "PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE";
pub const DEMO_DEV: &str = "DEV_PGrFxpGEtrOZfuWhnoJohUYBXuOE";
pub const DEMO_ROOT: &str = "ROOTPGrFxpGEtrOZfuWhnoJohUYBXuOE";
pub const DEMO_IDENTITY: &str = "Z9CPkS2o3UV163VQn5OUv0T8BQi8Fvdg";

/// Rate limits no test run meets.
const UNLIMITED: &str = "4000000000";

/// Bytes a child wrote to one of its pipes, collected by `drain`.
pub(super) type Sink = Arc<Mutex<Vec<u8>>>;

/// Drains a pipe on a thread of its own, so a chatty child never blocks on a full pipe.
pub(super) fn drain(mut pipe: impl Read + Send + 'static) -> (Sink, JoinHandle<()>) {
    let sink = Sink::default();
    let into = sink.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    });
    (sink, reader)
}

pub(super) fn text(sink: &Sink) -> String {
    String::from_utf8_lossy(&sink.lock().unwrap()).into_owned()
}

/// The binary's arguments and environment: a builder, consumed by `start` or `run`.
#[derive(Debug)]
pub struct ChildServer {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
    timeout: Duration,
    dir: Option<tempfile::TempDir>,
}

impl ChildServer {
    /// `bizkit-mirror args…` with an empty environment.
    pub fn new<I, S>(args: I) -> ChildServer
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        ChildServer {
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            stdin: Vec::new(),
            timeout: RUN_TIMEOUT,
            dir: None,
        }
    }

    /// Sets one variable of the child's environment, replacing an earlier value.
    pub fn env(mut self, name: &str, value: &str) -> ChildServer {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets several variables, as `env` does.
    pub fn envs(self, vars: &[(&str, &str)]) -> ChildServer {
        vars.iter().fold(self, |builder, (name, value)| builder.env(name, value))
    }

    pub fn database_url(self, url: &str) -> ChildServer {
        self.env("DATABASE_URL", url)
    }

    /// A database of its own: a SQLite file in a temporary directory that lives as long
    /// as the child.
    pub fn fresh_sqlite(mut self) -> ChildServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite:{}", dir.path().join("server.db").display());
        self.dir = Some(dir);
        self.database_url(&url)
    }

    /// The log filter. A server's must keep `bizkit_mirror::server` at `info` or finer:
    /// `start` reads the address from its `listening` line.
    pub fn rust_log(self, filter: &str) -> ChildServer {
        self.env("RUST_LOG", filter)
    }

    /// JSON log lines; `start` always asks for them.
    pub fn json_logs(self) -> ChildServer {
        self.env("LOG_FORMAT", "json")
    }

    /// Per-key rate limits that no test run meets, for both the PROD and the DEV plan.
    pub fn unlimited_rates(self) -> ChildServer {
        ["PROD", "DEV"].iter().fold(self, |builder, kind| {
            builder
                .env(&format!("RATE_LIMIT_{kind}_PER_HOUR"), UNLIMITED)
                .env(&format!("RATE_LIMIT_{kind}_BURST"), UNLIMITED)
        })
    }

    /// What `run` feeds the command on standard input (nothing by default).
    pub fn stdin(mut self, bytes: &[u8]) -> ChildServer {
        self.stdin = bytes.to_vec();
        self
    }

    /// How long `run` lets the command take (`RUN_TIMEOUT` by default).
    pub fn timeout(mut self, limit: Duration) -> ChildServer {
        self.timeout = limit;
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args).env_clear().envs(self.env.iter().map(|(n, v)| (n, v)));
        cmd
    }

    fn describe(&self) -> String {
        let env: Vec<String> = self.env.iter().map(|(n, v)| format!("{n}={v}")).collect();
        format!("`{} bizkit-mirror {}`", env.join(" "), self.args.join(" "))
    }

    /// Starts the binary as a server on `127.0.0.1:0` with JSON logs, and returns once
    /// the address it logged answers /readyz with 200. Panics with everything the child
    /// printed if it exits first or is not ready within `READY_TIMEOUT`.
    pub fn start(self) -> Running {
        let this = self.env("BIND", "127.0.0.1:0").json_logs();
        let what = this.describe();
        let mut cmd = this.command();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let (stdout, out_reader) = drain(child.stdout.take().unwrap());
        let (stderr, err_reader) = drain(child.stderr.take().unwrap());
        let mut server = Running {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            base: String::new(),
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
            _dir: this.dir,
        };

        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = loop {
            if let Some(addr) = listening_address(&server.stderr()) {
                break addr;
            }
            if let Some(status) = server.exited() {
                server.fail(&what, &format!("exited ({status}) before logging its address"));
            }
            if Instant::now() >= deadline {
                server.fail(&what, &format!("logged no `listening` address within {READY_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        server.addr = addr;
        server.base = format!("http://{addr}");
        while get_status(&addr, "/readyz") != Some(200) {
            if let Some(status) = server.exited() {
                server.fail(&what, &format!("exited ({status}) before /readyz answered 200"));
            }
            if Instant::now() >= deadline {
                server.fail(&what, &format!("/readyz on {addr} did not answer 200 within {READY_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Runs the binary as a one-shot command (`import`, `org`, `key`, `migrate`, or a
    /// server expected to refuse its settings) to its exit, feeding it `stdin`. Panics if
    /// it is still running after the timeout.
    pub fn run(self) -> Finished {
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", self.describe()));
        let mut input = child.stdin.take().unwrap();
        let bytes = self.stdin.clone();
        // On a thread: a child that does not read its input must not block the test. A
        // child that exits without reading it all is not this writer's failure.
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&bytes);
        });
        let (stdout, out_reader) = drain(child.stdout.take().unwrap());
        let (stderr, err_reader) = drain(child.stderr.take().unwrap());
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let _ = (out_reader.join(), err_reader.join(), writer.join());
                panic!("{} still running after {:?}\n--- stderr\n{}", self.describe(), self.timeout, text(&stderr));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = (out_reader.join(), err_reader.join(), writer.join());
        Finished { status, stdout: text(&stdout), stderr: text(&stderr) }
    }
}

/// The address of the first `listening` line among complete JSON log lines.
fn listening_address(log: &str) -> Option<SocketAddr> {
    log.split_inclusive('\n').filter(|line| line.ends_with('\n')).find_map(|line| {
        let entry: Value = serde_json::from_str(line).ok()?;
        if entry["fields"]["message"] != "listening" {
            return None;
        }
        entry["fields"]["address"].as_str()?.parse().ok()
    })
}

/// The status code of `GET path`, or None while nothing answers.
fn get_status(addr: &SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = String::new();
    stream.take(64).read_to_string(&mut head).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A server started by `ChildServer::start`. Dropping it kills the process, so a failed
/// assertion never leaves a server behind.
pub struct Running {
    child: Child,
    /// The address the server logged.
    pub addr: SocketAddr,
    /// `http://` and `addr`.
    pub base: String,
    stdout: Sink,
    stderr: Sink,
    readers: Vec<JoinHandle<()>>,
    /// Removed after the child is killed (fields drop after `drop`).
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// What the server printed on standard output so far.
    pub fn stdout(&self) -> String {
        text(&self.stdout)
    }

    /// What the server logged so far.
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// The exit status, if the server has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("wait for the server");
        if status.is_some() {
            self.join_readers();
        }
        status
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Waits at most `limit` for the server to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, at most `STOP_TIMEOUT` for the exit, and everything the server printed.
    pub fn stop(mut self) -> Finished {
        self.sigterm();
        let Some(status) = self.wait_exit(STOP_TIMEOUT) else {
            panic!("no exit within {STOP_TIMEOUT:?} of SIGTERM; stderr:\n{}", self.stderr());
        };
        Finished { status, stdout: self.stdout(), stderr: self.stderr() }
    }

    /// `stop`, asserting a clean exit.
    pub fn stop_ok(self) -> Finished {
        let finished = self.stop();
        assert!(
            finished.status.success(),
            "exit status {} after SIGTERM; stderr:\n{}",
            finished.status,
            finished.stderr
        );
        finished
    }

    /// Kills the server and panics with `why` and everything it printed.
    fn fail(&mut self, what: &str, why: &str) -> ! {
        self.kill();
        panic!("{what} {why}\n--- stderr\n{}\n--- stdout\n{}", self.stderr(), self.stdout())
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.join_readers();
    }

    /// Once the child is gone its pipes close, so the readers end and hold all it wrote.
    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// Everything a finished child left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Asserts a zero exit and returns standard output.
    #[track_caller]
    pub fn succeeded(&self) -> &str {
        assert!(self.status.success(), "exit {}\nstdout: {}\nstderr: {}", self.status, self.stdout, self.stderr);
        &self.stdout
    }
}
