//! `Mcp-Session-Id` sessions: sealed ids bound to the caller, 404 for unknown, tampered,
//! foreign, expired and deleted ids, DELETE, and `sessions.mode: required`.

use crate::common;

use std::time::{Duration, Instant};

use common::{Gateway, McpClient, TestConfig, SECRET_B};
use serde_json::{json, Value};

/// Asserts the reply is the "session not found" 404 with the request id echoed.
fn assert_session_gone(reply: &common::HttpReply, id: &Value) {
    assert_eq!(reply.status, 404, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], -32001, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Session not found or expired"),
        "{message}"
    );
    assert_eq!(&body["id"], id, "id echoed: {body}");
}

/// Sends tools/list with the client's session and returns (reply, request id).
async fn list_with(client: &McpClient) -> (common::HttpReply, Value) {
    let body = client.request_body("tools/list", json!({}));
    let id = body["id"].clone();
    (client.post(&body, &[]).await, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_session_is_accepted() {
    let gateway = Gateway::start(&TestConfig::new().build()).await;
    let mut client = gateway.client();
    client.initialize("2025-11-25").await;
    assert!(client.session.is_some(), "initialize issues Mcp-Session-Id");
    let (reply, _) = list_with(&client).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(client.result("ping", json!({})).await, json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_tampered_ids_are_404() {
    let gateway = Gateway::start(&TestConfig::new().build()).await;
    let mut client = gateway.client();
    client.initialize("2025-06-18").await;
    let real = client.session.clone().expect("session id");

    // Flip one character in the middle, and also truncate and extend it.
    let mut chars: Vec<char> = real.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    let flipped: String = chars.into_iter().collect();
    for forged in [
        flipped,
        real[..real.len() - 1].to_owned(),
        format!("{real}x"),
        "not-a-session".to_owned(),
        "0".repeat(real.len()),
    ] {
        let mut forger = client.clone();
        forger.session = Some(forged.clone());
        let (reply, id) = list_with(&forger).await;
        assert_session_gone(&reply, &id);
    }
    // The genuine id still works.
    let (reply, _) = list_with(&client).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// Ids are sealed: a gateway with another secret cannot open them; a replica with the same
/// secret and the same principal can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_sealed_by_another_secret_are_404_and_replicas_share_them() {
    let a = Gateway::start(&TestConfig::new().build()).await;
    let a2 = Gateway::start(&TestConfig::new().build()).await;
    let b = Gateway::start(
        &TestConfig::new()
            .sessions(&format!("secret: \"{SECRET_B}\""))
            .build(),
    )
    .await;
    let mut client = a.client();
    client.initialize("2025-11-25").await;
    let session = client.session.clone().expect("session id");

    let mut on_b = b.client();
    on_b.session = Some(session.clone());
    on_b.protocol_version = client.protocol_version.clone();
    let (reply, id) = list_with(&on_b).await;
    assert_session_gone(&reply, &id);

    let mut on_a2 = a2.client();
    on_a2.session = Some(session);
    on_a2.protocol_version = client.protocol_version.clone();
    let (reply, _) = list_with(&on_a2).await;
    assert_eq!(
        reply.status,
        200,
        "same secret, same subject: {}",
        reply.text()
    );
}

/// A session belongs to its subject: the same key, another principal → 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_subjects_session_is_404() {
    let alice = Gateway::start(
        &TestConfig::new()
            .auth(&[
                "mode: none",
                "principal:",
                "  sub: alice",
                "  scopes: [\"*\"]",
            ])
            .build(),
    )
    .await;
    let bob = Gateway::start(
        &TestConfig::new()
            .auth(&[
                "mode: none",
                "principal:",
                "  sub: bob",
                "  scopes: [\"*\"]",
            ])
            .build(),
    )
    .await;
    let mut client = alice.client();
    client.initialize("2025-11-25").await;
    let mut as_bob = bob.client();
    as_bob.session = client.session.clone();
    as_bob.protocol_version = client.protocol_version.clone();
    let (reply, id) = list_with(&as_bob).await;
    assert_session_gone(&reply, &id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_after_the_absolute_timeout() {
    let gateway = Gateway::start(
        &TestConfig::new()
            .sessions("absolute_timeout: 2s")
            .sessions("idle_timeout: 2s")
            .build(),
    )
    .await;
    let mut client = gateway.client();
    let started = Instant::now();
    client.initialize("2025-03-26").await;
    let (reply, _) = list_with(&client).await;
    assert_eq!(reply.status, 200, "fresh session works: {}", reply.text());

    let deadline = started + Duration::from_secs(8);
    loop {
        let (reply, id) = list_with(&client).await;
        if reply.status == 404 {
            assert_session_gone(&reply, &id);
            // Expiry may be sealed with whole-second precision: at least 1 s of the 2 s.
            assert!(
                started.elapsed() >= Duration::from_millis(950),
                "expired too early: {:?}",
                started.elapsed()
            );
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(
            Instant::now() < deadline,
            "session did not expire within 8 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_the_session() {
    let gateway = Gateway::start(&TestConfig::new().build()).await;
    let mut client = gateway.client();
    client.initialize("2025-11-25").await;

    let reply = client.delete(&[]).await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    let (reply, id) = list_with(&client).await;
    assert_session_gone(&reply, &id);
    let reply = client.delete(&[]).await;
    assert_eq!(reply.status, 404, "deleting twice: {}", reply.text());

    let anonymous = McpClient::new(&gateway.mcp_url());
    let reply = anonymous.delete(&[]).await;
    assert_eq!(reply.status, 400, "DELETE without id: {}", reply.text());
    let reply = anonymous.delete(&[("mcp-session-id", "garbage")]).await;
    assert_eq!(
        reply.status,
        404,
        "DELETE of an unknown id: {}",
        reply.text()
    );

    // Other sessions are unaffected.
    let mut other = gateway.client();
    other.initialize("2025-11-25").await;
    let (reply, _) = list_with(&other).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_mode_needs_the_header_except_on_initialize() {
    let gateway = Gateway::start(&TestConfig::new().sessions("mode: required").build()).await;
    let client = gateway.client();
    let (reply, _) = list_with(&client).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["error"]["code"], -32600, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Mcp-Session-Id header is required"),
        "{message}"
    );

    let mut client = gateway.client();
    client.initialize("2025-11-25").await;
    let (reply, _) = list_with(&client).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_mode_serves_requests_without_a_session() {
    let gateway = Gateway::start(&TestConfig::new().build()).await;
    let client = gateway.client();
    let (reply, _) = list_with(&client).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.header("mcp-session-id").is_none(),
        "no session minted outside initialize"
    );
}
