//! Criterion micro-benchmarks of the pure request logic in `cortex-filters` (issue 6 §1).
//!
//! Run: `cargo bench --bench filters` (add a filter, e.g. `-- catalog`, to run a subset).
//! Before the timings, an allocation table (allocations and bytes per operation, from a
//! counting global allocator) is printed for the key operations.
//!
//! Catalog fixtures come from `support::fixtures` and go through the real discovery parser
//! (`contract::parse_list_tools`), so entries have the shape the gateway serves.

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, BatchSize, BenchmarkId, Criterion, Throughput};
use serde_json::{json, Value};

use cortex_filters::catalog::{self, BackendSnapshot, MergedCatalog};
use cortex_filters::contract::{self, Reply, ReplyContext};
use cortex_filters::jsonrpc::{self, Incoming};
use cortex_filters::modern::{
    self, envelope,
    result::{self, CacheHint, CacheScope, Decoration, ResultType},
    state::{self, RequestState, RequestStateSealer},
    RequestHeaders,
};
use cortex_filters::naming::{self, NamingMode};
use cortex_filters::scope::{GrantedScopes, ScopeRules};
use cortex_filters::session::{SessionClaims, SessionSealer};
use cortex_filters::version::{self, ProtocolVersion};

use support::fixtures;

#[global_allocator]
static ALLOC: support::CountingAlloc = support::CountingAlloc;

/// Catalog sizes of issue 6 §1.
const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// The gateway's default `catalog.page_size`.
const PAGE_SIZE: usize = 500;
/// Names the gateway reserves (a subset is enough: merge checks each name once).
const RESERVED: [&str; 3] = ["whoami", "find_tools", "report_missing_capability"];

/// Backends a catalog of `n` tools is spread over: one per 100 tools, 1 to 20.
fn backends_for(n: usize) -> usize {
    (n / 100).clamp(1, 20)
}

/// Snapshots holding `n` tools in all, parsed by the real discovery parser.
fn snapshots(n: usize) -> Vec<BackendSnapshot> {
    let count = backends_for(n);
    (0..count)
        .map(|b| {
            let id = fixtures::backend_id(b);
            let per = n / count + usize::from(b < n % count);
            let reply = fixtures::list_tools_reply(&id, per);
            let tools = contract::parse_list_tools(&reply)
                .map(|p| p.items)
                .unwrap_or_default();
            BackendSnapshot {
                backend_id: id,
                naming: NamingMode::Prefix,
                tools,
                prompts: Vec::new(),
                templates: Vec::new(),
                resources: Vec::new(),
            }
        })
        .collect()
}

/// `mcp:<b>:write` implies `mcp:<b>:read` for every backend (the usual Cortex rule).
fn rules() -> ScopeRules {
    let mut rules = ScopeRules::default();
    for b in 0..20 {
        let id = fixtures::backend_id(b);
        rules
            .implies
            .insert(format!("mcp:{id}:write"), vec![format!("mcp:{id}:read")]);
    }
    rules
}

/// The scope sets the listing benches run with: `(label, granted scopes)`.
fn scope_sets() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("universal", vec!["*".into()]),
        ("one-backend-wildcard", vec!["mcp:b00:*".into()]),
        (
            "three-readers",
            vec![
                "mcp:b00:read".into(),
                "mcp:b01:read".into(),
                "mcp:b02:read".into(),
            ],
        ),
        (
            "two-writers-implied",
            vec!["mcp:b00:write".into(), "mcp:b01:write".into()],
        ),
        ("no-grants", Vec::new()),
    ]
}

/// The cold `tools/list` path of the gateway: filter, page, serialize the first page.
fn list_cold(cat: &MergedCatalog, grants: &GrantedScopes) -> Vec<u8> {
    let vis = catalog::visible_tools(cat, grants);
    match catalog::page(&vis, |t| t.exposed.as_str(), None, PAGE_SIZE) {
        Ok((range, next)) => catalog::tools_list_result(&vis[range], next.as_deref()),
        Err(_) => Vec::new(),
    }
}

