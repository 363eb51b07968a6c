//! The conformance fixture backend: a Cortex contract backend (hyper, ephemeral 127.0.0.1
//! port) offering exactly the tools, resources, templates and prompts that the official MCP
//! conformance suite's server scenarios call, with the exact names and contents they expect
//! (shared/reference/mcp-spec-and-tools.md §3.1). Served through the gateway with
//! `naming: none`, so the suite sees the fixture names unprefixed.
//!
//! Rich tool content (images, audio, embedded resources, `isError`) uses the contract
//! extension `X-Cortex-Reply: call-tool-result`: the body is an MCP `CallToolResult` that the
//! gateway passes through. `echo` answers plain JSON instead, so the classic mapping
//! (`structuredContent`) is exercised by the same backend.
//!
//! Scenarios that need server-initiated messages (logging notifications, progress, sampling,
//! elicitation, resource subscriptions) cannot be expressed by a contract backend: they are
//! listed in tests/conformance/expected-failures.yml and deliberately absent here.
//!
//! Every contract call is counted by method ([`FixtureBackend::calls`]) so tests can prove the
//! suite's requests really reached this backend through the gateway.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use serde_json::{json, Value};

use super::backend::CONTRACT_PATH;
use super::http_server::{json_response, Server};

/// A 1×1 red PNG, base64.
pub const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A valid 46-byte WAV file (PCM 16-bit mono 8 kHz, one sample of silence), base64.
pub const WAV_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQIAAAAAAA==";

/// Fixture texts the conformance checks (and our own assertions) look for.
pub const SIMPLE_TEXT: &str = "This is a simple text response for testing.";
pub const ERROR_TEXT: &str = "This tool intentionally returns an error for testing";
pub const EMBEDDED_TEXT: &str = "This is an embedded resource content.";
pub const STATIC_TEXT: &str = "This is the content of the static text resource.";
pub const SIMPLE_PROMPT_TEXT: &str = "This is a simple prompt for testing.";
pub const JSON_SCHEMA_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Tool names the fixture offers (the conformance fixtures plus `echo`), in listing order.
pub const TOOL_NAMES: [&str; 8] = [
    "test_simple_text",
    "test_image_content",
    "test_audio_content",
    "test_embedded_resource",
    "test_multiple_content_types",
    "test_error_handling",
    "json_schema_2020_12_tool",
    "echo",
];
/// Prompt names the fixture offers.
pub const PROMPT_NAMES: [&str; 4] = [
    "test_simple_prompt",
    "test_prompt_with_arguments",
    "test_prompt_with_embedded_resource",
    "test_prompt_with_image",
];
/// Static resource URIs the fixture offers.
pub const RESOURCE_URIS: [&str; 2] = ["test://static-text", "test://static-binary"];
/// The resource template the fixture offers.
pub const TEMPLATE_URI: &str = "test://template/{id}/data";

/// A running fixture backend; stops on drop.
pub struct FixtureBackend {
    calls: Arc<Mutex<BTreeMap<String, usize>>>,
    server: Server,
}

impl FixtureBackend {
    /// Starts on an ephemeral port of 127.0.0.1 in the current tokio runtime.
    pub async fn start() -> FixtureBackend {
        let calls = Arc::new(Mutex::new(BTreeMap::new()));
        let counted = Arc::clone(&calls);
        let server = Server::start(move |req| handle(Arc::clone(&counted), req))
            .await
            .expect("bind 127.0.0.1:0");
        FixtureBackend { calls, server }
    }

    /// `http://127.0.0.1:<port>` (the contract path is the default one).
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// How often each contract method was called so far.
    pub fn calls(&self) -> BTreeMap<String, usize> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How often `method` was called so far.
    pub fn call_count(&self, method: &str) -> usize {
        self.calls().get(method).copied().unwrap_or(0)
    }
}

/// A contract reply: status, whether the body is a pass-through `CallToolResult`, body.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureReply {
    pub status: u16,
    pub call_tool_result: bool,
    pub body: Value,
}

impl FixtureReply {
    fn json(body: Value) -> Self {
        FixtureReply {
            status: 200,
            call_tool_result: false,
            body,
        }
    }

    fn tool_result(body: Value) -> Self {
        FixtureReply {
            status: 200,
            call_tool_result: true,
            body,
        }
    }

    fn error(status: u16, message: String) -> Self {
        FixtureReply {
            status,
            call_tool_result: false,
            body: json!({ "error": message }),
        }
    }
}

