//! HTTP attacks on the edge, over raw sockets against the real binary. Already covered
//! elsewhere (and listed in docs/reliability.md, "Attack suites"): Content-Length with
//! Transfer-Encoding (`edge_http::content_length_with_transfer_encoding_closes`), bad chunk
//! sizes (`edge_http::malformed_chunked_bodies_are_400`), slow headers and silent
//! connections cut at the deadline (`edge_limits::slow_headers_are_cut_at_the_header_deadline`),
//! the connection cap (`edge_limits::connections_over_the_cap_are_refused`), `Host` rules
//! (`mcp_transport::host_rules_on_loopback`, `edge_http::host_is_required_and_always_checked`).
//! This file adds: two Content-Lengths, header floods, slowloris while others are served,
//! 10,000 idle connections, descriptors running out (EMFILE) under a burst, deep JSON nesting,
//! invalid UTF-8, and more DNS-rebinding hosts.

use crate::common;

use std::time::Duration;

use common::raw::{self, RawConn};
use common::{eventually, Gateway, TestConfig};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

async fn gateway_with(limits: &str) -> Gateway {
    let gateway = Gateway::start(
        &TestConfig::new()
            .server(&format!("limits: {{{limits}}}"))
            .build(),
    )
    .await;
    gateway.wait_ready().await;
    gateway
}

fn ping(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"ping"}).to_string()
}

/// A ping over a fresh connection, answered 200 with its id.
async fn pings(gateway: &Gateway) -> bool {
    let mut conn = RawConn::connect(gateway.port()).await;
    if !conn.send(&raw::post("/mcp", "", &ping(7))).await {
        return false;
    }
    conn.response(WAIT)
        .await
        .is_some_and(|r| r.status == 200 && r.json()["id"] == 7)
}

/// Sends `request` on a new connection: the answer's status, or None when the gateway
/// closed without one.
async fn status_of(gateway: &Gateway, request: &[u8]) -> Option<u16> {
    let mut conn = RawConn::connect(gateway.port()).await;
    conn.send(request).await;
    conn.response(WAIT).await.map(|r| r.status)
}

/// Two Content-Length headers that disagree (or one listing two values) are a framing error:
/// 400 and the connection closed, so no second request can be smuggled behind the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_content_lengths_are_refused_and_close() {
    let gateway = gateway_with("header_timeout: 15s").await;
    let body = ping(1);
    let smuggled = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{}",
        ping(2).len(),
        ping(2)
    );
    for lengths in [
        format!(
            "content-length: {}\r\ncontent-length: {}\r\n",
            body.len(),
            body.len() + smuggled.len()
        ),
        format!("content-length: {}\r\ncontent-length: 0\r\n", body.len()),
        format!(
            "content-length: {}, {}\r\n",
            body.len(),
            body.len() + smuggled.len()
        ),
        format!("content-length: +{}\r\n", body.len()),
        format!(
            "content-length: {} \r\ncontent-length:{}\r\n",
            body.len(),
            body.len() + 1
        ),
    ] {
        let request = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n{lengths}\r\n{body}{smuggled}"
        );
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(conn.send(request.as_bytes()).await);
        let first = conn.response(WAIT).await;
        if let Some(r) = &first {
            assert_eq!(r.status, 400, "{lengths:?}: {r:?}");
        }
        // Whatever the first answer, the smuggled request is never answered.
        assert!(
            conn.response(Duration::from_secs(2)).await.is_none(),
            "{lengths:?}: a second request was read from the body"
        );
        assert!(conn.closed_within(WAIT).await, "{lengths:?}: closes");
    }
    assert!(pings(&gateway).await);
}

