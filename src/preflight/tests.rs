//! Tests of the whole loading pipeline: YAML → expansion → overlay → typed config → checks,
//! through [`load_str`](super::load_str), so the features' start-up checks run too, as for
//! `serve`. They live here, above the features, because they exercise those checks.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::*;

fn env(pairs: &[(&str, &str)]) -> MapEnv {
    MapEnv::from_pairs(pairs.iter().copied())
}

/// A valid base: loopback listener, mode none, one loopback backend.
const BASE: &str = "auth:\n  mode: none\n";

fn ok(yaml: &str, pairs: &[(&str, &str)]) -> LoadedConfig {
    match super::load_str(yaml, "gw.yaml", &env(pairs)) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("expected a valid config, got:\n{errors}"),
    }
}

fn errs(yaml: &str, pairs: &[(&str, &str)]) -> Vec<ConfigIssue> {
    match super::load_str(yaml, "gw.yaml", &env(pairs)) {
        Ok(loaded) => panic!("expected errors, got a config: {:?}", loaded.config),
        Err(ConfigErrors(issues)) => issues,
    }
}

fn find<'a>(issues: &'a [ConfigIssue], needle: &str) -> &'a ConfigIssue {
    issues
        .iter()
        .find(|i| i.to_string().contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "no issue containing {needle:?} in:\n{}",
                ConfigErrors(issues.to_vec())
            )
        })
}

fn has_warning(loaded: &LoadedConfig, needle: &str) -> bool {
    loaded.warnings.iter().any(|w| w.contains(needle))
}

