//! `edge-dev` honouring what `envoy.yaml` sets beyond routes and the plugin: the codec's
//! underscore rule, `header_mutation` removals, the failure policy and workers without the
//! filter, the stream idle timeout; and trailers carried both ways through the filter.

use crate::support::{PATIENCE, Setup, get, send, start, text, upstream};
use bytes::Bytes;
use edge_dev::connection_options::{DROPPED_COUNTER, REJECTED_COUNTER};
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use probe_scenarios as scenario;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn with_header(path: &str, name: &str, value: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "app")
        .header(scenario::NAME_HEADER, scenario::PLAIN)
        .header(name, value)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Trailers reach the filter and go on as it left them, both ways (the probe removes
/// `x-session-user` and adds `x-added` in each trailers callback). Over HTTP/1, hyper sends
/// only the trailers a `trailer` header announced, and a response's only to a client that
/// sent `te: trailers`; `edge-dev` passes both on (`te` as Envoy sanitizes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_go_through_the_filter_both_ways() {
    let upstream = upstream().await;
    let running = start(upstream.address, Setup::default()).await.unwrap();
    let (mut body, body_in) = Channel::<Bytes, Infallible>::new(2);
    let request = Request::post("/trailers")
        .header("host", "app")
        .header(scenario::NAME_HEADER, scenario::PLAIN)
        .header("trailer", "x-t, x-session-user, x-added")
        .header("te", "trailers")
        .body(body_in)
        .unwrap();
    let response = tokio::spawn(send(running.address, request));
    body.send_data(Bytes::from_static(b"payload"))
        .await
        .unwrap();
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("x-t", "1".parse().unwrap());
    trailers.insert("x-session-user", "forged".parse().unwrap());
    body.send_trailers(trailers).await.unwrap();
    drop(body);
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap();
    let seen_upstream = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
    assert!(seen_upstream.contains("x-t: 1"), "{seen_upstream}");
    assert!(seen_upstream.contains("x-added: 1"), "{seen_upstream}");
    assert!(!seen_upstream.contains("x-session-user"), "{seen_upstream}");
    assert_eq!(trailers.get("x-rt").unwrap(), "2");
    assert_eq!(trailers.get("x-added").unwrap(), "1");
    assert!(trailers.get("x-session-user").is_none(), "{trailers:?}");
    assert!(running.host.logged("probe: request_trailers n=2"));
    assert!(running.host.logged("probe: response_trailers n=2"));
}

/// HTTP/2 with prior knowledge (h2c), which Envoy's AUTO codec accepts on a plain-text
/// listener, and over which Envoy passes trailers on by default (its HTTP/1 codec drops them
/// unless `enable_trailers`). The upstream leg is HTTP/1, so the client announces its
/// trailers in a `trailer` header for hyper to send them on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served_and_their_trailers_go_through_the_filter() {
    let upstream = upstream().await;
    let running = start(upstream.address, Setup::default()).await.unwrap();
    let socket = tokio::net::TcpStream::connect(running.address)
        .await
        .unwrap();
    let (mut client, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(socket),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let (mut body, body_in) = Channel::<Bytes, Infallible>::new(2);
    let request = Request::post("http://app/trailers")
        .header(scenario::NAME_HEADER, scenario::PLAIN)
        .header("trailer", "x-t, x-session-user, x-added")
        .header("te", "trailers")
        .body(body_in)
        .unwrap();
    let response = tokio::spawn(async move { client.send_request(request).await });
    body.send_data(Bytes::from_static(b"payload"))
        .await
        .unwrap();
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("x-t", "1".parse().unwrap());
    trailers.insert("x-session-user", "forged".parse().unwrap());
    body.send_trailers(trailers).await.unwrap();
    drop(body);
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get(scenario::SEEN_HEADER).unwrap(), "1");
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap();
    let seen_upstream = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
    assert!(seen_upstream.contains("x-t: 1"), "{seen_upstream}");
    assert!(!seen_upstream.contains("x-session-user"), "{seen_upstream}");
    assert_eq!(trailers.get("x-added").unwrap(), "1");
    assert!(trailers.get("x-session-user").is_none(), "{trailers:?}");
}

/// `DROP_HEADER`: Envoy's codec drops every request header whose name has `_` before any
/// filter (`checkHeaderNameForUnderscores`) and counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_header_drops_underscored_names_before_any_filter_and_counts() {
    let upstream = upstream().await;
    let setup = Setup {
        connection: "common_http_protocol_options: { headers_with_underscores_action: DROP_HEADER }",
        ..Setup::default()
    };
    let running = start(upstream.address, setup).await.unwrap();
    let response = send(
        running.address,
        with_header("/headers", "x_session_user", "forged"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let seen = text(response).await;
    assert!(!seen.contains("x_session_user"), "{seen}");
    assert!(seen.contains("x-probe: plain"), "{seen}");
    assert_eq!(running.host.counter(DROPPED_COUNTER), 1);
    let response = send(
        running.address,
        with_header("/headers", "x-session-user", "1"),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        running.host.counter(DROPPED_COUNTER),
        1,
        "dashes are not counted"
    );
}

/// `REJECT_REQUEST`: Envoy's HTTP/1 codec answers 400 "Bad Request" before any filter runs,
/// counts the request, and closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_request_answers_400_before_any_filter() {
    let upstream = upstream().await;
    let setup = Setup {
        connection: "common_http_protocol_options: { headers_with_underscores_action: REJECT_REQUEST }",
        ..Setup::default()
    };
    let running = start(upstream.address, setup).await.unwrap();
    let response = send(
        running.address,
        with_header("/headers", "x_session_user", "forged"),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers().get("connection").unwrap(), "close");
    assert_eq!(text(response).await, "Bad Request");
    assert_eq!(running.host.counter(REJECTED_COUNTER), 1);
    assert!(
        !running.host.logged("probe: request_headers"),
        "the filter never saw it"
    );
    let response = send(
        running.address,
        with_header("/headers", "x-session-user", "1"),
    )
    .await;
    assert_eq!(response.status(), 200);
}

