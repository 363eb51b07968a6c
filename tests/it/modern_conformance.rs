//! The official MCP conformance suite's 2026-07-28 server scenarios (`conformance server
//! --requirements 2026-07-28`: the 37 scenarios that revision requires, frozen at its
//! release) judge the real gateway binary in front of the Rust fixture backend
//! (tests/it/common/fixture_backend.rs, a contract backend) and the Python SDK native fixture
//! (tests/python/native_fixture.py over streamable HTTP, a session-based upstream whose tools
//! ask for input mid-call: the gateway bridges them into input-required results) and the
//! Python SDK's 2026-07-28 server (tests/python/modern_upstream.py, `protocol: 2026-07-28`:
//! its input-required results pass through under the gateway's own sealed state), with
//! `naming: none` and `auth.mode: none`. The legacy era keeps its own run
//! (tests/it/conformance.rs, 0.1.16).
//!
//! The 2026-07-28 scenarios exist only in the 0.2.0 pre-releases; the pinned one is
//! 0.2.0-alpha.12, installed apart from the toolbox's 0.1.16:
//! `$CORTEX_CONFORMANCE_MODERN_DIR` (default: `<toolbox>/conformance-modern`) is an npm
//! folder with `@modelcontextprotocol/conformance@0.2.0-alpha.12` in its node_modules.
//!
//! Rule, as for the legacy run: a scenario the gateway cannot pass is listed in
//! tests/conformance/expected-failures-2026-07-28.yml with its reason, and nothing else is;
//! the suite itself fails when a listed scenario starts passing.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::fixture_backend::TOOL_NAMES;
use common::{interop, FixtureBackend, Gateway, TestConfig};
use serde_json::{json, Value};

/// The whole suite takes well under a minute; this only bounds a hang.
const SUITE_TIMEOUT: Duration = Duration::from_secs(400);

/// The pinned pre-release carrying the 2026-07-28 scenarios.
pub const MODERN_CONFORMANCE_VERSION: &str = "0.2.0-alpha.12";

/// The server scenarios `requirements/2026-07-28.yaml` lists (frozen at the revision's
/// release).
pub const REQUIRED_2026_07_28: [&str; 37] = [
    "server-stateless",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-error",
    "tools-call-with-progress",
    "server-sse-multiple-streams",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "sep-2164-resource-not-found",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
    "caching",
    "input-required-result-basic-elicitation",
    "input-required-result-basic-sampling",
    "input-required-result-basic-list-roots",
    "input-required-result-request-state",
    "input-required-result-multiple-input-requests",
    "input-required-result-multi-round",
    "input-required-result-missing-input-response",
    "input-required-result-non-tool-request",
    "input-required-result-result-type",
    "input-required-result-unsupported-methods",
    "input-required-result-tampered-state",
    "input-required-result-capability-check",
    "input-required-result-ignore-extra-params",
    "input-required-result-validate-input",
];

const EXPECTED_FAILURES: &str = "tests/conformance/expected-failures-2026-07-28.yml";

/// The conformance CLI of the pinned pre-release.
fn modern_cli() -> PathBuf {
    let dir = std::env::var_os("CORTEX_CONFORMANCE_MODERN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| interop::toolbox_dir().join("conformance-modern"));
    let cli = dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    assert!(
        cli.exists(),
        "@modelcontextprotocol/conformance@{MODERN_CONFORMANCE_VERSION} is not installed ({} is \
         missing): run scripts/toolbox.sh, or `npm install \
         @modelcontextprotocol/conformance@{MODERN_CONFORMANCE_VERSION}` in a folder named by \
         CORTEX_CONFORMANCE_MODERN_DIR",
        cli.display()
    );
    let pkg: Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.join("node_modules/@modelcontextprotocol/conformance/package.json"),
        )
        .expect("package.json of the conformance suite"),
    )
    .expect("package.json is JSON");
    assert_eq!(
        pkg["version"], MODERN_CONFORMANCE_VERSION,
        "the 2026-07-28 run is pinned to {MODERN_CONFORMANCE_VERSION}"
    );
    cli
}

/// The scenario names listed under `server:` in the expected-failures file.
fn expected_failures() -> Vec<String> {
    interop::expected_failures(EXPECTED_FAILURES)
}

#[test]
fn the_2026_expected_failures_are_required_scenarios_listed_once_with_a_reason() {
    let listed = expected_failures();
    let unique: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), listed.len(), "duplicates: {listed:?}");
    let text = std::fs::read_to_string(interop::repo_path(EXPECTED_FAILURES)).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    for name in &listed {
        assert!(
            REQUIRED_2026_07_28.contains(&name.as_str()),
            "{name} is not a scenario 2026-07-28 requires"
        );
        // The line before each entry is its reason (a comment).
        let at = lines
            .iter()
            .position(|l| l.trim() == format!("- {name}"))
            .expect("entry line");
        assert!(
            at > 0 && lines[at - 1].trim_start().starts_with('#'),
            "{name} needs a comment line giving its reason right above it"
        );
    }
}

/// Every `checks.json` under `dir`, by scenario (`server-<scenario>-<timestamp>/`).
fn read_results(dir: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path().join("checks.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let folder = entry.file_name().to_string_lossy().into_owned();
        let Some(scenario) = REQUIRED_2026_07_28
            .iter()
            .filter(|s| folder.starts_with(&format!("server-{s}-")))
            .max_by_key(|s| s.len())
        else {
            continue;
        };
        let checks: Vec<Value> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a JSON array of checks: {e}", path.display()));
        out.insert(scenario.to_string(), checks);
    }
    out
}

