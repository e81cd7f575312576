//! Oversized and malicious input at the companion's API: deep or huge JSON, invalid UTF-8,
//! NUL bytes, bodies and data at and over the limits. Each is answered with a clear status and
//! `{error, message}`, and nothing is stored half-way: the database is checked directly.

use crate::helpers::*;
use mongodb::bson::{Document, doc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An app on its own database, and that database's session collection to look into.
async fn app_and_collection(
    adjust: impl FnOnce(&mut companion::Config),
) -> (TestApp, mongodb::Collection<Document>) {
    let database = unique_database();
    let app = spawn_with(&mongodb_uri(), &database, adjust).await;
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    (app, client.database(&database).collection("sessions"))
}

async fn stored(sessions: &mongodb::Collection<Document>) -> u64 {
    sessions.count_documents(doc! {}).await.unwrap()
}

/// `depth` levels of arrays around `1`, the data object counting as the first level.
fn nested(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 1..depth {
        value = json!([value]);
    }
    value
}

/// A raw body with a JSON content type; returns status and the parsed error.
async fn post_raw(app: &TestApp, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// A PATCH of the session at `path` is refused with `expected` and its error code, and the
/// session reads back as `before`: nothing stored half-way.
async fn assert_patch_refused(
    app: &TestApp,
    path: &str,
    body: Value,
    expected: StatusCode,
    before: &Value,
) {
    let (status, err) = app.call(Method::PATCH, path, Some(body.clone())).await;
    let code = match expected {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        _ => "bad_request",
    };
    assert_error(status, &err, expected, code);
    let (_, after) = app.call(Method::GET, path, None).await;
    assert_eq!(&after, before, "{body}: nothing stored half-way");
}

#[tokio::test]
async fn deep_data_is_refused_alike_by_create_and_patch_and_never_stored() {
    let (app, sessions) = app_and_collection(|_| {}).await;
    let max = proto::MAX_DATA_DEPTH;
    let (status, err) = app
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({"data": {"k": nested(max + 1)}})),
        )
        .await;
    assert_error(status, &err, StatusCode::BAD_REQUEST, "bad_request");
    assert!(err["message"].as_str().unwrap().contains("nested"), "{err}");
    let (status, err) = post_raw(
        &app,
        "/v1/sessions",
        format!(
            r#"{{"data":{{"k":{}1{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
        .into_bytes(),
    )
    .await;
    assert_error(status, &err, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(stored(&sessions).await, 0, "nothing stored");

    let created = app.create(json!({"data": {"k": nested(max)}})).await;
    assert_eq!(
        created["data"]["k"],
        nested(max),
        "at the limit it is stored"
    );
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());
    let body = json!({"set": {"k": nested(max + 1), "ok": 1}});
    assert_patch_refused(&app, &path, body, StatusCode::BAD_REQUEST, &created).await;
    assert_eq!(stored(&sessions).await, 1);
}

#[tokio::test]
async fn invalid_utf8_nul_and_non_json_bodies_are_400_and_not_stored() {
    let (app, sessions) = app_and_collection(|_| {}).await;
    let bodies: &[&[u8]] = &[
        b"{\"data\": {\"a\": \"\xff\xfe\"}}",
        b"{\"data\": {\"\xc3\x28\": 1}}",
        b"{\"data\": {\"a\": \"b\x00c\"}}",
        b"\x00",
        b"",
        b"{\"data\": {\"a\": 1}",
        b"{\"data\": {\"a\": 1}} trailing",
    ];
    for body in bodies {
        let (status, err) = post_raw(&app, "/v1/sessions", body.to_vec()).await;
        assert_error(status, &err, StatusCode::BAD_REQUEST, "bad_request");
    }
    let no_type = app
        .client
        .post(app.url("/v1/sessions"))
        .bearer_auth(TOKEN)
        .body(r#"{"data": {"a": 1}}"#)
        .send()
        .await
        .unwrap();
    let status = no_type.status();
    let err: Value = no_type.json().await.unwrap();
    assert_error(status, &err, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(stored(&sessions).await, 0, "nothing stored");
}

#[tokio::test]
async fn nul_bytes_in_data_round_trip_but_not_in_users() {
    let (app, sessions) = app_and_collection(|_| {}).await;
    let data = json!({"a\u{0}b": "c\u{0}d", "$x.y%00": {"n\u{0}": [null, "\u{0}"]}});
    let created = app.create(json!({"data": data})).await;
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());
    let (_, read) = app.call(Method::GET, &path, None).await;
    assert_eq!(
        read["data"], data,
        "NUL in keys and values is data, kept exactly"
    );

    let (status, err) = app
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({"user": "alice\u{0}admin"})),
        )
        .await;
    assert_error(status, &err, StatusCode::BAD_REQUEST, "bad_request");
    let body = json!({"user": "a\u{0}", "set": {"z": 1}});
    assert_patch_refused(&app, &path, body, StatusCode::BAD_REQUEST, &read).await;
    for user in ["%00", "a%0Ab", "%FF"] {
        let (status, err) = app
            .call(Method::GET, &format!("/v1/users/{user}/sessions"), None)
            .await;
        assert_error(status, &err, StatusCode::BAD_REQUEST, "bad_request");
    }
    for id in ["%00".repeat(43), "%FF".repeat(43), "A".repeat(10_000)] {
        let (status, err) = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_error(status, &err, StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(stored(&sessions).await, 1);
}

#[tokio::test]
async fn a_patch_with_one_bad_value_changes_nothing() {
    let (app, sessions) = app_and_collection(|_| {}).await;
    let created = app.create(json!({"data": {"a": 1}, "user": "u"})).await;
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());
    let long_key = "k".repeat(257);
    let cases = [
        json!({"set": {"b": 2, "n": u64::MAX}}),
        json!({"set": {"b": 2, "": 1}}),
        json!({"set": {"b": 2, "nested": {"": 1}}}),
        json!({"set": {"b": 2, (long_key.as_str()): 1}}),
        json!({"set": {"b": 2}, "unset": [long_key]}),
        json!({"set": {"b": 2}, "user": "x".repeat(proto::MAX_USER_BYTES + 1)}),
        json!({"set": {"b": 2}, "ttl_seconds": 0}),
        json!({"set": {"b": 2}, "extra": true}),
    ];
    for body in cases {
        assert_patch_refused(&app, &path, body, StatusCode::BAD_REQUEST, &created).await;
    }
    assert_eq!(stored(&sessions).await, 1);
}

#[tokio::test]
async fn data_and_bodies_at_and_over_the_limits() {
    let limit = 1000;
    let (app, sessions) = app_and_collection(|c| c.max_data_bytes = limit).await;
    // `{"a":"…"}` as compact JSON is 8 bytes plus the string.
    let data = |len: usize| json!({"a": "x".repeat(len - 8)});
    let at = app.create(json!({"data": data(limit)})).await;
    let too_large = [
        json!({"data": data(limit + 1), "user": "big"}),
        // Escaping counts: 200 NULs are 1200 bytes of JSON.
        json!({"data": {"a": "\u{0}".repeat(200)}}),
        // Over the body limit (four times the data limit plus 16 KiB): refused before parsing.
        json!({"data": {"a": "y".repeat(limit * 4 + 16 * 1024)}}),
    ];
    for body in too_large {
        let (status, err) = post_raw(&app, "/v1/sessions", body.to_string().into_bytes()).await;
        assert_error(
            status,
            &err,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        );
    }
    // A patch that would take the data one byte over.
    let path = format!("/v1/sessions/{}", at["id"].as_str().unwrap());
    let body = json!({"set": {"b": 1}});
    assert_patch_refused(&app, &path, body, StatusCode::PAYLOAD_TOO_LARGE, &at).await;
    let (_, big) = app.call(Method::GET, "/v1/users/big/sessions", None).await;
    assert_eq!(big, json!([]));
    assert_eq!(stored(&sessions).await, 1, "only the session at the limit");
}

#[tokio::test]
async fn oversized_headers_are_refused_without_harm() {
    let app = spawn().await;
    let (status, err) = app
        .call_with_token(
            Method::GET,
            "/v1/users/u/sessions",
            None,
            Some(&"t".repeat(64 * 1024)),
        )
        .await;
    assert_error(status, &err, StatusCode::UNAUTHORIZED, "unauthorized");
    let huge = app
        .client
        .get(app.url("/v1/users/u/sessions"))
        .bearer_auth(TOKEN)
        .header("x-filler", "f".repeat(1024 * 1024))
        .send()
        .await;
    if let Ok(response) = huge {
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let (status, _) = app.call(Method::GET, "/v1/users/u/sessions", None).await;
    assert_eq!(status, StatusCode::OK, "the service still answers");
}
