//! The `scale` phase (issue 17 §4): how the gateway's cost grows with the size of what it
//! serves. Every part runs on its own fresh gateway (so one part's caches and sessions never
//! blur another's memory figures) in front of listeners of the in-process echo backend:
//!
//! 1. **Catalog**: `LOAD_SCALE_TOOLS` tools (10,000) over `LOAD_SCALE_BACKENDS` contract
//!    backends (100), once with one page per list (`catalog.page_size: 10000`, the largest
//!    allowed: the gateway's own builtin tools come first, so the last few backend tools
//!    spill onto a second page) and once with the default page size (500). For each: spawn →
//!    listening, → `/readyz` with every tool, → the first complete `tools/list` (every page,
//!    following `nextCursor`), the gateway CPU until then, RSS; that first complete listing
//!    (cold: every page built) and the same listing again from the page cache (medians over
//!    at least 5 listings, more while `LOAD_SCALE_CELL_SECONDS` lasts); and a closed-loop
//!    cell on the first page at C = 8 (req/s, gateway CPU per page). The CPU of one listing
//!    is read from the scheduler's per-thread clocks (`/proc/<pid>/task/*/schedstat`, ns),
//!    not from the 10 ms ticks of `/proc/<pid>/stat`.
//! 2. **Scope sets**: the same catalog behind a gateway in `auth.mode: oauth` (the harness's
//!    ES256 issuer stand-in, default page size, the metrics listener on to read the page-cache
//!    hit and miss counters). `LOAD_SCALE_SCOPES` tokens (100) with distinct scope sets: token
//!    `k` grants `mcp:<backend>:read` on a window of 10 consecutive backends starting at
//!    backend `k`, so every set sees the unscoped tools plus its own ~490 read tools and no
//!    two filtered listings are equal. All sessions are opened (tokens validated) first; then
//!    RSS before, every token's complete listing, RSS after (per scope set), and a second pass
//!    that shows what the page cache kept (it is bounded at 64 MiB of pages).
//! 3. **Sessions**: `LOAD_SCALE_SESSIONS` idle sessions (100,000; `initialize` +
//!    `notifications/initialized` over 8 keep-alive connections) on a fresh 10-tool gateway:
//!    RSS before and after, per session, gateway CPU per session.
//! 4. **SSE streams**: the `sse` phase's figures (`LOAD_STREAMS`, 10,000 idle streams: memory
//!    per stream, idle CPU); run here when `LOAD_PHASES` names `scale` but not `sse`.
//! 5. **Bodies**: `tools/call` of the contract echo tool with a `message` argument of each
//!    size of `LOAD_SCALE_BODIES` (1 KB, 16 KB, 256 KB, 1 MB, 4 MB: decimal, the string
//!    inside the arguments; the echo backend returns it, so the answer carries it too),
//!    directly and through the gateway in the same rounds at C = `LOAD_SCALE_BODY_C` (8):
//!    req/s, ratio, gateway CPU per call and per MB. The default `server.max_body_bytes`
//!    (4 MiB) admits a 4 MB argument with its envelope; larger sizes raise it (and
//!    `server.limits.body_budget`) in that gateway's YAML, and the run says so.
//!
//! Sizes (`LOAD_QUICK=1` shrinks them all): `LOAD_SCALE_TOOLS`, `LOAD_SCALE_BACKENDS`,
//! `LOAD_SCALE_SCOPES`, `LOAD_SCALE_SESSIONS`, `LOAD_SCALE_BODIES` (bytes, comma-separated),
//! `LOAD_SCALE_BODY_C`, `LOAD_SCALE_CELL_SECONDS` (each list and body cell),
//! `LOAD_SCALE_PARTS=catalog,scopes,sessions,sse,bodies` (default all).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::backend::{EchoBackend, Kind, ListenerSpec};
use crate::cells::{self, open_session, open_session_with, CellOutcome, CellSpec, Expect, Meters};
use crate::client::Conn;
use crate::gateway::GatewayProc;
use crate::issuer::Issuer;
use crate::report::{self, Pair};
use crate::scenarios::{self, SseOutcome};
use crate::{
    direct_call, log_problems, procfs, progress, Plan, Results, ECHO, RESULT_PREFIX, SECRET,
};

/// Longest a gateway may take to discover the whole scale catalog.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Most pages one listing may take (a bound on every walk).
const MAX_PAGES: usize = 10_000;
/// The page size of the "one page" catalog gateway (the largest `catalog.page_size`).
const ONE_PAGE: usize = 10_000;
/// The default `catalog.page_size`.
const DEFAULT_PAGE: usize = 500;
/// Backends each scope set grants `read` on.
const SCOPE_WINDOW: usize = 10;
/// Cached listings per catalog gateway: at least this many…
const MIN_CACHED_WALKS: usize = 5;
/// …and more while the cell time lasts, up to this many.
const MAX_CACHED_WALKS: usize = 1_000;
/// The default `server.max_body_bytes` (docs/configuration.md).
const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
/// Room for the JSON-RPC envelope around a body's argument.
const ENVELOPE: usize = 512;
/// Longest the session part may take before it stops creating sessions.
const SESSIONS_TIMEOUT: Duration = Duration::from_secs(600);
/// A session worker gives up after this many failures.
const WORKER_ERRORS: usize = 100;

/// How big the scale phase is.
#[derive(Debug, Clone, Serialize)]
pub struct ScalePlan {
    /// Contract backends of the scale catalog.
    pub backends: usize,
    /// Tools over all of them (rounded down to a multiple of `backends`).
    pub tools: usize,
    /// Distinct scope sets (tokens).
    pub scopes: usize,
    /// Idle sessions.
    pub sessions: usize,
    /// Argument sizes of the body cells, bytes.
    pub bodies: Vec<usize>,
    /// Concurrency of the body cells.
    pub body_concurrency: usize,
    /// Concurrency of the cached list cells.
    pub list_concurrency: usize,
    /// Seconds per list or body cell.
    pub cell_s: f64,
    /// Parts to run.
    pub parts: Vec<String>,
}

