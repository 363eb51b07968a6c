//! The scenarios that are not plain closed-loop cells: session creation, idle SSE streams,
//! the 100-backend catalog refresh, and the one-off sanity checks before measuring.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::cells::{self, open_session, Summary, PROTOCOL};
use crate::client::{self, Conn};
use crate::gateway::GatewayProc;
use crate::procfs;

/// A JSON-RPC POST to the gateway's MCP endpoint with a session.
pub fn mcp_post(host: &str, session: &str, body: &[u8]) -> Vec<u8> {
    client::request(
        "POST",
        host,
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", PROTOCOL),
            ("Mcp-Session-Id", session),
        ],
        body,
    )
}

/// One MCP request on a fresh session, parsed as JSON (for the sanity checks).
pub async fn mcp_once(gw: &GatewayProc, body: &[u8]) -> Result<(u16, Value, usize), String> {
    let host = gw.host();
    let mut conn = Conn::connect(gw.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let sid = open_session(&mut conn, &host).await?;
    let resp = conn
        .request(&mcp_post(&host, &sid, body))
        .await
        .map_err(|e| format!("request: {e}"))?;
    let json = serde_json::from_slice(resp.body).map_err(|e| {
        format!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)])
        )
    })?;
    Ok((resp.status, json, resp.body.len()))
}

/// One plain request, parsed as JSON.
pub async fn plain_once(addr: SocketAddr, request: &[u8]) -> Result<(u16, Value, usize), String> {
    let mut conn = Conn::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let resp = conn
        .request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let json = serde_json::from_slice(resp.body).map_err(|e| format!("not JSON: {e}"))?;
    Ok((resp.status, json, resp.body.len()))
}

/// Session creation: fresh `initialize` round trips on one keep-alive connection (C = 1),
/// each followed (untimed) by `notifications/initialized` and `DELETE`, as the peer
/// benchmark did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InitOutcome {
    /// Sessions created (and deleted).
    pub sessions: u64,
    /// Failures.
    pub errors: u64,
    /// First distinct errors.
    pub error_samples: Vec<String>,
    /// Latency of the `initialize` round trip alone.
    pub initialize: Summary,
    /// Full cycles (initialize + initialized + DELETE) per second.
    pub sessions_per_s: f64,
    /// Gateway CPU per full cycle, µs.
    pub gateway_cpu_us_per_session: Option<f64>,
}

/// Runs the session-creation cell.
pub async fn initialize_cell(
    gw: &GatewayProc,
    max: u64,
    duration: Duration,
    warmup: u64,
) -> InitOutcome {
    let mut out = InitOutcome::default();
    let host = gw.host();
    let init = cells::initialize_request(&host);
    let mut conn = match Conn::connect(gw.addr).await {
        Ok(c) => c,
        Err(e) => {
            out.errors = 1;
            out.error_samples.push(format!("connect: {e}"));
            return out;
        }
    };
    let note = |out: &mut InitOutcome, e: String| {
        out.errors += 1;
        if out.error_samples.len() < 6 && !out.error_samples.contains(&e) {
            out.error_samples.push(e);
        }
    };
    let mut lat = Vec::with_capacity(max as usize);
    let mut cpu0 = None;
    let mut t0 = Instant::now();
    let mut i = 0u64;
    while i < warmup + max {
        if i == warmup {
            cpu0 = gw.cpu_ticks();
            t0 = Instant::now();
        }
        if i >= warmup && t0.elapsed() >= duration {
            break;
        }
        i += 1;
        let start = Instant::now();
        let sid = match conn.request(&init).await {
            Ok(r) if r.status == 200 => match r.session_id {
                Some(s) => s.to_string(),
                None => {
                    note(&mut out, "initialize: no Mcp-Session-Id".into());
                    continue;
                }
            },
            Ok(r) => {
                note(&mut out, format!("initialize: HTTP {}", r.status));
                continue;
            }
            Err(e) => {
                note(&mut out, format!("initialize: {e}"));
                break;
            }
        };
        let took = start.elapsed();
        let initialized = mcp_post(
            &host,
            &sid,
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        match conn.request(&initialized).await {
            Ok(r) if r.status == 202 => {}
            Ok(r) => note(
                &mut out,
                format!("notifications/initialized: HTTP {}", r.status),
            ),
            Err(e) => {
                note(&mut out, format!("notifications/initialized: {e}"));
                break;
            }
        }
        let delete = client::request(
            "DELETE",
            &host,
            "/mcp",
            &[
                ("Mcp-Session-Id", sid.as_str()),
                ("MCP-Protocol-Version", PROTOCOL),
            ],
            b"",
        );
        match conn.request(&delete).await {
            Ok(r) if r.status == 204 => {}
            Ok(r) => note(&mut out, format!("DELETE: HTTP {}", r.status)),
            Err(e) => {
                note(&mut out, format!("DELETE: {e}"));
                break;
            }
        }
        if i > warmup {
            lat.push(took.as_nanos().min(u128::from(u32::MAX)) as u32);
            out.sessions += 1;
        }
    }
    let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
    let cpu1 = gw.cpu_ticks();
    out.initialize = Summary::of(&mut lat);
    out.sessions_per_s = out.sessions as f64 / elapsed;
    out.gateway_cpu_us_per_session = cpu0.zip(cpu1).and_then(|(a, b)| {
        (out.sessions > 0)
            .then(|| b.saturating_sub(a) as f64 / procfs::clk_tck() * 1e6 / out.sessions as f64)
    });
    out
}

/// Memory of idle sessions and idle SSE streams.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SseOutcome {
    /// Streams asked for.
    pub requested: usize,
    /// Sessions created.
    pub sessions: usize,
    /// Streams opened (200 and priming event received).
    pub streams_open: usize,
    /// Failures (sessions or streams).
    pub errors: u64,
    /// First distinct errors.
    pub error_samples: Vec<String>,
    /// RSS before, KiB.
    pub rss_before_kib: u64,
    /// RSS with the sessions, KiB.
    pub rss_sessions_kib: u64,
    /// RSS with the sessions and the open streams, KiB.
    pub rss_streams_kib: u64,
    /// RSS after the streams were closed, KiB.
    pub rss_closed_kib: u64,
    /// Per idle session, KiB.
    pub per_session_kib: f64,
    /// Per idle open stream, KiB.
    pub per_stream_kib: f64,
    /// Time to open all streams, s.
    pub open_s: f64,
    /// Gateway CPU while holding the streams idle, % of one core.
    pub idle_cpu_pct: f64,
    /// `server.limits.max_connections` when the harness raised it above the default for
    /// the streams.
    pub max_connections: Option<usize>,
}

