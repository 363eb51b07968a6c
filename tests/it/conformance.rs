//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, server mode, active
//! suite) judges the real gateway binary, serving the Rust fixture backend
//! (tests/it/common/fixture_backend.rs) with `naming: none` and `auth.mode: none`.
//!
//! Passing the suite's exit code is not enough: several checks only validate a shape (a tool
//! that does not exist can "pass" when the server answers `isError` with "not found"), so every
//! scenario's checks.json is read and the fixture-dependent details are asserted too, and the
//! fixture backend must have received the calls. The scenarios that need a native MCP backend
//! (notifications and requests sent during a call, resource subscriptions) are served by the
//! Python SDK fixture (tests/python/native_fixture.py) behind the gateway over stdio, so the
//! expected-failures file is empty.
//!
//! Needs the toolbox (scripts/toolbox.sh): Node 22 and the conformance package. A missing tool
//! fails the test with the command to run.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::fixture_backend::{
    self, ERROR_TEXT, PROMPT_NAMES, RESOURCE_URIS, SIMPLE_TEXT, TOOL_NAMES,
};
use common::{interop, FixtureBackend, Gateway, TestConfig};
use serde_json::{json, Value};

/// The whole suite takes a few seconds; this only bounds a hang.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);

/// The active server scenarios of conformance 0.1.16 (`conformance list --server` minus the
/// pending `json-schema-2020-12` and `server-sse-polling`).
const ACTIVE_SCENARIOS: [&str; 30] = [
    "server-initialize",
    "logging-set-level",
    "ping",
    "completion-complete",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-logging",
    "tools-call-error",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "elicitation-sep1034-defaults",
    "server-sse-multiple-streams",
    "elicitation-sep1330-enums",
    "resources-list",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
    "dns-rebinding-protection",
];

const EXPECTED_FAILURES: &str = "tests/conformance/expected-failures.yml";

/// The scenario names listed under `server:` in the expected-failures file.
fn expected_failures() -> Vec<String> {
    interop::expected_failures(EXPECTED_FAILURES)
}

#[test]
fn the_expected_failures_file_is_empty() {
    let listed = expected_failures();
    assert!(
        listed.is_empty(),
        "{EXPECTED_FAILURES} must stay empty (every active scenario passes): {listed:?}"
    );
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
        let scenario = ACTIVE_SCENARIOS
            .iter()
            .filter(|s| folder.starts_with(&format!("server-{s}-")))
            .max_by_key(|s| s.len())
            .unwrap_or_else(|| panic!("result folder {folder} matches no active scenario"));
        let checks: Vec<Value> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a JSON array of checks: {e}", path.display()));
        let previous = out.insert(scenario.to_string(), checks);
        assert!(previous.is_none(), "two result folders for {scenario}");
    }
    out
}

/// `(passed, failed, other)` check counts of one scenario.
fn counts(checks: &[Value]) -> (usize, usize, usize) {
    let status = |s: &str| checks.iter().filter(|c| c["status"] == s).count();
    let passed = status("SUCCESS");
    let failed = status("FAILURE") + status("WARNING");
    (passed, failed, checks.len() - passed - failed)
}

/// The check with `id` of a scenario, asserting it passed.
fn passed<'a>(results: &'a BTreeMap<String, Vec<Value>>, scenario: &str, id: &str) -> &'a Value {
    let check = results[scenario]
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| {
            panic!(
                "{scenario}: no check {id} in {:#}",
                json!(results[scenario])
            )
        });
    assert_eq!(check["status"], "SUCCESS", "{scenario}/{id}: {check:#}");
    &check["details"]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The fixture-dependent assertions: what each scenario's details say the gateway returned
