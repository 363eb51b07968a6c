//! Rate limits on the request path: where buckets live and how a decision is taken. The
//! arithmetic is `cortex_filters::ratelimit` (token buckets over a given clock); this module
//! keeps the buckets, in this process ([`Limiter::local`]) or in Redis
//! ([`Limiter::redis`], one Lua script per decision so the replicas of a fleet enforce one
//! limit), and counts what it refuses.
//!
//! Two checks, each charging every bucket that applies all or nothing:
//! - [`Limiter::check_subject`]: every request of a caller, before its body is read;
//! - [`Limiter::check_call`]: a tool call, against the caller-and-tool bucket and the
//!   backend's bucket.
//!
//! The limits themselves ([`Limits`]) come from the reloadable policy; the buckets (and the
//! Redis connection) live as long as the process, so a reload keeps the levels.
//!
//! Redis that cannot decide (down, slow past `timeout`, a reply the script cannot have
//! written) is decided by `fail_open`: logged (at most every 10 s), counted, never a panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cortex_filters::ratelimit::{
    decode_script_reply, redis_script_args, take_all, Bucket, Decision, Limit, LimitKey,
    RateLimitError, REDIS_TAKE_SCRIPT,
};
use tracing::warn;

use crate::config::{RateLimitsConfig, RedisLimitsConfig};

/// The limits in force (from the policy).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    per_subject: Option<Limit>,
    per_subject_tool: Option<Limit>,
    per_backend: Option<Limit>,
    backends: HashMap<String, Option<Limit>>,
}

/// Which bucket refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Everything one caller does.
    Subject,
    /// One caller's calls of one tool.
    Tool,
    /// Every call to one backend.
    Backend,
}

impl Which {
    /// The name in metrics, logs and answers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Which::Subject => "subject",
            Which::Tool => "tool",
            Which::Backend => "backend",
        }
    }
}

/// The decision of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Allowed,
    /// Over the limit of `which`; the same call would pass after `retry_after_ms`.
    Limited {
        /// Milliseconds to wait.
        retry_after_ms: u64,
        /// The bucket that refused.
        which: Which,
    },
    /// The shared store could not decide and the limiter fails closed.
    Unavailable,
}

fn parse(text: &str) -> Result<Option<Limit>, RateLimitError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some)
}

impl Limits {
    /// The limits of `cfg` (all off when `enabled` is false). Errors name the key.
    pub fn from_config(cfg: &RateLimitsConfig) -> Result<Limits, (String, RateLimitError)> {
        if !cfg.enabled {
            return Ok(Limits::default());
        }
        fn at(key: &str, text: &str) -> Result<Option<Limit>, (String, RateLimitError)> {
            parse(text).map_err(|e| (key.to_owned(), e))
        }
        let mut backends = HashMap::new();
        for (id, text) in &cfg.backends {
            backends.insert(id.clone(), at(&format!("backends.{id}"), text)?);
        }
        Ok(Limits {
            per_subject: at("per_subject", &cfg.per_subject)?,
            per_subject_tool: at("per_subject_tool", &cfg.per_subject_tool)?,
            per_backend: at("per_backend", &cfg.per_backend)?,
            backends,
        })
    }

    fn backend(&self, id: &str) -> Option<&Limit> {
        match self.backends.get(id) {
            Some(own) => own.as_ref(),
            None => self.per_backend.as_ref(),
        }
    }

    /// Whether a caller-level limit is set (the transport checks it before reading a body).
    pub fn has_subject_limit(&self) -> bool {
        self.per_subject.is_some()
    }
}

/// What the limiter counted (exported as metrics).
#[derive(Debug, Default)]
pub struct LimitStats {
    /// Refusals by the caller's bucket.
    pub limited_subject: AtomicU64,
    /// Refusals by a caller-and-tool bucket.
    pub limited_tool: AtomicU64,
    /// Refusals by a backend's bucket.
    pub limited_backend: AtomicU64,
    /// Decisions the shared store could not take.
    pub store_errors: AtomicU64,
    /// Of those, calls let through (fail open).
    pub failed_open: AtomicU64,
    /// Of those, calls refused (fail closed).
    pub failed_closed: AtomicU64,
}

