//! The one seam every kind of backend plugs into.
//!
//! A backend is something the gateway discovers a catalog from and sends calls to. Dispatch,
//! the builtins, discovery and the proxy path never know which kind they talk to: they hold an
//! `Arc<dyn Backend>` and use this trait. Two families implement it: the contract backend
//! ([`super::contract`]) and native MCP servers over streamable HTTP or stdio
//! ([`super::native`]), which stream what happens during a call as [`Reply`] items.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use cortex_filters::catalog::{BackendSnapshot, MergedCatalog};
use cortex_filters::contract::Outcome;
use cortex_filters::naming::NamingMode;
use futures::Stream;
use serde_json::Value;

use crate::auth::Principal;

/// The kinds of backend the gateway speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A plain-HTTP app implementing the backend contract (docs/backend-contract.md).
    Contract,
    /// An MCP server over streamable HTTP.
    Mcp,
    /// An MCP server run as a child process, over stdin/stdout.
    Stdio,
}

impl BackendKind {
    /// The configuration name of the kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            BackendKind::Contract => "contract",
            BackendKind::Mcp => "mcp",
            BackendKind::Stdio => "stdio",
        }
    }

    /// Whether the backend is an MCP server the gateway is a client of.
    pub const fn is_native(self) -> bool {
        !matches!(self, BackendKind::Contract)
    }
}

/// What a call asks a backend to do.
#[derive(Debug, Clone, Copy)]
pub enum Operation<'a> {
    /// `tools/call` of the backend's own tool `name`.
    CallTool {
        /// The backend's own tool name.
        name: &'a str,
        /// The arguments object, if any.
        arguments: Option<&'a Value>,
    },
    /// `prompts/get` of the backend's own prompt `name`.
    GetPrompt {
        /// The backend's own prompt name.
        name: &'a str,
        /// The arguments object.
        arguments: &'a Value,
    },
    /// `resources/read` of `uri`.
    ReadResource {
        /// The resource URI (resources keep their URIs across the gateway).
        uri: &'a str,
    },
    /// `completion/complete` with these params (`ref` already in the backend's own names).
    Complete {
        /// The params object.
        params: &'a Value,
    },
    /// `resources/subscribe` of `uri` (native backends; contract backends refuse it).
    Subscribe {
        /// The resource URI.
        uri: &'a str,
    },
    /// `resources/unsubscribe` of `uri`.
    Unsubscribe {
        /// The resource URI.
        uri: &'a str,
    },
    /// A contract method outside MCP (`whoami`, the ticket methods). Other kinds refuse it.
    ContractMethod {
        /// The contract method.
        method: &'a str,
        /// Its params.
        params: Option<&'a Value>,
    },
}

impl Operation<'_> {
    /// A short name for logs and errors.
    pub fn name(&self) -> &str {
        match self {
            Operation::CallTool { name, .. } | Operation::GetPrompt { name, .. } => name,
            Operation::ReadResource { .. } => "read_resource",
            Operation::Subscribe { .. } => "subscribe",
            Operation::Unsubscribe { .. } => "unsubscribe",
            Operation::Complete { .. } => "complete",
            Operation::ContractMethod { method, .. } => method,
        }
    }
}

/// One call to a backend on behalf of a caller.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    /// Who calls: the credential the backend receives is derived from it.
    pub caller: &'a Principal,
    /// The catalog the call was routed with (credentials scoped to what the caller may use
    /// of this backend are derived from it).
    pub catalog: &'a MergedCatalog,
    /// What to do.
    pub op: Operation<'a>,
    /// The caller's request `_meta` (its `progressToken`, …), relayed by native backends.
    pub meta: Option<&'a Value>,
    /// The caller's client capabilities (bits of `cortex_filters::session::caps`: its
    /// session's, or its 2026-07-28 request's): what a 2026-07-28 upstream is told it may ask
    /// for. 0 where the caller cannot be asked anything (builtins).
    pub client_caps: u8,
    /// `inputResponses` a 2026-07-28 caller sent with a first call (no `requestState`):
    /// passed to a 2026-07-28 upstream, which may use answers it did not have to ask for.
    pub input_responses: Option<&'a Value>,
}

/// Something a backend sends while a call runs, before or as its final answer.
#[derive(Debug)]
pub enum Reply {
    /// A JSON-RPC notification for the caller (progress, log message), as bytes.
    Notification(Bytes),
    /// A request the backend makes of the caller during the call (sampling, elicitation,
    /// roots). The endpoint gives it an id of its own, relays it to the caller and sends the
    /// caller's answer (a result, or an error object) through `respond`; dropping `respond`
    /// tells the backend nobody will answer.
    ServerRequest {
        /// Its method (`sampling/createMessage`, `elicitation/create`, `roots/list`…).
        method: String,
        /// Its params.
        params: Value,
        /// Where the caller's answer goes.
        respond: tokio::sync::oneshot::Sender<Result<Value, Value>>,
        /// The key a 2026-07-28 upstream gave the request in its `inputRequests`: a
        /// 2026-07-28 caller is asked under the same key. `None` from a session-based
        /// upstream (the gateway names the request).
        key: Option<String>,
        /// More requests of the same round follow at once (a 2026-07-28 upstream asks them
        /// together): a 2026-07-28 caller gets them all in one result.
        more: bool,
    },
    /// The call's outcome; always the last item.
    Final(Outcome),
}

/// A stream of [`Reply`] items ending with one [`Reply::Final`].
pub type ReplyStream = Pin<Box<dyn Stream<Item = Reply> + Send>>;

/// What a call yields: a contract backend answers with one final outcome; a backend that
/// sends progress, log messages or requests during the call yields a stream.
pub enum Replies {
    /// Only the outcome.
    Final(Outcome),
    /// Messages, then the outcome.
    Stream(ReplyStream),
}

impl Replies {
    /// The final outcome, dropping anything sent before it (for callers that can only use the
    /// outcome, such as builtins).
    pub async fn outcome(self) -> Outcome {
        use futures::StreamExt;
        match self {
            Replies::Final(o) => o,
            Replies::Stream(mut s) => {
                while let Some(r) = s.next().await {
                    if let Reply::Final(o) = r {
                        return o;
                    }
                }
                Outcome::from(cortex_filters::jsonrpc::RpcError::internal(
                    "the backend ended the call without an answer",
                ))
            }
        }
    }
}

/// The outcome of one discovery.
#[derive(Debug)]
pub enum Discovery {
    /// The backend's catalog, and what was skipped or repaired in it.
    Ok {
        /// Its entries.
        snapshot: BackendSnapshot,
        /// For operators.
        warnings: Vec<String>,
    },
    /// Why discovery failed (the previous snapshot stays served while the grace lasts).
    Failed(String),
}

/// A backend of the gateway.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Its id (lowercase), the prefix of its entries' names.
    fn id(&self) -> &str;

    /// Its kind.
    fn kind(&self) -> BackendKind;

    /// How its entries are named.
    fn naming(&self) -> NamingMode;

    /// Where it is, for administrators (never shown to other callers).
    fn location(&self) -> String;

    /// Asks the backend for its catalog. `previous` is the last good snapshot: optional lists
    /// that fail transiently keep their previous entries.
    async fn discover(&self, previous: Option<&BackendSnapshot>) -> Discovery;

    /// Runs one call. Never fails as a Rust error: every failure is an [`Outcome::Error`] the
    /// caller can be answered with.
    async fn call(&self, call: Call<'_>) -> Replies;
}
