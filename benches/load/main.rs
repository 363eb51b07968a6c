//! The loopback load harness of issue 6 §2: `cargo bench --bench load`.
//!
//! On 127.0.0.1 only, it starts a fast contract echo backend (hyper 1, one thread, in this
//! process) and the real `cortex-gateway` binary (a child process, configured by a generated
//! YAML file: `auth.mode: none`, sessions, the backend), waits for `/readyz`, and measures
//! with a closed-loop HTTP/1.1 keep-alive driver (one connection per worker, one thread),
//! alternating direct calls to the backend and MCP calls through the gateway in the SAME
//! rounds so machine noise hits both:
//!
//! - `tools/call` at C = 1, 8, 32, 128: req/s, p50/p90/p99/p99.9, errors, ratio and added
//!   latency, gateway CPU per call (utime+stime from /proc / requests);
//! - `tools/list` from the cache with 10 and 1,000 tools; `initialize` round trips;
//! - gateway RSS idle, under load (peak), after load, with N idle sessions and N idle SSE
//!   streams (per-session and per-stream cost; past the default 4,096 client connections
//!   that gateway's `server.limits.max_connections` is raised, and the report says so);
//! - a catalog refresh across 100 backends of 50 tools: spawn → ready with 5,000 tools;
//! - the native MCP path (issue 17 §2): a minimal MCP echo server (streamable HTTP, JSON
//!   replies, one `echo` tool) called directly and through the gateway as a `kind: mcp`
//!   backend, at the same concurrencies as the contract cells;
//! - per cell, the connections the backend accepted (connection reuse to backends).
//!
//! - JWT-authenticated `tools/call` vs dev mode at C = 1 and 32: a gateway in
//!   `auth.mode: oauth` whose issuer is a stand-in served by this process (an ES256 key made
//!   with `ring`, its JWKS and RFC 8414 metadata on 127.0.0.1), called with
//!   `Authorization: Bearer <one locally signed token>` and with `X-Dev-Mode: <bypass token>`
//!   in alternating order.
//!
//! - how the cost grows (issue 17 §4, module `scale`, about 2 minutes of the run): a
//!   catalog of 10,000 tools over 100 backends (spawn → complete `tools/list`, CPU, RSS, cold and cached listings with one
//!   page and with the default page size), 100 distinct scope sets (page-cache memory),
//!   100,000 idle sessions (memory), the 10,000 idle SSE streams of the `sse` phase, and
//!   `tools/call` bodies of 1 KB to 4 MB (per-call CPU and throughput, direct vs gateway).
//!   Its sizes: `LOAD_SCALE_TOOLS`, `LOAD_SCALE_BACKENDS`, `LOAD_SCALE_SCOPES`,
//!   `LOAD_SCALE_SESSIONS`, `LOAD_SCALE_BODIES=1000,16000,…`, `LOAD_SCALE_BODY_C`,
//!   `LOAD_SCALE_CELL_SECONDS`, `LOAD_SCALE_PARTS=catalog,scopes,sessions,sse,bodies`.
//!
//! Environment: `LOAD_QUICK=1` (a ~1 minute smoke run), `LOAD_OUT=<file>` (JSON results; default
//! `$CARGO_TARGET_DIR/load-results.json`); overrides for investigations: `LOAD_ROUNDS`,
//! `LOAD_STREAMS`, `LOAD_CELL_SECONDS` (tools/call cells), `LOAD_CONCURRENCY=1,8` (their
//! concurrencies), `LOAD_PHASES=calls,native,jwt,observe,sse,big,refresh,scale` (default all),
//! `LOAD_GATEWAY_BIN` (run another build of the gateway, e.g. one with symbols for perf),
//! `LOAD_STOP_GRACE_S` (SIGTERM → SIGKILL delay, default 5).
//! Every process it starts is stopped by PID, also on panic (drop guards).

mod backend;
mod cells;
mod client;
#[path = "../support/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;
mod gateway;
#[path = "../../tests/it/common/http_server.rs"]
#[allow(dead_code)]
mod http_server;
mod issuer;
mod jwt;
mod observe;
#[path = "../../tests/it/common/process.rs"]
mod process;
mod procfs;
mod report;
mod scale;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use backend::{EchoBackend, Kind, ListenerSpec};
use cells::{CellSpec, Expect, Meters, RssWatch, Target};
use gateway::GatewayProc;
use jwt::{jwt_json, jwt_measured, jwt_phase, print_jwt, DEV, JWT, JWT_SCENARIO};
use report::Series;

/// A fixed 32+ character sealing secret (sessions survive nothing here; it only avoids the
/// random-key warning and matches a production setup).
const SECRET: &str = "load-harness-secret-0123456789abcdef0123";

/// Listener indexes in the echo backend.
const ECHO: usize = 0;
const BIG: usize = 1;
const REFRESH_FIRST: usize = 2;
/// `catalog.page_size` of the 10- and 1,000-tool gateways: large enough that the whole
/// catalog (backend tools plus the gateway's builtin tools) is one page.
const PAGE_SIZE: usize = 2_000;
/// The default `server.limits.max_connections` (docs/configuration.md).
const DEFAULT_MAX_CONNECTIONS: usize = 4_096;
/// Client connections the SSE gateway allows beyond its streams (the driver's session
/// connections and `/readyz` polls).
const SSE_SPARE_CONNECTIONS: usize = 64;
/// The 100-backend refresh scenario.
const REFRESH_BACKENDS: usize = 100;
const REFRESH_TOOLS: usize = 50;
/// The native MCP echo server's listener (after the refresh backends).
const NATIVE: usize = REFRESH_FIRST + REFRESH_BACKENDS;
/// The first listener of the scale catalog (after the native server; only when the `scale`
/// phase runs).
const SCALE_FIRST: usize = NATIVE + 1;

