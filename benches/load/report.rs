//! Aggregation over rounds (medians; ratios are taken within a round, then the median), the
//! markdown tables printed at the end, and the target verdicts of issue 6 §3.

use serde::Serialize;

use crate::cells::CellOutcome;

/// All rounds of one (scenario, concurrency, system).
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// e.g. `tools/call`.
    pub scenario: String,
    /// Workers.
    pub concurrency: usize,
    /// `direct` or `gateway` (or a labelled reference).
    pub system: String,
    /// One outcome per round.
    pub rounds: Vec<CellOutcome>,
}

/// Medians over rounds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Median {
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles, µs.
    pub p50_us: f64,
    /// 90th.
    pub p90_us: f64,
    /// 99th.
    pub p99_us: f64,
    /// 99.9th.
    pub p999_us: f64,
    /// Errors over all rounds.
    pub errors: u64,
    /// Set-up and warm-up errors over all rounds.
    pub setup_errors: u64,
    /// Gateway CPU per request, µs.
    pub gateway_cpu_us: Option<f64>,
    /// Of which in the kernel, µs.
    pub gateway_sys_us: Option<f64>,
    /// Backend CPU per request, µs.
    pub backend_cpu_us: Option<f64>,
    /// Driver CPU per request, µs.
    pub driver_cpu_us: f64,
    /// Machine busy %, all CPUs.
    pub machine_busy_pct: f64,
    /// Backend connections opened during the cell (largest over rounds).
    pub backend_connections: u64,
}

/// The median of `values` (empty → None).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

impl Series {
    /// Medians over the rounds.
    pub fn median(&self) -> Median {
        let m =
            |f: fn(&CellOutcome) -> f64| median(self.rounds.iter().map(f).collect()).unwrap_or(0.0);
        let mo =
            |f: fn(&CellOutcome) -> Option<f64>| median(self.rounds.iter().filter_map(f).collect());
        Median {
            rps: m(|c| c.rps),
            p50_us: m(|c| c.latency.p50_us),
            p90_us: m(|c| c.latency.p90_us),
            p99_us: m(|c| c.latency.p99_us),
            p999_us: m(|c| c.latency.p999_us),
            errors: self.rounds.iter().map(|c| c.errors).sum(),
            setup_errors: self.rounds.iter().map(|c| c.setup_errors).sum(),
            gateway_cpu_us: mo(|c| c.gateway_cpu_us_per_req),
            gateway_sys_us: mo(|c| c.gateway_sys_us_per_req),
            backend_cpu_us: mo(|c| c.backend_cpu_us_per_req),
            driver_cpu_us: m(|c| c.driver_cpu_us_per_req),
            machine_busy_pct: m(|c| c.machine_busy_pct),
            backend_connections: self
                .rounds
                .iter()
                .map(|c| c.backend_connections)
                .max()
                .unwrap_or(0),
        }
    }
}

/// Gateway vs direct at one concurrency, from the same rounds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pair {
    /// Scenario.
    pub scenario: String,
    /// Workers.
    pub concurrency: usize,
    /// Median over rounds of (gateway RPS / direct RPS in the same round).
    pub rps_ratio: f64,
    /// Smallest per-round ratio.
    pub rps_ratio_min: f64,
    /// Largest per-round ratio.
    pub rps_ratio_max: f64,
    /// Median over rounds of (gateway p50 − direct p50), µs.
    pub added_p50_us: f64,
    /// Median over rounds of (gateway p99 − direct p99), µs.
    pub added_p99_us: f64,
    /// Median gateway CPU per request, µs.
    pub gateway_cpu_us: Option<f64>,
}