fn bench_jsonrpc(c: &mut Criterion) {
    let mut g = c.benchmark_group("jsonrpc");
    let small = fixtures::small_tools_call();
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("parse_body/small_tools_call", |b| {
        b.iter(|| jsonrpc::parse_body(black_box(&small)))
    });
    let large = fixtures::large_tools_call(300 * 1024);
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.bench_function("parse_body/300KB_tools_call", |b| {
        b.iter(|| jsonrpc::parse_body(black_box(&large)))
    });
    g.throughput(Throughput::Elements(1));
    let result = json!({"content":[{"type":"text","text":"{\"echoed\":\"hello\"}"}],"structuredContent":{"echoed":"hello"}});
    g.bench_function("success/small_result", |b| {
        b.iter(|| jsonrpc::success(black_box(&json!(42)), black_box(&result)))
    });
    g.bench_function("error/unknown_tool", |b| {
        b.iter(|| {
            jsonrpc::error(
                Some(black_box(&json!(42))),
                jsonrpc::codes::INVALID_PARAMS,
                "Unknown tool: nope",
                None,
            )
        })
    });
    g.finish();
}

fn bench_version(c: &mut Criterion) {
    let mut g = c.benchmark_group("version");
    g.bench_function("from_header/2025-06-18", |b| {
        b.iter(|| version::from_header(black_box(Some(&b"2025-06-18"[..]))))
    });
    g.bench_function("from_header/absent", |b| {
        b.iter(|| version::from_header(black_box(None)))
    });
    g.bench_function("from_header/unsupported", |b| {
        b.iter(|| version::from_header(black_box(Some(&b"1999-01-01"[..]))))
    });
    g.bench_function("negotiate/2025-06-18", |b| {
        b.iter(|| version::negotiate(black_box(Some("2025-06-18"))))
    });
    g.finish();
}

fn bench_catalog(c: &mut Criterion) {
    let rules = rules();
    let sets: Vec<(&str, GrantedScopes)> = scope_sets()
        .into_iter()
        .map(|(label, s)| (label, GrantedScopes::new(&s, &rules)))
        .collect();
    let mut g = c.benchmark_group("catalog");
    for n in SIZES {
        let snaps = snapshots(n);
        let cat = catalog::merge(&snaps, &RESERVED);
        assert_eq!(cat.tools().len(), n, "fixture must yield {n} tools");
        if n >= 1_000 {
            g.sample_size(20);
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("merge", n), &snaps, |b, snaps| {
            b.iter(|| catalog::merge(black_box(snaps), &RESERVED))
        });
        for (label, grants) in &sets {
            g.bench_with_input(
                BenchmarkId::new(format!("list_cold/{label}"), n),
                &cat,
                |b, cat| b.iter(|| list_cold(black_box(cat), grants)),
            );
        }
        if n >= 1_000 {
            // A refresh where one tool changed its description: what every refresh pays.
            let mut changed = snaps.clone();
            if let Some(t) = changed.first_mut().and_then(|s| s.tools.get_mut(1)) {
                t.description.push_str(" (changed)");
            }
            let new = catalog::merge(&changed, &RESERVED);
            g.bench_with_input(BenchmarkId::new("diff/one_changed", n), &new, |b, new| {
                b.iter(|| catalog::diff(black_box(&cat), black_box(new)))
            });
            let reply = fixtures::list_tools_reply("b00", n);
            g.bench_with_input(
                BenchmarkId::new("discovery/parse_list_tools", n),
                &reply,
                |b, reply| b.iter(|| contract::parse_list_tools(black_box(reply))),
            );
        }
    }
    g.finish();
}

fn bench_naming(c: &mut Criterion) {
    let mut g = c.benchmark_group("naming");
    g.bench_function("exposed_name/prefix", |b| {
        b.iter(|| {
            naming::exposed_name(
                black_box("crm"),
                black_box("get_account"),
                NamingMode::Prefix,
            )
        })
    });
    g.bench_function("exposed_name/sanitized", |b| {
        b.iter(|| {
            naming::exposed_name(
                black_box("crm"),
                black_box("get account/v2"),
                NamingMode::Prefix,
            )
        })
    });
    let long = "x".repeat(200);
    g.bench_function("exposed_name/over_128_hashed", |b| {
        b.iter(|| naming::exposed_name(black_box("crm"), black_box(&long), NamingMode::Prefix))
    });
    for n in [1_000, 10_000] {
        let cat = catalog::merge(&snapshots(n), &RESERVED);
        let hit = format!("{}_{}", fixtures::backend_id(0), fixtures::tool_name(1));
        assert!(cat.tool(&hit).is_some(), "lookup fixture must exist");
        g.bench_with_input(BenchmarkId::new("tool_lookup/hit", n), &cat, |b, cat| {
            b.iter(|| cat.tool(black_box(&hit)).is_some())
        });
        g.bench_with_input(BenchmarkId::new("tool_lookup/miss", n), &cat, |b, cat| {
            b.iter(|| cat.tool(black_box("b00_no_such_tool")).is_some())
        });
    }
    g.finish();
}

