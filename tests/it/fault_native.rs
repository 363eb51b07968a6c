//! Native MCP backends that fail (docs/reliability.md, "A native MCP backend that fails").
//! Over streamable HTTP, a raw-socket server (`common::rogue_mcp`) whose event streams never
//! end, whose request to the caller is never answered, which never answers at all, answers
//! 50 MB, cuts its reply or flaps; over stdio, a child (tests/python/fault_stdio.py) that
//! exits during a call, hangs, or floods its stderr. Each call ends with the documented error, the server hears that the gateway
//! gave up, and nothing leaks. (A server that is down, answers garbage or an error status:
//! native_http.rs; a killed stdio child restarted: native_stdio.rs.)

use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use crate::common;
use crate::native_stdio::{client, wait_listed};
use common::rogue_mcp::{RogueMcp, RogueMcpStats};
use common::usage::{settles_to, Usage, TOLERANCE};
use common::{eventually, interop, Gateway, McpClient, TestConfig};

const WAIT: Duration = Duration::from_secs(20);
/// A server that sends no reply header at all: the request times out as a whole.
const HANG_ERROR: &str = "backend rogue: timed out after 1000ms";

async fn rogue_gateway() -> (Gateway, RogueMcp) {
    let rogue = RogueMcp::start().await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog("refresh: 60s")
            .mcp_backend("rogue", &rogue.url(), &["timeout: 1s"])
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    wait_listed(&gateway, "rogue_ask").await;
    (gateway, rogue)
}