impl ScalePlan {
    /// From the environment (`LOAD_QUICK` shrinks the defaults).
    pub fn from_env(quick: bool) -> ScalePlan {
        let mut p = if quick {
            ScalePlan {
                backends: 20,
                tools: 2_000,
                scopes: 20,
                sessions: 10_000,
                bodies: vec![1_000, 16_000, 256_000, 1_000_000, 4_000_000],
                body_concurrency: 8,
                list_concurrency: 8,
                cell_s: 0.5,
                parts: Vec::new(),
            }
        } else {
            ScalePlan {
                backends: 100,
                tools: 10_000,
                scopes: 100,
                sessions: 100_000,
                bodies: vec![1_000, 16_000, 256_000, 1_000_000, 4_000_000],
                body_concurrency: 8,
                list_concurrency: 8,
                cell_s: 2.0,
                parts: Vec::new(),
            }
        };
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
        };
        if let Some(v) = num("LOAD_SCALE_BACKENDS") {
            p.backends = v.clamp(1, 1_000);
        }
        if let Some(v) = num("LOAD_SCALE_TOOLS") {
            p.tools = v.clamp(1, 100_000);
        }
        if let Some(v) = num("LOAD_SCALE_SCOPES") {
            p.scopes = v.clamp(1, 10_000);
        }
        if let Some(v) = num("LOAD_SCALE_SESSIONS") {
            p.sessions = v.min(1_000_000);
        }
        if let Some(v) = num("LOAD_SCALE_BODY_C") {
            p.body_concurrency = v.clamp(1, 256);
        }
        if let Some(v) = std::env::var("LOAD_SCALE_CELL_SECONDS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            p.cell_s = v.clamp(0.1, 600.0);
        }
        if let Ok(list) = std::env::var("LOAD_SCALE_BODIES") {
            let sizes: Vec<usize> = list
                .split(',')
                .filter_map(|s| s.trim().parse::<usize>().ok())
                .filter(|&s| (1..=64 * 1024 * 1024).contains(&s))
                .collect();
            if !sizes.is_empty() {
                p.bodies = sizes;
            }
        }
        if let Ok(list) = std::env::var("LOAD_SCALE_PARTS") {
            p.parts = list
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect();
        }
        // Every backend has at least its `echo` tool.
        p.tools = (p.tools / p.backends).max(1) * p.backends;
        p
    }

    /// Tools per backend.
    pub fn per_backend(&self) -> usize {
        self.tools / self.backends
    }

    fn runs(&self, part: &str) -> bool {
        self.parts.is_empty() || self.parts.iter().any(|p| p == part)
    }

    /// The echo-backend listeners of the scale catalog (`s000`, `s001`, …).
    pub fn listeners(&self) -> Vec<ListenerSpec> {
        (0..self.backends)
            .map(|i| ListenerSpec {
                id: backend_id(i),
                tools: self.per_backend(),
                kind: Kind::Contract,
            })
            .collect()
    }

    fn cell(&self, concurrency: usize, max_requests: u64) -> CellSpec {
        CellSpec {
            concurrency,
            duration: Duration::from_secs_f64(self.cell_s),
            max_requests,
            warmup: concurrency as u64 * 2,
        }
    }
}

fn backend_id(i: usize) -> String {
    format!("s{i:03}")
}

/// One complete `tools/list` (every page).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Walk {
    /// Pages requested.
    pub pages: usize,
    /// Tools of the generated backends listed.
    pub backend_tools: u64,
    /// All tools listed (builtins too).
    pub tools: u64,
    /// Bytes of all answers.
    pub bytes: usize,
    /// Time spent waiting for the answers (the driver's JSON parsing excluded), ms.
    pub ms: f64,
    /// Gateway CPU during the walk, ms.
    pub gateway_cpu_ms: f64,
    /// FNV-1a over the listed tool names in order (tells listings apart).
    pub names_hash: u64,
}

/// The scale catalog behind one gateway.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CatalogRun {
    /// `catalog.page_size`.
    pub page_size: usize,
    /// Whether `page_size` is the default (not set in the YAML).
    pub default_page_size: bool,
    /// Backend tools expected.
    pub tools: u64,
    /// Spawn → first HTTP answer, ms.
    pub listening_ms: f64,
    /// Spawn → `/readyz` 200 with every tool counted, ms.
    pub ready_ms: f64,
    /// Spawn → the end of the first complete listing, ms.
    pub catalog_ms: f64,
    /// Listings short of tools after `/readyz` said ready.
    pub short_walks_after_ready: u64,
    /// Gateway CPU from spawn to the complete listing, ms.
    pub cpu_to_catalog_ms: f64,
    /// RSS when ready, KiB.
    pub rss_ready_kib: u64,
    /// RSS after the cold listing, KiB.
    pub rss_after_cold_kib: u64,
    /// RSS after the cached listings and the cells, KiB.
    pub rss_after_cells_kib: u64,
    /// The first complete listing (every page built).
    pub cold: Walk,
    /// The same listing from the page cache (median over the walks).
    pub cached: Walk,
    /// Cached walks done.
    pub cached_walks: usize,
    /// Size of the first page, bytes.
    pub first_page_bytes: usize,
    /// Closed-loop cells on the first page, one per round.
    pub cells: Vec<CellOutcome>,
}

