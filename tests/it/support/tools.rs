//! Outside tools (npm, node, curl, chromium, schemathesis): whether they are here, and
//! bounded runs of them. A missing tool skips its test with a message, unless the
//! environment says CI must have it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::child::{drain, text};

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

/// The first of `names` that is a file in a directory of PATH.
pub fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

/// What a bounded run of an outside tool left behind.
pub struct Ran {
    /// None when the run was killed.
    pub status: Option<ExitStatus>,
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
/// timeout also ends what it started (npm runs node, node may run more, chromium runs
/// helpers), and nothing is left holding the pipes. Its output is read on threads of
/// their own, so a chatty tool cannot block on a full pipe.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Ran {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let (out, out_reader) = drain(child.stdout.take().unwrap());
    let (err, err_reader) = drain(child.stderr.take().unwrap());
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
    let _ = (out_reader.join(), err_reader.join());
    Ran { status, success: status.is_some_and(|s| s.success()), timed_out, stdout: text(&out), stderr: text(&err) }
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
