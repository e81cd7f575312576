//! What the proxy tests share: the probe module, a test upstream, and `edge-dev` started in
//! the test's process from an `envoy.yaml` the test shapes.

use bytes::Bytes;
use edge_dev::DevError;
use edge_dev::envoy_config::DevConfig;
use harness::Host;
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use probe_scenarios as scenario;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

/// The directory `cargo xtask wasm` builds modules into (`EDGE_SESSION_WASM_DIR` overrides).
pub fn wasm_dir() -> PathBuf {
    match std::env::var_os("EDGE_SESSION_WASM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir().join("../target/wasm/wasm32-unknown-unknown/release"),
    }
}

/// Long enough for a loaded machine, short enough that a deadlock fails the test quickly.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The upstream: `/echo` answers the request body; `/stream-up` tells the test when the first
/// request chunk arrived; `/stream-down` sends one response chunk, then waits for the test;
/// `/headers` answers the request's headers, a `name: value` line each; `/trailers` answers
/// the request's trailers the same way and sends trailers of its own (`x-rt: 2`,
/// `x-session-user: app`). Any other path is `/echo` (callouts land there too).
pub struct Upstream {
    pub address: SocketAddr,
    pub first_chunk_arrived: Mutex<mpsc::UnboundedReceiver<Bytes>>,
    pub send_rest: Arc<Notify>,
}

pub async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (arrived_tx, arrived_rx) = mpsc::unbounded_channel();
    let send_rest = Arc::new(Notify::new());
    let notify = send_rest.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (arrived, notify) = (arrived_tx.clone(), notify.clone());
            let service = service_fn(move |request: Request<Incoming>| {
                let (arrived, notify) = (arrived.clone(), notify.clone());
                async move { Ok::<_, Infallible>(serve_upstream(request, arrived, notify).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service),
            );
        }
    });
    Upstream {
        address,
        first_chunk_arrived: Mutex::new(arrived_rx),
        send_rest,
    }
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn serve_upstream(
    request: Request<Incoming>,
    arrived: mpsc::UnboundedSender<Bytes>,
    send_rest: Arc<Notify>,
) -> Response<TestBody> {
    let path = request.uri().path().to_string();
    if path == "/headers" {
        let mut lines = String::new();
        for (name, value) in request.headers() {
            lines.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        return Response::new(Full::new(Bytes::from(lines)).boxed());
    }
    let mut body = request.into_body();
    let mut received = Vec::new();
    if path == "/trailers" {
        let mut lines = String::new();
        while let Some(frame) = body.frame().await {
            if let Ok(trailers) = frame.unwrap().into_trailers() {
                for (name, value) in &trailers {
                    lines.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
                }
            }
        }
        let (mut sender, out) = Channel::<Bytes, Infallible>::new(2);
        tokio::spawn(async move {
            let _ = sender.send_data(Bytes::from(lines)).await;
            let mut trailers = hyper::HeaderMap::new();
            trailers.insert("x-rt", "2".parse().unwrap());
            trailers.insert("x-session-user", "app".parse().unwrap());
            let _ = sender.send_trailers(trailers).await;
        });
        let mut response = Response::new(out.boxed());
        response
            .headers_mut()
            .insert("trailer", "x-rt, x-session-user, x-added".parse().unwrap());
        return response;
    }
    if path == "/stream-down" {
        let (mut sender, out) = Channel::<Bytes, Infallible>::new(1);
        tokio::spawn(async move {
            let _ = sender.send_data(Bytes::from_static(b"first;")).await;
            send_rest.notified().await;
            let _ = sender.send_data(Bytes::from_static(b"second")).await;
        });
        return Response::new(out.boxed());
    }
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        if path == "/stream-up" && received.is_empty() {
            let _ = arrived.send(data.clone());
        }
        received.extend_from_slice(&data);
    }
    Response::new(Full::new(Bytes::from(received)).boxed())
}

/// Starts `edge-dev` with the probe module and one worker in front of `upstream`.
pub async fn edge_dev(upstream: SocketAddr, fail_open: bool) -> (SocketAddr, oneshot::Sender<()>) {
    edge_dev_with(upstream, fail_open, true).await
}

/// The same with or without the filter (`--no-filter`).
pub async fn edge_dev_with(
    upstream: SocketAddr,
    fail_open: bool,
    filter: bool,
) -> (SocketAddr, oneshot::Sender<()>) {
    let policy = format!("fail_open: {fail_open}");
    let setup = Setup {
        policy: &policy,
        without_filter: !filter,
        ..Setup::default()
    };
    let running = start(upstream, setup).await.unwrap();
    (running.address, running.stop)
}

