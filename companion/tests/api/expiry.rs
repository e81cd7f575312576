use crate::helpers::*;
use mongodb::bson::{DateTime, doc};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn an_expired_session_answers_404_before_the_ttl_monitor_removes_it() {
    let database = unique_database();
    let app = spawn_with(&mongodb_uri(), &database, |_| {}).await;
    let created = app.create(json!({"ttl_seconds": 1, "user": "dora"})).await;
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/v1/sessions/{id}");
    assert_eq!(app.call(Method::GET, &path, None).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1_300)).await;

    let (status, _) = app.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.call(Method::PATCH, &path, Some(json!({"touch": true})))
            .await
            .0,
        StatusCode::NOT_FOUND,
        "no resurrection"
    );
    assert_eq!(
        app.call(Method::POST, &format!("{path}/cycle"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, list) = app.call(Method::GET, "/v1/users/dora/sessions", None).await;
    assert_eq!(list, json!([]));

    // The document is still there: the read filtered it, not the TTL monitor.
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    let raw = client
        .database(&database)
        .collection::<mongodb::bson::Document>("sessions");
    assert_eq!(raw.count_documents(doc! {"_id": &id}).await.unwrap(), 1);
}

/// The store reads by `_id` alone and checks the expiry itself: a session whose `expires_at`
/// has passed is unknown to every call, while one moved into the future reads as stored.
#[tokio::test]
async fn the_stored_expiry_decides_whether_a_session_is_found() {
    let database = unique_database();
    let app = spawn_with(&mongodb_uri(), &database, |_| {}).await;
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    let raw = client
        .database(&database)
        .collection::<mongodb::bson::Document>("sessions");
    let set_expiry = |id: String, at: DateTime| {
        let raw = raw.clone();
        async move {
            raw.update_one(doc! {"_id": id}, doc! {"$set": {"expires_at": at}})
                .await
                .unwrap();
        }
    };
    let live = app.create(json!({"user": "erin"})).await;
    let live_id = live["id"].as_str().unwrap().to_string();
    let later = DateTime::from_millis(DateTime::now().timestamp_millis() + 3_600_000);
    set_expiry(live_id.clone(), later).await;
    let (status, read) = app
        .call(Method::GET, &format!("/v1/sessions/{live_id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let read: proto::Session = serde_json::from_value(read).unwrap();
    assert_eq!(
        read.expires_at.unix_nanos(),
        i128::from(later.timestamp_millis()) * 1_000_000
    );

    let gone = app.create(json!({"user": "erin"})).await;
    let gone_id = gone["id"].as_str().unwrap().to_string();
    let past = DateTime::from_millis(DateTime::now().timestamp_millis() - 1);
    set_expiry(gone_id.clone(), past).await;
    let path = format!("/v1/sessions/{gone_id}");
    assert_eq!(
        app.call(Method::GET, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(
            Method::PATCH,
            &path,
            Some(json!({"set": {"a": 1}, "touch": true}))
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::POST, &format!("{path}/cycle"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, list) = app.call(Method::GET, "/v1/users/erin/sessions", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["handle"], json!(handle_of(&live_id)));
    let stored = raw.find_one(doc! {"_id": &gone_id}).await.unwrap().unwrap();
    assert_eq!(
        stored.get_datetime("expires_at").unwrap(),
        &past,
        "neither the patch nor the cycle touched it"
    );
    assert!(stored.get_document("data").unwrap().is_empty());
    assert_eq!(
        raw.count_documents(doc! {}).await.unwrap(),
        2,
        "the cycle made no copy"
    );
}

/// At the longest lifetime the configuration allows, a session is stored and answered with
/// its expiry a hundred years out. With no bound (a trillion seconds allowed) the expiry fell
/// past the year 9999: the session was stored, then answered with 503.
#[tokio::test]
async fn a_session_at_the_longest_allowed_lifetime_is_answered_in_full() {
    let limit = companion::config::MAX_TTL_LIMIT_SECONDS;
    let app = spawn_with(&mongodb_uri(), &unique_database(), |c| {
        c.max_ttl_seconds = limit;
    })
    .await;
    let created = app.create(json!({"ttl_seconds": limit})).await;
    let session: proto::Session = serde_json::from_value(created.clone()).unwrap();
    assert_eq!(session.ttl_seconds, limit);
    assert_eq!(
        session.expires_at.unix_seconds() - session.created_at.unix_seconds(),
        i64::try_from(limit).unwrap()
    );
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());
    let (status, touched) = app
        .call(Method::PATCH, &path, Some(json!({"touch": true})))
        .await;
    assert_eq!(status, StatusCode::OK, "{touched}");
    let (status, cycled) = app.call(Method::POST, &format!("{path}/cycle"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{cycled}");
}