/// Many scope sets over the scale catalog.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScopeRun {
    /// Scope sets (tokens) asked for.
    pub scope_sets: usize,
    /// Sessions opened (one per token).
    pub sessions: usize,
    /// `catalog.page_size` (the default).
    pub page_size: usize,
    /// Spawn → ready (catalog and keys), ms.
    pub ready_ms: f64,
    /// RSS with the sessions open, before any listing, KiB.
    pub rss_before_kib: u64,
    /// RSS after every scope set listed once, KiB.
    pub rss_after_kib: u64,
    /// RSS after the second pass, KiB.
    pub rss_after_second_kib: u64,
    /// (after − before) / scope sets, KiB.
    pub per_set_kib: f64,
    /// Backend tools per scope set (smallest, largest).
    pub tools_min: u64,
    /// Largest.
    pub tools_max: u64,
    /// Bytes listed per scope set, mean.
    pub bytes_per_set: f64,
    /// Pages per scope set, mean.
    pub pages_per_set: f64,
    /// Distinct listings (by the tool names listed).
    pub distinct_listings: usize,
    /// First pass: wall ms, gateway CPU ms.
    pub first_pass_ms: f64,
    /// Gateway CPU of the first pass, ms.
    pub first_pass_cpu_ms: f64,
    /// Second pass: wall ms.
    pub second_pass_ms: f64,
    /// Gateway CPU of the second pass, ms.
    pub second_pass_cpu_ms: f64,
    /// Page-cache hits and misses of the first pass (from /metrics).
    pub first_pass_cache: Option<(u64, u64)>,
    /// Of the second pass.
    pub second_pass_cache: Option<(u64, u64)>,
    /// Failures.
    pub errors: u64,
    /// First distinct failures.
    pub error_samples: Vec<String>,
}

/// Many idle sessions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionsRun {
    /// Asked for.
    pub requested: usize,
    /// Created.
    pub sessions: u64,
    /// Failures.
    pub errors: u64,
    /// First distinct failures.
    pub error_samples: Vec<String>,
    /// RSS before, KiB.
    pub rss_before_kib: u64,
    /// RSS with the sessions, KiB.
    pub rss_after_kib: u64,
    /// Per session, KiB.
    pub per_session_kib: f64,
    /// Time to create them, s.
    pub create_s: f64,
    /// Gateway CPU per session created, µs.
    pub cpu_us_per_session: f64,
}

/// One body size: direct vs gateway (medians over rounds, ratios within rounds).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BodyRow {
    /// Argument size, bytes.
    pub bytes: usize,
    /// The gateway's request body, bytes.
    pub request_bytes: usize,
    /// The gateway's answer, bytes.
    pub answer_bytes: usize,
    /// The backend's direct answer, bytes.
    pub direct_answer_bytes: usize,
    /// Direct req/s.
    pub direct_rps: f64,
    /// Gateway req/s.
    pub gateway_rps: f64,
    /// Gateway vs direct (ratio, added latency, gateway CPU per call).
    pub pair: Option<Pair>,
    /// Gateway CPU per MB of argument, ms.
    pub gateway_cpu_ms_per_mb: Option<f64>,
    /// Errors (both systems, all rounds, set-up included).
    pub errors: u64,
}

/// Everything the scale phase measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScaleOutcome {
    /// Sizes.
    pub plan: Option<ScalePlan>,
    /// One run per page size.
    pub catalog: Vec<CatalogRun>,
    /// Scope sets.
    pub scopes: Option<ScopeRun>,
    /// Idle sessions.
    pub sessions: Option<SessionsRun>,
    /// Idle SSE streams (the `sse` phase's outcome).
    pub sse: Option<SseOutcome>,
    /// Body sizes.
    pub bodies: Vec<BodyRow>,
    /// `max_body_bytes` set in the body gateway's YAML, when the default was too small.
    pub max_body_bytes: Option<usize>,
    /// Wall time of the phase, s.
    pub duration_s: f64,
}

/// The YAML of a scale gateway: as `gateway_yaml` (defaults, two threads, no periodic
/// refresh, limits off), with `page_size` only when given, and extra top-level or `server`
/// settings.
fn yaml(
    port: u16,
    backends: &[(String, SocketAddr)],
    page_size: Option<usize>,
    server_extra: &str,
    auth: &str,
    extra: &str,
) -> String {
    let page = page_size.map_or_else(String::new, |p| format!("  page_size: {p}\n"));
    let mut y = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 1s\n{server_extra}\
         {auth}\
         sessions:\n  secret: \"{SECRET}\"\n\
         catalog:\n  refresh: 1h\n{page}\
         rate_limits:\n  enabled: false\n{extra}\
         backends:\n"
    );
    for (id, addr) in backends {
        y.push_str(&format!("  - id: {id}\n    url: http://{addr}\n"));
    }
    y
}

const AUTH_NONE: &str = "auth:\n  mode: none\n";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Gateway CPU so far, ns (scheduler clock: fine enough for one listing).
fn cpu_ns(gw: &GatewayProc) -> Option<u64> {
    procfs::cpu_ns(gw.pid)
}

fn ns_ms(a: Option<u64>, b: Option<u64>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6,
        _ => 0.0,
    }
}

