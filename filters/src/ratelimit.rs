//! Rate limits: token buckets as integer arithmetic over a clock the caller passes in.
//!
//! A [`Limit`] is a refill [`Rate`] (`60/min`, `10/s`, `100/15min`) and a burst (the bucket's
//! capacity, by default one period's worth of tokens). Each call takes tokens from every bucket
//! that applies to it: the caller's ([`LimitKey::Subject`]), the caller's on one tool
//! ([`LimitKey::SubjectTool`]) and the backend's ([`LimitKey::Backend`]). A call that finds a
//! bucket short is refused with the time after which it would succeed.
//!
//! # State
//!
//! A bucket's state is two integers ([`Bucket`]): its level and the time it was computed at.
//! The level is counted in *units* of `tokens × period_ms` per token, so that refilling is exact
//! integer arithmetic (`rate.tokens` units per elapsed millisecond) whatever the rate: `7/s`
//! refills 7 units per ms against 1000 units per token, with no rounding and no drift. A bucket
//! nobody has touched is full, so a store may forget a bucket once it is full again
//! ([`Limit::ttl_ms`]); absent state is passed as `None`.
//!
//! Every quantity stays below 2^50 ([`Limit::new`] refuses larger ones), so the same arithmetic
//! runs exactly in Lua, whose numbers are doubles: [`REDIS_TAKE_SCRIPT`] is this module's
//! [`take_all`] for Redis, so replicas sharing a Redis enforce one limit with one round trip.
//!
//! # Clock
//!
//! `now_ms` is any millisecond clock that does not run backwards for one store: a monotonic
//! clock for the in-memory store, Redis' own `TIME` for the shared one (the script reads it when
//! no time is passed, so replicas with skewed clocks still share one timeline). A time earlier
//! than a bucket's own is treated as no time passing.
//!
//! # Several buckets, all or nothing
//!
//! [`take_all`] takes from several buckets at once: either every bucket has the tokens and all
//! are charged, or none is charged and the call is refused with the longest wait, naming the
//! bucket that imposes it. So a call refused by its backend's limit does not also spend the
//! caller's tokens.
//!
//! # Cortex
//!
//! Cortex limits each MCP POST with a fixed window of `CORTEX_RATE_LIMIT_PER_MINUTE` (default
//! 200) requests per minute, keyed by the token's `jti` (the client IP without one), and
//! `RATE_LIMIT_DISABLED=true` (exactly that value) turns every limit off. [`cortex_env`] maps
//! them: the per-minute figure becomes the per-subject limit `N/min` with burst `N`. A token
//! bucket of burst N refilled at N per minute admits at most 2N requests in any 60 s span, as
//! a fixed window does across a window boundary, but spreads the refill instead of resetting it
//! all at once. The bucket is per subject rather than per token, so a caller cannot multiply
//! its allowance by holding several tokens.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The largest number of units a bucket may hold (and the largest rate numerator): 2^50, so
/// that every intermediate value is exact in a double (Lua) with margin.
pub const MAX_UNITS: u64 = 1 << 50;

/// The key prefix used unless configured: the braces make it a Redis Cluster hash tag, so every
/// bucket lands in one slot and [`REDIS_TAKE_SCRIPT`] may touch several at once.
pub const DEFAULT_KEY_PREFIX: &str = "{cortex-rl}";

/// Cortex's default for `CORTEX_RATE_LIMIT_PER_MINUTE`.
pub const CORTEX_DEFAULT_PER_MINUTE: u64 = 200;

/// A rate limit configuration that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    /// A rate or limit string that does not parse.
    #[error("invalid rate limit `{input}`: {reason}")]
    Syntax {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Numbers that parse but cannot make a working bucket.
    #[error("invalid rate limit: {0}")]
    Range(String),
}

fn syntax(input: &str, reason: impl Into<String>) -> RateLimitError {
    RateLimitError::Syntax {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// A refill rate: `tokens` every `period_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    tokens: u64,
    period_ms: u64,
}

/// Period units accepted after the `/`, with their length in milliseconds.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("sec", 1_000),
    ("second", 1_000),
    ("seconds", 1_000),
    ("m", 60_000),
    ("min", 60_000),
    ("minute", 60_000),
    ("minutes", 60_000),
    ("h", 3_600_000),
    ("hr", 3_600_000),
    ("hour", 3_600_000),
    ("hours", 3_600_000),
    ("d", 86_400_000),
    ("day", 86_400_000),
    ("days", 86_400_000),
];

