//! A contract backend's reply as the gateway maps it: `tools/call`, `get_prompt`,
//! `read_resource`, `complete`, the methods outside MCP and the discovery lists.
//!
//! Input: the request form of `cortex_fuzz`, whose first line is the HTTP status, with the
//! `Content-Type` and `X-Cortex-Reply` headers and the body. Checked: no panic; every
//! outcome is one valid JSON-RPC answer; a tool result is a `CallToolResult` (an object with
//! a `content` array); a non-2xx reply is never passed through as the backend's own result.
#![no_main]

use cortex_filters::contract::{self, Outcome, Reply, ReplyContext};
use cortex_fuzz::{assert_jsonrpc, Request};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn header<'a>(req: &'a Request<'_>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

fn answer(o: &Outcome) {
    assert_jsonrpc(&o.to_response(&json!(1)));
    assert_jsonrpc(&o.to_response(&json!("id")));
}

fuzz_target!(|data: &[u8]| {
    let req = Request::parse(data);
    let status: u16 = req.method.parse().unwrap_or(200);
    let reply = Reply {
        status,
        content_type: header(&req, "content-type"),
        reply_kind: header(&req, contract::REPLY_KIND_HEADER),
        body: req.body,
    };
    let ctx = ReplyContext {
        backend_id: "crm",
        method: "search",
    };

    let tool = contract::map_tool_reply(reply, ctx);
    answer(&tool);
    if let Outcome::Result(r) = &tool {
        assert!(
            r.get("content").is_some_and(Value::is_array),
            "a tool result without a content array: {r}"
        );
    }
    for o in [
        contract::map_prompt_reply(reply, ctx),
        contract::map_resource_reply(reply, ctx, "crm://a"),
        contract::map_completion_reply(reply, ctx),
        contract::map_method_reply(reply, ctx),
    ] {
        answer(&o);
        if !(200..300).contains(&status) {
            if let Outcome::Result(r) = &o {
                assert_eq!(r, &contract::empty_completion(), "status {status}");
            }
        }
    }

    if let contract::DiscoveryReply::Value(v) = contract::classify_discovery_reply(reply) {
        let _ = contract::parse_list_tools(&v);
        let _ = contract::parse_list_prompts(&v);
        let _ = contract::parse_list_resources(&v);
        let _ = contract::parse_list_resource_templates(&v);
        if let Some(Value::Object(p)) = v.get("params") {
            let _ = contract::shorthand_to_schema(p);
        }
    }
});
