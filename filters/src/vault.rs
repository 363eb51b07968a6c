//! The per-user token vault's decisions, without I/O: what a sealed vault record and a sealed
//! linking `state` bind to (associated data), PKCE (RFC 7636, S256 only), the checks of an
//! authorization callback (`state` bound to the user, the provider and the browser, bounded
//! lifetime; RFC 9207 `iss`), when a grant must be refreshed, which token-endpoint failures
//! are permanent, and what a call to a provider the user has not linked answers.
//!
//! The plumbing (store, HTTP, clock, key ring) is `src/vault/`; every rule it applies is here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::seal::{SealError, Sealer};

/// Associated-data purpose of a sealed grant (a vault record).
const GRANT_PURPOSE: &[u8] = b"cortex-vault-grant/v1";
/// Associated-data purpose of a sealed linking `state`.
const STATE_PURPOSE: &[u8] = b"cortex-vault-state/v1";
/// Associated-data purpose of a sealed sign-in ticket of the link pages.
const TICKET_PURPOSE: &[u8] = b"cortex-vault-ticket/v1";
/// Associated-data purpose of a sealed client registration secret.
const CLIENT_PURPOSE: &[u8] = b"cortex-vault-client/v1";

/// Longest subject or provider id accepted into associated data (both are bounded long
/// before this; the limit keeps a length prefix unambiguous).
pub const MAX_PART: usize = 4096;

/// `purpose | len(a) | a | len(b) | b`: length-prefixed so that ("ab", "c") and ("a", "bc")
/// never produce the same bytes.
fn bound(purpose: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(purpose.len() + parts.iter().map(|p| p.len() + 4).sum::<usize>());
    out.extend_from_slice(purpose);
    for p in parts {
        let len = u32::try_from(p.len().min(MAX_PART)).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&p.as_bytes()[..p.len().min(MAX_PART)]);
    }
    out
}

/// The associated data of the grant of `subject` at `provider`, sealed under key `key_id`: a
/// row copied to another user, another provider or relabelled with another key id fails to
/// open.
pub fn grant_aad(subject: &str, provider: &str, key_id: &str) -> Vec<u8> {
    bound(GRANT_PURPOSE, &[subject, provider, key_id])
}

/// The associated data of a client registration secret stored for `provider` at `issuer`.
pub fn client_aad(provider: &str, issuer: &str, key_id: &str) -> Vec<u8> {
    bound(CLIENT_PURPOSE, &[provider, issuer, key_id])
}

/// The associated data of a linking `state` for `provider` (the provider is in the callback's
/// path, so a state issued for one provider cannot complete another's callback).
pub fn state_aad(provider: &str) -> Vec<u8> {
    bound(STATE_PURPOSE, &[provider])
}

// ----- sign-in tickets of the link pages -----------------------------------------------------

/// What a link-page ticket carries, sealed: who, until when. A browser has no bearer token;
/// the gateway hands an authenticated caller a short-lived ticket to open the link pages with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Ticket {
    sub: String,
    exp_ms: i64,
}

/// Seals a ticket for `sub` valid until `exp_ms`.
pub fn seal_ticket(sealer: &Sealer, sub: &str, exp_ms: i64) -> Result<String, SealError> {
    let plain = serde_json::to_vec(&Ticket {
        sub: sub.to_string(),
        exp_ms,
    })
    .map_err(|_| SealError::TooLarge)?;
    Ok(URL_SAFE_NO_PAD.encode(sealer.seal(TICKET_PURPOSE, &plain)?))
}

/// The subject of a ticket sealed by `sealer` and not expired at `now_ms`.
pub fn open_ticket(sealer: &Sealer, text: &str, now_ms: i64) -> Option<String> {
    if text.len() > 4096 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(text).ok()?;
    let plain = sealer.open(TICKET_PURPOSE, &raw).ok()?;
    let t: Ticket = serde_json::from_slice(&plain).ok()?;
    (now_ms < t.exp_ms).then_some(t.sub)
}

// ----- PKCE -----------------------------------------------------------------------------------

