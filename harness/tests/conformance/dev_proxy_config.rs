//! `edge-dev` carrying trailers both ways through the filter.

use crate::dev_proxy::{Setup, send, start, upstream};
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::channel::Channel;
use hyper::Request;
use std::convert::Infallible;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

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
        .header("x-probe", "plain")
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
