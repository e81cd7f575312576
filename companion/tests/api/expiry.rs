use crate::helpers::*;
use mongodb::bson::doc;
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
