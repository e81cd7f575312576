use crate::helpers::*;
use proto::Session;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn create_read_patch_delete() {
    let app = spawn().await;
    let created = app
        .create(json!({"data": {"a": 1, "cart.items": [1, 2], "$odd": "Zoë"}, "user": "u-1"}))
        .await;
    let session: Session = serde_json::from_value(created.clone()).unwrap();
    assert_eq!(session.ttl_seconds, 1_209_600, "the default TTL");
    assert!(!session.browser_session);
    assert_eq!(session.user.as_deref(), Some("u-1"));
    let lifetime = session.expires_at.unix_seconds() - session.created_at.unix_seconds();
    assert_eq!(lifetime, 1_209_600);
    let path = format!("/v1/sessions/{}", session.id.as_str());

    let (status, read) = app.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        read, created,
        "reads show exactly what was stored, original keys included"
    );

    let (status, patched) = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"set": {"b": {"x.y": true}, "a": null}, "unset": ["cart.items"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["data"],
        json!({"a": null, "b": {"x.y": true}, "$odd": "Zoë"})
    );
    assert_eq!(patched["id"], created["id"]);

    let (status, body) = app.call(Method::DELETE, &path, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, body) = app.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    let (status, _) = app.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "delete is idempotent");
}

#[tokio::test]
async fn ttl_browser_session_and_touch() {
    let app = spawn().await;
    let created = app
        .create(json!({"ttl_seconds": 60, "browser_session": true}))
        .await;
    assert_eq!(created["ttl_seconds"], 60);
    assert_eq!(created["browser_session"], true);
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());
    let (_, longer) = app
        .call(Method::PATCH, &path, Some(json!({"ttl_seconds": 3600})))
        .await;
    let session: Session = serde_json::from_value(longer).unwrap();
    assert_eq!(session.ttl_seconds, 3600);
    assert!(
        (session.expires_at.unix_seconds() - session.updated_at.unix_seconds() - 3600).abs() <= 1
    );
    let (_, touched) = app
        .call(Method::PATCH, &path, Some(json!({"touch": true})))
        .await;
    let touched: Session = serde_json::from_value(touched).unwrap();
    assert!(
        touched.expires_at >= session.expires_at,
        "touch moves expiry by the session's own TTL"
    );
    assert!(touched.browser_session, "kept");
}

#[tokio::test]
async fn cycle_moves_the_data_to_a_new_id_and_the_old_one_is_gone() {
    let app = spawn().await;
    let created = app
        .create(json!({"data": {"cart": [1]}, "user": "u-2", "ttl_seconds": 120}))
        .await;
    let old = created["id"].as_str().unwrap().to_string();
    let (status, cycled) = app
        .call(Method::POST, &format!("/v1/sessions/{old}/cycle"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cycled}");
    assert_ne!(cycled["id"], created["id"]);
    assert_eq!(
        (&cycled["data"], &cycled["user"], &cycled["ttl_seconds"]),
        (&created["data"], &created["user"], &created["ttl_seconds"])
    );
    assert_eq!(
        cycled["expires_at"], created["expires_at"],
        "cycling keeps the expiry"
    );
    let (status, _) = app
        .call(Method::GET, &format!("/v1/sessions/{old}"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the old id never answers again"
    );
    let (status, _) = app
        .call(Method::POST, &format!("/v1/sessions/{old}/cycle"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_ids_are_400_and_unknown_ones_404() {
    let app = spawn().await;
    let not_base64 = format!("{}!", "A".repeat(42));
    for bad in [
        "short",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9",
        &not_base64,
        &"A".repeat(44),
    ] {
        for method in [Method::GET, Method::PATCH, Method::DELETE] {
            let body = (method == Method::PATCH).then(|| json!({}));
            let (status, err) = app
                .call(method.clone(), &format!("/v1/sessions/{bad}"), body)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {bad}: {err}");
            assert_eq!(err["error"], "bad_request");
        }
    }
    let unknown = proto::SessionId::from_bytes(&[5; 32]);
    let path = format!("/v1/sessions/{}", unknown.as_str());
    assert_eq!(
        app.call(Method::GET, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::PATCH, &path, Some(json!({"set": {"a": 1}})))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let app = spawn().await;
    let created = app.create(json!({})).await;
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());
    let cases = [
        (
            Method::POST,
            "/v1/sessions".to_string(),
            json!({"data": [1, 2]}),
        ),
        (Method::POST, "/v1/sessions".to_string(), json!({"ttl": 5})),
        (
            Method::POST,
            "/v1/sessions".to_string(),
            json!({"ttl_seconds": 0}),
        ),
        (
            Method::POST,
            "/v1/sessions".to_string(),
            json!({"ttl_seconds": 1_000_000_000}),
        ),
        (
            Method::POST,
            "/v1/sessions".to_string(),
            json!({"user": ""}),
        ),
        (
            Method::POST,
            "/v1/sessions".to_string(),
            json!({"user": "a\nb"}),
        ),
        (
            Method::POST,
            "/v1/sessions".to_string(),
            json!({"data": {"": 1}}),
        ),
        (
            Method::POST,
            "/v1/sessions".to_string(),
            json!({"data": {"n": u64::MAX}}),
        ),
        (
            Method::PATCH,
            path.clone(),
            json!({"set": {"a": 1}, "unset": ["a"]}),
        ),
        (
            Method::PATCH,
            path.clone(),
            json!({"set": {"k".repeat(300): 1}}),
        ),
        (Method::PATCH, path.clone(), json!({"touch": "yes"})),
    ];
    for (method, url, body) in cases {
        let (status, err) = app.call(method.clone(), &url, Some(body.clone())).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {url} {body}: {err}"
        );
        assert_eq!(err["error"], "bad_request");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let raw = app
        .client
        .post(app.url("/v1/sessions"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let (_, after) = app.call(Method::GET, &path, None).await;
    assert_eq!(after, created, "nothing was stored half-way");
}

#[tokio::test]
async fn data_over_the_limit_is_413_and_not_stored() {
    let app = spawn_with(&mongodb_uri(), &unique_database(), |c| {
        c.max_data_bytes = 200
    })
    .await;
    let (status, err) = app
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({"data": {"big": "x".repeat(300)}})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["error"], "payload_too_large");
    let created = app
        .create(json!({"data": {"small": "x".repeat(100)}}))
        .await;
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());
    let (status, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"set": {"more": "y".repeat(100)}})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "the data as it would become counts"
    );
    let (_, after) = app.call(Method::GET, &path, None).await;
    assert_eq!(after["data"], created["data"]);
    let huge = app
        .client
        .post(app.url("/v1/sessions"))
        .bearer_auth(TOKEN)
        .json(&json!({"data": {"x": "z".repeat(1_000_000)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        huge.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "the body limit"
    );
}
