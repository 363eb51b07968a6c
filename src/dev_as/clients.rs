//! OAuth clients: pre-registered ones from configuration, and RFC 7591 dynamic registrations.
//!
//! A dynamically registered client is not stored anywhere: its metadata is sealed into its
//! `client_id` (`dcr.<base64url JSON>.<HMAC>`), and a confidential client's secret is an HMAC
//! of its id, both keyed from the signing key. So an open registration endpoint cannot grow
//! the server's memory, and clients such as Claude Code keep working across a restart of
//! the demo for as long as the key file lives.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use cortex_filters::origin::is_loopback_host;

use super::util::{b64url, b64url_decode, now_unix, random_bytes, split_scopes, Internal};
use crate::auth::constant_time_eq;
use crate::config::DevClientConfig;

/// Prefix of sealed (dynamically registered) client ids; configured ids may not use it.
pub(crate) const SEALED_PREFIX: &str = "dcr.";
/// Most redirect URIs one registration may carry.
const MAX_REDIRECT_URIS: usize = 8;
/// Longest accepted redirect URI.
const MAX_REDIRECT_URI_LEN: usize = 512;
/// Longest accepted `client_name`.
const MAX_CLIENT_NAME_LEN: usize = 120;

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AuthMethod {
    /// A public client (PKCE only).
    None,
    /// HTTP Basic with the client secret.
    ClientSecretBasic,
    /// `client_secret` in the form body.
    ClientSecretPost,
}

impl AuthMethod {
    fn parse(s: &str) -> Option<AuthMethod> {
        match s {
            "none" => Some(AuthMethod::None),
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
        }
    }
}

/// A grant type this server supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum GrantType {
    /// `authorization_code` (with PKCE).
    AuthorizationCode,
    /// `refresh_token`.
    RefreshToken,
    /// `client_credentials`.
    ClientCredentials,
}

impl GrantType {
    fn parse(s: &str) -> Option<GrantType> {
        match s {
            "authorization_code" => Some(GrantType::AuthorizationCode),
            "refresh_token" => Some(GrantType::RefreshToken),
            "client_credentials" => Some(GrantType::ClientCredentials),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

/// Where a client's secret comes from.
#[derive(Debug, Clone)]
enum Secret {
    /// A public client.
    None,
    /// Configured.
    Configured(String),
    /// An HMAC of the sealed client id.
    Derived,
}

/// A known client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// `client_id`.
    pub id: String,
    /// `client_name`, if any.
    pub name: Option<String>,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Allowed grants.
    pub grant_types: Vec<GrantType>,
    /// The scopes it may obtain; None = every supported scope.
    pub scopes: Option<Vec<String>>,
    secret: Secret,
}

impl Client {
    /// Whether it must authenticate with a secret.
    pub(crate) fn is_confidential(&self) -> bool {
        !matches!(self.secret, Secret::None)
    }

    /// Whether it may use `grant`.
    pub(crate) fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// A name to show a person.
    pub(crate) fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// The registered redirect URI that `presented` designates: an exact match, or for a
    /// loopback `http` URI the same URI on any port (RFC 8252 §7.3, OAuth 2.1 §8.4.2).
    pub(crate) fn match_redirect_uri(&self, presented: &str) -> Option<String> {
        if self.redirect_uris.iter().any(|r| r == presented) {
            return Some(presented.to_string());
        }
        let p = url::Url::parse(presented).ok()?;
        if p.scheme() != "http" || !p.host_str().is_some_and(port_may_vary) {
            return None;
        }
        self.redirect_uris.iter().find_map(|r| {
            let mut r = url::Url::parse(r).ok()?;
            if r.scheme() != "http" || r.host_str() != p.host_str() {
                return None;
            }
            r.set_port(p.port()).ok()?;
            (r == p).then(|| presented.to_string())
        })
    }
}

/// Loopback hosts (`127.0.0.1`, `[::1]`, `localhost`), on which a native client picks its
/// redirect port at run time, so the port of a registered redirect URI may vary.
fn port_may_vary(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
        || h == "localhost"
}

/// Why a registration was refused (RFC 7591 §3.2.2).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RegistrationError {
    /// `invalid_redirect_uri` or `invalid_client_metadata`.
    pub error: &'static str,
    /// What to fix.
    pub description: String,
}

fn invalid_metadata(description: impl Into<String>) -> RegistrationError {
    RegistrationError {
        error: "invalid_client_metadata",
        description: description.into(),
    }
}

fn invalid_redirect(description: impl Into<String>) -> RegistrationError {
    RegistrationError {
        error: "invalid_redirect_uri",
        description: description.into(),
    }
}

/// Checks one redirect URI: absolute, no fragment, `https`, or `http` on a loopback host.
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err(format!(
            "a redirect URI is longer than {MAX_REDIRECT_URI_LEN} characters"
        ));
    }
    let u = url::Url::parse(uri).map_err(|e| format!("`{uri}` is not an absolute URI ({e})"))?;
    if u.fragment().is_some() {
        return Err(format!("`{uri}` must not have a fragment"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("`{uri}` must not carry credentials"));
    }
    match u.scheme() {
        "https" if u.host().is_some() => Ok(()),
        "http" if u.host_str().is_some_and(is_loopback_host) => Ok(()),
        _ => Err(format!(
            "`{uri}` is neither https nor http on a loopback host (127.0.0.1, [::1], localhost)"
        )),
    }
}

