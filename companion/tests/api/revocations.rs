//! The revocation feed: what is recorded, the read contract (entries visible out of order,
//! numbers that never appear, the overlap a reader deduplicates), resynchronisation, bad
//! input, and two companions writing at once while a reader follows.

use crate::helpers::*;
use mongodb::bson::{DateTime, Document, doc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn read(app: &TestApp, query: &str) -> (StatusCode, Value) {
    app.call(Method::GET, &format!("/v1/revocations{query}"), None)
        .await
}

/// The head, a cursor past everything written so far.
async fn head(app: &TestApp) -> String {
    let (status, page) = read(app, "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["entries"], json!([]));
    assert_eq!(page["more"], false);
    page["cursor"].as_str().unwrap().to_string()
}

/// A page after `cursor`, which must be 200.
async fn page_after(app: &TestApp, cursor: &str) -> Value {
    let (status, page) = read(app, &format!("?after={cursor}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

fn seqs(page: &Value) -> Vec<u64> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

fn cursor_seq(cursor: &Value) -> u64 {
    let text = cursor.as_str().unwrap();
    text.split_once('-').unwrap().0.parse().unwrap()
}

fn now_millis() -> i64 {
    DateTime::now().timestamp_millis()
}

/// An `until` a day from now, as RFC 3339.
fn tomorrow() -> String {
    proto::Timestamp::from_unix_seconds(now_millis() / 1000 + 86_400)
        .unwrap()
        .to_rfc3339()
}

/// A writer that drew a number and has not written its entry yet: the counter moves on.
async fn draw_a_number(database: &str) -> u64 {
    let counter = raw_database(database)
        .await
        .collection::<Document>("revocations")
        .find_one_and_update(doc! {"_id": 0_i64}, doc! {"$inc": {"seq": 1_i64}})
        .upsert(true)
        .return_document(mongodb::options::ReturnDocument::After)
        .await
        .unwrap()
        .unwrap();
    counter.get_i64("seq").unwrap().unsigned_abs()
}

#[tokio::test]
async fn a_new_reader_starts_at_the_head_and_sees_a_deletion_by_handle_only() {
    let app = spawn().await;
    let before = app.create(json!({})).await;
    let path = |s: &Value| format!("/v1/sessions/{}", s["id"].as_str().unwrap());
    app.call(Method::DELETE, &path(&before), None).await;
    let cursor = head(&app).await;
    let session = app.create(json!({})).await;
    let (status, _) = app.call(Method::DELETE, &path(&session), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let page = page_after(&app, &cursor).await;
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(1), "{page}");
    let entry = &page["entries"][0];
    assert_eq!(entry["kind"], "session");
    assert_eq!(entry["handle"], json!(handle_of_session(&session)));
    assert_eq!(entry["reason"], "deleted");
    assert!(millis(&entry["at"]) <= now_millis());
    assert_eq!(cursor_seq(&page["cursor"]), entry["seq"].as_u64().unwrap());
    assert!(!page.to_string().contains(session["id"].as_str().unwrap()));
    let again = page_after(&app, page["cursor"].as_str().unwrap()).await;
    assert_eq!(again["entries"], json!([]), "nothing new");
    assert_eq!(again["more"], false);
}

/// Every way a session ends before its time is in the feed, in the order it happened.
#[tokio::test]
async fn deletions_cycles_user_revocations_and_announcements_are_recorded() {
    let app = spawn().await;
    let cursor = head(&app).await;
    let deleted = app.create(json!({"user": "rita"})).await;
    let cycled = app.create(json!({"user": "rita"})).await;
    let by_handle = app.create(json!({"user": "rita"})).await;
    let kept = app.create(json!({"user": "rita"})).await;
    let id = |s: &Value| s["id"].as_str().unwrap().to_string();
    app.call(
        Method::DELETE,
        &format!("/v1/sessions/{}", id(&deleted)),
        None,
    )
    .await;
    let (_, moved) = app
        .call(
            Method::POST,
            &format!("/v1/sessions/{}/cycle", id(&cycled)),
            None,
        )
        .await;
    app.call(
        Method::DELETE,
        &format!("/v1/users/rita/sessions/{}", handle_of_session(&by_handle)),
        None,
    )
    .await;
    app.call(
        Method::DELETE,
        &format!(
            "/v1/users/rita/sessions?except={}",
            handle_of_session(&kept)
        ),
        None,
    )
    .await;
    app.call(Method::DELETE, "/v1/users/nobody/sessions", None)
        .await;
    let announced = proto::SessionId::from_bytes(&[5; 32]).handle().to_string();
    let until = tomorrow();
    let (status, entry) = app
        .call(
            Method::POST,
            "/v1/revocations",
            Some(json!({"handle": announced, "until": until})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert_eq!(entry["reason"], "announced");
    assert_eq!(entry["until"], until);

    let page = page_after(&app, &cursor).await;
    let entries: Vec<Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut e = e.clone();
            let object = e.as_object_mut().unwrap();
            object.remove("seq");
            object.remove("at");
            e
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            json!({"kind": "session", "handle": handle_of_session(&deleted), "reason": "deleted"}),
            json!({"kind": "session", "handle": handle_of_session(&cycled), "reason": "cycled"}),
            json!({"kind": "session", "handle": handle_of_session(&by_handle), "reason": "deleted"}),
            json!({"kind": "user", "user": "rita", "except": handle_of_session(&kept), "reason": "deleted"}),
            json!({"kind": "user", "user": "nobody", "reason": "deleted"}),
            json!({"kind": "session", "handle": announced, "reason": "announced", "until": until}),
        ]
    );
    let numbers = seqs(&page);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert_eq!(entry["seq"].as_u64(), numbers.last().copied());
    assert_ne!(moved["id"], cycled["id"]);
    // A 404 by handle records the entry again: a retry after a 503 whose delete landed and
    // whose entry did not must not lose the entry.
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/users/rita/sessions/{}", handle_of_session(&by_handle)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let after = page_after(&app, page["cursor"].as_str().unwrap()).await;
    assert_eq!(
        after["entries"].as_array().map(|e| e
            .iter()
            .map(|e| (e["handle"].clone(), e["reason"].clone()))
            .collect::<Vec<_>>()),
        Some(vec![(
            json!(handle_of_session(&by_handle)),
            json!("deleted")
        )]),
        "{after}"
    );
}

/// Number N drawn before N+1, N+1 written first: the page carries N+1 but the cursor stays
/// before N; once N appears it comes, N+1 comes again (the overlap), and the cursor moves on.
#[tokio::test]
async fn an_entry_that_appears_late_is_not_skipped() {
    let database = unique_database();
    let app = spawn_with(&mongodb_uri(), &database, |c| {
        c.revocation_grace_ms = 60_000;
    })
    .await;
    let cursor = head(&app).await;
    let slow = draw_a_number(&database).await;
    let session = app.create(json!({})).await;
    app.call(
        Method::DELETE,
        &format!("/v1/sessions/{}", session["id"].as_str().unwrap()),
        None,
    )
    .await;
    let first = page_after(&app, &cursor).await;
    assert_eq!(seqs(&first), vec![slow + 1]);
    assert_eq!(
        cursor_seq(&first["cursor"]),
        slow - 1,
        "not past the missing number"
    );
    assert_eq!(first["more"], false);

    let late = proto::SessionId::from_bytes(&[6; 32]).handle().to_string();
    let at = DateTime::now();
    raw_database(&database)
        .await
        .collection::<Document>("revocations")
        .insert_one(doc! {
            "_id": i64::try_from(slow).unwrap(), "at": at,
            "expire_at": DateTime::from_millis(at.timestamp_millis() + 3_600_000),
            "kind": "session", "handle": &late, "reason": "deleted",
        })
        .await
        .unwrap();
    let second = page_after(&app, first["cursor"].as_str().unwrap()).await;
    assert_eq!(
        seqs(&second),
        vec![slow, slow + 1],
        "the late one, then the overlap"
    );
    assert_eq!(second["entries"][0]["handle"], json!(late));
    assert_eq!(cursor_seq(&second["cursor"]), slow + 1);
    let mut applied = BTreeSet::new();
    for page in [&first, &second] {
        for seq in seqs(page) {
            applied.insert(seq);
        }
    }
    assert_eq!(applied, BTreeSet::from([slow, slow + 1]));
}

/// A number whose writer died never appears: once an entry after it is older than the grace
/// time, the cursor moves past it.
#[tokio::test]
async fn a_number_that_never_appears_is_passed_after_the_grace_time() {
    let database = unique_database();
    let app = spawn_with(&mongodb_uri(), &database, |c| {
        c.revocation_grace_ms = 400;
    })
    .await;
    let cursor = head(&app).await;
    let lost = draw_a_number(&database).await;
    app.call(
        Method::DELETE,
        &format!(
            "/v1/sessions/{}",
            proto::SessionId::from_bytes(&[7; 32]).as_str()
        ),
        None,
    )
    .await;
    let stuck = page_after(&app, &cursor).await;
    assert_eq!(seqs(&stuck), vec![lost + 1]);
    assert_eq!(cursor_seq(&stuck["cursor"]), lost - 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moved = page_after(&app, stuck["cursor"].as_str().unwrap()).await;
    assert_eq!(seqs(&moved), vec![lost + 1]);
    assert_eq!(cursor_seq(&moved["cursor"]), lost + 1);
}

/// A cursor older than the retention (less twice the grace time), or from the future, by
/// time or by number, answers 410 with the head to continue from; just inside the bounds it
/// reads on.
#[tokio::test]
async fn a_cursor_from_the_future_or_past_the_retention_asks_for_a_resync() {
    let database = unique_database();
    let app = spawn_with(&mongodb_uri(), &database, |c| {
        c.revocation_retention_seconds = 60;
        c.revocation_grace_ms = 1_000;
    })
    .await;
    app.call(
        Method::DELETE,
        &format!(
            "/v1/sessions/{}",
            proto::SessionId::from_bytes(&[8; 32]).as_str()
        ),
        None,
    )
    .await;
    let current = head(&app).await;
    let top = current.split_once('-').unwrap().0.parse::<u64>().unwrap();
    assert_eq!(top, 1);
    // The oldest a cursor may be: 60 s less twice the grace time.
    let oldest = 58_000;
    let resync = |query: String| {
        let app = &app;
        async move {
            let (status, body) = read(app, &query).await;
            assert_eq!(status, StatusCode::GONE, "{query}: {body}");
            assert_eq!(body["error"], "resync");
            assert!(body["message"].as_str().unwrap().contains("drop"));
            let restart = body["cursor"].as_str().unwrap().to_string();
            assert_eq!(cursor_seq(&body["cursor"]), top);
            let (status, page) = read(app, &format!("?after={restart}")).await;
            assert_eq!(status, StatusCode::OK, "the head given reads: {page}");
        }
    };
    resync(format!("?after={top}-{}", now_millis() - oldest - 1_000)).await;
    resync(format!("?after={top}-{}", now_millis() + 3_000)).await;
    resync(format!("?after={}-{}", top + 1, now_millis())).await;
    resync(format!("?after={}-{}", top + 100, now_millis())).await;
    resync("?after=1-0".to_string()).await;
    for fine in [
        format!("{top}-{}", now_millis() - oldest + 1_000),
        format!("{top}-{}", now_millis() + 500),
        format!("0-{}", now_millis()),
        "start".to_string(),
    ] {
        let (status, body) = read(&app, &format!("?after={fine}")).await;
        assert_eq!(status, StatusCode::OK, "{fine}: {body}");
    }
    // The cursor's own entry gone (the TTL monitor), its number still drawn: the counter
    // shows it is no cursor from the future.
    raw_database(&database)
        .await
        .collection::<Document>("revocations")
        .delete_one(doc! {"_id": 1_i64})
        .await
        .unwrap();
    let (status, body) = read(&app, &format!("?after={top}-{}", now_millis())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    resync(format!("?after={}-{}", top + 1, now_millis())).await;
}

#[tokio::test]
async fn malformed_cursors_limits_and_announcements_are_400() {
    let app = spawn().await;
    let now = now_millis();
    for query in [
        "?after=".to_string(),
        "?after=abc".to_string(),
        "?after=1-".to_string(),
        "?after=01-5".to_string(),
        "?after=-1-5".to_string(),
        format!("?after=1.5-{now}"),
        "?after=99999999999999999999-1".to_string(),
        "?after=start&limit=0".to_string(),
        "?after=start&limit=1001".to_string(),
        "?after=start&limit=ten".to_string(),
        "?after=start&limit=-1".to_string(),
        "?limit=0".to_string(),
        "?after=start&after=start".to_string(),
        "?after=start&cursor=1".to_string(),
    ] {
        let (status, body) = read(&app, &query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"], "bad_request", "{query}");
    }
    for fine in [
        "?after=start&limit=1",
        "?after=start&limit=1000",
        "?limit=1000",
    ] {
        assert_eq!(read(&app, fine).await.0, StatusCode::OK, "{fine}");
    }

    let handle = proto::SessionId::from_bytes(&[3; 32]).handle().to_string();
    // --max-ttl-seconds (400 days by default) plus 300 s from now is the latest `until`.
    let latest = now / 1000 + 34_560_000 + 300;
    let at = |seconds: i64| {
        proto::Timestamp::from_unix_seconds(seconds)
            .unwrap()
            .to_rfc3339()
    };
    for (body, expected) in [
        (
            json!({"handle": handle, "until": at(latest - 5)}),
            StatusCode::CREATED,
        ),
        (
            json!({"handle": handle, "until": at(latest + 5)}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"handle": handle, "until": "2020-01-01T00:00:00Z"}),
            StatusCode::CREATED,
        ),
        (
            json!({"handle": "nope", "until": at(now / 1000)}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"handle": handle}), StatusCode::BAD_REQUEST),
        (
            json!({"handle": handle, "until": "tomorrow"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"handle": handle, "until": at(now / 1000), "user": "x"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, answer) = app
            .call(Method::POST, "/v1/revocations", Some(body.clone()))
            .await;
        assert_eq!(status, expected, "{body}: {answer}");
    }
}

#[tokio::test]
async fn a_long_feed_is_read_page_by_page() {
    let app = spawn().await;
    let mut cursor = head(&app).await;
    let handle = proto::SessionId::from_bytes(&[4; 32]).handle().to_string();
    for _ in 0..5 {
        app.call(
            Method::POST,
            "/v1/revocations",
            Some(json!({"handle": handle, "until": tomorrow()})),
        )
        .await;
    }
    let mut pages = Vec::new();
    loop {
        let (status, page) = read(&app, &format!("?after={cursor}&limit=2")).await;
        assert_eq!(status, StatusCode::OK);
        pages.push((seqs(&page).len(), page["more"].as_bool().unwrap()));
        cursor = page["cursor"].as_str().unwrap().to_string();
        if page["more"] == false {
            break;
        }
    }
    assert_eq!(pages, vec![(2, true), (2, true), (1, false)]);
    let (_, from_start) = read(&app, "?after=start&limit=1000").await;
    assert_eq!(seqs(&from_start), vec![1, 2, 3, 4, 5]);
}

/// Two companions (two app instances with their own database clients, as two replicas)
/// write revocations at once, three writers each, while a reader follows the feed from the
/// head: after deduplication by number, the reader has every entry exactly once, the numbers
/// are 1 to N without a gap, every page is in number order, and the cursor never moves back.
/// A sharded cluster cannot be tested here; the counter is one document either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_companions_writing_at_once_lose_no_entry() {
    // Three writers per companion: with eight, a full CI run on two busy cores made the
    // shared single-process test server answer a write 503 (the property under test is
    // about accepted writes; the load is not).
    const WRITERS: usize = 3;
    const EACH: usize = 25;
    let database = unique_database();
    // The test server is one Python process shared with every other test running at once:
    // a longer database timeout keeps a slow moment from failing a write (503), and the
    // default grace leaves room for the entry insert's retries.
    // 5 s (half the default grace time, the most it may be): at 2 s a busy CI machine still
    // timed a write out once.
    let patient = |c: &mut companion::Config| c.db_timeout_ms = 5_000;
    let apps = [
        Arc::new(spawn_with(&mongodb_uri(), &database, patient).await),
        Arc::new(spawn_with(&mongodb_uri(), &database, patient).await),
    ];
    let start = head(&apps[0]).await;
    let reader = {
        let app = apps[1].clone();
        tokio::spawn(async move {
            let mut cursor = start;
            let mut last_seq = 0;
            let mut applied: BTreeMap<u64, String> = BTreeMap::new();
            let mut reads = 0;
            let deadline = Instant::now() + Duration::from_secs(20);
            while applied.len() < 2 * WRITERS * EACH && Instant::now() < deadline {
                // A number drawn by a write answered 503 may never appear: the cursor waits
                // at that gap for the grace time (10 s), within the deadline.
                let (status, page) = read(&app, &format!("?after={cursor}&limit=50")).await;
                assert_eq!(status, StatusCode::OK, "{page}");
                reads += 1;
                let numbers = seqs(&page);
                assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
                for entry in page["entries"].as_array().unwrap() {
                    let seq = entry["seq"].as_u64().unwrap();
                    let handle = entry["handle"].as_str().unwrap().to_string();
                    if let Some(before) = applied.insert(seq, handle.clone()) {
                        assert_eq!(before, handle, "number {seq} came back changed");
                    }
                }
                let next = cursor_seq(&page["cursor"]);
                assert!(next >= last_seq, "the cursor moved back");
                last_seq = next;
                cursor = page["cursor"].as_str().unwrap().to_string();
                if page["more"] == false {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            (applied, reads)
        })
    };
    let writers = (0..2 * WRITERS).map(|w| {
        let app = apps[w % 2].clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..EACH {
                let mut bytes = [0u8; 32];
                bytes[0] = u8::try_from(w).unwrap();
                bytes[1] = u8::try_from(i).unwrap();
                let handle = proto::SessionId::from_bytes(&bytes).handle().to_string();
                // A 503 (the shared test server busy with every other test) is an answer a
                // client retries; the property is about the writes the feed accepted.
                let mut attempts = 0;
                let entry = loop {
                    let (status, entry) = app
                        .call(
                            Method::POST,
                            "/v1/revocations",
                            Some(json!({"handle": handle, "until": tomorrow()})),
                        )
                        .await;
                    attempts += 1;
                    match status {
                        StatusCode::CREATED => break entry,
                        StatusCode::SERVICE_UNAVAILABLE if attempts < 10 => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        _ => panic!("{status}: {entry}"),
                    }
                };
                written.push((entry["seq"].as_u64().unwrap(), handle));
            }
            written
        })
    });
    let mut written: BTreeMap<u64, String> = BTreeMap::new();
    for batch in futures::future::join_all(writers).await {
        for (seq, handle) in batch.unwrap() {
            assert!(
                written.insert(seq, handle).is_none(),
                "number {seq} given twice"
            );
        }
    }
    let total = 2 * WRITERS * EACH;
    assert_eq!(written.len(), total);
    let (applied, reads) = reader.await.unwrap();
    // A retried write may have drawn a number that never appears, or (its answer lost)
    // written an entry of the same handle: neither may hide an accepted one.
    for (seq, handle) in &written {
        assert_eq!(
            applied.get(seq),
            Some(handle),
            "accepted entry {seq} read exactly once, as written"
        );
    }
    eprintln!("{total} entries from two companions read in {reads} polls");
}