/// A PKCE code verifier from 32 random bytes: 43 base64url characters (RFC 7636 §4.1).
pub fn pkce_verifier(random: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(random)
}

/// The S256 code challenge of `verifier`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether an authorization server's `code_challenge_methods_supported` allows S256. An
/// absent list means the server does not advertise PKCE: refused (the MCP authorization
/// spec requires clients to refuse such a server).
pub fn supports_s256(methods: Option<&[String]>) -> bool {
    methods.is_some_and(|m| m.iter().any(|x| x == "S256"))
}

/// base64url(SHA-256(value)): how the browser binding cookie appears inside a state.
pub fn browser_hash(cookie_value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(cookie_value.as_bytes()))
}

// ----- the linking state ----------------------------------------------------------------------

/// What a linking `state` carries, sealed (never readable by the browser or the provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkState {
    /// The gateway user who started the link.
    pub sub: String,
    /// The provider being linked.
    pub provider: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// Single-use id: consumed once at the callback.
    pub id: String,
    /// SHA-256 of the browser-binding cookie set at the start.
    pub browser: String,
    /// The issuer the authorization request went to (RFC 9207 check at the callback).
    pub issuer: String,
    /// The client id used (the callback must redeem the code with the same).
    pub client_id: String,
    /// Expiry, Unix milliseconds.
    pub exp_ms: i64,
}

/// Why a callback's `state` is refused. Messages are shown to the user's browser; none
/// carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not base64url, not sealed by this gateway, tampered, or sealed for another provider.
    #[error("the link request is not valid (altered, or made for another account)")]
    Invalid,
    /// Past its lifetime.
    #[error("the link request has expired; start again")]
    Expired,
    /// The browser finishing the link is not the one that started it.
    #[error("this link was started in another browser; start again here")]
    OtherBrowser,
    /// No state parameter.
    #[error("the callback has no state parameter")]
    Missing,
}

/// Seals `state` for `provider`: base64url(nonce | ciphertext | tag).
pub fn seal_state(sealer: &Sealer, state: &LinkState) -> Result<String, SealError> {
    let plain = serde_json::to_vec(state).map_err(|_| SealError::TooLarge)?;
    let sealed = sealer.seal(&state_aad(&state.provider), &plain)?;
    Ok(URL_SAFE_NO_PAD.encode(sealed))
}

/// Opens and checks a callback's `state` for `provider`: sealed by this gateway for this
/// provider, not expired at `now_ms`, and carried by the browser whose binding cookie is
/// `cookie` (`None`: the browser sent none). Single use is the caller's (it needs storage).
pub fn open_state(
    sealer: &Sealer,
    provider: &str,
    state: Option<&str>,
    cookie: Option<&str>,
    now_ms: i64,
) -> Result<LinkState, StateError> {
    let text = state.filter(|s| !s.is_empty()).ok_or(StateError::Missing)?;
    if text.len() > 8192 {
        return Err(StateError::Invalid);
    }
    let raw = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| StateError::Invalid)?;
    let plain = sealer
        .open(&state_aad(provider), &raw)
        .map_err(|_| StateError::Invalid)?;
    let st: LinkState = serde_json::from_slice(&plain).map_err(|_| StateError::Invalid)?;
    if st.provider != provider {
        return Err(StateError::Invalid);
    }
    if now_ms >= st.exp_ms {
        return Err(StateError::Expired);
    }
    match cookie {
        Some(c) if same(browser_hash(c).as_bytes(), st.browser.as_bytes()) => Ok(st),
        _ => Err(StateError::OtherBrowser),
    }
}

/// Compares without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why an authorization response is refused before its code is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// RFC 9207: `iss` differs from the issuer the request went to (mix-up attack).
    #[error("the authorization response came from {got:?}, not from {expected:?}")]
    WrongIssuer {
        /// The issuer the request went to.
        expected: String,
        /// The `iss` received.
        got: String,
    },
    /// RFC 9207: the server advertises `iss` in responses but sent none.
    #[error("the authorization response has no iss parameter although {0} promises one")]
    MissingIssuer(String),
    /// The provider answered with an error (the user refused, or it failed).
    #[error("the provider refused the link: {0}")]
    Refused(String),
    /// Neither a code nor an error.
    #[error("the callback has no authorization code")]
    NoCode,
}

