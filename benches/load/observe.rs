//! The cost of metrics and rate limits per call (issue 14): `tools/call` through three
//! gateways in front of the same echo listener, same cells and alternation as the other
//! tools/call cells:
//!
//! - `plain`: no metrics listener, limits off (what the other phases measure);
//! - `metrics`: `metrics.listen` set, so every request's record is counted (and the
//!   exposition is scraped once per round, as Prometheus would);
//! - `limits`: in-memory rate limits on all three buckets (caller, caller and tool, backend),
//!   set high enough never to refuse, so each call pays the two checks.
//!
//! The three run at the same time and their cells alternate in rotating order, so machine
//! noise hits all of them.

use std::time::Duration;

use crate::backend::EchoBackend;
use crate::cells::{self, Expect, Meters, Target};
use crate::gateway::GatewayProc;
use crate::{
    progress, report, scenarios, Plan, Results, CALL_BODY, ECHO, PAGE_SIZE, RESULT_PREFIX, SECRET,
};

/// The series name of these cells.
pub const SCENARIO: &str = "tools/call observe";
/// The three systems.
pub const SYSTEMS: [&str; 3] = ["plain", "metrics", "limits"];
/// Concurrencies.
const CONCURRENCY: [usize; 2] = [1, 32];

fn yaml(port: u16, echo: std::net::SocketAddr, system: &str, metrics_port: u16) -> String {
    let extra = match system {
        "metrics" => format!(
            "metrics:\n  listen: \"127.0.0.1:{metrics_port}\"\nrate_limits:\n  enabled: false\n"
        ),
        "limits" => "rate_limits:\n  per_subject: \"100000000/min\"\n  per_subject_tool: \"100000000/min\"\n  per_backend: \"100000000/min\"\n".to_string(),
        _ => "rate_limits:\n  enabled: false\n".to_string(),
    };
    format!(
        "server:\n  listen: [\"127.0.0.1:{port}\"]\n  threads: 2\n  grace_period: 1s\n\
         auth:\n  mode: none\n\
         sessions:\n  secret: \"{SECRET}\"\n\
         catalog:\n  refresh: 1h\n  page_size: {PAGE_SIZE}\n\
         backends:\n  - id: echo\n    url: http://{echo}\n{extra}"
    )
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

async fn scrape(port: u16) -> Result<usize, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("metrics connect: {e}"))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .map_err(|_| "metrics scrape timed out".to_string())?
        .map_err(|e| e.to_string())?;
    if !out.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "metrics answered {}",
            String::from_utf8_lossy(&out[..out.len().min(40)])
        ));
    }
    Ok(out.len())
}

/// Runs the phase.
pub async fn observe_phase(
    plan: &Plan,
    be: &EchoBackend,
    results: &mut Results,
) -> Result<(), String> {
    let echo = be.addr(ECHO);
    let metrics_port = free_port()?;
    let mut gateways = Vec::new();
    for system in SYSTEMS {
        let mut gw = GatewayProc::spawn(|port| yaml(port, echo, system, metrics_port))?;
        gw.wait_until(
            Duration::from_secs(30),
            Duration::from_millis(10),
            |s, b| s == 200 && scenarios::readyz_tools(b) == 10,
        )
        .await?;
        gateways.push((system, gw));
    }
    let expect = Expect {
        status: 200,
        prefix: RESULT_PREFIX.to_vec(),
        len: None,
        forbid: Some(br#""isError":true"#.to_vec()),
    };
    for round in 0..plan.rounds {
        for (i, &c) in CONCURRENCY.iter().enumerate() {
            let spec = plan.cell(c, plan.call_cell_s);
            for leg in 0..SYSTEMS.len() {
                let (system, gw) = &gateways[(leg + round + i) % SYSTEMS.len()];
                let target = Target::Mcp {
                    addr: gw.addr,
                    body: CALL_BODY.to_vec(),
                    credential: None,
                };
                let meters = Meters {
                    gateway_pid: Some(gw.pid),
                    backend: be,
                };
                let o = cells::run(&target, &expect, spec, &meters).await;
                progress(
                    &format!("round {} tools/call C={c} {system}", round + 1),
                    &o,
                );
                results.series(SCENARIO, c, system).rounds.push(o);
            }
        }
        let bytes = scrape(metrics_port).await?;
        eprintln!("  round {} scraped /metrics: {bytes} bytes", round + 1);
    }
    for (system, mut gw) in gateways {
        if !gw.alive() {
            return Err(format!("the {system} gateway died\n{}", gw.logs()));
        }
        let status = gw.stop();
        results
            .gateway_exit
            .push(format!("{system} gateway: {status:?}"));
    }
    Ok(())
}

fn median(results: &Results, c: usize, system: &str) -> Option<report::Median> {
    results
        .series
        .iter()
        .find(|s| s.scenario == SCENARIO && s.concurrency == c && s.system == system)
        .map(report::Series::median)
}

/// The table of the summary.
pub fn print_observe(results: &Results) {
    println!("\n#### Metrics and rate limits per call (tools/call, medians over rounds)\n");
    if median(results, CONCURRENCY[0], "plain").is_none() {
        println!("not run (LOAD_PHASES without `observe`)");
        return;
    }
    println!("| C | gateway | req/s | p50 µs | p99 µs | errors | gateway CPU µs/call | CPU − plain µs | p50 − plain µs |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for c in CONCURRENCY {
        let Some(plain) = median(results, c, "plain") else {
            continue;
        };
        for system in SYSTEMS {
            if let Some(m) = median(results, c, system) {
                let cpu = m
                    .gateway_cpu_us
                    .map_or_else(|| "—".into(), |v| format!("{v:.1}"));
                let dcpu = match (m.gateway_cpu_us, plain.gateway_cpu_us) {
                    (Some(a), Some(b)) => format!("{:+.1}", a - b),
                    _ => "—".into(),
                };
                println!(
                    "| {c} | {system} | {:.0} | {:.1} | {:.1} | {} | {cpu} | {dcpu} | {:+.1} |",
                    m.rps,
                    m.p50_us,
                    m.p99_us,
                    m.errors + m.setup_errors,
                    m.p50_us - plain.p50_us
                );
            }
        }
    }
}