#[test]
fn cortex_quick_start_env_file_alone_is_a_valid_config() {
    let file = parse_env_str(
        "OAUTH_ISSUER=https://auth.example.com\n\
         CORTEX_BACKENDS=demo\n\
         CORTEX_BACKEND_DEMO_URL=http://127.0.0.1:4820\n\
         CORTEX_TECHNICAL_TOKEN=demo-technical-token\n\
         CORTEX_DEV_BYPASS_TOKEN=dev-secret\n\
         CORTEX_DEV_BYPASS_SCOPES=mcp:demo:read\n",
    )
    .unwrap();
    let loaded = load(None, &LayeredEnv::new(MapEnv::default(), file)).unwrap();
    let c = &loaded.config;
    assert_eq!(loaded.source, None);
    assert_eq!(c.auth.mode, AuthMode::Oauth);
    assert_eq!(
        c.auth.oauth.issuer.as_deref(),
        Some("https://auth.example.com")
    );
    assert_eq!(c.backends.len(), 1);
    assert_eq!(c.backends[0].id, "demo");
    assert_eq!(c.backends[0].url, "http://127.0.0.1:4820");
    assert_eq!(c.backends[0].path, "/api/cortex/backend");
    assert_eq!(c.backends[0].timeout, Duration::from_secs(10));
    assert_eq!(c.technical_token.as_deref(), Some("demo-technical-token"));
    let bypass = c.auth.dev_bypass.as_ref().unwrap();
    assert_eq!(bypass.token, "dev-secret");
    assert_eq!(bypass.scopes, vec!["mcp:demo:read"]);
    assert_eq!(bypass.role, "admin");
    assert_eq!(
        c.listen_addrs(),
        vec!["127.0.0.1:3213".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(c.canonical_uri(), "http://127.0.0.1:3213/mcp");
    assert_eq!(
        loaded.overrides,
        vec![
            "CORTEX_TECHNICAL_TOKEN",
            "OAUTH_ISSUER",
            "CORTEX_DEV_BYPASS_TOKEN",
            "CORTEX_DEV_BYPASS_SCOPES",
            "CORTEX_BACKENDS",
            "CORTEX_BACKEND_DEMO_URL"
        ]
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn defaults_without_anything_need_an_issuer() {
    let issues = match load(None, &env(&[])) {
        Err(ConfigErrors(issues)) => issues,
        Ok(_) => panic!("defaults alone must not start an oauth gateway without an issuer"),
    };
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].path.as_deref(), Some("auth.oauth.issuer"));
    assert!(issues[0].message.contains("OAUTH_ISSUER"));
}

#[test]
fn unknown_keys_have_position_and_suggestion() {
    let issues = errs("auth:\n  mode: none\ncatalog:\n  refrsh: 10s\n", &[]);
    assert_eq!(issues.len(), 1);
    let issue = &issues[0];
    assert_eq!(issue.location.as_deref(), Some("gw.yaml:4:3"));
    assert_eq!(issue.path.as_deref(), Some("catalog.refrsh"));
    assert_eq!(
        issue.message,
        "unknown key `refrsh` in `catalog`; did you mean `refresh`?"
    );
    assert_eq!(
        issue.to_string(),
        "gw.yaml:4:3: catalog.refrsh: unknown key `refrsh` in `catalog`; did you mean `refresh`?"
    );

    let issues = errs(
        "servr:\n  listen: []\nbackends:\n  - id: a\n    url: http://127.0.0.1:1\n    timout: 5s\n",
        &[],
    );
    find(
        &issues,
        "unknown top-level key `servr`; did you mean `server`?",
    );
    let issue = find(
        &issues,
        "unknown key `timout` in `backends[0]`; did you mean `timeout`?",
    );
    assert_eq!(issue.location.as_deref(), Some("gw.yaml:6:5"));
}

#[test]
fn all_problems_are_reported_together_in_file_order() {
    let yaml = "\
server:
  threads: many
  max_body_bytes: 4 megs
catalog:
  refresh: 500ms
  page_size: 0
  pagesize: 10
auth:
  mode: nope
backends:
  - id: crm
  - id: Bad Id
    url: ftp://x
";
    let issues = errs(yaml, &[]);
    let text = ConfigErrors(issues.clone()).to_string();
    let expected = [
        ("gw.yaml:2:12", "server.threads", "expected a whole number"),
        (
            "gw.yaml:3:19",
            "server.max_body_bytes",
            "invalid size `4 megs`",
        ),
        (
            "gw.yaml:5:12",
            "catalog.refresh",
            "500ms is too short: at least 1s",
        ),
        ("gw.yaml:6:14", "catalog.page_size", "between 1 and 10000"),
        (
            "gw.yaml:7:3",
            "catalog.pagesize",
            "did you mean `page_size`?",
        ),
        ("gw.yaml:9:9", "auth.mode", "did you mean"),
        (
            "gw.yaml:11:5",
            "backends[0]",
            "missing required key `url` (or set CORTEX_BACKEND_CRM_URL)",
        ),
        ("gw.yaml:12:9", "backends[1].id", "not a valid backend id"),
        (
            "gw.yaml:13:10",
            "backends[1].url",
            "must be an http:// or https:// URL",
        ),
    ];
    for (location, path, needle) in expected {
        let issue = issues
            .iter()
            .find(|i| i.path.as_deref() == Some(path))
            .unwrap_or_else(|| panic!("no issue at {path} in:\n{text}"));
        assert_eq!(issue.location.as_deref(), Some(location), "{issue}");
        assert!(issue.message.contains(needle), "{issue}");
    }
    let lines: Vec<u64> = issues
        .iter()
        .filter_map(|i| i.location.as_deref())
        .map(|l| l.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "{text}");
    assert_eq!(text.lines().count(), issues.len());
}

#[test]
fn yaml_syntax_errors_have_line_and_column() {
    let issues = errs("server:\n  listen: [127.0.0.1:3213\nauth: {}\n", &[]);
    assert_eq!(issues.len(), 1);
    assert!(
        issues[0]
            .location
            .as_deref()
            .unwrap()
            .starts_with("gw.yaml:"),
        "{}",
        issues[0]
    );
    assert!(
        issues[0].message.starts_with("invalid YAML"),
        "{}",
        issues[0]
    );
    let issues = errs("- a\n- b\n", &[]);
    assert!(
        issues[0].message.contains("must be a mapping"),
        "{}",
        issues[0]
    );
}

#[test]
fn variables_expand_in_strings_numbers_and_booleans() {
    let yaml = "\
auth:
  mode: none
technical_token: ${TECH}
allow_insecure_backends: ${INSECURE:-false}
server:
  threads: ${THREADS:-4}
  name: gw-$${literal}
sessions:
  secret: ${SECRET:-}
backends:
  - id: a
    url: http://${HOST:-127.0.0.1}:${APORT}
";
    let loaded = ok(
        yaml,
        &[("TECH", "t0ken"), ("APORT", "4820"), ("INSECURE", "true")],
    );
    let c = &loaded.config;
    assert_eq!(c.technical_token.as_deref(), Some("t0ken"));
    assert!(c.allow_insecure_backends);
    assert_eq!(c.server.threads, 4);
    assert_eq!(c.server.name, "gw-${literal}");
    assert_eq!(c.sessions.secret, None);
    assert_eq!(c.backends[0].url, "http://127.0.0.1:4820");
    assert!(loaded.overrides.is_empty());
}

#[test]
fn missing_variables_name_the_variable_and_the_key() {
    let issues = errs(
        "auth:\n  mode: none\ntechnical_token: ${CORTEX_TOKEN}\n",
        &[],
    );
    assert_eq!(issues.len(), 1);
    let issue = &issues[0];
    assert_eq!(issue.location.as_deref(), Some("gw.yaml:3:18"));
    assert_eq!(issue.path.as_deref(), Some("technical_token"));
    assert!(
        issue.message.contains("`CORTEX_TOKEN` is not set"),
        "{issue}"
    );
    // Reported once: not again as a bad duration, nor as a missing required key.
    let issues = errs(
        "auth: {mode: none}\nbackends:\n  - id: a\n    url: ${A_URL}\n    timeout: ${A_TIMEOUT}\n",
        &[],
    );
    assert_eq!(issues.len(), 2, "{}", ConfigErrors(issues.clone()));
    assert_eq!(issues[0].path.as_deref(), Some("backends[0].url"));
    assert_eq!(issues[1].path.as_deref(), Some("backends[0].timeout"));
}

#[test]
fn units_in_yaml() {
    let loaded = ok(
        "auth: {mode: none}\ncatalog: {refresh: 90, stale_grace: 1h30m}\nserver: {max_body_bytes: 64KiB}\nbackends:\n  - {id: a, url: 'http://localhost:1', timeout: 1500ms}\n",
        &[],
    );
    let c = &loaded.config;
    assert_eq!(c.catalog.refresh, Duration::from_secs(90));
    assert_eq!(c.catalog.stale_grace, Duration::from_secs(5400));
    assert_eq!(c.server.max_body_bytes, 65_536);
    assert_eq!(c.backends[0].timeout, Duration::from_millis(1500));

    let issues = errs(
        "auth: {mode: none}\nserver: {max_body_bytes: 512, grace_period: 10 mins}\n",
        &[],
    );
    find(&issues, "512B is out of range: between 1KiB and 256MiB");
    find(&issues, "invalid duration `10 mins`");
    let issues = errs("auth: {mode: none}\nserver: {max_body_bytes: 1GB}\n", &[]);
    find(&issues, "between 1KiB and 256MiB");
    let issues = errs("auth: {mode: none}\nsessions: {idle_timeout: -5}\n", &[]);
    find(&issues, "negative");
}

#[test]
fn environment_overrides_the_file() {
    let yaml = "\
server:
  name: from-file
  listen: ['127.0.0.1:8080']
  allowed_origins: ['https://file.example.com']
auth:
  mode: none
backends:
  - id: crm
    url: https://crm.example.com
    timeout: 5s
";
    let loaded = ok(
        yaml,
        &[
            ("CORTEX_SERVER_NAME", "from-env"),
            ("PORT", "9000"),
            (
                "CORTEX_ALLOWED_ORIGINS",
                "https://a.example.com, *.example.org",
            ),
            ("CORTEX_BACKEND_CRM_TIMEOUT_MS", "2500"),
            ("CORTEX_WEBSITE_URL", "https://www.example.com"),
            ("CORTEX_CANONICAL_URI", "https://mcp.example.com/gw/mcp"),
        ],
    );
    let c = &loaded.config;
    assert_eq!(c.server.name, "from-env");
    assert_eq!(c.server.listen, vec!["127.0.0.1:9000"]);
    assert_eq!(
        c.server.allowed_origins,
        vec!["https://a.example.com", "*.example.org"]
    );
    assert_eq!(c.backends[0].timeout, Duration::from_millis(2500));
    assert_eq!(
        c.server.website_url.as_deref(),
        Some("https://www.example.com")
    );
    assert_eq!(c.canonical_uri(), "https://mcp.example.com/gw/mcp");
    assert_eq!(c.mcp_path(), "/gw/mcp");
    assert!(loaded.overrides.contains(&"PORT".to_string()));
    assert!(loaded
        .overrides
        .contains(&"CORTEX_BACKEND_CRM_TIMEOUT_MS".to_string()));
}

#[test]
fn oauth_variables_fill_auth_oauth() {
    let loaded = ok(
        "",
        &[
            ("OAUTH_ISSUER", "https://auth.example.com"),
            ("OAUTH_AUDIENCE", "https://mcp.example.com/mcp"),
            ("OAUTH_JWKS_URL", "https://auth.example.com/jwks"),
            ("OAUTH_REQUIRED_SCOPES", "mcp:use, openid"),
            ("CORTEX_REQUIRED_POOL", "staff"),
        ],
    );
    let o = &loaded.config.auth.oauth;
    assert_eq!(o.audience.as_deref(), Some("https://mcp.example.com/mcp"));
    assert_eq!(o.jwks_url.as_deref(), Some("https://auth.example.com/jwks"));
    assert_eq!(o.required_scopes, vec!["mcp:use", "openid"]);
    assert_eq!(o.required_pool.as_deref(), Some("staff"));
    assert!(has_warning(
        &loaded,
        "no backends: only builtins will be listed"
    ));
}

#[test]
fn invalid_environment_values_name_the_variable() {
    let issues = errs(
        "auth: {mode: none}\nbackends:\n  - {id: a, url: 'http://127.0.0.1:1'}\n",
        &[
            ("PORT", "abc"),
            ("CORTEX_BACKEND_A_TIMEOUT_MS", "-1"),
            ("CORTEX_CANONICAL_URI", "not a url"),
        ],
    );
    find(&issues, "PORT must be a port number (0-65535), got `abc`");
    find(
        &issues,
        "CORTEX_BACKEND_A_TIMEOUT_MS must be a whole number of milliseconds, got `-1`",
    );
    let issue = find(&issues, "(set by CORTEX_CANONICAL_URI)");
    assert_eq!(issue.path.as_deref(), Some("server.canonical_uri"));
    assert_eq!(issue.location, None);

    let issues = errs(
        "auth: {mode: none}\nbackends:\n  - {id: a, url: 'http://127.0.0.1:1'}\n",
        &[("CORTEX_BACKEND_A_TIMEOUT_MS", "0")],
    );
    let issue = find(&issues, "between 1ms and 10m");
    assert!(
        issue
            .message
            .ends_with("(set by CORTEX_BACKEND_A_TIMEOUT_MS)"),
        "{issue}"
    );
}

#[test]
fn backend_url_can_come_from_the_environment() {
    let yaml =
        "auth: {mode: none}\ntechnical_token: t\nbackends:\n  - id: my-crm\n    naming: none\n";
    let loaded = ok(
        yaml,
        &[("CORTEX_BACKEND_MY_CRM_URL", "https://crm.example.com")],
    );
    assert_eq!(loaded.config.backends[0].url, "https://crm.example.com");
    assert_eq!(loaded.config.backends[0].naming, Naming::None);
    let issues = errs(yaml, &[]);
    let issue = find(
        &issues,
        "missing required key `url` (or set CORTEX_BACKEND_MY_CRM_URL)",
    );
    assert_eq!(issue.location.as_deref(), Some("gw.yaml:4:5"));
}

#[test]
fn cortex_backends_skips_ids_without_url() {
    let loaded = ok(
        "auth: {mode: none}\n",
        &[
            ("CORTEX_BACKENDS", "demo, ghost"),
            ("CORTEX_BACKEND_DEMO_URL", "http://127.0.0.1:4820"),
            ("CORTEX_TECHNICAL_TOKEN", "tt"),
        ],
    );
    assert_eq!(loaded.config.backends.len(), 1);
    assert!(has_warning(&loaded, "`ghost` but it has no URL"));
}

#[test]
fn plain_http_off_loopback_needs_an_explicit_allowance() {
    let yaml = "auth: {mode: none}\nbackends:\n  - {id: a, url: 'http://10.0.0.5:8080'}\n";
    let issues = errs(yaml, &[]);
    let issue = find(&issues, "set allow_insecure_backends: true or CORTEX_ALLOW_INSECURE_BACKENDS=true to allow plain HTTP");
    assert_eq!(issue.path.as_deref(), Some("backends[0].url"));
    assert_eq!(issue.location.as_deref(), Some("gw.yaml:3:18"));
    ok(yaml, &[("CORTEX_ALLOW_INSECURE_BACKENDS", "true")]);
    ok(&format!("{yaml}allow_insecure_backends: true\n"), &[]);
    ok("auth: {mode: none}\nbackends:\n  - {id: a, url: 'http://localhost:8080'}\n  - {id: b, url: 'http://[::1]:1'}\n", &[]);
}

#[test]
fn backend_checks() {
    let yaml = "\
auth: {mode: none}
backends:
  - {id: a, url: 'https://a.example.com?x=1'}
  - {id: a, url: 'https://b.example.com', path: api}
  - {id: c, url: 'https://c.example.com', timeout: 11m}
  - {id: d, url: '/relative'}
";
    let issues = errs(yaml, &[]);
    find(&issues, "must not have a query or fragment");
    let dup = find(&issues, "backend id `a` is already used by backends[0]");
    assert_eq!(dup.path.as_deref(), Some("backends[1].id"));
    find(&issues, "`api` must start with `/`");
    find(&issues, "11m is out of range: between 1ms and 10m");
    find(&issues, "`/relative` is not a URL");
}

#[test]
fn backend_indices_stay_file_indices_after_a_bad_entry() {
    let yaml = "auth: {mode: none}\nbackends:\n  - {id: a, url: 'https://a.example.com', timeout: soon}\n  - {id: b, url: 'ftp://b'}\n";
    let issues = errs(yaml, &[]);
    assert_eq!(
        find(&issues, "invalid duration").path.as_deref(),
        Some("backends[0].timeout")
    );
    let issue = find(&issues, "must be an http:// or https:// URL");
    assert_eq!(issue.path.as_deref(), Some("backends[1].url"));
    assert_eq!(issue.location.as_deref(), Some("gw.yaml:4:18"));
}

#[test]
fn naming_none_twice_warns() {
    let loaded = ok(
        "auth: {mode: none}\ntechnical_token: t\nbackends:\n  - {id: a, url: 'http://127.0.0.1:1', naming: none}\n  - {id: b, url: 'http://127.0.0.1:2', naming: none}\n",
        &[],
    );
    assert!(
        has_warning(&loaded, "`a`, `b` use `naming: none`"),
        "{:?}",
        loaded.warnings
    );
    assert!(!has_warning(&loaded, "technical token"));
}

#[test]
fn missing_technical_token_warns() {
    let loaded = ok(
        "auth: {mode: none}\nbackends:\n  - {id: a, url: 'http://127.0.0.1:1'}\n",
        &[],
    );
    assert!(
        has_warning(&loaded, "no technical token"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn auth_none_only_on_loopback() {
    let issues = errs(
        "server: {listen: ['127.0.0.1:3213', '0.0.0.0:3214']}\nauth: {mode: none}\n",
        &[],
    );
    let issue = find(
        &issues,
        "only allowed when every listener is on loopback; 0.0.0.0:3214 is not",
    );
    assert_eq!(issue.path.as_deref(), Some("auth.mode"));
    assert_eq!(issue.location.as_deref(), Some("gw.yaml:2:14"));
    let issues = errs(BASE, &[("HOSTNAME", "0.0.0.0")]);
    find(&issues, "0.0.0.0:3213 is not");
    ok(
        "server: {listen: ['localhost:3213', '[::1]:3213']}\nauth: {mode: none}\n",
        &[],
    );
}

#[test]
fn oauth_without_issuer_needs_a_dev_bypass() {
    let issues = errs("auth: {mode: oauth}\n", &[]);
    find(&issues, "no issuer is configured");
    let loaded = ok("auth:\n  dev_bypass: {token: long-enough}\n", &[]);
    assert!(
        has_warning(&loaded, "only dev-bypass requests"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn dev_bypass_checks() {
    let issues = errs("auth:\n  dev_bypass: {token: short}\n", &[]);
    let issue = find(&issues, "too short (5 characters): at least 8");
    assert_eq!(issue.path.as_deref(), Some("auth.dev_bypass.token"));
    let issues = errs("auth:\n  dev_bypass: {scopes: [a]}\n", &[]);
    find(
        &issues,
        "missing required key `token` (or set CORTEX_DEV_BYPASS_TOKEN)",
    );
    let loaded = ok(
        "server: {listen: ['0.0.0.0:3213']}\nauth:\n  oauth: {issuer: 'https://auth.example.com'}\n  dev_bypass: {token: long-enough}\n",
        &[],
    );
    assert!(
        has_warning(&loaded, "honoured only for loopback peers"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn node_env_production_disables_the_dev_bypass() {
    let loaded = ok(
        "auth:\n  oauth: {issuer: 'https://auth.example.com'}\n  dev_bypass: {token: long-enough}\n",
        &[("NODE_ENV", "production")],
    );
    assert_eq!(loaded.config.auth.dev_bypass, None);
    assert!(loaded.overrides.contains(&"NODE_ENV".to_string()));
    assert!(has_warning(&loaded, "dev bypass (X-Dev-Mode) is disabled"));
    // Without an issuer, production leaves nothing to serve: refused.
    let issues = errs(
        "",
        &[
            ("CORTEX_DEV_BYPASS_TOKEN", "dev-secret"),
            ("NODE_ENV", "production"),
        ],
    );
    find(&issues, "no issuer is configured");
}

#[test]
fn session_catalog_and_server_ranges() {
    let yaml = "\
auth: {mode: none}
server: {threads: 0}
sessions:
  secret: too-short
  idle_timeout: 2d
  absolute_timeout: 1d
  replay_buffer: 0
catalog: {page_size: 10001}
";
    let issues = errs(yaml, &[]);
    find(&issues, "at least 32 characters (it has 9)");
    find(&issues, "2d is longer than sessions.absolute_timeout (1d)");
    find(
        &issues,
        "server.threads: 0 is out of range: between 1 and 256",
    );
    find(
        &issues,
        "sessions.replay_buffer: 0 is out of range: between 1 and 100000",
    );
    find(&issues, "catalog.page_size: 10001 is out of range");
    ok(
        "auth: {mode: none}\nsessions: {secret: '0123456789abcdef0123456789abcdef'}\n",
        &[],
    );
}

#[test]
fn origins_and_canonical_uri_are_checked() {
    let yaml = "\
auth: {mode: none}
server:
  allowed_origins: ['https://ok.example.com', '*.example.org', '*', 'null', 'app.example.com', 'https://x.example.com/path']
  canonical_uri: https://mcp.example.com
";
    let issues = errs(yaml, &[]);
    assert_eq!(
        find(&issues, "`app.example.com` is not an origin")
            .path
            .as_deref(),
        Some("server.allowed_origins[4]")
    );
    find(&issues, "`https://x.example.com/path` is not an origin");
    find(&issues, "must include the endpoint path");
    let issues = errs(
        "auth: {mode: none}\nserver: {canonical_uri: 'ftp://x/mcp'}\n",
        &[],
    );
    find(&issues, "must be an http:// or https:// URL");
    let issues = errs(
        "auth: {mode: none}\nserver: {canonical_uri: 'https://x/mcp#frag'}\n",
        &[],
    );
    find(&issues, "must not have a query or fragment");
}

#[test]
fn listeners_and_derived_uris() {
    let loaded = ok(
        "server: {listen: ['localhost:4000']}\nauth: {mode: none}\n",
        &[],
    );
    assert_eq!(
        loaded.config.listen_addrs(),
        vec!["127.0.0.1:4000".parse::<SocketAddr>().unwrap()]
    );
    assert!(loaded.config.all_listeners_loopback());
    assert_eq!(loaded.config.canonical_uri(), "http://127.0.0.1:4000/mcp");
    assert_eq!(loaded.config.mcp_path(), "/mcp");
    assert_eq!(loaded.config.website_url(), "http://127.0.0.1:4000");

    let loaded = ok(
        "server: {listen: ['0.0.0.0:8080', '[::]:8081']}\nauth: {oauth: {issuer: 'https://a.example.com'}}\n",
        &[],
    );
    assert_eq!(loaded.config.canonical_uri(), "http://127.0.0.1:8080/mcp");
    assert!(!loaded.config.all_listeners_loopback());
    let loaded = ok(
        "server: {listen: ['[::1]:9000']}\nauth: {mode: none}\n",
        &[],
    );
    assert_eq!(loaded.config.canonical_uri(), "http://[::1]:9000/mcp");
    let loaded = ok(
        "server: {listen: ['10.1.2.3:9000']}\nauth: {oauth: {issuer: 'https://a.example.com'}}\n",
        &[],
    );
    assert_eq!(loaded.config.canonical_uri(), "http://10.1.2.3:9000/mcp");

    let issues = errs("server: {listen: ['gateway.internal:80', '127.0.0.1', '127.0.0.1:99999', '127.0.0.1:1', '127.0.0.1:1']}\nauth: {mode: none}\n", &[]);
    find(&issues, "host names other than localhost are not resolved");
    find(&issues, "`127.0.0.1` has no port");
    find(&issues, "`127.0.0.1:99999` has an invalid port");
    assert_eq!(
        find(&issues, "listed twice").path.as_deref(),
        Some("server.listen[4]")
    );
    let issues = errs("server: {listen: []}\nauth: {mode: none}\n", &[]);
    find(&issues, "at least one listen address is required");
}

#[test]
fn hand_built_configs_have_safe_defaults() {
    let config = Config::default();
    assert_eq!(config.canonical_uri(), "http://127.0.0.1:3213/mcp");
    assert_eq!(config.mcp_path(), "/mcp");
    assert!(config.all_listeners_loopback());
    let mut config = Config::default();
    config.server.listen = vec!["nonsense".into()];
    assert!(config.listen_addrs().is_empty());
    assert!(!config.all_listeners_loopback());
    assert_eq!(config.canonical_uri(), "http://127.0.0.1:3213/mcp");
}

#[test]
fn files_are_read_and_named_in_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, "auth:\n  mode: none\n  modee: x\n").unwrap();
    let issues = load(Some(&path), &env(&[])).unwrap_err().0;
    assert_eq!(issues[0].location, Some(format!("{}:3:3", path.display())));
    std::fs::write(&path, BASE).unwrap();
    let loaded = load(Some(&path), &env(&[])).unwrap();
    assert_eq!(loaded.source.as_deref(), Some(path.as_path()));
    let missing = dir.path().join("missing.yaml");
    let issues = load(Some(&missing), &env(&[])).unwrap_err().0;
    assert!(
        issues[0]
            .message
            .starts_with("cannot read the configuration file"),
        "{}",
        issues[0]
    );
}

#[test]
fn check_report_summarises_without_secrets() {
    let loaded = ok(
        "auth:\n  oauth: {issuer: 'https://auth.example.com'}\n  dev_bypass: {token: super-secret-token, scopes: [mcp:demo:read]}\nsessions: {secret: '0123456789abcdef0123456789abcdefXYZ'}\n",
        &[
            ("CORTEX_BACKENDS", "demo"),
            ("CORTEX_BACKEND_DEMO_URL", "http://127.0.0.1:4820/"),
            ("CORTEX_TECHNICAL_TOKEN", "tech-secret-token"),
            ("CORTEX_RATE_LIMIT_PER_MINUTE", "10"),
        ],
    );
    let report = render_check_report(&loaded);
    for needle in [
        "configuration OK: no file (defaults and environment)",
        "127.0.0.1:3213 (loopback only)",
        "http://127.0.0.1:3213/mcp (path /mcp)",
        "oauth, issuer https://auth.example.com",
        "dev bypass",
        "demo  http://127.0.0.1:4820/api/cortex/backend  timeout 10s",
        "environment overrides: CORTEX_TECHNICAL_TOKEN, CORTEX_BACKENDS, CORTEX_BACKEND_DEMO_URL",
        "CORTEX_BACKEND_DEMO_URL, CORTEX_RATE_LIMIT_PER_MINUTE",
        "technical token: set",
    ] {
        assert!(
            report.contains(needle),
            "{needle:?} missing from:\n{report}"
        );
    }
    for secret in [
        "super-secret-token",
        "tech-secret-token",
        "0123456789abcdef",
    ] {
        assert!(!report.contains(secret), "{secret} leaked:\n{report}");
    }
}

const REFERENCE: &str = include_str!("../../conf/gateway.yaml");

#[test]
fn reference_file_loads_cleanly() {
    let loaded = ok(REFERENCE, &[]);
    let c = &loaded.config;
    // The reference spells out the defaults; spot-check that they are the real ones.
    let defaults = Config::default();
    assert_eq!(
        c.sessions,
        SessionsConfig {
            secret: c.sessions.secret.clone(),
            ..defaults.sessions.clone()
        }
    );
    assert_eq!(c.catalog, defaults.catalog);
    assert_eq!(c.server.max_body_bytes, defaults.server.max_body_bytes);
    assert_eq!(c.server.threads, defaults.server.threads);
    assert_eq!(c.server.grace_period, defaults.server.grace_period);
    assert_eq!(
        c.server.keepalive_timeout,
        defaults.server.keepalive_timeout
    );
    assert_eq!(c.logging, defaults.logging);
    assert!(!c.backends.is_empty());
    // The only warning: the reference leaves the technical token to the environment.
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(has_warning(&loaded, "no technical token"));
    assert!(ok(REFERENCE, &[("CORTEX_TECHNICAL_TOKEN", "t")])
        .warnings
        .is_empty());
}

#[test]
fn reference_file_documents_every_key() {
    // Every key of every struct of the schema must appear in the reference, as a live key
    // or as a commented-out example (`# key:`).
    let mut missing = Vec::new();
    for (path, fields) in schema_fields(REFERENCE) {
        for field in fields {
            let documented = REFERENCE.lines().any(|line| {
                let line = line.trim_start().trim_start_matches('#').trim_start();
                let line = line.strip_prefix("- ").unwrap_or(line);
                line.starts_with(&format!("{field}:"))
            });
            if !documented {
                missing.push(if path.is_empty() {
                    (*field).to_string()
                } else {
                    format!("{path}.{field}")
                });
            }
        }
    }
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
    // The structs only reached through optional values are covered too.
    let paths: Vec<String> = schema_fields(REFERENCE)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    for expected in [
        "server",
        "sessions",
        "catalog",
        "auth",
        "auth.principal",
        "auth.oauth",
        "scopes",
        "logging",
        "backends[0]",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} not reached: {paths:?}"
        );
    }
}

#[test]
fn reference_file_documents_every_environment_variable() {
    let docs = include_str!("../../docs/configuration.md");
    for var in [
        "CORTEX_BACKENDS",
        "CORTEX_BACKEND_<ID>_URL",
        "CORTEX_BACKEND_<ID>_PATH",
        "CORTEX_BACKEND_<ID>_TIMEOUT_MS",
        "CORTEX_TECHNICAL_TOKEN",
        "CORTEX_CANONICAL_URI",
        "CORTEX_ALLOWED_ORIGINS",
        "CORTEX_DEV_BYPASS_TOKEN",
        "CORTEX_DEV_BYPASS_SCOPES",
        "CORTEX_DEV_BYPASS_ROLE",
        "CORTEX_SERVER_NAME",
        "CORTEX_WEBSITE_URL",
        "CORTEX_ALLOW_INSECURE_BACKENDS",
        "PORT",
        "HOSTNAME",
        "OAUTH_ISSUER",
        "OAUTH_AUDIENCE",
        "OAUTH_JWKS_URL",
        "OAUTH_REQUIRED_SCOPES",
        "CORTEX_REQUIRED_POOL",
        "NODE_ENV",
    ] {
        assert!(
            docs.contains(var),
            "docs/configuration.md does not mention {var}"
        );
        if !matches!(var, "NODE_ENV" | "PORT" | "HOSTNAME") {
            assert!(
                REFERENCE.contains(var) || var.contains("<ID>"),
                "conf/gateway.yaml does not mention {var}"
            );
        }
    }
    for (path, fields) in schema_fields(REFERENCE) {
        for field in fields {
            assert!(
                docs.contains(&format!("`{field}`")),
                "docs/configuration.md does not mention `{field}` ({path})"
            );
        }
    }
}

#[test]
fn examples_load() {
    let local = include_str!("../../conf/examples/local-dev.yaml");
    let loaded = ok(local, &[]);
    assert_eq!(loaded.config.auth.mode, AuthMode::None);

    let production = include_str!("../../conf/examples/production.yaml");
    let secrets = [
        (
            "CORTEX_TECHNICAL_TOKEN",
            "technical-token-from-a-secret-store",
        ),
        ("SESSION_SECRET", "0123456789abcdef0123456789abcdef0123"),
    ];
    let loaded = ok(production, &secrets);
    assert!(!loaded.config.all_listeners_loopback());
    assert!(loaded.config.canonical_uri().starts_with("https://"));
    let issues = errs(production, &[]);
    find(&issues, "`SESSION_SECRET` is not set");

    // The env file quoted at the top of the example.
    let cortex = include_str!("../../conf/examples/cortex-env.yaml");
    let quoted: String = cortex
        .lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .filter(|l| l.contains('='))
        .map(|l| format!("{l}\n"))
        .collect();
    let file = parse_env_str(&quoted).unwrap();
    assert!(file.get("CORTEX_BACKENDS").is_some(), "{quoted}");
    let loaded = load_str(cortex, "cortex-env.yaml", &file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.backends[0].id, "demo");
    assert_eq!(loaded.config.backends[0].url, "http://127.0.0.1:4820");
    assert_eq!(loaded.config.backends[0].timeout, Duration::from_secs(5));
    assert_eq!(loaded.config.catalog.page_size, 200);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    // TLS (the certificate files themselves are checked by the start-up checks, above
    // this module).
    let tls = include_str!("../../conf/examples/tls.yaml");
    let loaded = load_str(tls, "tls.yaml", &env(&secrets)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.tls_listen_addrs().len(), 1);
    assert!(!loaded.config.all_listeners_loopback());

    // The configuration embedded in the Kubernetes manifest's ConfigMap.
    let kube = include_str!("../../conf/examples/kubernetes.yaml");
    let embedded: String = kube
        .split("gateway.yaml: |\n")
        .nth(1)
        .expect("the ConfigMap's gateway.yaml")
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let kube_secrets = [
        secrets[0],
        secrets[1],
        ("CORTEX_DATABASE_URL", "postgres://cortex@db:5432/cortex"),
        ("AUDIT_SECRET", "0123456789abcdef0123456789abcdef0123"),
    ];
    let loaded = ok(&embedded, &kube_secrets);
    assert_eq!(loaded.config.backends[0].id, "crm");
}

#[test]
fn dev_bypass_role_and_boolean_spellings_from_the_environment() {
    let loaded = ok(
        "auth:\n  oauth: {issuer: 'https://auth.example.com'}\nbackends:\n  - {id: a, url: 'http://10.0.0.1:1'}\n",
        &[
            ("CORTEX_DEV_BYPASS_TOKEN", "dev-secret"),
            ("CORTEX_DEV_BYPASS_ROLE", "viewer"),
            ("CORTEX_ALLOW_INSECURE_BACKENDS", "1"),
            ("CORTEX_TECHNICAL_TOKEN", "t"),
        ],
    );
    let bypass = loaded.config.auth.dev_bypass.as_ref().unwrap();
    assert_eq!(bypass.role, "viewer");
    assert!(bypass.scopes.is_empty());
    assert!(loaded.config.allow_insecure_backends);
    let issues = errs(
        "auth: {mode: none}\nallow_insecure_backends: true\nbackends:\n  - {id: a, url: 'http://10.0.0.1:1'}\n",
        &[("CORTEX_ALLOW_INSECURE_BACKENDS", "0")],
    );
    find(&issues, "plain HTTP");
}

#[test]
fn blank_optional_text_is_unset_but_empty_scopes_are_kept() {
    let loaded = ok(
        "auth: {mode: none}\ntechnical_token: ''\nserver: {canonical_uri: '', instructions: '${NOPE:-}'}\n",
        &[],
    );
    assert_eq!(loaded.config.technical_token, None);
    assert_eq!(loaded.config.server.canonical_uri, None);
    assert_eq!(loaded.config.server.instructions, None);
    assert_eq!(loaded.config.canonical_uri(), "http://127.0.0.1:3213/mcp");
    let loaded = ok(
        "auth: {mode: none}\nbuiltins:\n  scopes: {whoami: ''}\n",
        &[],
    );
    assert_eq!(loaded.config.builtins.scopes.whoami.as_deref(), Some(""));
    assert_eq!(loaded.config.builtins.scopes.find_tools, None);
}

#[test]
fn empty_dev_bypass_token_is_refused() {
    let issues = errs("auth:\n  dev_bypass: {token: ''}\n", &[]);
    assert_eq!(
        find(&issues, "must not be empty").path.as_deref(),
        Some("auth.dev_bypass.token")
    );
}

#[test]
fn vault_keys_and_providers_are_checked() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // 32 bytes
    let good = format!(
        "{BASE}vault:\n  key: \"{key}\"\n  keys:\n    - {{id: k2, key: \"{key}\"}}\n  providers:\n    - id: design\n      resource: https://mcp.design.example/mcp\nbackends:\n  - id: d\n    url: http://127.0.0.1:9\n    vault_provider: design\n"
    );
    let loaded = ok(&good, &[]);
    assert_eq!(loaded.config.vault.providers[0].id, "design");
    assert_eq!(
        loaded.config.backends[0].vault_provider.as_deref(),
        Some("design")
    );
    // CORTEX_VAULT_KEY is the first key.
    let from_env = ok(BASE, &[("CORTEX_VAULT_KEY", key)]);
    assert_eq!(from_env.config.vault.key.as_deref(), Some(key));
    // A short key, a key id used twice, providers without a key, an unknown provider.
    let issues = errs(&format!("{BASE}vault:\n  key: \"AAAA\"\n"), &[]);
    find(&issues, "3 bytes");
    let issues = errs(
        &format!(
            "{BASE}vault:\n  key: \"{key}\"\n  keys:\n    - {{id: primary, key: \"{key}\"}}\n"
        ),
        &[],
    );
    find(&issues, "used twice");
    let issues = errs(
        &format!(
            "{BASE}vault:\n  providers:\n    - id: design\n      resource: https://x.example/mcp\n"
        ),
        &[],
    );
    find(&issues, "no vault key");
    let issues = errs(
        &format!("{BASE}vault:\n  key: \"{key}\"\nbackends:\n  - id: d\n    url: http://127.0.0.1:9\n    vault_provider: nope\n"),
        &[],
    );
    find(&issues, "no provider `nope`");
    let issues = errs(
        &format!("{BASE}vault:\n  key: \"{key}\"\n  providers:\n    - id: Design!\n      resource: not-a-url\n"),
        &[],
    );
    find(&issues, "a provider id");
    find(&issues, "not a URL");
}

#[test]
fn native_backend_keys_are_checked_per_kind_with_positions() {
    let yaml = "auth: {mode: none}
backends:
  - id: files
    kind: stdio
    url: http://127.0.0.1:1
    headers: {X-Key: v}
  - id: docs
    kind: mcp
    url: http://127.0.0.1:2/mcp
    command: npx
    headers: {Host: evil}
  - id: crm
    url: http://127.0.0.1:3
    scope: mcp:crm:read
  - id: nowhere
    kind: mcp
  - id: lost
    kind: stdio
    command: x
    cwd: /does/not/exist
    max_processes: 4
    idle_timeout: 0s
  - id: many
    kind: stdio
    command: x
    per_user: true
    max_processes: 0
  - id: web
    kind: mcp
    url: http://127.0.0.1:4/mcp
    per_user: true
  - id: plain
    url: http://127.0.0.1:5
    idle_timeout: 1m
";
    let issues = errs(yaml, &[]);
    let text = ConfigErrors(issues.clone()).to_string();
    for (path, needle) in [
        ("backends[0]", "missing required key `command`"),
        ("backends[0].url", "does not apply to `kind: stdio`"),
        ("backends[0].headers", "does not apply to `kind: stdio`"),
        ("backends[1].command", "only applies to `kind: stdio`"),
        ("backends[1].headers", "`Host` cannot be set"),
        ("backends[2].scope", "only applies to native backends"),
        ("backends[3]", "missing required key `url`"),
        ("backends[4].cwd", "is not a directory"),
        (
            "backends[4].max_processes",
            "only applies with `per_user: true`",
        ),
        ("backends[4].idle_timeout", "between 1s and 7d"),
        ("backends[5].max_processes", "at least 1"),
        ("backends[6].per_user", "only applies to `kind: stdio`"),
        (
            "backends[7].idle_timeout",
            "only applies to native backends",
        ),
    ] {
        let issue = issues
            .iter()
            .find(|i| i.path.as_deref() == Some(path) && i.message.contains(needle))
            .unwrap_or_else(|| panic!("no issue at {path} containing {needle:?} in:\n{text}"));
        assert!(issue.location.is_some(), "{issue}");
    }
    let good = ok(
        "auth: {mode: none}
backends:
  - id: files
    kind: stdio
    command: npx
    args: [-y, server]
    env: {A: b}
    scope: mcp:files:read
    scopes: {write_file: mcp:files:write}
    per_user: true
    max_processes: 8
    idle_timeout: 5m
  - id: docs
    kind: mcp
    url: https://docs.example.com/mcp
    bearer: t
    headers: {X-Key: v}
    idle_timeout: 1h
",
        &[],
    );
    assert_eq!(good.config.backends[0].kind, BackendKindConfig::Stdio);
    assert_eq!(good.config.backends[1].kind, BackendKindConfig::Mcp);
    assert!(good.config.backends[0].per_user);
    assert_eq!(good.config.backends[0].max_processes, Some(8));
}

#[test]
fn the_upstream_protocol_applies_to_kind_mcp_only() {
    let yaml = "auth: {mode: none}
backends:
  - id: crm
    url: http://127.0.0.1:3
    protocol: 2026-07-28
  - id: files
    kind: stdio
    command: x
    protocol: legacy
";
    let issues = errs(yaml, &[]);
    let text = ConfigErrors(issues.clone()).to_string();
    for (path, needle) in [
        ("backends[0].protocol", "only applies to `kind: mcp`"),
        ("backends[1].protocol", "does not apply to `kind: stdio`"),
    ] {
        assert!(
            issues
                .iter()
                .any(|i| i.path.as_deref() == Some(path) && i.message.contains(needle)),
            "no issue at {path} containing {needle:?} in:\n{text}"
        );
    }
    let unknown = errs(
        "auth: {mode: none}\nbackends:\n  - {id: docs, kind: mcp, url: 'http://127.0.0.1:2/mcp', protocol: '2027-01-01'}\n",
        &[],
    );
    let text = ConfigErrors(unknown.clone()).to_string();
    assert!(
        text.contains("2026-07-28") && text.contains("legacy"),
        "the accepted values are named: {text}"
    );
    let good = ok(
        "auth: {mode: none}\nbackends:\n  - {id: docs, kind: mcp, url: 'http://127.0.0.1:2/mcp', protocol: '2026-07-28'}\n  - {id: old, kind: mcp, url: 'http://127.0.0.1:3/mcp', protocol: legacy}\n",
        &[],
    );
    assert_eq!(
        good.config.backends[0].protocol,
        Some(crate::config::UpstreamProtocol::V2026_07_28)
    );
    assert_eq!(
        good.config.backends[1].protocol,
        Some(crate::config::UpstreamProtocol::Legacy)
    );
}

/// A vault with provider `design` (optionally with a catalog subject) and `backends`.
fn vault_yaml(provider_extra: &str, backends: &str) -> String {
    format!(
        "auth: {{mode: none}}\ntechnical_token: t\nvault:\n  key: \"{}\"\n  providers:\n    - {{id: design, resource: 'https://design.example.com/mcp', issuer: 'https://as.example.com'{provider_extra}}}\nbackends:\n{backends}",
        "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo="
    )
}

#[test]
fn identity_modes_default_by_kind_and_provider() {
    let loaded = ok(
        &vault_yaml(
            ", catalog_sub: svc",
            "  - {id: crm, url: 'http://127.0.0.1:1'}\n  - {id: docs, kind: mcp, url: 'http://127.0.0.1:2/mcp'}\n  - {id: design, kind: mcp, url: 'http://127.0.0.1:3/mcp', vault_provider: design}\n  - {id: legacy, url: 'http://127.0.0.1:4', vault_provider: design}\n",
        ),
        &[],
    );
    let modes: Vec<IdentityMode> = loaded
        .config
        .backends
        .iter()
        .map(|b| b.identity_mode())
        .collect();
    assert_eq!(
        modes,
        [
            IdentityMode::Passthrough,
            IdentityMode::None,
            IdentityMode::Vault,
            IdentityMode::Vault
        ]
    );
    assert!(loaded.config.backends.iter().all(|b| b.identity.is_none()));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn identity_combinations_that_cannot_work_are_refused() {
    let issues = errs(
        &vault_yaml(
            "",
            "  - {id: a, kind: mcp, url: 'http://127.0.0.1:1/mcp', identity: vault}\n  - {id: b, kind: mcp, url: 'http://127.0.0.1:2/mcp', vault_provider: nope}\n  - {id: c, kind: mcp, url: 'http://127.0.0.1:3/mcp', vault_provider: design, bearer: x}\n  - {id: d, kind: mcp, url: 'http://127.0.0.1:4/mcp', vault_provider: design, headers: {Authorization: 'Bearer x'}}\n  - {id: e, kind: mcp, url: 'http://127.0.0.1:5/mcp', vault_provider: design, identity: mint}\n  - {id: f, kind: stdio, command: cat, identity: mint}\n  - {id: g, url: 'http://127.0.0.1:6', static_catalog: {tools: [{name: x}]}}\n  - {id: h, kind: mcp, url: 'http://127.0.0.1:7/mcp', static_catalog: {tools: [{description: nameless}]}}\n",
        ),
        &[],
    );
    let at = |needle: &str| find(&issues, needle).path.clone().unwrap_or_default();
    assert_eq!(
        at("`vault` sends each user's own linked account, so it needs `vault_provider`"),
        "backends[0].identity"
    );
    find(&issues, "vault.providers has `design`");
    assert_eq!(
        at("no provider `nope` under vault.providers (configured: `design`)"),
        "backends[1].vault_provider"
    );
    assert_eq!(
        at("a static bearer cannot go with a vault provider"),
        "backends[2].bearer"
    );
    assert_eq!(
        at("`Authorization` cannot be a static header"),
        "backends[3].headers"
    );
    assert_eq!(
        at("`mint` cannot go with `vault_provider: design`"),
        "backends[4].identity"
    );
    assert_eq!(
        at("a `kind: stdio` server receives no Authorization header"),
        "backends[5].identity"
    );
    assert_eq!(
        at("`static_catalog` only applies to native backends"),
        "backends[6].static_catalog"
    );
    assert_eq!(
        at("(the entry would be left out)"),
        "backends[7].static_catalog"
    );
}

#[test]
fn explicit_passthrough_to_a_native_server_warns_and_a_vault_backend_without_catalog_says_so() {
    let loaded = ok(
        &vault_yaml(
            "",
            "  - {id: first, kind: mcp, url: 'http://127.0.0.1:1/mcp', identity: passthrough}\n  - {id: design, kind: mcp, url: 'http://127.0.0.1:2/mcp', vault_provider: design}\n  - {id: fixed, kind: mcp, url: 'http://127.0.0.1:3/mcp', vault_provider: design, static_catalog: {tools: [{name: search, inputSchema: {type: object}}]}}\n  - {id: crm, url: 'http://127.0.0.1:4', identity: passthrough}\n",
        ),
        &[],
    );
    assert!(
        has_warning(&loaded, "backends[0].identity: `passthrough` hands each caller's own gateway token to the MCP server of `first`"),
        "{:?}",
        loaded.warnings
    );
    assert!(
        has_warning(&loaded, "backends[1].vault_provider: neither vault.providers[design].catalog_sub (CORTEX_MCP_DESIGN_CATALOG_SUB) nor this backend's static_catalog is set"),
        "{:?}",
        loaded.warnings
    );
    // The static catalog answers it; a contract backend's passthrough is its default.
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
}

#[test]
fn cortex_mcp_servers_with_per_user_credentials_become_vault_backends() {
    let loaded = ok(
        "auth: {mode: none}\ntechnical_token: t\n",
        &[
            ("CORTEX_MCP_SERVERS", "canva"),
            ("CORTEX_MCP_CANVA_URL", "https://mcp.canva.example/mcp"),
            ("CORTEX_MCP_CANVA_CLIENT_ID", "cid"),
            ("CORTEX_MCP_CANVA_CATALOG_SUB", "svc"),
            (
                "CORTEX_VAULT_KEY",
                "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo=",
            ),
        ],
    );
    let b = &loaded.config.backends[0];
    assert_eq!(b.kind, BackendKindConfig::Mcp);
    assert_eq!(b.identity_mode(), IdentityMode::Vault);
    assert_eq!(b.vault_provider.as_deref(), Some("canva"));
    let p = &loaded.config.vault.providers[0];
    assert_eq!(p.id, "canva");
    assert_eq!(p.resource, "https://mcp.canva.example/mcp");
    assert_eq!(p.client_id.as_deref(), Some("cid"));
    assert_eq!(p.catalog_sub.as_deref(), Some("svc"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // Without a vault key, the provider it needs is refused with the fix.
    let issues = errs(
        "auth: {mode: none}\ntechnical_token: t\n",
        &[
            ("CORTEX_MCP_SERVERS", "canva"),
            ("CORTEX_MCP_CANVA_URL", "https://mcp.canva.example/mcp"),
            ("CORTEX_MCP_CANVA_CLIENT_ID", "cid"),
        ],
    );
    find(
        &issues,
        "there is no vault key: set vault.key (CORTEX_VAULT_KEY",
    );
}
