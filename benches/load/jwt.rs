//! The JWT cells: `tools/call` through a gateway in `auth.mode: oauth`, authenticated with a
//! locally signed ES256 token vs the dev bypass, same cells and alternation as the other
//! tools/call cells.
//!
//! One token is reused by every worker, as a real client reuses its access token: after its
//! first validation the gateway accepts it from the validated-token cache (one SHA-256 and a
//! lookup), so these cells measure the steady state of an authenticated client, not a
//! signature check per call (that one is `cargo bench --bench jwt`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::backend::EchoBackend;
use crate::cells::{self, Expect, Meters, Target};
use crate::client::{self, Conn};
use crate::gateway::GatewayProc;
use crate::issuer::Issuer;
use crate::{
    log_problems, progress, report, scenarios, Plan, Results, CALL_BODY, ECHO, PAGE_SIZE,
    RESULT_PREFIX, SECRET,
};

/// The series name of these cells.
pub const JWT_SCENARIO: &str = "tools/call oauth";
/// The system measured with `Authorization: Bearer`.
pub const JWT: &str = "jwt";
/// The system measured with `X-Dev-Mode`.
pub const DEV: &str = "dev mode";
/// Concurrencies of the JWT cells.
const CONCURRENCY: [usize; 2] = [1, 32];
/// The dev bypass secret.
const BYPASS: &str = "load-harness-dev-bypass-token";
/// The scope both credentials grant (the echo tool itself is unscoped).
const SCOPE: &str = "mcp:echo";

/// The YAML of an `auth.mode: oauth` gateway with `issuer` and a dev bypass, in front of the
/// echo listener; everything else as `gateway_yaml`.
fn oauth_yaml(port: u16, issuer: &Issuer, echo: std::net::SocketAddr) -> String {
    format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 1s\n\
         auth:\n  mode: oauth\n  oauth:\n    issuer: \"{}\"\n    jwks_url: \"{}\"\n    algorithms: [ES256]\n  \
         dev_bypass:\n    token: \"{BYPASS}\"\n    scopes: [\"{SCOPE}\"]\n\
         sessions:\n  secret: \"{SECRET}\"\n\
         catalog:\n  refresh: 1h\n  page_size: {PAGE_SIZE}\n\
         rate_limits:\n  enabled: false\n\
         backends:\n  - id: echo\n    url: http://{echo}\n",
        issuer.issuer, issuer.jwks_url
    )
}

/// The HTTP status of an `initialize` sent with `credential`.
async fn initialize_status(gw: &GatewayProc, credential: (&str, &str)) -> Result<u16, String> {
    let mut conn = Conn::connect(gw.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let body = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"cortex-load","version":"1"}}}"#;
    let req = client::request(
        "POST",
        &gw.host(),
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            credential,
        ],
        body,
    );
    let resp = conn
        .request(&req)
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    Ok(resp.status)
}

/// Checks that the gateway really validates: the token and the bypass are accepted, a token
/// for another audience and a wrong bypass are refused with 401.
async fn check_auth(gw: &GatewayProc, good: &str, wrong_aud: &str) -> Result<Value, String> {
    let bearer = |t: &str| format!("Bearer {t}");
    let cases = [
        ("jwt", ("Authorization", bearer(good)), 200),
        (
            "jwt for another audience",
            ("Authorization", bearer(wrong_aud)),
            401,
        ),
        ("dev bypass", ("X-Dev-Mode", BYPASS.to_string()), 200),
        (
            "wrong dev bypass",
            ("X-Dev-Mode", "not-the-bypass".to_string()),
            401,
        ),
    ];
    let mut seen = serde_json::Map::new();
    for (what, (name, value), want) in cases {
        let status = initialize_status(gw, (name, &value)).await?;
        if status != want {
            return Err(format!(
                "initialize with {what}: HTTP {status}, expected {want}\n--- gateway log ---\n{}",
                gw.logs()
            ));
        }
        seen.insert(what.into(), json!(status));
    }
    Ok(Value::Object(seen))
}