/// RFC 9207: checks the callback's `iss` against the issuer the request went to. A present
/// `iss` must match byte for byte; an absent one is refused when the server advertises
/// `authorization_response_iss_parameter_supported`.
pub fn check_iss(expected: &str, iss: Option<&str>, advertised: bool) -> Result<(), CallbackError> {
    match iss {
        Some(got) if got == expected => Ok(()),
        Some(got) => Err(CallbackError::WrongIssuer {
            expected: expected.to_string(),
            got: got.chars().take(200).collect(),
        }),
        None if advertised => Err(CallbackError::MissingIssuer(expected.to_string())),
        None => Ok(()),
    }
}

/// The code of a callback, after the provider's own error (`error`, `error_description`).
pub fn callback_code<'a>(
    code: Option<&'a str>,
    error: Option<&str>,
    description: Option<&str>,
) -> Result<&'a str, CallbackError> {
    if let Some(e) = error {
        let text = match description {
            Some(d) => format!("{e} ({d})"),
            None => e.to_string(),
        };
        return Err(CallbackError::Refused(text.chars().take(300).collect()));
    }
    code.filter(|c| !c.is_empty()).ok_or(CallbackError::NoCode)
}

// ----- the gateway's client identity at a provider ------------------------------------------

/// How the gateway identifies itself to a provider's authorization server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientChoice {
    /// The client configured for the provider (YAML, or `CORTEX_MCP_<ID>_CLIENT_ID`).
    PreRegistered,
    /// The gateway's Client ID Metadata Document: the client id is its https URL, which the
    /// server fetches.
    MetadataDocument,
    /// Dynamic client registration (RFC 7591), stored and bound to the issuer.
    Registration,
}

/// The MCP authorization spec's order: a pre-registered client when configured; else a
/// Client ID Metadata Document when the server advertises
/// `client_id_metadata_document_supported` and the gateway is reachable over https (a
/// document's URL must be https); else dynamic registration.
pub fn client_choice(
    pre_registered: bool,
    cimd_supported: bool,
    https_origin: bool,
) -> ClientChoice {
    if pre_registered {
        ClientChoice::PreRegistered
    } else if cimd_supported && https_origin {
        ClientChoice::MetadataDocument
    } else {
        ClientChoice::Registration
    }
}

// ----- grants: refresh ------------------------------------------------------------------------

/// Whether a grant expiring at `expires_at_ms` must be refreshed before use at `now_ms`:
/// within `skew_ms` of its expiry (or past it). A grant without a known expiry is used as is.
pub fn needs_refresh(expires_at_ms: Option<i64>, now_ms: i64, skew_ms: i64) -> bool {
    expires_at_ms.is_some_and(|exp| now_ms.saturating_add(skew_ms) >= exp)
}

/// What a failed refresh means for the stored grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshFailure {
    /// The provider refused the grant for good (revoked, expired, client gone): delete it and
    /// ask the user to link again.
    Permanent,
    /// The provider or the network failed: keep the grant, fail this call, try again later.
    Transient,
}

/// Classifies a failed refresh: an HTTP 400/401 from the token endpoint with an RFC 6749
/// error that says the grant or the client is unusable is permanent; anything else (5xx, 429,
/// a timeout, an unknown 4xx error code) is transient.
pub fn classify_refresh(status: Option<u16>, error: Option<&str>) -> RefreshFailure {
    match (status, error) {
        (Some(400 | 401), Some("invalid_grant" | "invalid_client" | "unauthorized_client")) => {
            RefreshFailure::Permanent
        }
        _ => RefreshFailure::Transient,
    }
}

