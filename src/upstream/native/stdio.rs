//! `kind: stdio`: an MCP server the gateway runs as a child process, speaking newline-delimited
//! JSON-RPC over its stdin and stdout.
//!
//! Supervision: a child starts on first use, in a process group of its own, with a minimal
//! environment (`PATH`, `HOME`, `LANG` and the configured `env`; none of the gateway's
//! secrets). Its stderr goes to the gateway's log with the backend id. A child that exits is
//! started again on the next use, at once the first time and then with a doubling delay (up to
//! [`MAX_RESTART_DELAY`]) while it keeps failing. The whole process group is killed when the
//! backend is dropped (a configuration reload that changed it, shutdown) and when the gateway
//! process exits, and every child is waited for, so none is left as a zombie or an orphan.
//!
//! One child serves every caller, or, with `per_user: true`, each user (the caller's subject)
//! gets a child of its own (most stdio servers are written for one user), up to
//! `max_processes`; discovery runs one more. A child without a call for `idle_timeout` is
//! stopped (its stdin closed, then its group killed) and started again on the next call.
//!
//! Calls share a child's one pipe: responses find their call by id, progress notifications
//! by the progress token the gateway put in the call, and other call-time messages (log
//! messages, server requests) go to the one call in flight (see
//! `cortex_filters::native::route`).
//!
//! A configuration reload that leaves a backend's process settings unchanged keeps its
//! children (and their MCP sessions): the pool of children is found again by backend id and
//! settings ([`pool_for`]).

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cortex_filters::jsonrpc::codes;
use cortex_filters::native::{self as rules, Delivery, InFlight, Upstream};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::config::{BackendConfig, DEFAULT_MAX_PROCESSES};

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
/// How long an idle child has to exit once its stdin is closed, before its group is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// The key of the child discovery runs (and every caller shares, without `per_user`).
const SHARED: &str = "";

/// How a child is started: everything of a backend's configuration that makes its process.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    id: String,
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    timeout: Duration,
    per_user: bool,
    max_processes: usize,
    idle: Duration,
}

/// The children of one `kind: stdio` backend, by user (or the one shared child).
pub struct StdioTransport {
    pool: Arc<Pool>,
}

/// What a reload can hand over from one configuration to the next: the backend's children.
struct Pool {
    spec: Spec,
    sink: SinkRef,
    slots: Mutex<HashMap<String, Arc<Supervisor>>>,
    reaper: Once,
}

/// One child and its restarts.
struct Supervisor {
    current: tokio::sync::Mutex<Option<Running>>,
    restarts: Mutex<Restarts>,
    /// Calls that took this supervisor from the pool and are not done choosing a child yet
    /// (the reaper leaves it alone meanwhile).
    checked_out: AtomicUsize,
}

/// A supervisor taken from the pool, given back when dropped (also when the call that took
/// it is cancelled while its child starts).
struct CheckedOut(Arc<Supervisor>);

impl Drop for CheckedOut {
    fn drop(&mut self) {
        self.0.checked_out.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Clone)]
struct Running {
    peer: Arc<Peer>,
    link: Arc<StdioLink>,
}

#[derive(Default)]
struct Restarts {
    failures: u32,
    not_before: Option<Instant>,
    started: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The live pools of this process, by backend id, so that a reload keeps the children of a
/// backend whose process settings did not change.
static POOLS: Mutex<Vec<(String, Weak<Pool>)>> = Mutex::new(Vec::new());

/// The pool of `spec`'s backend: the running one when its settings are the same, else a new
/// one (the old one's children stop when the old configuration is dropped).
fn pool_for(spec: Spec, sink: SinkRef) -> Arc<Pool> {
    let mut pools = lock(&POOLS);
    pools.retain(|(_, p)| p.strong_count() > 0);
    if let Some(existing) = pools
        .iter()
        .filter(|(id, _)| *id == spec.id)
        .filter_map(|(_, p)| p.upgrade())
        .find(|p| p.spec == spec)
    {
        tracing::info!(backend = %spec.id, "unchanged stdio server: its processes keep running");
        return existing;
    }
    let pool = Arc::new(Pool {
        spec,
        sink,
        slots: Mutex::new(HashMap::new()),
        reaper: Once::new(),
    });
    pools.push((pool.spec.id.clone(), Arc::downgrade(&pool)));
    pool
}

impl StdioTransport {
    /// From configuration: `command`, `args`, `env`, `cwd`, `per_user`, `max_processes`,
    /// `idle_timeout`.
    pub fn new(cfg: &BackendConfig, sink: SinkRef) -> Result<Self, String> {
        let command = cfg
            .command
            .clone()
            .filter(|c| !c.trim().is_empty())
            .ok_or("`command` is required for kind: stdio")?;
        let spec = Spec {
            id: cfg.id.clone(),
            command,
            args: cfg.args.clone(),
            env: cfg.env.clone(),
            cwd: cfg.cwd.clone(),
            timeout: cfg.timeout,
            per_user: cfg.per_user,
            max_processes: cfg.max_processes.unwrap_or(DEFAULT_MAX_PROCESSES).max(1) as usize,
            idle: cfg.idle_timeout,
        };
        Ok(StdioTransport {
            pool: pool_for(spec, sink),
        })
    }

