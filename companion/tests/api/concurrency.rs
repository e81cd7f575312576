//! Writers racing each other on one session, many rounds in one test against the real
//! database server: each property is a count of outcomes that must come out exact.

use crate::helpers::*;
use mongodb::bson::{Document, doc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

const ROUNDS: usize = 30;
const CYCLES_PER_ROUND: usize = 8;

/// An app on its own database, and that database's session collection to look into.
async fn app_and_collection() -> (Arc<TestApp>, mongodb::Collection<Document>) {
    let database = unique_database();
    let app = spawn_with(&mongodb_uri(), &database, |_| {}).await;
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    (
        Arc::new(app),
        client.database(&database).collection("sessions"),
    )
}

fn id_of(session: &Value) -> String {
    session["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_patches_to_different_keys_lose_nothing() {
    let app = Arc::new(spawn().await);
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

/// Eight cycles of one session at once: one moves it, the other seven find it gone. Before
/// cycles were atomic, each read the session before any deleted it and all eight answered
/// 201 with a live copy of the data and the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_eight_concurrent_cycles_exactly_one_succeeds_and_one_copy_lives() {
    let (app, sessions) = app_and_collection().await;
    for round in 0..ROUNDS {
        let user = format!("cycled-{round}");
        let created = app
            .create(json!({"data": {"round": round}, "user": user}))
            .await;
        let old = id_of(&created);
        let cycles = (0..CYCLES_PER_ROUND).map(|_| {
            let app = app.clone();
            let path = format!("/v1/sessions/{old}/cycle");
            tokio::spawn(async move { app.call(Method::POST, &path, None).await })
        });
        let mut moved = Vec::new();
        for answer in futures::future::join_all(cycles).await {
            let (status, body) = answer.unwrap();
            match status {
                StatusCode::CREATED => moved.push(body),
                StatusCode::NOT_FOUND => assert_eq!(body["error"], "not_found"),
                other => panic!("round {round}: a cycle answered {other}: {body}"),
            }
        }
        assert_eq!(
            moved.len(),
            1,
            "round {round}: {} cycles succeeded",
            moved.len()
        );
        let copy = &moved[0];
        assert_eq!(copy["data"], created["data"], "round {round}");
        let stored: Vec<Document> = {
            use futures::TryStreamExt;
            sessions
                .find(doc! {"user": &user})
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap()
        };
        assert_eq!(
            stored.len(),
            1,
            "round {round}: documents of the user: {stored:?}"
        );
        assert_eq!(
            stored[0].get_str("_id").unwrap(),
            id_of(copy),
            "round {round}"
        );
        let (status, _) = app
            .call(Method::GET, &format!("/v1/sessions/{old}"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "round {round}: the old id");
        let (_, listed) = app
            .call(Method::GET, &format!("/v1/users/{user}/sessions"), None)
            .await;
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "round {round}");
    }
}

/// A PATCH racing a cycle either lands in the copy or answers 404; never 200 with its change
/// missing from the session that lives on. Before cycles were atomic, a PATCH applied between
/// the cycle's read and its delete answered 200 and its change went with the old document.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_patch_racing_a_cycle_lands_in_the_copy_or_answers_404() {
    let (app, sessions) = app_and_collection().await;
    let (mut landed, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let created = app.create(json!({"data": {"base": round}})).await;
        let old = id_of(&created);
        let patch = {
            let app = app.clone();
            let path = format!("/v1/sessions/{old}");
            tokio::spawn(async move {
                app.call(Method::PATCH, &path, Some(json!({"set": {"raced": round}})))
                    .await
            })
        };
        let cycle = {
            let app = app.clone();
            let path = format!("/v1/sessions/{old}/cycle");
            tokio::spawn(async move { app.call(Method::POST, &path, None).await })
        };
        let ((patch_status, patched), (cycle_status, cycled)) =
            (patch.await.unwrap(), cycle.await.unwrap());
        assert_eq!(cycle_status, StatusCode::CREATED, "round {round}: {cycled}");
        let (status, now) = app
            .call(
                Method::GET,
                &format!("/v1/sessions/{}", id_of(&cycled)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "round {round}");
        assert_eq!(
            now, cycled,
            "round {round}: the copy is as the cycle answered"
        );
        match patch_status {
            StatusCode::OK => {
                landed += 1;
                assert_eq!(
                    now["data"],
                    json!({"base": round, "raced": round}),
                    "round {round}: the PATCH answered 200 ({patched}) and its change is missing"
                );
            }
            StatusCode::NOT_FOUND => {
                refused += 1;
                assert_eq!(now["data"], json!({"base": round}), "round {round}");
            }
            other => panic!("round {round}: the PATCH answered {other}: {patched}"),
        }
    }
    assert_eq!(
        sessions.count_documents(doc! {}).await.unwrap(),
        ROUNDS as u64,
        "one session per round"
    );
    eprintln!("PATCH racing a cycle: {landed} landed in the copy, {refused} answered 404");
}

/// A change of lifetime racing a touch: the touch computes the new expiry from the lifetime,
/// so it must not apply one it read before the change. Whatever the order, the session's
/// expiry is its last write's time plus its stored lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lifetime_change_racing_a_touch_leaves_the_expiry_matching_the_lifetime() {
    let (app, _) = app_and_collection().await;
    for round in 0..ROUNDS {
        let created = app.create(json!({"ttl_seconds": 3600})).await;
        let path = format!("/v1/sessions/{}", id_of(&created));
        let shorten = {
            let (app, path) = (app.clone(), path.clone());
            tokio::spawn(async move {
                app.call(Method::PATCH, &path, Some(json!({"ttl_seconds": 60})))
                    .await
            })
        };
        let touch = {
            let (app, path) = (app.clone(), path.clone());
            tokio::spawn(async move {
                app.call(Method::PATCH, &path, Some(json!({"touch": true})))
                    .await
            })
        };
        for (status, body) in [shorten.await.unwrap(), touch.await.unwrap()] {
            assert_eq!(status, StatusCode::OK, "round {round}: {body}");
        }
        let (_, now) = app.call(Method::GET, &path, None).await;
        let session: proto::Session = serde_json::from_value(now.clone()).unwrap();
        assert_eq!(session.ttl_seconds, 60, "round {round}");
        assert_eq!(
            session.expires_at.unix_nanos() - session.updated_at.unix_nanos(),
            60 * 1_000_000_000,
            "round {round}: {now}"
        );
    }
}
