//! The store's vocabulary: the plain data of each table, with no I/O and no driver in
//! sight. The rest of the gateway speaks these types; `audit` builds [`AuditRecord`]s and
//! implements [`ChainLinker`], `builtins` builds tickets and deliveries.

mod audit;
mod outbox;
mod pins;
mod ticket;
mod vault;

pub use audit::*;
pub use outbox::*;
pub use pins::*;
pub use ticket::*;
pub use vault::*;

/// The cap applied to list limits (and to a limit of 0).
pub const MAX_LIST: u32 = 1000;

/// The effective limit of a list call.
pub fn effective_limit(limit: u32) -> u32 {
    if limit == 0 {
        MAX_LIST
    } else {
        limit.min(MAX_LIST)
    }
}
