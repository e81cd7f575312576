//! `edge-dev`: a real HTTP/1.1 proxy that runs the filter's `.wasm` through this host for every
//! request, configured from the project's `envoy.yaml`. Several worker threads accept
//! connections, each running request headers (and body) through the filter on its own VM, in
//! the thread that serves the connection (the VMs share one shared-data store); it makes
//! the filter's callouts as real HTTP requests to the named clusters, forwards to the routed
//! cluster, and runs the response through the filter. Bodies stream through the filter chunk
//! by chunk in both directions, a few chunks in flight at most.

pub mod connection_options;
pub mod envoy_config;
pub mod header_mutation;
mod worker;

use crate::{Callout, CalloutReply, HeaderMap, Host, Message, Plugin, PluginConfig, Vm};
use bytes::Bytes;
use envoy_config::DevConfig;
use http_body_util::channel::{Channel, Sender};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use worker::{BodyOutcome, LocalVm, Msg, Outcome, Unanswered};

type HttpClient = Client<HttpConnector, ProxyBody>;

/// Hop-by-hop headers, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
];

/// Whether a header of a message goes onto the wire as it is: pseudo-headers become the
/// request or status line, hop-by-hop headers stay behind, and `content-length` goes on with
/// a streamed body (hyper frames by it) but is recomputed for a whole one.
fn forwardable(name: &[u8], streamed: bool) -> bool {
    !(name.starts_with(b":")
        || (name == b"content-length" && !streamed)
        || HOP_BY_HOP.iter().any(|h| h.as_bytes() == name))
}

/// What every worker thread shares: the configuration and, with the filter, the loaded
/// module and the host (shared data, clock) its VMs run on.
struct Shared {
    config: DevConfig,
    filter: Option<(Host, Plugin)>,
}

/// One worker thread's proxy: its own HTTP client (connection pool) and, with the filter, its
/// own VM, as Envoy gives each worker thread its own.
struct Proxy {
    shared: Arc<Shared>,
    vm: Option<Rc<LocalVm>>,
    client: HttpClient,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot load the filter module: {0}")]
    Plugin(String),
    #[error("a worker VM did not start: {0}")]
    Worker(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves `listener` on `workers` threads (at least one) until `shutdown` resolves. Each
/// thread accepts connections and serves them to the end on its own single-threaded runtime,
/// with the filter's VM in the same thread (as Envoy's workers): a request never waits on
/// another thread for the filter. Without `filter` the module is not loaded and requests go
/// straight to their route, on the same threads: the baseline the end-to-end benchmark
/// compares the filter against.
pub async fn serve(
    config: DevConfig,
    workers: usize,
    filter: bool,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DevError> {
    let filter = if filter {
        let host = Host::new();
        for name in config.clusters.keys() {
            host.add_cluster(name);
        }
        let plugin = Plugin::load(&host, &config.plugin.filename)
            .map_err(|e| DevError::Plugin(e.to_string()))?;
        Some((host, plugin))
    } else {
        None
    };
    let shared = Arc::new(Shared { config, filter });
    let listener = listener.into_std()?;
    let (stop, stopped) = watch::channel(false);
    let mut started = Vec::new();
    for i in 0..workers.max(1) {
        let (ready, is_ready) = oneshot::channel();
        let (shared, listener, stopped) = (shared.clone(), listener.try_clone()?, stopped.clone());
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker_thread(i, shared, listener, stopped, ready))?;
        started.push(is_ready);
    }
    for is_ready in started {
        is_ready
            .await
            .map_err(|_| DevError::Worker("the worker thread died while starting".into()))??;
    }
    shutdown.await;
    let _ = stop.send(true);
    Ok(())
}

/// A worker thread: its runtime, its VM, its accept loop. Reports on `ready` once it serves.
fn worker_thread(
    index: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    mut stopped: watch::Receiver<bool>,
    ready: oneshot::Sender<Result<(), DevError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(DevError::Io(err)));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let proxy = match Proxy::start(index, shared) {
            Ok(proxy) => Rc::new(proxy),
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => {
                let _ = ready.send(Err(DevError::Io(err)));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        if let Some(vm) = proxy.vm.clone() {
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(worker::TICK);
                loop {
                    tick.tick().await;
                    vm.handle(Msg::Tick);
                }
            });
        }
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    // Another worker may have taken the connection first.
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let proxy = proxy.clone();
                    tokio::task::spawn_local(async move {
                        let service = service_fn(move |request| handle(proxy.clone(), request));
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    });
                }
                _ = stopped.changed() => return,
            }
        }
    });
}

