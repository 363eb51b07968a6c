//! One measurement cell: a closed loop of `concurrency` workers, each on its own keep-alive
//! connection, sending one request, waiting for the whole response, sending the next.
//!
//! Every cell warms up first (connections, MCP sessions, caches), then all workers meet at a
//! barrier; the coordinator snapshots CPU counters and the clock between two barriers, so
//! set-up work is never charged to the measurement. A cell ends at its duration or request
//! cap, whichever comes first. Responses are checked cheaply (status, a byte prefix, the
//! exact length for lists, no `"isError":true` in small bodies); anything else is an error
//! and the first few are kept verbatim for the report.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::backend::EchoBackend;
use crate::client::{self, Conn};
use crate::procfs;

/// The protocol version the driver negotiates and sends.
pub const PROTOCOL: &str = "2025-06-18";

/// What a worker sends.
#[derive(Debug, Clone)]
pub enum Target {
    /// A prepared request, sent as is (direct calls to the backend).
    Plain {
        /// Where.
        addr: SocketAddr,
        /// The complete HTTP request.
        request: Vec<u8>,
    },
    /// MCP through the gateway: `initialize` + `notifications/initialized` on the worker's
    /// connection, then `body` in a loop with the session's `Mcp-Session-Id`.
    Mcp {
        /// Where.
        addr: SocketAddr,
        /// The JSON-RPC body of the measured request.
        body: Vec<u8>,
        /// A credential header sent on every request of the worker (`Authorization` or
        /// `X-Dev-Mode` for a gateway in `auth.mode: oauth`); `None` in `auth.mode: none`.
        credential: Option<(String, String)>,
    },
}

/// What a good response looks like.
#[derive(Debug, Clone)]
pub struct Expect {
    /// HTTP status.
    pub status: u16,
    /// The body starts with these bytes.
    pub prefix: Vec<u8>,
    /// The body has exactly this length (lists: the same page every time).
    pub len: Option<usize>,
    /// Bodies up to 4 KiB must not contain this (e.g. `"isError":true`).
    pub forbid: Option<Vec<u8>>,
}

impl Expect {
    fn check(&self, status: u16, body: &[u8]) -> Result<(), String> {
        let bad = |why: &str| {
            let excerpt = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            format!("{why}: HTTP {status}, {} bytes: {excerpt}", body.len())
        };
        if status != self.status {
            return Err(bad(&format!("expected HTTP {}", self.status)));
        }
        if !body.starts_with(&self.prefix) {
            return Err(bad("unexpected body"));
        }
        if self.len.is_some_and(|n| n != body.len()) {
            return Err(bad(&format!("expected {} bytes", self.len.unwrap_or(0))));
        }
        if let Some(f) = &self.forbid {
            if body.len() <= 4096 && body.windows(f.len()).any(|w| w == f.as_slice()) {
                return Err(bad("error result"));
            }
        }
        Ok(())
    }
}

/// Size and limits of a cell.
#[derive(Debug, Clone, Copy)]
pub struct CellSpec {
    /// Workers (= connections).
    pub concurrency: usize,
    /// Longest measured time.
    pub duration: Duration,
    /// Most measured requests.
    pub max_requests: u64,
    /// Warm-up requests in all (spread over the workers).
    pub warmup: u64,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    /// Samples.
    pub n: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Maximum.
    pub max_us: f64,
}

impl Summary {
    /// Summarises latencies in nanoseconds (sorts them).
    pub fn of(lat: &mut [u32]) -> Summary {
        if lat.is_empty() {
            return Summary::default();
        }
        lat.sort_unstable();
        let n = lat.len();
        let at = |p: f64| {
            let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
            f64::from(lat[rank - 1]) / 1000.0
        };
        let sum: u64 = lat.iter().map(|&x| u64::from(x)).sum();
        Summary {
            n: n as u64,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            mean_us: sum as f64 / n as f64 / 1000.0,
            max_us: f64::from(lat[n - 1]) / 1000.0,
        }
    }
}

/// Whose CPU time a cell charges per request.
pub struct Meters<'a> {
    /// The gateway's PID, for through-gateway cells.
    pub gateway_pid: Option<u32>,
    /// The backend thread.
    pub backend: &'a EchoBackend,
}

