//! `cortex-gateway healthcheck`: asks a running gateway's `GET /healthz` over loopback and
//! succeeds when it answers 200.
//!
//! It exists for the container image, which carries no shell and no HTTP client: Docker's
//! `HEALTHCHECK` runs the gateway binary itself. The address comes from the configuration that
//! `serve` reads (file, env file, `PORT`/`HOSTNAME`), so moving the listener moves the check
//! with it; a wildcard listener (`0.0.0.0`, `[::]`) is probed on the loopback address of its
//! family. Everything is bounded by one timeout: connect, write and read.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The liveness path the gateway serves on every listener.
const HEALTH_PATH: &str = "/healthz";
/// At most this much of the reply is read: the status line is all the check needs.
const MAX_REPLY: usize = 1024;

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The configuration names no listener.
    #[error("the configuration has no listener to check")]
    NoListener,
    /// Nothing accepted the connection in time.
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// The connection broke or timed out before a status line arrived.
    #[error("no answer from http://{0}{HEALTH_PATH}: {1}")]
    Io(SocketAddr, std::io::Error),
    /// The gateway answered, but not 200.
    #[error("http://{0}{HEALTH_PATH} answered `{1}` instead of 200")]
    Status(SocketAddr, String),
}

/// The address to connect to for a listener: wildcard addresses are reached on loopback.
pub fn probe_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Whether `reply` starts with an HTTP/1.x status line of 200.
pub fn is_ok_status(reply: &str) -> bool {
    let line = reply.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    matches!(
        (parts.next(), parts.next()),
        (Some("HTTP/1.1" | "HTTP/1.0"), Some("200"))
    )
}

/// Checks the first listener of `listen` (the order of `server.listen`).
pub fn check_listeners(listen: &[SocketAddr], timeout: Duration) -> Result<(), HealthError> {
    let first = listen.first().ok_or(HealthError::NoListener)?;
    check(probe_address(*first), timeout)
}

/// One `GET /healthz` to `addr`, each step bounded by `timeout`.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthError> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| HealthError::Connect(addr, e))?;
    let io = |e| HealthError::Io(addr, e);
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request =
        format!("GET {HEALTH_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;

    let mut reply = Vec::with_capacity(MAX_REPLY);
    let mut chunk = [0u8; 256];
    while reply.len() < MAX_REPLY && !reply.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            break;
        }
        let room = MAX_REPLY - reply.len();
        reply.extend_from_slice(&chunk[..n.min(room)]);
    }
    let text = String::from_utf8_lossy(&reply);
    if is_ok_status(&text) {
        Ok(())
    } else {
        let line = text.lines().next().unwrap_or("(nothing)").trim().to_owned();
        Err(HealthError::Status(addr, line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:3213".parse().unwrap();
        assert_eq!(probe_address(v4), "127.0.0.1:3213".parse().unwrap());
        let v6: SocketAddr = "[::]:4000".parse().unwrap();
        assert_eq!(probe_address(v6), "[::1]:4000".parse().unwrap());
        let exact: SocketAddr = "127.0.0.2:80".parse().unwrap();
        assert_eq!(probe_address(exact), exact);
    }

    #[test]
    fn only_a_200_status_line_is_healthy() {
        assert!(is_ok_status("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"));
        assert!(is_ok_status("HTTP/1.0 200\r\n"));
        assert!(!is_ok_status("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!is_ok_status("HTTP/1.1 2000 Odd\r\n"));
        assert!(!is_ok_status("SSH-2.0-OpenSSH_9.2\r\n"));
        assert!(!is_ok_status(""));
    }

    #[test]
    fn no_listener_is_an_error() {
        assert!(matches!(
            check_listeners(&[], Duration::from_secs(1)),
            Err(HealthError::NoListener)
        ));
    }
}
