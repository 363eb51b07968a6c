//! A Redis server of the test's own (`redis-server` on a free port, no persistence), which the
//! test may kill and start again on the same port: the shared one on 6379 is never touched.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private Redis; killed when dropped.
pub struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    /// Starts on a free port and waits until it accepts connections.
    pub async fn start() -> PrivateRedis {
        let mut r = PrivateRedis {
            child: None,
            port: super::free_port(),
        };
        r.start_again().await;
        r
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub async fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server not listening");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills it (SIGKILL: an outage, not a shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
