//! The contract backend: a plain-HTTP app answering `POST {url}{path}` with
//! `{"method","params"}` (docs/backend-contract.md). Discovery asks for its lists with the
//! technical token; user calls carry the caller's identity headers and the credential of the
//! backend's identity mode ([`crate::credentials`]). The reply of every call is read whole
//! (bounded), then mapped by the pure mappers of `cortex_filters::contract`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cortex_filters::catalog::BackendSnapshot;
use cortex_filters::contract::{self, DiscoveryReply, Outcome, ReplyContext};
use cortex_filters::naming::NamingMode;
use serde_json::{json, Value};

use crate::config::{BackendConfig, Naming};
use crate::credentials::IdentityService;
use crate::vault::VaultLink;

use super::backend::{Backend, BackendKind, Call, Discovery, Operation, Replies};
use super::http_client::{HttpClient, Limits, RawReply, Target, TargetError};
use super::vault_auth::vault_refusal;

/// The largest backend reply the gateway accepts (replies are read whole to be mapped).
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// A configured contract backend.
pub struct ContractBackend {
    id: String,
    target: Target,
    timeout: Duration,
    naming: NamingMode,
    technical_token: Option<String>,
    client: Arc<HttpClient>,
    credentials: Arc<IdentityService>,
    /// `vault_provider`: user calls carry the caller's own linked token at that provider
    /// instead of the caller's gateway token.
    vault: Option<VaultLink>,
}

impl ContractBackend {
    /// Builds a backend from configuration and resolves its host once (a name that does
    /// not resolve yet is retried at every discovery: a DNS hiccup at start must not keep
    /// the gateway down).
    pub fn from_config(
        cfg: &BackendConfig,
        default_technical_token: Option<&str>,
        client: Arc<HttpClient>,
        credentials: Arc<IdentityService>,
    ) -> Result<Self, TargetError> {
        let target = Target::from_url(&cfg.url, &cfg.path)?;
        if let Err(e) = target.resolve_blocking() {
            tracing::warn!(backend = %cfg.id, "{e}; retrying at every discovery");
        }
        Ok(ContractBackend {
            id: cfg.id.clone(),
            target,
            timeout: cfg.timeout,
            naming: match cfg.naming {
                Naming::Prefix => NamingMode::Prefix,
                Naming::None => NamingMode::None,
            },
            technical_token: cfg
                .technical_token
                .clone()
                .or_else(|| default_technical_token.map(str::to_string)),
            client,
            credentials,
            vault: None,
        })
    }