/// Header floods: many small headers, one huge header, a huge request line. Each is refused
/// (400/431) or the connection closed; the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_floods_are_refused() {
    let gateway = gateway_with("header_timeout: 15s").await;
    let body = ping(1);
    let with_headers = |extra: String| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let many: String = (0..5_000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let some: String = (0..300).map(|i| format!("x-h{i}: v\r\n")).collect();
    let huge = format!("x-big: {}\r\n", "b".repeat(100 * 1024));
    let long_line = format!(
        "POST /mcp?{} HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-length: 0\r\n\r\n",
        "q".repeat(100 * 1024)
    )
    .into_bytes();
    for (what, request) in [
        ("5,000 headers", with_headers(many)),
        ("300 headers", with_headers(some)),
        ("a 100 KiB header", with_headers(huge)),
        ("a 100 KiB request line", long_line),
    ] {
        let status = status_of(&gateway, &request).await;
        assert!(
            matches!(status, None | Some(400) | Some(413) | Some(414) | Some(431)),
            "{what}: {status:?}"
        );
    }
    assert!(pings(&gateway).await, "still serving");
}

/// Slowloris: 200 connections each sending a header one byte per second hold no worker:
/// while they drip, other clients are served; at the header deadline they are all cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_holds_no_worker() {
    let gateway = gateway_with("header_timeout: 4s").await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(conn.send(b"POST /mcp HTTP/1.1\r\nHo").await);
        slow.push(conn);
    }
    let drip = b"st: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut served = 0;
    let mut cut = vec![false; slow.len()];
    for byte in drip.iter().take(30) {
        for (i, conn) in slow.iter_mut().enumerate() {
            if !cut[i] && !conn.send(&[*byte]).await {
                cut[i] = true;
            }
        }
        // Served in the middle of the drip: no worker is held by the slow ones.
        if served < 3 && pings(&gateway).await {
            served += 1;
        }
        for (i, conn) in slow.iter_mut().enumerate() {
            if !cut[i] && conn.closed_within(Duration::from_millis(1)).await {
                cut[i] = true;
            }
        }
        if cut.iter().all(|c| *c) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(served, 3, "pings answered while 200 slow headers dripped");
    for (i, conn) in slow.iter_mut().enumerate() {
        if !cut[i] {
            cut[i] = conn.closed_within(WAIT).await;
        }
    }
    assert!(cut.iter().all(|c| *c), "every slow header was cut");
    assert!(pings(&gateway).await);
}

/// The number of descriptors the process `pid` holds open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// 10,000 idle connections against a cap of 1,000, with the gateway's descriptor limit cut
/// (prlimit) to what it holds at rest plus the cap and the reserve: it refuses or closes the
/// connections over the cap, cuts the admitted ones at the header deadline, never crashes,
/// and then serves again with its descriptors back to where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_stay_bounded() {
    const CONNECTIONS: usize = 10_000;
    const CAP: usize = 1_000;
    const RESERVE: usize = 256;
    let gateway = gateway_with(&format!(
        "max_connections: {CAP}, reserved_fds: {RESERVE}, header_timeout: 3s"
    ))
    .await;
    let pid = gateway.pid();
    let before = open_fds(pid);
    assert!(before > 0, "/proc/{pid}/fd is readable");
    // The gateway's own descriptor limit is cut to what it already holds plus the cap and the
    // reserve: a descriptor more would fail (EMFILE) and show in its log.
    let limit = before + CAP + RESERVE;
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .output()
        .expect("prlimit (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut peak = before;

    let port = gateway.port();
    let mut idle = Vec::with_capacity(CONNECTIONS);
    let mut failed = 0;
    for batch in 0..CONNECTIONS / 500 {
        let connects = (0..500).map(|_| async move {
            tokio::time::timeout(
                Duration::from_secs(10),
                tokio::net::TcpStream::connect(("127.0.0.1", port)),
            )
            .await
        });
        for r in futures::future::join_all(connects).await {
            match r {
                Ok(Ok(s)) => idle.push(s),
                _ => failed += 1,
            }
        }
        let held = open_fds(pid);
        peak = peak.max(held);
        assert!(
            held <= limit,
            "after {} connections the gateway holds {held} descriptors",
            (batch + 1) * 500
        );
    }
    assert!(
        idle.len() + failed == CONNECTIONS,
        "{} connected, {failed} failed",
        idle.len()
    );
    // Every connection ends: refused over the cap, or cut at the header deadline.
    let port_closed = |mut s: tokio::net::TcpStream| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    };
    let ends = futures::future::join_all(idle.into_iter().map(port_closed)).await;
    let open = ends.iter().filter(|closed| !**closed).count();
    assert_eq!(open, 0, "{open} idle connections were never closed");
    assert!(open_fds(pid) <= limit);
    // Measured, not asserted: sockets accepted but not yet refused borrow from the reserve
    // during the burst (docs/reliability.md, "Attack suites"), and the accept loop may meet
    // EMFILE; it pauses and goes on. What is asserted is that the gateway recovers.
    let accept_failures = gateway.logs().matches("os error 24").count();
    eprintln!(
        "10,000 idle connections: {before} descriptors at rest, peak sampled {peak}, limit {limit}, accept() EMFILE {accept_failures} time(s)"
    );
    eventually(WAIT, "served again", || async {
        pings(&gateway).await.then_some(())
    })
    .await;
    eventually(WAIT, "descriptors back to their level", || async {
        (open_fds(pid) <= before + 16).then_some(())
    })
    .await;
}

