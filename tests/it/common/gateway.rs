//! The real `cortex-gateway` binary as a child process on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::McpClient;
use super::process;

/// How long a gateway may take to answer `GET /healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Drop waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Start attempts when the picked port was taken in between (bind-0-then-release race).
const START_ATTEMPTS: usize = 3;

/// A free 127.0.0.1 port: bound to port 0, then released for the child to take.
pub fn free_port() -> u16 {
    process::free_port().expect("bind 127.0.0.1:0")
}

/// A port nothing listens on (for "backend unreachable" tests). Same mechanism as
/// [`free_port`]; named separately so tests say what they mean.
pub fn unused_port() -> u16 {
    free_port()
}

/// What to run: arguments, environment and files (all with `{PORT}` and `{DIR}` substituted).
#[derive(Debug, Clone, Default)]
struct Launch {
    args: Vec<String>,
    env: Vec<(String, String)>,
    files: Vec<(String, String)>,
}

/// A running gateway; SIGTERM (then SIGKILL after 5 s) on drop.
pub struct Gateway {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    mcp_path: String,
}

impl Gateway {
    /// Starts `serve --config <file>` with `yaml` written to a temp dir. `{PORT}` in the YAML
    /// is replaced by a free port (use it in `server.listen`, e.g.
    /// `listen: ["127.0.0.1:{PORT}"]`), `{DIR}` by the temp dir.
    pub async fn start(yaml: &str) -> Gateway {
        assert!(
            yaml.contains("{PORT}"),
            "test YAML must listen on {{PORT}} (server.listen: [\"127.0.0.1:{{PORT}}\"])"
        );
        Gateway::launch(Launch {
            args: vec![
                "serve".into(),
                "--config".into(),
                "{DIR}/gateway.yaml".into(),
            ],
            env: Vec::new(),
            files: vec![("gateway.yaml".into(), yaml.into())],
        })
        .await
    }

    /// Starts the binary with only environment variables and `args` (e.g. `["serve"]`);
    /// `{PORT}`/`{DIR}` are substituted in both. Set `PORT` to `{PORT}` yourself.
    pub async fn start_with_env(env: &[(&str, &str)], args: &[&str]) -> Gateway {
        Gateway::launch(Launch {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            files: Vec::new(),
        })
        .await
    }

    /// Starts `serve --env-file <file>` with `contents` (a Cortex `.env` file; `{PORT}`
    /// substituted) and no YAML.
    pub async fn start_env_file(contents: &str) -> Gateway {
        Gateway::launch(Launch {
            args: vec![
                "serve".into(),
                "--env-file".into(),
                "{DIR}/cortex.env".into(),
            ],
            env: Vec::new(),
            files: vec![("cortex.env".into(), contents.into())],
        })
        .await
    }

    /// Starts `demo --listen 127.0.0.1:<free port>`.
    pub async fn start_demo() -> Gateway {
        Gateway::launch(Launch {
            args: vec![
                "demo".into(),
                "--listen".into(),
                "127.0.0.1:{PORT}".into(),
                "--data-dir".into(),
                "{DIR}/data".into(),
            ],
            ..Launch::default()
        })
        .await
    }

