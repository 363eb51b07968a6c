//! `whoami`, `find_tools` and `cortex://architecture` (resources/list, resources/read,
//! `list_cortex_resources`, `read_cortex_resource`) through the real binary.

use crate::builtins_support;
use crate::common;

use std::time::Duration;

use builtins_support::{call_is_error, call_ok};
use common::{unused_port, BackendSpec, Gateway, TestBackend, TestConfig};
use serde_json::{json, Value};

const DEV: &str = "dev-bypass-token-for-tests";

fn tool_with(name: &str, scope: &str, description: &str) -> Value {
    json!({"name": name, "scope": scope, "description": description, "params": {"q": "string?"}})
}

/// crm (answers whoami), slow (whoami hangs past the timeout), down (never reachable); the
/// principal holds `mcp:crm:read` only; the dev-bypass caller holds `cortex:admin` too.
async fn setup() -> (Gateway, TestBackend, TestBackend) {
    let crm = TestBackend::start(BackendSpec {
        tools: vec![
            tool_with(
                "list_contacts",
                "mcp:crm:read",
                "Lists the contacts of an account.",
            ),
            tool_with(
                "delete_contact",
                "mcp:crm:admin",
                "Deletes a contact for good.",
            ),
            tool_with(
                "export_contacts",
                "mcp:crm:admin",
                "Exports every contact as CSV.",
            ),
        ],
        ..BackendSpec::default()
    })
    .await;
    crm.respond(
        "whoami",
        200,
        json!({"userId": "crm-42", "roles": ["sales"]}),
    );
    let slow = TestBackend::start(BackendSpec {
        tools: vec![tool_with(
            "send_message",
            "mcp:mail:send",
            "Sends an email message to recipients.",
        )],
        ..BackendSpec::default()
    })
    .await;
    slow.delay("whoami", Duration::from_secs(5));
    let down = format!("http://127.0.0.1:{}", unused_port());
    let yaml = TestConfig::new()
        .auth(&[
            "mode: none",
            "principal:",
            "  sub: test-user",
            "  email: user@example.com",
            "  scopes: [\"mcp:crm:read\"]",
            "  token: user-token",
            "dev_bypass:",
            &format!("  token: {DEV}"),
            "  scopes: [\"mcp:crm:read\", \"cortex:admin\"]",
        ])
        .top("builtins:\n  whoami_timeout: 500ms")
        .backend("crm", &crm.url())
        .backend("slow", &slow.url())
        .backend_with("down", &down, &["timeout: 300ms"])
        .build();
    let gw = Gateway::start(&yaml).await;
    gw.wait_ready().await;
    (gw, crm, slow)
}

