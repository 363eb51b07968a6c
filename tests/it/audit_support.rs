//! Helpers for the audit tests against the real binary: the stdout audit lines, `audit
//! verify` as a process, and a TCP relay that can cut a database connection (an outage)
//! and restore it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::{eventually, process, Gateway};

/// The `cortex_audit` JSON lines the gateway wrote on stdout so far.
pub fn audit_lines(g: &Gateway) -> Vec<Value> {
    g.stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["_type"] == "cortex_audit")
        .collect()
}

/// Waits until at least `n` audit lines are on stdout, and returns them all.
pub async fn wait_lines(g: &Gateway, n: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(10),
        &format!("{n} audit lines on stdout"),
        || async {
            let lines = audit_lines(g);
            (lines.len() >= n).then_some(lines)
        },
    )
    .await
}

/// Runs `cortex-gateway audit verify --config <config>` in `cwd` with the environment
/// scrubbed as the harness does for every gateway, on a blocking thread so the test's
/// own tasks (a relay) keep running. Returns (exit code, stdout, stderr).
pub async fn run_verify(cwd: &Path, config: &Path) -> (i32, String, String) {
    let (cwd, config) = (cwd.to_path_buf(), config.to_path_buf());
    tokio::task::spawn_blocking(move || run_verify_blocking(&cwd, &config))
        .await
        .expect("verify thread")
}

fn run_verify_blocking(cwd: &Path, config: &Path) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cortex-gateway"));
    cmd.args(["audit", "verify", "--config"])
        .arg(config)
        .current_dir(cwd);
    process::scrub_env(&mut cmd);
    let out = cmd.output().expect("run audit verify");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP relay on 127.0.0.1 to `target`. [`cut`](Self::cut) closes the listener and every
/// relayed connection (the database "goes down"); [`restore`](Self::restore) listens on the
/// same port again.
pub struct Relay {
    port: u16,
    target: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    /// Starts relaying to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        let relay = Relay {
            port,
            target,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        relay.serve(listener);
        relay
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = self.tasks.clone();
        let target = self.target;
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                if let Ok(mut t) = tasks.lock() {
                    t.push(conn);
                }
            }
        });
        if let Ok(mut t) = self.tasks.lock() {
            t.push(accept);
        }
    }

    /// Stops listening and drops every relayed connection.
    pub async fn cut(&self) {
        let tasks: Vec<JoinHandle<()>> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        let listener = eventually(Duration::from_secs(5), "relay port free again", || async {
            TcpListener::bind(("127.0.0.1", self.port)).await.ok()
        })
        .await;
        self.serve(listener);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Ok(mut t) = self.tasks.lock() {
            for task in t.drain(..) {
                task.abort();
            }
        }
    }
}
