//! Criterion micro-benchmarks of the gateway's own per-request logic (the `cortex_gateway`
//! lib crate), without HTTP: the cached `tools/list` path (`CatalogStore::view`), the logic
//! of a `tools/call` (route, credentials, contract body, reply mapping, answer),
//! `initialize` and session validation, and authentication in `auth.mode: none`.
//!
//! Run: `cargo bench --bench gateway`. Together with the load harness this splits the cost of
//! a proxied call into "MCP logic" (here) and "HTTP and proxying" (the rest).
//!
//! The state is built from a YAML configuration exactly as `serve` builds it
//! (`config::load_str` → `AppState::new`); backends point at 127.0.0.1:9 and are never called.

mod support;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion};
use futures::executor::block_on;
use serde_json::json;

use cortex_filters::catalog::{self, BackendSnapshot, EntryKind};
use cortex_filters::contract::{self, Reply, ReplyContext};
use cortex_filters::jsonrpc::{self, Incoming, Message};
use cortex_filters::naming::NamingMode;
use cortex_filters::version::ProtocolVersion;
use cortex_gateway::auth::{AuthOutcome, AuthRequest, Principal};
use cortex_gateway::builtins::reserved_names;
use cortex_gateway::config::{self, MapEnv};
use cortex_gateway::credentials::identity_headers;
use cortex_gateway::mcp::call::{CallContext, Dispatched};
use cortex_gateway::mcp::dispatch;
use cortex_gateway::record::RequestRecord;
use cortex_gateway::state::AppState;
use cortex_gateway::upstream::{ListKind, ListPage};

use support::fixtures;

#[global_allocator]
static ALLOC: support::CountingAlloc = support::CountingAlloc;

/// Catalog sizes for the cached listing.
const SIZES: [usize; 3] = [10, 1_000, 10_000];
/// Backends in the bench configuration.
const BACKENDS: usize = 10;

/// A gateway state as `serve` would build it, with a published catalog of `n` tools.
fn state(n: usize, page_size: usize) -> Option<AppState> {
    let mut yaml = format!(
        "server:\n  listen: [\"127.0.0.1:1\"]\nauth:\n  mode: none\ncatalog:\n  page_size: {page_size}\nbackends:\n"
    );
    for b in 0..BACKENDS {
        yaml.push_str(&format!(
            "  - id: {}\n    url: http://127.0.0.1:9\n",
            fixtures::backend_id(b)
        ));
    }
    let loaded = match config::load_str(&yaml, "bench.yaml", &MapEnv::default()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench configuration rejected:\n{e}");
            return None;
        }
    };
    let state = match AppState::new(loaded.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench state: {e}");
            return None;
        }
    };
    let per = (n / BACKENDS).max(1);
    let snaps: Vec<BackendSnapshot> = (0..BACKENDS.min(n))
        .map(|b| {
            let id = fixtures::backend_id(b);
            let reply = fixtures::list_tools_reply(&id, per);
            BackendSnapshot {
                backend_id: id,
                naming: NamingMode::Prefix,
                tools: contract::parse_list_tools(&reply)
                    .map(|p| p.items)
                    .unwrap_or_default(),
                prompts: Vec::new(),
                templates: Vec::new(),
                resources: Vec::new(),
            }
        })
        .collect();
    state
        .shared
        .catalog
        .publish(catalog::merge(&snaps, &reserved_names()));
    Some(state)
}

/// The principal of `auth.mode: none`, as the transport obtains it for every request.
fn principal(state: &AppState) -> Option<Principal> {
    // `authenticate` is async (token validation may fetch keys); mode none never awaits.
    match futures::executor::block_on(state.shared.auth.authenticate(loopback_request())) {
        AuthOutcome::Ok(p) => Some(p),
        _ => None,
    }
}

