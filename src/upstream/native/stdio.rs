//! `kind: stdio`: an MCP server the gateway runs as a child process, speaking newline-delimited
//! JSON-RPC over its stdin and stdout.
//!
//! Supervision: the child starts on first use, in a process group of its own, with a minimal
//! environment (`PATH`, `HOME`, `LANG` and the configured `env`; none of the gateway's
//! secrets). Its stderr goes to the gateway's log with the backend id. A child that exits is
//! started again on the next use, at once the first time and then with a doubling delay (up to
//! [`MAX_RESTART_DELAY`]) while it keeps failing. The whole process group is killed when the
//! backend is dropped (a configuration reload, shutdown) and when the gateway process exits,
//! and every child is waited for, so none is left as a zombie or an orphan.
//!
//! Calls share the child's one pipe: responses find their call by id, progress notifications
//! by the progress token the gateway put in the call, and other call-time messages (log
//! messages, server requests) go to the one call in flight (see
//! `cortex_filters::native::route`).

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cortex_filters::jsonrpc::codes;
use cortex_filters::native::{self as rules, Delivery, InFlight, Upstream};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::config::BackendConfig;

use super::link::{Exchange, Exchanged, Link, LinkError, Outgoing, Peer, SinkRef, EXCHANGE_QUEUE};
use super::MAX_MESSAGE_BYTES;

/// The longest wait before starting a failing server again.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A child that ran this long before exiting counts as healthy: the next start is immediate.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a fresh process may take to answer `initialize` (at least).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest stderr line logged (the rest is cut).
const MAX_STDERR_LINE: usize = 4096;

/// The children of one `kind: stdio` backend (one at a time).
pub struct StdioTransport {
    id: String,
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    timeout: Duration,
    sink: SinkRef,
    current: tokio::sync::Mutex<Option<Arc<Peer>>>,
    restarts: Mutex<Restarts>,
}

struct Restarts {
    failures: u32,
    not_before: Option<Instant>,
    started: Option<Instant>,
}

impl StdioTransport {
    /// From configuration: `command`, `args`, `env`, `cwd`.
    pub fn new(cfg: &BackendConfig, sink: SinkRef) -> Result<Self, String> {
        let command = cfg
            .command
            .clone()
            .filter(|c| !c.trim().is_empty())
            .ok_or("`command` is required for kind: stdio")?;
        Ok(StdioTransport {
            id: cfg.id.clone(),
            command,
            args: cfg.args.clone(),
            env: cfg.env.clone(),
            cwd: cfg.cwd.clone(),
            timeout: cfg.timeout,
            sink,
            current: tokio::sync::Mutex::new(None),
            restarts: Mutex::new(Restarts {
                failures: 0,
                not_before: None,
                started: None,
            }),
        })
    }

