//! Helpers shared by the `dev_as` and `dev_as_e2e` tests: a client for the development
//! authorization server of a running `cortex-gateway demo --oauth`.

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::Gateway;

/// A redirect URI on a loopback port nobody listens on (the tests read `Location` instead).
pub const REDIRECT: &str = "http://127.0.0.1:45871/callback";
pub const DEMO_CLIENT: (&str, &str) = ("demo-service", "demo-service-secret");

/// Starts `demo --oauth` with its data directory (signing key) inside the test's temp dir.
pub async fn start_demo() -> Gateway {
    Gateway::start_with_env(
        &[],
        &[
            "demo",
            "--oauth",
            "--listen",
            "127.0.0.1:{PORT}",
            "--data-dir",
            "{DIR}/data",
        ],
    )
    .await
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub async fn from(resp: reqwest::Response) -> Reply {
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.expect("body"),
        }
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("HTTP {} not JSON ({e}): {}", self.status, self.text))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The query parameters of the `Location` header.
    pub fn location_params(&self) -> HashMap<String, String> {
        let location = self
            .header("location")
            .unwrap_or_else(|| panic!("no Location (HTTP {}): {}", self.status, self.text));
        url::Url::parse(location)
            .expect("Location is a URL")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A PKCE pair (verifier, S256 challenge).
pub fn pkce(seed: &str) -> (String, String) {
    let verifier = format!("verifier-{seed}-{}", "x".repeat(40));
    let challenge = b64(&Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The authorization server of one running demo.
pub struct As {
    pub gw: Gateway,
    pub http: reqwest::Client,
}

impl As {
    pub async fn start() -> As {
        As {
            gw: start_demo().await,
            http: http(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw.url())
    }

    pub async fn get(&self, path_and_query: &str) -> Reply {
        Reply::from(
            self.http
                .get(self.url(path_and_query))
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    pub async fn register(&self, metadata: Value) -> Reply {
        Reply::from(
            self.http
                .post(self.url("/oauth/register"))
                .json(&metadata)
                .send()
                .await
                .expect("register"),
        )
        .await
    }

    /// Registers a public client (PKCE) with [`REDIRECT`]; returns its id.
    pub async fn public_client(&self) -> String {
        let r = self
            .register(json!({
                "client_name": "test client",
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            }))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["client_id"]
            .as_str()
            .expect("client_id")
            .to_string()
    }

    /// GET /oauth/authorize with the usual parameters plus `extra` (which may override or,
    /// with an empty value, remove one).
    pub async fn authorize(
        &self,
        client_id: &str,
        challenge: &str,
        extra: &[(&str, &str)],
    ) -> Reply {
        let resource = self.gw.mcp_url();
        let mut params: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", "st-123"),
            ("scope", "mcp:demo:read mcp:demo:write"),
            ("resource", &resource),
        ];
        for (k, v) in extra {
            params.retain(|(pk, _)| pk != k);
            if !v.is_empty() {
                params.push((k, v));
            }
        }
        Reply::from(
            self.http
                .get(self.url("/oauth/authorize"))
                .query(&params)
                .send()
                .await
                .expect("authorize"),
        )
        .await
    }

    /// POSTs the picker form of `page` choosing `user` (the way the page's button does).
    pub async fn pick(&self, page: &Reply, field: (&str, &str)) -> Reply {
        assert_eq!(page.status, 200, "picker page: {}", page.text);
        let request = picker_request_id(&page.text);
        Reply::from(
            self.http
                .post(self.url("/oauth/authorize"))
                .form(&[("request", request.as_str()), field])
                .send()
                .await
                .expect("picker POST"),
        )
        .await
    }

    /// Runs the authorization request and the picker; returns the redirect's parameters.
    pub async fn code_for(
        &self,
        client_id: &str,
        challenge: &str,
        user: &str,
    ) -> HashMap<String, String> {
        let page = self.authorize(client_id, challenge, &[]).await;
        let done = self.pick(&page, ("user", user)).await;
        assert_eq!(done.status, 303, "{}", done.text);
        assert!(done.header("location").unwrap().starts_with(REDIRECT));
        done.location_params()
    }

    pub async fn token(&self, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Reply {
        let mut req = self.http.post(self.url("/oauth/token")).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        Reply::from(req.send().await.expect("token")).await
    }

    /// Redeems `code` for the public client.
    pub async fn redeem(&self, client_id: &str, code: &str, verifier: &str) -> Reply {
        let resource = self.gw.mcp_url();
        self.token(
            &[
                ("grant_type", "authorization_code"),
                ("client_id", client_id),
                ("code", code),
                ("code_verifier", verifier),
                ("redirect_uri", REDIRECT),
                ("resource", &resource),
            ],
            None,
        )
        .await
    }

    pub async fn refresh(&self, client_id: &str, refresh_token: &str) -> Reply {
        self.token(
            &[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("refresh_token", refresh_token),
            ],
            None,
        )
        .await
    }

    /// A token for `user` through the whole code flow.
    pub async fn login(&self, client_id: &str, user: &str) -> Value {
        let (verifier, challenge) = pkce(user);
        let params = self.code_for(client_id, &challenge, user).await;
        let r = self.redeem(client_id, &params["code"], &verifier).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    }

    /// Verifies `jwt` against the published JWKS; returns (header, claims).
    pub async fn verify(&self, jwt: &str) -> (Value, Value) {
        let jwks = self.get("/oauth/jwks").await.json();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "compact JWS: {jwt}");
        let decode = |p: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64url")).expect("JSON")
        };
        let header = decode(parts[0]);
        let key = jwks["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["kid"] == header["kid"]))
            .unwrap_or_else(|| panic!("kid {} not in the JWKS {jwks}", header["kid"]));
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap());
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature");
        let input = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &signature)
            .expect("the token verifies with the JWKS key");
        let mut tampered = signature.clone();
        tampered[5] ^= 1;
        assert!(UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &tampered)
            .is_err());
        (header, decode(parts[1]))
    }
}

/// The hidden `request` field of the picker form.
pub fn picker_request_id(html: &str) -> String {
    let marker = "name=\"request\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no request id in the picker page: {html}"))
        + marker.len();
    let end = html[start..].find('"').expect("closing quote") + start;
    html[start..end].to_string()
}
