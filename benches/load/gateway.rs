//! The real `cortex-gateway` binary as a child process on 127.0.0.1, with a generated YAML
//! configuration. Stopped by PID (SIGTERM, then SIGKILL) when the guard is dropped, which
//! also happens while a panic unwinds.

use std::net::SocketAddr;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{self, Conn};
use crate::{process, procfs};

/// Where the binary is: Cargo sets `CARGO_BIN_EXE_<name>` for benchmarks.
const BUILT_BINARY: &str = env!("CARGO_BIN_EXE_cortex-gateway");

/// The binary to run: `LOAD_GATEWAY_BIN` (e.g. a build with symbols, for profiling) or the
/// one Cargo built with this bench.
pub fn binary() -> String {
    std::env::var("LOAD_GATEWAY_BIN").unwrap_or_else(|_| BUILT_BINARY.to_string())
}

/// How long SIGTERM may take before SIGKILL (`LOAD_STOP_GRACE_S` overrides, e.g. for a
/// gateway under valgrind that needs time to write its report).
fn stop_grace() -> Duration {
    std::env::var("LOAD_STOP_GRACE_S")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(5), Duration::from_secs)
}

/// A running gateway.
pub struct GatewayProc {
    child: Option<Child>,
    /// Its listen address.
    pub addr: SocketAddr,
    /// Its PID.
    pub pid: u32,
    /// When it was spawned.
    pub spawned: Instant,
    dir: tempfile::TempDir,
}

impl GatewayProc {
    /// Spawns `serve --config <file>` with the YAML `config(port)`.
    pub fn spawn(config: impl Fn(u16) -> String) -> Result<GatewayProc, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let port = process::free_port().map_err(|e| format!("free port: {e}"))?;
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, config(port)).map_err(|e| format!("write config: {e}"))?;
        let binary = binary();
        let mut cmd = process::gateway_command(&binary, dir.path()).map_err(|e| e.to_string())?;
        cmd.arg("serve").arg("--config").arg(&path);
        let spawned = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("spawn {binary}: {e}"))?;
        Ok(GatewayProc {
            pid: child.id(),
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            spawned,
            dir,
        })
    }

    /// The `Host` header value.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Everything it wrote to stderr (its logs).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Whether the process is still running (reaps it if not).
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `GET <path>` on a fresh connection → (status, JSON body or Null).
    pub async fn get_json(&self, path: &str) -> Option<(u16, Value)> {
        let mut conn = Conn::connect(self.addr).await.ok()?;
        let req = client::request("GET", &self.host(), path, &[], b"");
        let resp = conn.request(&req).await.ok()?;
        Some((
            resp.status,
            serde_json::from_slice(resp.body).unwrap_or(Value::Null),
        ))
    }

    /// Polls `/readyz` until `accept(body)` holds, the process exits, or `timeout`. Returns
    /// the time since spawn and the last body.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        poll: Duration,
        accept: impl Fn(u16, &Value) -> bool,
    ) -> Result<(Duration, Value), String> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            if !self.alive() {
                return Err(format!(
                    "the gateway exited before becoming ready\n--- its log ---\n{}",
                    self.logs()
                ));
            }
            if let Some((status, body)) = self.get_json("/readyz").await {
                if accept(status, &body) {
                    return Ok((self.spawned.elapsed(), body));
                }
                last = body;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready after {timeout:?}; last /readyz: {last}\n--- its log ---\n{}",
                    self.logs()
                ));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        procfs::rss_kib(self.pid)
    }

    /// Peak resident memory in KiB.
    pub fn hwm_kib(&self) -> Option<u64> {
        procfs::hwm_kib(self.pid)
    }

    /// CPU time used so far, in ticks.
    pub fn cpu_ticks(&self) -> Option<u64> {
        procfs::cpu_ticks(self.pid)
    }

    /// Stops the process (SIGTERM, SIGKILL after the grace) and returns how it ended.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        process::stop(&mut child, stop_grace())
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.stop();
    }
}
