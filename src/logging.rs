//! Log setup: `tracing` to stderr, text or JSON, filter from config or `RUST_LOG`.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::prelude::*;

/// Installs the global subscriber (once; later calls are ignored).
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let quiet = filter_fn(|meta| !is_benign_pool_race(meta));
    let registry = tracing_subscriber::registry();
    let _ = if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(filter)
            .with_filter(quiet);
        registry.with(layer).try_init()
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(filter)
            .with_filter(quiet);
        registry.with(layer).try_init()
    };
}

/// Pingora's upstream connection pool logs at ERROR when a pooled keep-alive connection is
/// still held by its idle watcher at the moment a request wants it; the pool then dials a new
/// connection and nothing fails. That is the only ERROR this module logs (a failed connection
/// reaches the gateway as an error and is logged there with the backend's id), so it is
/// dropped rather than shown to operators as an error under every load.
fn is_benign_pool_race(meta: &Metadata<'_>) -> bool {
    *meta.level() == Level::ERROR && meta.target() == "pingora_core::connectors"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pool_race_is_dropped() {
        struct Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static CS: Cs = Cs;
        let meta = |target: &'static str, level: Level| {
            Metadata::new(
                "log record",
                target,
                level,
                None,
                None,
                None,
                tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CS)),
                tracing::metadata::Kind::EVENT,
            )
        };
        assert!(is_benign_pool_race(&meta(
            "pingora_core::connectors",
            Level::ERROR
        )));
        assert!(!is_benign_pool_race(&meta(
            "pingora_core::connectors",
            Level::WARN
        )));
        assert!(!is_benign_pool_race(&meta(
            "pingora_core::server",
            Level::ERROR
        )));
        assert!(!is_benign_pool_race(&meta("cortex_gateway", Level::ERROR)));
    }
}