/// The longest period accepted: one day.
const MAX_PERIOD_MS: u64 = 86_400_000;

impl Rate {
    /// `tokens` every `period_ms` ms; both at least 1, the period at most one day.
    pub fn new(tokens: u64, period_ms: u64) -> Result<Rate, RateLimitError> {
        if tokens == 0 {
            return Err(RateLimitError::Range(
                "a rate needs at least 1 token per period (to turn limits off, leave them out)"
                    .into(),
            ));
        }
        if period_ms == 0 || period_ms > MAX_PERIOD_MS {
            return Err(RateLimitError::Range(format!(
                "the period must be between 1 ms and 1 day, got {period_ms} ms"
            )));
        }
        if tokens > MAX_UNITS {
            return Err(RateLimitError::Range(format!(
                "{tokens} tokens per period is more than this limiter counts ({MAX_UNITS})"
            )));
        }
        Ok(Rate { tokens, period_ms })
    }

    /// `n` tokens per minute.
    pub fn per_minute(n: u64) -> Result<Rate, RateLimitError> {
        Rate::new(n, 60_000)
    }

    /// Tokens added per period.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The period in milliseconds.
    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }
}

impl FromStr for Rate {
    type Err = RateLimitError;

    /// `<tokens>/<period>`, the period a unit (`ms`, `s`, `min`, `h`, `day` and their long
    /// forms) optionally preceded by a count: `60/min`, `10/s`, `100/15min`, `5 / 2 s`.
    fn from_str(input: &str) -> Result<Rate, RateLimitError> {
        let (count, period) = input
            .split_once('/')
            .ok_or_else(|| syntax(input, "expected `<tokens>/<period>`, e.g. `60/min`"))?;
        let count = count.trim();
        let tokens: u64 = count
            .parse()
            .map_err(|_| syntax(input, format!("`{count}` is not a whole number of tokens")))?;
        let period = period.trim();
        let split = period
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(period.len());
        let (multiple, unit) = period.split_at(split);
        let multiple: u64 = if multiple.is_empty() {
            1
        } else {
            multiple
                .parse()
                .map_err(|_| syntax(input, format!("`{multiple}` is not a whole number")))?
        };
        let unit = unit.trim().to_ascii_lowercase();
        let unit_ms = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, ms)| *ms)
            .ok_or_else(|| {
                syntax(
                    input,
                    format!("unknown period unit `{unit}` (use ms, s, min, h or day)"),
                )
            })?;
        let period_ms = multiple
            .checked_mul(unit_ms)
            .ok_or_else(|| syntax(input, "the period is too long"))?;
        Rate::new(tokens, period_ms)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = [
            ("day", 86_400_000),
            ("h", 3_600_000),
            ("min", 60_000),
            ("s", 1_000),
        ]
        .into_iter()
        .find(|(_, ms)| self.period_ms.is_multiple_of(*ms));
        match unit {
            Some((name, ms)) if self.period_ms == ms => write!(f, "{}/{name}", self.tokens),
            Some((name, ms)) => write!(f, "{}/{}{name}", self.tokens, self.period_ms / ms),
            None => write!(f, "{}/{}ms", self.tokens, self.period_ms),
        }
    }
}

/// A token bucket's parameters: refill rate and capacity (burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    rate: Rate,
    burst: u64,
}

impl Limit {
    /// A bucket holding up to `burst` tokens (at least 1), refilled at `rate`.
    pub fn new(rate: Rate, burst: u64) -> Result<Limit, RateLimitError> {
        if burst == 0 {
            return Err(RateLimitError::Range(
                "the burst must be at least 1 token".into(),
            ));
        }
        match burst.checked_mul(rate.period_ms) {
            Some(units) if units <= MAX_UNITS => Ok(Limit { rate, burst }),
            _ => Err(RateLimitError::Range(format!(
                "a burst of {burst} over {} ms is more than this limiter counts",
                rate.period_ms
            ))),
        }
    }

    /// A bucket whose burst is one period's worth of tokens (`60/min` → burst 60).
    pub fn from_rate(rate: Rate) -> Result<Limit, RateLimitError> {
        Limit::new(rate, rate.tokens)
    }

