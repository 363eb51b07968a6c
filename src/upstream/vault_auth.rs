//! The per-user linked account as an upstream credential (`identity: vault`): what a backend
//! naming a `vault_provider` sends instead of anything of the caller's own, and the answer a
//! caller gets when there is nothing to send (not linked, refused, provider down). Contract
//! and native backends share it, so an unlinked user is answered the same way whichever kind
//! of backend the tool lives on (`mcp::dispatch` then turns the tool error into the `-32042`
//! URL elicitation for clients that declared it).

use async_trait::async_trait;
use cortex_filters::contract::Outcome;
use serde_json::{json, Value};

use crate::vault::{VaultError, VaultLink};

use super::backend::{Call, Operation};
use super::native::UpstreamAuth;

/// The answer to a call whose caller has no usable linked token: a tool call gets a tool
/// error naming the account and the link URL (the agent can show it); other operations a
/// JSON-RPC error with the same text and the URL in `data`.
pub fn vault_refusal(e: &VaultError, op: &Operation<'_>) -> Outcome {
    match (e.unlinked(), op) {
        (Some((why, name, url)), Operation::CallTool { .. }) => {
            Outcome::Result(cortex_filters::vault::unlinked_tool_result(name, url, why))
        }
        (Some((_, _, url)), _) => Outcome::Error {
            code: -32603,
            message: e.to_string(),
            data: json!({ "link_url": url }),
        },
        (None, _) => Outcome::Error {
            code: -32603,
            message: e.to_string(),
            data: Value::Null,
        },
    }
}

/// `identity: vault` for a native backend: each call carries the caller's own access token at
/// the provider (refreshed by the vault before it expires), discovery the catalog subject's.
pub struct VaultAuth {
    link: VaultLink,
}

impl VaultAuth {
    /// The credential source of a backend linked to `link`'s provider.
    pub fn new(link: VaultLink) -> Self {
        VaultAuth { link }
    }
}

#[async_trait]
impl UpstreamAuth for VaultAuth {
    async fn authorization(
        &self,
        _backend_id: &str,
        call: &Call<'_>,
    ) -> Result<Option<String>, Outcome> {
        match self.link.credential_for(&call.caller.sub).await {
            Ok(c) => Ok(Some(format!("Bearer {}", c.access_token))),
            Err(e) => Err(vault_refusal(&e, &call.op)),
        }
    }

    /// The provider's server refused the linked token (HTTP 401: revoked, or expired early):
    /// the vault renews the grant once, else deletes it and the caller is asked to link again
    /// exactly as an unlinked caller is.
    async fn rejected(
        &self,
        _backend_id: &str,
        call: &Call<'_>,
        rejected: &str,
        renewed_already: bool,
    ) -> Option<Result<String, Outcome>> {
        let token = rejected.strip_prefix("Bearer ").unwrap_or(rejected);
        Some(
            match self
                .link
                .credential_rejected(&call.caller.sub, token, renewed_already)
                .await
            {
                Ok(c) => Ok(format!("Bearer {}", c.access_token)),
                Err(e) => Err(vault_refusal(&e, &call.op)),
            },
        )
    }

    async fn discovery_authorization(&self, backend_id: &str) -> Option<String> {
        match self.link.catalog_credential().await {
            Some(Ok(c)) => Some(format!("Bearer {}", c.access_token)),
            Some(Err(e)) => {
                tracing::warn!(backend = %backend_id, provider = %self.link.provider(), "the catalog subject's linked token is unusable ({e}); discovering without it");
                None
            }
            None => None,
        }
    }
}

/// `identity: vault` on a backend whose gateway has no vault (no key, or no store): every
/// call is refused rather than sent without the user's credential.
pub struct NoVault {
    /// The provider the backend names.
    pub provider: String,
}

#[async_trait]
impl UpstreamAuth for NoVault {
    async fn authorization(
        &self,
        backend_id: &str,
        _call: &Call<'_>,
    ) -> Result<Option<String>, Outcome> {
        Err(Outcome::Error {
            code: -32603,
            message: format!(
                "backend {backend_id} needs the caller's linked {} account, but this gateway has no vault (set vault.key)",
                self.provider
            ),
            data: Value::Null,
        })
    }
}