/// How big the run is.
#[derive(Debug, Clone, Serialize)]
struct Plan {
    quick: bool,
    rounds: usize,
    call_concurrency: Vec<usize>,
    list_concurrency: Vec<usize>,
    call_cell_s: f64,
    list_cell_s: f64,
    max_requests: u64,
    warmup: u64,
    init_sessions: u64,
    init_cell_s: f64,
    streams: usize,
    refresh_rounds: usize,
    /// Phases to run (`LOAD_PHASES=calls,native,jwt,observe,sse,big,refresh,scale`; default
    /// all).
    phases: Vec<String>,
    /// Sizes of the `scale` phase.
    scale: scale::ScalePlan,
}

impl Plan {
    fn from_env() -> Plan {
        let quick = std::env::var("LOAD_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let mut plan = if quick {
            Plan {
                quick,
                rounds: 1,
                call_concurrency: vec![1, 8, 32, 128],
                list_concurrency: vec![1, 8],
                call_cell_s: 0.7,
                list_cell_s: 0.5,
                max_requests: 50_000,
                warmup: 200,
                init_sessions: 300,
                init_cell_s: 1.0,
                streams: 1_000,
                refresh_rounds: 1,
                phases: Vec::new(),
                scale: scale::ScalePlan::from_env(quick),
            }
        } else {
            Plan {
                quick,
                rounds: 3,
                call_concurrency: vec![1, 8, 32, 128],
                list_concurrency: vec![1, 8],
                call_cell_s: 4.0,
                list_cell_s: 2.0,
                max_requests: 200_000,
                warmup: 1_000,
                init_sessions: 500,
                init_cell_s: 3.0,
                streams: 10_000,
                refresh_rounds: 3,
                phases: Vec::new(),
                scale: scale::ScalePlan::from_env(quick),
            }
        };
        let env_num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
        if let Some(r) = env_num("LOAD_ROUNDS") {
            plan.rounds = r.max(1);
        }
        if let Some(s) = env_num("LOAD_STREAMS") {
            plan.streams = s;
        }
        if let Ok(list) = std::env::var("LOAD_CONCURRENCY") {
            let cs: Vec<usize> = list
                .split(',')
                .filter_map(|c| c.trim().parse::<usize>().ok())
                .filter(|&c| c > 0)
                .collect();
            if !cs.is_empty() {
                plan.call_concurrency = cs;
            }
        }
        if let Some(c) = std::env::var("LOAD_CELL_SECONDS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
        {
            plan.call_cell_s = c;
        }
        if let Ok(p) = std::env::var("LOAD_PHASES") {
            plan.phases = p
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect();
        }
        plan
    }

    fn runs(&self, phase: &str) -> bool {
        self.phases.is_empty() || self.phases.iter().any(|p| p == phase)
    }

    fn cell(&self, concurrency: usize, seconds: f64) -> CellSpec {
        CellSpec {
            concurrency,
            duration: Duration::from_secs_f64(seconds),
            max_requests: self.max_requests,
            warmup: self.warmup.max(concurrency as u64 * 2),
        }
    }
}

/// The YAML of a gateway in front of `backends` (id, address). Defaults everywhere else
/// (logging `info`, the audit trail on), except: two worker threads (explicit), a 1 s
/// `grace_period` (it only affects shutdown: the gateway waits the whole grace period on
/// SIGTERM even when idle, and the harness stops it after 5 s), no periodic refresh during
/// the run, and one page for the whole catalog.
fn gateway_yaml(
    port: u16,
    backends: &[(String, std::net::SocketAddr)],
    page_size: usize,
) -> String {
    let mut y = format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 1s\n\
         auth:\n  mode: none\n\
         sessions:\n  secret: \"{SECRET}\"\n\
         catalog:\n  refresh: 1h\n  page_size: {page_size}\n\
         rate_limits:\n  enabled: false\n\
         backends:\n"
    );
    for (id, addr) in backends {
        y.push_str(&format!("  - id: {id}\n    url: http://{addr}\n"));
    }
    y
}

/// The YAML of a gateway in front of the native MCP echo server (`kind: mcp`), otherwise
/// as [`gateway_yaml`].
fn native_gateway_yaml(port: u16, addr: std::net::SocketAddr) -> String {
    let mut y = gateway_yaml(port, &[], PAGE_SIZE);
    y.push_str(&format!(
        "  - id: mcp\n    kind: mcp\n    url: http://{addr}/mcp\n"
    ));
    y
}

/// Identity headers the gateway sends in `auth.mode: none`; the direct calls send the same
/// so the backend does the same work on both paths.
const IDENTITY: [(&str, &str); 7] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json"),
    ("X-Cortex-User-Id", "local"),
    ("X-Cortex-User-Email", "local@localhost"),
    ("X-Cortex-User-Role", "admin"),
    ("X-Cortex-User-Pool", ""),
    ("X-Cortex-Scopes", "*"),
];