fn tool_ctx() -> ReplyContext<'static> {
    ReplyContext {
        backend_id: "b00",
        method: "echo",
    }
}

fn bench_contract(c: &mut Criterion) {
    let mut g = c.benchmark_group("contract");
    let small_args = json!({"message": "hello"});
    g.bench_function("request_body/small", |b| {
        b.iter(|| contract::request_body(black_box("echo"), Some(black_box(&small_args))))
    });
    let large_args = json!({ "rows": fixtures::records(2_000) });
    let large_len = serde_json::to_vec(&large_args).map_or(0, |v| v.len());
    g.throughput(Throughput::Bytes(large_len as u64));
    g.bench_function("request_body/300KB", |b| {
        b.iter(|| contract::request_body(black_box("import_rows"), Some(black_box(&large_args))))
    });
    g.throughput(Throughput::Elements(1));
    let echo_body = br#"{"echoed":"hello"}"#;
    g.bench_function("map_tool_reply/2xx_small_object", |b| {
        b.iter(|| {
            contract::map_tool_reply(
                Reply {
                    status: 200,
                    content_type: Some("application/json"),
                    reply_kind: None,
                    body: black_box(echo_body),
                },
                tool_ctx(),
            )
        })
    });
    let big_reply =
        serde_json::to_vec(&json!({ "rows": fixtures::records(200) })).unwrap_or_default();
    g.throughput(Throughput::Bytes(big_reply.len() as u64));
    g.bench_function("map_tool_reply/2xx_30KB_object", |b| {
        b.iter(|| {
            contract::map_tool_reply(
                Reply {
                    status: 200,
                    content_type: Some("application/json"),
                    reply_kind: None,
                    body: black_box(&big_reply),
                },
                tool_ctx(),
            )
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("map_tool_reply/404_error", |b| {
        b.iter(|| {
            contract::map_tool_reply(
                Reply {
                    status: 404,
                    content_type: Some("application/json"),
                    reply_kind: None,
                    body: black_box(br#"{"error":"no such record"}"#),
                },
                tool_ctx(),
            )
        })
    });
    g.finish();
}

fn claims() -> SessionClaims {
    SessionClaims {
        nonce: [9u8; 16],
        subject: SessionClaims::bind_subject("alice@example.com"),
        version: ProtocolVersion::V2025_06_18,
        client_caps: 0,
        issued_at: 1_700_000_000,
        expires_at: 1_700_086_400,
    }
}

fn bench_session(c: &mut Criterion) {
    let mut g = c.benchmark_group("session");
    let sealer = SessionSealer::new(&[7u8; 32]);
    let claims = claims();
    let id = sealer.seal(&claims);
    g.bench_function("seal", |b| b.iter(|| sealer.seal(black_box(&claims))));
    g.bench_function("open/valid", |b| {
        b.iter(|| sealer.open(black_box(&id), 1_700_000_100))
    });
    let mut tampered = id.clone().into_bytes();
    if let Some(byte) = tampered.get_mut(40) {
        *byte = if *byte == b'A' { b'B' } else { b'A' };
    }
    let tampered = String::from_utf8(tampered).unwrap_or_default();
    g.bench_function("open/tampered", |b| {
        b.iter(|| sealer.open(black_box(&tampered), 1_700_000_100))
    });
    g.bench_function("open/wrong_length", |b| {
        b.iter(|| sealer.open(black_box("short"), 1_700_000_100))
    });
    g.bench_function("bind_subject+belongs_to", |b| {
        b.iter(|| claims.belongs_to(black_box("alice@example.com")))
    });
    g.finish();
}

fn bench_scope(c: &mut Criterion) {
    let mut g = c.benchmark_group("scope");
    let rules = rules();
    for (label, set) in scope_sets() {
        g.bench_with_input(
            BenchmarkId::new("GrantedScopes::new", label),
            &set,
            |b, set| b.iter(|| GrantedScopes::new(black_box(set), &rules)),
        );
    }
    let twenty: Vec<String> = (0..20)
        .map(|b| format!("mcp:{}:read", fixtures::backend_id(b)))
        .collect();
    g.bench_function("GrantedScopes::new/20-exact", |b| {
        b.iter(|| GrantedScopes::new(black_box(&twenty), &rules))
    });
    let writers = GrantedScopes::new(["mcp:b00:write", "mcp:b01:write"], &rules);
    let wildcard = GrantedScopes::new(["mcp:b00:*"], &rules);
    g.bench_function("allows/exact_hit", |b| {
        b.iter(|| writers.allows(black_box(Some("mcp:b01:read"))))
    });
    g.bench_function("allows/miss", |b| {
        b.iter(|| writers.allows(black_box(Some("mcp:b07:read"))))
    });
    g.bench_function("allows/wildcard_hit", |b| {
        b.iter(|| wildcard.allows(black_box(Some("mcp:b00:admin"))))
    });
    g.bench_function("cache_key/two-writers", |b| b.iter(|| writers.cache_key()));
    g.bench_function("GrantedScopes::new+cache_key/two-writers", |b| {
        b.iter_batched(
            || vec!["mcp:b00:write".to_string(), "mcp:b01:write".to_string()],
            |s| GrantedScopes::new(&s, &rules).cache_key(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A conformant modern `tools/call` body and its mirrored headers.
fn modern_call() -> (Vec<u8>, Vec<(&'static str, &'static [u8])>) {
    let body = json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {
    "name": "b00_op_00001", "arguments": {"message": "hello", "region": "us-west1"},
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}, "url": {}}}
    }}});
    let headers: Vec<(&'static str, &'static [u8])> = vec![
        ("host", b"127.0.0.1:8080"),
        ("content-type", b"application/json"),
        ("accept", b"application/json, text/event-stream"),
        ("authorization", b"Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"),
        ("mcp-protocol-version", b"2026-07-28"),
        ("mcp-method", b"tools/call"),
        ("mcp-name", b"b00_op_00001"),
        ("mcp-param-region", b"us-west1"),
    ];
    (body.to_string().into_bytes(), headers)
}

/// The per-request modern envelope: headers collected, era chosen, envelope validated.
fn modern_envelope(headers: &[(&'static str, &'static [u8])], incoming: &Incoming) -> bool {
    let h = RequestHeaders::from_pairs(headers.iter().copied());
    if modern::select_era("POST", &h, incoming) != version::Era::Modern {
        return false;
    }
    let Incoming::Single(m) = incoming else {
        return false;
    };
    envelope::validate("POST", &h, m, &envelope::Policy::default()).is_ok()
}

fn bench_modern(c: &mut Criterion) {
    let mut g = c.benchmark_group("modern");
    let (body, headers) = modern_call();
    let incoming = jsonrpc::parse_body(&body).unwrap_or(Incoming::Batch(Vec::new()));
    g.bench_function("envelope/tools_call", |b| {
        b.iter(|| modern_envelope(black_box(&headers), black_box(&incoming)))
    });
    let annotations = modern::headers::param_headers(&json!({"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "message": {"type": "string"}}}))
    .unwrap_or_default();
    let args = json!({"message": "hello", "region": "us-west1"});
    let h = RequestHeaders::from_pairs(headers.iter().copied());
    g.bench_function("check_param_headers/one", |b| {
        b.iter(|| modern::headers::check_param_headers(black_box(&h), &annotations, Some(&args)))
    });
    g.bench_function("decode_value/base64", |b| {
        b.iter(|| modern::headers::decode_value(black_box(b"=?base64?SGVsbG8sIOS4lueVjA==?=")))
    });

    let rules = rules();
    let universal = GrantedScopes::new(["*"], &rules);
    let cat = catalog::merge(&snapshots(1_000), &RESERVED);
    let page = list_cold(&cat, &universal);
    let d = Decoration {
        result_type: ResultType::Complete,
        cache: Some(CacheHint {
            ttl_ms: 60_000,
            scope: CacheScope::Private,
        }),
        server_info: Some(br#"{"name":"cortex-gateway","version":"0.1.0"}"#),
    };
    g.throughput(Throughput::Bytes(page.len() as u64));
    g.bench_function("result/prepend/tools_page_500", |b| {
        b.iter(|| result::prepend(black_box(&page), &d))
    });
    g.bench_function("result/decorate/tools_page_500", |b| {
        b.iter(|| result::decorate(black_box(&page), &d))
    });
    g.throughput(Throughput::Elements(1));

    let sealer = RequestStateSealer::new(&[7u8; 32]);
    let params = json!({"name": "vault_link", "arguments": {"provider": "github"}});
    let digest = state::request_digest("tools/call", Some(&params));
    let st = RequestState::new(
        "alice@example.com",
        digest,
        1_800_000_000,
        600,
        b"held-call-17".to_vec(),
    );
    let token = sealer.seal(&st).unwrap_or_default();
    g.bench_function("request_digest/small", |b| {
        b.iter(|| state::request_digest("tools/call", Some(black_box(&params))))
    });
    g.bench_function("request_state/seal", |b| {
        b.iter(|| sealer.seal(black_box(&st)))
    });
    g.bench_function("request_state/open", |b| {
        b.iter(|| {
            sealer.open(
                black_box(&token),
                "alice@example.com",
                &digest,
                1_800_000_100,
            )
        })
    });
    g.finish();
}

/// Allocations per operation of the operations on the per-call path, and of listing.
fn alloc_report() {
    let mut r = support::AllocReport::default();
    let small = fixtures::small_tools_call();
    r.measure("jsonrpc::parse_body small tools/call", 10_000, || {
        jsonrpc::parse_body(&small)
    });
    let large = fixtures::large_tools_call(300 * 1024);
    r.measure("jsonrpc::parse_body 300 KB tools/call", 20, || {
        jsonrpc::parse_body(&large)
    });
    r.measure("version::from_header 2025-06-18", 10_000, || {
        version::from_header(Some(&b"2025-06-18"[..]))
    });
    let (modern_body, modern_headers) = modern_call();
    let modern_incoming = jsonrpc::parse_body(&modern_body).unwrap_or(Incoming::Batch(Vec::new()));
    r.measure(
        "modern envelope (era + validate) tools/call",
        10_000,
        || modern_envelope(&modern_headers, &modern_incoming),
    );
    let args = json!({"message": "hello"});
    r.measure("contract::request_body small", 10_000, || {
        contract::request_body("echo", Some(&args))
    });
    r.measure(
        "contract::map_tool_reply 2xx {\"echoed\":…}",
        10_000,
        || {
            contract::map_tool_reply(
                Reply {
                    status: 200,
                    content_type: Some("application/json"),
                    reply_kind: None,
                    body: br#"{"echoed":"hello"}"#,
                },
                tool_ctx(),
            )
        },
    );
    let result: Value = json!({"content":[{"type":"text","text":"{\"echoed\":\"hello\"}"}],"structuredContent":{"echoed":"hello"}});
    r.measure("jsonrpc::success small result", 10_000, || {
        jsonrpc::success(&json!(42), &result)
    });
    let sealer = SessionSealer::new(&[7u8; 32]);
    let claims = claims();
    let id = sealer.seal(&claims);
    r.measure("SessionSealer::seal", 10_000, || sealer.seal(&claims));
    r.measure("SessionSealer::open", 10_000, || {
        sealer.open(&id, 1_700_000_100)
    });
    let rules = rules();
    r.measure("GrantedScopes::new two writers (implied)", 10_000, || {
        GrantedScopes::new(["mcp:b00:write", "mcp:b01:write"], &rules)
    });
    let writers = GrantedScopes::new(["mcp:b00:write", "mcp:b01:write"], &rules);
    r.measure("GrantedScopes::allows", 10_000, || {
        writers.allows(Some("mcp:b01:read"))
    });
    r.measure("naming::exposed_name prefix", 10_000, || {
        naming::exposed_name("crm", "get_account", NamingMode::Prefix)
    });
    let universal = GrantedScopes::new(["*"], &rules);
    for n in [1_000, 10_000] {
        let snaps = snapshots(n);
        let cat = catalog::merge(&snaps, &RESERVED);
        r.measure(
            &format!("MergedCatalog::tool lookup ({n} tools)"),
            10_000,
            || cat.tool("b00_op_00001").is_some(),
        );
        r.measure(
            &format!("tools/list cold, universal ({n} tools, page {PAGE_SIZE})"),
            20,
            || list_cold(&cat, &universal),
        );
        r.measure(&format!("catalog::merge ({n} tools)"), 5, || {
            catalog::merge(&snaps, &RESERVED)
        });
    }
    r.print("cortex-filters");
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_jsonrpc, bench_version, bench_catalog, bench_naming, bench_contract,
        bench_session, bench_scope, bench_modern
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only smoke-run.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list") {
        alloc_report();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