/// What a test changes in the `envoy.yaml` `edge-dev` starts from.
#[derive(Default)]
pub struct Setup<'a> {
    /// The plugin's failure policy line (`fail_open: false` when empty).
    pub policy: &'a str,
    /// The probe's plugin configuration.
    pub words: &'a str,
    /// More connection manager keys, one `key: value` a line.
    pub connection: &'a str,
    /// HTTP filter entries placed before the Wasm filter, as YAML flow mappings.
    pub filters_before: &'a [&'a str],
    pub without_filter: bool,
}

/// A running `edge-dev`: where it listens, its host (stats, log), and its stop switch.
pub struct Running {
    pub address: SocketAddr,
    pub host: Host,
    pub stop: oneshot::Sender<()>,
}

/// Starts `edge-dev` (one worker, the probe module) in front of `upstream`, which also serves
/// as the `companion` cluster for callouts; an error when `edge-dev` refuses to start.
pub async fn start(upstream: SocketAddr, setup: Setup<'_>) -> Result<Running, DevError> {
    let probe = wasm_dir().join("probe.wasm");
    assert!(
        probe.is_file(),
        "{} is missing: run `cargo xtask wasm`",
        probe.display()
    );
    let yaml = format!(
        r#"
static_resources:
  listeners:
    - address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
      filter_chains:
        - filters:
            - typed_config:
{connection}
                route_config:
                  virtual_hosts:
                    - routes: [{{ match: {{ prefix: "/" }}, route: {{ cluster: app }} }}]
                http_filters:
{filters_before}
                  - name: envoy.filters.http.wasm
                    typed_config:
                      config:
                        root_id: probe-root
                        {policy}
                        vm_config: {{ code: {{ local: {{ filename: "{probe}" }} }} }}
                        configuration: {{ value: "{words}" }}
                  - name: envoy.filters.http.router
  clusters:
    - name: app
      load_assignment:
        endpoints:
          - lb_endpoints:
              - endpoint: {{ address: {{ socket_address: {{ address: {ip}, port_value: {port} }} }} }}
    - name: companion
      load_assignment:
        endpoints:
          - lb_endpoints:
              - endpoint: {{ address: {{ socket_address: {{ address: {ip}, port_value: {port} }} }} }}
"#,
        probe = probe.display(),
        ip = upstream.ip(),
        port = upstream.port(),
        policy = if setup.policy.is_empty() {
            "fail_open: false"
        } else {
            setup.policy
        },
        words = setup.words,
        connection = setup
            .connection
            .lines()
            .map(|line| format!("                {line}\n"))
            .collect::<String>(),
        filters_before = setup
            .filters_before
            .iter()
            .map(|filter| format!("                  - {filter}\n"))
            .collect::<String>(),
    );
    let config = DevConfig::parse(&yaml, std::path::Path::new("/")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let (started, is_started) = oneshot::channel();
    let started = Arc::new(std::sync::Mutex::new(Some(started)));
    let report = move |result: Result<(), DevError>| {
        if let Some(started) = started.lock().unwrap().take() {
            let _ = started.send(result);
        }
    };
    let host = Host::new();
    let serving = host.clone();
    let filter = !setup.without_filter;
    tokio::spawn(async move {
        let on_start = report.clone();
        let shutdown = async move {
            // `serve_on` waits for this only once every worker serves.
            on_start(Ok(()));
            let _ = stopped.await;
        };
        if let Err(err) = edge_dev::serve_on(serving, config, 1, filter, listener, shutdown).await {
            report(Err(err));
        }
    });
    is_started.await.unwrap_or(Ok(()))?;
    Ok(Running {
        address,
        host,
        stop,
    })
}

/// Sends one request over a fresh connection; the response's body is read by the caller.
pub async fn send<B>(proxy: SocketAddr, request: Request<B>) -> Response<Incoming>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let socket = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender.send_request(request).await.unwrap()
}

pub fn get(path: &str, scenario: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "app")
        .header(scenario::NAME_HEADER, scenario)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A POST whose body the test sends chunk by chunk through the returned sender.
pub fn streamed_post(
    path: &str,
    scenario: &str,
    chunks_in_flight: usize,
) -> (
    http_body_util::channel::Sender<Bytes, Infallible>,
    Request<Channel<Bytes, Infallible>>,
) {
    let (body, body_in) = Channel::<Bytes, Infallible>::new(chunks_in_flight);
    let request = Request::post(path)
        .header("host", "app")
        .header(scenario::NAME_HEADER, scenario)
        .body(body_in)
        .unwrap();
    (body, request)
}

pub async fn text(response: Response<Incoming>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// This package's directory: where cargo says it is now (a checkout moved, or a build reused
/// from another path, keeps the compile-time value of `env!`), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