/// What to do when the provider's resource server answered HTTP 401 to a linked token (the
/// provider revoked it, or it expired before its announced expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Another call already renewed the stored token meanwhile: use the stored one.
    UseStored,
    /// Renew the stored grant once with its refresh token, then try again.
    Renew,
    /// Nothing left to try (no refresh token, or the renewed token was refused too): delete the
    /// grant and ask the user to link again.
    Relink,
}

/// The rule after a 401: `stored_is_rejected` whether the vault still holds the very token the
/// server refused, `has_refresh` whether the grant has a refresh token, `renewed_already`
/// whether the refused token was itself the result of a renewal for this call (a call renews
/// at most once, so a provider that keeps refusing cannot make it loop).
pub fn after_rejection(
    stored_is_rejected: bool,
    has_refresh: bool,
    renewed_already: bool,
) -> Rejected {
    match (stored_is_rejected, renewed_already, has_refresh) {
        (false, false, _) => Rejected::UseStored,
        (_, true, _) | (true, false, false) => Rejected::Relink,
        (true, false, true) => Rejected::Renew,
    }
}

/// The refresh token to keep after a refresh: the new one if the provider rotated it, else
/// the old one (RFC 6749 §6: the server may keep the old token valid).
pub fn next_refresh_token(old: Option<String>, new: Option<String>) -> Option<String> {
    new.filter(|t| !t.is_empty()).or(old)
}

/// Expiry in Unix ms of a token issued at `now_ms` with `expires_in` seconds (none when the
/// provider does not say; a negative or absurd value counts as already expired).
pub fn expiry_ms(now_ms: i64, expires_in: Option<i64>) -> Option<i64> {
    expires_in.map(|s| now_ms.saturating_add(s.clamp(0, 10 * 365 * 86_400).saturating_mul(1000)))
}

// ----- calls to an unlinked provider ----------------------------------------------------------

/// The JSON-RPC error code of MCP 2025-11-25's URL-elicitation-required error.
pub const URL_ELICITATION_REQUIRED: i64 = -32042;

/// The link page of `provider` on the gateway at `public_origin`. It carries no personal
/// data and authenticates nobody: opening it still requires the user to sign in.
pub fn link_url(public_origin: &str, provider: &str) -> String {
    format!(
        "{}/link/{provider}/start",
        public_origin.trim_end_matches('/')
    )
}

/// Why the caller has no usable credential for a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlinked {
    /// Never linked, or unlinked.
    NotLinked,
    /// The provider refused the stored grant for good; it was deleted.
    Relink,
}

/// The tool result a client that cannot open a URL elicitation gets: an error that names the
/// account to link and where.
pub fn unlinked_tool_result(provider: &str, url: &str, why: Unlinked) -> Value {
    let text = match why {
        Unlinked::NotLinked => format!(
            "This tool acts on your own {provider} account, which is not linked yet. Open {url} to link it, then call the tool again."
        ),
        Unlinked::Relink => format!(
            "Your {provider} account link is no longer accepted by {provider}. Open {url} to link it again, then call the tool again."
        ),
    };
    json!({
        "content": [{ "type": "text", "text": text }],
        "isError": true,
        "_meta": { "cortex/link": { "provider": provider, "url": url } },
    })
}

/// The `-32042` error data for a client that declared URL-mode elicitation (2025-11-25):
/// one URL elicitation to the link page; `elicitation_id` lets the client match a later
/// completion notification.
pub fn url_elicitation_error(provider: &str, url: &str, elicitation_id: &str) -> Value {
    json!({
        "code": URL_ELICITATION_REQUIRED,
        "message": format!("Link your {provider} account to use this tool"),
        "data": {
            "elicitations": [{
                "mode": "url",
                "elicitationId": elicitation_id,
                "url": url,
                "message": format!("Link your {provider} account with the gateway, then retry."),
            }]
        }
    })
}

