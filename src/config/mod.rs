//! Configuration: YAML schema, `${VAR}` expansion, Cortex env overlay, validation.
pub mod schema;
pub mod units;
pub use schema::*;