fn loopback_request() -> AuthRequest<'static> {
    AuthRequest {
        authorization: None,
        dev_mode: None,
        peer: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

fn message(body: &[u8]) -> Option<Message> {
    match jsonrpc::parse_body(body) {
        Ok(Incoming::Single(m)) => Some(m),
        _ => None,
    }
}

/// A `tools/list` through dispatch: the cached path once warm.
fn list_once(cx: &CallContext<'_>, msg: &Message) -> usize {
    let mut rec = RequestRecord::default();
    match block_on(dispatch::dispatch(cx, msg.clone(), &mut rec)) {
        Dispatched::Answer(b) => b.len(),
        Dispatched::List { body, .. } => body.len(),
        _ => 0,
    }
}

/// Where a `tools/call` goes: the catalog lookup and scope check of dispatch.
fn route<'c>(
    cx: &CallContext<'_>,
    current: &'c cortex_gateway::upstream::CatalogState,
    params: &serde_json::Value,
) -> Option<&'c catalog::Entry> {
    let name = params.get("name")?.as_str()?;
    current
        .merged
        .tool(name)
        .filter(|t| cx.principal.grants.allows(t.scope.as_deref()))
}

/// Everything the gateway computes for one `tools/call` of a contract backend, minus HTTP:
/// parse the body, route (catalog lookup, scope check), the identity headers and the
/// contract body, map the backend's reply and serialize the JSON-RPC answer.
fn call_logic(cx: &CallContext<'_>, body: &[u8]) -> usize {
    let Some(Message::Request { id, params, .. }) = message(body) else {
        return 0;
    };
    let params = params.unwrap_or_default();
    let current = cx.shared.catalog.current();
    let Some(tool) = route(cx, &current, &params) else {
        return 0;
    };
    let headers = block_on(cx.policy.identity.headers_for(
        &current.merged,
        &tool.backend_id,
        cx.principal,
    ))
    .map_or(0, |h| h.len());
    let request = contract::request_body(&tool.target, params.get("arguments"));
    let outcome = contract::map_tool_reply(
        Reply {
            status: 200,
            content_type: Some("application/json"),
            reply_kind: None,
            body: br#"{"echoed":"hello"}"#,
        },
        ReplyContext {
            backend_id: &tool.backend_id,
            method: &tool.target,
        },
    );
    outcome.to_response(&id).len() + request.len() + headers
}

fn bench_catalog_cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("gateway_list");
    for n in SIZES {
        // Page size 1,000 so the 1,000-tool list is one page (as in the load harness).
        let Some(state) = state(n, 1_000) else { return };
        let Some(p) = principal(&state) else { return };
        let current = state.shared.catalog.current();
        let build_count = std::cell::Cell::new(0u32);
        let view = || {
            state.shared.catalog.view(
                current.generation,
                ListKind::Tools,
                0,
                &p.scope_key,
                None,
                || {
                    build_count.set(build_count.get() + 1);
                    let vis = catalog::visible(&current.merged, EntryKind::Tool, &p.grants);
                    let (range, next) = catalog::page(&vis, |t| t.exposed.as_str(), None, 1_000)?;
                    let entries = u32::try_from(range.len()).unwrap_or(u32::MAX);
                    Ok(ListPage::new(entries, |out| {
                        catalog::list_result_into(
                            out,
                            "tools",
                            vis[range].iter().map(|t| &t.entry),
                            next.as_deref(),
                        )
                    }))
                },
            )
        };
        let page_len = view().map_or(0, |b| b.len());
        g.bench_function(BenchmarkId::new("CatalogStore::view/hit", n), |b| {
            b.iter(|| view().map(|b| b.len()))
        });
        assert_eq!(
            build_count.get(),
            1,
            "the view must be served from the cache"
        );
        let policy = state.policy();
        let cx = CallContext {
            shared: &state.shared,
            policy: &policy,
            principal: &p,
            session: None,
            version: ProtocolVersion::V2025_06_18,
            presentation: Default::default(),
            client_caps: 0,
        };
        let Some(list) = message(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#) else {
            return;
        };
        eprintln!("gateway_list: {n} tools, first page {page_len} bytes");
        g.bench_function(BenchmarkId::new("dispatch_tools_list/cached", n), |b| {
            b.iter(|| list_once(&cx, black_box(&list)))
        });
    }
    g.finish();
}

