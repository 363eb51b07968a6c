//! Redis down, then back, for the shared rate-limit state (docs/reliability.md, "Redis down,
//! then back"): a private redis-server killed and started again on the same port. While it
//! is down, `fail_open: true` lets requests through and `fail_open: false` answers 503 with
//! `Retry-After: 1`; when it is back, Redis decides again (the limit is enforced) without a
//! restart; nothing panics. (A Redis that was never there: observe.rs.)

use std::time::Duration;

use serde_json::json;

use crate::common;
use common::private_redis::PrivateRedis;
use common::{eventually, strip_ansi, Gateway, McpClient, TestConfig};

const WAIT: Duration = Duration::from_secs(30);

async fn gateway(redis: &PrivateRedis, prefix: &str, fail_open: bool) -> Gateway {
    Gateway::start(
        &TestConfig::new()
            .top(&format!(
                "rate_limits:\n  per_subject: \"4/min\"\n  redis: {{redis_url: \"{}\", key_prefix: \"{{{prefix}}}\", timeout: 200ms, fail_open: {fail_open}}}",
                redis.url()
            ))
            .build(),
    )
    .await
}

async fn ping_status(client: &McpClient) -> (u16, Option<String>) {
    let reply = client
        .post(&client.request_body("ping", json!({})), &[])
        .await;
    (reply.status, reply.header("retry-after").map(str::to_owned))
}

/// Pings until one is refused with 429 (at most `n`); how many were let through first.
async fn through_until_limited(client: &McpClient, n: usize) -> Option<usize> {
    for i in 0..n {
        let (status, _) = ping_status(client).await;
        if status == 429 {
            return Some(i);
        }
        assert_eq!(status, 200);
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_started_again_degrades_as_configured_and_recovers() {
    let mut redis = PrivateRedis::start().await;
    let open = gateway(&redis, "fault-open", true).await;
    let closed = gateway(&redis, "fault-closed", false).await;
    let (co, cc) = (open.client(), closed.client());

    // Up: Redis enforces 4/min.
    assert_eq!(through_until_limited(&co, 10).await, Some(4));
    assert_eq!(ping_status(&cc).await.0, 200);

    redis.kill();
    // Down: fail open lets requests through (past the spent limit), fail closed refuses.
    for _ in 0..6 {
        assert_eq!(ping_status(&co).await.0, 200, "fail open");
    }
    for _ in 0..3 {
        let (status, retry) = ping_status(&cc).await;
        assert_eq!(status, 503, "fail closed");
        assert_eq!(retry.as_deref(), Some("1"));
    }

    // Back (empty): Redis decides again, without a restart.
    redis.start_again().await;
    eventually(WAIT, "the fail-closed gateway served again", || async {
        (ping_status(&cc).await.0 == 200).then_some(())
    })
    .await;
    // Fail open never refuses: a 429 shows Redis deciding again. (Until the client has
    // reconnected, requests are let through, as documented.)
    eventually(WAIT, "the limit enforced again", || async {
        through_until_limited(&co, 10).await
    })
    .await;
    assert!(through_until_limited(&cc, 10).await.is_some());

    for g in [&open, &closed] {
        let logs = strip_ansi(&g.logs());
        assert!(logs.contains("Redis could not decide"), "{logs}");
        assert!(!logs.contains("panicked"), "{logs}");
    }
}
