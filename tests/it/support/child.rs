//! The real binary under `serve --demo` as a child process, and bounded runs of outside
//! tools (npm, node, curl) against it: what `tests/clients.rs` and `tests/seed_examples.rs`
//! share. Synchronous on purpose: the tools are processes, not futures, and the readiness
//! probe is one HTTP/1.0 request that needs no client library.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bizkit-mirror");
pub const DEMO_PROD: &str = "PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Settings the server reads from the environment; cleared so the developer's shell
/// cannot change what these tests exercise.
const SERVER_ENV: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "BIND",
    "BIZKIT_DEMO",
    "BIZKIT_AUTO_CONFIRM",
    "RATE_LIMIT_PROD_PER_HOUR",
    "RATE_LIMIT_PROD_BURST",
    "REGISTER_RETRY_SECONDS",
    "LOGIN_MAX_FAILURES",
    "SMTP_URL",
    "LOG_FORMAT",
    "RUST_LOG",
];

/// Bytes a child wrote to one of its pipes, collected by `drain`.
pub type Sink = Arc<Mutex<Vec<u8>>>;

/// Drains a pipe on a thread of its own, so a chatty child never blocks on a full pipe.
pub fn drain(mut pipe: impl Read + Send + 'static, sink: Sink) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

pub fn text(sink: &Sink) -> String {
    String::from_utf8_lossy(&sink.lock().unwrap()).into_owned()
}

/// True when a test that needs an outside tool should fail rather than skip without it.
pub fn tools_required() -> bool {
    std::env::var("REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Whether `program --version` runs. Missing tools skip the test (with a message) unless
/// REQUIRE_TOOLS=1, where they fail it: CI must not pass by skipping.
pub fn have_tool(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(!tools_required(), "{program} is required (REQUIRE_TOOLS=1) but not found on PATH");
        eprintln!("skipping: {program} not found on PATH (set REQUIRE_TOOLS=1 to make this a failure)");
    }
    found
}

/// A `serve --demo` child on its own SQLite file. Dropping it kills the process, so a
/// failed assertion never leaves a server behind.
pub struct DemoServer {
    child: Child,
    pub base: String,
    stderr: Sink,
    _dir: tempfile::TempDir,
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port that was free a moment ago; a caller retries if another process takes it
/// before its child binds.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// The status code of `GET path`, or None while nothing answers.
fn get_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = String::new();
    stream.take(64).read_to_string(&mut head).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

impl DemoServer {
    /// Starts `serve --demo` with limits high enough that no test run meets them, and
    /// waits until /readyz answers 200.
    pub fn start() -> DemoServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database_url = format!("sqlite:{}", dir.path().join("x.db").display());
        let mut dir = Some(dir);
        for attempt in 1..=3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut cmd = Command::new(BIN);
            cmd.args(["serve", "--demo"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
            for name in SERVER_ENV {
                cmd.env_remove(name);
            }
            cmd.env("DATABASE_URL", &database_url)
                .env("BIND", &addr)
                .env("RATE_LIMIT_PROD_PER_HOUR", "4000000000")
                .env("RATE_LIMIT_PROD_BURST", "4000000000");
            let mut child = cmd.spawn().expect("spawn bizkit-mirror");
            let stderr = Sink::default();
            let reader = drain(child.stderr.take().unwrap(), stderr.clone());

            let deadline = Instant::now() + READY_TIMEOUT;
            let mut exited = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    break;
                }
                if get_status(&addr, "/readyz") == Some(200) {
                    return DemoServer { child, base: format!("http://{addr}"), stderr, _dir: dir.take().unwrap() };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            let log = text(&stderr);
            if exited && attempt < 3 && log.contains("in use") {
                continue; // someone took the port between our probe and the child's bind
            }
            panic!("demo server on {addr} not ready (exited: {exited}); stderr:\n{log}");
        }
        unreachable!()
    }

    /// What the server logged so far, for failure messages.
    pub fn log(&self) -> String {
        text(&self.stderr)
    }
}

/// What a bounded run of an outside tool left behind.
pub struct Ran {
    pub success: bool,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Both streams, for an assertion message.
    pub fn report(&self) -> String {
        format!("timed out: {}\n--- stdout\n{}\n--- stderr\n{}", self.timed_out, self.stdout, self.stderr)
    }
}

/// Runs `cmd` to completion or kills it after `limit`, so a hung tool fails the test
/// instead of hanging `cargo test`. The child leads a process group of its own, so a
/// timeout also ends what it started (npm runs node, node may run more), and nothing is
/// left holding the pipes.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Ran {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let (out, err) = (Sink::default(), Sink::default());
    let readers = [drain(child.stdout.take().unwrap(), out.clone()), drain(child.stderr.take().unwrap(), err.clone())];
    let deadline = Instant::now() + limit;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break (Some(status), false);
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for reader in readers {
        let _ = reader.join();
    }
    Ran { success: status.is_some_and(|s| s.success()), timed_out, stdout: text(&out), stderr: text(&err) }
}

/// The repository root (where Cargo.toml is).
pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `program args…` run in `dir`.
pub fn command_in(dir: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    cmd
}