    /// The refill rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The capacity in tokens.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Capacity in units.
    fn capacity(&self) -> u64 {
        self.burst * self.rate.period_ms
    }

    /// The level and time of `state` brought forward to `now_ms` (absent = full now).
    fn refilled(&self, state: Option<Bucket>, now_ms: u64) -> Bucket {
        let cap = self.capacity();
        let Some(b) = state else {
            return Bucket {
                level: cap,
                at_ms: now_ms,
            };
        };
        let level = b.level.min(cap);
        if now_ms <= b.at_ms {
            return Bucket {
                level,
                at_ms: b.at_ms,
            };
        }
        let r = self.rate.tokens;
        let missing = cap - level;
        let to_full = missing.div_ceil(r);
        let elapsed = now_ms - b.at_ms;
        let refill = if elapsed >= to_full {
            missing
        } else {
            elapsed * r
        };
        Bucket {
            level: level + refill,
            at_ms: now_ms,
        }
    }

    /// Takes `n` tokens at `now_ms`: the decision, and the state to store (the given one when
    /// nothing was taken).
    pub fn take(&self, state: Option<Bucket>, now_ms: u64, n: u64) -> (Decision, Option<Bucket>) {
        let outcome = take_all(&[(self, state)], now_ms, n);
        (outcome.decision, outcome.states[0])
    }

    /// Milliseconds until `state` is full again at `now_ms` (0: full, the store may forget it).
    pub fn ttl_ms(&self, state: Bucket, now_ms: u64) -> u64 {
        let b = self.refilled(Some(state), now_ms);
        (self.capacity() - b.level).div_ceil(self.rate.tokens)
    }
}

impl FromStr for Limit {
    type Err = RateLimitError;

    /// A [`Rate`], optionally followed by `burst <n>`: `60/min`, `10/s burst 50`.
    fn from_str(input: &str) -> Result<Limit, RateLimitError> {
        let (rate, burst) = match input.find("burst") {
            None => (input, None),
            Some(i) => {
                let n = input[i + "burst".len()..].trim();
                let burst: u64 = n
                    .parse()
                    .map_err(|_| syntax(input, format!("`{n}` is not a whole number of tokens")))?;
                (&input[..i], Some(burst))
            }
        };
        let rate: Rate = rate.trim().parse().map_err(|e| match e {
            RateLimitError::Syntax { reason, .. } => syntax(input, reason),
            other => other,
        })?;
        match burst {
            Some(b) => Limit::new(rate, b),
            None => Limit::from_rate(rate),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.burst == self.rate.tokens {
            write!(f, "{}", self.rate)
        } else {
            write!(f, "{} burst {}", self.rate, self.burst)
        }
    }
}

/// A bucket's state: `level` units (a token is `rate.period_ms` units) as of `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// Units in the bucket.
    pub level: u64,
    /// The time the level was computed at.
    pub at_ms: u64,
}

/// What happens to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `remaining` whole tokens are left (the least over the buckets involved).
    Allowed {
        /// Whole tokens left.
        remaining: u64,
    },
    /// Refused; the same call would be allowed after `retry_after_ms`.
    Limited {
        /// Milliseconds to wait (at least 1).
        retry_after_ms: u64,
    },
    /// Refused for good: more tokens than the bucket can ever hold.
    ExceedsBurst,
}

/// The result of [`take_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Allowed or refused.
    pub decision: Decision,
    /// When refused: the index of the bucket that refuses (the one with the longest wait).
    pub limiting: Option<usize>,
    /// The state to store per bucket, in the order given (unchanged when refused).
    pub states: Vec<Option<Bucket>>,
}

