use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_answers_503_in_time_and_recovers_without_a_restart() {
    let uri = mongodb_uri();
    let proxy = testkit::FaultyLink::start(testkit::single_host(&uri).0).await;
    let uri = testkit::through(&uri, proxy.addr);
    let app = spawn_with(&uri, &unique_database(), |c| c.db_timeout_ms = 500).await;
    let created = app.create(json!({"data": {"a": 1}})).await;
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());

    proxy.cut();
    for (method, url, body) in [
        (Method::GET, path.clone(), None),
        (Method::POST, "/v1/sessions".to_string(), Some(json!({}))),
        (Method::PATCH, path.clone(), Some(json!({"set": {"b": 2}}))),
    ] {
        let started = Instant::now();
        let (status, body) = app.call(method.clone(), &url, body).await;
        let took = started.elapsed();
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {url}: {body}"
        );
        assert_eq!(body["error"], "unavailable");
        assert!(
            took < Duration::from_millis(2_000),
            "{method} took {took:?}, the timeout is 500 ms"
        );
    }
    assert_eq!(
        app.call_with_token(Method::GET, "/readyz", None, None)
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = app.call(Method::GET, &path, None).await;
        if status == StatusCode::OK {
            assert_eq!(
                body["data"],
                json!({"a": 1}),
                "nothing was lost or half-written"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not recovered 20 s after the database came back: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.call_with_token(Method::GET, "/readyz", None, None)
            .await
            .0,
        StatusCode::OK
    );
}
