//! A cycle that fails or is cut short half-way (see the store module's doc): the session is
//! never lost where that can be avoided, and never outlives a deletion made during the cycle.

use crate::helpers::*;
use mongodb::bson::{DateTime, Document, doc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The collection the apps of `database` use, reached directly.
async fn collection(database: &str) -> mongodb::Collection<Document> {
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    client.database(database).collection("sessions")
}

/// GETs `path` until it answers 200 (or `within` passes), and returns the session.
async fn read_when_back(app: &TestApp, path: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = app.call(Method::GET, path, None).await;
        if status == StatusCode::OK {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {status} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The database refuses the copy (a validator admits only documents last written before the
/// cycle): the seal is taken back, the caller gets 503, and the session answers under its old
/// id as before, with no second document left behind.
#[tokio::test]
async fn a_cycle_whose_copy_is_refused_leaves_the_session_where_it_was() {
    let database = unique_database();
    let app = spawn_with(&mongodb_uri(), &database, |_| {}).await;
    let created = app
        .create(json!({"data": {"cart": [1, 2]}, "user": "refused"}))
        .await;
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());
    let sessions = collection(&database).await;
    let written = sessions
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap()
        .get_datetime("updated_at")
        .copied()
        .unwrap();
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    client
        .database(&database)
        .run_command(doc! {
            "collMod": "sessions",
            "validator": {"updated_at": {"$lte": written}},
            "validationLevel": "strict",
        })
        .await
        .unwrap();
    // The copy's updated_at is the cycle's time: later than `written`.
    tokio::time::sleep(Duration::from_millis(5)).await;

    let (status, body) = app.call(Method::POST, &format!("{path}/cycle"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, read) = app.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "unsealed: {read}");
    assert_eq!(read, created, "the session as it was");
    assert_eq!(sessions.count_documents(doc! {}).await.unwrap(), 1);
    let (_, listed) = app
        .call(Method::GET, "/v1/users/refused/sessions", None)
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["handle"], json!(handle_of_session(&created)));
}

/// The feed refuses the old id's revocation (a validator admits only the counter): a proxy
/// caching the old id would go on serving it, so the cycle is undone as when its copy is
/// refused, and the caller gets 503.
#[tokio::test]
async fn a_cycle_whose_revocation_cannot_be_recorded_is_undone() {
    let database = unique_database();
    let app = spawn_with(&mongodb_uri(), &database, |_| {}).await;
    let created = app
        .create(json!({"data": {"cart": [3]}, "user": "unrecorded"}))
        .await;
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());
    let client = mongodb::Client::with_uri_str(mongodb_uri()).await.unwrap();
    let db = client.database(&database);
    db.run_command(doc! {
        "collMod": "revocations",
        "validator": {"kind": {"$exists": false}},
        "validationLevel": "strict",
    })
    .await
    .unwrap();

    let (status, body) = app.call(Method::POST, &format!("{path}/cycle"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, read) = app.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "unsealed: {read}");
    assert_eq!(read, created, "the session as it was");
    assert_eq!(
        collection(&database)
            .await
            .count_documents(doc! {})
            .await
            .unwrap(),
        1
    );
    let entries = db
        .collection::<Document>("revocations")
        .count_documents(doc! {"_id": {"$gt": 0}})
        .await
        .unwrap();
    assert_eq!(entries, 0);
}

/// The caller gives up (here the request timeout, as a filter's callout timeout would) while
/// the database answers slowly: the cycle still runs to its end in its own task, sees nobody
/// will learn the new id, and undoes itself, so the old id answers again. Were the cycle run in
/// the request, dropping it after the seal would leave the session sealed for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_whose_caller_gives_up_is_undone_and_the_old_id_answers_again() {
    let uri = mongodb_uri();
    let database = unique_database();
    let link = testkit::FaultyLink::start(testkit::single_host(&uri).0).await;
    let app = spawn_with(&testkit::through(&uri, link.addr), &database, |c| {
        c.request_timeout_ms = 150;
        c.db_timeout_ms = 3_000;
    })
    .await;
    let created = app
        .create(json!({"data": {"cart": [3]}, "user": "impatient"}))
        .await;
    let path = format!("/v1/sessions/{}", created["id"].as_str().unwrap());

    link.slow_down(Duration::from_millis(300));
    let (status, body) = app.call(Method::POST, &format!("{path}/cycle"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    link.slow_down(Duration::ZERO);

    let read = read_when_back(&app, &path, Duration::from_secs(10)).await;
    assert_eq!(read, created);
    let sessions = collection(&database).await;
    // The undo deletes the unused copy just after it unseals the original.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sessions.count_documents(doc! {}).await.unwrap() != 1 {
        assert!(Instant::now() < deadline, "the unused copy is still there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = sessions.find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(
        stored.get_str("_id").unwrap(),
        created["id"].as_str().unwrap()
    );
    assert!(!stored.contains_key("moved_to"), "unsealed: {stored:?}");
}

/// "Log out everywhere" lands between a cycle's seal and its copy: it deletes the sealed
/// original, and the cycle, finding it gone, deletes its copy and answers 404. Before, the
/// copy was inserted after the user's sessions were deleted and outlived the log-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_everywhere_during_a_cycle_ends_the_copy_too() {
    let uri = mongodb_uri();
    let database = unique_database();
    let link = testkit::FaultyLink::start(testkit::single_host(&uri).0).await;
    let slow = spawn_with(&testkit::through(&uri, link.addr), &database, |c| {
        c.db_timeout_ms = 3_000;
    })
    .await;
    let direct = spawn_with(&uri, &database, |_| {}).await;
    let created = slow
        .create(json!({"data": {"a": 1}, "user": "mallory"}))
        .await;
    let path = format!("/v1/sessions/{}/cycle", created["id"].as_str().unwrap());

    // Requests reach the database at once; only the answers wait 300 ms. The seal is applied
    // at once, the copy's insert 300 ms later: the log-out falls in between.
    link.slow_down(Duration::from_millis(300));
    let started = Instant::now();
    let (cycle, logout) = tokio::join!(slow.call(Method::POST, &path, None), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        direct
            .call(Method::DELETE, "/v1/users/mallory/sessions", None)
            .await
    });
    link.slow_down(Duration::ZERO);
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "the cycle waited for its seal and its insert"
    );
    assert_eq!(logout, (StatusCode::OK, json!({"deleted": 1})));
    assert_eq!(cycle.0, StatusCode::NOT_FOUND, "{}", cycle.1);
    let (_, listed) = direct
        .call(Method::GET, "/v1/users/mallory/sessions", None)
        .await;
    assert_eq!(listed, json!([]));
    let sessions = collection(&database).await;
    assert_eq!(
        sessions
            .count_documents(doc! {"expires_at": {"$gt": DateTime::now()}})
            .await
            .unwrap(),
        0,
        "nothing of the session is left"
    );
}