impl Proxy {
    /// The worker's HTTP client and, with the filter, its VM, on the shared host.
    fn start(index: usize, shared: Arc<Shared>) -> Result<Self, DevError> {
        // No Nagle on either side, as Envoy: headers and a streamed body go out as separate
        // writes, and waiting for the peer's delayed ACK would add ~40 ms to every response.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
        let config = &shared.config;
        let vm = match &shared.filter {
            None => None,
            Some((host, plugin)) => {
                let mut plugin_config =
                    PluginConfig::new(config.plugin.configuration.clone().into_bytes());
                plugin_config.name = config.plugin.name.clone();
                plugin_config.root_id = config.plugin.root_id.clone();
                plugin_config.vm_id = config.plugin.vm_id.clone();
                plugin_config.failure_policy = config.plugin.failure_policy;
                host.clock().advance_to(worker::now_nanos());
                let vm = Vm::start_named(plugin, plugin_config, &format!("worker-{index}"))
                    .map_err(|e| DevError::Worker(e.to_string()))?;
                let (clusters, client) = (config.clusters.clone(), client.clone());
                let runner: worker::CalloutRunner =
                    Box::new(move |callout: Callout, vm: Rc<LocalVm>| {
                        let address = clusters.get(&callout.cluster).cloned().unwrap_or_default();
                        let client = client.clone();
                        tokio::task::spawn_local(async move {
                            let token = callout.token;
                            let reply = call(&client, &address, callout).await;
                            vm.handle(Msg::CalloutDone { token, reply });
                        });
                    });
                Some(LocalVm::new(vm, host.clone(), runner))
            }
        };
        Ok(Self { shared, vm, client })
    }

    /// The address of the cluster that `path` routes to.
    fn route(&self, path: &str) -> Option<&str> {
        let config = &self.shared.config;
        config
            .route(path)
            .and_then(|cluster| config.clusters.get(cluster))
            .map(String::as_str)
    }
}

async fn handle(
    proxy: Rc<Proxy>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let Some(worker) = &proxy.vm else {
        return Ok(unfiltered(&proxy, request).await);
    };
    let (parts, body) = request.into_parts();
    let end_of_stream = body.is_end_stream();
    let (stream, upstream) = match ask(worker, |reply| Msg::RequestHeaders {
        headers: request_headers(&parts),
        end_of_stream,
        reply,
    })
    .await
    {
        Outcome::Client(message) => return Ok(whole_response(message)),
        Outcome::Upstream { stream, message } => (stream, message),
    };
    // From here on the stream is open in the VM: whatever ends this request (the client
    // hanging up included, which drops this future) ends the stream there too.
    let guard = StreamGuard {
        worker: worker.clone(),
        stream,
    };
    let upstream_body = if end_of_stream {
        whole(Bytes::new())
    } else {
        let (sender, body_out) = Channel::new(BODY_CHUNKS_IN_FLIGHT);
        tokio::task::spawn_local(pump(
            worker.clone(),
            stream,
            false,
            Source::Incoming(body),
            sender,
        ));
        body_out.boxed()
    };
    let path = upstream.header(":path").unwrap_or("/").to_string();
    let (headers, source) = match proxy.route(&path) {
        Some(address) => match send(&proxy.client, address, &upstream, upstream_body).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                (response_headers(&parts), Source::Incoming(body))
            }
            Err(text) => synthesized(503, text),
        },
        None => synthesized(404, "no route"),
    };
    let end_of_stream = source.is_end_stream();
    let message = match ask(worker, |reply| Msg::ResponseHeaders {
        stream,
        headers,
        end_of_stream,
        reply,
    })
    .await
    {
        Outcome::Client(message) => message,
        Outcome::Upstream { .. } => return Ok(plain(502, "the filter sent a response upstream")),
    };
    if message.end_of_stream {
        // Headers only, or a local reply that replaces the upstream's response.
        return Ok(whole_response(message));
    }
    let (mut sender, body_out) = Channel::new(BODY_CHUNKS_IN_FLIGHT);
    if !message.body.is_empty() {
        // Body the filter let through along with the headers; the channel is empty, so this
        // fits.
        let _ = sender.try_send(Frame::data(Bytes::from(message.body.clone())));
    }
    tokio::task::spawn_local(async move {
        pump(guard.worker.clone(), stream, true, source, sender).await;
        drop(guard);
    });
    Ok(streamed_response(&message, body_out.boxed()))
}