impl LimitStats {
    fn limited(&self, which: Which) {
        let c = match which {
            Which::Subject => &self.limited_subject,
            Which::Tool => &self.limited_tool,
            Which::Backend => &self.limited_backend,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Buckets in this process: a map under one short lock, pruned of full buckets when large.
struct LocalBuckets {
    epoch: Instant,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Past this many buckets, full ones (which equal absent ones) are dropped.
const LOCAL_PRUNE_AT: usize = 100_000;

/// Buckets in Redis.
struct RedisBuckets {
    client: redis::Client,
    conn: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    fail_open: bool,
    last_warning_ms: AtomicU64,
}

enum Store {
    Local(LocalBuckets),
    Redis(Box<RedisBuckets>),
}

/// The bucket store and its counters (process lifetime).
pub struct Limiter {
    store: Store,
    /// What was refused or could not be decided.
    pub stats: LimitStats,
}

/// Why the shared store cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("rate_limits.redis.redis_url: {0}")]
pub struct LimiterError(String);

impl Limiter {
    /// Buckets in this process.
    pub fn local() -> Limiter {
        Limiter {
            store: Store::Local(LocalBuckets {
                epoch: Instant::now(),
                buckets: Mutex::new(HashMap::new()),
            }),
            stats: LimitStats::default(),
        }
    }

    /// Buckets in Redis (connected on first use, reconnected by the connection manager).
    pub fn redis(cfg: &RedisLimitsConfig) -> Result<Limiter, LimiterError> {
        let client =
            redis::Client::open(cfg.redis_url.as_str()).map_err(|e| LimiterError(e.to_string()))?;
        Ok(Limiter {
            store: Store::Redis(Box::new(RedisBuckets {
                client,
                conn: tokio::sync::OnceCell::new(),
                script: redis::Script::new(REDIS_TAKE_SCRIPT),
                prefix: cfg.key_prefix.clone(),
                timeout: cfg.timeout,
                fail_open: cfg.fail_open,
                last_warning_ms: AtomicU64::new(0),
            })),
            stats: LimitStats::default(),
        })
    }

    /// The limiter `cfg` asks for.
    pub fn from_config(cfg: &RateLimitsConfig) -> Result<Limiter, LimiterError> {
        match &cfg.redis {
            Some(r) => Limiter::redis(r),
            None => Ok(Limiter::local()),
        }
    }

    /// Every request of `subject`.
    pub async fn check_subject(&self, limits: &Limits, subject: &str) -> Verdict {
        let Some(limit) = &limits.per_subject else {
            return Verdict::Allowed;
        };
        self.take(&[(LimitKey::Subject(subject), limit, Which::Subject)])
            .await
    }

    /// A call of `tool` (its exposed name) on `backend` by `subject`.
    pub async fn check_call(
        &self,
        limits: &Limits,
        subject: &str,
        tool: &str,
        backend: &str,
    ) -> Verdict {
        let mut buckets = Vec::with_capacity(2);
        if let Some(l) = &limits.per_subject_tool {
            buckets.push((LimitKey::SubjectTool { subject, tool }, l, Which::Tool));
        }
        if let Some(l) = limits.backend(backend) {
            buckets.push((LimitKey::Backend(backend), l, Which::Backend));
        }
        if buckets.is_empty() {
            return Verdict::Allowed;
        }
        self.take(&buckets).await
    }

    async fn take(&self, buckets: &[(LimitKey<'_>, &Limit, Which)]) -> Verdict {
        let decided = match &self.store {
            Store::Local(local) => Some(local.take(buckets)),
            Store::Redis(redis) => redis.take(buckets).await,
        };
        match decided {
            Some((Decision::Allowed { .. }, _)) => Verdict::Allowed,
            Some((Decision::Limited { retry_after_ms }, i)) => {
                let which = i
                    .and_then(|i| buckets.get(i))
                    .map_or(Which::Subject, |b| b.2);
                self.stats.limited(which);
                Verdict::Limited {
                    retry_after_ms,
                    which,
                }
            }
            Some((Decision::ExceedsBurst, i)) => {
                // One token never exceeds a burst of at least one; kept total anyway.
                let which = i
                    .and_then(|i| buckets.get(i))
                    .map_or(Which::Subject, |b| b.2);
                self.stats.limited(which);
                Verdict::Limited {
                    retry_after_ms: 1_000,
                    which,
                }
            }
            None => {
                self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                let fail_open = match &self.store {
                    Store::Redis(r) => r.fail_open,
                    Store::Local(_) => true,
                };
                if fail_open {
                    self.stats.failed_open.fetch_add(1, Ordering::Relaxed);
                    Verdict::Allowed
                } else {
                    self.stats.failed_closed.fetch_add(1, Ordering::Relaxed);
                    Verdict::Unavailable
                }
            }
        }
    }
}

impl LocalBuckets {
    fn take(&self, buckets: &[(LimitKey<'_>, &Limit, Which)]) -> (Decision, Option<usize>) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let keys: Vec<String> = buckets.iter().map(|(k, _, _)| local_key(k)).collect();
        let mut map = match self.buckets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let args: Vec<(&Limit, Option<Bucket>)> = buckets
            .iter()
            .zip(&keys)
            .map(|((_, l, _), k)| (*l, map.get(k).copied()))
            .collect();
        let outcome = take_all(&args, now, 1);
        if matches!(outcome.decision, Decision::Allowed { .. }) {
            for (k, s) in keys.into_iter().zip(outcome.states) {
                if let Some(s) = s {
                    map.insert(k, s);
                }
            }
            if map.len() > LOCAL_PRUNE_AT {
                // A full bucket is the same as an absent one; the limit is not known here,
                // so drop those untouched for a day (the longest period) first.
                let day = 86_400_000;
                map.retain(|_, b| now.saturating_sub(b.at_ms) < day);
                if map.len() > LOCAL_PRUNE_AT {
                    map.clear();
                }
            }
        }
        (outcome.decision, outcome.limiting)
    }
}

/// The in-process key: kind and names, length-prefixed so they cannot run together.
fn local_key(key: &LimitKey<'_>) -> String {
    match key {
        LimitKey::Subject(s) => format!("s{}:{s}", s.len()),
        LimitKey::SubjectTool { subject, tool } => {
            format!("t{}:{subject}{tool}", subject.len())
        }
        LimitKey::Backend(b) => format!("b:{b}"),
    }
}

impl RedisBuckets {
    async fn connection(&self) -> Option<redis::aio::ConnectionManager> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                tokio::time::timeout(
                    self.timeout,
                    redis::aio::ConnectionManager::new(self.client.clone()),
                )
                .await
                .map_err(|_| "connecting timed out".to_string())?
                .map_err(|e| e.to_string())
            })
            .await;
        match conn {
            Ok(c) => Some(c.clone()),
            Err(e) => {
                self.warn(&format!("cannot connect: {e}"));
                None
            }
        }
    }

    async fn take(
        &self,
        buckets: &[(LimitKey<'_>, &Limit, Which)],
    ) -> Option<(Decision, Option<usize>)> {
        let mut conn = self.connection().await?;
        let limits: Vec<&Limit> = buckets.iter().map(|(_, l, _)| *l).collect();
        let mut invocation = self.script.prepare_invoke();
        for (k, _, _) in buckets {
            invocation.key(k.storage_key(&self.prefix));
        }
        for a in redis_script_args(&limits, None, 1) {
            invocation.arg(a);
        }
        let reply: Result<Vec<i64>, String> =
            match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn)).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            };
        match reply {
            Ok(r) => match decode_script_reply(&r) {
                Some(d) => Some(d),
                None => {
                    self.warn(&format!("unexpected script reply {r:?}"));
                    None
                }
            },
            Err(e) => {
                self.warn(&e);
                None
            }
        }
    }

    fn warn(&self, what: &str) {
        let now = crate::clock::now_ms().max(0) as u64;
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                fail_open = self.fail_open,
                "rate limits: Redis could not decide ({what}); calls are {} until it answers",
                if self.fail_open {
                    "let through"
                } else {
                    "refused"
                }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(yaml_subject: &str, tool: &str, backend: &str) -> Limits {
        Limits::from_config(&RateLimitsConfig {
            per_subject: yaml_subject.into(),
            per_subject_tool: tool.into(),
            per_backend: backend.into(),
            ..RateLimitsConfig::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn local_buckets_refuse_past_the_burst_and_count() {
        let l = limits("2/min", "", "");
        let limiter = Limiter::local();
        assert_eq!(limiter.check_subject(&l, "alice").await, Verdict::Allowed);
        assert_eq!(limiter.check_subject(&l, "alice").await, Verdict::Allowed);
        let v = limiter.check_subject(&l, "alice").await;
        assert!(
            matches!(v, Verdict::Limited { retry_after_ms, which: Which::Subject } if retry_after_ms > 29_000),
            "{v:?}"
        );
        // Another caller has a bucket of their own.
        assert_eq!(limiter.check_subject(&l, "bob").await, Verdict::Allowed);
        assert_eq!(limiter.stats.limited_subject.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_backend_refusal_does_not_spend_the_tool_bucket() {
        let l = limits("", "2/min", "1/min");
        let limiter = Limiter::local();
        assert_eq!(
            limiter.check_call(&l, "a", "crm_x", "crm").await,
            Verdict::Allowed
        );
        let v = limiter.check_call(&l, "a", "crm_x", "crm").await;
        assert!(matches!(
            v,
            Verdict::Limited {
                which: Which::Backend,
                ..
            }
        ));
        // The tool bucket still holds one token: a per-tool-only check passes.
        let tool_only = limits("", "2/min", "");
        assert_eq!(
            limiter.check_call(&tool_only, "a", "crm_x", "crm").await,
            Verdict::Allowed
        );
    }

    #[test]
    fn disabled_limits_are_empty_and_bad_ones_name_their_key() {
        let off = Limits::from_config(&RateLimitsConfig {
            enabled: false,
            ..RateLimitsConfig::default()
        })
        .unwrap();
        assert!(!off.has_subject_limit());
        let err = Limits::from_config(&RateLimitsConfig {
            per_backend: "lots".into(),
            ..RateLimitsConfig::default()
        })
        .unwrap_err();
        assert_eq!(err.0, "per_backend");
    }
}
