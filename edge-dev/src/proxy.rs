//! One worker's proxy and one request's way through it: Envoy's codec rule and the
//! `header_mutation` removals, the filter on the worker's VM, the routed cluster, and the
//! response back through the filter, bodies streaming both ways.

use crate::body::{
    BODY_CHUNKS_IN_FLIGHT, BodyCut, CheckedTrailers, ProxyBody, Source, pump, whole,
};
use crate::connection_options::Codec;
use crate::header_mutation;
use crate::server::{DevError, Shared, plugin_config};
use crate::wire::{
    HttpClient, Pairs, bad_request, call, plain, request_headers, response_headers, send,
    streamed_response, synthesized, whole_response,
};
use crate::worker::{self, LocalVm, Msg, Outcome, Unanswered};
use bytes::Bytes;
use harness::{Callout, HeaderMap, Message, Side, Vm};
use http_body_util::BodyExt;
use http_body_util::channel::Channel;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::oneshot;

/// One worker thread's proxy: its own HTTP client (connection pool) and, with the filter, its
/// own VM, as Envoy gives each worker thread its own.
pub(crate) struct Proxy {
    shared: Arc<Shared>,
    pub(crate) vm: Option<Rc<LocalVm>>,
    client: HttpClient,
}

impl Proxy {
    /// The worker's HTTP client and, with the filter, its VM, on the shared host. A worker
    /// whose plugin does not start serves without it (`Vm::start_worker` says so in the log).
    pub(crate) fn start(index: usize, shared: Arc<Shared>) -> Result<Self, DevError> {
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

pub(crate) async fn handle(
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
pub(crate) async fn ask<T: Unanswered>(
    worker: &Rc<LocalVm>,
    message: impl FnOnce(oneshot::Sender<T>) -> Msg,
) -> T {
    let (tx, rx) = oneshot::channel();
    worker.handle(message(tx));
    rx.await.unwrap_or_else(|_| T::unanswered())
}