    /// User calls carry the caller's linked token at `link`'s provider (never the caller's
    /// own token); discovery uses the provider's catalog subject when one is configured.
    pub fn with_vault(mut self, link: VaultLink) -> Self {
        self.vault = Some(link);
        self
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn post(
        &self,
        method: &str,
        params: Option<&Value>,
        headers: &[(&'static str, String)],
    ) -> Result<RawReply, contract::TransportFailure> {
        let body = Bytes::from(contract::request_body(method, params));
        let limits = Limits {
            timeout: self.timeout,
            max_reply: MAX_REPLY_BYTES,
        };
        self.client.post(&self.target, headers, body, limits).await
    }

    /// A discovery method (technical token, no caller).
    async fn discovery_call(&self, method: &str) -> DiscoveryReply {
        let mut headers = vec![("accept", "application/json".to_string())];
        let catalog = match &self.vault {
            Some(link) => match link.catalog_credential().await {
                Some(Ok(c)) => Some(c.access_token),
                Some(Err(e)) => {
                    tracing::warn!(backend = %self.id, "the catalog subject's linked token is unusable ({e}); discovering with the technical token");
                    None
                }
                None => None,
            },
            None => None,
        };
        if let Some(t) = catalog.as_ref().or(self.technical_token.as_ref()) {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        match self.post(method, None, &headers).await {
            Ok(reply) => contract::classify_discovery_reply(reply.as_reply()),
            Err(f) => DiscoveryReply::Failed(contract::describe_transport_failure(&f)),
        }
    }
}

#[async_trait]
impl Backend for ContractBackend {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Contract
    }

    fn naming(&self) -> NamingMode {
        self.naming
    }

    fn location(&self) -> String {
        self.target.url()
    }

    async fn discover(&self, previous: Option<&BackendSnapshot>) -> Discovery {
        if let Err(e) = self.target.resolve().await {
            return Discovery::Failed(format!("backend `{}`: {e}", self.id));
        }
        let tools = match self.discovery_call("list_tools").await {
            DiscoveryReply::Value(v) => v,
            DiscoveryReply::NotOffered(why) | DiscoveryReply::Failed(why) => {
                return Discovery::Failed(format!("list_tools: {why}"))
            }
        };
        let mut warnings = Vec::new();
        let tools = match contract::parse_list_tools(&tools) {
            Ok(p) => {
                warnings.extend(p.warnings.into_iter().map(|w| format!("list_tools: {w}")));
                p.items
            }
            Err(e) => return Discovery::Failed(format!("list_tools: {e}")),
        };
        let (prompts, templates, resources) = futures::join!(
            self.discovery_call("list_prompts"),
            self.discovery_call("list_resource_templates"),
            self.discovery_call("list_resources"),
        );
        let prompts = optional_items(
            prompts,
            contract::parse_list_prompts,
            previous.map(|p| &p.prompts),
            "list_prompts",
            &mut warnings,
        );
        let templates = optional_items(
            templates,
            contract::parse_list_resource_templates,
            previous.map(|p| &p.templates),
            "list_resource_templates",
            &mut warnings,
        );
        let resources = optional_items(
            resources,
            contract::parse_list_resources,
            previous.map(|p| &p.resources),
            "list_resources",
            &mut warnings,
        );
        Discovery::Ok {
            snapshot: BackendSnapshot {
                backend_id: self.id.clone(),
                naming: self.naming,
                tools,
                prompts,
                templates,
                resources,
            },
            warnings,
        }
    }

    async fn call(&self, call: Call<'_>) -> Replies {
        let (method, params, owned_params);
        match call.op {
            Operation::CallTool { name, arguments } => {
                method = name;
                params = arguments;
                owned_params = None;
            }
            Operation::GetPrompt { name, arguments } => {
                method = "get_prompt";
                owned_params = Some(json!({"name": name, "arguments": arguments}));
                params = None;
            }
            Operation::ReadResource { uri } => {
                method = "read_resource";
                owned_params = Some(json!({ "uri": uri }));
                params = None;
            }
            Operation::Complete { params: p } => {
                method = "complete";
                params = Some(p);
                owned_params = None;
            }
            Operation::ContractMethod {
                method: m,
                params: p,
            } => {
                method = m;
                params = p;
                owned_params = None;
            }
            Operation::Subscribe { .. } | Operation::Unsubscribe { .. } => {
                // The contract has no way to tell anyone that a resource changed.
                return Replies::Final(Outcome::from(cortex_filters::jsonrpc::RpcError::new(
                    cortex_filters::jsonrpc::codes::METHOD_NOT_FOUND,
                    format!(
                        "backend {} cannot send resource updates: resources/subscribe needs a native MCP backend",
                        self.id
                    ),
                )));
            }
        }
        let params = owned_params.as_ref().or(params);
        let ctx = ReplyContext {
            backend_id: &self.id,
            method,
        };
        let mut headers = match self
            .credentials
            .headers_for(call.catalog, &self.id, call.caller)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                return Replies::Final(Outcome::from(cortex_filters::jsonrpc::RpcError::from(e)))
            }
        };
        if let Some(link) = &self.vault {
            headers.retain(|(name, _)| *name != "authorization");
            match link.credential_for(&call.caller.sub).await {
                Ok(c) => headers.insert(0, ("authorization", format!("Bearer {}", c.access_token))),
                Err(e) => return Replies::Final(vault_refusal(&e, &call.op)),
            }
        }
        headers.push(("accept", "application/json".to_string()));
        // A 401 to the caller's linked token (revoked, or expired early): the vault renews
        // it once, then a second refusal deletes the grant and the caller is asked to link
        // again (`Vault::credential_rejected`).
        let mut renewals = 0u8;
        let reply = loop {
            let reply = match self.post(method, params, &headers).await {
                Ok(reply) => reply,
                Err(f) => return Replies::Final(contract::map_transport_failure(&f, ctx)),
            };
            let Some(link) = self.vault.as_ref().filter(|_| reply.status == 401) else {
                break reply;
            };
            let sent = headers
                .iter()
                .find(|(name, _)| *name == "authorization")
                .and_then(|(_, v)| v.strip_prefix("Bearer "))
                .unwrap_or_default()
                .to_string();
            if renewals >= 2 {
                break reply;
            }
            match link
                .credential_rejected(&call.caller.sub, &sent, renewals > 0)
                .await
            {
                Ok(c) => {
                    tracing::info!(backend = %self.id, "the backend refused the caller's linked token; trying once more with a renewed one");
                    renewals += 1;
                    headers.retain(|(name, _)| *name != "authorization");
                    headers.insert(0, ("authorization", format!("Bearer {}", c.access_token)));
                }
                Err(e) => return Replies::Final(vault_refusal(&e, &call.op)),
            }
        };
        let r = reply.as_reply();
        Replies::Final(match call.op {
            Operation::CallTool { .. } => contract::map_tool_reply(r, ctx),
            Operation::GetPrompt { .. } => contract::map_prompt_reply(r, ctx),
            Operation::ReadResource { uri } => contract::map_resource_reply(r, ctx, uri),
            Operation::Complete { .. } => contract::map_completion_reply(r, ctx),
            Operation::ContractMethod { .. } => contract::map_method_reply(r, ctx),
            Operation::Subscribe { .. } | Operation::Unsubscribe { .. } => {
                contract::map_method_reply(r, ctx)
            }
        })
    }
}

/// An optional discovery list: not offered → empty; a failure or an unparsable reply keeps
/// the previous entries (a transient failure must not withdraw them).
fn optional_items<T: Clone>(
    got: DiscoveryReply,
    parse: fn(&Value) -> Result<contract::Parsed<T>, contract::ContractError>,
    previous: Option<&Vec<T>>,
    method: &str,
    warnings: &mut Vec<String>,
) -> Vec<T> {
    match got {
        DiscoveryReply::Value(v) => match parse(&v) {
            Ok(p) => {
                warnings.extend(p.warnings.into_iter().map(|w| format!("{method}: {w}")));
                p.items
            }
            Err(e) => {
                warnings.push(format!("{method}: {e}"));
                previous.cloned().unwrap_or_default()
            }
        },
        DiscoveryReply::NotOffered(_) => Vec::new(),
        DiscoveryReply::Failed(why) => {
            warnings.push(format!("{method}: {why} (keeping the previous entries)"));
            previous.cloned().unwrap_or_default()
        }
    }
}
