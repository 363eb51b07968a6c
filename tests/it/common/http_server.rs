//! The one small HTTP/1.1 server (hyper) behind every stand-in the tests run: the scriptable
//! contract backend, the conformance fixture backend, the webhook receiver, the issuer
//! metadata server. The load benchmark's echo backend includes this file with `#[path]`, so
//! it uses nothing else of the test harness.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The pause after a failed accept (out of file descriptors, …), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Serves `listener` until `stop` turns true or its sender is dropped: each connection on a
/// task of its own, each request answered by `handler`. When it stops it closes the listener
/// and drops every open connection (a backend that "goes away").
pub async fn serve<H, F>(listener: TcpListener, handler: H, stop: watch::Receiver<bool>)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut accept_stop = stop.clone();
    loop {
        let accepted = tokio::select! {
            _ = accept_stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let mut conn_stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let reply = handler(req);
                async move { Ok::<_, Infallible>(reply.await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // A client that goes away mid-request is not an error worth reporting here.
            tokio::select! {
                _ = conn => {}
                _ = conn_stop.wait_for(|s| *s) => {}
            }
        });
    }
}

/// A [`serve`] loop on the current Tokio runtime; stopped when dropped.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Server {
    /// Serves `handler` on `listener`.
    pub fn spawn<H, F>(listener: TcpListener, handler: H) -> std::io::Result<Server>
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
        F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(listener, handler, stopped));
        Ok(Server { addr, stop })
    }

    /// Serves `handler` on an ephemeral port of 127.0.0.1.
    pub async fn start<H, F>(handler: H) -> std::io::Result<Server>
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
        F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        Server::spawn(TcpListener::bind("127.0.0.1:0").await?, handler)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and drops the open connections now.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A response with `status` (500 if it is not a valid status code) and a JSON `body`.
pub fn json_response(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