/// For a client that declared URL-mode elicitation (2025-11-25 and later): the `-32042`
/// error replacing an unlinked-provider tool result (one built by [`unlinked_tool_result`]),
/// so the client opens the link page in the middle of the call and retries. `None` for any
/// other result (it is answered as it is).
pub fn url_elicitation_for(result: &Value, elicitation_id: &str) -> Option<Value> {
    let link = result.get("_meta")?.get("cortex/link")?;
    if result.get("isError") != Some(&Value::Bool(true)) {
        return None;
    }
    let provider = link.get("provider")?.as_str()?;
    let url = link.get("url")?.as_str()?;
    Some(url_elicitation_error(provider, url, elicitation_id))
}

/// For a modern (2026-07-28) client: the input request replacing an unlinked-provider tool
/// result (one built by [`unlinked_tool_result`]): a URL elicitation to the link page, keyed
/// `link-<provider id>` (from the link URL, [`link_url`]), that the gateway answers with an `InputRequiredResult`; the retried call
/// succeeds once the account is linked. `None` for any other result.
pub fn link_input_request(result: &Value) -> Option<crate::modern::mrtr::InputRequest> {
    let link = result.get("_meta")?.get("cortex/link")?;
    if result.get("isError") != Some(&Value::Bool(true)) {
        return None;
    }
    let provider = link.get("provider")?.as_str()?;
    let url = link.get("url")?.as_str()?;
    let id = url
        .strip_suffix("/start")
        .and_then(|u| u.rsplit_once("/link/"))
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let key = id.map_or_else(|| "link".to_owned(), |id| format!("link-{id}"));
    Some(crate::modern::mrtr::InputRequest::elicit_url(
        key,
        &format!("Link your {provider} account with the gateway, then retry."),
        url,
    ))
}

/// Whether a client's `initialize` capabilities declare URL-mode elicitation
/// (`capabilities.elicitation.url`).
pub fn declares_url_elicitation(capabilities: &Value) -> bool {
    capabilities
        .get("elicitation")
        .and_then(|e| e.get("url"))
        .is_some()
}

// ----- the catalog of a vault backend ---------------------------------------------------------

/// Whose credential discovers a vault backend's tools, so users see them before linking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogSource {
    /// The linked grant of this configured subject (`CORTEX_MCP_<ID>_CATALOG_SUB`).
    Subject(String),
    /// The static catalog written in the configuration.
    Static,
    /// Neither: the backend's tools appear once discovered through some user's grant.
    Unknown,
}

/// The catalog source of a vault backend: a static catalog wins (no token at all is spent on
/// discovery), else the catalog subject.
pub fn catalog_source(static_catalog: bool, catalog_sub: Option<&str>) -> CatalogSource {
    match (
        static_catalog,
        catalog_sub.map(str::trim).filter(|s| !s.is_empty()),
    ) {
        (true, _) => CatalogSource::Static,
        (false, Some(s)) => CatalogSource::Subject(s.to_string()),
        (false, None) => CatalogSource::Unknown,
    }
}

/// The lists of a catalog written in the configuration (`static_catalog`), entries as the
/// server's own list methods return them.
#[derive(Debug, Clone, Copy, Default)]
pub struct StaticLists<'a> {
    /// `tools/list` entries.
    pub tools: &'a [Value],
    /// `prompts/list` entries.
    pub prompts: &'a [Value],
    /// `resources/list` entries.
    pub resources: &'a [Value],
    /// `resources/templates/list` entries.
    pub templates: &'a [Value],
}