fn direct_call(addr: std::net::SocketAddr, method: &str, params: &str) -> Vec<u8> {
    let body = format!(r#"{{"method":"{method}","params":{params}}}"#);
    client::request(
        "POST",
        &addr.to_string(),
        "/api/cortex/backend",
        &IDENTITY,
        body.as_bytes(),
    )
}

const CALL_BODY: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo_echo","arguments":{"message":"hello"}}}"#;
const LIST_BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
/// The same call to the native MCP echo server, directly and through the gateway.
const NATIVE_DIRECT_BODY: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}"#;
const NATIVE_CALL_BODY: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"mcp_echo","arguments":{"message":"hello"}}}"#;
/// The scenario name of the native MCP cells.
const NATIVE_SCENARIO: &str = "tools/call native MCP";
const RESULT_PREFIX: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":"#;

/// Everything measured, for the JSON file.
#[derive(Default, Serialize)]
struct Results {
    series: Vec<Series>,
    pairs: Vec<report::Pair>,
    initialize: Vec<scenarios::InitOutcome>,
    memory: Value,
    sse: Option<scenarios::SseOutcome>,
    refresh: Vec<scenarios::RefreshRound>,
    sanity: Value,
    /// JWT vs dev mode per concurrency (from the `tools/call oauth` series).
    jwt_pairs: Vec<report::Pair>,
    /// Gateway vs direct on the native MCP echo server.
    native_pairs: Vec<report::Pair>,
    /// The `scale` phase (issue 17 §4).
    scale: Option<scale::ScaleOutcome>,
    gateway_exit: Vec<String>,
    gateway_log_problems: Vec<String>,
}

impl Results {
    fn series(&mut self, scenario: &str, concurrency: usize, system: &str) -> &mut Series {
        let pos = self.series.iter().position(|s| {
            s.scenario == scenario && s.concurrency == concurrency && s.system == system
        });
        let i = match pos {
            Some(i) => i,
            None => {
                self.series.push(Series {
                    scenario: scenario.into(),
                    concurrency,
                    system: system.into(),
                    rounds: Vec::new(),
                });
                self.series.len() - 1
            }
        };
        &mut self.series[i]
    }
}

fn progress(what: &str, o: &cells::CellOutcome) {
    eprintln!(
        "  {what}: {:>8.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs  errors {}{}  gw CPU {} µs/req  busy {:.0} %",
        o.rps,
        o.latency.p50_us,
        o.latency.p99_us,
        o.errors,
        if o.setup_errors > 0 {
            format!(" (+{} set-up)", o.setup_errors)
        } else {
            String::new()
        },
        o.gateway_cpu_us_per_req
            .map_or_else(|| "—".into(), |v| format!("{v:.1}")),
        o.machine_busy_pct
    );
    for e in &o.error_samples {
        eprintln!("    error: {e}");
    }
}

/// Lines of a gateway log that deserve a reader's attention.
fn log_problems(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("panic") || l.contains(" error ") || l.contains("error:")
        })
        .take(20)
        .map(str::to_string)
        .collect()
}