/// must be the fixture's content, not merely a well-formed answer.
fn assert_fixture_details(r: &BTreeMap<String, Vec<Value>>) {
    let d = passed(r, "tools-list", "tools-list");
    let listed = strings(&d["tools"]);
    for name in TOOL_NAMES {
        assert!(listed.contains(&name), "tools-list lacks {name}: {d}");
    }

    let d = passed(r, "tools-call-simple-text", "tools-call-simple-text");
    assert_eq!(
        d["result"]["content"],
        json!([{"type": "text", "text": SIMPLE_TEXT}]),
        "{d}"
    );
    assert_ne!(d["result"]["isError"], true, "{d}");

    let d = passed(r, "tools-call-error", "tools-call-error");
    assert_eq!(d["result"]["isError"], true, "{d}");
    assert_eq!(d["result"]["content"][0]["text"], ERROR_TEXT, "{d}");

    let d = passed(r, "tools-call-image", "tools-call-image");
    assert_eq!(d, &json!({"mimeType": "image/png", "hasData": true}));

    let d = passed(r, "tools-call-audio", "tools-call-audio");
    assert_eq!(d["hasAudioContent"], true, "{d}");
    assert_eq!(
        d["audioDataLength"],
        fixture_backend::WAV_BASE64.len(),
        "{d}"
    );

    let d = passed(
        r,
        "tools-call-embedded-resource",
        "tools-call-embedded-resource",
    );
    assert_eq!(d["resourceUri"], "test://embedded-resource", "{d}");

    let d = passed(r, "tools-call-mixed-content", "tools-call-mixed-content");
    assert_eq!(
        d["contentTypes"],
        json!(["text", "image", "resource"]),
        "{d}"
    );

    let d = passed(r, "resources-list", "resources-list");
    let uris = strings(&d["resources"]);
    for uri in RESOURCE_URIS {
        assert!(uris.contains(&uri), "resources-list lacks {uri}: {d}");
    }

    let d = passed(r, "resources-read-text", "resources-read-text");
    assert_eq!(
        d,
        &json!({"uri": "test://static-text", "mimeType": "text/plain", "hasText": true})
    );

    let d = passed(r, "resources-read-binary", "resources-read-binary");
    assert_eq!(
        d,
        &json!({"uri": "test://static-binary", "mimeType": "image/png", "hasBlob": true})
    );

    let d = passed(r, "resources-templates-read", "resources-templates-read");
    assert_eq!(d["uri"], "test://template/123/data", "{d}");
    let content: Value =
        serde_json::from_str(d["content"].as_str().unwrap_or("")).unwrap_or_default();
    assert_eq!(
        content,
        json!({"id": "123", "templateTest": true, "data": "Data for ID: 123"})
    );

    let d = passed(r, "prompts-list", "prompts-list");
    let prompts = strings(&d["prompts"]);
    for name in PROMPT_NAMES {
        assert!(prompts.contains(&name), "prompts-list lacks {name}: {d}");
    }

    let d = passed(r, "prompts-get-simple", "prompts-get-simple");
    assert_eq!(d["messageCount"], 1, "{d}");

    let d = passed(r, "prompts-get-with-args", "prompts-get-with-args");
    assert_eq!(
        d["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='testValue1', arg2='testValue2'",
        "{d}"
    );

    let d = passed(
        r,
        "prompts-get-embedded-resource",
        "prompts-get-embedded-resource",
    );
    assert_eq!(
        d["messages"][0]["content"]["resource"]["uri"], "test://example-resource",
        "{d}"
    );
    assert_eq!(
        d["messages"][1]["content"]["text"],
        "Please process the embedded resource above."
    );

    let d = passed(r, "prompts-get-with-image", "prompts-get-with-image");
    assert_eq!(d["messageCount"], 2, "{d}");

    // The suite asks for completions of arg1 with the value "test".
    let d = passed(r, "completion-complete", "completion-complete");
    assert_eq!(
        d["result"]["completion"]["values"],
        json!(["test-value", "testing"]),
        "{d}"
    );

    let d = passed(r, "logging-set-level", "logging-set-level");
    assert_eq!(d["result"], json!({}), "{d}");

    // DNS rebinding: the foreign Host is refused by the gateway's Host check (403
    // forbidden_host), the loopback one gets a real initialize result.
    let d = passed(
        r,
        "dns-rebinding-protection",
        "localhost-host-rebinding-rejected",
    );
    assert_eq!(d["statusCode"], 403, "{d}");
    assert_eq!(d["body"]["error"], "forbidden_host", "{d}");
    let d = passed(
        r,
        "dns-rebinding-protection",
        "localhost-host-valid-accepted",
    );
    assert_eq!(d["statusCode"], 200, "{d}");
    assert_eq!(d["body"]["result"]["protocolVersion"], "2025-11-25", "{d}");

    // Served by the native fixture through the gateway's relay.
    let d = passed(r, "tools-call-with-logging", "tools-call-with-logging");
    assert_eq!(d["logCount"], 3, "{d}");
    let d = passed(r, "tools-call-with-progress", "tools-call-with-progress");
    assert_eq!(d["progressCount"], 3, "{d}");
    let d = passed(r, "tools-call-sampling", "tools-call-sampling");
    assert_eq!(d["samplingRequested"], true, "{d}");
    assert_eq!(
        d["result"]["content"][0]["text"], "LLM response: This is a test response from the client",
        "{d}"
    );
    let d = passed(r, "tools-call-elicitation", "tools-call-elicitation");
    assert_eq!(d["elicitationRequested"], true, "{d}");
    passed(r, "resources-subscribe", "resources-subscribe");
    passed(r, "resources-unsubscribe", "resources-unsubscribe");

    let d = passed(
        r,
        "server-sse-multiple-streams",
        "server-accepts-multiple-post-streams",
    );
    assert_eq!(d["statuses"], json!([200, 200, 200]), "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_conformance_suite_passes_against_the_gateway() {
    let started = Instant::now();
    let node = interop::node();
    let cli = interop::conformance_cli();
    let backend = FixtureBackend::start().await;
    let python = interop::python().display().to_string();
    let native = interop::repo_path("tests/python/native_fixture.py")
        .display()
        .to_string();
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog("refresh: 60s")
            .backend_with("fixture", &backend.url(), &["naming: none"])
            .stdio_backend(
                "native",
                &python,
                &["-W", "ignore", &native, "stdio"],
                &["naming: none"],
            )
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    crate::native_stdio::wait_listed(&gateway, "test_tool_with_progress").await;
    let listed = gateway.client().tool_names().await;
    for name in TOOL_NAMES {
        assert!(
            listed.iter().any(|n| n == name),
            "the gateway must list the fixture's tools unprefixed before the suite runs: \
             {name} not in {listed:?}\n{}",
            gateway.logs()
        );
    }

    let out_dir = gateway.dir().join("conformance-results");
    std::fs::create_dir_all(&out_dir).expect("results dir");
    let args = vec![
        cli.display().to_string(),
        "server".into(),
        "--url".into(),
        gateway.mcp_url(),
        "--suite".into(),
        "active".into(),
        "--expected-failures".into(),
        interop::repo_path(EXPECTED_FAILURES).display().to_string(),
        "-o".into(),
        out_dir.display().to_string(),
    ];
    let suite_started = Instant::now();
    let run = interop::run_tool_async(
        node,
        args,
        Vec::new(),
        gateway.dir().to_owned(),
        "conformance",
        SUITE_TIMEOUT,
    )
    .await;
    let suite_elapsed = suite_started.elapsed();

    let results = read_results(&out_dir);
    let expected: BTreeSet<String> = expected_failures().into_iter().collect();
    println!(
        "conformance {} (server, active suite) against {}:",
        interop::stamp("conformance"),
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
        println!("  {scenario:<32} {verdict:<17} checks ok {ok}, failed {bad}, info {info}");
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
    println!(
        "conformance suite: {:.1?} (whole test incl. gateway start {:.1?})",
        suite_elapsed,
        started.elapsed()
    );

    let ran: BTreeSet<&str> = results.keys().map(String::as_str).collect();
    let active: BTreeSet<&str> = ACTIVE_SCENARIOS.into_iter().collect();
    assert_eq!(
        ran,
        active,
        "the suite must run every active scenario\n{}",
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
        let (_, bad, _) = counts(checks);
        if expected.contains(scenario) {
            assert!(
                bad > 0,
                "{scenario} passes: remove it from {EXPECTED_FAILURES}"
            );
        } else {
            assert_eq!(bad, 0, "{scenario} failed: {:#}", json!(checks));
        }
    }
    assert_fixture_details(&results);

    // Served THROUGH the gateway: the fixture backend received the suite's calls.
    let calls = backend.calls();
    for method in [
        "test_simple_text",
        "test_image_content",
        "test_audio_content",
        "test_embedded_resource",
        "test_multiple_content_types",
        "test_error_handling",
        "get_prompt",
        "read_resource",
        "complete",
    ] {
        assert!(
            calls.get(method).copied().unwrap_or(0) >= 1,
            "the fixture backend never received {method}: {calls:?}"
        );
    }
    assert!(
        calls.get("get_prompt").copied().unwrap_or(0) >= 4,
        "four prompt scenarios: {calls:?}"
    );
    assert!(
        calls.get("read_resource").copied().unwrap_or(0) >= 3,
        "three read scenarios: {calls:?}"
    );
}

/// The pending scenario json-schema-2020-12 (not in the active suite of 0.1.16) also passes:
/// a contract backend's `inputSchema` keeps `$schema`, `$defs` and `additionalProperties`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_json_schema_2020_12_scenario_passes_too() {
    let node = interop::node();
    let cli = interop::conformance_cli();
    let backend = FixtureBackend::start().await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog("refresh: 60s")
            .backend_with("fixture", &backend.url(), &["naming: none"])
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let out_dir = gateway.dir().join("pending-results");
    std::fs::create_dir_all(&out_dir).expect("results dir");
    let args = vec![
        cli.display().to_string(),
        "server".into(),
        "--url".into(),
        gateway.mcp_url(),
        "--scenario".into(),
        "json-schema-2020-12".into(),
        "-o".into(),
        out_dir.display().to_string(),
    ];
    let run = interop::run_tool_async(
        node,
        args,
        Vec::new(),
        gateway.dir().to_owned(),
        "conformance-pending",
        SUITE_TIMEOUT,
    )
    .await;
    assert_eq!(run.code(), 0, "{}", run.describe());
    let folder = std::fs::read_dir(&out_dir)
        .expect("results")
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("server-json-schema-2020-12-")
        })
        .expect("result folder");
    let checks: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(folder.path().join("checks.json")).expect("checks"),
    )
    .expect("checks json");
    let ids: BTreeSet<&str> = checks
        .iter()
        .filter(|c| c["status"] == "SUCCESS")
        .filter_map(|c| c["id"].as_str())
        .collect();
    for id in [
        "json-schema-2020-12-tool-found",
        "json-schema-2020-12-$schema",
        "json-schema-2020-12-$defs",
        "json-schema-2020-12-additionalProperties",
    ] {
        assert!(ids.contains(id), "{id} did not pass: {checks:#?}");
    }
}
