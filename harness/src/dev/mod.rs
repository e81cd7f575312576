//! `edge-dev`: a real HTTP/1.1 proxy that runs the filter's `.wasm` through this host for every
//! request, configured from the project's `envoy.yaml`. It listens, runs request headers (and
//! body) through the filter on one of several worker VMs sharing one shared-data store, makes
//! the filter's callouts as real HTTP requests to the named clusters, forwards to the routed
//! cluster, and runs the response through the filter. Bodies are buffered whole (a dev proxy;
//! Envoy streams them).

pub mod envoy_config;
mod worker;

use crate::{Callout, CalloutReply, HeaderMap, Host, Message, Plugin, PluginConfig};
use bytes::Bytes;
use envoy_config::DevConfig;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use worker::{Msg, Outcome};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

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
/// request or status line, `content-length` is recomputed, hop-by-hop headers stay behind.
fn forwardable(name: &[u8]) -> bool {
    !(name.starts_with(b":")
        || name == b"content-length"
        || HOP_BY_HOP.iter().any(|h| h.as_bytes() == name))
}

struct Proxy {
    config: DevConfig,
    workers: Vec<mpsc::Sender<Msg>>,
    next: AtomicUsize,
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

/// Starts the workers and serves `listener` until `shutdown` resolves. With no workers the
/// filter is not loaded and requests go straight to their route: the baseline the end-to-end
/// benchmark compares the filter against.
pub async fn serve(
    config: DevConfig,
    workers: usize,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DevError> {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let senders = if workers == 0 {
        Vec::new()
    } else {
        start_workers(&config, workers, &client)?
    };
    let proxy = Arc::new(Proxy {
        config,
        workers: senders,
        next: AtomicUsize::new(0),
        client,
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(_) => continue,
                };
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(proxy.clone(), request));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            () = &mut shutdown => return Ok(()),
        }
    }
}

/// Loads the filter and starts one VM per worker thread, all on one host (shared data).
fn start_workers(
    config: &DevConfig,
    workers: usize,
    client: &HttpClient,
) -> Result<Vec<mpsc::Sender<Msg>>, DevError> {
    let host = Host::new();
    for name in config.clusters.keys() {
        host.add_cluster(name);
    }
    let plugin = Plugin::load(&host, &config.plugin.filename)
        .map_err(|e| DevError::Plugin(e.to_string()))?;
    let runtime = tokio::runtime::Handle::current();
    let mut senders = Vec::new();
    for i in 0..workers {
        let mut plugin_config = PluginConfig::new(config.plugin.configuration.clone().into_bytes());
        plugin_config.name = config.plugin.name.clone();
        plugin_config.root_id = config.plugin.root_id.clone();
        plugin_config.vm_id = config.plugin.vm_id.clone();
        plugin_config.fail_open = config.plugin.fail_open;
        let clusters = config.clusters.clone();
        let (client, runtime) = (client.clone(), runtime.clone());
        let runner: worker::CalloutRunner =
            Box::new(move |callout: Callout, reply_to: mpsc::Sender<Msg>| {
                let address = clusters.get(&callout.cluster).cloned().unwrap_or_default();
                let client = client.clone();
                runtime.spawn(async move {
                    let token = callout.token;
                    let reply = call(&client, &address, callout).await;
                    let _ = reply_to.send(Msg::CalloutDone { token, reply });
                });
            });
        let sender = worker::spawn(format!("worker-{i}"), plugin.clone(), plugin_config, runner)
            .map_err(DevError::Worker)?;
        senders.push(sender);
    }
    Ok(senders)
}