    async fn launch(launch: Launch) -> Gateway {
        let mut last_logs = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match Gateway::try_launch(&launch, port).await {
                Ok(gateway) => return gateway,
                Err(StartError::PortTaken(logs)) => last_logs = logs,
                Err(StartError::Failed(message)) => panic!("{message}"),
            }
        }
        panic!("gateway could not bind a free port in {START_ATTEMPTS} attempts:\n{last_logs}");
    }

    async fn try_launch(launch: &Launch, port: u16) -> Result<Gateway, StartError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let dir_str = dir.path().display().to_string();
        let subst = |s: &str| {
            s.replace("{PORT}", &port.to_string())
                .replace("{DIR}", &dir_str)
        };
        for (name, contents) in &launch.files {
            std::fs::write(dir.path().join(name), subst(contents)).expect("write test file");
        }
        let mut cmd = process::gateway_command(env!("CARGO_BIN_EXE_cortex-gateway"), dir.path())
            .expect("log files in the temp dir");
        cmd.args(launch.args.iter().map(|a| subst(a)));
        if let Ok(level) = std::env::var("CORTEX_TEST_RUST_LOG") {
            cmd.env("RUST_LOG", level);
        }
        for (key, value) in &launch.env {
            cmd.env(key, subst(value));
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", env!("CARGO_BIN_EXE_cortex-gateway")));
        let mut gateway = Gateway {
            child: Some(child),
            port,
            dir,
            mcp_path: "/mcp".into(),
        };
        gateway.wait_healthy().await?;
        Ok(gateway)
    }

    /// Polls `GET /healthz` until 200, the child exits, or [`START_TIMEOUT`].
    async fn wait_healthy(&mut self) -> Result<(), StartError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client");
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{}/healthz", self.url());
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let logs = self.logs();
                    if logs.to_ascii_lowercase().contains("address already in use")
                        || logs.to_ascii_lowercase().contains("addrinuse")
                    {
                        return Err(StartError::PortTaken(logs));
                    }
                    return Err(StartError::Failed(format!(
                        "gateway exited with {status} before becoming healthy\n--- stderr ---\n{logs}\n--- stdout ---\n{}",
                        self.stdout()
                    )));
                }
            }
            if let Ok(resp) = http.get(&url).send().await {
                if resp.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(StartError::Failed(format!(
                    "gateway not healthy on {url} after {START_TIMEOUT:?}\n--- stderr ---\n{}",
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// The process id of the running gateway; panics if it has exited.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the gateway is running").id()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub fn mcp_url(&self) -> String {
        format!("{}{}", self.url(), self.mcp_path)
    }

    /// Everything the gateway wrote to stderr so far (its logs).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Everything the gateway wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// The temp dir holding the config and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of a file in the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the configuration file the way an editor or a ConfigMap update does (a new
    /// file renamed over the old one), with `{PORT}` and `{DIR}` filled in as at start.
    pub fn rewrite_config(&self, yaml: &str) {
        let yaml = yaml
            .replace("{PORT}", &self.port().to_string())
            .replace("{DIR}", &self.dir().display().to_string());
        let tmp = self.path("gateway.yaml.new");
        std::fs::write(&tmp, yaml).expect("write the new configuration");
        std::fs::rename(&tmp, self.path("gateway.yaml")).expect("replace the configuration");
    }

    /// A client for the MCP endpoint.
    pub fn client(&self) -> McpClient {
        McpClient::new(&self.mcp_url())
    }

    /// `GET <path>` → (status, JSON body or Null).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("reqwest client")
            .get(format!("{}{}", self.url(), path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.logs()));
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// `GET /readyz` → (status, body).
    pub async fn readyz(&self) -> (u16, Value) {
        self.get_json("/readyz").await
    }

    /// Waits (bounded: 60 s, for a loaded CI machine starting Python or Node servers) until
    /// `/readyz` answers 200, i.e. every backend had a discovery attempt.
    pub async fn wait_ready(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.readyz().await;
            if status == 200 {
                return body;
            }
            if Instant::now() >= deadline {
                panic!("/readyz still {status} {body}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// The `/readyz` entry of backend `id`.
    pub async fn backend_status(&self, id: &str) -> Value {
        let (_, body) = self.readyz().await;
        body["backends"]
            .as_array()
            .and_then(|list| list.iter().find(|b| b["id"] == id).cloned())
            .unwrap_or(Value::Null)
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the running process; panics if it has exited.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("the gateway is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // SAFETY: a plain signal to the PID of a child we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Waits at most `timeout` for the process to exit; its exit code (`Some(None)` when a
    /// signal ended it), or `None` while it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status.code());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded by `timeout`) until the logs contain `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.logs().contains(needle) {
            if Instant::now() >= deadline {
                panic!(
                    "no `{needle}` in the logs after {timeout:?}:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops the process now (SIGTERM, then SIGKILL after the grace) and returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        process::stop(&mut child, STOP_GRACE).and_then(|s| s.code())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            eprintln!(
                "--- gateway on port {} (last stderr lines) ---\n{}",
                self.port,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

enum StartError {
    PortTaken(String),
    Failed(String),
}
