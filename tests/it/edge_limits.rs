//! The edge's limits against slow and greedy clients (issue 10: D1, D8, and clients that
//! leave mid-header): header and body deadlines, the connection cap with descriptors kept
//! for backends, the global body budget. Small limits keep every case within seconds; each
//! loop is bounded in count and time.

use std::time::Duration;

use serde_json::json;

use crate::common;
use common::raw::{self, RawConn};
use common::{eventually, Gateway, TestConfig};

const WAIT: Duration = Duration::from_secs(10);

async fn gateway_with(limits: &str, extra: &[&str]) -> Gateway {
    let mut config = TestConfig::new()
        .server("max_body_bytes: 64KiB")
        .server(&format!("limits: {{{limits}}}"));
    for line in extra {
        config = config.top(line);
    }
    let gateway = Gateway::start(&config.build()).await;
    gateway.wait_ready().await;
    gateway
}

fn ping(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"ping"}).to_string()
}

/// A ping over a fresh connection answers 200.
async fn pings(gateway: &Gateway) -> bool {
    let mut conn = RawConn::connect(gateway.port()).await;
    conn.send(&raw::post("/mcp", "", &ping(1))).await
        && conn
            .response(WAIT)
            .await
            .is_some_and(|r| r.status == 200 && r.json()["id"] == 1)
}

/// `text` without terminal colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines of the gateway's log at ERROR level.
fn error_lines(gateway: &Gateway) -> Vec<String> {
    gateway
        .logs()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(str::to_string)
        .collect()
}

/// D1: a header sent one byte at a time is cut at the header deadline (1 s here), while the
/// client is still sending; so is a connection that sends nothing. Neither is an ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_at_the_header_deadline() {
    let gateway = gateway_with("header_timeout: 1s", &[]).await;
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(conn.send(b"POST /mcp HTTP/1.1\r\nHo").await);
        slow.push(conn);
    }
    let mut silent = RawConn::connect(gateway.port()).await;
    let header = b"st: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    // One byte per 200 ms each, at most 50 bytes (10 s): the gateway must hang up first.
    let mut cut = vec![false; slow.len()];
    for byte in header.iter().take(50) {
        for (i, conn) in slow.iter_mut().enumerate() {
            if !cut[i]
                && (!conn.send(&[*byte]).await
                    || conn.closed_within(Duration::from_millis(40)).await)
            {
                cut[i] = true;
            }
        }
        if cut.iter().all(|c| *c) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(160)).await;
    }
    assert!(cut.iter().all(|c| *c), "every slow header was cut: {cut:?}");
    assert!(
        silent.closed_within(WAIT).await,
        "a silent connection is cut too"
    );
    assert!(pings(&gateway).await, "the gateway still serves");
    assert!(
        error_lines(&gateway).is_empty(),
        "{:?}",
        error_lines(&gateway)
    );
}

/// D1: a body sent one byte at a time after a complete header gets 408 at the body deadline,
/// and the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_at_the_body_deadline() {
    let gateway = gateway_with("body_timeout: 1s", &[]).await;
    let mut conn = RawConn::connect(gateway.port()).await;
    let head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 100\r\n\r\n";
    assert!(conn.send(head.as_bytes()).await);
    let mut answered = None;
    // One byte per 200 ms, at most 50 (10 s).
    for _ in 0..50 {
        if !conn.send(b" ").await {
            break;
        }
        if let Some(r) = conn.response(Duration::from_millis(200)).await {
            answered = Some(r);
            break;
        }
    }
    let response =
        answered.unwrap_or_else(|| panic!("no answer to a slow body\n{}", gateway.logs()));
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(response.json()["error"]["code"], -32600, "{response:?}");
    assert!(response.closes(), "{response:?}");
    assert!(conn.closed_within(WAIT).await);
    assert!(pings(&gateway).await);
}

/// D1: one connection over `max_connections` gets 503 with `Retry-After`; when the held
/// connections go, new ones are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused() {
    let gateway = gateway_with("max_connections: 4, header_timeout: 60s", &[]).await;
    // Four connections that stall mid-header and are admitted (a connection refused because
    // a probe of the test harness still held a slot gets its 503 at once, and is replaced).
    let mut held = Vec::new();
    for _ in 0..12 {
        if held.len() == 4 {
            break;
        }
        let mut conn = RawConn::connect(gateway.port()).await;
        conn.send(b"POST /mcp HTTP/1.1\r\n").await;
        if conn.response(Duration::from_secs(1)).await.is_none() {
            held.push(conn);
        }
    }
    assert_eq!(held.len(), 4, "four connections held");
    let mut extra = RawConn::connect(gateway.port()).await;
    extra.send(&raw::post("/mcp", "", &ping(1))).await;
    let refused = extra.response(WAIT).await.expect("an answer over the cap");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("1"), "{refused:?}");
    assert_eq!(refused.json()["error"], "too_many_connections");
    assert!(refused.closes());
    drop(held);
    eventually(WAIT, "a ping is served again", || async {
        pings(&gateway).await.then_some(())
    })
    .await;
}