/// Descriptors run out under a connection burst (the gateway's limit cut far below
/// `max_connections + reserved_fds`, as when something else eats its descriptors): the
/// listener's `accept()` fails with EMFILE, which it logs (`Accept() failed … Too many open
/// files`) and answers with a one-second pause instead of spinning; connections already
/// accepted keep being served; the burst waits in the kernel's listen queue; once the idle
/// connections are cut at the header deadline (or closed by their clients), the queued ones
/// are accepted and answered, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_running_out_pause_accept_and_the_gateway_recovers() {
    const BURST: usize = 200;
    const HEADROOM: usize = 40;
    let gateway =
        gateway_with("max_connections: 1000, reserved_fds: 256, header_timeout: 4s").await;
    let pid = gateway.pid();
    // A keep-alive connection accepted before the descriptors run out.
    let mut kept = RawConn::connect(gateway.port()).await;
    assert!(kept.send(&raw::post("/mcp", "", &ping(1))).await);
    assert_eq!(kept.response(WAIT).await.map(|r| r.status), Some(200));
    let before = open_fds(pid);
    let limit = before + HEADROOM;
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .output()
        .expect("prlimit (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = std::time::Instant::now();
    // The burst: far more connections than descriptors left. The kernel completes them all
    // (the listen queue holds them); the gateway accepts until EMFILE.
    let port = gateway.port();
    let connects = (0..BURST).map(|_| async move {
        tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(("127.0.0.1", port))).await
    });
    let mut idle = Vec::new();
    for r in futures::future::join_all(connects).await {
        if let Ok(Ok(s)) = r {
            idle.push(s);
        }
    }
    assert!(idle.len() > HEADROOM, "{} of {BURST} connected", idle.len());
    eventually(WAIT, "accept() failing with EMFILE, logged", || async {
        gateway.logs().contains("Accept() failed").then_some(())
    })
    .await;
    // Measured, not asserted: the limit caps descriptor numbers, not their count.
    let exhausted = open_fds(pid);
    // A connection accepted before keeps being served during the exhaustion.
    assert!(kept.send(&raw::post("/mcp", "", &ping(2))).await);
    let during = kept.response(WAIT).await;
    assert_eq!(during.map(|r| r.json()["id"].clone()), Some(json!(2)));
    // A new client queued behind the burst is answered once the idle ones are cut at the
    // header deadline: the gateway recovers by itself, its clients still connected.
    let mut queued = RawConn::connect(gateway.port()).await;
    assert!(queued.send(&raw::post("/mcp", "", &ping(3))).await);
    let answered = queued.response(Duration::from_secs(60)).await;
    assert_eq!(answered.map(|r| r.json()["id"].clone()), Some(json!(3)));
    drop(idle);
    eventually(WAIT, "served again", || async {
        pings(&gateway).await.then_some(())
    })
    .await;
    eventually(WAIT, "descriptors back to their level", || async {
        (open_fds(pid) <= before + 16).then_some(())
    })
    .await;
    // The pause: one failed accept() per listener and second at most, not a busy loop.
    let logs = gateway.logs();
    let failures = logs
        .lines()
        .filter(|l| l.contains("Accept() failed"))
        .collect::<Vec<_>>();
    assert!(
        failures.iter().all(|l| l.contains("Too many open files")),
        "{failures:?}"
    );
    let seconds = started.elapsed().as_secs() as usize + 1;
    assert!(
        failures.len() <= 4 * seconds,
        "{} failed accept() in {seconds} s: the listener spins",
        failures.len()
    );
    eprintln!(
        "descriptors run out: {before} at rest, limit {limit}, {exhausted} held when exhausted, {BURST} connections, {} failed accept() over {seconds} s, recovered",
        failures.len()
    );
}

