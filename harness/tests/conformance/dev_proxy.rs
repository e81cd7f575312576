//! `edge-dev` over real sockets with the probe module: bodies stream through the filter in
//! both directions (a proxy that buffered would deadlock these tests, which then time out),
//! a filter that buffers sees the whole body, and a trap fails the stream as Envoy does.
//! The test upstream and the way `edge-dev` is started here serve `dev_proxy_config` too.

use crate::support::wasm_dir;
use bytes::Bytes;
use harness::Host;
use harness::dev::DevError;
use harness::dev::envoy_config::DevConfig;
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

/// Long enough for a loaded machine, short enough that a deadlock fails the test quickly.
const PATIENCE: Duration = Duration::from_secs(20);

/// The upstream: `/echo` answers the request body; `/stream-up` tells the test when the first
/// request chunk arrived; `/stream-down` sends one response chunk, then waits for the test;
/// `/headers` answers the request's headers, a `name: value` line each; `/trailers` answers
/// the request's trailers the same way and sends trailers of its own (`x-rt: 2`,
/// `x-session-user: app`). Any other path is `/echo` (callouts land there too).
pub struct Upstream {
    pub address: SocketAddr,
    first_chunk_arrived: Mutex<mpsc::UnboundedReceiver<Bytes>>,
    send_rest: Arc<Notify>,
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
async fn edge_dev(upstream: SocketAddr, fail_open: bool) -> (SocketAddr, oneshot::Sender<()>) {
    edge_dev_with(upstream, fail_open, true).await
}

/// The same with or without the filter (`--no-filter`).
async fn edge_dev_with(
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
        if let Err(err) =
            harness::dev::serve_on(serving, config, 1, filter, listener, shutdown).await
        {
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
        .header("x-probe", scenario)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// A POST whose body the test sends chunk by chunk through the returned sender.
fn streamed_post(
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
        .header("x-probe", scenario)
        .body(body_in)
        .unwrap();
    (body, request)
}

pub async fn text(response: Response<Incoming>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_reaches_the_upstream_before_the_client_has_sent_all_of_it() {
    let upstream = upstream().await;
    let (proxy, _stop) = edge_dev(upstream.address, false).await;
    let (mut body, request) = streamed_post("/stream-up", "plain", 1);
    let response = tokio::spawn(send(proxy, request));
    body.send_data(Bytes::from_static(b"first;")).await.unwrap();
    let first = tokio::time::timeout(PATIENCE, upstream.first_chunk_arrived.lock().await.recv())
        .await
        .expect("the first chunk did not reach the upstream while the request was still open");
    assert_eq!(first.as_deref(), Some(&b"first;"[..]));
    body.send_data(Bytes::from_static(b"second")).await.unwrap();
    drop(body);
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, "first;second");
}

/// `/stream-down` through `proxy`: the first chunk reaches the client while the upstream
/// still holds the rest; `filtered` says whether the probe saw the headers.
async fn assert_streams_down(proxy: SocketAddr, upstream: &Upstream, filtered: bool) {
    let response = send(proxy, get("/stream-down", "plain")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().contains_key("x-probe-seen"),
        filtered,
        "whether the filter saw the headers"
    );
    let mut body = response.into_body();
    let first = tokio::time::timeout(PATIENCE, body.frame())
        .await
        .expect("the first chunk did not reach the client while the upstream was still sending");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "first;");
    upstream.send_rest.notify_one();
    let rest = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest.to_bytes(), "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_body_reaches_the_client_before_the_upstream_has_sent_all_of_it() {
    let upstream = upstream().await;
    let (proxy, _stop) = edge_dev(upstream.address, false).await;
    assert_streams_down(proxy, &upstream, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_holds_the_body_sees_all_of_it_and_its_edit_goes_upstream() {
    let upstream = upstream().await;
    let (proxy, _stop) = edge_dev(upstream.address, false).await;
    let (mut body, request) = streamed_post("/echo", "body", 4);
    let response = tokio::spawn(send(proxy, request));
    for chunk in ["hello, ", "streaming ", "world"] {
        body.send_data(Bytes::from(chunk)).await.unwrap();
    }
    drop(body);
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, "HELLO, STREAMING WORLD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_reply_in_the_response_replaces_the_upstream_body() {
    let upstream = upstream().await;
    let (proxy, _stop) = edge_dev(upstream.address, false).await;
    let response = send(proxy, get("/stream-down", "local-in-response")).await;
    assert_eq!(response.status(), 502);
    assert_eq!(text(response).await, "replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_fails_the_stream_closed_and_the_vm_stays_failed() {
    let upstream = upstream().await;
    let (proxy, _stop) = edge_dev(upstream.address, false).await;
    let response = send(proxy, get("/echo", "trap")).await;
    assert_eq!(response.status(), 503);
    // One worker, whose VM is now failed: the next request is failed too, filter or not.
    let response = send(proxy, get("/echo", "plain")).await;
    assert_eq!(response.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_with_fail_open_lets_requests_through_without_the_filter() {
    let upstream = upstream().await;
    let (proxy, _stop) = edge_dev(upstream.address, true).await;
    let request = Request::post("/echo")
        .header("host", "app")
        .header("x-probe", "trap")
        .body(Full::new(Bytes::from_static(b"kept")))
        .unwrap();
    let response = send(proxy, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, "kept");
    let response = send(proxy, get("/echo", "plain")).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("x-probe-seen").is_none(),
        "the failed VM's filter no longer runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_filter_bodies_stream_straight_through() {
    let upstream = upstream().await;
    let (proxy, _stop) = edge_dev_with(upstream.address, false, false).await;
    assert_streams_down(proxy, &upstream, false).await;
    let echo = Request::post("/echo")
        .header("host", "app")
        .body(Full::new(Bytes::from_static(b"as is")))
        .unwrap();
    assert_eq!(text(send(proxy, echo).await).await, "as is");
}