async fn handle(
    calls: Arc<Mutex<BTreeMap<String, usize>>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let reply = if req.uri().path() != CONTRACT_PATH {
        FixtureReply::error(404, "Not found".into())
    } else if req.method() != hyper::Method::POST {
        FixtureReply::error(405, "POST only".into())
    } else {
        match req.into_body().collect().await {
            Err(_) => FixtureReply::error(400, "unreadable body".into()),
            Ok(collected) => match serde_json::from_slice::<Value>(&collected.to_bytes()) {
                Err(_) => FixtureReply::error(400, "Invalid JSON body".into()),
                Ok(body) => {
                    let method = body["method"].as_str().unwrap_or("").to_owned();
                    *calls
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(method.clone())
                        .or_default() += 1;
                    let params = body.get("params").cloned().unwrap_or(Value::Null);
                    answer(&method, &params)
                }
            },
        }
    };
    let mut response = json_response(reply.status, reply.body.to_string());
    if reply.call_tool_result {
        response.headers_mut().insert(
            "x-cortex-reply",
            HeaderValue::from_static("call-tool-result"),
        );
    }
    response
}

/// The reply to one contract call (pure, so it is easy to reason about).
pub fn answer(method: &str, params: &Value) -> FixtureReply {
    match method {
        "list_tools" => FixtureReply::json(json!({ "tools": tools() })),
        "list_prompts" => FixtureReply::json(json!({ "prompts": prompts() })),
        "list_resources" => FixtureReply::json(json!({ "resources": resources() })),
        "list_resource_templates" => FixtureReply::json(json!({ "resourceTemplates": [{
            "uriTemplate": TEMPLATE_URI,
            "name": "template",
            "title": "Resource Template",
            "description": "A resource template with parameter substitution",
            "mimeType": "application/json",
        }]})),
        "get_prompt" => get_prompt(params),
        "read_resource" => read_resource(params),
        "complete" => FixtureReply::json(json!({
            "completion": { "values": completions(params), "hasMore": false }
        })),
        _ => call_tool(method, params),
    }
}

fn empty_object_schema() -> Value {
    json!({ "type": "object", "properties": {} })
}

fn tools() -> Vec<Value> {
    let simple = |name: &str, description: &str| json!({ "name": name, "description": description, "inputSchema": empty_object_schema() });
    vec![
        simple("test_simple_text", "Tests simple text content response"),
        simple("test_image_content", "Tests image content response"),
        simple("test_audio_content", "Tests audio content response"),
        simple(
            "test_embedded_resource",
            "Tests embedded resource content response",
        ),
        simple(
            "test_multiple_content_types",
            "Tests response with multiple content types (text, image, resource)",
        ),
        simple("test_error_handling", "Tests error response handling"),
        json!({
            "name": "json_schema_2020_12_tool",
            "description": "Tool whose input schema uses JSON Schema 2020-12 keywords",
            "inputSchema": {
                "$schema": JSON_SCHEMA_2020_12,
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": { "street": {"type": "string"}, "city": {"type": "string"} }
                    }
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" }
                },
                "additionalProperties": false
            }
        }),
        json!({
            "name": "echo",
            "description": "Echoes its message back as structured content",
            "params": { "message": "string" }
        }),
    ]
}

fn prompts() -> Vec<Value> {
    vec![
        json!({
            "name": "test_simple_prompt",
            "title": "Simple Test Prompt",
            "description": "A simple prompt without arguments",
        }),
        json!({
            "name": "test_prompt_with_arguments",
            "title": "Prompt With Arguments",
            "description": "A prompt with required arguments",
            "arguments": [
                { "name": "arg1", "description": "First test argument", "required": true },
                { "name": "arg2", "description": "Second test argument", "required": true },
            ],
        }),
        json!({
            "name": "test_prompt_with_embedded_resource",
            "title": "Prompt With Embedded Resource",
            "description": "A prompt that includes an embedded resource",
            "arguments": [
                { "name": "resourceUri", "description": "URI of the resource to embed", "required": true },
            ],
        }),
        json!({
            "name": "test_prompt_with_image",
            "title": "Prompt With Image",
            "description": "A prompt that includes image content",
        }),
    ]
}

fn resources() -> Vec<Value> {
    vec![
        json!({
            "uri": "test://static-text",
            "name": "static-text",
            "title": "Static Text Resource",
            "description": "A static text resource for testing",
            "mimeType": "text/plain",
        }),
        json!({
            "uri": "test://static-binary",
            "name": "static-binary",
            "title": "Static Binary Resource",
            "description": "A static binary resource (image) for testing",
            "mimeType": "image/png",
        }),
    ]
}

