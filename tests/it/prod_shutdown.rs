//! Graceful shutdown of the running binary: SIGTERM ends the process as soon as the work in
//! flight is done, not after the whole grace period; a call in flight completes; an open
//! notification stream is closed rather than waited for; a second signal exits at once.
//!
//! The grace period of these gateways is 60 s and each test waits at most 20 s for the exit:
//! a gateway that slept its grace period would fail, whatever the machine's speed.

use crate::common;

use std::time::Duration;

use common::{BackendSpec, Gateway, TestBackend, TestConfig};
use serde_json::json;

/// Longer than any test waits.
const GRACE: &str = "grace_period: 60s";
/// The test's own bound on the exit (well within GRACE).
const EXIT_WAIT: Duration = Duration::from_secs(20);

fn config(backend: &TestBackend) -> String {
    TestConfig::new()
        .backend("slow", &backend.url())
        .build()
        .replace("grace_period: 0s", GRACE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_gateway_exits_on_sigterm_without_waiting_the_grace_period() {
    let backend = TestBackend::start(BackendSpec::tools(&["wait"], "mcp:a:read")).await;
    let mut gateway = Gateway::start(&config(&backend)).await;
    gateway.wait_ready().await;
    // A request served before: its keep-alive connection stays open, idle.
    let client = gateway.client();
    client.call_tool("slow_wait", json!({})).await;

    gateway.signal(libc::SIGTERM);
    let code = gateway.wait_exit(EXIT_WAIT).await.unwrap_or_else(|| {
        panic!(
            "still running {EXIT_WAIT:?} after SIGTERM with a 60 s grace period:\n{}",
            gateway.logs()
        )
    });
    assert_eq!(code, Some(0), "{}", gateway.logs());
    assert!(
        gateway.logs().contains("every request finished"),
        "{}",
        gateway.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_completes_and_new_connections_are_refused() {
    let backend = TestBackend::start(BackendSpec::tools(&["wait"], "mcp:a:read")).await;
    backend.delay("wait", Duration::from_secs(3));
    let mut gateway = Gateway::start(&config(&backend)).await;
    gateway.wait_ready().await;
    let call = {
        let client = gateway.client();
        tokio::spawn(async move { client.call_tool("slow_wait", json!({"message": "m"})).await })
    };
    backend
        .wait_for_calls("wait", 1, Duration::from_secs(10))
        .await;

    gateway.signal(libc::SIGTERM);
    // The listener closes: a new connection is refused while the call still runs.
    let port = gateway.port();
    common::eventually(Duration::from_secs(10), "the listener closed", || async {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    })
    .await;
    assert!(!call.is_finished(), "the call is still in flight");
    let result = tokio::time::timeout(EXIT_WAIT, call)
        .await
        .expect("the call in flight finishes")
        .expect("task");
    assert!(result["isError"] != json!(true), "{result}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("wait"),
        "the backend's answer: {result}"
    );
    let code = gateway.wait_exit(EXIT_WAIT).await.unwrap_or_else(|| {
        panic!(
            "still running after the last call finished:\n{}",
            gateway.logs()
        )
    });
    assert_eq!(code, Some(0), "{}", gateway.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_is_closed_not_waited_for() {
    let backend = TestBackend::start(BackendSpec::tools(&["wait"], "mcp:a:read")).await;
    let mut gateway = Gateway::start(&config(&backend)).await;
    gateway.wait_ready().await;
    let mut client = gateway.client();
    client.initialize(common::VERSIONS[0]).await;
    let mut stream = client.open_stream(&[]).await;
    assert_eq!(stream.status, 200);
    stream
        .next_event(Duration::from_secs(5))
        .await
        .expect("priming event");

    gateway.signal(libc::SIGTERM);
    let code = gateway
        .wait_exit(EXIT_WAIT)
        .await
        .unwrap_or_else(|| panic!("an open stream held the shutdown:\n{}", gateway.logs()));
    assert_eq!(code, Some(0), "{}", gateway.logs());
    // The stream ended (cleanly or by the closed connection), it did not hang.
    assert!(
        stream.next_event(Duration::from_secs(5)).await.is_none(),
        "no event after the shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let backend = TestBackend::start(BackendSpec::tools(&["wait"], "mcp:a:read")).await;
    backend.delay("wait", Duration::from_secs(120));
    let mut gateway = Gateway::start(&config(&backend)).await;
    gateway.wait_ready().await;
    let call = {
        let client = gateway.client();
        tokio::spawn(async move {
            let _ = client
                .post(
                    &client.request_body("tools/call", json!({"name": "slow_wait"})),
                    &[],
                )
                .await;
        })
    };
    backend
        .wait_for_calls("wait", 1, Duration::from_secs(10))
        .await;
    gateway.signal(libc::SIGTERM);
    gateway
        .wait_for_log("graceful shutdown", Duration::from_secs(10))
        .await;
    // The first signal waits for the call (it would wait up to 60 s)...
    assert!(
        gateway
            .wait_exit(Duration::from_millis(500))
            .await
            .is_none(),
        "exited with a call in flight after one SIGTERM"
    );
    // ...the second ends it now.
    gateway.signal(libc::SIGTERM);
    let code = gateway.wait_exit(EXIT_WAIT).await.unwrap_or_else(|| {
        panic!(
            "a second SIGTERM did not end the process:\n{}",
            gateway.logs()
        )
    });
    assert_eq!(code, Some(1), "{}", gateway.logs());
    call.abort();
}
