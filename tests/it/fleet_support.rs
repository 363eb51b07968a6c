//! A fleet on loopback: three gateway replicas on three ports sharing one PostgreSQL schema
//! and one Redis key prefix, behind a real nginx (Debian's `nginx` package) balancing
//! round-robin without stickiness. nginx runs as a child process of the test with a config
//! and prefix of its own in a temp dir (`master_process off`, so one PID to stop), never as
//! the machine's service.
//!
//! nginx adds `X-Upstream: <replica address>` to every answer so a test can see which
//! replica answered (the gateway itself never says).

#![allow(dead_code)]

use crate::common;
use crate::store_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{free_port, Gateway, McpClient, TestConfig};
use store_support::{Kind, TestDb};

/// The audit secret every replica shares.
pub const AUDIT_SECRET: &str = "fleet-audit-secret-0123456789abcdef0123456789";

/// Redis of the tests (`CORTEX_TEST_REDIS`, default 127.0.0.1:6379).
pub fn redis_url() -> String {
    format!(
        "redis://{}",
        std::env::var("CORTEX_TEST_REDIS").unwrap_or_else(|_| "127.0.0.1:6379".into())
    )
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A Redis key prefix no other test or run uses.
pub fn unique_prefix(test: &str) -> String {
    format!(
        "cortex-fleet-test-{test}-{}-{}-{:06x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Deletes every key under `prefix` in the Redis at `url` (never anything else).
pub fn delete_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
        return;
    };
    let pattern = format!("{prefix}*");
    let keys: Vec<String> = match redis::cmd("KEYS").arg(&pattern).query(&mut conn) {
        Ok(k) => k,
        Err(_) => return,
    };
    for chunk in keys.chunks(200) {
        let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
    }
}

/// An nginx in front of `upstreams`, round-robin, on a free 127.0.0.1 port.
pub struct Nginx {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// The nginx binary (Debian installs it in /usr/sbin, often not on a test's PATH).
fn nginx_binary() -> PathBuf {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        let p = PathBuf::from(candidate);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("nginx")
}

impl Nginx {
    /// Starts nginx balancing over `upstreams` (127.0.0.1 ports).
    pub async fn start(upstreams: &[u16]) -> Nginx {
        let mut dir = tempfile::tempdir().expect("temp dir");
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("nginx dirs");
        }
        for attempt in 0..3 {
            let port = free_port();
            let servers: String = upstreams
                .iter()
                .map(|p| format!("    server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;\n"))
                .collect();
            let d = dir.path().display();
            let conf = format!(
                "worker_processes 1;\nmaster_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
events {{ worker_connections 1024; }}\n\
http {{\n  log_format fleet '$upstream_addr $status $request_method \"$http_mcp_session_id\"';\n  access_log {d}/logs/access.log fleet;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
  upstream fleet {{\n{servers}    keepalive 16;\n  }}\n\
  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://fleet;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n      proxy_buffering off;\n      proxy_request_buffering off;\n      proxy_read_timeout 300s;\n      proxy_connect_timeout 2s;\n      add_header X-Upstream $upstream_addr always;\n    }}\n  }}\n}}\n"
            );
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).expect("write nginx.conf");
            let child = Command::new(nginx_binary())
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(dir.path().join("logs/stderr.log")).expect("log file"),
                )
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start nginx ({e}): install Debian's `nginx` package (.ci/run does)"
                    )
                });
            let mut nginx = Nginx {
                child: Some(child),
                port,
                dir,
            };
            match nginx.wait_listening().await {
                Ok(()) => return nginx,
                Err(logs) if attempt < 2 && logs.contains("Address already in use") => {
                    dir = nginx.into_dir();
                }
                Err(logs) => panic!("nginx did not start:\n{logs}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn into_dir(mut self) -> tempfile::TempDir {
        self.stop();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    async fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("exited with {status}: {}", self.logs()));
                }
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("not listening after 10 s: {}", self.logs()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// nginx's own error output.
    pub fn logs(&self) -> String {
        let read = |name: &str| {
            std::fs::read_to_string(self.dir.path().join("logs").join(name)).unwrap_or_default()
        };
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request nginx passed on so far: (replica address, status, method, session id).
    pub fn access_log(&self) -> Vec<(String, u16, String, String)> {
        let text =
            std::fs::read_to_string(self.dir.path().join("logs/access.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut parts = l.splitn(4, ' ');
                let upstream = parts.next()?.to_owned();
                let status = parts.next()?.parse().ok()?;
                let method = parts.next()?.to_owned();
                let session = parts.next()?.trim_matches('"').to_owned();
                Some((upstream, status, method, session))
            })
            .collect()
    }

    /// The MCP endpoint behind nginx.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.url())
    }

    /// Stops nginx (SIGTERM, then SIGKILL) by its PID.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            common::process::stop(&mut child, Duration::from_secs(3));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three replicas, their database and Redis prefix, and nginx in front.
pub struct Fleet {
    /// The replicas (a killed one stays in place, stopped).
    pub replicas: Vec<Gateway>,
    pub nginx: Nginx,
    pub db: TestDb,
    pub prefix: String,
    /// The audit spool directory the replicas share (each replays the files of one that
    /// died).
    pub spool: tempfile::TempDir,
    yaml: String,
}

impl Fleet {
    /// Starts three replicas of `config` (plus the fleet's shared settings: the PostgreSQL
    /// schema, the Redis prefix, the audit secret; `sessions.secret` is the harness default)
    /// and nginx in front of them.
    pub async fn start(test: &str, config: TestConfig) -> Fleet {
        Fleet::start_n(test, config, 3).await
    }

    /// Same with `n` replicas.
    pub async fn start_n(test: &str, config: TestConfig, n: usize) -> Fleet {
        Fleet::start_on(test, config, n, &redis_url()).await
    }

    /// Same with `n` replicas sharing the Redis at `redis`.
    pub async fn start_on(test: &str, config: TestConfig, n: usize, redis: &str) -> Fleet {
        let db = TestDb::new(Kind::Postgres).await;
        let prefix = unique_prefix(test);
        let spool = tempfile::tempdir().expect("a spool directory");
        let yaml = Fleet::yaml_on(&db, &prefix, config, redis).replacen(
            &format!("audit:\n  secret: \"{AUDIT_SECRET}\""),
            &format!(
                "audit:\n  secret: \"{AUDIT_SECRET}\"\n  spool_dir: \"{}\"",
                spool.path().display()
            ),
            1,
        );
        assert!(yaml.contains("spool_dir"), "{yaml}");
        let mut replicas = Vec::with_capacity(n);
        for _ in 0..n {
            replicas.push(Gateway::start(&yaml).await);
        }
        for r in &replicas {
            r.wait_ready().await;
        }
        let ports: Vec<u16> = replicas.iter().map(Gateway::port).collect();
        let nginx = Nginx::start(&ports).await;
        Fleet {
            replicas,
            nginx,
            db,
            prefix,
            spool,
            yaml,
        }
    }

    /// The YAML of a replica of this fleet: `config` plus storage, audit and fleet sections.
    pub fn yaml(db: &TestDb, prefix: &str, config: TestConfig) -> String {
        Fleet::yaml_on(db, prefix, config, &redis_url())
    }

    /// The same on the Redis at `redis`.
    pub fn yaml_on(db: &TestDb, prefix: &str, config: TestConfig, redis: &str) -> String {
        config
            .top(&format!(
                "storage:\n  database_url: \"{}\"\naudit:\n  secret: \"{AUDIT_SECRET}\"\nfleet:\n  redis_url: \"{redis}\"\n  key_prefix: \"{prefix}\"\n  timeout: 300ms",
                db.pg_uri(),
            ))
            .build()
    }

    /// The YAML every replica runs.
    pub fn replica_yaml(&self) -> &str {
        &self.yaml
    }

    /// A client of the MCP endpoint behind nginx.
    pub fn client(&self) -> McpClient {
        McpClient::new(&self.nginx.mcp_url())
    }

    /// The replica listening on `addr` (`127.0.0.1:<port>`, as `X-Upstream` says).
    pub fn replica_at(&self, addr: &str) -> Option<usize> {
        self.replicas
            .iter()
            .position(|r| addr.ends_with(&format!(":{}", r.port())))
    }
}

/// Starts a gateway with `yaml` that is expected to refuse to start: waits (bounded) for it
/// to exit and returns its exit code and stderr. Panics if it becomes healthy instead.
pub async fn start_refused(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let yaml = yaml
        .replace("{PORT}", &port.to_string())
        .replace("{DIR}", &dir.path().display().to_string());
    std::fs::write(dir.path().join("gateway.yaml"), yaml).expect("write config");
    let mut cmd =
        common::process::gateway_command(env!("CARGO_BIN_EXE_cortex-gateway"), dir.path())
            .expect("log files");
    cmd.args(["serve", "--config"])
        .arg(dir.path().join("gateway.yaml"));
    let mut child = cmd.spawn().expect("spawn the gateway");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let logs = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            return (status.code(), logs);
        }
        if Instant::now() >= deadline {
            common::process::stop(&mut child, Duration::from_secs(2));
            let logs = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            panic!("the gateway did not refuse to start within 30 s:\n{logs}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Redis server of the test's own (never the shared one), on a free port, without
/// persistence; stopped by PID. It can be killed and started again on the same port.
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    pub async fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        redis.restart().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it answers.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--port",
            ])
            .arg(self.port.to_string())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the private redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL by PID, and reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.nginx.stop();
        for r in &mut self.replicas {
            r.stop();
        }
        delete_prefix(&redis_url(), &self.prefix);
    }
}
