//! JWT attacks (RFC 8725) against the real binary and a real authorization server
//! (oidc-provider). `alg: none`, HS256 signed with the public key, unknown `kid`, wrong
//! `aud`/`iss`, expired, `nbf` in the future, a tampered payload and a token minted for
//! another resource are in `oauth_tokens::bad_tokens_get_401_with_the_invalid_token_challenge`;
//! this file adds what was not covered: `kid` injection strings, `jku`/`x5u`/`x5c` headers
//! (ignored, never fetched: a listener records any connection), and oversized tokens.
//! docs/reliability.md, "Attack suites", lists every item and its test.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::oidc::OAuthSetup;
use common::{BackendSpec, TestBackend, TestConfig};
use serde_json::json;

const READ: &str = "mcp:demo:read";

/// A TCP listener that counts the connections it is offered (and closes them).
struct Recorder {
    port: u16,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recorder");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Recorder {
            port,
            connections,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn setup() -> (TestBackend, OAuthSetup) {
    let backend = TestBackend::start(BackendSpec::tools(&["echo"], READ)).await;
    let setup = OAuthSetup::start(
        TestConfig::new()
            .backend("demo", &backend.url())
            .top("logging: {level: \"cortex_gateway=debug,info\"}"),
        &[],
    )
    .await;
    (backend, setup)
}

/// The status of `tools/list` with `token`, and the error description of a 401.
async fn attempt(setup: &OAuthSetup, token: &str) -> (u16, String) {
    let reply = setup
        .client(token)
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}), &[])
        .await;
    let why = if reply.status == 401 {
        reply.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else {
        String::new()
    };
    (reply.status, why)
}

/// `jku`, `x5u` and `x5c` in a token's header are never followed: a token signed with the
/// issuer's own key is judged by the issuer's JWKS alone (accepted), one signed with a key
/// only the header points to is refused, and the URL they name is never connected to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jku_x5u_and_x5c_headers_are_ignored_and_never_fetched() {
    let recorder = Recorder::start().await;
    let (backend, setup) = setup().await;
    // Not a real certificate: a gateway that parsed or trusted it would fail or accept.
    let x5c = json!([common::oidc::b64(b"not a certificate, attacker's key")]);
    let pointing = json!({
        "jku": recorder.url("/jwks.json"),
        "x5u": recorder.url("/cert.pem"),
        "x5c": x5c,
    });

    // The issuer's key, with the headers: the headers change nothing.
    let genuine = setup
        .oidc
        .sign(setup.claims(READ), json!({"header": pointing}))
        .await;
    let (status, why) = attempt(&setup, &genuine).await;
    assert_eq!(status, 200, "{why}");

    // A key of the attacker's, with its kid, jku and x5u pointing at the attacker's server.
    for header in [
        json!({"jku": recorder.url("/jwks.json")}),
        json!({"x5u": recorder.url("/cert.pem")}),
        json!({"x5c": x5c}),
        pointing.clone(),
    ] {
        let forged = setup
            .oidc
            .sign(
                setup.claims(READ),
                json!({"foreign": true, "kid": "attacker-key", "header": header}),
            )
            .await;
        let (status, why) = attempt(&setup, &forged).await;
        assert_eq!(status, 401, "{header}: {why}");
        assert!(why.contains("key id"), "{why}");
    }
    // Let any background fetch the gateway might have started happen before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        recorder.count(),
        0,
        "the gateway connected to a URL named in a token header"
    );
    assert!(backend.calls("echo").is_empty());
}

/// `kid` values built to break a key lookup (path traversal, SQL, a URL, control characters,
/// CRLF log injection, a very long one), on tokens signed with the issuer's real key or an
/// unknown one: each is a 401 naming an unknown key id, nothing is fetched from the `kid`,
/// the log line carries no raw control characters, and the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kid_injection_strings_are_unknown_keys() {
    let recorder = Recorder::start().await;
    let (backend, setup) = setup().await;
    let long = "k".repeat(4000);
    let injections = [
        "../../../../../../etc/passwd".to_string(),
        "/dev/null".to_string(),
        "' OR '1'='1' --".to_string(),
        "\"; DROP TABLE cortex_audit; --".to_string(),
        recorder.url("/jwks.json"),
        "kid\u{0000}nul".to_string(),
        "kid\r\nX-Injected: yes\r\n\r\nforged log line".to_string(),
        "*".to_string(),
        String::new(),
        long,
    ];
    for kid in &injections {
        for foreign in [false, true] {
            let token = setup
                .oidc
                .sign(setup.claims(READ), json!({"kid": kid, "foreign": foreign}))
                .await;
            let (status, why) = attempt(&setup, &token).await;
            assert_eq!(status, 401, "kid {kid:?} foreign {foreign}: {why}");
            assert!(
                why.contains("key id") || why.contains("signature"),
                "kid {kid:?}: {why}"
            );
            assert!(!why.contains('\r') && !why.contains('\n'), "{why:?}");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(recorder.count(), 0, "a kid was fetched as a URL");
    assert!(
        !setup.gateway.logs().contains("forged log line\n"),
        "a kid wrote a line of its own into the log"
    );
    assert!(backend.calls("echo").is_empty());
    // Still serving genuine tokens.
    let good = setup.token(READ).await;
    assert_eq!(attempt(&setup, &good).await.0, 200);
}

/// An oversized token: one past the 16 KiB limit (validly signed, with a padded claim) is a
/// 401 without a signature check; one past the 64 KiB header limit closes the connection
/// (counted as `edge_headers_too_large_total`); the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tokens_are_refused_cheaply() {
    let (backend, setup) = setup().await;
    let mut claims = setup.claims(READ);
    claims["padding"] = json!("p".repeat(17 * 1024));
    let big = setup.oidc.sign(claims, json!({})).await;
    assert!(big.len() > 16 * 1024);
    let (status, why) = attempt(&setup, &big).await;
    assert_eq!(status, 401, "{why}");

    // Past the header limit: the request never reaches validation.
    let huge = "a".repeat(80 * 1024);
    let mut conn = common::raw::RawConn::connect(setup.gateway.port()).await;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {huge}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 2\r\n\r\n{{}}",
        setup.gateway.port()
    );
    conn.send(request.as_bytes()).await;
    match conn.response(Duration::from_secs(10)).await {
        None => {}
        Some(r) => assert!(
            r.status == 431 || r.status == 400 || r.status == 413,
            "an 80 KiB header: {}",
            r.status
        ),
    }
    let good = setup.token(READ).await;
    assert_eq!(attempt(&setup, &good).await.0, 200);
    assert!(backend.calls("echo").is_empty());
}
