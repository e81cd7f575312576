use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn list_and_revoke_every_session_of_a_user() {
    let app = spawn().await;
    let a = app.create(json!({"user": "alice"})).await;
    let b = app
        .create(json!({"user": "alice", "data": {"device": "phone"}}))
        .await;
    let other = app.create(json!({"user": "bob"})).await;
    let anonymous = app.create(json!({})).await;
    let (status, list) = app
        .call(Method::GET, "/v1/users/alice/sessions", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut handles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["handle"].as_str().unwrap())
        .collect();
    handles.sort();
    let mut expected = vec![handle_of_session(&a), handle_of_session(&b)];
    expected.sort();
    assert_eq!(handles, expected);

    let (status, deleted) = app
        .call(Method::DELETE, "/v1/users/alice/sessions", None)
        .await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({"deleted": 2})));
    for gone in [&a, &b] {
        let (status, _) = app
            .call(
                Method::GET,
                &format!("/v1/sessions/{}", gone["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    for kept in [&other, &anonymous] {
        let (status, _) = app
            .call(
                Method::GET,
                &format!("/v1/sessions/{}", kept["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "other sessions stay");
    }
    let (_, list) = app
        .call(Method::GET, "/v1/users/alice/sessions", None)
        .await;
    assert_eq!(list, json!([]));
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/v1/users/{}/sessions", "u".repeat(300)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn binding_a_user_later_puts_the_session_in_their_list() {
    let app = spawn().await;
    let s = app.create(json!({})).await;
    let path = format!("/v1/sessions/{}", s["id"].as_str().unwrap());
    let (_, patched) = app
        .call(Method::PATCH, &path, Some(json!({"user": "carol"})))
        .await;
    assert_eq!(patched["user"], "carol");
    let (_, list) = app
        .call(Method::GET, "/v1/users/carol/sessions", None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// The user-id rule (`proto::valid_user`) at its limit: 256 bytes pass everywhere a user id
/// is taken, 257 are refused everywhere, counted in bytes of UTF-8.
#[tokio::test]
async fn a_user_id_of_256_bytes_is_taken_and_257_refused() {
    let app = spawn().await;
    let at = format!("{}uu", "é".repeat(127));
    let past = format!("{at}u");
    assert_eq!((at.len(), past.len()), (proto::MAX_USER_BYTES, 257));
    let created = app.create(json!({"user": at})).await;
    assert_eq!(created["user"], json!(at));
    let anonymous = app.create(json!({})).await;
    let path = format!("/v1/sessions/{}", anonymous["id"].as_str().unwrap());
    let (status, patched) = app
        .call(Method::PATCH, &path, Some(json!({"user": at})))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    let (status, list) = app
        .call(Method::GET, &format!("/v1/users/{at}/sessions"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(2));

    let (status, _) = app
        .call(Method::POST, "/v1/sessions", Some(json!({"user": past})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .call(Method::PATCH, &path, Some(json!({"user": past})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for method in [Method::GET, Method::DELETE] {
        let (status, body) = app
            .call(method, &format!("/v1/users/{past}/sessions"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (_, list) = app
        .call(Method::GET, &format!("/v1/users/{at}/sessions"), None)
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "nothing changed");
}