/// The result of one cell.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CellOutcome {
    /// Successful measured requests.
    pub ok: u64,
    /// Failed measured requests (bad status/body, I/O errors, stalls).
    pub errors: u64,
    /// Failures during warm-up and session set-up.
    pub setup_errors: u64,
    /// The first distinct error messages.
    pub error_samples: Vec<String>,
    /// Measured wall time in seconds.
    pub elapsed_s: f64,
    /// Successful requests per second.
    pub rps: f64,
    /// Latency of successful requests.
    pub latency: Summary,
    /// Gateway CPU (user+sys, all threads) per request, µs.
    pub gateway_cpu_us_per_req: Option<f64>,
    /// The kernel (system) part of the gateway's CPU per request, µs.
    pub gateway_sys_us_per_req: Option<f64>,
    /// Backend thread CPU per request, µs.
    pub backend_cpu_us_per_req: Option<f64>,
    /// Load-driver thread CPU per request, µs.
    pub driver_cpu_us_per_req: f64,
    /// How busy the whole machine was during the cell, % of all CPUs (idle and iowait
    /// excluded): near 100 means CPU-bound, well below means latency-bound.
    pub machine_busy_pct: f64,
    /// Connections the backend accepted during the measured interval (0 when every call
    /// reuses a kept-alive connection).
    pub backend_connections: u64,
}

#[derive(Default)]
struct WorkerOut {
    lat: Vec<u32>,
    ok: u64,
    errors: u64,
    setup_errors: u64,
    samples: Vec<String>,
}

impl WorkerOut {
    fn note(&mut self, e: String) {
        if self.samples.len() < 4 && !self.samples.contains(&e) {
            self.samples.push(e);
        }
    }
}

/// MCP request headers (the session is added when known).
pub fn mcp_post(
    host: &str,
    session: Option<&str>,
    credential: Option<(&str, &str)>,
    body: &[u8],
) -> Vec<u8> {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", PROTOCOL),
    ];
    if let Some(s) = session {
        headers.push(("Mcp-Session-Id", s));
    }
    headers.extend(credential);
    client::request("POST", host, "/mcp", &headers, body)
}

/// The `initialize` request every MCP worker starts with.
pub fn initialize_request(host: &str) -> Vec<u8> {
    initialize_request_with(host, None)
}

/// [`initialize_request`] with a credential header (`auth.mode: oauth`).
fn initialize_request_with(host: &str, credential: Option<(&str, &str)>) -> Vec<u8> {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    headers.extend(credential);
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL}","capabilities":{{}},"clientInfo":{{"name":"cortex-load","version":"1"}}}}}}"#
    );
    // initialize is never subject to the version header, so send none.
    client::request("POST", host, "/mcp", &headers, body.as_bytes())
}

/// Opens an MCP session on `conn`: initialize, then notifications/initialized. Returns the
/// session id.
pub async fn open_session(conn: &mut Conn, host: &str) -> Result<String, String> {
    open_session_with(conn, host, None).await
}

/// [`open_session`] with a credential header on both requests.
pub async fn open_session_with(
    conn: &mut Conn,
    host: &str,
    credential: Option<(&str, &str)>,
) -> Result<String, String> {
    let resp = conn
        .request(&initialize_request_with(host, credential))
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    if resp.status != 200 {
        return Err(format!(
            "initialize: HTTP {}: {}",
            resp.status,
            String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)])
        ));
    }
    let sid = resp
        .session_id
        .map(str::to_string)
        .ok_or_else(|| "initialize: no Mcp-Session-Id header".to_string())?;
    let note = mcp_post(
        host,
        Some(&sid),
        credential,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    let resp = conn
        .request(&note)
        .await
        .map_err(|e| format!("notifications/initialized: {e}"))?;
    if resp.status != 202 {
        return Err(format!("notifications/initialized: HTTP {}", resp.status));
    }
    Ok(sid)
}