/// How many body chunks may wait between the filter and the peer before reading stops.
const BODY_CHUNKS_IN_FLIGHT: usize = 4;

/// A body failed part-way (the peer or the filter stopped it): the receiving side must see an
/// error, never a body that looks complete.
#[derive(Debug, thiserror::Error)]
#[error("the body was cut short: {0}")]
pub struct BodyCut(&'static str);

type ProxyBody = BoxBody<Bytes, BodyCut>;

fn whole(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Ends the stream in the VM when dropped (a no-op if it already ended).
struct StreamGuard {
    worker: Rc<LocalVm>,
    stream: u32,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.worker.handle(Msg::Abort {
            stream: self.stream,
        });
    }
}

/// Where a body comes from: the peer, or a whole body the proxy made up.
enum Source {
    Incoming(Incoming),
    Whole(Option<Bytes>),
}

impl Source {
    fn is_end_stream(&self) -> bool {
        match self {
            Source::Incoming(body) => body.is_end_stream(),
            Source::Whole(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    /// The next data chunk and whether it is the last; `None` at the end, an error when the
    /// peer broke off. Trailers are dropped (the filter does not see them either).
    async fn next(&mut self) -> Option<Result<Bytes, ()>> {
        match self {
            Source::Whole(bytes) => bytes.take().map(Ok),
            Source::Incoming(body) => loop {
                match body.frame().await? {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => return Some(Ok(data)),
                        Err(_trailers) => continue,
                    },
                    Err(_) => return Some(Err(())),
                }
            },
        }
    }
}

/// Moves one direction's body through the filter, chunk by chunk, to the receiving peer.
async fn pump(
    worker: Rc<LocalVm>,
    stream: u32,
    response: bool,
    mut source: Source,
    mut sender: Sender<Bytes, BodyCut>,
) {
    loop {
        let (chunk, end_of_stream) = match source.next().await {
            Some(Ok(chunk)) => (chunk, source.is_end_stream()),
            None => (Bytes::new(), true),
            Some(Err(())) => return sender.abort(BodyCut("the sending peer broke off")),
        };
        let outcome = ask(&worker, |reply| Msg::Body {
            stream,
            response,
            chunk,
            end_of_stream,
            reply,
        })
        .await;
        match outcome {
            BodyOutcome::Data { bytes, end } => {
                if !bytes.is_empty() && sender.send_data(bytes).await.is_err() {
                    // The receiving peer is gone; the guard ends the stream.
                    return;
                }
                if end {
                    return;
                }
                if end_of_stream {
                    // The filter has the last chunk but did not finish the body.
                    return sender.abort(BodyCut("the filter did not end the body"));
                }
            }
            BodyOutcome::Stopped => return sender.abort(BodyCut("the stream was stopped")),
        }
    }
}

/// Without a filter (`--no-filter`): the request and the response stream straight through.
async fn unfiltered(proxy: &Proxy, request: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = request.into_parts();
    let message = Message {
        headers: HeaderMap::from_pairs(&request_headers(&parts)),
        body: Vec::new(),
        trailers: None,
        end_of_stream: body.is_end_stream(),
    };
    let path = message.header(":path").unwrap_or("/");
    let Some(address) = proxy.route(path) else {
        return plain(404, "no route");
    };
    let body = match message.end_of_stream {
        true => whole(Bytes::new()),
        false => body.map_err(|_| BodyCut("the client broke off")).boxed(),
    };
    match send(&proxy.client, address, &message, body).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let message = Message {
                headers: HeaderMap::from_pairs(&response_headers(&parts)),
                body: Vec::new(),
                trailers: None,
                end_of_stream: false,
            };
            let body = body.map_err(|_| BodyCut("the upstream broke off")).boxed();
            streamed_response(&message, body)
        }
        Err(text) => plain(503, text),
    }
}

/// Hands an event to the worker's VM and waits for the filter's decision (ready at once
/// unless the filter paused, for a callout say).
async fn ask<T: Unanswered>(
    worker: &Rc<LocalVm>,
    message: impl FnOnce(oneshot::Sender<T>) -> Msg,
) -> T {
    let (tx, rx) = oneshot::channel();
    worker.handle(message(tx));
    rx.await.unwrap_or_else(|_| T::unanswered())
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The request as the filter sees it: pseudo-headers first, then the client's headers.
fn request_headers(parts: &hyper::http::request::Parts) -> Pairs {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = parts
        .headers
        .get(hyper::header::HOST)
        .map(|h| h.as_bytes())
        .or_else(|| parts.uri.authority().map(|a| a.as_str().as_bytes()))
        .unwrap_or_default();
    let mut headers = vec![
        (
            b":method".to_vec(),
            parts.method.as_str().as_bytes().to_vec(),
        ),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b":authority".to_vec(), authority.to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
    ];
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && !HOP_BY_HOP.contains(&name.as_str()) {
            headers.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
    }
    headers
}

fn response_headers(parts: &hyper::http::response::Parts) -> Pairs {
    let mut headers = vec![(
        b":status".to_vec(),
        parts.status.as_str().as_bytes().to_vec(),
    )];
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            headers.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
    }
    headers
}

/// Builds an HTTP request from a message's headers (pseudo-headers become the request line).
/// `content-length` is kept when the body streams (hyper then frames by it) and recomputed
/// when it is whole.
fn to_request(address: &str, message: &Message, body: ProxyBody) -> Option<Request<ProxyBody>> {
    let method = message.header(":method").unwrap_or("GET");
    let path = message.header(":path").unwrap_or("/");
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"));
    if let Some(authority) = message.header(":authority") {
        builder = builder.header(hyper::header::HOST, authority);
    }
    let streamed = !body.is_end_stream();
    for (name, value) in message.headers.iter() {
        if forwardable(name, streamed) {
            builder = builder.header(name, value);
        }
    }
    builder.body(body).ok()
}

/// Sends a request to a cluster and waits for the response headers; a connection failure
/// becomes Envoy's 503 text.
async fn send(
    client: &HttpClient,
    address: &str,
    message: &Message,
    body: ProxyBody,
) -> Result<Response<Incoming>, &'static str> {
    let Some(request) = to_request(address, message, body) else {
        return Err("malformed upstream request");
    };
    match tokio::time::timeout(Duration::from_secs(60), client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        _ => Err("upstream connect error or disconnect/reset before headers"),
    }
}