/// Takes `n` tokens from every bucket at `now_ms`, all or nothing.
pub fn take_all(buckets: &[(&Limit, Option<Bucket>)], now_ms: u64, n: u64) -> Outcome {
    let unchanged = || buckets.iter().map(|(_, s)| *s).collect::<Vec<_>>();
    if let Some(i) = buckets.iter().position(|(l, _)| n > l.burst) {
        return Outcome {
            decision: Decision::ExceedsBurst,
            limiting: Some(i),
            states: unchanged(),
        };
    }
    let refilled: Vec<Bucket> = buckets
        .iter()
        .map(|(l, s)| l.refilled(*s, now_ms))
        .collect();
    let mut worst: Option<(usize, u64)> = None;
    for (i, ((limit, _), b)) in buckets.iter().zip(&refilled).enumerate() {
        let cost = n * limit.rate.period_ms;
        if b.level < cost {
            let wait = (cost - b.level).div_ceil(limit.rate.tokens);
            if worst.is_none_or(|(_, w)| wait > w) {
                worst = Some((i, wait));
            }
        }
    }
    if let Some((i, wait)) = worst {
        return Outcome {
            decision: Decision::Limited {
                retry_after_ms: wait,
            },
            limiting: Some(i),
            states: unchanged(),
        };
    }
    if n == 0 {
        let remaining = buckets
            .iter()
            .zip(&refilled)
            .map(|((l, _), b)| b.level / l.rate.period_ms)
            .min()
            .unwrap_or(0);
        return Outcome {
            decision: Decision::Allowed { remaining },
            limiting: None,
            states: unchanged(),
        };
    }
    let mut remaining = u64::MAX;
    let mut states = Vec::with_capacity(buckets.len());
    for ((limit, _), b) in buckets.iter().zip(refilled) {
        let level = b.level - n * limit.rate.period_ms;
        remaining = remaining.min(level / limit.rate.period_ms);
        states.push(Some(Bucket {
            level,
            at_ms: b.at_ms,
        }));
    }
    Outcome {
        decision: Decision::Allowed {
            remaining: if buckets.is_empty() { 0 } else { remaining },
        },
        limiting: None,
        states,
    }
}

/// The `Retry-After` header value (whole seconds, rounded up, at least 1) for a wait.
pub fn retry_after_seconds(retry_after_ms: u64) -> u64 {
    retry_after_ms.div_ceil(1000).max(1)
}

/// Which bucket a call draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey<'a> {
    /// Everything one caller (token subject) does.
    Subject(&'a str),
    /// One caller's calls of one tool (exposed name).
    SubjectTool {
        /// The caller.
        subject: &'a str,
        /// The tool.
        tool: &'a str,
    },
    /// Every call routed to one backend, whoever makes it.
    Backend(&'a str),
}

impl LimitKey<'_> {
    /// The key under which a store keeps this bucket: `<prefix>:subject:<h>`,
    /// `<prefix>:tool:<h>` or `<prefix>:backend:<backend id>`. `<h>` is a 128-bit hash of the
    /// subject (and tool), so keys have a bounded length, cannot collide through separators in
    /// the names, and do not show user ids to whoever browses the store (a hash of a guessable
    /// id is not a secret, though).
    pub fn storage_key(&self, prefix: &str) -> String {
        match self {
            LimitKey::Subject(subject) => {
                format!(
                    "{prefix}:subject:{}",
                    key_hash(&[b"subject", subject.as_bytes()])
                )
            }
            LimitKey::SubjectTool { subject, tool } => format!(
                "{prefix}:tool:{}",
                key_hash(&[b"tool", subject.as_bytes(), tool.as_bytes()])
            ),
            LimitKey::Backend(backend) => format!("{prefix}:backend:{backend}"),
        }
    }
}

/// base64url of the first 16 bytes of SHA-256 over length-prefixed parts.
fn key_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    URL_SAFE_NO_PAD.encode(&h.finalize()[..16])
}

/// What Cortex's rate-limit variables mean here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CortexRateEnv {
    /// `RATE_LIMIT_DISABLED=true`: no limit at all applies (subject, tool or backend).
    pub disabled: bool,
    /// The per-subject limit: `CORTEX_RATE_LIMIT_PER_MINUTE`/min, burst the same figure.
    pub per_subject: Limit,
    /// Settings that do not do what they may look like they do.
    pub warnings: Vec<String>,
}

