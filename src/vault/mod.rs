//! The per-user token vault: each user's own grant at each third-party provider, sealed at
//! rest, linked through OAuth 2.1 (authorization code + PKCE, the gateway as the client),
//! refreshed before expiry, revoked on unlink (docs/vault.md).
//!
//! - `keyring`: the AES-256-GCM key ring and the sealed record layout.
//! - `oauth`: the gateway as an OAuth client of a provider (discovery, registration, token,
//!   revocation).
//! - `edge`: the `/link` pages and endpoints, as plain request → [`Answer`] functions that the
//!   gateway's router calls with the authenticated subject.
//! - [`Vault`] (here): what the rest of the gateway uses. The call path needs one method,
//!   [`Vault::credential_for`]; a backend holds it through a [`VaultLink`].
//!
//! Every rule (state checks, PKCE, `iss`, refresh timing, which failures are permanent, the
//! answers for unlinked users) is a pure function of `cortex_filters::vault`.
//!
//! [`Answer`]: crate::http::Answer

pub mod cli;
pub mod edge;
pub mod keyring;
pub mod oauth;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cortex_filters::vault as rules;
use cortex_filters::vault::{LinkState, RefreshFailure, StateError, Unlinked};
use rand::RngCore;
use tracing::{info, warn};

use crate::config::vault::{VaultConfig, VaultProviderConfig};
use crate::store::{KeyCount, NewGrant, StoreError, StoredClient, StoredGrant, VaultStore};

pub use keyring::{Grant, KeyRing, OpenError};
use oauth::{AsMeta, ClientCreds, ProviderError, ProviderHttp};

/// How long a provider's discovered metadata and client identity are reused.
const RESOLVE_TTL: Duration = Duration::from_secs(600);
/// Refresh lock stripes: one refresh at a time per (user, provider) in this process (two
/// pairs may share a stripe; they then wait for each other, which is only slower).
const LOCK_STRIPES: usize = 64;
/// Lifetime of a link-page ticket.
const TICKET_TTL_MS: i64 = 5 * 60 * 1000;
/// Rows re-sealed per batch by a rotation.
const ROTATE_BATCH: u32 = 200;

/// The user's credential for one provider. Its `Debug` hides the token.
#[derive(Clone)]
pub struct Credential {
    /// The provider's access token for this user.
    pub access_token: String,
    /// When it expires, Unix ms.
    pub expires_at_ms: Option<i64>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// Why no credential can be given. Messages never carry a token.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// No such provider in `vault.providers`.
    #[error("no vault provider `{0}`")]
    UnknownProvider(String),
    /// The user has not linked this provider.
    #[error("your {name} account is not linked; link it at {link_url}")]
    NotLinked {
        /// Provider id.
        provider: String,
        /// Its display name.
        name: String,
        /// Where to link.
        link_url: String,
    },
    /// The provider refused the stored grant for good; it was deleted.
    #[error("your {name} account link was refused by {name}; link it again at {link_url}")]
    Relink {
        /// Provider id.
        provider: String,
        /// Its display name.
        name: String,
        /// Where to link.
        link_url: String,
    },
    /// The provider failed (network, 5xx): the grant is kept; try again later.
    #[error("{name} could not be reached to renew your access ({reason}); try again shortly")]
    Provider {
        /// Display name.
        name: String,
        /// What happened.
        reason: String,
    },
    /// The stored record does not open (altered, or moved from another user or provider).
    #[error("the stored {name} link cannot be used ({reason}); link it again at {link_url}")]
    Tampered {
        /// Display name.
        name: String,
        /// Why.
        reason: String,
        /// Where to link.
        link_url: String,
    },
    /// The store failed.
    #[error("the vault's store failed: {0}")]
    Store(#[from] StoreError),
}

impl VaultError {
    /// For a call to an unlinked provider: why, and where to link.
    pub fn unlinked(&self) -> Option<(Unlinked, &str, &str)> {
        match self {
            VaultError::NotLinked { name, link_url, .. } => {
                Some((Unlinked::NotLinked, name, link_url))
            }
            VaultError::Relink { name, link_url, .. }
            | VaultError::Tampered { name, link_url, .. } => {
                Some((Unlinked::Relink, name, link_url))
            }
            _ => None,
        }
    }
}

/// Why a callback did not link. Shown to the user's browser.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// `state` refused.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state was already used.
    #[error("this link request was already used; start again")]
    Replayed,
    /// The authorization response was refused (`iss`, provider error, no code).
    #[error(transparent)]
    Callback(#[from] rules::CallbackError),
    /// The provider failed (discovery, token exchange).
    #[error("{0}")]
    Provider(String),
    /// Anything of the vault's own.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// One provider as a user sees it on the link page and in `whoami`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkInfo {
    /// Provider id.
    pub provider: String,
    /// Display name.
    pub name: String,
    /// Linked?
    pub linked: bool,
    /// Link time, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linked_at_ms: Option<i64>,
    /// The scope granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Where to link (or re-link).
    pub link_url: String,
}

/// What `vault rotate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotateReport {
    /// Grants re-sealed under the newest key.
    pub grants: u64,
    /// Client secrets re-sealed.
    pub clients: u64,
    /// Records that could not be opened (unknown key or tampered), left as they are.
    pub unreadable: u64,
}