/// A `header_mutation` filter placed before the Wasm filter removes its request headers
/// before the Wasm filter (and so the upstream) sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_mutation_removes_its_headers_where_it_sits() {
    let upstream = upstream().await;
    let before = r#"{ name: envoy.filters.http.header_mutation, typed_config: { mutations: { request_mutations: [ { remove: x-session-state } ] } } }"#;
    let setup = Setup {
        filters_before: &[before],
        ..Setup::default()
    };
    let running = start(upstream.address, setup).await.unwrap();
    let mut request = with_header("/headers", "x-session-state", "valid");
    request.headers_mut().insert("x-kept", "1".parse().unwrap());
    let response = send(running.address, request).await;
    assert_eq!(response.status(), 200);
    let seen = text(response).await;
    assert!(!seen.contains("x-session-state"), "{seen}");
    assert!(seen.contains("x-kept: 1"), "{seen}");
    assert!(
        running.host.logged("probe: request_headers plain n=6"),
        "the filter saw 6 headers, not 7"
    );
}

/// Envoy installs no Wasm filter on a worker whose plugin does not start (`createFilter`),
/// even fail-closed; a `header_mutation` filter placed before it still strips its headers.
/// The probe's `start-once` lets only the first VM (edge-dev's base VM) start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_without_the_filter_serves_and_header_mutation_still_strips() {
    let upstream = upstream().await;
    let mutation = r#"{ name: envoy.filters.http.header_mutation, typed_config: { mutations: { request_mutations: [ { remove: x-session-state } ] } } }"#;
    let setup = Setup {
        policy: "failure_policy: FAIL_CLOSED",
        words: "start-once",
        filters_before: &[mutation],
        ..Setup::default()
    };
    let running = start(upstream.address, setup).await.unwrap();
    assert!(running.host.logged("runs WITHOUT the filter"));
    let mut request = with_header("/headers", "x-session-state", "valid");
    request
        .headers_mut()
        .insert("x-session-user", "forged".parse().unwrap());
    let response = send(running.address, request).await;
    assert_eq!(response.status(), 200, "no 503: there is no filter to fail");
    assert!(response.headers().get(scenario::SEEN_HEADER).is_none());
    let seen = text(response).await;
    assert!(!seen.contains("x-session-state"), "{seen}");
    assert!(
        seen.contains("x-session-user: forged"),
        "what only the Wasm filter strips gets through: {seen}"
    );
}

/// A plugin that does not start at all (Envoy's base VM) stops `edge-dev` from starting, as
/// Envoy refuses such a configuration at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_does_not_start_stops_edge_dev() {
    let upstream = upstream().await;
    let setup = Setup {
        words: "refuse",
        ..Setup::default()
    };
    match start(upstream.address, setup).await {
        Err(err) => assert!(err.to_string().contains("does not start"), "{err}"),
        Ok(_) => panic!("edge-dev started with a plugin that refuses its configuration"),
    }
}

/// A trap in the callout's callback leaves the stream paused (cpp-host's
/// `onHttpCallResponse` has no `CHECK_FAIL_HTTP`); edge-dev ends it at `stream_idle_timeout`
/// as Envoy does, through the failed filter: 503 when fail-closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_a_callout_callback_hangs_the_stream_until_the_idle_timeout() {
    let upstream = upstream().await;
    let setup = Setup {
        connection: "stream_idle_timeout: 0.5s",
        ..Setup::default()
    };
    let running = start(upstream.address, setup).await.unwrap();
    let began = Instant::now();
    let response = tokio::time::timeout(
        PATIENCE,
        send(running.address, get("/echo", scenario::CALLOUT_TRAP)),
    )
    .await
    .unwrap();
    assert!(
        began.elapsed() >= Duration::from_millis(500),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(response.status(), 503);
    assert!(
        running
            .host
            .logged("trapped in proxy_on_http_call_response")
    );
}

/// Every kept log line also goes to the host's sink as it comes (the `edge-dev` binary
/// prints them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_reach_the_sink_as_they_come() {
    let upstream = upstream().await;
    let running = start(upstream.address, Setup::default()).await.unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    running
        .host
        .set_log_sink(move |line| sink.lock().unwrap().push(line.to_string()));
    let response = send(running.address, get("/echo", scenario::PLAIN)).await;
    assert_eq!(response.status(), 200);
    let lines = lines.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l == "worker-0 info: probe: request_headers plain n=5 eos=true"),
        "{lines:?}"
    );
}
