//! HTTP/1 framing at the edge, over raw sockets (issue 10: D5–D7, D9–D11): malformed
//! chunked bodies, Content-Length with Transfer-Encoding, HTTP/1.0 clients, pipelining,
//! `Host` rules and unreadable session ids.

use std::time::Duration;

use serde_json::json;

use crate::common;
use common::raw::{self, RawConn};
use common::{Gateway, TestConfig};

const WAIT: Duration = Duration::from_secs(10);

async fn gateway() -> Gateway {
    let gateway = Gateway::start(&TestConfig::new().build()).await;
    gateway.wait_ready().await;
    gateway
}

fn ping(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"ping"}).to_string()
}

const CHUNKED_HEAD: &str = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

/// D5: a malformed chunked request body gets a 400 (and the connection closes), not a
/// dropped connection without a status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_bodies_are_400() {
    let gateway = gateway().await;
    for chunks in [
        "zz\r\n{\"a\":1}\r\n0\r\n\r\n",
        "ffffffffffffffffffffff\r\n{\"a\":1}\r\n0\r\n\r\n",
        "-5\r\n{\"a\":1}\r\n0\r\n\r\n",
        "0x2a\r\n{\"a\":1}\r\n0\r\n\r\n",
        "7 1\r\n{\"a\":1}\r\n0\r\n\r\n",
        "7\r\n{\"a\":1}XX0\r\n\r\n",
    ] {
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(
            conn.send(format!("{CHUNKED_HEAD}{chunks}").as_bytes())
                .await
        );
        let response = conn
            .response(WAIT)
            .await
            .unwrap_or_else(|| panic!("{chunks:?}: no response\n{}", gateway.logs()));
        assert_eq!(response.status, 400, "{chunks:?}: {response:?}");
        assert!(
            conn.closed_within(WAIT).await,
            "{chunks:?}: the connection closes"
        );
    }
    // A well-formed chunked body is still served.
    let body = ping(1);
    let mut conn = RawConn::connect(gateway.port()).await;
    let chunked = format!("{CHUNKED_HEAD}{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    assert!(conn.send(chunked.as_bytes()).await);
    let response = conn.response(WAIT).await.expect("a response");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.json()["id"], 1);
}

/// D6: after a request with both Content-Length and Transfer-Encoding the connection is
/// closed (RFC 9112 §6.1), and the answer says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_closes() {
    let gateway = gateway().await;
    let body = ping(1);
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let mut conn = RawConn::connect(gateway.port()).await;
    assert!(conn.send(request.as_bytes()).await);
    let response = conn.response(WAIT).await.expect("a response");
    assert!(response.closes(), "Connection: close: {response:?}");
    assert_ne!(response.header("connection"), Some("keep-alive"));
    assert!(conn.closed_within(WAIT).await, "the connection closes");
}

/// D7: an HTTP/1.0 client gets a Content-Length, never chunked, and the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_gets_content_length_and_close() {
    let gateway = gateway().await;
    for body in [
        ping(1),
        json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string(),
    ] {
        let request = format!(
            "POST /mcp HTTP/1.0\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(conn.send(request.as_bytes()).await);
        let response = conn.response(WAIT).await.expect("a response");
        assert_eq!(response.status, 200, "{response:?}");
        assert!(
            response.header("transfer-encoding").is_none(),
            "{response:?}"
        );
        assert_eq!(
            response.header("content-length"),
            Some(response.body.len().to_string().as_str()),
            "{response:?}"
        );
        assert_ne!(
            response.header("connection").map(str::to_ascii_lowercase),
            Some("keep-alive".to_string()),
            "{response:?}"
        );
        assert_eq!(response.json()["id"], 1, "{response:?}");
        assert!(conn.closed_within(WAIT).await, "the connection closes");
    }
}

/// D9: requests pipelined on one connection are all answered, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let gateway = gateway().await;
    let mut all = Vec::new();
    for id in 1..=3 {
        all.extend(raw::post("/mcp", "", &ping(id)));
    }
    all.extend(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut conn = RawConn::connect(gateway.port()).await;
    assert!(conn.send(&all).await);
    for id in 1..=3 {
        let response = conn
            .response(WAIT)
            .await
            .unwrap_or_else(|| panic!("answer {id}\n{}", gateway.logs()));
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.json()["id"], id, "in order: {response:?}");
    }
    let health = conn.response(WAIT).await.expect("the fourth answer");
    assert_eq!(health.json()["status"], "ok", "{health:?}");
    // The connection is still usable after the pipeline.
    assert!(conn.send(&raw::post("/mcp", "", &ping(9))).await);
    let response = conn.response(WAIT).await.expect("a later answer");
    assert_eq!(response.json()["id"], 9);
}

/// D10: HTTP/1.1 without `Host`, with two, or with one that is not visible ASCII is 400;
/// HTTP/1.0 without `Host` on a loopback listener does not skip the DNS-rebinding check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_required_and_always_checked() {
    let gateway = gateway().await;
    let body = ping(1);
    let without_host = |version: &str, host_lines: &[u8]| {
        let mut r = format!("POST /mcp {version}\r\n").into_bytes();
        r.extend_from_slice(host_lines);
        r.extend(
            format!(
                "content-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        );
        r
    };
    for (what, request) in [
        ("no Host", without_host("HTTP/1.1", b"")),
        (
            "two Hosts",
            without_host("HTTP/1.1", b"Host: 127.0.0.1\r\nHost: evil.example\r\n"),
        ),
        (
            "non-ASCII Host",
            without_host("HTTP/1.1", b"Host: 127.0.0.1\xc3\xa9\r\n"),
        ),
    ] {
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(conn.send(&request).await);
        let response = conn.response(WAIT).await.expect("a response");
        assert_eq!(response.status, 400, "{what}: {response:?}");
    }
    let mut conn = RawConn::connect(gateway.port()).await;
    assert!(conn.send(&without_host("HTTP/1.0", b"")).await);
    let response = conn.response(WAIT).await.expect("a response");
    assert_eq!(response.status, 403, "HTTP/1.0 without Host: {response:?}");
    assert_eq!(response.json()["error"], "forbidden_host", "{response:?}");
}

/// D11: an `Mcp-Session-Id` with non-ASCII bytes gets the same 404 as a tampered id, and is
/// not served statelessly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_session_id_is_404_like_a_tampered_one() {
    let gateway = gateway().await;
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string();
    let mut answers = Vec::new();
    for sid in [&b"tampered-session-id"[..], &b"caf\xc3\xa9-session"[..]] {
        let mut extra = b"mcp-session-id: ".to_vec();
        extra.extend_from_slice(sid);
        extra.extend_from_slice(b"\r\nmcp-protocol-version: 2025-11-25\r\n");
        let mut request = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n",
            list.len()
        )
        .into_bytes();
        request.extend_from_slice(&extra);
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(list.as_bytes());
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(conn.send(&request).await);
        let response = conn.response(WAIT).await.expect("a response");
        assert_eq!(response.status, 404, "{response:?}");
        answers.push(response.json()["error"]["code"].clone());
    }
    assert_eq!(answers[0], answers[1], "the same answer as a tampered id");
}