/// A backend's snapshot from its static catalog, with the configured scopes applied as for a
/// discovered one (`scope` for every entry, `scopes` per name or URI). Entries that do not
/// parse are left out and named in the warnings; a list that is not a list of objects fails.
pub fn static_snapshot(
    backend_id: &str,
    naming: crate::naming::NamingMode,
    lists: StaticLists<'_>,
    scope: Option<&str>,
    scopes: &std::collections::BTreeMap<String, String>,
) -> Result<(crate::catalog::BackendSnapshot, Vec<String>), String> {
    use crate::contract as c;
    let mut warnings = Vec::new();
    fn list<T>(
        items: &[Value],
        (key, key_field): (&str, &str),
        parse: fn(&Value) -> Result<c::Parsed<T>, c::ContractError>,
        scope: Option<&str>,
        scopes: &std::collections::BTreeMap<String, String>,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<T>, String> {
        let mut items = items.to_vec();
        crate::native::apply_scopes(&mut items, key_field, scope, scopes);
        let parsed =
            parse(&json!({ key: items })).map_err(|e| format!("static_catalog.{key}: {e}"))?;
        warnings.extend(
            parsed
                .warnings
                .into_iter()
                .map(|w| format!("static_catalog: {w}")),
        );
        Ok(parsed.items)
    }
    let tools = list(
        lists.tools,
        ("tools", "name"),
        c::parse_list_tools,
        scope,
        scopes,
        &mut warnings,
    )?;
    let prompts = list(
        lists.prompts,
        ("prompts", "name"),
        c::parse_list_prompts,
        scope,
        scopes,
        &mut warnings,
    )?;
    let resources = list(
        lists.resources,
        ("resources", "uri"),
        c::parse_list_resources,
        scope,
        scopes,
        &mut warnings,
    )?;
    let templates = list(
        lists.templates,
        ("resourceTemplates", "uriTemplate"),
        c::parse_list_resource_templates,
        scope,
        scopes,
        &mut warnings,
    )?;
    Ok((
        crate::catalog::BackendSnapshot {
            backend_id: backend_id.to_string(),
            naming,
            tools,
            prompts,
            templates,
            resources,
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(exp_ms: i64) -> LinkState {
        LinkState {
            sub: "alice".into(),
            provider: "design".into(),
            verifier: pkce_verifier(&[7; 32]),
            id: "st_1".into(),
            browser: browser_hash("cookie-1"),
            issuer: "https://as.example".into(),
            client_id: "c".into(),
            exp_ms,
        }
    }

    #[test]
    fn associated_data_separates_users_providers_keys_and_purposes() {
        assert_ne!(grant_aad("ab", "c", "k"), grant_aad("a", "bc", "k"));
        assert_ne!(grant_aad("a", "b", "k1"), grant_aad("a", "b", "k2"));
        assert_ne!(grant_aad("a", "b", "k"), client_aad("a", "b", "k"));
        let s = Sealer::new(&[1; 32]);
        let sealed = s.seal(&grant_aad("alice", "p", "k"), b"tok").unwrap();
        assert!(s.open(&grant_aad("bob", "p", "k"), &sealed).is_err());
        assert!(s.open(&grant_aad("alice", "q", "k"), &sealed).is_err());
        assert_eq!(
            s.open(&grant_aad("alice", "p", "k"), &sealed).unwrap(),
            b"tok"
        );
    }

    #[test]
    fn pkce_matches_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            pkce_challenge(v),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(pkce_verifier(&[0; 32]).len(), 43);
        assert!(supports_s256(Some(&["plain".into(), "S256".into()])));
        assert!(!supports_s256(Some(&["plain".into()])));
        assert!(!supports_s256(None));
    }

    #[test]
    fn a_state_opens_only_for_its_provider_browser_and_lifetime() {
        let s = Sealer::new(&[2; 32]);
        let sealed = seal_state(&s, &state(1_000)).unwrap();
        let ok = open_state(&s, "design", Some(&sealed), Some("cookie-1"), 999).unwrap();
        assert_eq!(ok.sub, "alice");
        assert_eq!(
            open_state(&s, "design", Some(&sealed), Some("cookie-1"), 1_000),
            Err(StateError::Expired)
        );
        assert_eq!(
            open_state(&s, "design", Some(&sealed), Some("cookie-2"), 1),
            Err(StateError::OtherBrowser)
        );
        assert_eq!(
            open_state(&s, "design", Some(&sealed), None, 1),
            Err(StateError::OtherBrowser)
        );
        assert_eq!(
            open_state(&s, "code", Some(&sealed), Some("cookie-1"), 1),
            Err(StateError::Invalid)
        );
        assert_eq!(
            open_state(
                &Sealer::new(&[3; 32]),
                "design",
                Some(&sealed),
                Some("cookie-1"),
                1
            ),
            Err(StateError::Invalid)
        );
        let mut bad = sealed.into_bytes();
        bad[20] = if bad[20] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(
            open_state(&s, "design", Some(&bad), Some("cookie-1"), 1),
            Err(StateError::Invalid)
        );
        assert_eq!(
            open_state(&s, "design", None, Some("cookie-1"), 1),
            Err(StateError::Missing)
        );
        assert_eq!(
            open_state(&s, "design", Some("!!"), Some("cookie-1"), 1),
            Err(StateError::Invalid)
        );
    }

    #[test]
    fn iss_is_checked_before_the_code() {
        assert!(check_iss("https://a", Some("https://a"), true).is_ok());
        assert!(check_iss("https://a", None, false).is_ok());
        assert!(matches!(
            check_iss("https://a", Some("https://evil"), false),
            Err(CallbackError::WrongIssuer { .. })
        ));
        assert!(matches!(
            check_iss("https://a", None, true),
            Err(CallbackError::MissingIssuer(_))
        ));
        assert_eq!(callback_code(Some("c"), None, None), Ok("c"));
        assert_eq!(
            callback_code(Some(""), None, None),
            Err(CallbackError::NoCode)
        );
        assert_eq!(
            callback_code(None, Some("access_denied"), Some("no")),
            Err(CallbackError::Refused("access_denied (no)".into()))
        );
    }

    #[test]
    fn refresh_decisions() {
        assert!(!needs_refresh(None, 100, 60_000));
        assert!(!needs_refresh(Some(100_000), 0, 60_000));
        assert!(needs_refresh(Some(100_000), 40_000, 60_000));
        assert!(needs_refresh(Some(100_000), 200_000, 0));
        assert_eq!(
            classify_refresh(Some(400), Some("invalid_grant")),
            RefreshFailure::Permanent
        );
        assert_eq!(
            classify_refresh(Some(401), Some("invalid_client")),
            RefreshFailure::Permanent
        );
        assert_eq!(classify_refresh(Some(503), None), RefreshFailure::Transient);
        assert_eq!(
            classify_refresh(Some(400), Some("temporarily_unavailable")),
            RefreshFailure::Transient
        );
        assert_eq!(classify_refresh(None, None), RefreshFailure::Transient);
        // Client identity: pre-registered, then a metadata document (https only), then DCR.
        assert_eq!(client_choice(true, true, true), ClientChoice::PreRegistered);
        assert_eq!(
            client_choice(true, false, false),
            ClientChoice::PreRegistered
        );
        assert_eq!(
            client_choice(false, true, true),
            ClientChoice::MetadataDocument
        );
        assert_eq!(
            client_choice(false, true, false),
            ClientChoice::Registration
        );
        assert_eq!(
            client_choice(false, false, true),
            ClientChoice::Registration
        );
        // After a 401: renew once, use a token another call renewed, never loop.
        assert_eq!(after_rejection(true, true, false), Rejected::Renew);
        assert_eq!(after_rejection(true, false, false), Rejected::Relink);
        assert_eq!(after_rejection(false, true, false), Rejected::UseStored);
        assert_eq!(after_rejection(false, false, false), Rejected::UseStored);
        assert_eq!(after_rejection(true, true, true), Rejected::Relink);
        assert_eq!(after_rejection(false, true, true), Rejected::Relink);
        assert_eq!(
            next_refresh_token(Some("old".into()), Some("new".into())),
            Some("new".into())
        );
        assert_eq!(
            next_refresh_token(Some("old".into()), None),
            Some("old".into())
        );
        assert_eq!(
            next_refresh_token(Some("old".into()), Some(String::new())),
            Some("old".into())
        );
        assert_eq!(expiry_ms(1_000, Some(60)), Some(61_000));
        assert_eq!(expiry_ms(1_000, Some(-5)), Some(1_000));
        assert_eq!(expiry_ms(1_000, None), None);
    }

    #[test]
    fn unlinked_answers_name_the_account_and_the_link() {
        let url = link_url("https://gw.example/", "design");
        assert_eq!(url, "https://gw.example/link/design/start");
        let r = unlinked_tool_result("design", &url, Unlinked::NotLinked);
        let named = unlinked_tool_result("Design Tool", &url, Unlinked::Relink);
        let input = link_input_request(&named).expect("an unlinked result asks for the link");
        assert_eq!(
            input.key, "link-design",
            "keyed by the provider id of the URL"
        );
        assert!(input.params["message"]
            .as_str()
            .unwrap()
            .contains("Design Tool"));
        assert_eq!(input.params["mode"], "url");
        assert_eq!(input.params["url"], json!(url));
        assert!(link_input_request(&json!({"content": [], "isError": true})).is_none());
        assert_eq!(r["isError"], true);
        let text = r["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("design") && text.contains(&url));
        let e = url_elicitation_error("design", &url, "el-1");
        assert_eq!(e["code"], URL_ELICITATION_REQUIRED);
        assert_eq!(e["data"]["elicitations"][0]["mode"], "url");
        assert_eq!(e["data"]["elicitations"][0]["url"], url);
        assert!(declares_url_elicitation(
            &json!({"elicitation": {"url": {}}})
        ));
        assert!(!declares_url_elicitation(&json!({"elicitation": {}})));
        assert!(!declares_url_elicitation(&json!({})));
        let as_error = url_elicitation_for(&r, "el-2").unwrap();
        assert_eq!(as_error["code"], URL_ELICITATION_REQUIRED);
        assert_eq!(as_error["data"]["elicitations"][0]["elicitationId"], "el-2");
        assert_eq!(as_error["data"]["elicitations"][0]["url"], url);
        // An ordinary tool error, or a success carrying the same meta, stays as it is.
        assert!(url_elicitation_for(&json!({"isError": true, "content": []}), "x").is_none());
        let mut ok = r.clone();
        ok["isError"] = json!(false);
        assert!(url_elicitation_for(&ok, "x").is_none());
    }

    #[test]
    fn tickets_name_their_user_until_they_expire() {
        let s = Sealer::new(&[9; 32]);
        let t = seal_ticket(&s, "alice", 100).unwrap();
        assert!(!t.contains("alice"));
        assert_eq!(open_ticket(&s, &t, 99).as_deref(), Some("alice"));
        assert_eq!(open_ticket(&s, &t, 100), None);
        assert_eq!(open_ticket(&Sealer::new(&[8; 32]), &t, 1), None);
        // A state is not a ticket (purposes are separate).
        let st = seal_state(&s, &state(1_000)).unwrap();
        assert_eq!(open_ticket(&s, &st, 1), None);
    }

    #[test]
    fn a_static_catalog_gets_the_configured_scopes() {
        let tools = [
            json!({"name": "search", "inputSchema": {"type": "object"}}),
            json!({"name": "edit", "inputSchema": {"type": "object"}}),
            json!({"description": "no name"}),
        ];
        let mut scopes = std::collections::BTreeMap::new();
        scopes.insert("edit".to_string(), "mcp:design:write".to_string());
        let (snap, warnings) = static_snapshot(
            "design",
            crate::naming::NamingMode::Prefix,
            StaticLists {
                tools: &tools,
                ..Default::default()
            },
            Some("mcp:design:read"),
            &scopes,
        )
        .unwrap();
        assert_eq!(snap.tools.len(), 2);
        assert_eq!(snap.tools[0].scope.as_deref(), Some("mcp:design:read"));
        assert_eq!(snap.tools[1].scope.as_deref(), Some("mcp:design:write"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(snap.prompts.is_empty() && snap.resources.is_empty());
    }

    #[test]
    fn catalog_source_prefers_static() {
        assert_eq!(catalog_source(true, Some("svc")), CatalogSource::Static);
        assert_eq!(
            catalog_source(false, Some(" svc ")),
            CatalogSource::Subject("svc".into())
        );
        assert_eq!(catalog_source(false, Some(" ")), CatalogSource::Unknown);
        assert_eq!(catalog_source(false, None), CatalogSource::Unknown);
    }
}
