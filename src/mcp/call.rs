//! The vocabulary of one call on the MCP endpoint: the context a request runs in, whichever
//! protocol era it comes from, and what dispatch does with a message.

use std::sync::Arc;

use cortex_filters::version::ProtocolVersion;

use crate::auth::Principal;
use crate::builtins::BuiltinCx;
use crate::sessions::SessionState;
use crate::state::{Policy, Shared};

use super::lists::Presentation;

/// Everything one JSON-RPC request is handled with. Made once per request by the envelope
/// ([`super::envelope`]) from the session (or, for a stateless request, the defaults).
pub struct CallContext<'a> {
    /// What lives as long as the process.
    pub shared: &'a Shared,
    /// The policy this request runs on, taken once when it arrived.
    pub policy: &'a Policy,
    /// The caller.
    pub principal: &'a Principal,
    /// The caller's session, if any.
    pub session: Option<&'a Arc<SessionState>>,
    /// The version in force (the session's, or the header's).
    pub version: ProtocolVersion,
    /// How `tools/list` is presented (`X-Cortex-Tool-Mode`, `X-Cortex-Backends`).
    pub presentation: Presentation,
    /// The client capabilities in force, as [`cortex_filters::session::caps`] bits: the
    /// session's (declared at `initialize`) or, for a 2026-07-28 request, the ones its
    /// `_meta` declares for this request alone.
    pub client_caps: u8,
}

impl CallContext<'_> {
    /// The narrow handle a builtin runs with.
    pub fn builtin_cx(&self) -> BuiltinCx<'_> {
        BuiltinCx {
            principal: self.principal,
            session_present: self.session.is_some(),
            version: self.version,
            config: &self.policy.config,
            canonical_uri: &self.shared.canonical_uri,
            builtins: &self.policy.builtins,
            runtime: &self.shared.builtins,
            catalog: &self.shared.catalog,
            upstreams: &self.policy.upstreams,
            store: self.shared.store.as_ref(),
            vault: self.shared.vault.as_ref(),
            client_caps: self.client_caps,
        }
    }
}

impl CallContext<'_> {
    /// Who relayed messages are bound to: the caller's session, or its subject when it has
    /// none. A server request relayed to one owner can only be answered, and a call only
    /// cancelled, by the same owner.
    pub fn relay_owner(&self) -> String {
        match self.session {
            Some(s) => {
                let mut out = String::with_capacity(34);
                out.push_str("s:");
                for b in s.claims.nonce {
                    out.push_str(&format!("{b:02x}"));
                }
                out
            }
            None => format!("p:{}", self.principal.sub),
        }
    }
}

/// The answer to a list request: the envelope's head with the request's id, then the
/// cached page with the envelope's end, shared with the page cache. Written as the two
/// pieces; joined only where a whole message is needed (a batch, a modern answer).
#[derive(Debug, Clone)]
pub struct ListAnswer {
    /// `{"jsonrpc":"2.0","id":…,"result":`
    pub head: Vec<u8>,
    /// The `result` object and `}`.
    pub end: bytes::Bytes,
}

impl ListAnswer {
    /// The answer's length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.end.len()
    }

    /// Whether the answer is empty (never).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole answer as one message (a copy).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.end);
        out
    }
}

/// What to answer one message with.
pub enum Dispatched {
    /// This JSON-RPC message.
    Answer(Vec<u8>),
    /// A list page holding `entries` entries.
    List {
        /// The JSON-RPC response, in two pieces.
        body: ListAnswer,
        /// Entries on the page (recorded).
        entries: u32,
    },
    /// `initialize`'s answer, issuing this session id.
    Initialized {
        /// The JSON-RPC response.
        body: Vec<u8>,
        /// The sealed session id.
        session_id: String,
    },
    /// A notification or a response: 202, no body.
    Accepted,
    /// A call whose backend streams what happens during it (native MCP backends): answered
    /// as JSON if the outcome comes first, else as an event stream
    /// ([`super::streaming::answer`]).
    Stream {
        /// The request's id.
        id: cortex_filters::jsonrpc::Id,
        /// The backend's replies.
        replies: crate::upstream::backend::ReplyStream,
        /// The call, registered for `notifications/cancelled`.
        call: crate::upstream::relay::InFlightCall,
    },
}

impl std::fmt::Debug for Dispatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dispatched::Answer(b) => f.debug_tuple("Answer").field(&b.len()).finish(),
            Dispatched::List { entries, .. } => {
                f.debug_struct("List").field("entries", entries).finish()
            }
            Dispatched::Initialized { .. } => f.write_str("Initialized"),
            Dispatched::Accepted => f.write_str("Accepted"),
            Dispatched::Stream { id, .. } => f.debug_struct("Stream").field("id", id).finish(),
        }
    }
}
