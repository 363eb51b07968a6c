//! A contract backend that fails in every way docs/reliability.md lists ("A contract backend
//! that fails"): the catalog keeps its last good entries, marked stale; each call gets the
//! documented JSON-RPC error; the backend's recovery needs no restart; and after hundreds of
//! failing calls the gateway's descriptors, threads and memory are back at their baseline.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use crate::common;
use common::faulty_backend::{Fault, FaultyBackend};
use common::usage::{settles_to, Usage};
use common::{eventually, Gateway, McpClient, TestConfig};

const TOOL: &str = "faulty_echo";
const WAIT: Duration = Duration::from_secs(20);

/// A gateway in front of a healthy faulty backend (id `faulty`, 1 s timeout), its tool listed.
async fn gateway(refresh: &str) -> (Gateway, FaultyBackend) {
    let backend = FaultyBackend::start().await;
    let gateway = Gateway::start(
        &TestConfig::new()
            .catalog(&format!("refresh: {refresh}"))
            .backend_with("faulty", &backend.url(), &["timeout: 1s"])
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    let client = gateway.client();
    eventually(WAIT, "the backend's tool listed", || {
        let client = client.clone();
        async move {
            client
                .tool_names()
                .await
                .iter()
                .any(|n| n == TOOL)
                .then_some(())
        }
    })
    .await;
    (gateway, backend)
}

/// Calls the backend's tool; the whole JSON-RPC response.
async fn call(client: &McpClient) -> Value {
    client
        .rpc("tools/call", json!({"name": TOOL, "arguments": {}}))
        .await
}

/// The error message of a `-32603` response, or a panic naming what came instead.
fn internal_error(response: &Value, what: &str) -> String {
    assert_eq!(
        response["error"]["code"], -32603,
        "{what}: a JSON-RPC internal error, got {response}"
    );
    response["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// What docs/reliability.md says the message of each fault contains.
fn expected_message(fault: Option<Fault>) -> &'static str {
    match fault {
        None | Some(Fault::Reset) | Some(Fault::Cut) => "Backend faulty unreachable",
        Some(Fault::Slow) => "Backend timed out after 1000ms",
        Some(Fault::Garbage) => "Backend faulty sent invalid JSON",
        Some(Fault::Huge) => "reply larger than 16777216 bytes",
        // Read up to the limit: on a busy machine the 1 s timeout may come first.
        Some(Fault::HugeChunked) => "Backend",
        Some(Fault::Healthy) | Some(Fault::Flap) => "",
    }
}

/// Puts the backend into `fault` (`None`: down, nothing listening).
fn break_it(backend: &FaultyBackend, fault: Option<Fault>) {
    match fault {
        None => backend.down(),
        Some(f) => backend.set(f),
    }
}

async fn heal(backend: &FaultyBackend, fault: Option<Fault>) {
    if fault.is_none() {
        backend.up().await;
    }
    backend.set(Fault::Healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_keeps_the_stale_catalog_fails_calls_clearly_and_heals() {
    let (gateway, backend) = gateway("1s").await;
    let client = gateway.client();
    assert_eq!(
        call(&client).await["result"]["structuredContent"],
        json!({"ok": true})
    );

    for fault in [
        None,
        Some(Fault::Reset),
        Some(Fault::Slow),
        Some(Fault::Garbage),
        Some(Fault::Huge),
        Some(Fault::HugeChunked),
        Some(Fault::Cut),
    ] {
        break_it(&backend, fault);
        // The next discovery fails: the entries stay, marked stale, with the reason.
        let status = eventually(WAIT, &format!("{fault:?}: stale in /readyz"), || async {
            let s = gateway.backend_status("faulty").await;
            (s["stale"] == true).then_some(s)
        })
        .await;
        assert_eq!(status["healthy"], false, "{fault:?}: {status}");
        assert!(
            status["lastError"].as_str().is_some_and(|e| !e.is_empty()),
            "{fault:?}: {status}"
        );
        assert!(
            client.tool_names().await.iter().any(|n| n == TOOL),
            "{fault:?}: the last good entry stays listed"
        );
        let message = internal_error(&call(&client).await, &format!("{fault:?}"));
        assert!(
            message.contains(expected_message(fault)),
            "{fault:?}: {message:?} should contain {:?}",
            expected_message(fault)
        );

        heal(&backend, fault).await;
        eventually(WAIT, &format!("{fault:?}: healthy again"), || async {
            let s = gateway.backend_status("faulty").await;
            (s["stale"] == false && s["healthy"] == true).then_some(())
        })
        .await;
        assert_eq!(
            call(&client).await["result"]["structuredContent"],
            json!({"ok": true}),
            "{fault:?}: calls succeed again without a restart"
        );
    }
    // The slow reply and the huge one were hung up on, not waited for or drained.
    let stats = backend.stats();
    assert!(
        stats
            .slow_abandoned
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    // Every huge reply (discovery retries and calls alike) was cut short: none was written
    // to its end. (The bytes written add up over the retries, so they are not the measure.)
    assert!(
        stats
            .huge_abandoned
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    assert_eq!(
        stats
            .huge_completed
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a 50 MB reply was read to its end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_backend_gets_answers_or_clear_errors_and_stays_listed() {
    let (gateway, backend) = gateway("1s").await;
    let client = gateway.client();
    backend.set(Fault::Flap);
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..40 {
        let response = call(&client).await;
        if response["result"]["structuredContent"] == json!({"ok": true}) {
            ok += 1;
        } else {
            let message = internal_error(&response, "flap");
            assert!(message.contains("Backend faulty unreachable"), "{message}");
            failed += 1;
        }
        assert!(client.tool_names().await.iter().any(|n| n == TOOL));
    }
    assert!(
        ok > 0 && failed > 0,
        "it really flapped: {ok} ok, {failed} failed"
    );
}

/// One round of every fault: `n` calls each, made concurrently (but the chunked 50 MB).
async fn round(gateway: &Gateway, backend: &FaultyBackend, n: usize) {
    let client = gateway.client();
    for fault in [
        None,
        Some(Fault::Reset),
        Some(Fault::Slow),
        Some(Fault::Garbage),
        Some(Fault::Huge),
        Some(Fault::HugeChunked),
        Some(Fault::Cut),
        Some(Fault::Flap),
    ] {
        break_it(backend, fault);
        let responses = if fault == Some(Fault::HugeChunked) {
            // One at a time: each is read up to 16 MiB, and eight such buffers freed at once
            // stay with the allocator (resident, reused) by a varying amount.
            let mut all = Vec::new();
            for _ in 0..n {
                all.push(call(&client).await);
            }
            all
        } else {
            join_all((0..n).map(|_| call(&client))).await
        };
        for response in responses {
            if fault == Some(Fault::Flap) && response.get("result").is_some() {
                continue;
            }
            let message = internal_error(&response, &format!("{fault:?}"));
            assert!(
                message.contains(expected_message(fault)),
                "{fault:?}: {message}"
            );
        }
        heal(backend, fault).await;
    }
    assert!(call(&client).await.get("result").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_failing_calls_leak_no_descriptor_thread_or_memory() {
    // No discovery during the measure: only calls.
    let (gateway, backend) = gateway("60s").await;
    let pid = gateway.pid();
    // Warm-up at the same concurrency: pools, allocator arenas and lazy state settle.
    round(&gateway, &backend, 8).await;
    let baseline = Usage::of(pid);
    // 8 faults × 8 calls × 6 rounds = 384 failing calls, 96 of them 50 MB replies (48 cut
    // at the 16 MiB limit while being read).
    for _ in 0..6 {
        round(&gateway, &backend, 8).await;
    }
    let after = settles_to(pid, &baseline, "after 384 failing contract calls").await;
    eprintln!("contract faults: baseline {baseline:?}, after {after:?}");
}
