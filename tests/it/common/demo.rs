//! The crate's own demo contract backend, served in the test's runtime on a loopback port.

use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The technical token the demo backend accepts for discovery (match `technical_token` in
/// the gateway config; [`TestConfig`](super::TestConfig) uses it by default).
pub const DEMO_TECHNICAL_TOKEN: &str = "tech-secret";

/// A running demo backend; stops on drop.
pub struct DemoBackend {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
}

impl DemoBackend {
    pub async fn start() -> DemoBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(cortex_gateway::demo_backend::serve(
            listener,
            DEMO_TECHNICAL_TOKEN.to_owned(),
            async move {
                let _ = stopped.await;
            },
        ));
        DemoBackend {
            port,
            stop: Some(stop),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