    /// The command line, for administrators.
    pub fn location(&self) -> String {
        let spec = &self.pool.spec;
        let mut s = format!("stdio:{}", spec.command);
        for a in &spec.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// The child for `user` ("" for discovery), started (again) if needed.
    pub async fn peer(&self, user: &str) -> Result<Arc<Peer>, String> {
        let pool = &self.pool;
        pool.reaper.call_once(|| {
            tokio::spawn(reap_idle(Arc::downgrade(pool)));
        });
        let key = if pool.spec.per_user { user } else { SHARED };
        let supervisor = CheckedOut(pool.check_out(key)?);
        supervisor.0.peer(&pool.spec, &pool.sink).await
    }

    /// Drops `peer` if it is the current child of `user` (it exited).
    pub fn forget(&self, user: &str, peer: &Arc<Peer>) {
        let key = if self.pool.spec.per_user {
            user
        } else {
            SHARED
        };
        let supervisor = lock(&self.pool.slots).get(key).cloned();
        if let Some(s) = supervisor {
            s.forget(&self.pool.spec, peer);
        }
    }
}

impl Pool {
    /// The supervisor of `key`, made if needed, within `max_processes` (per-user children;
    /// the discovery child is one more).
    fn check_out(&self, key: &str) -> Result<Arc<Supervisor>, String> {
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.get(key) {
            s.checked_out.fetch_add(1, Ordering::AcqRel);
            return Ok(s.clone());
        }
        if key != SHARED {
            let users = slots.keys().filter(|k| k.as_str() != SHARED).count();
            if users >= self.spec.max_processes {
                return Err(format!(
                    "{} per-user processes are running, the most this backend allows (max_processes: {}); try again once one has been idle for {}",
                    users,
                    self.spec.max_processes,
                    crate::config::units::format_duration(self.spec.idle)
                ));
            }
        }
        let s = Arc::new(Supervisor {
            current: tokio::sync::Mutex::new(None),
            restarts: Mutex::new(Restarts::default()),
            checked_out: AtomicUsize::new(1),
        });
        slots.insert(key.to_string(), s.clone());
        Ok(s)
    }

