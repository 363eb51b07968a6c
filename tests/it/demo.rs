//! `cortex-gateway demo`: the gateway and the built-in demo backend in one process.

use crate::common;

use common::Gateway;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_demo_tools_without_auth() {
    let gateway = Gateway::start_demo().await;
    let ready = gateway.wait_ready().await;
    assert_eq!(ready["backends"][0]["id"], "demo", "{ready}");

    let printed = format!("{}{}", gateway.stdout(), gateway.logs());
    assert!(
        printed.contains(&gateway.mcp_url()),
        "demo prints the MCP URL {}:\n{printed}",
        gateway.mcp_url()
    );

    let mut client = gateway.client();
    client.initialize("2025-11-25").await;
    let mut names = client.backend_tool_names().await;
    names.sort();
    assert_eq!(
        names,
        [
            "demo_delete_note",
            "demo_echo",
            "demo_get_help",
            "demo_get_time",
            "demo_list_notes",
            "demo_save_note"
        ]
    );
    let saved = client
        .call_tool("demo_save_note", json!({"text": "from the demo test"}))
        .await;
    let id = saved["structuredContent"]["saved"]["id"]
        .as_str()
        .expect("note id")
        .to_owned();
    let listed = client.call_tool("demo_list_notes", json!({})).await;
    assert!(
        listed["structuredContent"]["notes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["id"] == id.as_str())),
        "{listed}"
    );
    let deleted = client
        .call_tool("demo_delete_note", json!({ "id": id }))
        .await;
    assert_eq!(deleted["structuredContent"], json!({ "deleted": id }));
    let again = client
        .call_tool("demo_delete_note", json!({ "id": id }))
        .await;
    assert_eq!(
        again["isError"], true,
        "deleting twice is a readable tool error: {again}"
    );

    let help = client
        .call_tool("demo_get_help", json!({"topic": "notes"}))
        .await;
    assert_ne!(help["isError"], true, "{help}");
    let time = client
        .call_tool("demo_get_time", json!({"timezone": "utc"}))
        .await;
    assert!(time["structuredContent"]["iso"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
}