/// Checks, with full JSON parsing, that both paths answer what the cells expect.
async fn sanity(gw: &GatewayProc, be: &EchoBackend, tools: usize) -> Result<Value, String> {
    let (status, call, call_bytes) = scenarios::mcp_once(gw, CALL_BODY).await?;
    let echoed = &call["result"]["structuredContent"]["echoed"]["message"];
    if status != 200 || echoed != "hello" {
        return Err(format!(
            "tools/call through the gateway answered HTTP {status}: {call}"
        ));
    }
    let (status, direct, _) = scenarios::plain_once(
        be.addr(ECHO),
        &direct_call(be.addr(ECHO), "echo", r#"{"message":"hello"}"#),
    )
    .await?;
    if status != 200 || direct["echoed"]["message"] != "hello" {
        return Err(format!("direct call answered HTTP {status}: {direct}"));
    }
    let (status, list, list_bytes) = scenarios::mcp_once(gw, LIST_BODY).await?;
    let listed = scenarios::all_tools(&list);
    let ours = scenarios::backend_tools(&list);
    if status != 200 || ours != tools as u64 || list["result"].get("nextCursor").is_some() {
        return Err(format!(
            "tools/list answered HTTP {status} with {ours} backend tools of {listed} (expected {tools} in one page)"
        ));
    }
    Ok(
        json!({"tools_call_bytes": call_bytes, "tools_list_bytes": list_bytes, "tools": listed, "backend_tools": ours}),
    )
}

/// tools/list cells (gateway from cache vs the backend's pre-serialized `list_tools`).
async fn list_round(
    plan: &Plan,
    round: usize,
    gw: &GatewayProc,
    be: &EchoBackend,
    listener: usize,
    list_bytes: usize,
    results: &mut Results,
) {
    let tools = if listener == BIG { 1_000 } else { 10 };
    let scenario = format!("tools/list {tools} tools");
    let via = Target::Mcp {
        addr: gw.addr,
        body: LIST_BODY.to_vec(),
        credential: None,
    };
    let via_expect = Expect {
        status: 200,
        prefix: [RESULT_PREFIX, br#"{"tools":["#].concat(),
        len: Some(list_bytes),
        forbid: None,
    };
    let direct = Target::Plain {
        addr: be.addr(listener),
        request: direct_call(be.addr(listener), "list_tools", "{}"),
    };
    let direct_expect = Expect {
        status: 200,
        prefix: br#"{"tools":["#.to_vec(),
        len: Some(be.list_bytes(listener)),
        forbid: None,
    };
    for (i, &c) in plan.list_concurrency.iter().enumerate() {
        let spec = plan.cell(c, plan.list_cell_s);
        for leg in 0..2 {
            let gateway_first = (round + i).is_multiple_of(2);
            if (leg == 0) == gateway_first {
                let o = cells::run(
                    &via,
                    &via_expect,
                    spec,
                    &Meters {
                        gateway_pid: Some(gw.pid),
                        backend: be,
                    },
                )
                .await;
                progress(
                    &format!("round {} {scenario} C={c} gateway (cache)", round + 1),
                    &o,
                );
                results.series(&scenario, c, "gateway").rounds.push(o);
            } else {
                let o = cells::run(
                    &direct,
                    &direct_expect,
                    spec,
                    &Meters {
                        gateway_pid: None,
                        backend: be,
                    },
                )
                .await;
                progress(
                    &format!("round {} {scenario} C={c} direct list_tools", round + 1),
                    &o,
                );
                results
                    .series(&scenario, c, "direct list_tools")
                    .rounds
                    .push(o);
            }
        }
    }
}

/// tools/call cells at every concurrency, direct and gateway in alternating order.
async fn call_round(
    plan: &Plan,
    round: usize,
    gw: &GatewayProc,
    be: &EchoBackend,
    results: &mut Results,
) {
    let via = Target::Mcp {
        addr: gw.addr,
        body: CALL_BODY.to_vec(),
        credential: None,
    };
    let via_expect = Expect {
        status: 200,
        prefix: RESULT_PREFIX.to_vec(),
        len: None,
        forbid: Some(br#""isError":true"#.to_vec()),
    };
    let direct = Target::Plain {
        addr: be.addr(ECHO),
        request: direct_call(be.addr(ECHO), "echo", r#"{"message":"hello"}"#),
    };
    let direct_expect = Expect {
        status: 200,
        prefix: br#"{"echoed":"#.to_vec(),
        len: None,
        forbid: None,
    };
    for (i, &c) in plan.call_concurrency.iter().enumerate() {
        let spec = plan.cell(c, plan.call_cell_s);
        let gateway_first = (round + i) % 2 == 1;
        for leg in 0..2 {
            if (leg == 0) == gateway_first {
                let o = cells::run(
                    &via,
                    &via_expect,
                    spec,
                    &Meters {
                        gateway_pid: Some(gw.pid),
                        backend: be,
                    },
                )
                .await;
                progress(&format!("round {} tools/call C={c} gateway", round + 1), &o);
                results.series("tools/call", c, "gateway").rounds.push(o);
            } else {
                let o = cells::run(
                    &direct,
                    &direct_expect,
                    spec,
                    &Meters {
                        gateway_pid: None,
                        backend: be,
                    },
                )
                .await;
                progress(&format!("round {} tools/call C={c} direct", round + 1), &o);
                results.series("tools/call", c, "direct").rounds.push(o);
            }
        }
    }
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

/// Phase 1: the 10-tool gateway: calls, small lists, sessions, memory, SSE streams.
async fn main_gateway_phase(
    plan: &Plan,
    be: &EchoBackend,
    results: &mut Results,
) -> Result<(), String> {
    let echo = vec![("echo".to_string(), be.addr(ECHO))];
    let mut gw = GatewayProc::spawn(|port| gateway_yaml(port, &echo, PAGE_SIZE))?;
    gw.wait_until(
        Duration::from_secs(30),
        Duration::from_millis(10),
        |s, b| s == 200 && scenarios::readyz_tools(b) == 10,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = gw.rss_kib();
    eprintln!(
        "gateway pid {} on {}; idle RSS {:.1} MiB",
        gw.pid,
        gw.addr,
        mib(idle).unwrap_or(0.0)
    );
    let sanity = sanity(&gw, be, 10).await?;
    let list_bytes = sanity["tools_list_bytes"].as_u64().unwrap_or(0) as usize;
    results.sanity = json!({"gateway_10_tools": sanity});

    let watch = RssWatch::start(gw.pid);
    for round in 0..plan.rounds {
        call_round(plan, round, &gw, be, results).await;
        list_round(plan, round, &gw, be, ECHO, list_bytes, results).await;
        let o = scenarios::initialize_cell(
            &gw,
            plan.init_sessions,
            Duration::from_secs_f64(plan.init_cell_s),
            50,
        )
        .await;
        eprintln!(
            "  round {} initialize: p50 {:.1} µs  p99 {:.1} µs  {:.0} sessions/s  gw CPU {} µs/session  errors {}",
            round + 1,
            o.initialize.p50_us,
            o.initialize.p99_us,
            o.sessions_per_s,
            o.gateway_cpu_us_per_session.map_or_else(|| "—".into(), |v| format!("{v:.0}")),
            o.errors
        );
        for e in &o.error_samples {
            eprintln!("    error: {e}");
        }
        results.initialize.push(o);
        if !gw.alive() {
            return Err(format!(
                "the gateway died during round {}\n--- its log ---\n{}",
                round + 1,
                gw.logs()
            ));
        }
    }
    let peak = watch.finish();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = gw.rss_kib();
    let hwm = gw.hwm_kib();
    eprintln!(
        "RSS: idle {:.1} MiB, peak under load {:.1} MiB, after load {:.1} MiB (VmHWM {:.1} MiB)",
        mib(idle).unwrap_or(0.0),
        peak as f64 / 1024.0,
        mib(after).unwrap_or(0.0),
        mib(hwm).unwrap_or(0.0)
    );
    results.memory = json!({
        "idle_kib": idle,
        "peak_under_load_kib": peak,
        "after_load_kib": after,
        "vm_hwm_kib": hwm,
    });
    results
        .gateway_log_problems
        .extend(log_problems(&gw.logs()));
    let status = gw.stop();
    results
        .gateway_exit
        .push(format!("10-tool gateway: {status:?}"));
    Ok(())
}

/// Phase 1b: a fresh 10-tool gateway (so earlier load does not blur the baseline) holding
/// N idle sessions, then one idle SSE stream per session.
async fn sse_gateway_phase(
    plan: &Plan,
    be: &EchoBackend,
    results: &mut Results,
) -> Result<(), String> {
    let echo = vec![("echo".to_string(), be.addr(ECHO))];
    let streams = plan
        .streams
        .min(procfs::nofile().saturating_sub(512) as usize);
    if streams < plan.streams {
        eprintln!(
            "RLIMIT_NOFILE allows only {streams} streams (asked for {})",
            plan.streams
        );
    }
    // Every stream holds a client connection: past the default cap the gateway would refuse
    // the rest with 503, so this gateway's cap is raised (and the run says so).
    let max_connections = (streams + SSE_SPARE_CONNECTIONS > DEFAULT_MAX_CONNECTIONS)
        .then_some(streams + SSE_SPARE_CONNECTIONS);
    let mut gw = GatewayProc::spawn(|port| {
        let y = gateway_yaml(port, &echo, PAGE_SIZE);
        match max_connections {
            Some(n) => y.replacen(
                "  grace_period: 1s\n",
                &format!("  grace_period: 1s\n  limits:\n    max_connections: {n}\n"),
                1,
            ),
            None => y,
        }
    })?;
    gw.wait_until(
        Duration::from_secs(30),
        Duration::from_millis(10),
        |s, b| s == 200 && scenarios::readyz_tools(b) == 10,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!(
        "fresh gateway pid {}: opening {streams} sessions, then one idle SSE stream each{}…",
        gw.pid,
        max_connections.map_or_else(String::new, |n| format!(
            " (server.limits.max_connections raised to {n}: the default {DEFAULT_MAX_CONNECTIONS} refuses {streams} streams)"
        ))
    );
    let mut sse = scenarios::sse_phase(&gw, streams).await;
    sse.max_connections = max_connections;
    eprintln!(
        "SSE: {} sessions (+{:.2} KiB each), {} streams open in {:.1} s (+{:.2} KiB each), idle CPU {:.2} %, errors {}",
        sse.sessions, sse.per_session_kib, sse.streams_open, sse.open_s, sse.per_stream_kib, sse.idle_cpu_pct, sse.errors
    );
    for e in &sse.error_samples {
        eprintln!("    error: {e}");
    }
    results.sse = Some(sse);
    if !gw.alive() {
        return Err(format!(
            "the gateway died during the SSE phase\n--- its log ---\n{}",
            gw.logs()
        ));
    }
    results
        .gateway_log_problems
        .extend(log_problems(&gw.logs()));
    let status = gw.stop();
    results
        .gateway_exit
        .push(format!("SSE gateway: {status:?}"));
    Ok(())
}

/// Phase 2: the 1,000-tool gateway: cached tools/list.
async fn big_catalog_phase(
    plan: &Plan,
    be: &EchoBackend,
    results: &mut Results,
) -> Result<(), String> {
    let big = vec![("big".to_string(), be.addr(BIG))];
    let mut gw = GatewayProc::spawn(|port| gateway_yaml(port, &big, PAGE_SIZE))?;
    gw.wait_until(
        Duration::from_secs(30),
        Duration::from_millis(10),
        |s, b| s == 200 && scenarios::readyz_tools(b) == 1_000,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = gw.rss_kib();
    let (status, list, list_bytes) = scenarios::mcp_once(&gw, LIST_BODY).await?;
    let listed = scenarios::all_tools(&list);
    if status != 200 || scenarios::backend_tools(&list) != 1_000 {
        return Err(format!(
            "tools/list of the 1,000-tool gateway: HTTP {status}, {listed} tools"
        ));
    }
    if let Some(m) = results.memory.as_object_mut() {
        m.insert("idle_1000_tools_kib".into(), json!(idle));
    }
    if let Some(s) = results.sanity.as_object_mut() {
        s.insert(
            "gateway_1000_tools".into(),
            json!({"tools": listed, "tools_list_bytes": list_bytes}),
        );
    }
    for round in 0..plan.rounds {
        list_round(plan, round, &gw, be, BIG, list_bytes, results).await;
    }
    if let Some(m) = results.memory.as_object_mut() {
        m.insert("after_list_load_1000_tools_kib".into(), json!(gw.rss_kib()));
    }
    results
        .gateway_log_problems
        .extend(log_problems(&gw.logs()));
    let status = gw.stop();
    results
        .gateway_exit
        .push(format!("1,000-tool gateway: {status:?}"));
    Ok(())
}

/// Phase 1c (issue 17 §2): a gateway in front of the native MCP echo server (`kind: mcp`),
/// beside direct MCP calls to the same server, in alternating order; each worker of either
/// path opens its MCP session first (untimed).
async fn native_phase(plan: &Plan, be: &EchoBackend, results: &mut Results) -> Result<(), String> {
    let server = be.addr(NATIVE);
    let mut gw = GatewayProc::spawn(|port| native_gateway_yaml(port, server))?;
    gw.wait_until(
        Duration::from_secs(30),
        Duration::from_millis(10),
        |s, b| s == 200 && scenarios::readyz_tools(b) == 1,
    )
    .await?;
    let (status, call, _) = scenarios::mcp_once(&gw, NATIVE_CALL_BODY).await?;
    if status != 200 || call["result"]["content"][0]["text"] != "hello" {
        return Err(format!(
            "native MCP tools/call through the gateway answered HTTP {status}: {call}"
        ));
    }
    let via = Target::Mcp {
        addr: gw.addr,
        body: NATIVE_CALL_BODY.to_vec(),
        credential: None,
    };
    let direct = Target::Mcp {
        addr: server,
        body: NATIVE_DIRECT_BODY.to_vec(),
        credential: None,
    };
    let expect = Expect {
        status: 200,
        prefix: RESULT_PREFIX.to_vec(),
        len: None,
        forbid: Some(br#""isError":true"#.to_vec()),
    };
    for round in 0..plan.rounds {
        for (i, &c) in plan.call_concurrency.iter().enumerate() {
            let spec = plan.cell(c, plan.call_cell_s);
            let gateway_first = (round + i) % 2 == 1;
            for leg in 0..2 {
                let through = (leg == 0) == gateway_first;
                let (target, system, pid) = if through {
                    (&via, "gateway", Some(gw.pid))
                } else {
                    (&direct, "direct", None)
                };
                let meters = Meters {
                    gateway_pid: pid,
                    backend: be,
                };
                let o = cells::run(target, &expect, spec, &meters).await;
                progress(
                    &format!("round {} {NATIVE_SCENARIO} C={c} {system}", round + 1),
                    &o,
                );
                results.series(NATIVE_SCENARIO, c, system).rounds.push(o);
            }
        }
        if !gw.alive() {
            return Err(format!(
                "the native MCP gateway died during round {}\n--- its log ---\n{}",
                round + 1,
                gw.logs()
            ));
        }
    }
    results
        .gateway_log_problems
        .extend(log_problems(&gw.logs()));
    let status = gw.stop();
    results
        .gateway_exit
        .push(format!("native MCP gateway: {status:?}"));
    Ok(())
}

/// Phase 3: spawn → merged catalog of 100 backends × 50 tools.
async fn refresh_phase(plan: &Plan, be: &EchoBackend, results: &mut Results) -> Result<(), String> {
    let backends: Vec<(String, std::net::SocketAddr)> = (0..REFRESH_BACKENDS)
        .map(|i| (format!("r{i:03}"), be.addr(REFRESH_FIRST + i)))
        .collect();
    let expect = (REFRESH_BACKENDS * REFRESH_TOOLS) as u64;
    for round in 0..plan.refresh_rounds {
        let r =
            scenarios::refresh_round(|port| gateway_yaml(port, &backends, 10_000), expect).await?;
        eprintln!(
            "  refresh round {}: listening after {:.1} ms, /readyz ready with {} tools after {:.1} ms, tools/list complete after {} ms ({} short lists after ready), CPU {:.0} ms, first full tools/list {} tools in {:.1} ms, RSS {:.1} MiB",
            round + 1,
            r.listening_ms,
            r.tools,
            r.ready_ms,
            r.catalog_ms.map_or_else(|| "—".into(), |v| format!("{v:.1}")),
            r.short_lists_after_ready,
            r.cpu_to_catalog_ms,
            r.listed.unwrap_or(0),
            r.first_list_us.unwrap_or(0.0) / 1000.0,
            r.rss_ready_kib as f64 / 1024.0
        );
        results.refresh.push(r);
    }
    Ok(())
}

/// How busy the machine is (all CPUs, %) over one second, before anything of ours runs:
/// other processes on a shared machine make every figure noisier.
async fn background_busy() -> f64 {
    let a = procfs::machine_cpu();
    tokio::time::sleep(Duration::from_secs(1)).await;
    match (a, procfs::machine_cpu()) {
        (Some((b0, t0)), Some((b1, t1))) => {
            b1.saturating_sub(b0) as f64 / t1.saturating_sub(t0).max(1) as f64 * 100.0
        }
        _ => 0.0,
    }
}

fn targets(results: &Results) -> Vec<report::Target> {
    use report::Target as T;
    let call = |c: usize| {
        results
            .pairs
            .iter()
            .find(|p| p.scenario == "tools/call" && p.concurrency == c)
    };
    let list1000 = results
        .series
        .iter()
        .filter(|s| s.scenario == "tools/list 1000 tools" && s.system == "gateway")
        .map(|s| s.median().rps)
        .fold(None, |best: Option<f64>, v| {
            Some(best.map_or(v, |b| b.max(v)))
        });
    let init_p50 = report::median(
        results
            .initialize
            .iter()
            .map(|i| i.initialize.p50_us)
            .collect(),
    );
    let mem = &results.memory;
    let kib_to_mib = |k: &Value| k.as_f64().map(|k| k / 1024.0);
    vec![
        T::at_most(
            "gateway CPU per proxied tools/call, C=32",
            30.0,
            "µs",
            call(32).and_then(|p| p.gateway_cpu_us),
        ),
        T::at_most(
            "gateway CPU per native MCP tools/call, C=32",
            30.0,
            "µs",
            results
                .native_pairs
                .iter()
                .find(|p| p.concurrency == 32)
                .and_then(|p| p.gateway_cpu_us),
        ),
        T::at_most(
            "added latency p50, C=1",
            60.0,
            "µs",
            call(1).map(|p| p.added_p50_us),
        ),
        T::at_most(
            "added latency p99, C=1",
            150.0,
            "µs",
            call(1).map(|p| p.added_p99_us),
        ),
        T::at_least(
            "throughput gateway/direct, C=32",
            0.40,
            "×",
            call(32).map(|p| p.rps_ratio),
        ),
        T::at_most("initialize round trip p50", 50.0, "µs", init_p50),
        T::at_least(
            "tools/list of 1,000 tools from cache",
            20_000.0,
            "req/s",
            list1000,
        ),
        T::at_most("idle RSS", 15.0, "MiB", kib_to_mib(&mem["idle_kib"])),
        T::at_most(
            "RSS after load",
            25.0,
            "MiB",
            kib_to_mib(&mem["after_load_kib"]),
        ),
        T::at_most(
            "RSS per idle SSE stream",
            20.0,
            "KiB",
            results.sse.as_ref().map(|s| s.per_stream_kib),
        ),
        report::Target {
            name: "JWT-authenticated tools/call vs dev mode".into(),
            goal: "measure (no target)".into(),
            measured: jwt_measured(results),
            met: None,
        },
    ]
}

fn out_path() -> PathBuf {
    if let Ok(p) = std::env::var("LOAD_OUT") {
        return PathBuf::from(p);
    }
    if let Ok(t) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("load-results.json");
    }
    // <target>/release/deps/load-<hash> → <target>
    std::env::current_exe()
        .ok()
        .and_then(|e| {
            e.parent()?
                .parent()?
                .parent()
                .map(|p| p.join("load-results.json"))
        })
        .unwrap_or_else(|| PathBuf::from("load-results.json"))
}

fn print_summary(plan: &Plan, results: &Results, targets: &[report::Target]) {
    println!(
        "\n### Load harness results ({} rounds{})",
        plan.rounds,
        if plan.quick { ", QUICK" } else { "" }
    );
    for scenario in [
        "tools/call",
        NATIVE_SCENARIO,
        "tools/list 10 tools",
        "tools/list 1000 tools",
    ] {
        report::print_cells(&results.series, scenario);
    }
    report::print_pairs(&results.pairs);
    report::print_pairs(&results.native_pairs);
    println!("\n#### initialize (fresh session, C=1; each followed by initialized + DELETE)\n");
    println!("| round | sessions | init p50 µs | init p99 µs | sessions/s | gateway CPU µs/session | errors |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (i, o) in results.initialize.iter().enumerate() {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {} | {} |",
            i + 1,
            o.sessions,
            o.initialize.p50_us,
            o.initialize.p99_us,
            o.sessions_per_s,
            o.gateway_cpu_us_per_session
                .map_or_else(|| "—".into(), |v| format!("{v:.0}")),
            o.errors
        );
    }
    let m = &results.memory;
    let f = |k: &str| {
        m[k].as_f64()
            .map_or_else(|| "—".into(), |v| format!("{:.1}", v / 1024.0))
    };
    println!("\n#### Gateway memory (VmRSS, MiB)\n");
    println!("| idle (10 tools) | peak under load | after load | VmHWM | idle (1,000 tools) |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {} |",
        f("idle_kib"),
        f("peak_under_load_kib"),
        f("after_load_kib"),
        f("vm_hwm_kib"),
        f("idle_1000_tools_kib")
    );
    if let Some(s) = &results.sse {
        println!("\n#### Idle sessions and SSE streams\n");
        println!("| sessions | streams open | RSS before | + sessions | + streams | after close | KiB/session | KiB/stream | idle CPU % | errors |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.2} | {:.2} | {:.2} | {} |",
            s.sessions,
            s.streams_open,
            s.rss_before_kib as f64 / 1024.0,
            s.rss_sessions_kib as f64 / 1024.0,
            s.rss_streams_kib as f64 / 1024.0,
            s.rss_closed_kib as f64 / 1024.0,
            s.per_session_kib,
            s.per_stream_kib,
            s.idle_cpu_pct,
            s.errors
        );
        if let Some(n) = s.max_connections {
            println!("\n(this gateway: `server.limits.max_connections: {n}`; the default {DEFAULT_MAX_CONNECTIONS} would refuse the streams past it)");
        }
    }
    println!("\n#### Catalog refresh: {REFRESH_BACKENDS} backends × {REFRESH_TOOLS} tools\n");
    println!("| round | listening ms | /readyz ready ms | tools (readyz) | tools/list complete ms | short lists after ready | gateway CPU to complete ms | RSS MiB | first full tools/list (cold) ms | listed | bytes |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in results.refresh.iter().enumerate() {
        println!(
            "| {} | {:.1} | {:.1} | {} | {} | {} | {:.0} | {:.1} | {} | {} | {} |",
            i + 1,
            r.listening_ms,
            r.ready_ms,
            r.tools,
            r.catalog_ms
                .map_or_else(|| "—".into(), |v| format!("{v:.1}")),
            r.short_lists_after_ready,
            r.cpu_to_catalog_ms,
            r.rss_ready_kib as f64 / 1024.0,
            r.first_list_us
                .map_or_else(|| "—".into(), |v| format!("{:.1}", v / 1000.0)),
            r.listed.map_or_else(|| "—".into(), |v| v.to_string()),
            r.list_bytes.map_or_else(|| "—".into(), |v| v.to_string())
        );
    }
    print_jwt(results);
    observe::print_observe(results);
    scale::print_scale(results);
    report::print_targets(targets);
    if !results.gateway_log_problems.is_empty() {
        println!("\n#### Gateway log lines worth a look\n");
        for l in &results.gateway_log_problems {
            println!("    {l}");
        }
    }
}

async fn run(plan: &Plan) -> Result<(), String> {
    let machine = procfs::machine();
    let nofile = procfs::raise_nofile(65_536);
    eprintln!(
        "load harness: {} CPUs ({}), {} MiB, kernel {}; RLIMIT_NOFILE {nofile}; gateway {}",
        machine.cpus,
        machine.cpu_model,
        machine.mem_mib,
        machine.kernel,
        gateway::binary()
    );
    let started = Instant::now();
    let mut specs = vec![
        ListenerSpec {
            id: "echo".into(),
            tools: 10,
            kind: Kind::Contract,
        },
        ListenerSpec {
            id: "big".into(),
            tools: 1_000,
            kind: Kind::Contract,
        },
    ];
    specs.extend((0..REFRESH_BACKENDS).map(|i| ListenerSpec {
        id: format!("r{i:03}"),
        tools: REFRESH_TOOLS,
        kind: Kind::Contract,
    }));
    specs.push(ListenerSpec {
        id: "mcp".into(),
        tools: 1,
        kind: Kind::Mcp,
    });
    if plan.runs("scale") {
        specs.extend(plan.scale.listeners());
    }
    let be = EchoBackend::start(&specs).map_err(|e| format!("echo backend: {e}"))?;
    let mut results = Results::default();

    let background = background_busy().await;
    if background > 15.0 {
        eprintln!(
            "WARNING: the machine was {background:.0} % busy before the run started (other processes); figures will be noisy"
        );
    }
    if plan.runs("calls") {
        main_gateway_phase(plan, &be, &mut results).await?;
    }
    if plan.runs("native") {
        native_phase(plan, &be, &mut results).await?;
    }
    if plan.runs("jwt") {
        jwt_phase(plan, &be, &mut results).await?;
    }
    if plan.runs("observe") {
        observe::observe_phase(plan, &be, &mut results).await?;
    }
    if plan.runs("sse") {
        sse_gateway_phase(plan, &be, &mut results).await?;
    }
    if plan.runs("big") {
        big_catalog_phase(plan, &be, &mut results).await?;
    }
    if plan.runs("refresh") {
        refresh_phase(plan, &be, &mut results).await?;
    }
    if plan.runs("scale") {
        scale::scale_phase(plan, &plan.scale, &be, SCALE_FIRST, &mut results).await?;
    }
    let background_after = background_busy().await;

    results.pairs = report::pairs(&results.series, "tools/call", "gateway", "direct");
    results.jwt_pairs = report::pairs(&results.series, JWT_SCENARIO, JWT, DEV);
    results.native_pairs = report::pairs(&results.series, NATIVE_SCENARIO, "gateway", "direct");
    let targets = targets(&results);
    print_summary(plan, &results, &targets);

    let binary_bytes = std::fs::metadata(gateway::binary()).map(|m| m.len()).ok();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let doc = json!({
        "harness": "cargo bench --bench load",
        "when": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "commit": commit,
        "machine": machine,
        "rlimit_nofile": nofile,
        "gateway_binary": gateway::binary(),
        "gateway_binary_bytes": binary_bytes,
        "plan": plan,
        "background_busy_pct_before": background,
        "background_busy_pct_after": background_after,
        "duration_s": started.elapsed().as_secs_f64(),
        "results": results,
        "targets": targets,
        "jwt": jwt_json(&results),
    });
    let path = out_path();
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    eprintln!(
        "\nwrote {} ({:.0} s in all)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    // `cargo test --benches` runs this without `--bench`: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        return match selftest() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("load harness self-test failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = selftest() {
        eprintln!("load harness self-test failed: {e}");
        return ExitCode::FAILURE;
    }
    let plan = Plan::from_env();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nload harness stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

fn selftest() -> Result<(), String> {
    client::selftest()?;
    cells::selftest()?;
    procfs::selftest()
}
