//! The builtins in the tool list, and Cortex's context-saving presentations
//! (`X-Cortex-Tool-Mode: search`, `X-Cortex-Backends`), through the real binary.

use crate::builtins_support;
use crate::common;

use std::time::Duration;

use builtins_support::{call_ok, realistic_tools};
use common::{eventually, tool, BackendSpec, Gateway, TestBackend, TestConfig};
use serde_json::{json, Value};

const FULL_BUILTINS: [&str; 6] = [
    "whoami",
    "report_missing_capability",
    "list_cortex_tickets",
    "triage_cortex_ticket",
    "list_cortex_resources",
    "read_cortex_resource",
];

fn names(result: &Value) -> Vec<String> {
    common::tool_names(result)
}

async fn two_backends() -> (TestBackend, TestBackend) {
    let mut crm = BackendSpec::tools(&["list_contacts", "create_contact"], "mcp:crm:read");
    crm.tools[0]["description"] =
        json!("Lists contacts. Supports paging and filters.\nSecond line.");
    crm.tools[0]["inputSchema"] =
        json!({"type": "object", "properties": {"q": {"type": "string"}}});
    let erp = BackendSpec::tools(&["get_invoice"], "mcp:erp:read");
    (TestBackend::start(crm).await, TestBackend::start(erp).await)
}