fn counts(checks: &[Value]) -> (usize, usize, usize) {
    let status = |s: &str| checks.iter().filter(|c| c["status"] == s).count();
    let passed = status("SUCCESS");
    let failed = status("FAILURE") + status("WARNING");
    (passed, failed, checks.len() - passed - failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_2026_07_28_conformance_scenarios_pass_against_the_gateway() {
    let node = interop::node();
    let cli = modern_cli();
    let backend = FixtureBackend::start().await;
    // The native fixture over streamable HTTP: every server request arrives on its own call's
    // stream, so calls held for the suite's input never confuse one another.
    let native = crate::native_http::start_fixture().await;
    // A 2026-07-28 upstream (the Python SDK's modern server) for what only such an upstream
    // can give through the gateway: its own input keys, several requests in one result,
    // answers on a first call, input required on prompts/get.
    let modern = crate::modern_upstream::start_upstream().await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog("refresh: 60s")
            .backend_with("fixture", &backend.url(), &["naming: none"])
            .mcp_backend(
                "native",
                &format!("http://127.0.0.1:{}/mcp", native.port),
                &["naming: none", "timeout: 60s"],
            )
            .mcp_backend(
                "modern",
                &format!("http://127.0.0.1:{}/mcp", modern.port),
                &["naming: none", "timeout: 60s", "protocol: 2026-07-28"],
            )
            .build(),
    )
    .await;
    crate::native_stdio::wait_listed(&gateway, "test_input_required_result_sampling").await;
    crate::native_stdio::wait_listed(&gateway, "test_input_required_result_elicitation").await;
    let listed = gateway.client().tool_names().await;
    for name in TOOL_NAMES {
        assert!(
            listed.iter().any(|n| n == name),
            "{name} not listed before the suite runs: {listed:?}\n{}",
            gateway.logs()
        );
    }
    let out_dir = gateway.dir().join("conformance-2026-results");
    std::fs::create_dir_all(&out_dir).expect("results dir");
    let args = vec![
        cli.display().to_string(),
        "server".into(),
        "--url".into(),
        gateway.mcp_url(),
        "--requirements".into(),
        "2026-07-28".into(),
        "--expected-failures".into(),
        interop::repo_path(EXPECTED_FAILURES).display().to_string(),
        "-o".into(),
        out_dir.display().to_string(),
    ];
    let run = interop::run_tool_async(
        node,
        args,
        Vec::new(),
        gateway.dir().to_owned(),
        "conformance-2026",
        SUITE_TIMEOUT,
    )
    .await;
    let results = read_results(&out_dir);
    let expected: BTreeSet<String> = expected_failures().into_iter().collect();
    println!(
        "conformance {MODERN_CONFORMANCE_VERSION} (server, --requirements 2026-07-28) against {}:",
        gateway.mcp_url()
    );
    for (scenario, checks) in &results {
        let (ok, bad, info) = counts(checks);
        let verdict = match (bad, expected.contains(scenario)) {
            (0, false) => "pass",
            (0, true) => "PASSES BUT IS LISTED AS EXPECTED FAILURE",
            (_, true) => "expected failure",
            (_, false) => "FAIL",
        };
        println!("  {scenario:<48} {verdict:<17} checks ok {ok}, failed {bad}, info {info}");
        for check in checks
            .iter()
            .filter(|c| c["status"] == "FAILURE" || c["status"] == "WARNING")
        {
            println!(
                "      {}: {}",
                check["id"].as_str().unwrap_or("?"),
                check["errorMessage"].as_str().unwrap_or("")
            );
        }
    }
    let ran: BTreeSet<&str> = results.keys().map(String::as_str).collect();
    let required: BTreeSet<&str> = REQUIRED_2026_07_28.into_iter().collect();
    assert_eq!(
        ran,
        required,
        "the suite must run every required scenario\n{}",
        run.describe()
    );
    assert_eq!(
        run.code(),
        0,
        "conformance suite failed\n{}\n{}",
        run.describe(),
        gateway.logs()
    );
    for (scenario, checks) in &results {
        let (ok, bad, _) = counts(checks);
        if expected.contains(scenario) {
            assert!(
                bad > 0,
                "{scenario} passes: remove it from {EXPECTED_FAILURES}"
            );
        } else {
            assert_eq!(bad, 0, "{scenario} failed: {:#}", json!(checks));
            assert!(
                ok > 0,
                "{scenario} passed no check at all: {:#}",
                json!(checks)
            );
        }
    }
    // server-stateless is listed for the checks that need the suite's diagnostic tools; every
    // other check of it (the _meta, header, version, discover, method-table, listen checks)
    // must pass.
    let allowed: BTreeSet<&str> = [
        "sep-2575-server-rejects-undeclared-capability",
        "sep-2575-missing-capability-http-400",
        "sep-2575-http-server-no-independent-requests-on-stream",
        "sep-2575-server-no-log-without-loglevel",
        "sep-2575-server-sends-prompts-list-changed-on-subscription",
        "sep-2575-server-sends-tools-list-changed-on-subscription",
    ]
    .into_iter()
    .collect();
    let stateless = &results["server-stateless"];
    for check in stateless
        .iter()
        .filter(|c| c["status"] == "FAILURE" || c["status"] == "WARNING")
    {
        let id = check["id"].as_str().unwrap_or("?");
        assert!(
            allowed.contains(id),
            "server-stateless/{id} failed: {check:#}"
        );
    }
    assert!(
        counts(stateless).0 >= 24,
        "server-stateless: {:#}",
        json!(stateless)
    );
    // Served THROUGH the gateway: the fixture backend received the suite's calls.
    let calls = backend.calls();
    for method in [
        "test_simple_text",
        "get_prompt",
        "read_resource",
        "complete",
    ] {
        assert!(
            calls.get(method).copied().unwrap_or(0) >= 1,
            "the fixture backend never received {method}: {calls:?}"
        );
    }
}
