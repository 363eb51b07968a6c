//! `REDIS_TAKE_SCRIPT` against the real Redis at 127.0.0.1:6379 (the machines' Redis; set
//! CORTEX_TEST_REDIS=host:port to use another): the script must decide, and store, exactly
//! what the Rust arithmetic decides, step by step. A missing Redis is a failure, not a skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cortex_filters::ratelimit::{
    decode_script_reply, redis_script_args, take_all, Bucket, Decision, Limit, LimitKey,
    REDIS_TAKE_SCRIPT,
};

/// A reply of the RESP protocol (only what these commands return).
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
    Simple(String),
}

/// A minimal blocking RESP client: one connection, bounded by timeouts.
struct Redis {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Redis {
    fn connect() -> Redis {
        let addr = std::env::var("CORTEX_TEST_REDIS").unwrap_or_else(|_| "127.0.0.1:6379".into());
        let stream = TcpStream::connect_timeout(
            &addr.parse().expect("CORTEX_TEST_REDIS is host:port"),
            Duration::from_secs(3),
        )
        .unwrap_or_else(|e| panic!("Redis is required at {addr} for this test: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Redis {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn call(&mut self, args: &[&str]) -> Reply {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out).unwrap();
        self.read()
    }

    fn read(&mut self) -> Reply {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        match kind {
            ":" => Reply::Int(rest.parse().unwrap()),
            "+" => Reply::Simple(rest.to_owned()),
            "-" => panic!("Redis error: {rest}"),
            "$" => {
                let len: i64 = rest.parse().unwrap();
                if len < 0 {
                    return Reply::Bulk(None);
                }
                let mut buf = vec![0u8; len as usize + 2];
                self.reader.read_exact(&mut buf).unwrap();
                buf.truncate(len as usize);
                Reply::Bulk(Some(buf))
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                Reply::Array((0..n.max(0)).map(|_| self.read()).collect())
            }
            other => panic!("unexpected RESP reply type {other:?}"),
        }
    }

    /// Runs the script over `keys` and decodes its reply as the gateway would.
    fn take(&mut self, keys: &[String], limits: &[&Limit], now: Option<u64>, n: u64) -> Vec<i64> {
        let args = redis_script_args(limits, now, n);
        let count = keys.len().to_string();
        let mut cmd: Vec<&str> = vec!["EVAL", REDIS_TAKE_SCRIPT, &count];
        cmd.extend(keys.iter().map(String::as_str));
        cmd.extend(args.iter().map(String::as_str));
        match self.call(&cmd) {
            Reply::Array(items) => items
                .into_iter()
                .map(|r| match r {
                    Reply::Int(i) => i,
                    other => panic!("script returned {other:?}"),
                })
                .collect(),
            other => panic!("script returned {other:?}"),
        }
    }

    /// The stored state of one bucket.
    fn state(&mut self, key: &str) -> Option<Bucket> {
        let field = |r: &Reply| match r {
            Reply::Bulk(Some(b)) => Some(String::from_utf8(b.clone()).unwrap().parse().unwrap()),
            _ => None,
        };
        match self.call(&["HMGET", key, "l", "t"]) {
            Reply::Array(items) => Some(Bucket {
                level: field(&items[0])?,
                at_ms: field(&items[1])?,
            }),
            other => panic!("HMGET returned {other:?}"),
        }
    }

    fn pttl(&mut self, key: &str) -> i64 {
        match self.call(&["PTTL", key]) {
            Reply::Int(i) => i,
            other => panic!("PTTL returned {other:?}"),
        }
    }
}

fn prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{{cortex-rl-test-{}-{nanos}}}", std::process::id())
}

#[test]
fn the_script_decides_and_stores_exactly_what_the_rust_arithmetic_does() {
    let mut redis = Redis::connect();
    let p = prefix();
    let keys = [
        LimitKey::Subject("alice").storage_key(&p),
        LimitKey::SubjectTool {
            subject: "alice",
            tool: "crm_search",
        }
        .storage_key(&p),
        LimitKey::Backend("crm").storage_key(&p),
    ];
    let limits: Vec<Limit> = ["20/s burst 5", "7/s", "100/15min burst 3"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let refs: Vec<&Limit> = limits.iter().collect();

    // A unix-ms clock (large numbers, as Redis TIME gives), stepping irregularly.
    let mut now: u64 = 1_764_748_800_000;
    let mut states: Vec<Option<Bucket>> = vec![None; 3];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let (mut allowed, mut limited, mut exceeded) = (0, 0, 0);
    for step in 0..400 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        now += (seed >> 33) % 300;
        // Mostly single tokens; sometimes several, none, or more than a burst holds.
        let n = match (seed >> 20) % 16 {
            0 => 0,
            1 => 2,
            2 => 4,
            _ => 1,
        };
        // Use one, two or all three buckets, as the gateway does per check.
        let used = match (seed >> 40) % 3 {
            0 => vec![0],
            1 => vec![1, 2],
            _ => vec![0, 1, 2],
        };
        let pairs: Vec<(&Limit, Option<Bucket>)> =
            used.iter().map(|&i| (&limits[i], states[i])).collect();
        let expected = take_all(&pairs, now, n);
        let used_keys: Vec<String> = used.iter().map(|&i| keys[i].clone()).collect();
        let used_limits: Vec<&Limit> = used.iter().map(|&i| refs[i]).collect();
        let reply = redis.take(&used_keys, &used_limits, Some(now), n);
        let (decision, limiting) = decode_script_reply(&reply)
            .unwrap_or_else(|| panic!("step {step}: undecodable reply {reply:?}"));
        assert_eq!(decision, expected.decision, "step {step}");
        assert_eq!(limiting, expected.limiting, "step {step}");
        match decision {
            Decision::Allowed { .. } => allowed += 1,
            Decision::Limited { .. } => limited += 1,
            Decision::ExceedsBurst => exceeded += 1,
        }
        let charged = n > 0 && matches!(decision, Decision::Allowed { .. });
        for (j, &i) in used.iter().enumerate() {
            states[i] = expected.states[j];
            assert_eq!(redis.state(&keys[i]), states[i], "step {step}, key {i}");
            if charged {
                // A charged bucket lives until it would be full again, no longer.
                let ttl = redis.pttl(&keys[i]);
                let want = states[i].map_or(0, |s| limits[i].ttl_ms(s, now)) as i64;
                assert!(
                    ttl > 0 && ttl <= want,
                    "step {step}: pttl {ttl}, want ≤ {want}"
                );
                // The simulated clock runs faster than Redis' own: keep the key (for ten
                // minutes, so a failed run leaves nothing for long) so states stay comparable.
                redis.call(&["PEXPIRE", &keys[i], "600000"]);
            }
        }
    }
    // The sequence exercised every outcome.
    assert!(
        allowed > 50 && limited > 50 && exceeded > 5,
        "{allowed} {limited} {exceeded}"
    );

    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(String::as_str));
    redis.call(&del);
}

#[test]
fn the_script_uses_the_redis_clock_when_no_time_is_given() {
    let mut redis = Redis::connect();
    let key = LimitKey::Subject("bob").storage_key(&prefix());
    let limit: Limit = "1/min burst 2".parse().unwrap();
    let keys = [key.clone()];
    assert_eq!(redis.take(&keys, &[&limit], None, 1), [1, 1, 0]);
    assert_eq!(redis.take(&keys, &[&limit], None, 1), [1, 0, 0]);
    let refused = redis.take(&keys, &[&limit], None, 1);
    assert_eq!((refused[0], refused[2]), (0, 1));
    // Up to a minute to wait (less by the time the Redis clock moved between the calls).
    assert!((1..=60_000).contains(&refused[1]), "{refused:?}");
    let state = redis.state(&key).expect("a charged bucket is stored");
    // Less than one token (60000 units) back: only the milliseconds between the calls.
    assert!(state.level < 60_000, "{state:?}");
    // Stored until full again: about two minutes, certainly more than one.
    assert!(redis.pttl(&key) > 60_000);
    assert_eq!(redis.take(&keys, &[&limit], None, 3), [-1, 0, 1]);
    redis.call(&["DEL", &key]);
    assert_eq!(redis.call(&["EXISTS", &key]), Reply::Int(0));
    assert_eq!(redis.call(&["PING"]), Reply::Simple("PONG".into()));
}