fn ticks_ms(a: Option<u64>, b: Option<u64>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / procfs::clk_tck() * 1000.0,
        _ => 0.0,
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `bytes` (and a separator) continued from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes.iter().chain(b"\n") {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Walks every page of `tools/list` on `conn` (session `sid`, optional credential).
async fn walk(
    gw: &GatewayProc,
    conn: &mut Conn,
    sid: &str,
    credential: Option<(&str, &str)>,
) -> Result<Walk, String> {
    let host = gw.host();
    let cpu0 = cpu_ns(gw);
    let mut w = Walk {
        names_hash: FNV_OFFSET,
        ..Walk::default()
    };
    let mut cursor: Option<String> = None;
    let mut waited = Duration::ZERO;
    while w.pages < MAX_PAGES {
        let body = match &cursor {
            None => r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_string(),
            Some(c) => json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":c}})
                .to_string(),
        };
        let req = cells::mcp_post(&host, Some(sid), credential, body.as_bytes());
        let t = Instant::now();
        let resp = conn
            .request(&req)
            .await
            .map_err(|e| format!("tools/list: {e}"))?;
        waited += t.elapsed();
        w.pages += 1;
        w.bytes += resp.body.len();
        let page: Value = serde_json::from_slice(resp.body).map_err(|e| {
            format!(
                "tools/list HTTP {}: not JSON ({e}): {}",
                resp.status,
                String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
            )
        })?;
        if resp.status != 200 || page.get("result").is_none() {
            return Err(format!("tools/list HTTP {}: {page}", resp.status));
        }
        w.tools += scenarios::all_tools(&page);
        for name in page["result"]["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
        {
            w.names_hash = fnv(w.names_hash, name.as_bytes());
        }
        w.backend_tools += scenarios::backend_tools(&page);
        cursor = page["result"]["nextCursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    w.ms = ms(waited);
    w.gateway_cpu_ms = ns_ms(cpu0, cpu_ns(gw));
    Ok(w)
}

/// The scale catalog's (id, address) pairs.
fn catalog_backends(sp: &ScalePlan, be: &EchoBackend, first: usize) -> Vec<(String, SocketAddr)> {
    (0..sp.backends)
        .map(|i| (backend_id(i), be.addr(first + i)))
        .collect()
}

/// Part 1 for one page size.
async fn catalog_run(
    plan: &Plan,
    sp: &ScalePlan,
    be: &EchoBackend,
    first: usize,
    page_size: Option<usize>,
    results: &mut Results,
) -> Result<CatalogRun, String> {
    let backends = catalog_backends(sp, be, first);
    let expect = sp.tools as u64;
    let mut gw = GatewayProc::spawn(|port| yaml(port, &backends, page_size, "", AUTH_NONE, ""))?;
    let (listening, _) = gw
        .wait_until(READY_TIMEOUT, Duration::from_millis(2), |_, _| true)
        .await?;
    let (ready, _) = gw
        .wait_until(READY_TIMEOUT, Duration::from_millis(2), |s, b| {
            s == 200 && scenarios::readyz_tools(b) == expect
        })
        .await?;
    let mut run = CatalogRun {
        page_size: page_size.unwrap_or(DEFAULT_PAGE),
        default_page_size: page_size.is_none(),
        tools: expect,
        listening_ms: ms(listening),
        ready_ms: ms(ready),
        rss_ready_kib: gw.rss_kib().unwrap_or(0),
        ..CatalogRun::default()
    };
    let host = gw.host();
    let mut conn = Conn::connect(gw.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let sid = open_session(&mut conn, &host).await?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let w = walk(&gw, &mut conn, &sid, None).await?;
        if w.backend_tools == expect {
            run.catalog_ms = ms(gw.spawned.elapsed());
            run.cold = w;
            break;
        }
        run.short_walks_after_ready += 1;
        if Instant::now() >= deadline {
            return Err(format!(
                "tools/list lists {} of {expect} tools after {READY_TIMEOUT:?}",
                w.backend_tools
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run.cpu_to_catalog_ms = ticks_ms(Some(0), gw.cpu_ticks());
    run.rss_after_cold_kib = gw.rss_kib().unwrap_or(0);

    let mut walks = Vec::new();
    let until = Instant::now() + Duration::from_secs_f64(sp.cell_s);
    while walks.len() < MIN_CACHED_WALKS
        || (walks.len() < MAX_CACHED_WALKS && Instant::now() < until)
    {
        let w = walk(&gw, &mut conn, &sid, None).await?;
        if w.backend_tools != expect {
            return Err(format!(
                "a cached listing has {} of {expect} tools",
                w.backend_tools
            ));
        }
        walks.push(w);
    }
    run.cached_walks = walks.len();
    walks.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    let mut cached = walks[walks.len() / 2].clone();
    cached.gateway_cpu_ms =
        report::median(walks.iter().map(|w| w.gateway_cpu_ms).collect()).unwrap_or(0.0);
    run.cached = cached;

    let (status, _, first_page) = scenarios::mcp_once(&gw, crate::LIST_BODY).await?;
    if status != 200 {
        return Err(format!("tools/list first page: HTTP {status}"));
    }
    run.first_page_bytes = first_page;
    let target = cells::Target::Mcp {
        addr: gw.addr,
        body: crate::LIST_BODY.to_vec(),
        credential: None,
    };
    let expect_page = Expect {
        status: 200,
        prefix: [RESULT_PREFIX, br#"{"tools":["#].concat(),
        len: Some(first_page),
        forbid: None,
    };
    let scenario = format!("tools/list {} tools page {}", sp.tools, run.page_size);
    for round in 0..plan.rounds {
        let o = cells::run(
            &target,
            &expect_page,
            sp.cell(sp.list_concurrency, plan.max_requests),
            &Meters {
                gateway_pid: Some(gw.pid),
                backend: be,
            },
        )
        .await;
        progress(
            &format!(
                "round {} {scenario} C={} (cache)",
                round + 1,
                sp.list_concurrency
            ),
            &o,
        );
        results
            .series(&scenario, sp.list_concurrency, "gateway")
            .rounds
            .push(o.clone());
        run.cells.push(o);
    }
    run.rss_after_cells_kib = gw.rss_kib().unwrap_or(0);
    finish(&mut gw, "scale catalog gateway", results)?;
    Ok(run)
}

/// Checks the gateway is still up, keeps its log problems, stops it.
fn finish(gw: &mut GatewayProc, what: &str, results: &mut Results) -> Result<(), String> {
    if !gw.alive() {
        return Err(format!("the {what} died\n--- its log ---\n{}", gw.logs()));
    }
    results
        .gateway_log_problems
        .extend(log_problems(&gw.logs()));
    let status = gw.stop();
    results.gateway_exit.push(format!("{what}: {status:?}"));
    Ok(())
}

/// The scopes token `k` grants: `read` on a window of consecutive backends (wider for every
/// further lap over the backends, so the sets stay distinct when there are more sets than
/// backends).
fn scope_set(k: usize, backends: usize) -> String {
    let width = (SCOPE_WINDOW + k / backends).min(backends.saturating_sub(1).max(1));
    (0..width)
        .map(|j| format!("mcp:{}:read", backend_id((k + j) % backends)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `list_page_cache_total` hit and miss counters from the metrics listener.
async fn page_cache(port: u16) -> Option<(u64, u64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out);
    let value = |label: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains("list_page_cache_total"))
            .find(|l| l.contains(&format!("\"{label}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    };
    Some((value("hit")?, value("miss")?))
}

fn diff(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<(u64, u64)> {
    let ((h0, m0), (h1, m1)) = (a?, b?);
    Some((h1.saturating_sub(h0), m1.saturating_sub(m0)))
}

fn note(errors: &mut u64, samples: &mut Vec<String>, e: String) {
    *errors += 1;
    if samples.len() < 6 && !samples.contains(&e) {
        samples.push(e);
    }
}

/// Part 2.
async fn scopes_run(
    sp: &ScalePlan,
    be: &EchoBackend,
    first: usize,
    results: &mut Results,
) -> Result<ScopeRun, String> {
    let issuer = Issuer::start()?;
    let backends = catalog_backends(sp, be, first);
    let metrics_port = crate::process::free_port().map_err(|e| format!("free port: {e}"))?;
    let auth = format!(
        "auth:\n  mode: oauth\n  oauth:\n    issuer: \"{}\"\n    jwks_url: \"{}\"\n    algorithms: [ES256]\n",
        issuer.issuer, issuer.jwks_url
    );
    let metrics = format!("metrics:\n  listen: \"127.0.0.1:{metrics_port}\"\n");
    let expect = sp.tools as u64;
    let mut gw = GatewayProc::spawn(|port| yaml(port, &backends, None, "", &auth, &metrics))?;
    let (ready, _) = gw
        .wait_until(READY_TIMEOUT, Duration::from_millis(10), |s, b| {
            s == 200
                && scenarios::readyz_tools(b) == expect
                && b["auth"]["ready"] == true
                && b["auth"]["keys"].as_u64().unwrap_or(0) >= 1
        })
        .await?;
    let mut run = ScopeRun {
        scope_sets: sp.scopes,
        page_size: DEFAULT_PAGE,
        ready_ms: ms(ready),
        ..ScopeRun::default()
    };
    let audience = format!("http://{}/mcp", gw.addr);
    let host = gw.host();
    // Sessions first (each token validated once), so the RSS delta is the listings'.
    let mut open = Vec::with_capacity(sp.scopes);
    for k in 0..sp.scopes {
        let token = issuer.token(
            &audience,
            &format!("scale-user-{k}"),
            &scope_set(k, sp.backends),
        )?;
        let header = format!("Bearer {token}");
        let mut conn = Conn::connect(gw.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match open_session_with(&mut conn, &host, Some(("Authorization", header.as_str()))).await {
            Ok(sid) => open.push((conn, sid, header)),
            Err(e) => note(&mut run.errors, &mut run.error_samples, e),
        }
    }
    run.sessions = open.len();
    if open.is_empty() {
        return Err(format!(
            "no session could be opened with a scoped token: {:?}\n--- gateway log ---\n{}",
            run.error_samples,
            gw.logs()
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.rss_before_kib = gw.rss_kib().unwrap_or(0);
    let mut listings = Vec::with_capacity(open.len());
    for pass in 0..2 {
        let cache0 = page_cache(metrics_port).await;
        let cpu0 = cpu_ns(&gw);
        let t0 = Instant::now();
        for (conn, sid, header) in open.iter_mut() {
            match walk(&gw, conn, sid, Some(("Authorization", header.as_str()))).await {
                Ok(w) if pass == 0 => listings.push(w),
                Ok(_) => {}
                Err(e) => note(&mut run.errors, &mut run.error_samples, e),
            }
        }
        let wall = ms(t0.elapsed());
        let cpu = ns_ms(cpu0, cpu_ns(&gw));
        let cache = diff(cache0, page_cache(metrics_port).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = gw.rss_kib().unwrap_or(0);
        if pass == 0 {
            run.first_pass_ms = wall;
            run.first_pass_cpu_ms = cpu;
            run.first_pass_cache = cache;
            run.rss_after_kib = rss;
        } else {
            run.second_pass_ms = wall;
            run.second_pass_cpu_ms = cpu;
            run.second_pass_cache = cache;
            run.rss_after_second_kib = rss;
        }
    }
    if !listings.is_empty() {
        let n = listings.len() as f64;
        run.tools_min = listings.iter().map(|w| w.backend_tools).min().unwrap_or(0);
        run.tools_max = listings.iter().map(|w| w.backend_tools).max().unwrap_or(0);
        run.bytes_per_set = listings.iter().map(|w| w.bytes as f64).sum::<f64>() / n;
        run.pages_per_set = listings.iter().map(|w| w.pages as f64).sum::<f64>() / n;
        let mut hashes: Vec<u64> = listings.iter().map(|w| w.names_hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        run.distinct_listings = hashes.len();
        run.per_set_kib = run.rss_after_kib.saturating_sub(run.rss_before_kib) as f64 / n;
    }
    drop(open);
    finish(&mut gw, "scale scope-set gateway", results)?;
    Ok(run)
}

/// Part 3: `n` idle sessions over 8 connections (each worker bounded in count, failures and
/// time).
async fn sessions_run(
    sp: &ScalePlan,
    be: &EchoBackend,
    results: &mut Results,
) -> Result<SessionsRun, String> {
    let echo = vec![("echo".to_string(), be.addr(ECHO))];
    let mut gw =
        GatewayProc::spawn(|port| yaml(port, &echo, Some(crate::PAGE_SIZE), "", AUTH_NONE, ""))?;
    gw.wait_until(
        Duration::from_secs(30),
        Duration::from_millis(10),
        |s, b| s == 200 && scenarios::readyz_tools(b) == 10,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut run = SessionsRun {
        requested: sp.sessions,
        rss_before_kib: gw.rss_kib().unwrap_or(0),
        ..SessionsRun::default()
    };
    let workers = 8usize;
    let deadline = Instant::now() + SESSIONS_TIMEOUT;
    let cpu0 = cpu_ns(&gw);
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for w in 0..workers {
        let count = sp.sessions / workers + usize::from(w < sp.sessions % workers);
        let addr = gw.addr;
        let host = gw.host();
        set.spawn(async move {
            let mut made = 0u64;
            let mut errors = Vec::new();
            let mut conn = match Conn::connect(addr).await {
                Ok(c) => c,
                Err(e) => return (made, vec![format!("connect: {e}")]),
            };
            for _ in 0..count {
                if Instant::now() >= deadline || errors.len() >= WORKER_ERRORS {
                    break;
                }
                match open_session(&mut conn, &host).await {
                    Ok(_) => made += 1,
                    Err(e) => {
                        errors.push(e);
                        match Conn::connect(addr).await {
                            Ok(c) => conn = c,
                            Err(e) => {
                                errors.push(format!("reconnect: {e}"));
                                break;
                            }
                        }
                    }
                }
            }
            (made, errors)
        });
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok((made, errors)) => {
                run.sessions += made;
                for e in errors {
                    note(&mut run.errors, &mut run.error_samples, e);
                }
            }
            Err(e) => note(
                &mut run.errors,
                &mut run.error_samples,
                format!("task: {e}"),
            ),
        }
    }
    run.create_s = t0.elapsed().as_secs_f64();
    let cpu = ns_ms(cpu0, cpu_ns(&gw));
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.rss_after_kib = gw.rss_kib().unwrap_or(0);
    if run.sessions > 0 {
        run.per_session_kib =
            run.rss_after_kib.saturating_sub(run.rss_before_kib) as f64 / run.sessions as f64;
        run.cpu_us_per_session = cpu * 1000.0 / run.sessions as f64;
    }
    finish(&mut gw, "scale sessions gateway", results)?;
    Ok(run)
}

/// A printable argument of exactly `n` bytes (no JSON escapes).
fn message(n: usize) -> String {
    const TEXT: &str = "The quick brown fox jumps over the lazy dog; 0123456789. ";
    TEXT.repeat(n / TEXT.len() + 1)[..n].to_string()
}

/// `1 KB`, `256 KB`, `4 MB` (decimal), or bytes.
pub fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{} MB", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{} KB", n / 1_000)
    } else {
        format!("{n} B")
    }
}

fn body_scenario(n: usize) -> String {
    format!("tools/call body {}", size_label(n))
}

/// Part 5.
async fn bodies_run(
    plan: &Plan,
    sp: &ScalePlan,
    be: &EchoBackend,
    out: &mut ScaleOutcome,
    results: &mut Results,
) -> Result<(), String> {
    let largest = sp.bodies.iter().copied().max().unwrap_or(0);
    let mut server_extra = String::new();
    if largest + ENVELOPE > DEFAULT_MAX_BODY {
        let mib = (largest + ENVELOPE).div_ceil(1024 * 1024);
        let budget = (mib * (sp.body_concurrency + 1)).max(64);
        server_extra =
            format!("  max_body_bytes: {mib}MiB\n  limits:\n    body_budget: {budget}MiB\n");
        out.max_body_bytes = Some(mib * 1024 * 1024);
        eprintln!(
            "  bodies: the default server.max_body_bytes (4 MiB) refuses {}; this gateway sets max_body_bytes {mib}MiB and body_budget {budget}MiB",
            size_label(largest)
        );
    }
    let echo = vec![("echo".to_string(), be.addr(ECHO))];
    let mut gw = GatewayProc::spawn(|port| {
        yaml(
            port,
            &echo,
            Some(crate::PAGE_SIZE),
            &server_extra,
            AUTH_NONE,
            "",
        )
    })?;
    gw.wait_until(
        Duration::from_secs(30),
        Duration::from_millis(10),
        |s, b| s == 200 && scenarios::readyz_tools(b) == 10,
    )
    .await?;
    let mut prepared = Vec::new();
    for &n in &sp.bodies {
        let msg = message(n);
        let params = format!(r#"{{"message":"{msg}"}}"#);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo_echo","arguments":{params}}}}}"#
        );
        let (status, answer, answer_bytes) = scenarios::mcp_once(&gw, body.as_bytes()).await?;
        let echoed = answer["result"]["structuredContent"]["echoed"]["message"]
            .as_str()
            .map_or(0, str::len);
        if status != 200 || echoed != n {
            let text = answer.to_string();
            return Err(format!(
                "tools/call with a {} argument through the gateway: HTTP {status}, echoed {echoed} bytes: {}",
                size_label(n),
                &text[..text.len().min(300)]
            ));
        }
        let request = direct_call(be.addr(ECHO), "echo", &params);
        let (status, direct, direct_bytes) = scenarios::plain_once(be.addr(ECHO), &request).await?;
        if status != 200 || direct["echoed"]["message"].as_str().map_or(0, str::len) != n {
            return Err(format!("direct echo of {}: HTTP {status}", size_label(n)));
        }
        prepared.push((n, body, request, answer_bytes, direct_bytes));
    }
    for round in 0..plan.rounds {
        for (i, (n, body, request, answer_bytes, direct_bytes)) in prepared.iter().enumerate() {
            let scenario = body_scenario(*n);
            let via = cells::Target::Mcp {
                addr: gw.addr,
                body: body.as_bytes().to_vec(),
                credential: None,
            };
            let via_expect = Expect {
                status: 200,
                prefix: RESULT_PREFIX.to_vec(),
                len: Some(*answer_bytes),
                forbid: Some(br#""isError":true"#.to_vec()),
            };
            let direct = cells::Target::Plain {
                addr: be.addr(ECHO),
                request: request.clone(),
            };
            let direct_expect = Expect {
                status: 200,
                prefix: br#"{"echoed":"#.to_vec(),
                len: Some(*direct_bytes),
                forbid: None,
            };
            let spec = sp.cell(sp.body_concurrency, plan.max_requests);
            let gateway_first = (round + i) % 2 == 1;
            for leg in 0..2 {
                let through = (leg == 0) == gateway_first;
                let (target, expect, system, pid) = if through {
                    (&via, &via_expect, "gateway", Some(gw.pid))
                } else {
                    (&direct, &direct_expect, "direct", None)
                };
                let o = cells::run(
                    target,
                    expect,
                    spec,
                    &Meters {
                        gateway_pid: pid,
                        backend: be,
                    },
                )
                .await;
                progress(
                    &format!(
                        "round {} {scenario} C={} {system}",
                        round + 1,
                        sp.body_concurrency
                    ),
                    &o,
                );
                results
                    .series(&scenario, sp.body_concurrency, system)
                    .rounds
                    .push(o);
            }
        }
        if !gw.alive() {
            return Err(format!(
                "the body gateway died during round {}\n--- its log ---\n{}",
                round + 1,
                gw.logs()
            ));
        }
    }
    for (n, body, _, answer_bytes, direct_bytes) in &prepared {
        let scenario = body_scenario(*n);
        let find = |system: &str| {
            results
                .series
                .iter()
                .find(|s| s.scenario == scenario && s.system == system)
                .map(report::Series::median)
        };
        let (g, d) = (find("gateway"), find("direct"));
        let pair = report::pairs(&results.series, &scenario, "gateway", "direct")
            .into_iter()
            .next();
        let errors = [&g, &d]
            .iter()
            .filter_map(|m| m.as_ref())
            .map(|m| m.errors + m.setup_errors)
            .sum();
        out.bodies.push(BodyRow {
            bytes: *n,
            request_bytes: body.len(),
            answer_bytes: *answer_bytes,
            direct_answer_bytes: *direct_bytes,
            direct_rps: d.as_ref().map_or(0.0, |m| m.rps),
            gateway_rps: g.as_ref().map_or(0.0, |m| m.rps),
            gateway_cpu_ms_per_mb: pair
                .as_ref()
                .and_then(|p| p.gateway_cpu_us)
                .map(|us| us / 1000.0 / (*n as f64 / 1e6)),
            pair,
            errors,
        });
    }
    finish(&mut gw, "scale body gateway", results)
}

/// Runs the scale phase; `first` is the index of the scale catalog's first listener.
pub async fn scale_phase(
    plan: &Plan,
    sp: &ScalePlan,
    be: &EchoBackend,
    first: usize,
    results: &mut Results,
) -> Result<(), String> {
    let started = Instant::now();
    let mut out = ScaleOutcome {
        plan: Some(sp.clone()),
        ..ScaleOutcome::default()
    };
    eprintln!(
        "scale: {} tools over {} backends, {} scope sets, {} sessions, bodies {:?}",
        sp.tools, sp.backends, sp.scopes, sp.sessions, sp.bodies
    );
    if sp.runs("catalog") {
        for page_size in [Some(ONE_PAGE), None] {
            let r = catalog_run(plan, sp, be, first, page_size, results).await?;
            eprintln!(
                "  catalog page {}: listening {:.0} ms, ready {:.0} ms, complete listing {:.0} ms (CPU {:.0} ms, {} short), cold walk {} pages {:.1} ms (gw CPU {:.1} ms), cached walk {:.1} ms (gw CPU {:.1} ms), RSS {:.1} → {:.1} MiB",
                r.page_size,
                r.listening_ms,
                r.ready_ms,
                r.catalog_ms,
                r.cpu_to_catalog_ms,
                r.short_walks_after_ready,
                r.cold.pages,
                r.cold.ms,
                r.cold.gateway_cpu_ms,
                r.cached.ms,
                r.cached.gateway_cpu_ms,
                r.rss_ready_kib as f64 / 1024.0,
                r.rss_after_cells_kib as f64 / 1024.0
            );
            out.catalog.push(r);
        }
    }
    if sp.runs("scopes") {
        let r = scopes_run(sp, be, first, results).await?;
        eprintln!(
            "  scopes: {} sets ({} sessions), {}–{} tools each, {:.0} KB each; RSS {:.1} → {:.1} MiB ({:.1} KiB per set); pass 1 {:.0} ms (CPU {:.0} ms, cache {:?}), pass 2 {:.0} ms (CPU {:.0} ms, cache {:?}); errors {}",
            r.scope_sets,
            r.sessions,
            r.tools_min,
            r.tools_max,
            r.bytes_per_set / 1000.0,
            r.rss_before_kib as f64 / 1024.0,
            r.rss_after_kib as f64 / 1024.0,
            r.per_set_kib,
            r.first_pass_ms,
            r.first_pass_cpu_ms,
            r.first_pass_cache,
            r.second_pass_ms,
            r.second_pass_cpu_ms,
            r.second_pass_cache,
            r.errors
        );
        for e in &r.error_samples {
            eprintln!("    error: {e}");
        }
        out.scopes = Some(r);
    }
    if sp.runs("sessions") {
        let r = sessions_run(sp, be, results).await?;
        eprintln!(
            "  sessions: {} in {:.1} s ({:.0} µs gateway CPU each), RSS {:.1} → {:.1} MiB ({:.2} KiB per session), errors {}",
            r.sessions,
            r.create_s,
            r.cpu_us_per_session,
            r.rss_before_kib as f64 / 1024.0,
            r.rss_after_kib as f64 / 1024.0,
            r.per_session_kib,
            r.errors
        );
        for e in &r.error_samples {
            eprintln!("    error: {e}");
        }
        out.sessions = Some(r);
    }
    if sp.runs("sse") && results.sse.is_none() {
        crate::sse_gateway_phase(plan, be, results).await?;
    }
    out.sse = results.sse.clone();
    if sp.runs("bodies") {
        bodies_run(plan, sp, be, &mut out, results).await?;
    }
    out.duration_s = started.elapsed().as_secs_f64();
    eprintln!("  scale phase: {:.0} s", out.duration_s);
    results.scale = Some(out);
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The scale tables of the summary.
pub fn print_scale(results: &Results) {
    println!("\n#### Scale (issue 17 §4)\n");
    let Some(s) = &results.scale else {
        println!("not run (`LOAD_PHASES=scale`)");
        return;
    };
    if let Some(p) = &s.plan {
        println!(
            "{} tools over {} backends; {} scope sets; {} sessions; {:.0} s in all.",
            p.tools, p.backends, p.scopes, p.sessions, s.duration_s
        );
    }
    if !s.catalog.is_empty() {
        println!("\n##### Catalog: spawn → complete `tools/list`, cold and cached listing\n");
        println!("| page_size | listening ms | /readyz ready ms | complete tools/list ms | gateway CPU to then ms | RSS ready MiB | RSS after lists MiB | pages | bytes | cold listing ms (gw CPU ms) | cached listing ms (gw CPU ms) | first page C=8 req/s | gw CPU µs/page |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &s.catalog {
            let rps = report::median(r.cells.iter().map(|c| c.rps).collect());
            let cpu = report::median(
                r.cells
                    .iter()
                    .filter_map(|c| c.gateway_cpu_us_per_req)
                    .collect(),
            );
            println!(
                "| {}{} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {} | {:.1} ({:.1}) | {:.1} ({:.1}) | {} | {} |",
                r.page_size,
                if r.default_page_size { " (default)" } else { "" },
                r.listening_ms,
                r.ready_ms,
                r.catalog_ms,
                r.cpu_to_catalog_ms,
                mib(r.rss_ready_kib),
                mib(r.rss_after_cells_kib),
                r.cold.pages,
                r.cold.bytes,
                r.cold.ms,
                r.cold.gateway_cpu_ms,
                r.cached.ms,
                r.cached.gateway_cpu_ms,
                rps.map_or_else(|| "—".into(), |v| format!("{v:.0}")),
                cpu.map_or_else(|| "—".into(), |v| format!("{v:.0}")),
            );
        }
    }
    if let Some(r) = &s.scopes {
        let cache = |c: Option<(u64, u64)>| {
            c.map_or_else(|| "—".into(), |(h, m)| format!("{h} hits / {m} misses"))
        };
        println!("\n##### Scope sets: the page cache (default page size, `auth.mode: oauth`)\n");
        println!("| scope sets | distinct listings | tools each | KB listed each | pages each | RSS before MiB | after MiB | KiB per set | pass 1 ms (gw CPU) | page cache pass 1 | pass 2 ms (gw CPU) | page cache pass 2 | errors |");
        println!("|---:|---:|---|---:|---:|---:|---:|---:|---|---|---|---|---:|");
        println!(
            "| {} | {} | {}–{} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} ({:.0}) | {} | {:.0} ({:.0}) | {} | {} |",
            r.scope_sets,
            r.distinct_listings,
            r.tools_min,
            r.tools_max,
            r.bytes_per_set / 1000.0,
            r.pages_per_set,
            mib(r.rss_before_kib),
            mib(r.rss_after_kib),
            r.per_set_kib,
            r.first_pass_ms,
            r.first_pass_cpu_ms,
            cache(r.first_pass_cache),
            r.second_pass_ms,
            r.second_pass_cpu_ms,
            cache(r.second_pass_cache),
            r.errors
        );
    }
    if let Some(r) = &s.sessions {
        println!("\n##### Idle sessions\n");
        println!("| sessions | created in s | gw CPU µs/session | RSS before MiB | after MiB | KiB per session | errors |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.2} | {} |",
            r.sessions,
            r.create_s,
            r.cpu_us_per_session,
            mib(r.rss_before_kib),
            mib(r.rss_after_kib),
            r.per_session_kib,
            r.errors
        );
    }
    if let Some(r) = &s.sse {
        println!("\n##### Idle SSE streams (the `sse` phase)\n");
        println!("| streams open | RSS with sessions MiB | with streams MiB | KiB per stream | idle CPU % | errors |");
        println!("|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {:.1} | {:.1} | {:.2} | {:.2} | {} |",
            r.streams_open,
            mib(r.rss_sessions_kib),
            mib(r.rss_streams_kib),
            r.per_stream_kib,
            r.idle_cpu_pct,
            r.errors
        );
        if let Some(n) = r.max_connections {
            println!("\n(`server.limits.max_connections: {n}` on that gateway)");
        }
    }
    if !s.bodies.is_empty() {
        let c = s.plan.as_ref().map_or(0, |p| p.body_concurrency);
        println!("\n##### Bodies: `tools/call` echo, C={c}, gateway vs direct (same rounds)\n");
        if let Some(m) = s.max_body_bytes {
            println!("(server.max_body_bytes raised to {m} bytes for these cells)\n");
        }
        println!("| argument | request bytes | answer bytes (direct) | direct req/s | gateway req/s | ratio | added p50 µs | gw CPU µs/call | gw CPU ms/MB | errors |");
        println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for b in &s.bodies {
            let p = b.pair.as_ref();
            println!(
                "| {} | {} | {} ({}) | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                size_label(b.bytes),
                b.request_bytes,
                b.answer_bytes,
                b.direct_answer_bytes,
                b.direct_rps,
                b.gateway_rps,
                p.map_or_else(|| "—".into(), |p| format!("{:.3}", p.rps_ratio)),
                p.map_or_else(|| "—".into(), |p| format!("{:.0}", p.added_p50_us)),
                p.and_then(|p| p.gateway_cpu_us)
                    .map_or_else(|| "—".into(), |v| format!("{v:.0}")),
                b.gateway_cpu_ms_per_mb
                    .map_or_else(|| "—".into(), |v| format!("{v:.2}")),
                b.errors
            );
        }
    }
}
