//! Absolute lifetimes: `expires_at = min(now + ttl, created_at + absolute)`, the absolute
//! being the smaller of the companion's default and the session's own, counted from the
//! creation a cycle keeps.

use crate::helpers::*;
use mongodb::bson::doc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

fn path_of(session: &Value) -> String {
    format!("/v1/sessions/{}", session["id"].as_str().unwrap())
}

#[tokio::test]
async fn a_session_created_with_an_absolute_limit_expires_at_it() {
    let app = spawn().await;
    let created = app
        .create(json!({"ttl_seconds": 3600, "absolute_ttl_seconds": 600}))
        .await;
    let born = millis(&created["created_at"]);
    assert_eq!(millis(&created["expires_at"]), born + 600_000, "{created}");
    assert_eq!(millis(&created["absolute_expires_at"]), born + 600_000);
    assert_eq!(created["absolute_ttl_seconds"], 600);
    assert_eq!(created["last_seen_at"], created["created_at"]);

    // An absolute limit longer than the idle one changes nothing yet.
    let long = app
        .create(json!({"ttl_seconds": 60, "absolute_ttl_seconds": 600}))
        .await;
    let born = millis(&long["created_at"]);
    assert_eq!(millis(&long["expires_at"]), born + 60_000);
    assert_eq!(millis(&long["absolute_expires_at"]), born + 600_000);

    let none = app.create(json!({})).await;
    assert_eq!(none["absolute_expires_at"], Value::Null);
    assert_eq!(none["absolute_ttl_seconds"], Value::Null);
}

/// Touches slide the expiry until it reaches the absolute end, then stop there, and the
/// session ends at it however recently it was touched.
#[tokio::test]
async fn touches_stop_extending_at_the_absolute_end() {
    let app = spawn().await;
    let created = app
        .create(json!({"ttl_seconds": 1, "absolute_ttl_seconds": 2}))
        .await;
    let path = path_of(&created);
    let end = millis(&created["created_at"]) + 2_000;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, first) = app
        .call(Method::PATCH, &path, Some(json!({"touch": true})))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let slid = millis(&first["expires_at"]);
    assert_eq!(slid, millis(&first["updated_at"]) + 1_000, "still sliding");
    assert!(slid < end);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, second) = app
        .call(Method::PATCH, &path, Some(json!({"touch": true})))
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(
        millis(&second["expires_at"]),
        end,
        "held at the absolute end"
    );
    assert!(millis(&second["updated_at"]) + 1_000 > end);
    assert_eq!(millis(&second["absolute_expires_at"]), end);
    // A new idle lifetime is held to it too.
    let (_, longer) = app
        .call(Method::PATCH, &path, Some(json!({"ttl_seconds": 3600})))
        .await;
    assert_eq!(millis(&longer["expires_at"]), end, "{longer}");

    let wait = end - millis(&longer["updated_at"]) + 100;
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap())).await;
    let (status, _) = app
        .call(Method::PATCH, &path, Some(json!({"touch": true})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "past its absolute end");
    assert_eq!(
        app.call(Method::GET, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_cycle_keeps_the_creation_time_and_so_the_absolute_end() {
    let app = spawn().await;
    let created = app
        .create(json!({"ttl_seconds": 60, "absolute_ttl_seconds": 120, "user": "cy"}))
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, cycled) = app
        .call(Method::POST, &format!("{}/cycle", path_of(&created)), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cycled}");
    assert_ne!(cycled["id"], created["id"]);
    for kept in [
        "created_at",
        "absolute_expires_at",
        "absolute_ttl_seconds",
        "expires_at",
    ] {
        assert_eq!(cycled[kept], created[kept], "{kept}");
    }
    assert!(millis(&cycled["last_seen_at"]) > millis(&created["last_seen_at"]));
    let (_, touched) = app
        .call(
            Method::PATCH,
            &path_of(&cycled),
            Some(json!({"touch": true})),
        )
        .await;
    assert_eq!(touched["created_at"], created["created_at"]);
}

/// The companion's default and the session's own: the smaller wins, whichever it is; a
/// PATCH can change the session's own, counted from the creation, and a new absolute limit
/// alone never renews the expiry.
#[tokio::test]
async fn the_smaller_of_the_default_and_the_own_absolute_limit_wins() {
    let app = spawn_with(&mongodb_uri(), &unique_database(), |c| {
        c.absolute_ttl_seconds = Some(1_000);
    })
    .await;
    let end =
        |session: &Value| millis(&session["absolute_expires_at"]) - millis(&session["created_at"]);
    let shorter = app
        .create(json!({"ttl_seconds": 3600, "absolute_ttl_seconds": 500}))
        .await;
    assert_eq!(end(&shorter), 500_000);
    assert_eq!(
        millis(&shorter["expires_at"]),
        millis(&shorter["created_at"]) + 500_000
    );
    let longer = app
        .create(json!({"ttl_seconds": 3600, "absolute_ttl_seconds": 5_000}))
        .await;
    assert_eq!(end(&longer), 1_000_000, "the default is smaller");
    assert_eq!(
        millis(&longer["expires_at"]),
        millis(&longer["created_at"]) + 1_000_000
    );
    let own_none = app.create(json!({"ttl_seconds": 3600})).await;
    assert_eq!(end(&own_none), 1_000_000);
    assert_eq!(own_none["absolute_ttl_seconds"], Value::Null);

    let (status, lowered) = app
        .call(
            Method::PATCH,
            &path_of(&longer),
            Some(json!({"absolute_ttl_seconds": 300})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{lowered}");
    assert_eq!(end(&lowered), 300_000);
    assert_eq!(
        millis(&lowered["expires_at"]),
        millis(&longer["created_at"]) + 300_000,
        "counted from the creation"
    );
    let (_, raised) = app
        .call(
            Method::PATCH,
            &path_of(&lowered),
            Some(json!({"absolute_ttl_seconds": 2_000})),
        )
        .await;
    assert_eq!(end(&raised), 1_000_000, "the default still applies");
    assert_eq!(
        raised["expires_at"], lowered["expires_at"],
        "a new absolute limit alone renews nothing"
    );
}

/// Turning the default on (or lowering it) ends older sessions at once, at their next read,
/// not at their next touch: two companions on one database, one with the default.
#[tokio::test]
async fn a_default_turned_on_ends_older_sessions_at_once() {
    let database = unique_database();
    let without = spawn_with(&mongodb_uri(), &database, |_| {}).await;
    let with = spawn_with(&mongodb_uri(), &database, |c| {
        c.absolute_ttl_seconds = Some(1);
    })
    .await;
    let created = without
        .create(json!({"ttl_seconds": 3600, "user": "old"}))
        .await;
    let path = path_of(&created);
    assert_eq!(with.call(Method::GET, &path, None).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        without.call(Method::GET, &path, None).await.0,
        StatusCode::OK
    );
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"touch": true}))),
        (Method::POST, None),
    ] {
        let target = if method == Method::POST {
            format!("{path}/cycle")
        } else {
            path.clone()
        };
        let (status, answer) = with.call(method.clone(), &target, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {answer}");
    }
    let (_, listed) = with.call(Method::GET, "/v1/users/old/sessions", None).await;
    assert_eq!(listed, json!([]));
    let raw = raw_database(&database).await;
    let stored = raw
        .collection::<mongodb::bson::Document>("sessions")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(stored, 1, "nothing was written to it");
}

