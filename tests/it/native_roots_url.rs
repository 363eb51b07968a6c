//! Server requests that only a real client answers, through the gateway: the native fixture
//! (tests/python/native_fixture.py, over stdio) asks for the caller's roots during a call and
//! sends a URL-mode elicitation; the Python SDK client (tests/python/native_roots_url.py,
//! `mcp` 2.3.0) answers both from its callbacks.

use crate::common;

use std::time::Duration;

use common::interop;
use serde_json::Value;

use crate::native_stdio::gateway_with_fixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_and_url_elicitation_are_answered_by_the_python_sdk_client() {
    let gateway = gateway_with_fixture(&[]).await;
    let script = interop::repo_path("tests/python/native_roots_url.py");
    let stdout = interop::run_python_script(
        vec![script.display().to_string(), gateway.mcp_url()],
        gateway.dir().to_owned(),
        Duration::from_secs(120),
    )
    .await;
    let out: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{}", gateway.logs()));

    // roots/list, asked by the server during the call, answered by list_roots_callback.
    assert_eq!(out["rootsAsked"], 1, "{out}");
    assert_eq!(
        out["roots"], "file:///work/alpha file:///work/beta",
        "{out}"
    );

    // URL-mode elicitation reaches the client as the server sent it, and its answer goes back.
    let requests = out["urlRequests"].as_array().expect("url requests");
    assert_eq!(requests.len(), 1, "{out}");
    assert_eq!(requests[0]["mode"], "url", "{out}");
    assert_eq!(requests[0]["url"], "https://example.com/link?x=1", "{out}");
    assert_eq!(requests[0]["elicitationId"], "el-42", "{out}");
    assert_eq!(out["url"], "url elicitation: accept", "{out}");
}