/// A callout, made for real. Envoy's async client answers a failed connection with a 503
/// through the success path; the callout timeout is the host clock's job.
async fn call(client: &HttpClient, address: &str, callout: Callout) -> Option<CalloutReply> {
    let message = Message {
        headers: callout.headers.clone(),
        body: Vec::new(),
        trailers: None,
        end_of_stream: true,
    };
    let body = whole(Bytes::from(callout.body));
    let (headers, body) = match send(client, address, &message, body).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (response_headers(&parts), body)
        }
        Err(text) => {
            let (headers, source) = synthesized(503, text);
            let body = match source {
                Source::Whole(bytes) => bytes.unwrap_or_default(),
                Source::Incoming(_) => Bytes::new(),
            };
            (headers, body)
        }
    };
    let status = headers
        .first()
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| b"503".to_vec());
    let mut reply = CalloutReply::with_raw_status(status).body(body.to_vec());
    for (name, value) in headers.iter().skip(1) {
        reply = reply.header(&String::from_utf8_lossy(name), value);
    }
    Some(reply)
}

/// A response the proxy makes up itself (no route, upstream unreachable), as Envoy would.
fn synthesized(status: u16, text: &str) -> (Pairs, Source) {
    let body = Bytes::from(format!("{text}\n"));
    let headers = vec![
        (b":status".to_vec(), status.to_string().into_bytes()),
        (b"content-type".to_vec(), b"text/plain".to_vec()),
        (
            b"content-length".to_vec(),
            body.len().to_string().into_bytes(),
        ),
    ];
    (headers, Source::Whole(Some(body)))
}

fn response_builder(message: &Message, streamed: bool) -> hyper::http::response::Builder {
    let mut builder = Response::builder().status(message.status().unwrap_or(502));
    for (name, value) in message.headers.iter() {
        if forwardable(name, streamed) {
            builder = builder.header(name, value);
        }
    }
    builder
}

/// A response whose body is all in `message` (a local reply, or headers only).
fn whole_response(message: Message) -> Response<ProxyBody> {
    response_builder(&message, false)
        .body(whole(Bytes::from(message.body)))
        .unwrap_or_else(|_| plain(502, "malformed response"))
}

/// A response whose body follows through the filter.
fn streamed_response(message: &Message, body: ProxyBody) -> Response<ProxyBody> {
    response_builder(message, true)
        .body(body)
        .unwrap_or_else(|_| plain(502, "malformed response"))
}

fn plain(status: u16, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(whole(Bytes::from(format!("{text}\n"))));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    response
}
