use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_patches_to_different_keys_lose_nothing() {
    let app = std::sync::Arc::new(spawn().await);
    let created = app.create(json!({"data": {"base": 0}})).await;
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = app.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            app.call(
                Method::PATCH,
                &path,
                Some(json!({"set": {format!("key.{i}"): i}})),
            )
            .await
            .0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    let (_, session) = app.call(Method::GET, &path, None).await;
    let data = session["data"].as_object().unwrap();
    assert_eq!(data.len(), 51, "{data:?}");
    for i in 0..50 {
        assert_eq!(data[&format!("key.{i}")], json!(i));
    }
}
