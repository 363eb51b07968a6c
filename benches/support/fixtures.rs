//! Synthetic but representative catalogs and messages, shared by the micro-benchmarks and the
//! load harness so both measure the same shapes.
//!
//! A generated tool looks like a typical contract tool (compare `src/demo_backend.rs`): a
//! sentence-long description, a two- or three-property input schema, a scope, annotations.
//! Its `tools/list` entry is about 420 bytes, so a 1,000-tool list is about 420 KB. Scopes
//! rotate per tool: two in four need `mcp:<backend>:read`, one `mcp:<backend>:write`, one
//! declares none (visible to every caller).

use serde_json::{json, Value};

/// The id of backend number `b` (`b00`, `b01`, …).
pub fn backend_id(b: usize) -> String {
    format!("b{b:02}")
}

/// The scope tool `i` of backend `backend` declares, if any.
pub fn tool_scope(backend: &str, i: usize) -> Option<String> {
    match i % 4 {
        0 | 1 => Some(format!("mcp:{backend}:read")),
        2 => Some(format!("mcp:{backend}:write")),
        _ => None,
    }
}

/// The contract name of tool `i`.
pub fn tool_name(i: usize) -> String {
    format!("op_{i:05}")
}

/// One contract `list_tools` entry.
pub fn contract_tool(backend: &str, i: usize) -> Value {
    let mut tool = json!({
        "name": tool_name(i),
        "description": format!(
            "Looks up record {i} of the {backend} service and returns its fields as JSON. \
             Pass `id`; `limit` bounds nested collections (default 20)."
        ),
        "version": "1.0.0",
        "annotations": { "readOnlyHint": i % 4 != 2, "openWorldHint": false },
    });
    if let Some(obj) = tool.as_object_mut() {
        if let Some(scope) = tool_scope(backend, i) {
            obj.insert("scope".into(), Value::String(scope));
        }
        if i.is_multiple_of(2) {
            obj.insert(
                "inputSchema".into(),
                json!({
                    "type": "object",
                    "properties": {
                        "id": { "type": "string", "description": "record id" },
                        "limit": { "type": "integer", "minimum": 1, "maximum": 500 },
                        "fields": { "type": "array", "items": { "type": "string" } }
                    },
                    "required": ["id"],
                    "additionalProperties": false
                }),
            );
        } else {
            // The Cortex `params` shorthand, converted by the gateway at discovery.
            obj.insert(
                "params".into(),
                json!({ "id": "string", "limit": "integer?" }),
            );
        }
    }
    tool
}

/// A contract `list_tools` reply `{"tools":[…]}` with `n` tools for `backend`. Tool 0 is
/// always `echo` (unscoped) so every catalog has a tool the load harness can call.
pub fn list_tools_reply(backend: &str, n: usize) -> Value {
    let mut tools: Vec<Value> = (0..n).map(|i| contract_tool(backend, i)).collect();
    if let Some(first) = tools.first_mut() {
        *first = json!({
            "name": "echo",
            "description": "Returns `message` unchanged as {\"echoed\": message}.",
            "params": { "message": "string" },
            "version": "1.0.0",
            "annotations": { "readOnlyHint": true, "idempotentHint": true, "openWorldHint": false }
        });
    }
    json!({ "tools": tools })
}

/// A small `tools/call` request, as an MCP client sends it.
pub fn small_tools_call() -> Vec<u8> {
    br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"b00_echo","arguments":{"message":"hello"}}}"#
        .to_vec()
}

/// `n` records of structured data, about 150 bytes each (used for large messages).
pub fn records(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({
                    "id": format!("rec-{i:06}"),
                    "title": format!("Quarterly report line {i}"),
                    "amount": (i as f64) * 1.25,
                    "tags": ["finance", "q3", "draft"],
                    "active": i % 3 == 0
                })
            })
            .collect(),
    )
}

/// A `tools/call` of about `target` bytes: structured arguments (an array of records), the
/// shape of a real large call rather than one long string.
pub fn large_tools_call(target: usize) -> Vec<u8> {
    let per_record = serde_json::to_vec(&records(1)).map_or(150, |v| v.len().max(1));
    let args = json!({ "rows": records(target / per_record) });
    let msg = json!({
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": { "name": "b00_import_rows", "arguments": args }
    });
    serde_json::to_vec(&msg).unwrap_or_default()
}