/// A provider's resolved identity: its server's metadata and the gateway's client there.
struct Resolved {
    meta: AsMeta,
    client: ClientCreds,
    scopes: Vec<String>,
}

/// The vault.
pub struct Vault {
    ring: KeyRing,
    store: Arc<dyn VaultStore>,
    providers: Vec<VaultProviderConfig>,
    public_origin: String,
    http: ProviderHttp,
    resolved: tokio::sync::Mutex<HashMap<String, (Instant, Arc<Resolved>)>>,
    locks: Vec<tokio::sync::Mutex<()>>,
    link_ttl_ms: i64,
    refresh_before_ms: i64,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("ring", &self.ring)
            .field("providers", &self.providers.len())
            .finish_non_exhaustive()
    }
}

fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Vault {
    /// The vault of `config` over `store`, for the gateway reachable at `public_origin`;
    /// `None` when no key is configured (then no provider may be either: validation says so).
    pub fn from_config(
        config: &VaultConfig,
        store: Arc<dyn VaultStore>,
        public_origin: &str,
    ) -> Result<Option<Vault>, String> {
        let Some(ring) = KeyRing::from_config(config)? else {
            return Ok(None);
        };
        Ok(Some(Vault {
            ring,
            store,
            providers: config.providers.clone(),
            public_origin: public_origin.trim_end_matches('/').to_string(),
            http: ProviderHttp::new(config.timeout)?,
            resolved: tokio::sync::Mutex::new(HashMap::new()),
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            link_ttl_ms: ms(config.link_ttl),
            refresh_before_ms: ms(config.refresh_before),
        }))
    }

    /// The key ring (rotation tools).
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// The configured providers.
    pub fn providers(&self) -> &[VaultProviderConfig] {
        &self.providers
    }

    fn provider(&self, id: &str) -> Result<&VaultProviderConfig, VaultError> {
        self.providers
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| VaultError::UnknownProvider(id.to_string()))
    }

    /// The public link URL of `provider` (no personal data, authenticates nobody).
    pub fn link_url(&self, provider: &str) -> String {
        rules::link_url(&self.public_origin, provider)
    }

    /// The exact redirect URI registered for `provider`.
    pub fn redirect_uri(&self, provider: &str) -> String {
        format!("{}/link/{provider}/callback", self.public_origin)
    }

    /// The Client ID Metadata Document URL (the gateway's client id where a server supports
    /// them).
    pub fn client_metadata_url(&self) -> String {
        format!("{}/link/client-metadata.json", self.public_origin)
    }

    fn lock_for(&self, subject: &str, provider: &str) -> &tokio::sync::Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (subject, provider).hash(&mut h);
        &self.locks[(h.finish() as usize) % self.locks.len()]
    }

    fn not_linked(&self, p: &VaultProviderConfig) -> VaultError {
        VaultError::NotLinked {
            provider: p.id.clone(),
            name: p.display_name().to_string(),
            link_url: self.link_url(&p.id),
        }
    }

    fn relink(&self, p: &VaultProviderConfig) -> VaultError {
        VaultError::Relink {
            provider: p.id.clone(),
            name: p.display_name().to_string(),
            link_url: self.link_url(&p.id),
        }
    }

    fn open(&self, p: &VaultProviderConfig, row: &StoredGrant) -> Result<Grant, VaultError> {
        self.ring
            .open_grant(&row.subject, &row.provider, &row.key_id, &row.sealed)
            .map_err(|e| {
                warn!(provider = %p.id, key_id = %row.key_id, "vault record refused: {e}");
                VaultError::Tampered {
                    name: p.display_name().to_string(),
                    reason: e.to_string(),
                    link_url: self.link_url(&p.id),
                }
            })
    }

    // ----- the call path ------------------------------------------------------------------

    /// The access token of `subject` at `provider`, refreshed first when it expires within
    /// `vault.refresh_before` (one refresh at a time per pair; a rotated refresh token
    /// replaces the old one). Not linked, or refused for good → an error carrying the link
    /// URL; the provider down → [`VaultError::Provider`], the grant kept.
    pub async fn credential_for(
        &self,
        subject: &str,
        provider: &str,
    ) -> Result<Credential, VaultError> {
        let p = self.provider(provider)?;
        let now = crate::clock::now_ms();
        let row = self
            .store
            .get_grant(subject, provider)
            .await?
            .ok_or_else(|| self.not_linked(p))?;
        let grant = self.open(p, &row)?;
        if !rules::needs_refresh(grant.expires_at_ms, now, self.refresh_before_ms) {
            return Ok(credential(&grant));
        }
        let _one_at_a_time = self.lock_for(subject, provider).lock().await;
        // Another call may have refreshed while this one waited.
        let row = self
            .store
            .get_grant(subject, provider)
            .await?
            .ok_or_else(|| self.not_linked(p))?;
        let grant = self.open(p, &row)?;
        let now = crate::clock::now_ms();
        if !rules::needs_refresh(grant.expires_at_ms, now, self.refresh_before_ms) {
            return Ok(credential(&grant));
        }
        self.refresh(p, subject, row, grant, now, false).await
    }

    /// The provider's server answered HTTP 401 to `rejected`, the access token a call sent
    /// for `subject` (the provider revoked it, or it expired early). Under the pair's lock:
    /// a token another call renewed meanwhile is returned as is; else the grant is renewed
    /// once with its refresh token; with none, with the renewal refused for good, or when
    /// `renewed_already` (the refused token was this call's renewal), the grant is deleted
    /// and the caller is asked to link again ([`VaultError::Relink`]). A transient failure
    /// of the renewal keeps the grant and fails the call ([`VaultError::Provider`]).
    pub async fn credential_rejected(
        &self,
        subject: &str,
        provider: &str,
        rejected: &str,
        renewed_already: bool,
    ) -> Result<Credential, VaultError> {
        let p = self.provider(provider)?;
        let _one_at_a_time = self.lock_for(subject, provider).lock().await;
        let row = self
            .store
            .get_grant(subject, provider)
            .await?
            .ok_or_else(|| self.not_linked(p))?;
        let grant = self.open(p, &row)?;
        let stored_is_rejected = grant.access_token == rejected;
        match rules::after_rejection(
            stored_is_rejected,
            grant.refresh_token.is_some(),
            renewed_already,
        ) {
            rules::Rejected::UseStored => Ok(credential(&grant)),
            rules::Rejected::Renew => {
                info!(provider = %p.id, "the provider refused a linked token; renewing the grant once");
                let now = crate::clock::now_ms();
                self.refresh(p, subject, row, grant, now, true).await
            }
            rules::Rejected::Relink => {
                warn!(provider = %p.id, "the provider refused a linked token and it cannot be renewed; the grant is deleted");
                if stored_is_rejected {
                    self.store
                        .delete_grant(subject, &p.id, Some(row.version))
                        .await?;
                }
                Err(self.relink(p))
            }
        }
    }

    /// Renews `grant` with its refresh token. `rejected`: the provider already refused its
    /// access token, so it counts as expired whatever its expiry says.
    async fn refresh(
        &self,
        p: &VaultProviderConfig,
        subject: &str,
        row: StoredGrant,
        grant: Grant,
        now: i64,
        rejected: bool,
    ) -> Result<Credential, VaultError> {
        let expired = rejected || grant.expires_at_ms.is_some_and(|e| now >= e);
        let Some(rt) = grant.refresh_token.clone() else {
            if expired {
                // Nothing to renew it with: the user links again.
                self.store
                    .delete_grant(subject, &p.id, Some(row.version))
                    .await?;
                return Err(self.relink(p));
            }
            return Ok(credential(&grant));
        };
        let client = self.client_for(p, &grant).await?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
            ("resource", grant.resource.as_str()),
        ];
        match self.http.token(&grant.token_endpoint, &client, &form).await {
            Ok(t) => {
                let renewed = Grant {
                    access_token: t.access_token,
                    refresh_token: rules::next_refresh_token(Some(rt), t.refresh_token),
                    expires_at_ms: rules::expiry_ms(now, t.expires_in),
                    scope: t.scope.or(grant.scope),
                    ..grant
                };
                let (key_id, sealed) = self.ring.seal_grant(subject, &p.id, &renewed);
                let write = NewGrant {
                    subject: subject.to_string(),
                    provider: p.id.clone(),
                    key_id,
                    sealed,
                    now_ms: now,
                };
                if self
                    .store
                    .replace_grant(write, row.version)
                    .await?
                    .is_none()
                {
                    // Another replica wrote meanwhile (refresh, unlink, new link): its
                    // record wins; this call still has a fresh token to use.
                    info!(provider = %p.id, "vault grant changed during a refresh; keeping the newer record");
                }
                Ok(credential(&renewed))
            }
            Err(e) => {
                let (status, code) = e.status_and_code();
                match rules::classify_refresh(status, code) {
                    RefreshFailure::Permanent => {
                        warn!(provider = %p.id, "the provider refused a refresh for good ({e}); the grant is deleted");
                        self.store
                            .delete_grant(subject, &p.id, Some(row.version))
                            .await?;
                        Err(self.relink(p))
                    }
                    RefreshFailure::Transient if !expired => {
                        warn!(provider = %p.id, "refresh failed ({e}); the current token is still valid");
                        Ok(credential(&grant))
                    }
                    RefreshFailure::Transient => Err(VaultError::Provider {
                        name: p.display_name().to_string(),
                        reason: e.to_string(),
                    }),
                }
            }
        }
    }

    /// The client credentials a grant was issued to.
    async fn client_for(
        &self,
        p: &VaultProviderConfig,
        grant: &Grant,
    ) -> Result<ClientCreds, VaultError> {
        if p.client_id.as_deref() == Some(grant.client_id.as_str()) {
            return Ok(ClientCreds {
                id: grant.client_id.clone(),
                secret: p.client_secret.clone(),
            });
        }
        if let Some(c) = self.store.get_client(&p.id).await? {
            if c.client_id == grant.client_id && c.issuer == grant.issuer {
                let secret = match &c.sealed_secret {
                    Some(s) => Some(
                        self.ring
                            .open_client_secret(&p.id, &c.issuer, &c.key_id, s)
                            .map_err(|e| VaultError::Tampered {
                                name: p.display_name().to_string(),
                                reason: e.to_string(),
                                link_url: self.link_url(&p.id),
                            })?,
                    ),
                    None => None,
                };
                return Ok(ClientCreds {
                    id: c.client_id,
                    secret,
                });
            }
        }
        // A public client (CIMD, or a registration since replaced).
        Ok(ClientCreds {
            id: grant.client_id.clone(),
            secret: None,
        })
    }

    // ----- discovery and client identity --------------------------------------------------

    async fn resolve(&self, p: &VaultProviderConfig) -> Result<Arc<Resolved>, LinkError> {
        {
            let cache = self.resolved.lock().await;
            if let Some((at, r)) = cache.get(&p.id) {
                if at.elapsed() < RESOLVE_TTL {
                    return Ok(r.clone());
                }
            }
        }
        let provider_err = |e: ProviderError| LinkError::Provider(e.to_string());
        let (issuer, prm_scopes) = match &p.issuer {
            Some(i) => (i.clone(), None),
            None => self
                .http
                .discover_resource(&p.resource)
                .await
                .map_err(provider_err)?,
        };
        let meta = self.http.discover_as(&issuer).await.map_err(provider_err)?;
        let client = self.client_identity(p, &meta).await?;
        let mut scopes = if p.scopes.is_empty() {
            prm_scopes.unwrap_or_default()
        } else {
            p.scopes.clone()
        };
        // Ask for a refresh token where the server offers one through `offline_access`.
        let offers_offline = meta
            .scopes_supported
            .as_ref()
            .is_some_and(|s| s.iter().any(|x| x == "offline_access"));
        if offers_offline && !scopes.iter().any(|s| s == "offline_access") {
            scopes.push("offline_access".into());
        }
        let r = Arc::new(Resolved {
            meta,
            client,
            scopes,
        });
        self.resolved
            .lock()
            .await
            .insert(p.id.clone(), (Instant::now(), r.clone()));
        Ok(r)
    }

    /// The spec's order: pre-registered, then a Client ID Metadata Document (https gateways
    /// only), then dynamic registration (stored, bound to the issuer, redone when the issuer
    /// changes).
    async fn client_identity(
        &self,
        p: &VaultProviderConfig,
        meta: &AsMeta,
    ) -> Result<ClientCreds, LinkError> {
        match rules::client_choice(
            p.client_id.is_some(),
            meta.client_id_metadata_document_supported,
            self.public_origin.starts_with("https://"),
        ) {
            rules::ClientChoice::PreRegistered => {
                return Ok(ClientCreds {
                    id: p.client_id.clone().unwrap_or_default(),
                    secret: p.client_secret.clone(),
                });
            }
            rules::ClientChoice::MetadataDocument => {
                return Ok(ClientCreds {
                    id: self.client_metadata_url(),
                    secret: None,
                });
            }
            rules::ClientChoice::Registration => {}
        }
        if let Some(c) = self
            .store
            .get_client(&p.id)
            .await
            .map_err(VaultError::from)?
        {
            if c.issuer == meta.issuer {
                let secret = match &c.sealed_secret {
                    Some(s) => Some(
                        self.ring
                            .open_client_secret(&p.id, &c.issuer, &c.key_id, s)
                            .map_err(|e| LinkError::Provider(e.to_string()))?,
                    ),
                    None => None,
                };
                return Ok(ClientCreds {
                    id: c.client_id,
                    secret,
                });
            }
            info!(provider = %p.id, old = %c.issuer, new = %meta.issuer, "the provider's issuer changed: registering again");
        }
        let endpoint = meta.registration_endpoint.as_deref().ok_or_else(|| {
            LinkError::Provider(format!(
                "{} offers neither Client ID Metadata Documents (over https) nor dynamic registration: set vault.providers[{}].client_id",
                meta.issuer, p.id
            ))
        })?;
        let name = format!("Cortex Gateway ({})", self.public_origin);
        let (id, secret) = self
            .http
            .register(endpoint, &self.redirect_uri(&p.id), &name)
            .await
            .map_err(|e| LinkError::Provider(e.to_string()))?;
        let (key_id, sealed_secret) = match &secret {
            Some(s) => {
                let (k, v) = self.ring.seal_client_secret(&p.id, &meta.issuer, s);
                (k, Some(v))
            }
            None => (self.ring.newest_id().to_string(), None),
        };
        self.store
            .put_client(StoredClient {
                provider: p.id.clone(),
                issuer: meta.issuer.clone(),
                client_id: id.clone(),
                key_id,
                sealed_secret,
                created_at_ms: crate::clock::now_ms(),
            })
            .await
            .map_err(VaultError::from)?;
        info!(provider = %p.id, issuer = %meta.issuer, "registered the gateway as a client (RFC 7591)");
        Ok(ClientCreds { id, secret })
    }

    // ----- linking ------------------------------------------------------------------------

    /// Starts linking `provider` for `subject`: the provider's authorization URL to send the
    /// browser to, and the value of the browser-binding cookie to set.
    pub async fn start_link(
        &self,
        subject: &str,
        provider: &str,
    ) -> Result<(String, String), LinkError> {
        let p = self.provider(provider)?;
        let r = self.resolve(p).await?;
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let verifier = rules::pkce_verifier(&raw);
        let cookie = random_b64(32);
        let state = LinkState {
            sub: subject.to_string(),
            provider: p.id.clone(),
            verifier: verifier.clone(),
            id: crate::store::random_id("st_"),
            browser: rules::browser_hash(&cookie),
            issuer: r.meta.issuer.clone(),
            client_id: r.client.id.clone(),
            exp_ms: crate::clock::now_ms().saturating_add(self.link_ttl_ms),
        };
        let sealed = rules::seal_state(self.ring.state_sealer(), &state)
            .map_err(|e| LinkError::Provider(e.to_string()))?;
        let mut url = url::Url::parse(&r.meta.authorization_endpoint)
            .map_err(|e| LinkError::Provider(format!("authorization_endpoint: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &r.client.id)
                .append_pair("redirect_uri", &self.redirect_uri(&p.id))
                .append_pair("state", &sealed)
                .append_pair("code_challenge", &rules::pkce_challenge(&verifier))
                .append_pair("code_challenge_method", "S256")
                .append_pair("resource", &p.resource);
            if !r.scopes.is_empty() {
                q.append_pair("scope", &r.scopes.join(" "));
            }
            if r.scopes.iter().any(|s| s == "offline_access") {
                // OpenID Connect issues offline access only after an explicit consent.
                q.append_pair("prompt", "consent");
            }
        }
        Ok((url.into(), cookie))
    }

    /// Completes a link at the callback: checks `state` (sealed here, for this provider, not
    /// expired, from the browser that started, never used before), the provider's error, the
    /// RFC 9207 `iss`, then redeems the code (PKCE verifier, exact redirect URI, `resource`)
    /// and stores the sealed grant. Returns the provider's display name.
    pub async fn finish_link(
        &self,
        provider: &str,
        params: &CallbackParams,
        cookie: Option<&str>,
    ) -> Result<String, LinkError> {
        let p = self.provider(provider)?;
        let now = crate::clock::now_ms();
        let mut outcome = Err(StateError::Invalid);
        for sealer in self.ring.sealers_newest_first() {
            outcome = rules::open_state(sealer, provider, params.state.as_deref(), cookie, now);
            if !matches!(outcome, Err(StateError::Invalid)) {
                break;
            }
        }
        let state = outcome?;
        if !self
            .store
            .consume_state(&state.id, state.exp_ms, now)
            .await
            .map_err(VaultError::from)?
        {
            return Err(LinkError::Replayed);
        }
        let code = rules::callback_code(
            params.code.as_deref(),
            params.error.as_deref(),
            params.error_description.as_deref(),
        )?;
        let r = self.resolve(p).await?;
        rules::check_iss(
            &state.issuer,
            params.iss.as_deref(),
            r.meta.authorization_response_iss_parameter_supported,
        )?;
        if r.meta.issuer != state.issuer {
            return Err(LinkError::Provider(format!(
                "the provider's authorization server changed during the link ({} → {}); start again",
                state.issuer, r.meta.issuer
            )));
        }
        let client = if r.client.id == state.client_id {
            r.client.clone()
        } else {
            ClientCreds {
                id: state.client_id.clone(),
                secret: None,
            }
        };
        let redirect = self.redirect_uri(&p.id);
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", state.verifier.as_str()),
            ("resource", p.resource.as_str()),
        ];
        let t = self
            .http
            .token(&r.meta.token_endpoint, &client, &form)
            .await
            .map_err(|e| LinkError::Provider(format!("the code could not be redeemed: {e}")))?;
        let now = crate::clock::now_ms();
        let grant = Grant {
            access_token: t.access_token,
            refresh_token: t.refresh_token.filter(|s| !s.is_empty()),
            expires_at_ms: rules::expiry_ms(now, t.expires_in),
            scope: t.scope,
            token_endpoint: r.meta.token_endpoint.clone(),
            issuer: r.meta.issuer.clone(),
            resource: p.resource.clone(),
            client_id: client.id.clone(),
        };
        let (key_id, sealed) = self.ring.seal_grant(&state.sub, &p.id, &grant);
        self.store
            .put_grant(NewGrant {
                subject: state.sub.clone(),
                provider: p.id.clone(),
                key_id,
                sealed,
                now_ms: now,
            })
            .await
            .map_err(VaultError::from)?;
        info!(provider = %p.id, "account linked");
        Ok(p.display_name().to_string())
    }

    /// Unlinks `provider` for `subject`: revokes the grant at the provider where it offers
    /// revocation (RFC 7009; a failure there is logged, the local grant goes anyway) and
    /// deletes it. False when nothing was linked.
    pub async fn unlink(&self, subject: &str, provider: &str) -> Result<bool, VaultError> {
        let p = self.provider(provider)?;
        let Some(row) = self.store.get_grant(subject, provider).await? else {
            return Ok(false);
        };
        if let Ok(grant) = self.open(p, &row) {
            self.revoke(p, &grant).await;
        }
        Ok(self.store.delete_grant(subject, provider, None).await?)
    }

    async fn revoke(&self, p: &VaultProviderConfig, grant: &Grant) {
        let Ok(r) = self.resolve(p).await else {
            warn!(provider = %p.id, "unlink: the provider cannot be reached; the grant is deleted locally only");
            return;
        };
        let Some(endpoint) = r.meta.revocation_endpoint.clone() else {
            return;
        };
        let Ok(client) = self.client_for(p, grant).await else {
            return;
        };
        let mut tokens = vec![(grant.access_token.as_str(), "access_token")];
        if let Some(rt) = &grant.refresh_token {
            tokens.insert(0, (rt.as_str(), "refresh_token"));
        }
        for (token, hint) in tokens {
            if let Err(e) = self.http.revoke(&endpoint, &client, token, hint).await {
                warn!(provider = %p.id, "unlink: revoking the {hint} failed: {e}");
            }
        }
    }

    /// Every configured provider and whether `subject` linked it.
    pub async fn links(&self, subject: &str) -> Result<Vec<LinkInfo>, VaultError> {
        let rows = self.store.list_grants(subject).await?;
        Ok(self
            .providers
            .iter()
            .map(|p| {
                let row = rows.iter().find(|r| r.provider == p.id);
                let scope = row
                    .and_then(|r| {
                        self.ring
                            .open_grant(&r.subject, &r.provider, &r.key_id, &r.sealed)
                            .ok()
                    })
                    .and_then(|g| g.scope);
                LinkInfo {
                    provider: p.id.clone(),
                    name: p.display_name().to_string(),
                    linked: row.is_some(),
                    linked_at_ms: row.map(|r| r.created_at_ms),
                    scope,
                    link_url: self.link_url(&p.id),
                }
            })
            .collect())
    }

    /// A short-lived ticket that opens the link pages as `subject` in a browser.
    pub fn ticket_for(&self, subject: &str) -> String {
        let exp = crate::clock::now_ms().saturating_add(TICKET_TTL_MS);
        rules::seal_ticket(self.ring.state_sealer(), subject, exp).unwrap_or_default()
    }

    /// The subject of a valid ticket.
    pub fn open_ticket(&self, ticket: &str) -> Option<String> {
        let now = crate::clock::now_ms();
        self.ring
            .sealers_newest_first()
            .find_map(|s| rules::open_ticket(s, ticket, now))
    }

    // ----- key rotation -------------------------------------------------------------------

    /// Re-seals every record not under the newest key, in batches, while gateways keep
    /// running: a row written meanwhile (a refresh) is left to its writer, and gateways
    /// whose ring holds both keys read either.
    pub async fn rotate(&self) -> Result<RotateReport, VaultError> {
        let newest = self.ring.newest_id().to_string();
        let mut report = RotateReport::default();
        let mut skip: std::collections::HashSet<(String, String)> = Default::default();
        loop {
            let batch = self.store.grants_not_under(&newest, ROTATE_BATCH).await?;
            let fresh: Vec<_> = batch
                .into_iter()
                .filter(|r| !skip.contains(&(r.subject.clone(), r.provider.clone())))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for row in fresh {
                let key = (row.subject.clone(), row.provider.clone());
                match self
                    .ring
                    .open_grant(&row.subject, &row.provider, &row.key_id, &row.sealed)
                {
                    Ok(g) => {
                        let (key_id, sealed) =
                            self.ring.seal_grant(&row.subject, &row.provider, &g);
                        let write = NewGrant {
                            subject: row.subject.clone(),
                            provider: row.provider.clone(),
                            key_id,
                            sealed,
                            now_ms: crate::clock::now_ms(),
                        };
                        if self
                            .store
                            .replace_grant(write, row.version)
                            .await?
                            .is_some()
                        {
                            report.grants += 1;
                        }
                    }
                    Err(e) => {
                        warn!(provider = %row.provider, key_id = %row.key_id, "rotation: a record cannot be opened ({e}); left as it is");
                        report.unreadable += 1;
                        skip.insert(key);
                    }
                }
            }
        }
        for c in self.store.clients_not_under(&newest).await? {
            let secret = match &c.sealed_secret {
                Some(s) => match self
                    .ring
                    .open_client_secret(&c.provider, &c.issuer, &c.key_id, s)
                {
                    Ok(s) => Some(s),
                    Err(_) => {
                        report.unreadable += 1;
                        continue;
                    }
                },
                None => None,
            };
            let (key_id, sealed_secret) = match secret {
                Some(s) => {
                    let (k, v) = self.ring.seal_client_secret(&c.provider, &c.issuer, &s);
                    (k, Some(v))
                }
                None => (newest.clone(), None),
            };
            self.store
                .put_client(StoredClient {
                    key_id,
                    sealed_secret,
                    ..c
                })
                .await?;
            report.clients += 1;
        }
        Ok(report)
    }

    /// Records per key id (`vault status`).
    pub async fn status(&self) -> Result<Vec<KeyCount>, VaultError> {
        Ok(self.store.vault_key_counts().await?)
    }
}

