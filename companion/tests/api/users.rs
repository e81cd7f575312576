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
    let mut ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![a["id"].as_str().unwrap(), b["id"].as_str().unwrap()];
    expected.sort();
    assert_eq!(ids, expected);

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
