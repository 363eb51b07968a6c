//! The container image, built and started for real by `scripts/docker-smoke.sh` with this
//! test build's binary: `/healthz` and an MCP `tools/call` through the container to a contract
//! backend on the host, Docker's HEALTHCHECK, the non-root user, the data directory, a clean
//! stop on SIGTERM. The script prints the image size and its timings (shown below on stderr).
//!
//! Needs a Docker engine: the one `docker info` reaches, or Debian's `docker.io` (dockerd),
//! which the script starts privately as root; a cold run also needs `debootstrap` and the
//! Debian archive. .ci/run installs both. Without them this test fails with the reason: it is
//! never skipped.
//!
//! The image's HEALTHCHECK command, `cortex-gateway healthcheck`, is also tested here on its
//! own against a gateway on the host.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A cold run (debootstrap of the base image) takes a few minutes; this only bounds a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// After SIGTERM, how long the script may clean up (containers, its private engine).
const CLEANUP_GRACE: Duration = Duration::from_secs(60);

/// What the script reports when each check passed.
const CHECKS: [&str; 7] = [
    "check: GET /healthz through the container -> 200",
    "check: GET /readyz through the container -> 200 (the host backend was discovered)",
    "check: MCP initialize + tools/call through the container to the host backend",
    "runs as uid/gid 10001, not root",
    "check: Docker HEALTHCHECK (cortex-gateway healthcheck) -> healthy",
    "check: the non-root user writes its store under /var/lib/cortex-gateway/data",
    "check: docker stop (SIGTERM) -> the gateway exits 0",
];

#[test]
fn the_image_builds_starts_as_non_root_and_serves_mcp() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("docker-smoke.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new("bash")
        .arg(root.join("scripts/docker-smoke.sh"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_cortex-gateway"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        // Its own process group, so a timeout stops the script and everything it started.
        .process_group(0)
        .spawn()
        .expect("spawn bash scripts/docker-smoke.sh");
    let group = child.id() as libc::pid_t;

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for docker-smoke.sh") {
            break Some(status);
        }
        if started.elapsed() >= RUN_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let status = status.unwrap_or_else(|| {
        // SAFETY: signalling the process group this test created.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let grace = Instant::now();
        while grace.elapsed() < CLEANUP_GRACE {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // SAFETY: as above; the group may already be gone.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = child.wait();
        panic!(
            "docker-smoke.sh timed out after {RUN_TIMEOUT:?}:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    });

    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    // Straight to stderr (not captured by the test harness): the image size and timings
    // belong in every CI log.
    let _ = writeln!(std::io::stderr(), "--- docker-smoke.sh ---\n{output}");
    assert!(
        status.success(),
        "docker-smoke.sh failed ({status}):\n{output}"
    );
    for check in CHECKS {
        assert!(output.contains(check), "missing `{check}` in:\n{output}");
    }
    assert!(output.contains("docker-smoke: ok"), "{output}");
}

/// A free loopback port (bound, then released for a child process to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// The binary with an empty environment: a `HOSTNAME` or `PORT` of the test process (set by
/// container runtimes) must not move the listener.
fn gateway_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cortex-gateway"));
    command.env_clear().stdin(Stdio::null());
    command
}

/// `cortex-gateway demo` on 127.0.0.1:`port`; killed on drop.
struct Demo(Child);

impl Demo {
    fn start(port: u16, data_dir: &Path) -> Demo {
        let child = gateway_command()
            .args([
                "demo",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cortex-gateway demo");
        let demo = Demo(child);
        let started = Instant::now();
        while !healthz_answers(port) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "demo did not answer /healthz on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        demo
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `GET /healthz` on 127.0.0.1:`port` answers 200 (the test's own probe, independent
/// of the command under test).
fn healthz_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut reply = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut reply).is_ok()
        && reply.starts_with("HTTP/1.1 200")
}

/// Runs `cortex-gateway healthcheck --config <yaml>` with `env`.
fn healthcheck(config: &Path, env: &[(&str, &str)]) -> Output {
    gateway_command()
        .args(["healthcheck", "--timeout", "2s", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .expect("run cortex-gateway healthcheck")
}

#[test]
fn healthcheck_asks_the_configured_listener_and_fails_when_nothing_answers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let _demo = Demo::start(port, &dir.path().join("demo"));

    // A wildcard listener, as in the image (HOSTNAME=0.0.0.0): probed on loopback.
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: [\"0.0.0.0:{port}\"]\nauth:\n  mode: oauth\n  oauth:\n    issuer: https://auth.example.com\n"
        ),
    )
    .expect("write config");
    let healthy = healthcheck(&config, &[]);
    assert!(
        healthy.status.success(),
        "healthcheck failed against a running gateway: {}",
        String::from_utf8_lossy(&healthy.stderr)
    );

    // PORT moves the listener, and the check with it: nothing answers there.
    let elsewhere = free_port().to_string();
    let unhealthy = healthcheck(&config, &[("PORT", elsewhere.as_str())]);
    let stderr = String::from_utf8_lossy(&unhealthy.stderr);
    assert_eq!(unhealthy.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to 127.0.0.1:{elsewhere}")),
        "{stderr}"
    );

    // A configuration that does not load is unhealthy too (exit 1: Docker reserves 2).
    std::fs::write(&config, "server:\n  listen: [\"not an address\"]\n").expect("write");
    let invalid = healthcheck(&config, &[]);
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert_eq!(invalid.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("configuration is invalid"), "{stderr}");
}