fn text_message(text: &str) -> Value {
    json!({ "role": "user", "content": { "type": "text", "text": text } })
}

fn get_prompt(params: &Value) -> FixtureReply {
    let arg = |name: &str| params["arguments"][name].as_str().unwrap_or("").to_owned();
    let messages = match params["name"].as_str().unwrap_or("") {
        "test_simple_prompt" => vec![text_message(SIMPLE_PROMPT_TEXT)],
        "test_prompt_with_arguments" => vec![text_message(&format!(
            "Prompt with arguments: arg1='{}', arg2='{}'",
            arg("arg1"),
            arg("arg2")
        ))],
        "test_prompt_with_embedded_resource" => vec![
            json!({ "role": "user", "content": { "type": "resource", "resource": {
                "uri": arg("resourceUri"),
                "mimeType": "text/plain",
                "text": "Embedded resource content for testing.",
            }}}),
            text_message("Please process the embedded resource above."),
        ],
        "test_prompt_with_image" => vec![
            json!({ "role": "user", "content": {
                "type": "image", "data": PNG_BASE64, "mimeType": "image/png",
            }}),
            text_message("Please analyze the image above."),
        ],
        other => return FixtureReply::error(404, format!("Unknown prompt: {other}")),
    };
    FixtureReply::json(json!({ "messages": messages }))
}

/// `test://template/<id>/data` → `<id>`.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn read_resource(params: &Value) -> FixtureReply {
    let uri = params["uri"].as_str().unwrap_or("");
    let content = match uri {
        "test://static-text" => {
            json!({ "uri": uri, "mimeType": "text/plain", "text": STATIC_TEXT })
        }
        "test://static-binary" => {
            json!({ "uri": uri, "mimeType": "image/png", "blob": PNG_BASE64 })
        }
        _ => match template_id(uri) {
            Some(id) => json!({
                "uri": uri,
                "mimeType": "application/json",
                "text": json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") })
                    .to_string(),
            }),
            None => return FixtureReply::error(404, format!("Unknown resource: {uri}")),
        },
    };
    FixtureReply::json(json!({ "contents": [content] }))
}

/// Completions for `test_prompt_with_arguments`: fixed candidates filtered by the prefix typed.
fn completions(params: &Value) -> Vec<String> {
    let is_prompt = params["ref"]["type"] == "ref/prompt"
        && params["ref"]["name"] == "test_prompt_with_arguments";
    if !is_prompt {
        return Vec::new();
    }
    let typed = params["argument"]["value"].as_str().unwrap_or("");
    ["paris", "parma", "test-value", "testing"]
        .iter()
        .filter(|c| c.starts_with(typed))
        .map(|c| c.to_string())
        .collect()
}

fn resource_content(uri: &str, mime_type: &str, text: &str) -> Value {
    json!({ "type": "resource", "resource": { "uri": uri, "mimeType": mime_type, "text": text } })
}

fn call_tool(name: &str, params: &Value) -> FixtureReply {
    let content = match name {
        "test_simple_text" => json!([{ "type": "text", "text": SIMPLE_TEXT }]),
        "test_image_content" => {
            json!([{ "type": "image", "data": PNG_BASE64, "mimeType": "image/png" }])
        }
        "test_audio_content" => {
            json!([{ "type": "audio", "data": WAV_BASE64, "mimeType": "audio/wav" }])
        }
        "test_embedded_resource" => json!([resource_content(
            "test://embedded-resource",
            "text/plain",
            EMBEDDED_TEXT
        )]),
        "test_multiple_content_types" => json!([
            { "type": "text", "text": "Multiple content types test:" },
            { "type": "image", "data": PNG_BASE64, "mimeType": "image/png" },
            resource_content(
                "test://mixed-content-resource",
                "application/json",
                &json!({ "test": "data", "value": 123 }).to_string(),
            ),
        ]),
        "test_error_handling" => {
            return FixtureReply::tool_result(json!({
                "content": [{ "type": "text", "text": ERROR_TEXT }],
                "isError": true,
            }))
        }
        "json_schema_2020_12_tool" => json!([{
            "type": "text",
            "text": format!("Received: {params}"),
        }]),
        "echo" => {
            return match params["message"].as_str() {
                Some(message) => FixtureReply::json(json!({ "echoed": message })),
                None => FixtureReply::error(400, "message (string) is required".into()),
            }
        }
        other => return FixtureReply::error(400, format!("Unknown method: {other}")),
    };
    FixtureReply::tool_result(json!({ "content": content }))
}