async fn handle(
    proxy: Arc<Proxy>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(plain(400, "cannot read the request body")),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let authority = parts
        .headers
        .get(hyper::header::HOST)
        .map(|h| h.as_bytes().to_vec())
        .or_else(|| {
            parts
                .uri
                .authority()
                .map(|a| a.as_str().as_bytes().to_vec())
        })
        .unwrap_or_default();
    let mut headers = vec![
        (
            b":method".to_vec(),
            parts.method.as_str().as_bytes().to_vec(),
        ),
        (b":path".to_vec(), path.into_bytes()),
        (b":authority".to_vec(), authority),
        (b":scheme".to_vec(), b"http".to_vec()),
    ];
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && !HOP_BY_HOP.contains(&name.as_str()) {
            headers.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
    }
    let Some(worker) = proxy
        .workers
        .get(proxy.next.fetch_add(1, Ordering::Relaxed) % proxy.workers.len().max(1))
    else {
        // No filter: straight to the route.
        let message = Message {
            headers: HeaderMap::from_pairs(&headers),
            body: body.to_vec(),
            end_of_stream: true,
        };
        let (headers, body) = route(&proxy, &message).await;
        return Ok(to_response(Message {
            headers: HeaderMap::from_pairs(&headers),
            body: body.to_vec(),
            end_of_stream: true,
        }));
    };
    let (stream, upstream) = match ask(worker, |reply| Msg::Request {
        headers,
        body,
        reply,
    })
    .await
    {
        Outcome::Client(message) => return Ok(to_response(message)),
        Outcome::Upstream { stream, message } => (stream, message),
    };
    let (headers, body) = route(&proxy, &upstream).await;
    Ok(
        match ask(worker, |reply| Msg::Response {
            stream,
            headers,
            body,
            reply,
        })
        .await
        {
            Outcome::Client(message) => to_response(message),
            Outcome::Upstream { .. } => plain(502, "the filter sent a response upstream"),
        },
    )
}

/// Sends a request to the cluster its path routes to.
async fn route(proxy: &Proxy, message: &Message) -> (Vec<(Vec<u8>, Vec<u8>)>, Bytes) {
    let path = message.header(":path").unwrap_or("/");
    match proxy
        .config
        .route(path)
        .and_then(|cluster| proxy.config.clusters.get(cluster))
    {
        Some(address) => forward(&proxy.client, address, message).await,
        None => synthesized(404, "no route"),
    }
}

async fn ask(
    worker: &mpsc::Sender<Msg>,
    message: impl FnOnce(oneshot::Sender<Outcome>) -> Msg,
) -> Outcome {
    let (tx, rx) = oneshot::channel();
    if worker.send(message(tx)).is_err() {
        return Outcome::Client(worker::service_unavailable());
    }
    rx.await
        .unwrap_or_else(|_| Outcome::Client(worker::service_unavailable()))
}

/// Builds an HTTP request from a message's headers (pseudo-headers become the request line).
fn to_request(address: &str, message: &Message) -> Option<Request<Full<Bytes>>> {
    let method = message.header(":method").unwrap_or("GET");
    let path = message.header(":path").unwrap_or("/");
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{address}{path}"));
    if let Some(authority) = message.header(":authority") {
        builder = builder.header(hyper::header::HOST, authority);
    }
    for (name, value) in message.headers.iter() {
        if !forwardable(name) {
            continue;
        }
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(message.body.clone())))
        .ok()
}

/// Sends a request to a cluster; a connection failure becomes Envoy's 503.
async fn forward(
    client: &HttpClient,
    address: &str,
    message: &Message,
) -> (Vec<(Vec<u8>, Vec<u8>)>, Bytes) {
    let Some(request) = to_request(address, message) else {
        return synthesized(502, "malformed upstream request");
    };
    let response =
        match tokio::time::timeout(Duration::from_secs(60), client.request(request)).await {
            Ok(Ok(response)) => response,
            _ => {
                return synthesized(
                    503,
                    "upstream connect error or disconnect/reset before headers",
                );
            }
        };
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers = vec![(
        b":status".to_vec(),
        parts.status.as_str().as_bytes().to_vec(),
    )];
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != hyper::header::CONTENT_LENGTH {
            headers.push((name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
    }
    (headers, body)
}

/// A callout, made for real. Envoy's async client answers a failed connection with a 503
/// through the success path; the callout timeout is the host clock's job.
async fn call(client: &HttpClient, address: &str, callout: Callout) -> Option<CalloutReply> {
    let message = Message {
        headers: callout.headers.clone(),
        body: callout.body.clone(),
        end_of_stream: true,
    };
    let (headers, body) = forward(client, address, &message).await;
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

fn synthesized(status: u16, text: &str) -> (Vec<(Vec<u8>, Vec<u8>)>, Bytes) {
    (
        vec![
            (b":status".to_vec(), status.to_string().into_bytes()),
            (b"content-type".to_vec(), b"text/plain".to_vec()),
        ],
        Bytes::from(format!("{text}\n")),
    )
}

fn to_response(message: Message) -> Response<Full<Bytes>> {
    let status = message.status().unwrap_or(502);
    let mut builder = Response::builder().status(status);
    for (name, value) in message.headers.iter() {
        if !forwardable(name) {
            continue;
        }
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(message.body)))
        .unwrap_or_else(|_| plain(502, "malformed response"))
}

fn plain(status: u16, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    response
}
