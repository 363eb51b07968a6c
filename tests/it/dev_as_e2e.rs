//! `cortex-gateway demo --oauth` end to end: the gateway as resource server in front of its
//! own development authorization server. Tokens for `reader` and `writer` obtained through the
//! sign-in page show different catalogs. The official Python MCP SDK does the whole OAuth
//! dance by itself (PRM discovery, DCR, PKCE, `iss`), then lists tools.

use crate::common;
use crate::dev_as_common;

use common::{tool_names, McpClient};
use dev_as_common::{As, DEMO_CLIENT};
use serde_json::{json, Value};

const READ_TOOLS: [&str; 4] = [
    "demo_get_help",
    "demo_echo",
    "demo_get_time",
    "demo_list_notes",
];
const WRITE_TOOLS: [&str; 2] = ["demo_save_note", "demo_delete_note"];

/// Starts the demo and waits until the gateway knows its own issuer's keys (`/readyz`).
async fn ready_demo() -> As {
    let a = As::start().await;
    a.gw.wait_ready().await;
    a
}

fn bearer_client(a: &As, token: &str) -> McpClient {
    McpClient::new(&a.gw.mcp_url()).with_header("authorization", &format!("Bearer {token}"))
}

fn has_all(names: &[String], wanted: &[&str]) -> bool {
    wanted.iter().all(|w| names.iter().any(|n| n == w))
}

fn has_none(names: &[String], unwanted: &[&str]) -> bool {
    unwanted.iter().all(|u| !names.iter().any(|n| n == u))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_sees_the_tools_of_their_scopes() {
    let a = ready_demo().await;
    let issuer = a.gw.url();

    // Unauthenticated: a challenge pointing at metadata whose authorization server is the
    // built-in one, byte for byte.
    let anon = McpClient::new(&a.gw.mcp_url());
    let r = anon
        .post(&anon.request_body("tools/list", json!({})), &[])
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or("").to_string();
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    let (status, prm) =
        a.gw.get_json("/.well-known/oauth-protected-resource/mcp")
            .await;
    assert_eq!(status, 200, "{prm}");
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    assert_eq!(prm["resource"], json!(a.gw.mcp_url()));
    let (_, asm) =
        a.gw.get_json("/.well-known/oauth-authorization-server")
            .await;
    assert_eq!(asm["issuer"], prm["authorization_servers"][0]);

    let client = a.public_client().await;
    let reader = a.login(&client, "reader").await;
    let writer = a.login(&client, "writer").await;

    let as_reader = bearer_client(&a, reader["access_token"].as_str().unwrap());
    let names = tool_names(&as_reader.result("tools/list", json!({})).await);
    assert!(has_all(&names, &READ_TOOLS), "reader: {names:?}");
    assert!(
        has_none(&names, &WRITE_TOOLS),
        "reader must not see write tools: {names:?}"
    );
    let echo = as_reader
        .call_tool("demo_echo", json!({"message": "hi"}))
        .await;
    assert_eq!(echo["structuredContent"], json!({"echoed": "hi"}), "{echo}");
    // A hidden tool is an unknown tool.
    let denied = as_reader
        .error(
            "tools/call",
            json!({"name": "demo_save_note", "arguments": {"text": "x"}}),
        )
        .await;
    assert_eq!(denied["code"], -32602, "{denied}");

    let as_writer = bearer_client(&a, writer["access_token"].as_str().unwrap());
    let names = tool_names(&as_writer.result("tools/list", json!({})).await);
    assert!(
        has_all(&names, &READ_TOOLS) && has_all(&names, &WRITE_TOOLS),
        "writer: {names:?}"
    );
    let saved = as_writer
        .call_tool("demo_save_note", json!({"text": "from writer"}))
        .await;
    assert_eq!(
        saved["structuredContent"]["saved"]["text"], "from writer",
        "{saved}"
    );

    // A refreshed token works the same; a machine client gets what it asked for.
    let refreshed = a
        .refresh(&client, writer["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let names = tool_names(
        &bearer_client(&a, refreshed.json()["access_token"].as_str().unwrap())
            .result("tools/list", json!({}))
            .await,
    );
    assert!(has_all(&names, &WRITE_TOOLS), "refreshed writer: {names:?}");
    let m2m = a
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("scope", "mcp:demo:read"),
            ],
            Some(DEMO_CLIENT),
        )
        .await;
    let names = tool_names(
        &bearer_client(&a, m2m.json()["access_token"].as_str().unwrap())
            .result("tools/list", json!({}))
            .await,
    );
    assert!(
        has_all(&names, &READ_TOOLS) && has_none(&names, &WRITE_TOOLS),
        "m2m read: {names:?}"
    );

    // A token signed by someone else's key is refused.
    let forged = {
        let t = reader["access_token"].as_str().unwrap();
        let (rest, _sig) = t.rsplit_once('.').unwrap();
        format!("{rest}.{}", "A".repeat(86))
    };
    let r = bearer_client(&a, &forged)
        .post(&anon.request_body("tools/list", json!({})), &[])
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_signs_in_as_reader_then_writer() {
    let a = ready_demo().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/dev_as_oauth.py");
    let url = a.gw.mcp_url();
    let dir = a.gw.dir().to_owned();
    let stdout = common::interop::run_python_script(
        vec![script.to_string(), url],
        dir,
        std::time::Duration::from_secs(90),
    )
    .await;
    let out: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("script output is not JSON ({e}): {stdout}\n{}", a.gw.logs()));

    let names = |user: &str| -> Vec<String> {
        out[user]["tools"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (reader, writer) = (names("reader"), names("writer"));
    assert!(
        has_all(&reader, &READ_TOOLS) && has_none(&reader, &WRITE_TOOLS),
        "{out}"
    );
    assert!(
        has_all(&writer, &READ_TOOLS) && has_all(&writer, &WRITE_TOOLS),
        "{out}"
    );

    // Each sign-in went through discovery, dynamic registration and the code flow.
    for user in ["reader", "writer"] {
        let o = &out[user];
        let requests: Vec<&str> = o["requests"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for expected in [
            "GET /.well-known/oauth-protected-resource/mcp",
            "GET /.well-known/oauth-authorization-server",
            "POST /oauth/register",
            "POST /oauth/token",
        ] {
            assert!(
                requests.contains(&expected),
                "{user}: {expected} not in {requests:?}"
            );
        }
        assert!(
            o["client_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("dcr.")),
            "{o}"
        );
        assert!(o["has_refresh_token"].as_bool().unwrap_or(false), "{o}");
        assert_eq!(o["authorize"]["resource"], json!(a.gw.mcp_url()), "{o}");
        assert_eq!(o["authorize"]["code_challenge_method"], "S256", "{o}");
        assert_eq!(o["echo"]["isError"], false, "{o}");
        assert_eq!(
            o["echo"]["structured"],
            json!({"echoed": format!("hello from {user}")})
        );
    }
    assert_eq!(out["reader"]["granted_scope"], "mcp:demo:read", "{out}");
    assert_eq!(
        out["writer"]["granted_scope"], "mcp:demo:read mcp:demo:write",
        "{out}"
    );
    assert!(
        out["reader"]["save"]["exception"]
            .as_str()
            .is_some_and(|e| e.contains("Unknown tool")),
        "the reader cannot call a write tool: {out}"
    );
    assert_eq!(out["writer"]["save"]["isError"], false, "{out}");
    assert_eq!(
        out["writer"]["save"]["structured"]["saved"]["text"], "written by writer",
        "{out}"
    );
}
