//! Bodies stream through the filter in both directions (a proxy that buffered would deadlock
//! these tests, which then time out), a filter that buffers sees the whole body, and a trap
//! fails the stream as Envoy does.

use crate::support::{
    PATIENCE, Upstream, edge_dev, edge_dev_with, get, send, streamed_post, text, upstream,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use probe_scenarios as scenario;
use std::net::SocketAddr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_reaches_the_upstream_before_the_client_has_sent_all_of_it() {
    let upstream = upstream().await;
    let (proxy, _stop) = edge_dev(upstream.address, false).await;
    let (mut body, request) = streamed_post("/stream-up", scenario::PLAIN, 1);
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
    let response = send(proxy, get("/stream-down", scenario::PLAIN)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().contains_key(scenario::SEEN_HEADER),
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
    let (mut body, request) = streamed_post("/echo", scenario::BODY, 4);
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
    let response = send(proxy, get("/stream-down", scenario::LOCAL_IN_RESPONSE)).await;
    assert_eq!(response.status(), 502);
    assert_eq!(text(response).await, "replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_fails_the_stream_closed_and_the_vm_stays_failed() {
    let upstream = upstream().await;
    let (proxy, _stop) = edge_dev(upstream.address, false).await;
    let response = send(proxy, get("/echo", scenario::TRAP)).await;
    assert_eq!(response.status(), 503);
    // One worker, whose VM is now failed: the next request is failed too, filter or not.
    let response = send(proxy, get("/echo", scenario::PLAIN)).await;
    assert_eq!(response.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_with_fail_open_lets_requests_through_without_the_filter() {
    let upstream = upstream().await;
    let (proxy, _stop) = edge_dev(upstream.address, true).await;
    let request = Request::post("/echo")
        .header("host", "app")
        .header(scenario::NAME_HEADER, scenario::TRAP)
        .body(Full::new(Bytes::from_static(b"kept")))
        .unwrap();
    let response = send(proxy, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(text(response).await, "kept");
    let response = send(proxy, get("/echo", scenario::PLAIN)).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get(scenario::SEEN_HEADER).is_none(),
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