/// D1: an open notification stream holds its connection's slot under the cap for as long
/// as it is open (once its head is written it is served by a small task of its own, not by
/// the HTTP session), and gives the slot back when the client leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_hold_their_slot_until_the_client_leaves() {
    let gateway = gateway_with("max_connections: 3", &[]).await;
    let sid = {
        let mut client = gateway.client();
        client.initialize("2025-11-25").await;
        client.session.clone().expect("a session id")
        // The client and its kept-alive connection go here.
    };
    let get = format!(
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\naccept: text/event-stream\r\nmcp-session-id: {sid}\r\nmcp-protocol-version: 2025-11-25\r\n\r\n"
    );
    let mut held = Vec::new();
    for _ in 0..12 {
        if held.len() == 3 {
            break;
        }
        let mut conn = RawConn::connect(gateway.port()).await;
        conn.send(get.as_bytes()).await;
        // A stream stays open; a refusal (a slot still held by a connection going away)
        // closes at once and is replaced.
        if !conn.closed_within(Duration::from_secs(1)).await {
            held.push(conn);
        }
    }
    assert_eq!(held.len(), 3, "three streams open");
    assert!(
        !pings(&gateway).await,
        "the streams hold every slot: a fourth connection is refused"
    );
    drop(held);
    eventually(
        WAIT,
        "a ping is served again once the streams' clients left",
        || async { pings(&gateway).await.then_some(()) },
    )
    .await;
}

/// D1: the connection cap leaves `reserved_fds` descriptors for backends and the store,
/// lowering the configured cap when the descriptor limit is too small for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_leaves_descriptors_in_reserve() {
    let gateway = gateway_with("max_connections: 1000000, reserved_fds: 5000", &[]).await;
    let logs = strip_ansi(&gateway.logs());
    let line = logs
        .lines()
        .find(|l| l.contains("edge limits"))
        .unwrap_or_else(|| panic!("the edge limits are logged at start\n{logs}"));
    let field = |name: &str| -> Option<u64> {
        let rest = line.split(&format!("{name}=")).nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let cap = field("max_connections").expect("max_connections logged");
    let limit = field("descriptor_limit").expect("descriptor_limit logged");
    assert!(
        cap + 5_000 <= limit,
        "cap {cap} leaves 5000 of {limit} descriptors: {line}"
    );
    if cap < 1_000_000 {
        assert!(logs.contains("max_connections lowered"), "{logs}");
    }
    assert!(pings(&gateway).await);
}

/// D8: request bodies share one memory budget: while two slow bodies hold 120 KiB of a
/// 128 KiB budget, a third body gets 503 with `Retry-After`; once they are gone, bodies are
/// read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_budget_are_refused() {
    let gateway = gateway_with("body_budget: 128KiB, body_timeout: 60s", &[]).await;
    let head = |len: usize| {
        format!("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {len}\r\n\r\n")
    };
    // Two requests that hold 60 KiB each while their body trickles (one refused because it
    // raced a request of the harness would get its 503 at once, and is replaced).
    let mut holders = Vec::new();
    for _ in 0..6 {
        if holders.len() == 2 {
            break;
        }
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(conn.send(format!("{}{{", head(60 * 1024)).as_bytes()).await);
        if conn.response(Duration::from_secs(1)).await.is_none() {
            holders.push(conn);
        }
    }
    assert_eq!(holders.len(), 2, "two bodies held");
    let padded = format!("{}{}", ping(5), " ".repeat(60 * 1024 - ping(5).len()));
    let request = format!("{}{padded}", head(padded.len()));
    let refused = eventually(WAIT, "a body over the budget is refused", || {
        let request = request.clone();
        let port = gateway.port();
        async move {
            let mut conn = RawConn::connect(port).await;
            conn.send(request.as_bytes()).await;
            conn.response(WAIT).await.filter(|r| r.status == 503)
        }
    })
    .await;
    assert_eq!(refused.header("retry-after"), Some("1"), "{refused:?}");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("server.limits.body_budget")),
        "{refused:?}"
    );
    assert!(refused.closes(), "{refused:?}");
    // A chunked body takes the budget chunk by chunk: 16 KiB more does not fit either.
    let mut chunked = RawConn::connect(gateway.port()).await;
    let chunk = " ".repeat(16 * 1024);
    let chunked_request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    assert!(chunked.send(chunked_request.as_bytes()).await);
    let refused = chunked
        .response(WAIT)
        .await
        .expect("an answer to the chunked body");
    assert_eq!(refused.status, 503, "{refused:?}");
    drop(holders);
    let served = eventually(WAIT, "the budget is free again", || {
        let request = request.clone();
        let port = gateway.port();
        async move {
            let mut conn = RawConn::connect(port).await;
            conn.send(request.as_bytes()).await;
            conn.response(WAIT).await.filter(|r| r.status == 200)
        }
    })
    .await;
    assert_eq!(served.json()["id"], 5);
}

/// Clients that disconnect in the middle of a header (or of a body) are logged at debug (and
/// counted there), never at ERROR: a client must not choose the gateway's error-log volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_header_disconnects_are_debug_not_error() {
    let gateway = gateway_with(
        "header_timeout: 5s",
        &["logging: {level: \"cortex_gateway=debug,info\"}"],
    )
    .await;
    for _ in 0..20 {
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(
            conn.send(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nconte")
                .await
        );
        drop(conn);
    }
    // Leaving mid-body is the client's business too.
    let head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 1000\r\n\r\n{\"jsonrpc\"";
    for _ in 0..10 {
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(conn.send(head.as_bytes()).await);
        drop(conn);
    }
    eventually(WAIT, "20 mid-header departures logged at debug", || async {
        (gateway
            .logs()
            .matches("client left in the middle of a request header")
            .count()
            >= 20)
            .then_some(())
    })
    .await;
    assert!(pings(&gateway).await);
    assert!(
        error_lines(&gateway).is_empty(),
        "{:?}",
        error_lines(&gateway)
    );
}