fn error_message(response: &Value, what: &str) -> String {
    assert_eq!(response["error"]["code"], -32603, "{what}: {response}");
    response["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn call(c: &McpClient, tool: &str, arguments: Value) -> Value {
    c.rpc("tools/call", json!({"name": tool, "arguments": arguments}))
        .await
}

/// Calls `rogue_ask`, waits for its request to the caller, and goes away without answering.
async fn ask_and_leave(c: &McpClient) {
    let body = c.request_body("tools/call", json!({"name": "rogue_ask", "arguments": {}}));
    let mut stream = c.post_stream(&body).await;
    let (_, request) = stream
        .wait_for_method("elicitation/create", WAIT)
        .await
        .expect("the server's request reaches the caller");
    assert_eq!(request["params"]["message"], "never answered");
    drop(stream);
}

async fn wait_count(
    rogue: &RogueMcp,
    which: fn(&RogueMcpStats) -> &std::sync::atomic::AtomicU64,
    at_least: u64,
    what: &str,
) {
    eventually(WAIT, what, || async {
        (rogue.count(which) >= at_least).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_that_never_ends_is_cut_at_the_timeout_and_cancelled() {
    let (gateway, rogue) = rogue_gateway().await;
    let c = client(&gateway).await;
    let message = error_message(&call(&c, "rogue_endless", json!({})).await, "endless");
    assert!(
        message.contains("backend rogue") && message.contains("no answer within 1000 ms"),
        "{message}"
    );
    wait_count(&rogue, |s| &s.cancelled, 1, "notifications/cancelled sent").await;
    wait_count(&rogue, |s| &s.hung_up, 1, "the endless stream hung up on").await;

    // No reply header at all: the request itself times out, and its connection is closed.
    let message = error_message(&call(&c, "rogue_hang", json!({})).await, "hang");
    assert!(message.contains(HANG_ERROR), "{message}");
    wait_count(&rogue, |s| &s.hung_up, 2, "the hanging request hung up on").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_caller_who_leaves_without_answering_is_cancelled_upstream() {
    let (gateway, rogue) = rogue_gateway().await;
    let c = client(&gateway).await;
    ask_and_leave(&c).await;
    wait_count(&rogue, |s| &s.cancelled, 1, "notifications/cancelled sent").await;
    wait_count(&rogue, |s| &s.hung_up, 1, "the call's stream hung up on").await;
    // The caller and the gateway go on.
    let message = error_message(&call(&c, "rogue_hang", json!({})).await, "hang");
    assert!(message.contains(HANG_ERROR), "{message}");
}

/// A reply of 50 MB (announced, or one event growing without end), a reply cut in the middle,
/// and a flapping server: each call ends with a clear error naming the backend (or, for the
/// flapping one, its answer), the 50 MB are never read to their end, and nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_cut_and_flapping_replies_fail_clearly_and_leak_nothing() {
    let (gateway, rogue) = rogue_gateway().await;
    let pid = gateway.pid();
    let c = client(&gateway).await;
    let huge = error_message(&call(&c, "rogue_huge", json!({})).await, "huge");
    assert!(
        huge.starts_with("backend rogue:")
            && (huge.contains("larger than 16777216 bytes") || huge.contains("1000")),
        "{huge}"
    );
    let event = error_message(&call(&c, "rogue_huge_event", json!({})).await, "huge_event");
    assert!(event.starts_with("backend rogue:"), "{event}");
    let cut = error_message(&call(&c, "rogue_cut", json!({})).await, "cut");
    assert!(cut.starts_with("backend rogue:"), "{cut}");
    eprintln!("native HTTP replies: huge: {huge}; huge event: {event}; cut: {cut}");
    let mut answered = 0;
    for _ in 0..8 {
        let r = call(&c, "rogue_flap", json!({})).await;
        if r["result"]["content"][0]["text"] == "flap" {
            answered += 1;
        } else {
            let message = error_message(&r, "flap");
            assert!(message.starts_with("backend rogue:"), "{message}");
        }
    }
    assert!(answered >= 1, "a flapping server's answers get through");
    eventually(WAIT, "the huge replies hung up on", || async {
        (rogue.count(|s| &s.open) == 0).then_some(())
    })
    .await;
    assert!(
        rogue.count(|s| &s.hung_up) >= 2,
        "the 50 MB replies were never read to their end"
    );

    // Then many at once, measured against a baseline taken after one such round (the
    // allocator keeps freed 16 MiB buffers for reuse: the warm-up runs at the same
    // concurrency as the measure).
    many_bad_replies(&c).await;
    let baseline = Usage::of(pid);
    for _ in 0..4 {
        many_bad_replies(&c).await;
    }
    eventually(WAIT, "every upstream reply closed", || async {
        (rogue.count(|s| &s.open) == 0).then_some(())
    })
    .await;
    let after = settles_to(pid, &baseline, "after 32 huge, cut and flapping calls").await;
    eprintln!("native HTTP replies: baseline {baseline:?}, after {after:?}");
}

/// Two calls of each of `huge`, `huge_event`, `cut` and `flap` at once.
async fn many_bad_replies(c: &McpClient) {
    let tools = ["rogue_huge", "rogue_huge_event", "rogue_cut", "rogue_flap"];
    let calls = join_all(
        tools
            .iter()
            .flat_map(|t| std::iter::repeat_n(*t, 2))
            .map(|t| call(c, t, json!({}))),
    )
    .await;
    for r in &calls {
        assert!(
            r["result"]["content"][0]["text"] == "flap"
                || error_message(r, "many").starts_with("backend rogue:"),
            "{r}"
        );
    }
}

const ROUNDS: usize = 6;

/// One round: `n` endless streams, `n` unanswered requests whose caller leaves, `n` hangs.
async fn native_round(c: &McpClient, n: usize) {
    let endless = join_all((0..n).map(|_| call(c, "rogue_endless", json!({}))));
    let hangs = join_all((0..n).map(|_| call(c, "rogue_hang", json!({}))));
    let asks = join_all((0..n).map(|_| ask_and_leave(c)));
    let (endless, hangs, _) = tokio::join!(endless, hangs, asks);
    for r in &endless {
        // Many at once on a busy machine: the stream's header may itself come too late.
        let message = error_message(r, "endless");
        assert!(
            message.contains("no answer within 1000 ms") || message.contains(HANG_ERROR),
            "{r}"
        );
    }
    for r in &hangs {
        assert!(error_message(r, "hang").contains(HANG_ERROR), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_stuck_native_calls_leak_nothing() {
    let (gateway, rogue) = rogue_gateway().await;
    let pid = gateway.pid();
    let c = client(&gateway).await;
    native_round(&c, 3).await;
    eventually(WAIT, "the warm-up streams closed", || async {
        (rogue.count(|s| &s.open) == 0).then_some(())
    })
    .await;
    let baseline = Usage::of(pid);
    // ROUNDS × 3 kinds × 8 calls = 144 stuck calls (18 rounds, 432 calls, ended with the same descriptors).
    for _ in 0..ROUNDS {
        native_round(&c, 8).await;
    }
    eventually(WAIT, "every upstream stream closed", || async {
        (rogue.count(|s| &s.open) == 0).then_some(())
    })
    .await;
    let after = settles_to(pid, &baseline, "after 144 stuck native calls").await;
    eprintln!("native HTTP faults: baseline {baseline:?}, after {after:?}");
    let cancelled = rogue.count(|s| &s.cancelled);
    eprintln!("native HTTP faults: {cancelled} notifications/cancelled");
    assert!(
        cancelled >= 48,
        "at least each call whose caller left was cancelled upstream: {cancelled}"
    );
}

/// A gateway running tests/python/fault_stdio.py as backend `st` with `timeout`.
async fn stdio_gateway(timeout: &str) -> Gateway {
    let python = interop::python();
    let script = interop::repo_path("tests/python/fault_stdio.py");
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog("refresh: 60s")
            .stdio_backend(
                "st",
                &python.display().to_string(),
                &["-u", &script.display().to_string()],
                &[&format!("timeout: {timeout}")],
            )
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    wait_listed(&gateway, "st_flood").await;
    gateway
}

fn text(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a text result: {response}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_child_that_exits_or_hangs_fails_its_call_and_the_others_go_on() {
    let gateway = stdio_gateway("2s").await;
    let c = client(&gateway).await;
    let first = text(&call(&c, "st_ok", json!({})).await);

    let message = error_message(&call(&c, "st_exit", json!({})).await, "exit");
    assert!(
        message.contains("backend st") && message.contains("exited"),
        "{message}"
    );
    // Started again: the next call is answered by a new process.
    let second = eventually(WAIT, "the child restarted", || async {
        let r = call(&c, "st_ok", json!({})).await;
        r.get("result").map(|_| text(&r))
    })
    .await;
    assert_ne!(first, second, "a new process");

    // A hanging call times out; a call made meanwhile is answered.
    let (hung, ok) = tokio::join!(call(&c, "st_hang", json!({})), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        call(&c, "st_ok", json!({})).await
    });
    let message = error_message(&hung, "hang");
    assert!(message.contains("no answer within 2000 ms"), "{message}");
    assert_eq!(text(&ok), second, "not blocked by the hanging call");

    // More exits (restarts back off: 0.5 s, 1 s, 2 s) and hangs: the children's pipes and
    // the calls' tasks do not pile up.
    let pid = gateway.pid();
    let baseline = Usage::of(pid);
    for _ in 0..3 {
        let (exited, hung) = tokio::join!(
            call(&c, "st_exit", json!({})),
            call(&c, "st_hang", json!({}))
        );
        error_message(&exited, "exit");
        error_message(&hung, "hang");
        eventually(WAIT, "the child restarted", || async {
            call(&c, "st_ok", json!({})).await.get("result").map(|_| ())
        })
        .await;
    }
    let after = settles_to(pid, &baseline, "after 3 more exits and hangs").await;
    eprintln!("stdio exits and hangs: baseline {baseline:?}, after {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_child_flooding_stderr_costs_the_gateway_no_memory() {
    // Writing 197 MiB through a pipe takes a while on a busy machine: a long timeout.
    let gateway = stdio_gateway("120s").await;
    let pid = gateway.pid();
    let c = client(&gateway).await;
    // Warm-up: a small flood of each kind.
    for lines in [false, true] {
        let r = call(&c, "st_flood", json!({"bytes": 1 << 20, "lines": lines})).await;
        assert_eq!(text(&r), "flooded");
    }
    let baseline = Usage::of(pid);
    // 5 MB in 100-byte lines, then 96 MiB on a single line, twice.
    let r = call(&c, "st_flood", json!({"bytes": 5 << 20, "lines": true})).await;
    assert_eq!(text(&r), "flooded");
    for _ in 0..2 {
        let r = call(&c, "st_flood", json!({"bytes": 96 << 20, "lines": false})).await;
        assert_eq!(text(&r), "flooded", "answered after the flood");
    }
    let after = settles_to(pid, &baseline, "after 197 MiB of stderr").await;
    eprintln!("stdio stderr flood: baseline {baseline:?}, after {after:?}");
    assert!(
        after.peak_rss_kib <= baseline.peak_rss_kib + TOLERANCE.rss_kib,
        "what the child writes is never held whole: peak {} KiB, baseline peak {} KiB",
        after.peak_rss_kib,
        baseline.peak_rss_kib
    );
    assert!(
        gateway.logs().contains("stderr: xxxxxxxx"),
        "the lines are logged"
    );
}
