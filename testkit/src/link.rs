//! [`FaultyLink`] is a TCP proxy put between a client and a server (the companion and its
//! database, or the dev proxy and the companion) so that a test can make the server go away
//! and come back, or answer slowly, without touching the server itself.
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    up: bool,
    /// Added before each chunk the server sends back.
    delay: Duration,
}

/// A TCP proxy to `target`. `cut` closes its port and drops every connection, as a stopped
/// server would (connections are then refused, not left hanging); `restore` opens the same
/// port again; `slow_down` delays every chunk the server sends back.
pub struct FaultyLink {
    pub addr: SocketAddr,
    target: SocketAddr,
    state: watch::Sender<State>,
}

impl FaultyLink {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, _) = watch::channel(State {
            up: true,
            delay: Duration::ZERO,
        });
        let link = Self {
            addr,
            target,
            state,
        };
        link.serve(listener);
        link
    }

    fn serve(&self, listener: TcpListener) {
        let mut state = self.state.subscribe();
        let template = self.state.subscribe();
        let target = self.target;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((inbound, _)) = accepted else { continue };
                        tokio::spawn(relay(inbound, target, template.clone()));
                    }
                    _ = state.wait_for(|s| !s.up) => return,
                }
            }
        });
    }

    /// The server goes away: no new connections, existing ones cut.
    pub fn cut(&self) {
        self.state.send_modify(|s| s.up = false);
    }

    /// The server comes back on the same address.
    pub async fn restore(&self) {
        self.state.send_modify(|s| s.up = true);
        for _ in 0..100 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                return self.serve(listener);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the link's port {} could not be reopened", self.addr);
    }

    /// Every chunk the server sends back from now on waits `delay` first (zero: none).
    pub fn slow_down(&self, delay: Duration) {
        self.state.send_modify(|s| s.delay = delay);
    }
}

/// Copies both ways until either side closes or the link is cut; replies wait the delay.
async fn relay(inbound: TcpStream, target: SocketAddr, mut state: watch::Receiver<State>) {
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let (mut client_read, mut client_write) = inbound.into_split();
    let (mut server_read, mut server_write) = outbound.into_split();
    let requests = tokio::io::copy(&mut client_read, &mut server_write);
    let delays = state.clone();
    let replies = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = server_read.read(&mut buffer).await?;
            if n == 0 {
                return client_write.shutdown().await;
            }
            let delay = delays.borrow().delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            client_write.write_all(&buffer[..n]).await?;
        }
    };
    tokio::select! {
        _ = requests => {}
        _ = replies => {}
        _ = state.wait_for(|s| !s.up) => {}
    }
}

/// The single `host:port` of a `mongodb://` URI and what follows it, for putting a link in
/// front of the server; panics on a URI naming several hosts (a replica set needs a link per
/// member, which these tests do not do).
pub fn single_host(uri: &str) -> (SocketAddr, String) {
    let rest = uri
        .strip_prefix("mongodb://")
        .expect("a link in front of the database needs a mongodb:// URI");
    let (hosts, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let host = hosts.rsplit('@').next().unwrap_or(hosts);
    assert!(
        !host.contains(','),
        "a link in front of the database needs a single-host MONGODB_URI, got {uri}"
    );
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .unwrap()
        .next()
        .unwrap();
    (addr, tail.to_string())
}

/// `uri` with its host replaced by `link` (credentials kept), forcing a direct connection
/// (the server may call itself by another address in its replica-set configuration).
pub fn through(uri: &str, link: SocketAddr) -> String {
    let (_, tail) = single_host(uri);
    let hosts = uri
        .trim_start_matches("mongodb://")
        .split('/')
        .next()
        .unwrap_or_default();
    let credentials = hosts.rsplit_once('@').map_or("", |(c, _)| c);
    let at = if credentials.is_empty() { "" } else { "@" };
    let query = if tail.contains("directConnection") {
        tail
    } else if tail.contains('?') {
        format!("{tail}&directConnection=true")
    } else {
        format!("{tail}?directConnection=true")
    };
    format!(
        "mongodb://{credentials}{at}{link}/{}",
        query.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut socket = TcpStream::connect(addr).await?;
        socket.write_all(b"ping").await?;
        let mut reply = [0u8; 4];
        socket.read_exact(&mut reply).await?;
        Ok(reply.to_vec())
    }

    #[tokio::test]
    async fn cut_refuses_and_drops_restore_serves_again() {
        let link = FaultyLink::start(echo_server().await).await;
        assert_eq!(round_trip(link.addr).await.unwrap(), b"ping");
        let mut open = TcpStream::connect(link.addr).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).await.unwrap();
        link.cut();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(round_trip(link.addr).await.is_err(), "refused while cut");
        let mut rest = Vec::new();
        let read = open.read_to_end(&mut rest).await;
        assert!(
            read.is_err() || rest.is_empty(),
            "open connections are dropped"
        );
        link.restore().await;
        assert_eq!(round_trip(link.addr).await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn slow_down_delays_replies() {
        let link = FaultyLink::start(echo_server().await).await;
        link.slow_down(Duration::from_millis(300));
        let started = Instant::now();
        assert_eq!(round_trip(link.addr).await.unwrap(), b"ping");
        assert!(started.elapsed() >= Duration::from_millis(300));
        link.slow_down(Duration::ZERO);
        let started = Instant::now();
        round_trip(link.addr).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(300));
    }

    #[test]
    fn database_uris_are_rewritten_to_go_through_the_link() {
        let link: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            through("mongodb://127.0.0.1:27017/db?retryWrites=false", link),
            "mongodb://127.0.0.1:4000/db?retryWrites=false&directConnection=true"
        );
        assert_eq!(
            through("mongodb://u:p@127.0.0.1:27017", link),
            "mongodb://u:p@127.0.0.1:4000/?directConnection=true"
        );
    }
}
