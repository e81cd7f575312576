use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn v1_needs_the_right_bearer_token() {
    let app = spawn().await;
    let id = proto::SessionId::from_bytes(&[1; 32]);
    let routes = [
        (Method::GET, format!("/v1/sessions/{}", id.as_str())),
        (Method::POST, "/v1/sessions".to_string()),
        (Method::PATCH, format!("/v1/sessions/{}", id.as_str())),
        (Method::DELETE, format!("/v1/sessions/{}", id.as_str())),
        (Method::POST, format!("/v1/sessions/{}/cycle", id.as_str())),
        (Method::GET, "/v1/users/u/sessions".to_string()),
        (Method::DELETE, "/v1/users/u/sessions".to_string()),
        (
            Method::DELETE,
            format!("/v1/users/u/sessions/{}", id.handle()),
        ),
        (Method::POST, "/v1/sessions/seen".to_string()),
        (Method::GET, "/v1/revocations".to_string()),
        (Method::GET, "/v1/revocations?after=start".to_string()),
        (Method::POST, "/v1/revocations".to_string()),
    ];
    // Near misses of the right token: one character short, long, changed, and in capitals.
    let last = TOKEN.len() - 1;
    let near_misses = [
        TOKEN[..last].to_string(),
        format!("{TOKEN}f"),
        format!("{}g", &TOKEN[..last]),
        TOKEN.to_uppercase(),
    ];
    for (method, path) in routes {
        let wrong = [None, Some("wrong-token"), Some("")];
        for token in wrong
            .into_iter()
            .chain(near_misses.iter().map(|t| Some(t.as_str())))
        {
            let (status, body) = app
                .call_with_token(method.clone(), &path, Some(json!({})), token)
                .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}"
            );
            assert_eq!(body["error"], "unauthorized");
        }
    }
    let raw = app
        .client
        .get(app.url("/v1/users/u/sessions"))
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        raw.status(),
        StatusCode::UNAUTHORIZED,
        "only the Bearer scheme"
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_without_a_token() {
    let app = spawn().await;
    assert_eq!(
        app.call_with_token(Method::GET, "/healthz", None, None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        app.call_with_token(Method::GET, "/readyz", None, None)
            .await
            .0,
        StatusCode::OK
    );
    app.call(Method::GET, "/v1/users/someone/sessions", None)
        .await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("companion_http_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="/v1/users/{user}/sessions""#),
        "labelled by route template: {metrics}"
    );
    assert!(!metrics.contains("someone"), "no user or id in labels");
}