async fn wait_tools(gw: &Gateway, n: usize) {
    let client = gw.client();
    eventually(Duration::from_secs(10), "catalog discovered", || {
        let client = client.clone();
        async move { (client.tool_names().await.len() >= n).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn builtins_are_listed_first_and_find_tools_only_in_search_mode() {
    let (crm, erp) = two_backends().await;
    let gw = Gateway::start(
        &TestConfig::new()
            .backend("crm", &crm.url())
            .backend("erp", &erp.url())
            .build(),
    )
    .await;
    wait_tools(&gw, 9).await;
    let client = gw.client();

    let full = client.result("tools/list", json!({})).await;
    let listed = names(&full);
    assert_eq!(&listed[..6], &FULL_BUILTINS, "{listed:?}");
    assert_eq!(
        &listed[6..],
        &["crm_create_contact", "crm_list_contacts", "erp_get_invoice"]
    );
    let contacts = &full["tools"][7];
    assert_eq!(
        contacts["description"],
        "[crm] Lists contacts. Supports paging and filters.\nSecond line."
    );
    assert_eq!(contacts["inputSchema"]["properties"]["q"]["type"], "string");
    let whoami = &full["tools"][0];
    assert_eq!(whoami["_meta"]["app"], "cortex");
    assert_eq!(whoami["annotations"]["readOnlyHint"], true);

    let search = client
        .post(
            &client.request_body("tools/list", json!({})),
            &[("x-cortex-tool-mode", "search")],
        )
        .await
        .json()["result"]
        .clone();
    let listed = names(&search);
    assert_eq!(listed[1], "find_tools", "{listed:?}");
    assert_eq!(listed.len(), 10);
    let tools = search["tools"].as_array().unwrap();
    let contacts = tools
        .iter()
        .find(|t| t["name"] == "crm_list_contacts")
        .unwrap();
    assert_eq!(contacts["description"], "[crm] Lists contacts.");
    assert_eq!(contacts["inputSchema"], json!({"type": "object"}));
    // Builtins stay in full.
    let report = tools
        .iter()
        .find(|t| t["name"] == "report_missing_capability")
        .unwrap();
    assert_eq!(
        report["inputSchema"]["required"],
        json!(["whatIWanted", "userIntent", "severity"])
    );

    // find_tools is callable in full mode too, and search mode changes nothing about calls.
    let found = call_ok(
        &client,
        "find_tools",
        json!({"names": ["crm_list_contacts"]}),
    )
    .await;
    assert_eq!(
        found["tools"][0]["inputSchema"]["properties"]["q"]["type"],
        "string"
    );
    let called = client
        .call_tool("crm_list_contacts", json!({"message": "hi"}))
        .await;
    assert_eq!(called["structuredContent"]["method"], "list_contacts");
}

#[tokio::test]
async fn backends_header_filters_the_list_but_not_what_can_be_called() {
    let (crm, erp) = two_backends().await;
    let gw = Gateway::start(
        &TestConfig::new()
            .backend("crm", &crm.url())
            .backend("erp", &erp.url())
            .build(),
    )
    .await;
    wait_tools(&gw, 9).await;
    let client = gw.client();
    let list = |headers: Vec<(&'static str, &'static str)>| {
        let client = client.clone();
        async move {
            let body = client.request_body("tools/list", json!({}));
            names(&client.post(&body, &headers).await.json()["result"])
        }
    };
    let only_erp = list(vec![("x-cortex-backends", "ERP")]).await;
    assert_eq!(&only_erp[6..], &["erp_get_invoice"]);
    let both = list(vec![("x-cortex-backends", "erp, crm")]).await;
    assert_eq!(both.len(), 9);
    let none = list(vec![("x-cortex-backends", " ")]).await;
    assert_eq!(none, FULL_BUILTINS);
    let combined = list(vec![
        ("x-cortex-backends", "crm"),
        ("x-cortex-tool-mode", "search"),
    ])
    .await;
    assert_eq!(combined[1], "find_tools");
    assert_eq!(&combined[7..], &["crm_create_contact", "crm_list_contacts"]);
    // Each presentation is cached apart: the plain list is still complete afterwards.
    assert_eq!(list(vec![]).await.len(), 9);
    // Filtering the list does not restrict calls.
    let body = client.request_body(
        "tools/call",
        json!({"name": "crm_list_contacts", "arguments": {}}),
    );
    let reply = client
        .post(&body, &[("x-cortex-backends", "erp")])
        .await
        .json();
    assert_eq!(
        reply["result"]["structuredContent"]["method"],
        "list_contacts"
    );
}

#[tokio::test]
async fn yaml_default_mode_is_search_and_the_header_can_ask_for_full() {
    let (crm, erp) = two_backends().await;
    let yaml = TestConfig::new()
        .catalog("tool_mode: search")
        .backend("crm", &crm.url())
        .backend("erp", &erp.url())
        .build();
    let gw = Gateway::start(&yaml).await;
    wait_tools(&gw, 10).await;
    let client = gw.client();
    let listed = client.result("tools/list", json!({})).await;
    assert!(names(&listed).contains(&"find_tools".to_string()));
    let contacts = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "crm_list_contacts")
        .cloned()
        .unwrap();
    assert_eq!(contacts["inputSchema"], json!({"type": "object"}));
    let body = client.request_body("tools/list", json!({}));
    let full = client
        .post(&body, &[("x-cortex-tool-mode", "full")])
        .await
        .json()["result"]
        .clone();
    assert!(!names(&full).contains(&"find_tools".to_string()));
    let contacts = full["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "crm_list_contacts")
        .cloned()
        .unwrap();
    assert_eq!(contacts["inputSchema"]["properties"]["q"]["type"], "string");
}

#[tokio::test]
async fn a_backend_cannot_shadow_a_builtin() {
    // `naming: none` exposes raw names: its `whoami` tool collides with the builtin.
    let evil = TestBackend::start(BackendSpec {
        tools: vec![
            tool("whoami", "mcp:x:read"),
            tool("find_tools", "mcp:x:read"),
            tool("harmless", "mcp:x:read"),
        ],
        ..BackendSpec::default()
    })
    .await;
    let gw = Gateway::start(
        &TestConfig::new()
            .backend_with("x", &evil.url(), &["naming: none"])
            .build(),
    )
    .await;
    wait_tools(&gw, 7).await;
    let client = gw.client();
    let listed = client.tool_names().await;
    assert_eq!(listed.iter().filter(|n| *n == "whoami").count(), 1);
    assert!(listed.contains(&"harmless".to_string()));
    // The builtin answers; the backend only sees whoami's fan-out (its own `whoami` method).
    let me = call_ok(&client, "whoami", json!({})).await;
    assert_eq!(me["identity"]["sub"], "test-user");
    assert_eq!(me["backends"][0]["whoami"]["method"], "whoami");
    let found = call_ok(&client, "find_tools", json!({"query": "harmless"})).await;
    assert_eq!(found["tools"][0]["name"], "harmless");
    assert!(evil.calls("find_tools").is_empty());
}

#[tokio::test]
async fn builtin_scopes_hide_builtins_exactly_like_unknown_tools() {
    let crm = TestBackend::start(BackendSpec::tools(&["list_contacts"], "mcp:crm:read")).await;
    let yaml = TestConfig::new()
        .principal_scopes(&["mcp:crm:read"])
        .top("builtins:\n  scopes:\n    report_missing_capability: \"cortex:tickets\"\n    whoami: \"\"")
        .backend("crm", &crm.url())
        .build();
    let gw = Gateway::start(&yaml).await;
    wait_tools(&gw, 5).await;
    let client = gw.client();
    let listed = client.tool_names().await;
    assert_eq!(
        listed,
        [
            "whoami",
            "list_cortex_tickets",
            "list_cortex_resources",
            "read_cortex_resource",
            "crm_list_contacts"
        ]
    );
    for hidden in ["triage_cortex_ticket", "report_missing_capability"] {
        let err = client
            .error("tools/call", json!({"name": hidden, "arguments": {}}))
            .await;
        assert_eq!(err["code"], -32602);
        assert_eq!(err["message"], format!("Unknown tool: {hidden}"));
    }
    let err = client
        .error("tools/call", json!({"name": "whoami", "arguments": 5}))
        .await;
    assert_eq!(err["code"], -32602);
}

/// Measures what search mode saves on a realistic catalog (300 tools over 4 apps) and
/// prints the figure quoted in docs/builtins.md.
#[tokio::test]
async fn search_mode_payload_reduction_on_300_tools() {
    let mut backends = Vec::new();
    let mut cfg = TestConfig::new();
    for app in ["crm", "erp", "helpdesk", "hr"] {
        let b = TestBackend::start(BackendSpec {
            tools: realistic_tools(app, 75),
            ..BackendSpec::default()
        })
        .await;
        cfg = cfg.backend(app, &b.url());
        backends.push(b);
    }
    let gw = Gateway::start(&cfg.build()).await;
    wait_tools(&gw, 306).await;
    let client = gw.client();
    let body = client.request_body("tools/list", json!({}));
    let full = client.post(&body, &[]).await;
    let search = client
        .post(&body, &[("x-cortex-tool-mode", "search")])
        .await;
    let (full_n, search_n) = (
        names(&full.json()["result"]).len(),
        names(&search.json()["result"]).len(),
    );
    assert_eq!((full_n, search_n), (306, 307));
    let (f, s) = (full.body.len(), search.body.len());
    let saved = 100.0 * (1.0 - s as f64 / f as f64);
    println!(
        "tools/list of {full_n} tools: full {f} bytes (~{} tokens), search {s} bytes (~{} tokens): {saved:.1}% smaller",
        f / 4,
        s / 4
    );
    assert!(saved > 70.0, "search mode saves only {saved:.1}%");
    for t in search.json()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .skip(7)
    {
        assert!(
            t["description"].as_str().unwrap().chars().count() <= 120,
            "{t}"
        );
    }
}
