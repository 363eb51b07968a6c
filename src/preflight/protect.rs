//! Checks of what observes and protects the ingress, as `serve` builds it: the metrics
//! listener, the rate limits and their shared store, tool integrity (keys and the baseline
//! file, whose signature must verify or the start is refused) and the admin secret.

use cortex_filters::pinning::PinningError;

use crate::config::checks::{p, Findings};
use crate::config::Config;
use crate::integrity::{read_baseline_file, IntegrityError};
use crate::limits::Limits;

/// The shortest admin secret accepted.
pub const MIN_ADMIN_SECRET: usize = 16;

/// Runs every check.
pub(crate) fn check(config: &Config, f: &mut Findings) {
    if let Some(listen) = &config.metrics.listen {
        match crate::config::parse_listen(listen) {
            Ok(addr)
                if config
                    .server
                    .listen
                    .iter()
                    .any(|l| crate::config::parse_listen(l).is_ok_and(|a| a == addr)) =>
            {
                f.error(
                    p(&["metrics", "listen"]),
                    format!("{addr} is also a gateway listener; metrics need a listener of their own (e.g. 127.0.0.1:9464)"),
                );
            }
            Ok(_) => {}
            Err(e) => f.error(p(&["metrics", "listen"]), e),
        }
    }
    if let Err((key, e)) = Limits::from_config(&config.rate_limits) {
        let path: Vec<&str> = std::iter::once("rate_limits")
            .chain(key.split('.'))
            .collect();
        f.error(p(&path), e.to_string());
    }
    if let Some(redis) = &config.rate_limits.redis {
        if let Err(e) = redis::Client::open(redis.redis_url.as_str()) {
            f.error(
                p(&["rate_limits", "redis", "redis_url"]),
                format!("is not a Redis URL ({e}); write redis://host:6379"),
            );
        }
        if redis.timeout.is_zero() {
            f.error(
                p(&["rate_limits", "redis", "timeout"]),
                "must be more than 0 (e.g. 250ms)",
            );
        }
    }
    for id in config.rate_limits.backends.keys() {
        if !config.backends.iter().any(|b| &b.id == id) {
            f.warn(
                p(&["rate_limits", "backends", id]),
                format!("no backend `{id}` is configured"),
            );
        }
    }
    for id in config.integrity.backends.keys() {
        if !config.backends.iter().any(|b| &b.id == id) {
            f.warn(
                p(&["integrity", "backends", id]),
                format!("no backend `{id}` is configured"),
            );
        }
    }
    match read_baseline_file(&config.integrity) {
        Ok(_) => {}
        Err(IntegrityError::Pinning(e @ PinningError::Key(_))) => {
            let key = if config.integrity.private_key.is_some() {
                "private_key"
            } else {
                "public_key"
            };
            f.error(p(&["integrity", key]), e.to_string());
        }
        Err(IntegrityError::Pinning(e @ PinningError::KeyMismatch)) => {
            f.error(p(&["integrity", "public_key"]), e.to_string());
        }
        Err(e) => f.error(
            p(&["integrity", "baseline_file"]),
            match e {
                IntegrityError::Pinning(e) => e.to_string(),
                other => other.to_string(),
            },
        ),
    }
    if let Some(secret) = &config.admin.secret {
        let len = secret.chars().count();
        if len < MIN_ADMIN_SECRET {
            f.error(
                p(&["admin", "secret"]),
                format!("must be at least {MIN_ADMIN_SECRET} characters (it has {len}); generate one with `openssl rand -base64 32`"),
            );
        }
    }
}
