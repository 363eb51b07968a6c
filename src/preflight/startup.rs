//! Checks of the settings that `serve` turns into running parts at start: the token
//! validator, the identity propagation to backends (mint, exchange), the development
//! authorization server, the store and the audit trail.
//!
//! Those parts refuse a bad setting when they are built; the same rules are checked here,
//! while loading, so that `check-config` (and a reload) reports them with the file position
//! and a fix, together with every other problem, instead of `serve` failing on the first one.
//! The checks that read files (key files) are in [`super::files`].

use std::str::FromStr;
use std::time::Duration;

use crate::auth::jwt::Alg;
use crate::config::checks::{http_url, p, pi, pik, suggest, Findings, Seg};
use crate::config::units::format_duration;
use crate::config::{AuthMode, Config, IdentityMode};

/// Algorithms of minted tokens: the ones the gateway generates keys for, and RS256 (key
/// file only).
const MINT_ALGORITHMS: [&str; 3] = ["ES256", "EdDSA", "RS256"];

/// Runs every check.
pub(crate) fn check(config: &Config, f: &mut Findings) {
    check_algorithms(config, f);
    check_mint(config, f);
    check_exchange(config, f);
    check_audit_and_storage(config, f);
    check_dev_authorization_server(config, f);
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(config.logging.level.trim()) {
        if !config.logging.level.trim().is_empty() {
            f.warn(
                p(&["logging", "level"]),
                format!(
                    "`{}` is not a valid log filter ({e}); `info` is used instead (write e.g. `info` or `cortex_gateway=debug,info`)",
                    config.logging.level
                ),
            );
        }
    }
}

/// Whether any backend receives credentials in `mode`.
pub(crate) fn uses(config: &Config, mode: IdentityMode) -> bool {
    config.backends.iter().any(|b| b.identity_mode() == mode)
}

fn check_algorithms(config: &Config, f: &mut Findings) {
    let oauth = &config.auth.oauth;
    let names: Vec<&str> = Alg::ALL.iter().map(|a| a.as_str()).collect();
    if oauth.algorithms.is_empty() {
        f.error(
            p(&["auth", "oauth", "algorithms"]),
            format!(
                "must name at least one algorithm (e.g. [RS256, ES256]); leave the key out to accept all of {}",
                names.join(", ")
            ),
        );
    }
    for (i, name) in oauth.algorithms.iter().enumerate() {
        let name = name.trim();
        if Alg::parse(name).is_some() {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        let message = if lower == "none" || lower.starts_with("hs") {
            format!(
                "`{name}` is never accepted: tokens without a signature or with an HMAC one are refused whatever this says, since the gateway checks signatures with the issuer's public keys; choose among {}",
                names.join(", ")
            )
        } else {
            let hint = names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(name))
                .copied()
                .or_else(|| suggest(name, &names))
                .map(|best| format!("did you mean `{best}`? "))
                .unwrap_or_default();
            format!(
                "`{name}` is not an algorithm the gateway verifies; {hint}choose among {} (names are case-sensitive)",
                names.join(", ")
            )
        };
        f.error(pi(&["auth", "oauth", "algorithms"], i), message);
    }
}

fn check_mint(config: &Config, f: &mut Findings) {
    let mint = &config.auth.mint;
    let algorithm = mint.algorithm.trim();
    if !MINT_ALGORITHMS.contains(&algorithm) {
        let hint = suggest(algorithm, &MINT_ALGORITHMS)
            .map(|best| format!("; did you mean `{best}`?"))
            .unwrap_or_default();
        f.error(
            p(&["auth", "mint", "algorithm"]),
            format!(
                "`{algorithm}` cannot sign minted tokens: use ES256 or EdDSA (keys the gateway generates), or RS256 with an RSA key_file{hint}"
            ),
        );
    } else if algorithm == "RS256" && mint.key_file.is_none() {
        f.error(
            p(&["auth", "mint", "algorithm"]),
            "the gateway generates ES256 and EdDSA keys only: for RS256 set auth.mint.key_file to an RSA private key (PKCS#8 PEM), or use ES256 or EdDSA",
        );
    }
    for (key, value, example) in [
        ("ttl", mint.ttl, "5m"),
        ("rotate_after", mint.rotate_after, "30d"),
    ] {
        if value.is_zero() {
            f.error(
                p(&["auth", "mint", key]),
                format!("must be more than 0s (e.g. {example})"),
            );
        }
    }
}