    /// The command line, for administrators.
    pub fn location(&self) -> String {
        let mut s = format!("stdio:{}", self.command);
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// The running child, started (again) if needed.
    pub async fn peer(&self) -> Result<Arc<Peer>, String> {
        let mut current = self.current.lock().await;
        if let Some(p) = current.as_ref() {
            if p.link.alive() {
                return Ok(p.clone());
            }
            *current = None;
            self.note_exit();
        }
        if let Some(wait) = self.restart_wait() {
            return Err(format!(
                "the server process exited; starting it again in {} ms",
                wait.as_millis()
            ));
        }
        match self.start().await {
            Ok(peer) => {
                let peer = Arc::new(peer);
                *current = Some(peer.clone());
                self.note_start();
                Ok(peer)
            }
            Err(why) => {
                self.note_failure();
                Err(why)
            }
        }
    }

    /// Drops `peer` if it is the current child (it exited).
    pub fn forget(&self, peer: &Arc<Peer>) {
        if let Ok(mut current) = self.current.try_lock() {
            if current.as_ref().is_some_and(|p| Arc::ptr_eq(p, peer)) {
                *current = None;
                self.note_exit();
            }
        }
    }

    fn restarts(&self) -> std::sync::MutexGuard<'_, Restarts> {
        match self.restarts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn restart_wait(&self) -> Option<Duration> {
        let r = self.restarts();
        r.not_before
            .and_then(|t| t.checked_duration_since(Instant::now()))
    }

    fn note_start(&self) {
        let mut r = self.restarts();
        r.started = Some(Instant::now());
        r.not_before = None;
    }

    /// The child exited: the first restart is immediate, repeated ones back off.
    fn note_exit(&self) {
        let mut r = self.restarts();
        if r.started.is_some_and(|s| s.elapsed() >= HEALTHY_RUN) {
            r.failures = 0;
        }
        r.started = None;
        r.failures = r.failures.saturating_add(1);
        r.not_before = Some(Instant::now() + restart_delay(r.failures));
        tracing::warn!(backend = %self.id, exits = r.failures, "the stdio server exited");
    }

    fn note_failure(&self) {
        let mut r = self.restarts();
        r.failures = r.failures.saturating_add(1);
        r.not_before = Some(Instant::now() + restart_delay(r.failures));
    }

    async fn start(&self) -> Result<Peer, String> {
        let mut cmd = Command::new(&self.command);
        cmd.args(&self.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        for key in ["PATH", "HOME", "LANG", "TMPDIR"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(&self.env);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", self.command))?;
        let group = child.id().map(|pid| ProcessGroup::register(pid as i32));
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the child's pipes are missing".into());
        };
        tracing::info!(backend = %self.id, pid = ?child.id(), command = %self.location(), "stdio server started");
        let link = Arc::new(StdioLink {
            backend: self.id.clone(),
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            calls: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            timeout: self.timeout,
            sink: self.sink.clone(),
            _group: group,
        });
        tokio::spawn(read_stdout(Arc::downgrade(&link), stdout));
        tokio::spawn(log_stderr(self.id.clone(), stderr));
        tokio::spawn(reap(self.id.clone(), child, Arc::downgrade(&link)));
        // A process may take a while to start (an interpreter, `npx` unpacking a package):
        // its first answer gets at least STARTUP_TIMEOUT.
        super::initialize(link, None, self.timeout.max(STARTUP_TIMEOUT)).await
    }
}

fn restart_delay(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let ms = 500u64.saturating_mul(1 << failures.saturating_sub(2).min(10));
    Duration::from_millis(ms).min(MAX_RESTART_DELAY)
}

/// The process groups of every running child, killed when the gateway process exits.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

extern "C" fn kill_all_groups() {
    let groups = match GROUPS.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    for pgid in groups {
        // SAFETY: killpg only sends a signal; a group that no longer exists yields ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// A child's process group: killed (every process in it) when dropped.
struct ProcessGroup(i32);

impl ProcessGroup {
    fn register(pgid: i32) -> Self {
        AT_EXIT.call_once(|| {
            // SAFETY: registers a plain `extern "C"` function without captured state.
            unsafe {
                libc::atexit(kill_all_groups);
            }
        });
        if let Ok(mut g) = GROUPS.lock() {
            g.push(pgid);
        }
        ProcessGroup(pgid)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.0 <= 1 {
            return;
        }
        // SAFETY: killpg only sends a signal to the group the gateway created for its child.
        unsafe {
            libc::killpg(self.0, libc::SIGKILL);
        }
        if let Ok(mut g) = GROUPS.lock() {
            g.retain(|p| *p != self.0);
        }
    }
}

/// Kills the process groups of every child still running (shutdown calls it; it also runs
/// when the process exits).
pub fn kill_all_children() {
    kill_all_groups();
}

struct Slot {
    key: u64,
    progress_token: Option<String>,
    tx: mpsc::Sender<Exchanged>,
}

/// One running child.
struct StdioLink {
    backend: String,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    calls: Mutex<HashMap<u64, Slot>>,
    next_id: AtomicU64,
    alive: AtomicBool,
    timeout: Duration,
    sink: SinkRef,
    _group: Option<ProcessGroup>,
}

impl StdioLink {
    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        match self.calls.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    async fn write(&self, mut line: Vec<u8>) -> Result<(), String> {
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err("the server process has exited".into());
        };
        let write = async {
            pipe.write_all(&line).await?;
            pipe.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.alive.store(false, Ordering::Relaxed);
                *stdin = None;
                Err(format!("writing to the server process failed: {e}"))
            }
            Err(_) => Err(format!(
                "the server process did not read its input within {} ms",
                self.timeout.as_millis()
            )),
        }
    }

    /// The process is gone: every call waiting on it fails.
    fn exited(&self, why: &str) {
        self.alive.store(false, Ordering::Relaxed);
        let slots: Vec<Slot> = self.calls().drain().map(|(_, s)| s).collect();
        for s in slots {
            let _ = s.tx.try_send(Exchanged::Failed(why.to_string()));
        }
    }

    /// Routes one message read from the child.
    async fn route(&self, message: Upstream) {
        match message {
            Upstream::Response { id, outcome } => {
                let slot = id.as_u64().and_then(|n| self.calls().remove(&n));
                match slot {
                    Some(s) => {
                        let _ =
                            s.tx.send(Exchanged::Message(Upstream::Response { id, outcome }))
                                .await;
                    }
                    None => {
                        tracing::debug!(backend = %self.backend, %id, "answer to no pending request")
                    }
                }
            }
            Upstream::Notification { method, params } => match self.delivery(&method, &params) {
                Some((Delivery::Call(_), Some(tx))) => {
                    let _ = tx
                        .send(Exchanged::Message(Upstream::Notification {
                            method,
                            params,
                        }))
                        .await;
                }
                Some((other, _)) => self.sink.deliver(&other, &params),
                None => {}
            },
            Upstream::Request { id, method, params } => match self.delivery(&method, &params) {
                Some((Delivery::Call(_), Some(tx))) => {
                    let _ = tx
                        .send(Exchanged::Message(Upstream::Request { id, method, params }))
                        .await;
                }
                Some((Delivery::Gateway, _)) => {
                    let _ = self
                        .write(rules::response(&id, &Ok(serde_json::json!({}))))
                        .await;
                }
                _ => {
                    let error = rules::error_object(
                        codes::INTERNAL_ERROR,
                        &format!("{method}: the gateway cannot tell which call this request belongs to (several calls are in flight on this process)"),
                    );
                    let _ = self.write(rules::response(&id, &Err(error))).await;
                }
            },
        }
    }

    fn delivery(
        &self,
        method: &str,
        params: &Value,
    ) -> Option<(Delivery, Option<mpsc::Sender<Exchanged>>)> {
        let calls = self.calls();
        let in_flight: Vec<InFlight> = calls
            .values()
            .filter(|s| s.key != 0 || calls.len() == 1)
            .map(|s| InFlight {
                key: s.key,
                progress_token: s.progress_token.clone(),
            })
            .collect();
        let d = rules::route(method, params, &in_flight, None);
        let tx = match &d {
            Delivery::Call(k) => calls.values().find(|s| s.key == *k).map(|s| s.tx.clone()),
            _ => None,
        };
        Some((d, tx))
    }
}

#[async_trait]
impl Link for StdioLink {
    async fn request(
        &self,
        method: &str,
        params: Value,
        call: Outgoing,
    ) -> Result<(Value, Exchange), LinkError> {
        if !self.alive() {
            return Err(LinkError::Failed("the server process has exited".into()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(EXCHANGE_QUEUE);
        self.calls().insert(
            id,
            Slot {
                key: call.key,
                progress_token: call.progress_token,
                tx,
            },
        );
        if let Err(why) = self.write(rules::request(id, method, &params)).await {
            self.calls().remove(&id);
            return Err(LinkError::Failed(why));
        }
        Ok((Value::from(id), rx))
    }

    async fn notify(&self, method: &str, params: Value, _authorization: Option<String>) {
        if method == "notifications/cancelled" {
            if let Some(id) = params.get("requestId").and_then(Value::as_u64) {
                self.calls().remove(&id);
            }
        }
        if let Err(why) = self.write(rules::notification(method, &params)).await {
            tracing::debug!(backend = %self.backend, "{method} not sent: {why}");
        }
    }

    async fn respond(
        &self,
        id: Value,
        outcome: Result<Value, Value>,
        _authorization: Option<String>,
    ) {
        if let Err(why) = self.write(rules::response(&id, &outcome)).await {
            tracing::debug!(backend = %self.backend, "answer not sent: {why}");
        }
    }

    fn alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

/// Reads the child's stdout line by line (each line bounded) and routes the messages.
async fn read_stdout(link: Weak<StdioLink>, stdout: impl AsyncRead + Unpin) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut oversized = false;
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let (used, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if !oversized {
                    line.extend_from_slice(&buf[..i]);
                }
                (i + 1, true)
            }
            None => {
                if !oversized {
                    line.extend_from_slice(buf);
                }
                (buf.len(), false)
            }
        };
        reader.consume(used);
        if line.len() > MAX_MESSAGE_BYTES {
            line.clear();
            oversized = true;
        }
        if !complete {
            continue;
        }
        let Some(l) = link.upgrade() else { return };
        if oversized {
            tracing::warn!(backend = %l.backend, "skipping a message larger than {MAX_MESSAGE_BYTES} bytes");
            oversized = false;
            continue;
        }
        let text = std::mem::take(&mut line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(&text)
            .ok()
            .and_then(rules::classify)
        {
            Some(m) => l.route(m).await,
            None => {
                let shown: String = String::from_utf8_lossy(&text).chars().take(200).collect();
                tracing::warn!(backend = %l.backend, "the server wrote a line that is not a JSON-RPC message: {shown}");
            }
        }
    }
    if let Some(l) = link.upgrade() {
        l.exited("the server process exited (its output closed) during the call");
    }
}

/// Logs the child's stderr with the backend id, one bounded line at a time: at most
/// [`MAX_STDERR_LINE`] bytes of a line are kept, the rest is read and dropped, so a child
/// writing without end (or without a newline) costs the gateway no memory.
async fn log_stderr(backend: String, stderr: impl AsyncRead + Unpin) {
    let mut reader = BufReader::new(stderr);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) if !buf.is_empty() => buf,
            _ => break,
        };
        let (piece, used, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = MAX_STDERR_LINE.saturating_sub(line.len());
        line.extend_from_slice(&piece[..piece.len().min(room)]);
        cut |= piece.len() > room;
        reader.consume(used);
        if complete {
            log_stderr_line(&backend, &line, cut);
            line.clear();
            cut = false;
        }
    }
    log_stderr_line(&backend, &line, cut);
}

fn log_stderr_line(backend: &str, line: &[u8], cut: bool) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    if text.is_empty() {
        return;
    }
    if cut {
        tracing::info!(%backend, "stderr: {text} … (line cut at {MAX_STDERR_LINE} bytes)");
    } else {
        tracing::info!(%backend, "stderr: {text}");
    }
}

/// Waits for the child (no zombie), then fails the calls still waiting on it.
async fn reap(backend: String, mut child: Child, link: Weak<StdioLink>) {
    let status = child.wait().await;
    match &status {
        Ok(s) => tracing::info!(%backend, status = %s, "stdio server exited"),
        Err(e) => tracing::warn!(%backend, "waiting for the stdio server failed: {e}"),
    }
    if let Some(l) = link.upgrade() {
        l.exited("the server process exited during the call");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_after_the_first() {
        assert_eq!(restart_delay(1), Duration::ZERO);
        assert_eq!(restart_delay(2), Duration::from_millis(500));
        assert_eq!(restart_delay(3), Duration::from_secs(1));
        assert_eq!(restart_delay(40), MAX_RESTART_DELAY);
    }
}