    /// Stops every child idle for `idle_timeout` and forgets its slot; returns how many.
    fn reap(&self) -> usize {
        let mut stopped = Vec::new();
        {
            let mut slots = lock(&self.slots);
            slots.retain(|key, s| {
                if s.checked_out.load(Ordering::Acquire) > 0 {
                    return true;
                }
                let Ok(mut current) = s.current.try_lock() else {
                    return true;
                };
                match current.as_ref() {
                    Some(r) if r.link.alive() => {
                        if r.link.busy() || r.link.idle_for() < self.spec.idle {
                            return true;
                        }
                        if let Some(r) = current.take() {
                            stopped.push((key.clone(), r));
                        }
                        false
                    }
                    // Exited and not started again: keep its restart delay, unless idle too.
                    _ => s.restart_wait().is_some(),
                }
            });
        }
        let n = stopped.len();
        for (key, r) in stopped {
            let who = if key == SHARED { "shared" } else { "per-user" };
            tracing::info!(backend = %self.spec.id, child = who, idle = %crate::config::units::format_duration(self.spec.idle), "stopping an idle stdio server");
            tokio::spawn(stop(r));
        }
        n
    }
}

/// Stops a child nobody uses: stdin closed (a server exits on end of input), then, if it
/// is still running after [`STOP_GRACE`], its group killed (dropping the last handle).
async fn stop(r: Running) {
    let Running { peer, link } = r;
    drop(peer);
    link.close_input().await;
    let deadline = Instant::now() + STOP_GRACE;
    while link.alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reaps idle children of `pool` while it lives.
async fn reap_idle(pool: Weak<Pool>) {
    let tick = match pool.upgrade() {
        Some(p) => (p.spec.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30)),
        None => return,
    };
    loop {
        tokio::time::sleep(tick).await;
        let Some(p) = pool.upgrade() else { return };
        p.reap();
    }
}

impl Supervisor {
    /// The running child, started (again) if needed.
    async fn peer(&self, spec: &Spec, sink: &SinkRef) -> Result<Arc<Peer>, String> {
        let mut current = self.current.lock().await;
        if let Some(r) = current.as_ref() {
            if r.link.alive() {
                return Ok(r.peer.clone());
            }
            *current = None;
            self.note_exit(spec);
        }
        if let Some(wait) = self.restart_wait() {
            return Err(format!(
                "the server process exited; starting it again in {} ms",
                wait.as_millis()
            ));
        }
        match start(spec, sink).await {
            Ok(r) => {
                let peer = r.peer.clone();
                *current = Some(r);
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
    fn forget(&self, spec: &Spec, peer: &Arc<Peer>) {
        if let Ok(mut current) = self.current.try_lock() {
            if current.as_ref().is_some_and(|r| Arc::ptr_eq(&r.peer, peer)) {
                *current = None;
                self.note_exit(spec);
            }
        }
    }

    fn restart_wait(&self) -> Option<Duration> {
        let r = lock(&self.restarts);
        r.not_before
            .and_then(|t| t.checked_duration_since(Instant::now()))
    }

    fn note_start(&self) {
        let mut r = lock(&self.restarts);
        r.started = Some(Instant::now());
        r.not_before = None;
    }

    /// The child exited: the first restart is immediate, repeated ones back off.
    fn note_exit(&self, spec: &Spec) {
        let mut r = lock(&self.restarts);
        if r.started.is_some_and(|s| s.elapsed() >= HEALTHY_RUN) {
            r.failures = 0;
        }
        r.started = None;
        r.failures = r.failures.saturating_add(1);
        r.not_before = Some(Instant::now() + restart_delay(r.failures));
        tracing::warn!(backend = %spec.id, exits = r.failures, "the stdio server exited");
    }

    fn note_failure(&self) {
        let mut r = lock(&self.restarts);
        r.failures = r.failures.saturating_add(1);
        r.not_before = Some(Instant::now() + restart_delay(r.failures));
    }
}

/// Starts one child and initializes it.
async fn start(spec: &Spec, sink: &SinkRef) -> Result<Running, String> {
    let mut cmd = Command::new(&spec.command);
    cmd.args(&spec.args)
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
    cmd.envs(&spec.env);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", spec.command))?;
    let group = child.id().map(|pid| ProcessGroup::register(pid as i32));
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the child's pipes are missing".into());
    };
    tracing::info!(backend = %spec.id, pid = ?child.id(), command = %spec.command, "stdio server started");
    let link = Arc::new(StdioLink {
        backend: spec.id.clone(),
        stdin: tokio::sync::Mutex::new(Some(stdin)),
        calls: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        alive: AtomicBool::new(true),
        timeout: spec.timeout,
        sink: sink.clone(),
        last_active: Mutex::new(Instant::now()),
        _group: group,
    });
    tokio::spawn(read_stdout(Arc::downgrade(&link), stdout));
    tokio::spawn(log_stderr(spec.id.clone(), stderr));
    tokio::spawn(reap(spec.id.clone(), child, Arc::downgrade(&link)));
    // A process may take a while to start (an interpreter, `npx` unpacking a package):
    // its first answer gets at least STARTUP_TIMEOUT.
    let peer = super::initialize(link.clone(), None, spec.timeout.max(STARTUP_TIMEOUT))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Running {
        peer: Arc::new(peer),
        link,
    })
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
    /// When a request was last sent or answered (idle reaping).
    last_active: Mutex<Instant>,
    _group: Option<ProcessGroup>,
}

impl StdioLink {
    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        lock(&self.calls)
    }

    /// Whether a request to the child waits for its answer.
    fn busy(&self) -> bool {
        !self.calls().is_empty()
    }

    fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    /// How long since a request was last sent or answered.
    fn idle_for(&self) -> Duration {
        lock(&self.last_active).elapsed()
    }

    /// Closes the child's stdin: a stdio server exits when its input ends.
    async fn close_input(&self) {
        self.stdin.lock().await.take();
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
                self.touch();
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
        self.touch();
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
