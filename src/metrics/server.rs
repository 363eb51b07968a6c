//! The metrics listener: `GET /metrics` in the Prometheus text format, nothing else (404 for
//! any other path, 405 for another method). A Pingora `ServeHttp` app of its own rather than
//! `pingora-prometheus`, which answers every path and would need a second `prometheus`
//! registry.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use super::Metrics;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The app served on `metrics.listen`.
pub struct MetricsApp {
    metrics: Arc<Metrics>,
}

impl MetricsApp {
    /// Serves `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MetricsApp { metrics }
    }
}

fn answer(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let len = r.body().len();
    let h = r.headers_mut();
    if let Ok(v) = content_type.parse() {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    h.insert(http::header::CONTENT_LENGTH, len.into());
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.uri.path() != "/metrics" {
            return answer(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                b"not found: this listener serves /metrics only\n".to_vec(),
            );
        }
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            let mut r = answer(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                b"method not allowed\n".to_vec(),
            );
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
            return r;
        }
        match self.metrics.render() {
            Ok(text) => answer(StatusCode::OK, CONTENT_TYPE, text.into_bytes()),
            Err(e) => {
                tracing::error!("metrics: the exposition could not be encoded: {e}");
                answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    b"the metrics could not be encoded\n".to_vec(),
                )
            }
        }
    }
}