fn check_exchange(config: &Config, f: &mut Findings) {
    let exchange = &config.auth.oauth.token_exchange;
    let users: Vec<(usize, &str)> = config
        .backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.identity_mode() == IdentityMode::Exchange)
        .map(|(i, b)| (i, b.id.as_str()))
        .collect();
    if let Some((first, _)) = users.first() {
        let missing: Vec<&str> = [
            ("client_id", exchange.client_id.is_none()),
            ("client_secret", exchange.client_secret.is_none()),
        ]
        .iter()
        .filter(|(_, missing)| *missing)
        .map(|(key, _)| *key)
        .collect();
        if !missing.is_empty() {
            let ids: Vec<String> = users.iter().map(|(_, id)| format!("`{id}`")).collect();
            f.error(
                pik(&["backends"], *first, "identity"),
                format!(
                    "`exchange` (backends {}) needs the gateway's own client at the authorization server, but auth.oauth.token_exchange.{} is not set: set client_id and client_secret there (keep the secret out of the file, e.g. client_secret: ${{TOKEN_EXCHANGE_SECRET}})",
                    ids.join(", "),
                    missing.join(" and ")
                ),
            );
        }
    }
    let urls = [
        (
            p(&["auth", "oauth", "token_exchange", "token_endpoint"]),
            &exchange.token_endpoint,
        ),
        (
            p(&["auth", "oauth", "introspection", "url"]),
            &config.auth.oauth.introspection.url,
        ),
    ];
    for (path, url) in urls {
        if let Some(url) = url {
            if let Err(message) = http_url(url) {
                f.error(path, message);
            }
        }
    }
}

fn check_audit_and_storage(config: &Config, f: &mut Findings) {
    use crate::audit::keys::MIN_SECRET_LEN;
    if let Some(secret) = &config.audit.secret {
        let len = secret.chars().count();
        if len < MIN_SECRET_LEN {
            f.error(
                p(&["audit", "secret"]),
                format!(
                    "must be at least {MIN_SECRET_LEN} characters (it has {len}); generate one with `openssl rand -base64 48`, and give every replica the same one"
                ),
            );
        }
    }
    let url = config
        .storage
        .database_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    if let Some(url) = url {
        // The URL itself is never echoed: it usually holds a password.
        if let Err(e) = tokio_postgres::Config::from_str(url) {
            f.error(
                p(&["storage", "database_url"]),
                format!(
                    "is not a PostgreSQL connection URL ({e}); write postgres://user:password@host:5432/database"
                ),
            );
        }
    }
}