/// Reads `CORTEX_RATE_LIMIT_PER_MINUTE` and `RATE_LIMIT_DISABLED` (their values, `None` when
/// unset) with Cortex's meaning. Cortex disables limits only for the exact value `true`; any
/// other value is kept as "enabled" and warned about. A per-minute figure must be a whole
/// number of at least 1 (Cortex would read `abc` as "no limit" and `0` as "one request, then
/// none": both are refused here with a clear error instead).
pub fn cortex_env(
    per_minute: Option<&str>,
    disabled: Option<&str>,
) -> Result<CortexRateEnv, RateLimitError> {
    let mut warnings = Vec::new();
    let disabled = match disabled {
        None => false,
        Some("true") => true,
        Some(other) => {
            if !matches!(other, "" | "false") {
                warnings.push(format!(
                    "RATE_LIMIT_DISABLED={other} leaves rate limits on: only the exact value `true` disables them"
                ));
            }
            false
        }
    };
    let n = match per_minute {
        None => CORTEX_DEFAULT_PER_MINUTE,
        Some(text) => text.trim().parse::<u64>().map_err(|_| {
            syntax(
                text,
                "CORTEX_RATE_LIMIT_PER_MINUTE must be a whole number of requests per minute",
            )
        })?,
    };
    if n == 0 {
        return Err(RateLimitError::Range(
            "CORTEX_RATE_LIMIT_PER_MINUTE must be at least 1 (RATE_LIMIT_DISABLED=true turns limits off)"
                .into(),
        ));
    }
    Ok(CortexRateEnv {
        disabled,
        per_subject: Limit::from_rate(Rate::per_minute(n)?)?,
        warnings,
    })
}

/// [`take_all`] as a Redis Lua script (`EVAL`/`EVALSHA`), for buckets shared by replicas.
///
/// `KEYS`: the buckets' storage keys ([`LimitKey::storage_key`]), each a hash with fields `l`
/// (level) and `t` (time). `ARGV`: [`redis_script_args`]: the time in ms (empty: use the Redis
/// server's `TIME`, which needs Redis 5 or newer), `n`, then per key its rate tokens, period
/// and burst. Reply: `{1, remaining, 0}`, `{0, retry_after_ms, index}` or `{-1, 0, index}`,
/// `index` counting keys from 1; decode it with [`decode_script_reply`]. A charged bucket gets
/// a time-to-live of its time until full, so idle buckets vanish.
///
/// Integers are written with `%d` (Lua's `tostring` would round them to 14 digits).
pub const REDIS_TAKE_SCRIPT: &str = r#"
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local n = tonumber(ARGV[2])
local count = #KEYS
local limits = {}
for i = 1, count do
  local base = 2 + (i - 1) * 3
  local r = tonumber(ARGV[base + 1])
  local p = tonumber(ARGV[base + 2])
  local burst = tonumber(ARGV[base + 3])
  if n > burst then
    return {-1, 0, i}
  end
  limits[i] = {r = r, p = p, cap = burst * p}
end
local levels = {}
local times = {}
local worst = 0
local worst_wait = 0
for i = 1, count do
  local lim = limits[i]
  local state = redis.call('HMGET', KEYS[i], 'l', 't')
  local level
  local at
  if state[1] and state[2] then
    level = math.min(tonumber(state[1]), lim.cap)
    at = tonumber(state[2])
    if now > at then
      local missing = lim.cap - level
      local to_full = math.floor((missing + lim.r - 1) / lim.r)
      local elapsed = now - at
      if elapsed >= to_full then
        level = lim.cap
      else
        level = level + elapsed * lim.r
      end
      at = now
    end
  else
    level = lim.cap
    at = now
  end
  levels[i] = level
  times[i] = at
  local cost = n * lim.p
  if level < cost then
    local wait = math.floor((cost - level + lim.r - 1) / lim.r)
    if wait > worst_wait then
      worst = i
      worst_wait = wait
    end
  end
end
if worst > 0 then
  return {0, worst_wait, worst}
end
local remaining = -1
for i = 1, count do
  local lim = limits[i]
  local level = levels[i] - n * lim.p
  local left = math.floor(level / lim.p)
  if remaining < 0 or left < remaining then
    remaining = left
  end
  if n > 0 then
    local ttl = math.floor((lim.cap - level + lim.r - 1) / lim.r)
    redis.call('HSET', KEYS[i], 'l', string.format('%d', level), 't', string.format('%d', times[i]))
    redis.call('PEXPIRE', KEYS[i], math.max(ttl, 1))
  end
end
if remaining < 0 then
  remaining = 0
end
return {1, remaining, 0}
"#;

