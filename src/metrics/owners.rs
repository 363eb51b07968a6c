//! The collectors of parts that count in their own atomics and are exported through
//! [`super::mirrored`]: the token pipeline (JWKS fetches, keys held, the validated-token
//! cache, introspection) and the webhook outbox. Each series has a fixed label value at
//! most, so the label sets stay bounded.

use std::sync::Arc;

use super::mirrored::{Kind, Mirrored, Reader, Spec};
use crate::auth::issuer::Issuer;
use crate::auth::stats::AuthStats;

const JWKS_FETCHES: &str = "jwks_fetches_total";
const JWKS_FETCHES_HELP: &str =
    "JWKS fetches from the authorization server, by result (ok, failed; on failure the keys held stay in use).";
const TOKEN_CACHE: &str = "token_cache_lookups_total";
const TOKEN_CACHE_HELP: &str =
    "Validated-token cache lookups, by result (hit: no signature checked; miss: the token was validated).";
const INTROSPECTIONS: &str = "token_introspections_total";
const INTROSPECTIONS_HELP: &str =
    "Token introspection requests to the authorization server, by result (active, inactive, failed).";
const DELIVERIES: &str = "webhook_deliveries_total";
const DELIVERIES_HELP: &str =
    "Webhook delivery attempts, by outcome (delivered, failed: rescheduled with backoff, dead: given up).";

/// The token pipeline's counters and the number of signing keys held. Without an issuer
/// (auth modes other than oauth) every value is 0.
pub fn auth(stats: Option<Arc<AuthStats>>, issuer: Option<Arc<Issuer>>) -> (Vec<Spec>, Reader) {
    let specs = vec![
        Spec::labelled(JWKS_FETCHES, JWKS_FETCHES_HELP, Kind::Counter, "result", "ok"),
        Spec::labelled(JWKS_FETCHES, JWKS_FETCHES_HELP, Kind::Counter, "result", "failed"),
        Spec::new(
            "jwks_unknown_kid_refetches_total",
            "JWKS fetches made because a token named a key id the keys held did not have (at most one per auth.oauth.jwks_min_refetch).",
            Kind::Counter,
        ),
        Spec::labelled(TOKEN_CACHE, TOKEN_CACHE_HELP, Kind::Counter, "result", "hit"),
        Spec::labelled(TOKEN_CACHE, TOKEN_CACHE_HELP, Kind::Counter, "result", "miss"),
        Spec::new(
            "token_cache_evictions_total",
            "Validated tokens dropped from the cache: expired (token_cache_ttl or exp) or pushed out by token_cache_size.",
            Kind::Counter,
        ),
        Spec::new(
            "token_cache_resets_total",
            "Times the validated-token cache was emptied because a reload changed the scope implications.",
            Kind::Counter,
        ),
        Spec::labelled(INTROSPECTIONS, INTROSPECTIONS_HELP, Kind::Counter, "result", "active"),
        Spec::labelled(INTROSPECTIONS, INTROSPECTIONS_HELP, Kind::Counter, "result", "inactive"),
        Spec::labelled(INTROSPECTIONS, INTROSPECTIONS_HELP, Kind::Counter, "result", "failed"),
        Spec::new(
            "jwks_keys",
            "Signing keys of the authorization server held now (0 before the first successful fetch).",
            Kind::Gauge,
        ),
    ];
    let stats = stats.unwrap_or_default();
    let read: Reader = Arc::new(move || {
        let mut v: Vec<f64> = stats.values().iter().map(|n| *n as f64).collect();
        v.push(
            issuer
                .as_ref()
                .and_then(|i| i.keys())
                .map_or(0.0, |k| k.len() as f64),
        );
        v
    });
    (specs, read)
}

/// Reads the webhook outbox's counters: `[depth, delivered, failed, dead, retries]` (the
/// owner, `builtins::webhook::OutboxStats`, lives on the same floor, so it hands a reader).
pub type OutboxReader = Arc<dyn Fn() -> [u64; 5] + Send + Sync>;

/// The webhook outbox: its depth, deliveries by outcome, retries.
pub fn webhook(outbox: OutboxReader) -> (Vec<Spec>, Reader) {
    let specs = vec![
        Spec::new(
            "webhook_outbox_depth",
            "Webhook deliveries pending in the outbox (due or waiting for a retry), counted in the store every 10 s and after each round of attempts.",
            Kind::Gauge,
        ),
        Spec::labelled(DELIVERIES, DELIVERIES_HELP, Kind::Counter, "outcome", "delivered"),
        Spec::labelled(DELIVERIES, DELIVERIES_HELP, Kind::Counter, "outcome", "failed"),
        Spec::labelled(DELIVERIES, DELIVERIES_HELP, Kind::Counter, "outcome", "dead"),
        Spec::new(
            "webhook_delivery_retries_total",
            "Webhook delivery attempts that were not the delivery's first.",
            Kind::Counter,
        ),
    ];
    let read: Reader = Arc::new(move || outbox().iter().map(|n| *n as f64).collect());
    (specs, read)
}

/// Both, as collectors ready to register.
pub fn collectors(
    auth_stats: Option<Arc<AuthStats>>,
    issuer: Option<Arc<Issuer>>,
    outbox: OutboxReader,
) -> Vec<Result<Mirrored, prometheus::Error>> {
    [auth(auth_stats, issuer), webhook(outbox)]
        .into_iter()
        .map(|(specs, read)| Mirrored::new(specs, read))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reader_gives_one_value_per_spec() {
        let (specs, read) = auth(None, None);
        assert_eq!(specs.len(), read().len());
        let (specs, read) = webhook(Arc::new(|| [0; 5]));
        assert_eq!(specs.len(), read().len());
    }
}