#[tokio::test]
async fn whoami_shows_identity_backends_and_what_is_hidden() {
    let (gw, crm, _slow) = setup().await;
    let mut client = gw.client();
    client.initialize("2025-11-25").await;
    let me = call_ok(&client, "whoami", json!({})).await;
    assert_eq!(me["identity"]["sub"], "test-user");
    assert_eq!(me["identity"]["email"], "user@example.com");
    assert_eq!(me["scopes_granted"], json!(["mcp:crm:read"]));
    assert_eq!(me["admin"], false);
    assert_eq!(me["session"]["mcp_session"], true);
    assert_eq!(me["session"]["protocol_version"], "2025-11-25");
    assert_eq!(me["session"]["is_dev_bypass"], false);

    let backends = me["backends"].as_array().unwrap();
    let by_id = |id: &str| {
        backends
            .iter()
            .find(|b| b["app_id"] == id)
            .cloned()
            .unwrap()
    };
    let crm_entry = by_id("crm");
    assert_eq!(crm_entry["healthy"], true);
    assert_eq!(crm_entry["tools_visible"], 1);
    assert_eq!(
        crm_entry["whoami"],
        json!({"userId": "crm-42", "roles": ["sales"]})
    );
    assert!(
        crm_entry.get("url").is_none(),
        "no internal URL for non-admins"
    );
    let slow_entry = by_id("slow");
    assert!(
        slow_entry["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 500ms"),
        "{slow_entry}"
    );
    assert_eq!(slow_entry["tools_visible"], 0);
    let down_entry = by_id("down");
    assert_eq!(down_entry["healthy"], false);
    assert!(down_entry["error"].is_string());

    // The backend's whoami got the caller's identity.
    let call = crm.calls("whoami").pop().unwrap();
    assert_eq!(call.header("x-cortex-user-id"), Some("test-user"));
    assert_eq!(call.header("x-cortex-scopes"), Some("mcp:crm:read"));

    // Hidden: 2 crm admin tools, 1 mail tool, triage (cortex:admin). Scopes, no names.
    let vis = &me["visibility"];
    assert_eq!(vis["tools_hidden"], 4);
    let reveal = vis["scopes_to_reveal"].as_array().unwrap();
    assert_eq!(reveal[0], json!({"scope": "mcp:crm:admin", "tools": 2}));
    assert!(reveal.contains(&json!({"scope": "mcp:mail:send", "tools": 1})));
    assert!(reveal.contains(&json!({"scope": "cortex:admin", "tools": 1})));

    // An administrator sees the names, the URLs and the discovery errors.
    let admin = gw.client().with_header("x-dev-mode", DEV);
    let me = call_ok(&admin, "whoami", json!({})).await;
    assert_eq!(me["admin"], true);
    assert_eq!(me["session"]["is_dev_bypass"], true);
    assert_eq!(me["identity"]["sub"], "dev:local");
    let reveal = me["visibility"]["scopes_to_reveal"].as_array().unwrap();
    let crm_admin = reveal
        .iter()
        .find(|r| r["scope"] == "mcp:crm:admin")
        .unwrap();
    assert_eq!(
        crm_admin["names"],
        json!(["crm_delete_contact", "crm_export_contacts"])
    );
    let down = me["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["app_id"] == "down")
        .cloned()
        .unwrap();
    assert!(down["url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    assert!(down["last_error"].is_string(), "{down}");
}

#[tokio::test]
async fn find_tools_by_names_and_by_ranked_query() {
    let (gw, _crm, _slow) = setup().await;
    let client = gw.client();
    let found = call_ok(
        &client,
        "find_tools",
        json!({"names": ["crm_list_contacts", "crm_delete_contact", "nope", "whoami"]}),
    )
    .await;
    let names: Vec<&str> = found["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["crm_list_contacts", "whoami"]);
    // A hidden tool is indistinguishable from one that does not exist.
    assert_eq!(found["notFound"], json!(["crm_delete_contact", "nope"]));
    assert_eq!(
        found["tools"][0]["inputSchema"]["properties"]["q"]["type"],
        "string"
    );

    let found = call_ok(
        &client,
        "find_tools",
        json!({"query": "contacts of an account"}),
    )
    .await;
    assert_eq!(found["tools"][0]["name"], "crm_list_contacts");
    assert!(found["tools"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["name"] != "crm_export_contacts"));

    let admin = gw.client().with_header("x-dev-mode", DEV);
    let found = call_ok(&admin, "find_tools", json!({"query": "ticket"})).await;
    let names: Vec<&str> = found["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"triage_cortex_ticket") && names.contains(&"list_cortex_tickets"),
        "{names:?}"
    );
    let found = call_ok(&admin, "find_tools", json!({"query": "ticket", "limit": 1})).await;
    assert_eq!(found["tools"].as_array().unwrap().len(), 1);
    // The non-admin does not find the admin-only builtin.
    let found = call_ok(&client, "find_tools", json!({"query": "triage ticket"})).await;
    assert!(found["tools"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["name"] != "triage_cortex_ticket"));
    let found = call_ok(
        &admin,
        "find_tools",
        json!({"query": "file a ticket for a missing capability"}),
    )
    .await;
    assert_eq!(found["tools"][0]["name"], "report_missing_capability");
    // Prefix matching of partial words ("acco" → "account").
    let found = call_ok(&client, "find_tools", json!({"query": "acco"})).await;
    assert_eq!(found["tools"][0]["name"], "crm_list_contacts");

    for bad in [
        json!({}),
        json!({"query": "  "}),
        json!({"names": 5}),
        json!({"query": "x", "limit": 0}),
        json!({"query": "x", "limit": 51}),
    ] {
        let err = call_is_error(&client, "find_tools", bad.clone()).await;
        assert_eq!(err["error"], "invalid_arguments", "{bad}");
    }
}

#[tokio::test]
async fn architecture_resource_is_listed_read_and_redacted_for_non_admins() {
    let (gw, _crm, _slow) = setup().await;
    let client = gw.client();
    let listed = client.result("resources/list", json!({})).await;
    assert_eq!(listed["resources"][0]["uri"], "cortex://architecture");
    assert_eq!(listed["resources"][0]["mimeType"], "text/markdown");

    let read = client
        .result("resources/read", json!({"uri": "cortex://architecture"}))
        .await;
    let md = read["contents"][0]["text"].as_str().unwrap();
    assert_eq!(read["contents"][0]["mimeType"], "text/markdown");
    assert!(
        md.contains("## You") && md.contains("`test-user`") && md.contains("`mcp:crm:read`"),
        "{md}"
    );
    assert!(md.contains("| `crm` | healthy | 1 |"), "{md}");
    assert!(md.contains("| `down` | unreachable |"), "{md}");
    assert!(md.contains("`<app>_<tool>`"), "{md}");
    assert!(
        !md.contains("/api/cortex/backend"),
        "no internal URL for non-admins:\n{md}"
    );
    assert!(
        !md.contains("`triage_cortex_ticket`"),
        "hidden builtins are not named:\n{md}"
    );

    let admin = gw.client().with_header("x-dev-mode", DEV);
    let read = admin
        .result("resources/read", json!({"uri": "cortex://architecture"}))
        .await;
    let md = read["contents"][0]["text"].as_str().unwrap();
    assert!(md.contains("Administrator (`cortex:admin`): yes"), "{md}");
    assert!(md.contains("/api/cortex/backend"), "admins see URLs:\n{md}");

    // The tool wrappers.
    let all = call_ok(&client, "list_cortex_resources", json!({})).await;
    assert_eq!(all["resources"][0]["uri"], "cortex://architecture");
    let r = client
        .call_tool(
            "read_cortex_resource",
            json!({"uri": "cortex://architecture"}),
        )
        .await;
    assert!(
        r["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("# cortex-gateway"),
        "{r}"
    );
    assert_eq!(
        r["structuredContent"]["contents"][0]["uri"],
        "cortex://architecture"
    );
    let missing = call_is_error(&client, "read_cortex_resource", json!({"uri": "nope://x"})).await;
    assert_eq!(missing["error"], "resource_not_found");
    let err = client
        .error("resources/read", json!({"uri": "nope://x"}))
        .await;
    assert_eq!(err["code"], -32002);
}

#[tokio::test]
async fn architecture_can_be_restricted_by_scope() {
    let yaml = TestConfig::new()
        .principal_scopes(&["mcp:crm:read"])
        .top("builtins:\n  scopes:\n    read_cortex_resource: \"cortex:docs\"")
        .build();
    let gw = Gateway::start(&yaml).await;
    let client = gw.client();
    let listed = client.result("resources/list", json!({})).await;
    assert_eq!(listed["resources"], json!([]));
    let err = client
        .error("resources/read", json!({"uri": "cortex://architecture"}))
        .await;
    assert_eq!(err["code"], -32002);
}