/// Creates `n` sessions over 8 connections; returns their ids.
async fn create_sessions(gw: &GatewayProc, n: usize, out: &mut SseOutcome) -> Vec<String> {
    let workers = 8usize;
    let mut set = JoinSet::new();
    for w in 0..workers {
        let count = n / workers + usize::from(w < n % workers);
        let addr = gw.addr;
        let host = gw.host();
        set.spawn(async move {
            let mut ids = Vec::with_capacity(count);
            let mut errors = Vec::new();
            let mut conn = match Conn::connect(addr).await {
                Ok(c) => c,
                Err(e) => return (ids, vec![format!("connect: {e}")]),
            };
            for _ in 0..count {
                match open_session(&mut conn, &host).await {
                    Ok(id) => ids.push(id),
                    Err(e) => {
                        errors.push(e);
                        match Conn::connect(addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            (ids, errors)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(Ok((ids, errors))) = set.join_next().await {
        all.extend(ids);
        note_all(out, errors);
    }
    all
}

fn note_all(out: &mut SseOutcome, errors: Vec<String>) {
    for e in errors {
        out.errors += 1;
        if out.error_samples.len() < 6 && !out.error_samples.contains(&e) {
            out.error_samples.push(e);
        }
    }
}

/// Opens one idle stream for session `sid`.
async fn open_stream(addr: SocketAddr, host: String, sid: String) -> Result<Conn, String> {
    let mut conn = Conn::connect(addr)
        .await
        .map_err(|e| format!("stream connect: {e}"))?;
    let get = client::request(
        "GET",
        &host,
        "/mcp",
        &[
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", sid.as_str()),
            ("MCP-Protocol-Version", PROTOCOL),
        ],
        b"",
    );
    match conn.open_stream(&get).await {
        Ok(200) => Ok(conn),
        Ok(status) => Err(format!("stream GET: HTTP {status}")),
        Err(e) => Err(format!("stream GET: {e}")),
    }
}

/// Opens `n` sessions and one idle GET stream on each, measuring RSS at each step.
pub async fn sse_phase(gw: &GatewayProc, n: usize) -> SseOutcome {
    let mut out = SseOutcome {
        requested: n,
        rss_before_kib: gw.rss_kib().unwrap_or(0),
        ..SseOutcome::default()
    };
    let ids = create_sessions(gw, n, &mut out).await;
    out.sessions = ids.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    out.rss_sessions_kib = gw.rss_kib().unwrap_or(0);

    let started = Instant::now();
    let mut streams: Vec<Conn> = Vec::with_capacity(ids.len());
    for batch in ids.chunks(256) {
        let mut set = JoinSet::new();
        for sid in batch {
            set.spawn(open_stream(gw.addr, gw.host(), sid.clone()));
        }
        let mut errors = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(conn)) => streams.push(conn),
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(format!("task: {e}")),
            }
        }
        note_all(&mut out, errors);
    }
    out.open_s = started.elapsed().as_secs_f64();
    out.streams_open = streams.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    out.rss_streams_kib = gw.rss_kib().unwrap_or(0);
    let cpu0 = gw.cpu_ticks();
    let idle = Duration::from_secs(3);
    tokio::time::sleep(idle).await;
    if let (Some(a), Some(b)) = (cpu0, gw.cpu_ticks()) {
        out.idle_cpu_pct =
            b.saturating_sub(a) as f64 / procfs::clk_tck() / idle.as_secs_f64() * 100.0;
    }
    drop(streams);
    tokio::time::sleep(Duration::from_secs(1)).await;
    out.rss_closed_kib = gw.rss_kib().unwrap_or(0);
    if out.sessions > 0 {
        out.per_session_kib =
            out.rss_sessions_kib.saturating_sub(out.rss_before_kib) as f64 / out.sessions as f64;
    }
    if out.streams_open > 0 {
        out.per_stream_kib = out.rss_streams_kib.saturating_sub(out.rss_sessions_kib) as f64
            / out.streams_open as f64;
    }
    out
}

/// One catalog refresh across many backends.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefreshRound {
    /// Spawn → first HTTP answer (process up, listening), ms.
    pub listening_ms: f64,
    /// Spawn → `/readyz` 200 with every backend's tools counted, ms.
    pub ready_ms: f64,
    /// Tools counted by `/readyz` then.
    pub tools: u64,
    /// Spawn → the first `tools/list` that lists every tool (the merged catalog is served), ms.
    pub catalog_ms: Option<f64>,
    /// `tools/list` answers with fewer tools seen after `/readyz` said ready.
    pub short_lists_after_ready: u64,
    /// Gateway CPU from spawn to the complete catalog, ms.
    pub cpu_to_catalog_ms: f64,
    /// RSS then, KiB.
    pub rss_ready_kib: u64,
    /// That first complete `tools/list` (cold: filter + serialize + send), µs.
    pub first_list_us: Option<f64>,
    /// Tools in it.
    pub listed: Option<u64>,
    /// Its size, bytes.
    pub list_bytes: Option<usize>,
}

/// How many tools of a `tools/list` result come from the generated backends (exposed as
/// `<backend>_echo` or `<backend>_op_<n>`); the gateway's own builtin tools are not counted.
pub fn backend_tools(list: &Value) -> u64 {
    list["result"]["tools"].as_array().map_or(0, |tools| {
        tools
            .iter()
            .filter_map(|t| t["name"].as_str())
            .filter(|n| n.ends_with("_echo") || n.contains("_op_"))
            .count() as u64
    })
}

/// All tools of a `tools/list` result (backend and builtin).
pub fn all_tools(list: &Value) -> u64 {
    list["result"]["tools"]
        .as_array()
        .map_or(0, |a| a.len() as u64)
}

/// Sum of `backends[].tools` in a `/readyz` body.
pub fn readyz_tools(body: &Value) -> u64 {
    body["backends"].as_array().map_or(0, |b| {
        b.iter().map(|x| x["tools"].as_u64().unwrap_or(0)).sum()
    })
}

/// Spawns a gateway with `config` and times it to `/readyz` and to a `tools/list` that
/// lists all `expect_tools` tools.
pub async fn refresh_round(
    config: impl Fn(u16) -> String,
    expect_tools: u64,
) -> Result<RefreshRound, String> {
    let mut gw = GatewayProc::spawn(config)?;
    let (listening, _) = gw
        .wait_until(Duration::from_secs(30), Duration::from_millis(2), |_, _| {
            true
        })
        .await?;
    let (ready, body) = gw
        .wait_until(Duration::from_secs(60), Duration::from_millis(2), |s, b| {
            s == 200 && readyz_tools(b) == expect_tools
        })
        .await?;
    let mut round = RefreshRound {
        listening_ms: listening.as_secs_f64() * 1000.0,
        ready_ms: ready.as_secs_f64() * 1000.0,
        tools: readyz_tools(&body),
        ..RefreshRound::default()
    };
    let host = gw.host();
    let mut conn = Conn::connect(gw.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let sid = open_session(&mut conn, &host).await?;
    let req = mcp_post(
        &host,
        &sid,
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let t = Instant::now();
        let resp = conn
            .request(&req)
            .await
            .map_err(|e| format!("tools/list: {e}"))?;
        let took = t.elapsed();
        let json = serde_json::from_slice::<Value>(resp.body).unwrap_or(Value::Null);
        if backend_tools(&json) == expect_tools {
            let listed = Some(all_tools(&json));
            round.catalog_ms = Some(gw.spawned.elapsed().as_secs_f64() * 1000.0);
            round.first_list_us = Some(took.as_secs_f64() * 1e6);
            round.listed = listed;
            round.list_bytes = Some(resp.body.len());
            break;
        }
        round.short_lists_after_ready += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    round.cpu_to_catalog_ms = gw.cpu_ticks().unwrap_or(0) as f64 / procfs::clk_tck() * 1000.0;
    round.rss_ready_kib = gw.rss_kib().unwrap_or(0);
    gw.stop();
    Ok(round)
}