/// The metadata sealed into a dynamically registered client's id.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    /// `client_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    /// `redirect_uris`.
    #[serde(default)]
    r: Vec<String>,
    /// `token_endpoint_auth_method`.
    a: AuthMethod,
    /// `grant_types`.
    g: Vec<GrantType>,
    /// Allowed scopes (`scope`), if restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<Vec<String>>,
    /// Issued at.
    t: u64,
    /// A nonce, so that two identical registrations get distinct ids.
    j: String,
}

/// Every client this server knows.
pub(crate) struct Clients {
    configured: Vec<Client>,
    mac_key: [u8; 32],
}

impl Clients {
    /// The configured clients plus dynamic ones sealed with `mac_key`.
    pub(crate) fn new(configured: &[DevClientConfig], mac_key: [u8; 32]) -> Clients {
        let configured = configured
            .iter()
            .map(|c| {
                let mut grant_types = Vec::new();
                if !c.redirect_uris.is_empty() {
                    grant_types.push(GrantType::AuthorizationCode);
                    grant_types.push(GrantType::RefreshToken);
                }
                if c.secret.is_some() {
                    grant_types.push(GrantType::ClientCredentials);
                }
                Client {
                    id: c.id.clone(),
                    name: None,
                    redirect_uris: c.redirect_uris.clone(),
                    grant_types,
                    scopes: (!c.scopes.is_empty()).then(|| c.scopes.clone()),
                    secret: match &c.secret {
                        Some(s) => Secret::Configured(s.clone()),
                        None => Secret::None,
                    },
                }
            })
            .collect();
        Clients {
            configured,
            mac_key,
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.mac_key) else {
            return [0; 32];
        };
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The secret of a dynamically registered confidential client.
    fn derived_secret(&self, client_id: &str) -> String {
        format!(
            "dcs.{}",
            b64url(&self.mac(&[b"secret\0", client_id.as_bytes()]))
        )
    }

    /// The client with this id, if it is configured or a valid sealed id.
    pub(crate) fn lookup(&self, client_id: &str) -> Option<Client> {
        if let Some(c) = self.configured.iter().find(|c| c.id == client_id) {
            return Some(c.clone());
        }
        let rest = client_id.strip_prefix(SEALED_PREFIX)?;
        let (payload, tag) = rest.split_once('.')?;
        let expected = self.mac(&[b"client\0", payload.as_bytes()]);
        let presented = b64url_decode(tag)?;
        if !constant_time_eq(&presented, &expected[..16]) {
            return None;
        }
        let sealed: Sealed = serde_json::from_slice(&b64url_decode(payload)?).ok()?;
        Some(Client {
            id: client_id.to_string(),
            name: sealed.n,
            redirect_uris: sealed.r,
            grant_types: sealed.g,
            scopes: sealed.s,
            secret: if sealed.a == AuthMethod::None {
                Secret::None
            } else {
                Secret::Derived
            },
        })
    }

    /// Whether `presented` is the client's secret.
    pub(crate) fn secret_matches(&self, client: &Client, presented: &str) -> bool {
        match &client.secret {
            Secret::None => false,
            Secret::Configured(s) => constant_time_eq(s.as_bytes(), presented.as_bytes()),
            Secret::Derived => constant_time_eq(
                self.derived_secret(&client.id).as_bytes(),
                presented.as_bytes(),
            ),
        }
    }

    /// RFC 7591 registration: validates `metadata` and returns the 201 response body.
    /// `supported` are the scopes this server knows (a requested `scope` is narrowed to them).
    pub(crate) fn register(
        &self,
        metadata: &Value,
        supported: &[String],
    ) -> Result<Result<Value, RegistrationError>, Internal> {
        let Some(m) = metadata.as_object() else {
            return Ok(Err(invalid_metadata(
                "the registration request must be a JSON object",
            )));
        };
        let sealed = match parse_metadata(m, supported) {
            Ok(s) => Sealed {
                j: b64url(&random_bytes::<9>()?),
                ..s
            },
            Err(e) => return Ok(Err(e)),
        };
        let payload = b64url(&serde_json::to_vec(&sealed).unwrap_or_default());
        let tag = self.mac(&[b"client\0", payload.as_bytes()]);
        let client_id = format!("{SEALED_PREFIX}{payload}.{}", b64url(&tag[..16]));
        let mut body = json!({
            "client_id": client_id,
            "client_id_issued_at": sealed.t,
            "redirect_uris": sealed.r,
            "grant_types": sealed.g.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "response_types": if sealed.g.contains(&GrantType::AuthorizationCode) { vec!["code"] } else { vec![] },
            "token_endpoint_auth_method": sealed.a.as_str(),
        });
        if let Some(obj) = body.as_object_mut() {
            if sealed.a != AuthMethod::None {
                obj.insert(
                    "client_secret".into(),
                    json!(self.derived_secret(&client_id)),
                );
                obj.insert("client_secret_expires_at".into(), json!(0));
            }
            if let Some(n) = &sealed.n {
                obj.insert("client_name".into(), json!(n));
            }
            if let Some(s) = &sealed.s {
                obj.insert("scope".into(), json!(s.join(" ")));
            }
        }
        Ok(Ok(body))
    }
}

/// Validates registration metadata (everything but the nonce).
fn parse_metadata(
    m: &Map<String, Value>,
    supported: &[String],
) -> Result<Sealed, RegistrationError> {
    let strings = |key: &str| -> Result<Option<Vec<String>>, RegistrationError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        invalid_metadata(format!("`{key}` must be an array of strings"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(invalid_metadata(format!(
                "`{key}` must be an array of strings"
            ))),
        }
    };
    let string = |key: &str| -> Result<Option<String>, RegistrationError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid_metadata(format!("`{key}` must be a string"))),
        }
    };

    let redirect_uris = strings("redirect_uris")?.unwrap_or_default();
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid_redirect(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs may be registered"
        )));
    }
    for uri in &redirect_uris {
        check_redirect_uri(uri).map_err(invalid_redirect)?;
    }

    let auth_method = match string("token_endpoint_auth_method")? {
        // RFC 7591 §2: the default is client_secret_basic.
        None => AuthMethod::ClientSecretBasic,
        Some(s) => AuthMethod::parse(&s).ok_or_else(|| {
            invalid_metadata(format!(
                "token_endpoint_auth_method `{s}` is not supported (none, client_secret_basic, client_secret_post)"
            ))
        })?,
    };

    let mut grant_types = Vec::new();
    for g in strings("grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]) {
        let grant = GrantType::parse(&g).ok_or_else(|| {
            invalid_metadata(format!(
                "grant type `{g}` is not supported (authorization_code, refresh_token, client_credentials)"
            ))
        })?;
        if !grant_types.contains(&grant) {
            grant_types.push(grant);
        }
    }
    if grant_types.is_empty() {
        return Err(invalid_metadata("`grant_types` must not be empty"));
    }
    let code = grant_types.contains(&GrantType::AuthorizationCode);
    if code && redirect_uris.is_empty() {
        return Err(invalid_redirect(
            "the authorization_code grant needs at least one redirect URI",
        ));
    }
    if grant_types.contains(&GrantType::ClientCredentials) && auth_method == AuthMethod::None {
        return Err(invalid_metadata(
            "client_credentials needs a confidential client (token_endpoint_auth_method client_secret_basic or client_secret_post)",
        ));
    }
    if let Some(types) = strings("response_types")? {
        let ok = if code {
            types.iter().all(|t| t == "code") && !types.is_empty()
        } else {
            types.is_empty()
        };
        if !ok {
            return Err(invalid_metadata(
                "response_types must be [\"code\"] with the authorization_code grant (and empty without it)",
            ));
        }
    }

    let name = string("client_name")?;
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_CLIENT_NAME_LEN)
    {
        return Err(invalid_metadata(format!(
            "client_name is longer than {MAX_CLIENT_NAME_LEN} characters"
        )));
    }
    // A requested scope restricts the client; unknown scopes are dropped.
    let scopes = string("scope")?.map(|s| {
        split_scopes(&s)
            .into_iter()
            .filter(|s| supported.contains(s))
            .collect::<Vec<_>>()
    });

    Ok(Sealed {
        n: name.filter(|n| !n.trim().is_empty()),
        r: redirect_uris,
        a: auth_method,
        g: grant_types,
        s: scopes,
        t: now_unix(),
        j: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients() -> Clients {
        Clients::new(
            &[DevClientConfig {
                id: "svc".into(),
                secret: Some("svc-secret-123".into()),
                scopes: vec!["a".into()],
                redirect_uris: vec![],
            }],
            [7; 32],
        )
    }

    fn supported() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn registration_round_trips_through_the_sealed_id() {
        let c = clients();
        let body = c
            .register(
                &json!({"redirect_uris": ["http://127.0.0.1:9999/cb"], "token_endpoint_auth_method": "none",
                        "grant_types": ["authorization_code", "refresh_token"], "client_name": "Test", "scope": "a zzz"}),
                &supported(),
            )
            .unwrap()
            .unwrap();
        let id = body["client_id"].as_str().unwrap();
        assert!(body.get("client_secret").is_none());
        assert_eq!(body["scope"], "a");
        let client = c.lookup(id).unwrap();
        assert!(!client.is_confidential());
        assert_eq!(client.display_name(), "Test");
        assert!(client.allows(GrantType::RefreshToken));
        assert!(!client.allows(GrantType::ClientCredentials));
        // Any port on a loopback redirect URI; nothing else.
        assert!(client
            .match_redirect_uri("http://127.0.0.1:1234/cb")
            .is_some());
        assert!(client
            .match_redirect_uri("http://127.0.0.1:1234/other")
            .is_none());
        assert!(client
            .match_redirect_uri("https://evil.example/cb")
            .is_none());
    }

    #[test]
    fn tampered_or_foreign_ids_are_unknown() {
        let c = clients();
        let body = c
            .register(
                &json!({"redirect_uris": ["https://app.example/cb"]}),
                &supported(),
            )
            .unwrap()
            .unwrap();
        let id = body["client_id"].as_str().unwrap().to_string();
        let mut tampered = id.clone();
        tampered.insert(6, 'x');
        assert!(c.lookup(&tampered).is_none());
        let other = Clients::new(&[], [8; 32]);
        assert!(other.lookup(&id).is_none());
        assert!(c.lookup("nope").is_none());
        assert!(c.lookup("dcr.").is_none());
    }

    #[test]
    fn confidential_clients_get_a_working_secret() {
        let c = clients();
        let body = c
            .register(
                &json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post"}),
                &supported(),
            )
            .unwrap()
            .unwrap();
        let client = c.lookup(body["client_id"].as_str().unwrap()).unwrap();
        assert!(client.is_confidential());
        assert!(c.secret_matches(&client, body["client_secret"].as_str().unwrap()));
        assert!(!c.secret_matches(&client, "wrong"));
        let svc = c.lookup("svc").unwrap();
        assert!(c.secret_matches(&svc, "svc-secret-123"));
        assert!(svc.allows(GrantType::ClientCredentials));
    }

    #[test]
    fn bad_metadata_is_refused_with_the_rfc_7591_error() {
        let c = clients();
        let err = |m: Value| c.register(&m, &supported()).unwrap().unwrap_err();
        assert_eq!(
            err(json!({"redirect_uris": ["http://evil.example/cb"]})).error,
            "invalid_redirect_uri"
        );
        assert_eq!(
            err(json!({"redirect_uris": ["https://a.example/cb#x"]})).error,
            "invalid_redirect_uri"
        );
        assert_eq!(
            err(json!({"redirect_uris": ["myapp://cb"]})).error,
            "invalid_redirect_uri"
        );
        assert_eq!(err(json!({})).error, "invalid_redirect_uri");
        assert_eq!(
            err(
                json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"})
            )
            .error,
            "invalid_client_metadata"
        );
        assert_eq!(
            err(json!({"grant_types": ["implicit"]})).error,
            "invalid_client_metadata"
        );
        assert_eq!(err(json!([1])).error, "invalid_client_metadata");
        assert_eq!(
            err(json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"})).error,
            "invalid_client_metadata"
        );
    }

    #[test]
    fn redirect_uri_rules() {
        assert!(check_redirect_uri("http://localhost:3000/cb").is_ok());
        assert!(check_redirect_uri("http://[::1]/cb").is_ok());
        assert!(check_redirect_uri("https://app.example/cb?x=1").is_ok());
        assert!(check_redirect_uri("http://10.0.0.1/cb").is_err());
        assert!(check_redirect_uri("https://user:pw@app.example/cb").is_err());
    }
}