/// Deeply nested JSON (in the body, and inside `params`) is a parse error, not a crash or a
/// stack overflow; the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_nesting_is_a_parse_error() {
    let gateway = gateway_with("header_timeout: 15s").await;
    let depth = 100_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let in_params = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"x\",\"arguments\":{}1{}}}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    let unclosed = "[".repeat(depth);
    for (what, body) in [
        ("arrays", arrays),
        ("objects", objects),
        ("inside params", in_params),
        ("unclosed", unclosed),
    ] {
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(conn.send(&raw::post("/mcp", "", &body)).await);
        let r = conn
            .response(WAIT)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer\n{}", gateway.logs()));
        assert!(
            r.status == 400 || r.status == 413,
            "{what}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        if r.status == 400 {
            assert_eq!(r.json()["error"]["code"], -32700, "{what}: {r:?}");
        }
    }
    assert!(pings(&gateway).await, "still serving");
}

/// Invalid UTF-8 in the body is a parse error (-32700); in a JSON-RPC method or tool name it
/// never reaches a backend; in the Authorization header it is a 401 in oauth mode (here, with
/// no auth, it is ignored); the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_refused() {
    let gateway = gateway_with("header_timeout: 15s").await;
    let bodies: Vec<Vec<u8>> = vec![
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pi\xffng\"}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xc3\x28\"}}".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":\"\xed\xa0\x80\",\"method\":\"ping\"}".to_vec(),
        b"\xef\xbb\xbf\xff\xfe{}".to_vec(),
    ];
    for body in bodies {
        let mut request = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(conn.send(&request).await);
        let r = conn.response(WAIT).await.expect("an answer");
        assert_eq!(r.status, 400, "{:?}: {r:?}", String::from_utf8_lossy(&body));
        assert_eq!(r.json()["error"]["code"], -32700, "{r:?}");
    }
    // In a header value the gateway reads (the protocol version): refused, not a crash.
    let mut request = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\nmcp-protocol-version: 2025-\xff\r\n".to_vec();
    request.extend(format!("content-length: {}\r\n\r\n{}", ping(1).len(), ping(1)).into_bytes());
    let status = status_of(&gateway, &request).await;
    assert!(matches!(status, Some(400)), "{status:?}");
    assert!(pings(&gateway).await);
}

/// DNS rebinding: names an attacker's DNS could point at 127.0.0.1 are refused on a loopback
/// listener (403 `forbidden_host`), however they are dressed up; malformed ones are 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_hosts_are_refused() {
    let gateway = gateway_with("header_timeout: 15s").await;
    for host in [
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "127.0.0.1.nip.io:8080",
        "evil.example:127",
        "LOCALHOST.evil.example",
        "xn--lcalhost-9za.example",
        "[::ffff:7f00:1].evil.example",
    ] {
        let request = format!(
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{}",
            ping(1).len(),
            ping(1)
        );
        let mut conn = RawConn::connect(gateway.port()).await;
        assert!(conn.send(request.as_bytes()).await);
        let r = conn.response(WAIT).await.expect("an answer");
        assert!(r.status == 403 || r.status == 400, "Host {host}: {r:?}");
        if r.status == 403 {
            assert_eq!(r.json()["error"], "forbidden_host", "{host}");
        }
    }
    for host in [
        "127.0.0.1@evil.example",
        "127.0.0.1 evil.example",
        "127.0.0.1/evil",
        "127.0.0.1#evil",
    ] {
        let request = format!(
            "POST /mcp HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{}",
            ping(1).len(),
            ping(1)
        );
        let status = status_of(&gateway, request.as_bytes()).await;
        assert!(
            matches!(status, None | Some(400) | Some(403)),
            "Host {host}: {status:?}"
        );
    }
    assert!(pings(&gateway).await);
}