/// Printable ASCII without spaces, quotes or backslashes (what the authorization server
/// puts in a `scope` string).
fn valid_dev_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// The rules of [`crate::dev_as::config_problems`], each at its key.
fn check_dev_authorization_server(config: &Config, f: &mut Findings) {
    let das = &config.dev_authorization_server;
    if !das.enabled {
        return;
    }
    let root = ["dev_authorization_server"];
    let at = |keys: &[&str]| {
        let mut path = root.to_vec();
        path.extend_from_slice(keys);
        p(&path)
    };
    if !config.all_listeners_loopback() {
        f.error(
            at(&["enabled"]),
            format!(
                "the development authorization server needs every listener on loopback (its sign-in page gives a token to anyone who can reach it), but server.listen is [{}]: listen on 127.0.0.1 or [::1], or turn it off",
                config.server.listen.join(", ")
            ),
        );
    }
    let canonical = config.canonical_uri();
    let loopback = url::Url::parse(&canonical)
        .ok()
        .and_then(|u| u.host_str().map(cortex_filters::origin::is_loopback_host))
        .unwrap_or(false);
    if !loopback {
        f.error(
            p(&["server", "canonical_uri"]),
            format!(
                "`{canonical}` is not on a loopback host, which the development authorization server (dev_authorization_server.enabled) requires: use e.g. http://127.0.0.1:3213/mcp"
            ),
        );
    }
    let issuer = crate::dev_as::issuer_for(config);
    if let (AuthMode::Oauth, Some(configured)) = (config.auth.mode, &config.auth.oauth.issuer) {
        if *configured != issuer {
            f.error(
                p(&["auth", "oauth", "issuer"]),
                format!(
                    "is `{configured}` but the built-in development authorization server's issuer is `{issuer}`: set auth.oauth.issuer to exactly `{issuer}` (byte for byte, no trailing slash)"
                ),
            );
        }
    }
    if das.users.is_empty() {
        f.error(
            at(&["users"]),
            "at least one user is needed (e.g. `- name: reader` with `scopes: [mcp:demo:read]`)",
        );
    }
    let name_rule = "use 1-64 letters, digits, `.`, `_`, `-` or `@`";
    for (i, user) in das.users.iter().enumerate() {
        let users = ["dev_authorization_server", "users"];
        if !crate::dev_as::valid_name(&user.name) {
            f.error(
                pik(&users, i, "name"),
                format!("`{}` is not a user name: {name_rule}", user.name),
            );
        }
        if das.users[..i].iter().any(|o| o.name == user.name) {
            f.error(
                pik(&users, i, "name"),
                format!("user `{}` is listed twice", user.name),
            );
        }
        for scope in user.scopes.iter().filter(|s| !valid_dev_scope(s)) {
            f.error(
                pik(&users, i, "scopes"),
                format!("`{scope}` is not a scope (printable ASCII without spaces, quotes or backslashes)"),
            );
        }
    }
    let clients = ["dev_authorization_server", "clients"];
    for (i, client) in das.clients.iter().enumerate() {
        if !crate::dev_as::valid_name(&client.id)
            || client.id.starts_with(crate::dev_as::SEALED_PREFIX)
        {
            f.error(
                pik(&clients, i, "id"),
                format!(
                    "`{}` is not a client id: {name_rule}, not starting with `{}` (the prefix of dynamically registered clients)",
                    client.id,
                    crate::dev_as::SEALED_PREFIX
                ),
            );
        }
        if das.clients[..i].iter().any(|o| o.id == client.id) {
            f.error(
                pik(&clients, i, "id"),
                format!("client `{}` is listed twice", client.id),
            );
        }
        match &client.secret {
            Some(secret) if secret.chars().count() < 8 => f.error(
                pik(&clients, i, "secret"),
                "is too short: at least 8 characters",
            ),
            None if client.redirect_uris.is_empty() => f.error(
                pi(&clients, i),
                format!(
                    "client `{}` needs a secret (client_credentials) or redirect_uris (authorization code), or both",
                    client.id
                ),
            ),
            _ => {}
        }
        for (j, uri) in client.redirect_uris.iter().enumerate() {
            if let Err(message) = crate::dev_as::check_redirect_uri(uri) {
                let mut path = pik(&clients, i, "redirect_uris");
                path.push(Seg::Index(j));
                f.error(path, message);
            }
        }
        for scope in client.scopes.iter().filter(|s| !valid_dev_scope(s)) {
            f.error(
                pik(&clients, i, "scopes"),
                format!("`{scope}` is not a scope (printable ASCII without spaces, quotes or backslashes)"),
            );
        }
    }
    let ttl = das.access_token_ttl;
    if ttl < Duration::from_secs(10) || ttl > Duration::from_secs(24 * 3600) {
        f.error(
            at(&["access_token_ttl"]),
            format!(
                "{} is out of range: between 10s and 24h",
                format_duration(ttl)
            ),
        );
    }
    if das.key_file.as_deref().is_some_and(|k| k.trim().is_empty()) {
        f.error(
            at(&["key_file"]),
            "must not be empty (leave the key out for the default, <data_dir>/keys/dev-authorization-server.pem)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;
    use crate::preflight::load_str;

    /// The mirrored rules refuse exactly what the development authorization server refuses.
    #[test]
    fn dev_authorization_server_rules_match_its_own() {
        let base = "server:\n  listen: ['127.0.0.1:4555']\nauth:\n  oauth:\n    issuer: http://127.0.0.1:4555\ndev_authorization_server:\n  enabled: true\n";
        let cases = [
            ("", false),
            ("server:\n  listen: ['0.0.0.0:4555']\n", true),
            ("server:\n  canonical_uri: https://mcp.example.com/mcp\n", true),
            ("auth:\n  oauth:\n    issuer: http://127.0.0.1:4555/\n", true),
            ("dev_authorization_server:\n  users: []\n", true),
            ("dev_authorization_server:\n  users: [{name: 'a b'}]\n", true),
            ("dev_authorization_server:\n  users: [{name: a}, {name: a}]\n", true),
            ("dev_authorization_server:\n  users: [{name: a, scopes: ['x\"y']}]\n", true),
            ("dev_authorization_server:\n  clients: [{id: dcr.x, secret: '12345678'}]\n", true),
            ("dev_authorization_server:\n  clients: [{id: c, secret: short}]\n", true),
            ("dev_authorization_server:\n  clients: [{id: c}]\n", true),
            (
                "dev_authorization_server:\n  clients: [{id: c, redirect_uris: ['http://example.com/cb']}]\n",
                true,
            ),
            (
                "dev_authorization_server:\n  clients: [{id: c, redirect_uris: ['http://127.0.0.1:9/cb']}]\n",
                false,
            ),
            ("dev_authorization_server:\n  access_token_ttl: 5s\n", true),
            ("dev_authorization_server:\n  key_file: ' '\n", true),
        ];
        for (overlay, refused) in cases {
            let merged = merge(base, overlay);
            let config: Config = serde_json::from_value(merged.clone()).unwrap();
            let theirs = crate::dev_as::config_problems(&config);
            let mut ours = Findings::default();
            check_dev_authorization_server(&config, &mut ours);
            assert_eq!(!theirs.is_empty(), refused, "{merged}: {theirs:?}");
            assert_eq!(
                !ours.errors.is_empty(),
                refused,
                "{merged}: {:?}",
                ours.errors
            );
            let loaded = load_str(&merged.to_string(), "t", &MapEnv::default());
            assert_eq!(loaded.is_err(), refused, "{merged}");
        }
    }

    /// Two small YAML documents joined section by section (the second wins), as JSON.
    fn merge(base: &str, overlay: &str) -> serde_json::Value {
        let parse = |text: &str| serde_saphyr::from_str::<serde_json::Value>(text).unwrap();
        fn deep(a: &mut serde_json::Value, b: &serde_json::Value) {
            match (a, b) {
                (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                    for (k, v) in b {
                        deep(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                    }
                }
                (_, serde_json::Value::Null) => {}
                (a, b) => *a = b.clone(),
            }
        }
        let mut merged = parse(base);
        deep(&mut merged, &parse(overlay));
        merged
    }

    fn issues(yaml: &str) -> String {
        match load_str(yaml, "gw.yaml", &MapEnv::default()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn authentication_and_identity_settings_are_checked_at_load() {
        let base = "auth:\n  mode: none\n";
        let e = issues(&format!(
            "{base}  oauth:\n    algorithms: [RS256, HS256, es256, ES521]\n"
        ));
        assert!(
            e.contains("gw.yaml:4:25: auth.oauth.algorithms[1]: `HS256` is never accepted"),
            "{e}"
        );
        assert!(e.contains("auth.oauth.algorithms[2]: `es256` is not an algorithm the gateway verifies; did you mean `ES256`?"), "{e}");
        assert!(e.contains("auth.oauth.algorithms[3]: `ES521`"), "{e}");
        let e = issues(&format!("{base}  oauth:\n    algorithms: []\n"));
        assert!(
            e.contains("auth.oauth.algorithms: must name at least one"),
            "{e}"
        );

        let e = issues(&format!(
            "{base}  mint:\n    algorithm: ES384\n    ttl: 0s\n"
        ));
        assert!(
            e.contains("gw.yaml:4:16: auth.mint.algorithm: `ES384` cannot sign"),
            "{e}"
        );
        assert!(e.contains("auth.mint.ttl: must be more than 0s"), "{e}");
        let e = issues(&format!("{base}  mint:\n    algorithm: RS256\n"));
        assert!(e.contains("for RS256 set auth.mint.key_file"), "{e}");

        let exchange =
            "backends:\n  - id: billing\n    url: http://127.0.0.1:9\n    identity: exchange\n";
        let e = issues(&format!("{base}{exchange}"));
        assert!(
            e.contains("gw.yaml:6:15: backends[0].identity: `exchange` (backends `billing`) needs the gateway's own client"),
            "{e}"
        );
        assert!(e.contains("client_id and client_secret is not set"), "{e}");
        let ok = format!(
            "{base}  oauth:\n    token_exchange: {{client_id: gw, client_secret: s3cret}}\n{exchange}"
        );
        assert_eq!(issues(&ok), "");

        let e = issues(&format!(
            "{base}audit:\n  secret: short\nstorage:\n  database_url: 'postgres://u:hunter2@h:5432/db?sslmode=sometimes'\n"
        ));
        assert!(
            e.contains("audit.secret: must be at least 32 characters (it has 5)"),
            "{e}"
        );
        assert!(
            e.contains("storage.database_url: is not a PostgreSQL connection URL"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "the password is never printed: {e}");
    }

    #[test]
    fn a_bad_log_filter_is_a_warning() {
        let loaded = load_str(
            "auth:\n  mode: none\nlogging:\n  level: 'info,,=x=y'\n",
            "gw.yaml",
            &MapEnv::default(),
        )
        .unwrap();
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("logging.level") && w.contains("is not a valid log filter")),
            "{:?}",
            loaded.warnings
        );
    }
}
