//! `edge-session-companion healthcheck`: asks the running service's `/readyz` and turns the
//! answer into an exit code. The runtime image is distroless (no shell, no curl), so container
//! health checks (docker-compose, Docker's `HEALTHCHECK`) run the binary itself.
//!
//! The request is one hand-written HTTP/1.1 GET on a plain TCP stream: the answer needed is a
//! status line, and the service has no HTTP client in its dependencies to pull in for it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why the service is not healthy, in words for the person reading `docker inspect`.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("reading the answer from {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{addr} did not answer HTTP: {line:?}")]
    NotHttp { addr: SocketAddr, line: String },
    #[error("{addr}/readyz answered {status}: not ready")]
    NotReady { addr: SocketAddr, status: u16 },
}

/// The address to probe for a listen address: a wildcard listen address (`0.0.0.0`, `[::]`)
/// is reached on loopback, inside the same container.
pub fn probe_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// GETs `/readyz` on the service listening on `listen`; `Ok` only for a 200, all within
/// `timeout`.
pub async fn check(listen: SocketAddr, timeout: Duration) -> Result<(), HealthError> {
    let addr = probe_address(listen);
    tokio::time::timeout(timeout, ask_readyz(addr))
        .await
        .unwrap_or(Err(HealthError::Timeout { addr, timeout }))
}

async fn ask_readyz(addr: SocketAddr) -> Result<(), HealthError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| HealthError::Connect { addr, source })?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let io = |source| HealthError::Io { addr, source };
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    // The status line is all that matters; it fits well within the first kilobyte.
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    match status_code(&line) {
        Some(200) => Ok(()),
        Some(status) => Err(HealthError::NotReady { addr, status }),
        None => Err(HealthError::NotHttp { addr, line }),
    }
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 503 Service Unavailable`).
fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split_ascii_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers every connection with `reply` (or holds it open when `None`).
    async fn fake_server(reply: Option<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                match reply {
                    Some(reply) => {
                        let _ = stream.write_all(reply.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            }
        });
        addr
    }

    const SHORT: Duration = Duration::from_millis(500);

    #[tokio::test]
    async fn ready_only_on_200() {
        let ok = fake_server(Some("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nready\n")).await;
        assert!(check(ok, SHORT).await.is_ok());
        let unavailable = fake_server(Some(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        ))
        .await;
        assert!(matches!(
            check(unavailable, SHORT).await,
            Err(HealthError::NotReady { status: 503, .. })
        ));
        let garbage = fake_server(Some("SSH-2.0-OpenSSH\r\n")).await;
        assert!(matches!(
            check(garbage, SHORT).await,
            Err(HealthError::NotHttp { .. })
        ));
    }

    #[tokio::test]
    async fn unhealthy_when_nothing_listens_or_nothing_answers() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            check(free, SHORT).await,
            Err(HealthError::Connect { .. })
        ));
        let silent = fake_server(None).await;
        assert!(matches!(
            check(silent, Duration::from_millis(200)).await,
            Err(HealthError::Timeout { .. })
        ));
    }

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:8081".parse().unwrap();
        assert_eq!(probe_address(v4), "127.0.0.1:8081".parse().unwrap());
        let v6: SocketAddr = "[::]:8081".parse().unwrap();
        assert_eq!(probe_address(v6), "[::1]:8081".parse().unwrap());
        let exact: SocketAddr = "10.1.2.3:9".parse().unwrap();
        assert_eq!(probe_address(exact), exact);
    }

    #[test]
    fn reads_status_codes_of_http_1_only() {
        assert_eq!(status_code("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_code("HTTP/1.0 503 x"), Some(503));
        assert_eq!(status_code("HTTP/2 200"), None);
        assert_eq!(status_code(""), None);
        assert_eq!(status_code("HTTP/1.1 abc"), None);
    }
}
