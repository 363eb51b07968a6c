//! The MCP endpoint. See `README.md` here for how a request travels and where the next
//! protocol era plugs in.
//!
//! - [`transport`]: the guard chain of a request (Host, Origin, preflight, authentication,
//!   body, parse, envelope) and its answer;
//! - [`request`]: the per-request context, the request's facts, refusals;
//! - [`envelope`]: the version and session a request runs under;
//! - [`call`]: the call context and what dispatch answers;
//! - [`dispatch`]: the method table;
//! - [`lifecycle`], [`lists`]: `initialize` and friends, the four lists;
//! - [`stream`]: the session's notification stream (GET);
//! - [`modern`]: the stateless 2026-07-28 era on the same endpoint (`_meta`, mirrored headers,
//!   `server/discover`, result decoration, input-required results);
//! - [`listen`]: its `subscriptions/listen` stream.
//! - [`streaming`]: the answer of a call a native backend streams (JSON, or an event stream).
//! - [`bridge`]: the same for a 2026-07-28 caller: the upstream's requests become
//!   input-required results while its call is held.

pub mod bridge;
pub mod call;
pub mod dispatch;
pub mod envelope;
pub mod lifecycle;
pub mod listen;
pub mod lists;
pub mod modern;
pub mod request;
pub mod stream;
pub mod streaming;
pub mod transport;