/// A PATCH that sets an absolute limit the session is already past ends it: 404, as a read
/// would answer from then on.
#[tokio::test]
async fn an_absolute_limit_the_session_is_past_ends_it() {
    let app = spawn().await;
    let created = app.create(json!({"ttl_seconds": 3600})).await;
    let path = path_of(&created);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body) = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"absolute_ttl_seconds": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        app.call(Method::GET, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_absolute_limits_are_400_and_change_nothing() {
    let app = spawn().await;
    let max = companion::config::MAX_TTL_LIMIT_SECONDS;
    let created = app.create(json!({})).await;
    let path = path_of(&created);
    for bad in [
        json!(0),
        json!(-1),
        json!(1.5),
        json!("60"),
        json!(max + 1),
        json!(null),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/v1/sessions",
                Some(json!({"absolute_ttl_seconds": bad})),
            )
            .await;
        // `null` reads as "not given" on create, as for every optional field.
        if bad.is_null() {
            assert_eq!(status, StatusCode::CREATED, "{body}");
            continue;
        }
        assert_eq!(status, StatusCode::BAD_REQUEST, "create {bad}: {body}");
        assert_eq!(body["error"], "bad_request");
        let (status, body) = app
            .call(
                Method::PATCH,
                &path,
                Some(json!({"absolute_ttl_seconds": bad})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "patch {bad}: {body}");
    }
    let (_, read) = app.call(Method::GET, &path, None).await;
    assert_eq!(read, created, "nothing changed");
    // Exactly the bound is taken.
    let at_max = app
        .create(json!({"absolute_ttl_seconds": max, "ttl_seconds": 60}))
        .await;
    assert_eq!(at_max["absolute_ttl_seconds"], json!(max));
    let (status, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"absolute_ttl_seconds": max})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}