/// Pairs `gateway` with `direct` per concurrency for one scenario.
pub fn pairs(series: &[Series], scenario: &str, gateway: &str, direct: &str) -> Vec<Pair> {
    let find = |c: usize, sys: &str| {
        series
            .iter()
            .find(|s| s.scenario == scenario && s.concurrency == c && s.system == sys)
    };
    let mut cs: Vec<usize> = series
        .iter()
        .filter(|s| s.scenario == scenario)
        .map(|s| s.concurrency)
        .collect();
    cs.sort_unstable();
    cs.dedup();
    cs.into_iter()
        .filter_map(|c| {
            let (g, d) = (find(c, gateway)?, find(c, direct)?);
            let rounds = g.rounds.iter().zip(&d.rounds);
            let ratios: Vec<f64> = rounds
                .clone()
                .filter(|(_, d)| d.rps > 0.0)
                .map(|(g, d)| g.rps / d.rps)
                .collect();
            let added = |f: fn(&CellOutcome) -> f64| {
                median(rounds.clone().map(|(g, d)| f(g) - f(d)).collect()).unwrap_or(0.0)
            };
            Some(Pair {
                scenario: scenario.to_string(),
                concurrency: c,
                rps_ratio: median(ratios.clone()).unwrap_or(0.0),
                rps_ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
                rps_ratio_max: ratios.iter().copied().fold(0.0, f64::max),
                added_p50_us: added(|c| c.latency.p50_us),
                added_p99_us: added(|c| c.latency.p99_us),
                gateway_cpu_us: g.median().gateway_cpu_us,
            })
        })
        .collect()
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{x:.digits$}"))
}

/// Prints the per-system medians of one scenario.
pub fn print_cells(series: &[Series], scenario: &str) {
    println!("\n#### {scenario} (medians over rounds)\n");
    println!("| C | system | req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | errors | gateway CPU µs/req (kernel) | backend CPU µs/req | driver CPU µs/req | machine busy % | backend conns opened |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows: Vec<&Series> = series.iter().filter(|s| s.scenario == scenario).collect();
    rows.sort_by(|a, b| (a.concurrency, &a.system).cmp(&(b.concurrency, &b.system)));
    for s in rows {
        let m = s.median();
        let errors = if m.setup_errors > 0 {
            format!("{} (+{} set-up)", m.errors, m.setup_errors)
        } else {
            m.errors.to_string()
        };
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.1} | {:.0} | {} |",
            s.concurrency,
            s.system,
            m.rps,
            m.p50_us,
            m.p90_us,
            m.p99_us,
            m.p999_us,
            errors,
            match (m.gateway_cpu_us, m.gateway_sys_us) {
                (Some(c), Some(k)) => format!("{c:.1} ({k:.1})"),
                (c, _) => opt(c, 1),
            },
            opt(m.backend_cpu_us, 1),
            m.driver_cpu_us,
            m.machine_busy_pct,
            m.backend_connections
        );
    }
}

/// Prints the gateway-vs-direct pairs.
pub fn print_pairs(pairs: &[Pair]) {
    let Some(first) = pairs.first() else { return };
    println!(
        "\n#### {}: gateway vs direct (same rounds)\n",
        first.scenario
    );
    println!("| C | req/s ratio gateway/direct (range) | added p50 µs | added p99 µs | gateway CPU µs/call |");
    println!("|---:|---|---:|---:|---:|");
    for p in pairs {
        println!(
            "| {} | {:.3} ({:.3}–{:.3}) | {:.1} | {:.1} | {} |",
            p.concurrency,
            p.rps_ratio,
            p.rps_ratio_min,
            p.rps_ratio_max,
            p.added_p50_us,
            p.added_p99_us,
            opt(p.gateway_cpu_us, 1)
        );
    }
}

/// One target of issue 6 §3.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What.
    pub name: String,
    /// The goal, as text.
    pub goal: String,
    /// What was measured, as text.
    pub measured: String,
    /// Whether it is met (None: not measurable in this run).
    pub met: Option<bool>,
}

impl Target {
    /// A "≤ goal" target.
    pub fn at_most(name: &str, goal: f64, unit: &str, value: Option<f64>) -> Target {
        Target {
            name: name.into(),
            goal: format!("≤ {goal} {unit}"),
            measured: opt(value, 2) + " " + unit,
            met: value.map(|v| v <= goal),
        }
    }

    /// A "≥ goal" target.
    pub fn at_least(name: &str, goal: f64, unit: &str, value: Option<f64>) -> Target {
        Target {
            name: name.into(),
            goal: format!("≥ {goal} {unit}"),
            measured: opt(value, 3) + " " + unit,
            met: value.map(|v| v >= goal),
        }
    }
}

/// Prints the target verdicts.
pub fn print_targets(targets: &[Target]) {
    println!("\n#### Targets (issue 6 §3)\n");
    println!("| target | goal | measured | verdict |");
    println!("|---|---|---|---|");
    for t in targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            // A measurement without a goal has no verdict once it has a figure.
            None if t.goal.starts_with("measure") && t.measured != "not run" => "measured",
            None => "pending",
        };
        println!("| {} | {} | {} | {} |", t.name, t.goal, t.measured, verdict);
    }
}