/// Connects and prepares the measured request.
async fn setup(target: &Target) -> Result<(Conn, Vec<u8>), String> {
    match target {
        Target::Plain { addr, request } => {
            let conn = Conn::connect(*addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            Ok((conn, request.clone()))
        }
        Target::Mcp {
            addr,
            body,
            credential,
        } => {
            let host = addr.to_string();
            let credential = credential.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
            let mut conn = Conn::connect(*addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let sid = open_session_with(&mut conn, &host, credential).await?;
            Ok((conn, mcp_post(&host, Some(&sid), credential, body)))
        }
    }
}

async fn one(conn: &mut Conn, request: &[u8], expect: &Expect) -> Result<(), String> {
    let r = conn
        .request(request)
        .await
        .map_err(|e| format!("I/O: {e}"))?;
    expect.check(r.status, r.body)
}

struct WorkerPlan {
    target: Arc<Target>,
    expect: Arc<Expect>,
    warmup: u64,
    warmed: Arc<Barrier>,
    go: Arc<Barrier>,
    duration: Duration,
    issued: Arc<AtomicU64>,
    max: u64,
}

async fn worker(plan: WorkerPlan) -> WorkerOut {
    let mut out = WorkerOut {
        lat: Vec::with_capacity(16 * 1024),
        ..WorkerOut::default()
    };
    let mut ready = setup(&plan.target).await;
    if let Ok((conn, req)) = ready.as_mut() {
        for _ in 0..plan.warmup {
            if let Err(e) = one(conn, req, &plan.expect).await {
                out.setup_errors += 1;
                out.note(format!("warm-up: {e}"));
                break;
            }
        }
    }
    plan.warmed.wait().await;
    plan.go.wait().await;
    let (mut conn, mut req) = match ready {
        Ok(r) => r,
        Err(e) => {
            out.setup_errors += 1;
            out.note(e);
            return out;
        }
    };
    let deadline = Instant::now() + plan.duration;
    loop {
        let start = Instant::now();
        if start >= deadline || plan.issued.fetch_add(1, Ordering::Relaxed) >= plan.max {
            break;
        }
        match one(&mut conn, &req, &plan.expect).await {
            Ok(()) => {
                let ns = start.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32;
                out.lat.push(ns);
                out.ok += 1;
            }
            Err(e) => {
                out.errors += 1;
                out.note(e);
                // A broken connection is replaced (with a new session for MCP) once; if
                // that fails too, this worker stops and the cell reports it.
                match setup(&plan.target).await {
                    Ok((c, r)) => {
                        conn = c;
                        req = r;
                    }
                    Err(e) => {
                        out.note(format!("reconnect: {e}"));
                        break;
                    }
                }
            }
        }
    }
    out
}

fn ticks_to_us(ticks: Option<(u64, u64)>, requests: u64) -> Option<f64> {
    let (a, b) = ticks?;
    (requests > 0).then(|| b.saturating_sub(a) as f64 / procfs::clk_tck() * 1e6 / requests as f64)
}

/// Runs one cell.
pub async fn run(
    target: &Target,
    expect: &Expect,
    spec: CellSpec,
    meters: &Meters<'_>,
) -> CellOutcome {
    let c = spec.concurrency.max(1);
    let warmed = Arc::new(Barrier::new(c + 1));
    let go = Arc::new(Barrier::new(c + 1));
    let issued = Arc::new(AtomicU64::new(0));
    let target = Arc::new(target.clone());
    let expect = Arc::new(expect.clone());
    let mut set = JoinSet::new();
    for i in 0..c {
        let per = spec.warmup / c as u64 + u64::from((i as u64) < spec.warmup % c as u64);
        set.spawn(worker(WorkerPlan {
            target: target.clone(),
            expect: expect.clone(),
            warmup: per,
            warmed: warmed.clone(),
            go: go.clone(),
            duration: spec.duration,
            issued: issued.clone(),
            max: spec.max_requests,
        }));
    }
    warmed.wait().await;
    let gw0 = meters.gateway_pid.and_then(procfs::cpu_ticks);
    let sys0 = meters.gateway_pid.and_then(procfs::sys_ticks);
    let be0 = meters.backend.cpu_ticks();
    let conns0 = meters.backend.connections();
    let drv0 = procfs::self_thread_cpu_us();
    let m0 = procfs::machine_cpu();
    let t0 = Instant::now();
    go.wait().await;
    let mut outs = Vec::with_capacity(c);
    let mut stalled = 0usize;
    let collect = async {
        while let Some(r) = set.join_next().await {
            if let Ok(o) = r {
                outs.push(o);
            }
        }
    };
    if tokio::time::timeout(spec.duration + Duration::from_secs(15), collect)
        .await
        .is_err()
    {
        stalled = set.len();
        set.abort_all();
    }
    let elapsed = t0.elapsed();
    let gw1 = meters.gateway_pid.and_then(procfs::cpu_ticks);
    let sys1 = meters.gateway_pid.and_then(procfs::sys_ticks);
    let be1 = meters.backend.cpu_ticks();
    let conns1 = meters.backend.connections();
    let drv1 = procfs::self_thread_cpu_us();
    let m1 = procfs::machine_cpu();

    let mut result = CellOutcome::default();
    let mut lat = Vec::new();
    for o in outs {
        result.ok += o.ok;
        result.errors += o.errors;
        result.setup_errors += o.setup_errors;
        for s in o.samples {
            if result.error_samples.len() < 8 && !result.error_samples.contains(&s) {
                result.error_samples.push(s);
            }
        }
        lat.extend_from_slice(&o.lat);
    }
    if stalled > 0 {
        result.errors += stalled as u64;
        result.error_samples.push(format!(
            "{stalled} workers had no response 15 s after the cell's end (aborted)"
        ));
    }
    let requests = result.ok + result.errors;
    result.elapsed_s = elapsed.as_secs_f64();
    result.rps = result.ok as f64 / elapsed.as_secs_f64().max(1e-9);
    result.latency = Summary::of(&mut lat);
    result.gateway_cpu_us_per_req = ticks_to_us(gw0.zip(gw1), requests);
    result.gateway_sys_us_per_req = ticks_to_us(sys0.zip(sys1), requests);
    result.backend_cpu_us_per_req = ticks_to_us(be0.zip(be1), requests);
    result.backend_connections = conns1.saturating_sub(conns0);
    result.driver_cpu_us_per_req = drv1.saturating_sub(drv0) as f64 / requests.max(1) as f64;
    if let (Some((busy0, total0)), Some((busy1, total1))) = (m0, m1) {
        result.machine_busy_pct = busy1.saturating_sub(busy0) as f64
            / total1.saturating_sub(total0).max(1) as f64
            * 100.0;
    }
    result
}

/// Samples a process's RSS every 50 ms on its own thread and keeps the maximum.
pub struct RssWatch {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssWatch {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> RssWatch {
        let max = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (max.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("rss-watch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some(kib) = procfs::rss_kib(pid) {
                        m.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .ok();
        RssWatch { max, stop, thread }
    }

    /// Stops sampling and returns the largest RSS seen, KiB.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Checks of the percentile and response-check logic, run at the start of every harness run
/// (a `harness = false` target runs no `#[test]`s). Returns what is wrong, if anything.
pub fn selftest() -> Result<(), String> {
    let mut lat: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
    let s = Summary::of(&mut lat);
    if (s.p50_us, s.p99_us, s.p999_us, s.max_us) != (500.0, 990.0, 999.0, 1000.0) {
        return Err(format!("percentiles are wrong: {s:?}"));
    }
    let e = Expect {
        status: 200,
        prefix: b"{\"a\"".to_vec(),
        len: None,
        forbid: Some(b"\"isError\":true".to_vec()),
    };
    let exact = Expect {
        prefix: b"{".to_vec(),
        len: Some(3),
        ..e.clone()
    };
    let cases = [
        (e.check(200, b"{\"a\":1}").is_ok(), "a good body"),
        (e.check(500, b"{\"a\":1}").is_err(), "a wrong status"),
        (e.check(200, b"{\"b\":1}").is_err(), "a wrong prefix"),
        (
            e.check(200, b"{\"a\":1,\"isError\":true}").is_err(),
            "an error result",
        ),
        (exact.check(200, b"{ab").is_ok(), "the exact length"),
        (exact.check(200, b"{abc").is_err(), "a wrong length"),
    ];
    match cases.iter().find(|(ok, _)| !ok) {
        Some((_, what)) => Err(format!("response check mishandles {what}")),
        None => Ok(()),
    }
}