/// `ARGV` of [`REDIS_TAKE_SCRIPT`] for `limits` (in `KEYS` order): the time (`None`: the
/// Redis server's clock) and the tokens to take.
pub fn redis_script_args(limits: &[&Limit], now_ms: Option<u64>, n: u64) -> Vec<String> {
    let mut args = Vec::with_capacity(2 + limits.len() * 3);
    args.push(now_ms.map(|t| t.to_string()).unwrap_or_default());
    args.push(n.to_string());
    for l in limits {
        args.push(l.rate.tokens.to_string());
        args.push(l.rate.period_ms.to_string());
        args.push(l.burst.to_string());
    }
    args
}

/// The decision and limiting key index (from 0) in a reply of [`REDIS_TAKE_SCRIPT`]; `None`
/// for a reply it cannot have written.
pub fn decode_script_reply(reply: &[i64]) -> Option<(Decision, Option<usize>)> {
    let index = |i: i64| usize::try_from(i).ok()?.checked_sub(1);
    match *reply {
        [1, remaining, _] => Some((
            Decision::Allowed {
                remaining: u64::try_from(remaining).ok()?,
            },
            None,
        )),
        [0, wait, i] => Some((
            Decision::Limited {
                retry_after_ms: u64::try_from(wait).ok().filter(|w| *w > 0)?,
            },
            Some(index(i)?),
        )),
        [-1, _, i] => Some((Decision::ExceedsBurst, Some(index(i)?))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(s: &str) -> Limit {
        s.parse().unwrap()
    }

    #[test]
    fn rates_parse_in_every_documented_form() {
        let cases = [
            ("60/min", (60, 60_000)),
            ("10/s", (10, 1_000)),
            ("10/sec", (10, 1_000)),
            ("1000/h", (1000, 3_600_000)),
            ("5/day", (5, 86_400_000)),
            ("100/15min", (100, 900_000)),
            ("5 / 2 s", (5, 2_000)),
            ("3/500ms", (3, 500)),
            ("7/Minutes", (7, 60_000)),
        ];
        for (text, (tokens, period)) in cases {
            let r: Rate = text.parse().unwrap();
            assert_eq!((r.tokens(), r.period_ms()), (tokens, period), "{text}");
        }
    }

    #[test]
    fn bad_rates_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Rate>().unwrap_err().to_string();
        assert!(err("60").contains("expected `<tokens>/<period>`"));
        assert!(err("x/min").contains("`x` is not a whole number of tokens"));
        assert!(err("60/fortnight").contains("unknown period unit `fortnight`"));
        assert!(err("0/min").contains("at least 1 token"));
        assert!(err("1/0s").contains("between 1 ms and 1 day"));
        assert!(err("1/2day").contains("between 1 ms and 1 day"));
        assert!(err("-1/s").contains("not a whole number"));
        assert!(err("1/99999999999999999999d").contains("not a whole number"));
    }

    #[test]
    fn limits_parse_with_and_without_burst() {
        let l = limit("60/min");
        assert_eq!((l.burst(), l.rate().tokens()), (60, 60));
        let l = limit("10/s burst 50");
        assert_eq!((l.burst(), l.rate().period_ms()), (50, 1_000));
        assert_eq!(l.to_string(), "10/s burst 50");
        assert_eq!(limit("100/15min").to_string(), "100/15min");
        assert_eq!(limit("3/1500ms").to_string(), "3/1500ms");
        assert!("10/s burst 0"
            .parse::<Limit>()
            .unwrap_err()
            .to_string()
            .contains("at least 1 token"));
        assert!("10/s burst many"
            .parse::<Limit>()
            .unwrap_err()
            .to_string()
            .contains("`many` is not a whole number"));
        // 2^50 units is the ceiling: a burst that overflows it is refused, not wrapped.
        assert!("1/day burst 100000000"
            .parse::<Limit>()
            .unwrap_err()
            .to_string()
            .contains("more than this limiter counts"));
    }

    #[test]
    fn a_fresh_bucket_allows_its_burst_then_refuses_with_the_exact_wait() {
        let l = limit("60/min burst 3");
        let mut state = None;
        for left in [2, 1, 0] {
            let (d, s) = l.take(state, 1_000, 1);
            assert_eq!(d, Decision::Allowed { remaining: left });
            state = s;
        }
        // One token per second: the next one is a full second away.
        let (d, s) = l.take(state, 1_000, 1);
        assert_eq!(
            d,
            Decision::Limited {
                retry_after_ms: 1_000
            }
        );
        assert_eq!(s, state, "a refusal changes nothing");
        let (d, _) = l.take(state, 1_400, 1);
        assert_eq!(
            d,
            Decision::Limited {
                retry_after_ms: 600
            }
        );
        let (d, s) = l.take(state, 2_000, 1);
        assert_eq!(d, Decision::Allowed { remaining: 0 });
        assert_eq!(
            s,
            Some(Bucket {
                level: 0,
                at_ms: 2_000
            })
        );
    }

    #[test]
    fn refill_is_exact_for_rates_that_do_not_divide_the_period() {
        // 7 per second: a token every 142.857… ms; 7 tokens take exactly 1000 ms, never 999.
        let l = limit("7/s");
        let mut state = None;
        for _ in 0..7 {
            state = l.take(state, 0, 1).1;
        }
        assert_eq!(
            l.take(state, 0, 1).0,
            Decision::Limited {
                retry_after_ms: 143
            }
        );
        let (d, _) = l.take(state, 999, 7);
        assert_eq!(d, Decision::Limited { retry_after_ms: 1 });
        let (d, s) = l.take(state, 1_000, 7);
        assert_eq!(d, Decision::Allowed { remaining: 0 });
        // Many small steps refill exactly as much as one big step.
        let mut stepped = s;
        for t in 1_001..=2_000 {
            stepped = l.take(stepped, t, 0).1;
        }
        assert_eq!(
            l.take(stepped, 2_000, 7).0,
            Decision::Allowed { remaining: 0 }
        );
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_burst() {
        let l = limit("10/s burst 5");
        let state = l.take(None, 0, 5).1;
        // A long idle time refills to the burst, no further.
        let (d, _) = l.take(state, 3_600_000, 5);
        assert_eq!(d, Decision::Allowed { remaining: 0 });
        let (d, _) = l.take(state, 3_600_000, 6);
        assert_eq!(d, Decision::ExceedsBurst);
    }

    #[test]
    fn a_clock_running_backwards_refills_nothing() {
        let l = limit("1/s burst 1");
        let state = l.take(None, 10_000, 1).1;
        let (d, s) = l.take(state, 5_000, 1);
        assert_eq!(
            d,
            Decision::Limited {
                retry_after_ms: 1_000
            }
        );
        assert_eq!(s, state);
        assert_eq!(
            l.take(state, 11_000, 1).0,
            Decision::Allowed { remaining: 0 }
        );
    }

    #[test]
    fn ttl_is_the_time_until_full() {
        let l = limit("2/s burst 4");
        let state = l.take(None, 0, 3).1.unwrap();
        assert_eq!(l.ttl_ms(state, 0), 1_500);
        assert_eq!(l.ttl_ms(state, 1_000), 500);
        assert_eq!(l.ttl_ms(state, 1_500), 0);
        assert_eq!(l.ttl_ms(state, 9_999), 0);
    }

    #[test]
    fn several_buckets_are_charged_all_or_nothing() {
        let user = limit("100/min");
        let backend = limit("1/s burst 1");
        let o = take_all(&[(&user, None), (&backend, None)], 0, 1);
        assert_eq!(o.decision, Decision::Allowed { remaining: 0 });
        let (u1, b1) = (o.states[0], o.states[1]);
        // The backend is empty: the call is refused and the user's bucket is not charged.
        let o = take_all(&[(&user, u1), (&backend, b1)], 10, 1);
        assert_eq!(
            o.decision,
            Decision::Limited {
                retry_after_ms: 990
            }
        );
        assert_eq!(o.limiting, Some(1));
        assert_eq!(o.states, vec![u1, b1]);
        assert_eq!(user.take(u1, 10, 1).0, Decision::Allowed { remaining: 98 });
    }

    #[test]
    fn the_longest_wait_names_the_limiting_bucket() {
        let a = limit("1/s burst 1");
        let b = limit("1/min burst 1");
        let sa = a.take(None, 0, 1).1;
        let sb = b.take(None, 0, 1).1;
        let o = take_all(&[(&a, sa), (&b, sb)], 0, 1);
        assert_eq!(
            o.decision,
            Decision::Limited {
                retry_after_ms: 60_000
            }
        );
        assert_eq!(o.limiting, Some(1));
        let o = take_all(&[(&a, sa), (&b, None)], 0, 2);
        assert_eq!((o.decision, o.limiting), (Decision::ExceedsBurst, Some(0)));
    }

    #[test]
    fn taking_nothing_reports_without_charging() {
        let l = limit("5/s");
        let s = l.take(None, 0, 2).1;
        assert_eq!(l.take(s, 0, 0), (Decision::Allowed { remaining: 3 }, s));
        assert_eq!(
            l.take(None, 0, 0),
            (Decision::Allowed { remaining: 5 }, None)
        );
    }

    #[test]
    fn retry_after_header_rounds_up() {
        assert_eq!(retry_after_seconds(1), 1);
        assert_eq!(retry_after_seconds(1_000), 1);
        assert_eq!(retry_after_seconds(1_001), 2);
        assert_eq!(retry_after_seconds(0), 1);
    }

    #[test]
    fn storage_keys_are_distinct_bounded_and_opaque() {
        let p = DEFAULT_KEY_PREFIX;
        let s = LimitKey::Subject("alice@example.com").storage_key(p);
        assert!(s.starts_with("{cortex-rl}:subject:"));
        assert!(!s.contains("alice"));
        assert_eq!(s.len(), "{cortex-rl}:subject:".len() + 22);
        assert_eq!(s, LimitKey::Subject("alice@example.com").storage_key(p));
        // Separators inside names cannot make two different pairs collide.
        let t1 = LimitKey::SubjectTool {
            subject: "a:b",
            tool: "c",
        }
        .storage_key(p);
        let t2 = LimitKey::SubjectTool {
            subject: "a",
            tool: "b:c",
        }
        .storage_key(p);
        assert_ne!(t1, t2);
        assert_ne!(
            LimitKey::Subject("x").storage_key(p),
            LimitKey::SubjectTool {
                subject: "x",
                tool: ""
            }
            .storage_key(p)
        );
        assert_eq!(
            LimitKey::Backend("crm").storage_key(p),
            "{cortex-rl}:backend:crm"
        );
    }

    #[test]
    fn cortex_variables_keep_their_meaning() {
        let env = cortex_env(None, None).unwrap();
        assert!(!env.disabled);
        assert_eq!(env.per_subject, limit("200/min burst 200"));
        assert!(env.warnings.is_empty());
        let env = cortex_env(Some(" 30 "), Some("true")).unwrap();
        assert!(env.disabled);
        assert_eq!(env.per_subject, limit("30/min"));
        let env = cortex_env(Some("30"), Some("1")).unwrap();
        assert!(!env.disabled);
        assert!(env.warnings[0].contains("only the exact value `true`"));
        assert!(cortex_env(Some("30"), Some("false"))
            .unwrap()
            .warnings
            .is_empty());
        assert!(cortex_env(Some("0"), None)
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        assert!(cortex_env(Some("lots"), None)
            .unwrap_err()
            .to_string()
            .contains("whole number of requests per minute"));
    }

    #[test]
    fn script_arguments_and_replies_round_trip() {
        let a = limit("10/s burst 20");
        let b = limit("60/min");
        assert_eq!(
            redis_script_args(&[&a, &b], Some(5), 1),
            ["5", "1", "10", "1000", "20", "60", "60000", "60"]
        );
        assert_eq!(redis_script_args(&[&a], None, 2)[0], "");
        assert_eq!(
            decode_script_reply(&[1, 7, 0]),
            Some((Decision::Allowed { remaining: 7 }, None))
        );
        assert_eq!(
            decode_script_reply(&[0, 250, 2]),
            Some((
                Decision::Limited {
                    retry_after_ms: 250
                },
                Some(1)
            ))
        );
        assert_eq!(
            decode_script_reply(&[-1, 0, 1]),
            Some((Decision::ExceedsBurst, Some(0)))
        );
        assert_eq!(decode_script_reply(&[0, 250, 0]), None);
        assert_eq!(decode_script_reply(&[0, 0, 1]), None);
        assert_eq!(decode_script_reply(&[2, 0, 0]), None);
        assert_eq!(decode_script_reply(&[1, 0]), None);
    }
}
