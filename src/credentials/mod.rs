//! What each backend receives with a user call: the outbound side of identity.
//!
//! [`identity`] decides, per backend, which credential goes with a call (the caller's own
//! token, a token minted by the gateway, or one exchanged at the authorization server) and
//! the `X-Cortex-*` headers of the contract. The inbound side (who is calling) is `auth`.

pub mod identity;

pub use identity::{identity_headers, IdentityError, IdentityService};