/// Phase 1c: JWT vs dev mode on a fresh `auth.mode: oauth` gateway.
pub async fn jwt_phase(plan: &Plan, be: &EchoBackend, results: &mut Results) -> Result<(), String> {
    let issuer = Issuer::start()?;
    let echo = be.addr(ECHO);
    let mut gw = GatewayProc::spawn(|port| oauth_yaml(port, &issuer, echo))?;
    // Ready = the catalog is there AND the keys are known (with a dev bypass the gateway
    // answers 200 even before, so the auth block is checked explicitly).
    let (_, ready) = gw
        .wait_until(
            Duration::from_secs(30),
            Duration::from_millis(10),
            |s, b| {
                s == 200
                    && scenarios::readyz_tools(b) == 10
                    && b["auth"]["ready"] == true
                    && b["auth"]["keys"].as_u64().unwrap_or(0) >= 1
            },
        )
        .await?;
    let audience = format!("http://{}/mcp", gw.addr);
    let token = issuer.token(&audience, "load-user", SCOPE)?;
    let wrong = issuer.token("http://127.0.0.1:1/mcp", "load-user", SCOPE)?;
    let checks = check_auth(&gw, &token, &wrong).await?;
    eprintln!(
        "oauth gateway pid {} on {}: keys known ({}), issuer {}",
        gw.pid, gw.addr, ready["auth"], issuer.issuer
    );
    if !results.sanity.is_object() {
        results.sanity = json!({});
    }
    if let Some(s) = results.sanity.as_object_mut() {
        s.insert(
            "gateway_oauth".into(),
            json!({"readyz_auth": ready["auth"], "initialize": checks, "token_bytes": token.len()}),
        );
    }
    let target = |credential: (&str, String)| Target::Mcp {
        addr: gw.addr,
        body: CALL_BODY.to_vec(),
        credential: Some((credential.0.to_string(), credential.1)),
    };
    let jwt = target(("Authorization", format!("Bearer {token}")));
    let dev = target(("X-Dev-Mode", BYPASS.to_string()));
    let expect = Expect {
        status: 200,
        prefix: RESULT_PREFIX.to_vec(),
        len: None,
        forbid: Some(br#""isError":true"#.to_vec()),
    };
    let meters = Meters {
        gateway_pid: Some(gw.pid),
        backend: be,
    };
    for round in 0..plan.rounds {
        for (i, &c) in CONCURRENCY.iter().enumerate() {
            let spec = plan.cell(c, plan.call_cell_s);
            let jwt_first = (round + i) % 2 == 0;
            for leg in 0..2 {
                let (system, t) = if (leg == 0) == jwt_first {
                    (JWT, &jwt)
                } else {
                    (DEV, &dev)
                };
                let o = cells::run(t, &expect, spec, &meters).await;
                progress(
                    &format!("round {} tools/call C={c} {system}", round + 1),
                    &o,
                );
                results.series(JWT_SCENARIO, c, system).rounds.push(o);
            }
        }
        if !gw.alive() {
            return Err(format!(
                "the oauth gateway died during round {}\n--- its log ---\n{}",
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
        .push(format!("oauth gateway: {status:?}"));
    Ok(())
}

/// Medians of one JWT-phase series.
fn median(results: &Results, c: usize, system: &str) -> Option<report::Median> {
    results
        .series
        .iter()
        .find(|s| s.scenario == JWT_SCENARIO && s.concurrency == c && s.system == system)
        .map(report::Series::median)
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{x:.1}"))
}

/// The JWT table of the summary.
pub fn print_jwt(results: &Results) {
    println!("\n#### JWT-authenticated calls vs dev mode (tools/call, medians over rounds)\n");
    if results.jwt_pairs.is_empty() {
        println!("not run (LOAD_PHASES without `jwt`)");
        return;
    }
    println!("| C | credential | req/s | p50 µs | p99 µs | errors | gateway CPU µs/call |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for c in CONCURRENCY {
        for system in [JWT, DEV] {
            if let Some(m) = median(results, c, system) {
                println!(
                    "| {c} | {system} | {:.0} | {:.1} | {:.1} | {} | {} |",
                    m.rps,
                    m.p50_us,
                    m.p99_us,
                    m.errors + m.setup_errors,
                    opt(m.gateway_cpu_us)
                );
            }
        }
    }
    println!("\n| C | req/s ratio jwt/dev (range) | jwt − dev p50 µs | jwt − dev p99 µs |");
    println!("|---:|---|---:|---:|");
    for p in &results.jwt_pairs {
        println!(
            "| {} | {:.3} ({:.3}–{:.3}) | {:.1} | {:.1} |",
            p.concurrency,
            p.rps_ratio,
            p.rps_ratio_min,
            p.rps_ratio_max,
            p.added_p50_us,
            p.added_p99_us
        );
    }
}

/// One line for the targets table.
pub fn jwt_measured(results: &Results) -> String {
    let cell = |c: usize| {
        let (j, d) = (median(results, c, JWT)?, median(results, c, DEV)?);
        Some(format!(
            "C={c}: jwt {:.0} req/s p50 {:.1} µs CPU {} µs vs dev {:.0} req/s p50 {:.1} µs CPU {} µs",
            j.rps,
            j.p50_us,
            opt(j.gateway_cpu_us),
            d.rps,
            d.p50_us,
            opt(d.gateway_cpu_us)
        ))
    };
    let parts: Vec<String> = CONCURRENCY.iter().filter_map(|&c| cell(c)).collect();
    if parts.is_empty() {
        "not run".into()
    } else {
        parts.join("; ")
    }
}

/// The `"jwt"` object of the JSON results.
pub fn jwt_json(results: &Results) -> Value {
    if results.jwt_pairs.is_empty() {
        return json!({"status": "not run"});
    }
    let cells: Vec<Value> = CONCURRENCY
        .iter()
        .flat_map(|&c| [(c, JWT), (c, DEV)])
        .filter_map(|(c, system)| {
            let m = median(results, c, system)?;
            Some(json!({"concurrency": c, "system": system, "median": m}))
        })
        .collect();
    json!({
        "status": "measured",
        "token": "ES256, one token reused by every worker (validated-token cache after the first call)",
        "cells": cells,
        "pairs": results.jwt_pairs,
    })
}
