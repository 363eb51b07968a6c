//! Child processes of the harness: the gateway binary started with a scrubbed environment in
//! a directory of its own, a free port for it, and stopping it by PID. The load benchmark
//! includes this file with `#[path]`, so it uses nothing else of the test harness.

use std::ffi::OsStr;
use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Environment variables of the calling process that would configure the gateway behind the
/// caller's back (a developer's shell, a container's `HOSTNAME`); removed from every child.
const SCRUBBED_PREFIXES: [&str; 2] = ["CORTEX_", "OAUTH_"];
const SCRUBBED_NAMES: [&str; 3] = ["PORT", "HOSTNAME", "RUST_LOG"];

/// A free 127.0.0.1 port: bound to port 0, then released for a child to take.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Removes the variables of [`SCRUBBED_PREFIXES`] and [`SCRUBBED_NAMES`] from `cmd`'s
/// environment.
pub fn scrub_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let Some(name) = key.to_str() else { continue };
        if SCRUBBED_PREFIXES.iter().any(|p| name.starts_with(p)) || SCRUBBED_NAMES.contains(&name) {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// `binary` to be run in `dir` with a scrubbed environment, stdin closed, and stdout and
/// stderr written to `dir/stdout.log` and `dir/stderr.log`.
pub fn gateway_command(binary: impl AsRef<OsStr>, dir: &Path) -> std::io::Result<Command> {
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("stdout.log"))?)
        .stderr(File::create(dir.join("stderr.log"))?);
    scrub_env(&mut cmd);
    Ok(cmd)
}

/// Stops `child`: SIGTERM, then SIGKILL if it is still running after `grace`. Returns how it
/// ended (`None` if it could not be reaped).
pub fn stop(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        let _ = child.kill();
        return child.wait().ok();
    };
    // SAFETY: a plain signal to the PID of a child we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}