fn credential(g: &Grant) -> Credential {
    Credential {
        access_token: g.access_token.clone(),
        expires_at_ms: g.expires_at_ms,
    }
}

/// The query parameters of an authorization callback.
#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    /// `code`.
    pub code: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// RFC 9207 `iss`.
    pub iss: Option<String>,
    /// `error`.
    pub error: Option<String>,
    /// `error_description`.
    pub error_description: Option<String>,
}

/// The narrow handle a backend holds: the vault and the provider whose linked token the
/// backend receives instead of the caller's.
#[derive(Clone, Debug)]
pub struct VaultLink {
    vault: Arc<Vault>,
    provider: String,
}

impl VaultLink {
    /// The handle for `provider`.
    pub fn new(vault: Arc<Vault>, provider: &str) -> VaultLink {
        VaultLink {
            vault,
            provider: provider.to_string(),
        }
    }

    /// The provider id.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The linked credential of the provider's catalog subject, when one is configured
    /// (discovery for users who have not linked yet).
    pub async fn catalog_credential(&self) -> Option<Result<Credential, VaultError>> {
        let p = self.vault.provider(&self.provider).ok()?;
        match rules::catalog_source(false, p.catalog_sub.as_deref()) {
            rules::CatalogSource::Subject(sub) => {
                Some(self.vault.credential_for(&sub, &self.provider).await)
            }
            _ => None,
        }
    }

    /// The caller's credential at this provider (see [`Vault::credential_for`]).
    pub async fn credential_for(&self, subject: &str) -> Result<Credential, VaultError> {
        self.vault.credential_for(subject, &self.provider).await
    }

    /// The provider's server refused `rejected`, the caller's access token (see
    /// [`Vault::credential_rejected`]).
    pub async fn credential_rejected(
        &self,
        subject: &str,
        rejected: &str,
        renewed_already: bool,
    ) -> Result<Credential, VaultError> {
        self.vault
            .credential_rejected(subject, &self.provider, rejected, renewed_already)
            .await
    }
}