fn bench_call_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("gateway_call");
    let Some(state) = state(1_000, 500) else {
        return;
    };
    let Some(p) = principal(&state) else { return };
    let policy = state.policy();
    let cx = CallContext {
        shared: &state.shared,
        policy: &policy,
        principal: &p,
        session: None,
        version: ProtocolVersion::V2025_06_18,
        presentation: Default::default(),
        client_caps: 0,
    };
    g.bench_function("authenticate/mode_none", |b| {
        b.iter(|| {
            match futures::executor::block_on(
                state
                    .shared
                    .auth
                    .authenticate(black_box(loopback_request())),
            ) {
                AuthOutcome::Ok(p) => p.sub.len(),
                _ => 0,
            }
        })
    });
    let body = fixtures::small_tools_call();
    assert!(
        call_logic(&cx, &body) > 0,
        "tools/call must route to a backend"
    );
    g.bench_function("tools_call/route", |b| {
        b.iter(|| {
            let Some(Message::Request { params, .. }) = message(black_box(&body)) else {
                return 0;
            };
            let params = params.unwrap_or_default();
            let current = cx.shared.catalog.current();
            route(&cx, &current, &params).map_or(0, |t| t.target.len())
        })
    });
    g.bench_function("tools_call/full_logic", |b| {
        b.iter(|| call_logic(&cx, black_box(&body)))
    });
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
    g.bench_function("initialize/dispatch", |b| {
        b.iter(|| {
            let Some(msg) = message(black_box(init)) else {
                return 0;
            };
            let mut rec = RequestRecord::default();
            match block_on(dispatch::dispatch(&cx, msg, &mut rec)) {
                Dispatched::Initialized { body, session_id } => body.len() + session_id.len(),
                _ => 0,
            }
        })
    });
    let id =
        state
            .shared
            .sessions
            .create(&p.sub, ProtocolVersion::V2025_06_18, 0, p.grants.clone());
    g.bench_function("session/validate", |b| {
        b.iter(|| {
            state
                .shared
                .sessions
                .validate(black_box(&id), &p.sub, &p.grants)
                .is_ok()
        })
    });
    g.finish();
}

fn alloc_report() {
    let mut r = support::AllocReport::default();
    let Some(state) = state(1_000, 1_000) else {
        return;
    };
    let Some(p) = principal(&state) else { return };
    let policy = state.policy();
    let cx = CallContext {
        shared: &state.shared,
        policy: &policy,
        principal: &p,
        session: None,
        version: ProtocolVersion::V2025_06_18,
        presentation: Default::default(),
        client_caps: 0,
    };
    r.measure(
        "authenticate (auth.mode none: principal clone)",
        10_000,
        || state.shared.auth.authenticate(loopback_request()),
    );
    let body = fixtures::small_tools_call();
    r.measure(
        "tools/call MCP logic (parse → route → map reply → answer)",
        10_000,
        || call_logic(&cx, &body),
    );
    r.measure("credentials::identity_headers", 10_000, || {
        identity_headers(&p)
    });
    if let Some(list) = message(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#) {
        r.measure(
            "tools/list cached, 1,000 tools (view hit + answer head)",
            1_000,
            || list_once(&cx, &list),
        );
    }
    let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}"#;
    r.measure(
        "initialize dispatch (seal + session insert + answer)",
        2_000,
        || {
            let mut rec = RequestRecord::default();
            message(init).map(|m| block_on(dispatch::dispatch(&cx, m, &mut rec)))
        },
    );
    let id =
        state
            .shared
            .sessions
            .create(&p.sub, ProtocolVersion::V2025_06_18, 0, p.grants.clone());
    r.measure("SessionManager::validate", 10_000, || {
        state
            .shared
            .sessions
            .validate(&id, &p.sub, &p.grants)
            .is_ok()
    });
    let args = json!({"message": "hello"});
    r.measure("contract::request_body small", 10_000, || {
        contract::request_body("echo", Some(&args))
    });
    r.print("cortex_gateway (in-process)");
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_catalog_cache, bench_call_path
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list") {
        alloc_report();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
