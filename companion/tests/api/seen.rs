//! The proxies' batched "seen" reports: `last_seen_at` of the live sessions named moves to
//! now in one write, unknown ones are passed by, and a report is bounded and checked.

use crate::helpers::*;
use mongodb::bson::{DateTime, Document, doc};
use proto::{MAX_SEEN_IDS, SessionId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

fn id_of(session: &Value) -> String {
    session["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_report_moves_last_seen_of_the_live_sessions_it_names() {
    let database = unique_database();
    let app = spawn_with(&mongodb_uri(), &database, |_| {}).await;
    let first = app.create(json!({"user": "quinn"})).await;
    let second = app.create(json!({"user": "quinn"})).await;
    let expired = app.create(json!({"user": "quinn", "ttl_seconds": 1})).await;
    let unknown = SessionId::from_bytes(&[9; 32]);
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let (status, answer) = app
        .call(
            Method::POST,
            "/v1/sessions/seen",
            Some(json!({"ids": [id_of(&first), id_of(&first), unknown.as_str(), id_of(&expired)]})),
        )
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"seen": 1})));
    let (_, now_first) = app
        .call(
            Method::GET,
            &format!("/v1/sessions/{}", id_of(&first)),
            None,
        )
        .await;
    let (_, now_second) = app
        .call(
            Method::GET,
            &format!("/v1/sessions/{}", id_of(&second)),
            None,
        )
        .await;
    assert!(millis(&now_first["last_seen_at"]) >= millis(&first["created_at"]) + 1_000);
    assert_eq!(
        now_first["expires_at"], first["expires_at"],
        "seen is no touch"
    );
    assert_eq!(
        now_second["last_seen_at"], second["last_seen_at"],
        "not named"
    );
    // The listing puts the most recently seen first.
    let (_, list) = app
        .call(Method::GET, "/v1/users/quinn/sessions", None)
        .await;
    assert_eq!(
        list[0]["handle"],
        json!(handle_of_session(&first)),
        "{list}"
    );
    assert_eq!(list[0]["last_seen_at"], now_first["last_seen_at"]);
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    // Nothing was created for the unknown id, and the expired one was left as it was.
    let raw = raw_database(&database)
        .await
        .collection::<Document>("sessions");
    assert_eq!(raw.count_documents(doc! {}).await.unwrap(), 3);
    let stored = raw
        .find_one(doc! {"_id": id_of(&expired)})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored
            .get_datetime("last_seen_at")
            .unwrap()
            .timestamp_millis(),
        millis(&expired["last_seen_at"])
    );
}

/// Reports from several proxies arrive in any order: `last_seen_at` never moves back.
#[tokio::test]
async fn last_seen_never_moves_back() {
    let database = unique_database();
    let app = spawn_with(&mongodb_uri(), &database, |_| {}).await;
    let session = app.create(json!({})).await;
    let raw = raw_database(&database)
        .await
        .collection::<Document>("sessions");
    let ahead = DateTime::from_millis(DateTime::now().timestamp_millis() + 60_000);
    raw.update_one(
        doc! {"_id": id_of(&session)},
        doc! {"$set": {"last_seen_at": ahead}},
    )
    .await
    .unwrap();
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/sessions/seen",
            Some(json!({"ids": [id_of(&session)]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, touched) = app
        .call(
            Method::PATCH,
            &format!("/v1/sessions/{}", id_of(&session)),
            Some(json!({"touch": true})),
        )
        .await;
    assert_eq!(millis(&touched["last_seen_at"]), ahead.timestamp_millis());
}

#[tokio::test]
async fn a_report_is_bounded_and_every_id_checked() {
    let app = spawn().await;
    let live = app.create(json!({})).await;
    let ids = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                let mut bytes = [0u8; 32];
                bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
                SessionId::from_bytes(&bytes).as_str().to_string()
            })
            .collect()
    };
    let mut at = ids(MAX_SEEN_IDS - 1);
    at.push(id_of(&live));
    let (status, answer) = app
        .call(Method::POST, "/v1/sessions/seen", Some(json!({"ids": at})))
        .await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"seen": 1})),
        "exactly the limit"
    );
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/sessions/seen",
            Some(json!({"ids": ids(MAX_SEEN_IDS + 1)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("at most 1000"));
    let (status, answer) = app
        .call(Method::POST, "/v1/sessions/seen", Some(json!({"ids": []})))
        .await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"seen": 0})));

    let mut with_bad = ids(3);
    with_bad[2] = format!("{}=", &with_bad[2][..42]);
    for (body, says) in [
        (json!({"ids": with_bad}), "ids[2]"),
        (json!({"ids": ["short"]}), "ids[0]"),
        (json!({"ids": [1]}), ""),
        (json!({"ids": "x"}), ""),
        (json!({}), ""),
        (json!({"ids": [], "more": 1}), ""),
    ] {
        let (status, answer) = app
            .call(Method::POST, "/v1/sessions/seen", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"], "bad_request");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
}
