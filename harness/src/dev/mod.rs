//! `edge-dev`: a real HTTP proxy (HTTP/1.1, and HTTP/2 with prior knowledge from clients) that
//! runs the filter's `.wasm` through this host for every request, configured from the
//! project's `envoy.yaml`. Several worker threads accept
//! connections, each running the request through the filter on its own VM, in the thread that
//! serves the connection (the VMs share one shared-data store); it makes the filter's callouts
//! as real HTTP requests to the named clusters, forwards to the routed cluster, and runs the
//! response through the filter. Bodies stream through the filter chunk by chunk in both
//! directions, a few chunks in flight at most, and trailers follow them.
//!
//! Before any filter, as Envoy's codec does, the connection manager's
//! `headers_with_underscores_action` applies to the request's headers (and trailers); then
//! the `header_mutation` filters placed before the Wasm filter remove their headers. A
//! worker whose plugin does not start runs without the Wasm filter, as an Envoy worker does,
//! and says so in the log; a plugin that does not start at all stops `edge-dev` from starting.

mod body;
pub mod connection_options;
pub mod envoy_config;
pub mod header_mutation;
mod wire;
mod worker;

use crate::{Callout, HeaderMap, Host, Message, Plugin, PluginConfig, Side, Vm};
use body::{BODY_CHUNKS_IN_FLIGHT, BodyCut, CheckedTrailers, ProxyBody, Source, pump, whole};
use bytes::Bytes;
use connection_options::Codec;
use envoy_config::DevConfig;
use http_body_util::BodyExt;
use http_body_util::channel::Channel;
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use wire::{
    HttpClient, Pairs, bad_request, call, plain, request_headers, response_headers, send,
    streamed_response, synthesized, whole_response,
};
use worker::{LocalVm, Msg, Outcome, Unanswered};

/// What every worker thread shares: the configuration, the host (stats and log; with the
/// filter also the shared data and clock its VMs run on) and, with the filter, the module.
struct Shared {
    config: DevConfig,
    host: Host,
    plugin: Option<Plugin>,
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
    #[error("a worker did not start: {0}")]
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
    serve_on(Host::new(), config, workers, filter, listener, shutdown).await
}

/// Like [`serve`], on a host the caller keeps: its stats (the codec's counters among them)
/// and its log (the `edge-dev` binary prints each line as it comes).
pub async fn serve_on(
    host: Host,
    config: DevConfig,
    workers: usize,
    filter: bool,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DevError> {
    let plugin = if filter {
        for name in config.clusters.keys() {
            host.add_cluster(name);
        }
        let plugin = Plugin::load(&host, &config.plugin.filename)
            .map_err(|e| DevError::Plugin(e.to_string()))?;
        // Envoy starts the plugin once before its workers (the base VM); a plugin that does
        // not start there is refused, and Envoy does not start.
        host.clock().advance_to(worker::now_nanos());
        Vm::start_named(&plugin, plugin_config(&config), "main")
            .map_err(|e| DevError::Plugin(format!("the plugin does not start: {e}")))?;
        Some(plugin)
    } else {
        None
    };
    let shared = Arc::new(Shared {
        config,
        host,
        plugin,
    });
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

/// Runs an HTTP/2 connection's streams on the worker's own thread, where its VM lives.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

/// What Envoy's `PluginConfig` gives the plugin, from `envoy.yaml`.
fn plugin_config(config: &DevConfig) -> PluginConfig {
    let mut plugin_config = PluginConfig::new(config.plugin.configuration.clone().into_bytes());
    plugin_config.name = config.plugin.name.clone();
    plugin_config.root_id = config.plugin.root_id.clone();
    plugin_config.vm_id = config.plugin.vm_id.clone();
    plugin_config.failure_policy = config.plugin.failure_policy;
    plugin_config
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
                        // HTTP/1.1, or HTTP/2 with prior knowledge (h2c), as Envoy's codec_type
                        // AUTO tells them apart on a plain-text listener.
                        let _ = auto::Builder::new(LocalExec)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                _ = stopped.changed() => return,
            }
        }
    });
}

impl Proxy {
    /// The worker's HTTP client and, with the filter, its VM, on the shared host. A worker
    /// whose plugin does not start serves without it (`Vm::start_worker` says so in the log).
    fn start(index: usize, shared: Arc<Shared>) -> Result<Self, DevError> {
        // No Nagle on either side, as Envoy: headers and a streamed body go out as separate
        // writes, and waiting for the peer's delayed ACK would add ~40 ms to every response.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
        let config = &shared.config;
        let host = &shared.host;
        let vm = match &shared.plugin {
            None => None,
            Some(plugin) => {
                host.clock().advance_to(worker::now_nanos());
                let vm =
                    Vm::start_worker(plugin, plugin_config(config), &format!("worker-{index}"));
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
                let idle_timeout = config.connection.stream_idle_timeout;
                Some(LocalVm::new(vm, host.clone(), runner, idle_timeout))
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

    fn codec(&self) -> Codec {
        Codec {
            underscores: self.shared.config.connection.underscores,
            host: self.shared.host.clone(),
        }
    }
}

async fn handle(
    proxy: Rc<Proxy>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let mut headers = request_headers(&parts);
    // Envoy's codec, then the header_mutation filters placed before the Wasm filter.
    if proxy.codec().check(&mut headers).is_err() {
        return Ok(bad_request());
    }
    let removals = &proxy.shared.config.request_removals;
    header_mutation::remove(&removals.before_filter, &mut headers);
    let Some(worker) = &proxy.vm else {
        return Ok(unfiltered(&proxy, headers, body).await);
    };
    let end_of_stream = body.is_end_stream();
    let (stream, mut upstream) = match ask(worker, |reply| Msg::RequestHeaders {
        headers,
        end_of_stream,
        reply,
    })
    .await
    {
        Outcome::Client(message) => return Ok(whole_response(message)),
        Outcome::Upstream { stream, message } => (stream, message),
    };
    for name in &removals.after_filter {
        upstream.headers.remove(name.as_bytes());
    }
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
            Side::Request,
            Source::Incoming(body),
            sender,
            Some(proxy.codec()),
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
        pump(
            guard.worker.clone(),
            stream,
            Side::Response,
            source,
            sender,
            None,
        )
        .await;
        drop(guard);
    });
    Ok(streamed_response(&message, body_out.boxed()))
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

/// Without a filter (`--no-filter`): the request and the response stream straight through,
/// past the codec's rule and the `header_mutation` removals.
async fn unfiltered(proxy: &Proxy, mut headers: Pairs, body: Incoming) -> Response<ProxyBody> {
    header_mutation::remove(
        &proxy.shared.config.request_removals.after_filter,
        &mut headers,
    );
    let message = Message {
        headers: HeaderMap::from_pairs(&headers),
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
        false => CheckedTrailers {
            inner: body,
            codec: proxy.codec(),
        }
        .boxed(),
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
            let body = body
                .map_err(|_| BodyCut::new("the upstream broke off"))
                .boxed();
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
