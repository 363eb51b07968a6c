//! The integration tests: ONE test binary (`cargo test --test it`), so the gateway crate is
//! linked into a test executable once, not once per test file.
//!
//! Each module below was a test file of its own; its tests are named `<module>::<test>`
//! (`cargo test --test it federation::` runs one module). The support modules (`common`,
//! `*_support`, `dev_as_common`) are shared by all of them. Every test runs as a thread of
//! this one process: a test must not change the process (environment, current directory,
//! signal handlers) and must bind ephemeral loopback ports; see tests/README.md.
//!
//! The data the tests hand to third-party tools stays beside this folder: tests/python,
//! tests/js, tests/oidc and tests/conformance.

mod common;

mod audit_support;
mod builtins_support;
mod dev_as_common;
mod fleet_support;
mod store_support;

mod attack_http;
mod attack_jwt;
mod attack_sessions;
mod attack_vault;
mod audit_trail;
mod builtins_catalog;
mod builtins_tickets;
mod builtins_tools;
mod builtins_webhook;
mod config_cli;
mod conformance;
mod cortex_env;
mod demo;
mod dev_as;
mod dev_as_e2e;
mod docker_image;
mod edge_backend;
mod edge_http;
mod edge_limits;
mod fault_auth;
mod fault_contract;
mod fault_native;
mod fault_redis;
mod fault_store;
mod federation;
mod fleet;
mod interop_clients;
mod mcp_transport;
mod modern_bridge;
mod modern_conformance;
mod modern_endpoint;
mod modern_upstream;
mod native_everything;
mod native_http;
mod native_relay;
mod native_roots_url;
mod native_stdio;
mod native_supervision;
mod oauth_discovery;
mod oauth_identity;
mod oauth_introspection;
mod oauth_metadata;
mod oauth_python;
mod oauth_rotation;
mod oauth_scopes;
mod oauth_tokens;
mod observe;
mod prod_check_backend;
mod prod_discovery;
mod prod_reload;
mod prod_shutdown;
mod prod_tls;
mod python_sdk;
mod sessions;
mod sse;
mod store_suite;
mod vault_cimd;
mod vault_link;
mod vault_native;
mod vault_store;
