//! What users can see of their sessions and how they end them: the listing by handle, the
//! client's user agent and address, ending one session, and ending all others.

use crate::helpers::*;
use proto::{MAX_CLIENT_ADDRESS_BYTES, MAX_USER_AGENT_BYTES};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn listed_handles(list: &Value) -> Vec<String> {
    let mut handles: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["handle"].as_str().unwrap().to_string())
        .collect();
    handles.sort();
    handles
}

fn sorted(mut handles: Vec<String>) -> Vec<String> {
    handles.sort();
    handles
}

#[tokio::test]
async fn the_listing_shows_handles_and_metadata_never_ids_or_data() {
    let app = spawn().await;
    let created = app
        .create(json!({
            "user": "lena",
            "data": {"secret": "s3cr3t-data"},
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "client_address": "2001:db8::7",
            "browser_session": true,
        }))
        .await;
    assert_eq!(created["user_agent"], "Mozilla/5.0 (X11; Linux x86_64)");
    assert_eq!(created["client_address"], "2001:db8::7");
    let (status, list) = app.call(Method::GET, "/v1/users/lena/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list,
        json!([{
            "handle": handle_of_session(&created),
            "created_at": created["created_at"],
            "last_seen_at": created["last_seen_at"],
            "expires_at": created["expires_at"],
            "browser_session": true,
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
            "client_address": "2001:db8::7",
        }])
    );
    let text = list.to_string();
    assert!(!text.contains(created["id"].as_str().unwrap()));
    assert!(!text.contains("s3cr3t-data"));
}

/// A cycle is usually a login: the user agent and address it gives replace the session's;
/// one that gives none (the filter before it sent them) keeps them.
#[tokio::test]
async fn a_cycle_records_the_client_it_came_from() {
    let app = spawn().await;
    let created = app
        .create(json!({"user_agent": "old-agent", "client_address": "192.0.2.1"}))
        .await;
    let cycle = |session: &Value| format!("/v1/sessions/{}/cycle", session["id"].as_str().unwrap());
    let (status, bare) = app.call(Method::POST, &cycle(&created), None).await;
    assert_eq!(status, StatusCode::CREATED, "{bare}");
    assert_eq!(bare["user_agent"], "old-agent");
    assert_eq!(bare["client_address"], "192.0.2.1");
    let (status, moved) = app
        .call(
            Method::POST,
            &cycle(&bare),
            Some(json!({"user_agent": "new-agent", "client_address": "198.51.100.9"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{moved}");
    assert_eq!(moved["user_agent"], "new-agent");
    assert_eq!(moved["client_address"], "198.51.100.9");
    for bad in [json!({"user": "x"}), json!([1]), json!("agent")] {
        let (status, body) = app.call(Method::POST, &cycle(&moved), Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let raw = app
        .client
        .post(app.url(&cycle(&moved)))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
}

/// User agents and addresses are cut at a character boundary, never refused: at the limit
/// they are kept whole, one byte past they lose what does not fit, and a two-byte character
/// across the limit goes whole.
#[tokio::test]
async fn user_agents_and_addresses_are_cut_at_their_limits() {
    let app = spawn().await;
    let cases = [
        ("user_agent", MAX_USER_AGENT_BYTES),
        ("client_address", MAX_CLIENT_ADDRESS_BYTES),
    ];
    for (field, max) in cases {
        let at = "a".repeat(max);
        let past = format!("{at}b");
        let wide_at = "é".repeat(max / 2);
        let wide_past = format!("a{wide_at}");
        let expected_wide_past = format!("a{}", "é".repeat(max / 2 - 1));
        for (sent, kept) in [
            (&at, &at),
            (&past, &at),
            (&wide_at, &wide_at),
            (&wide_past, &expected_wide_past),
        ] {
            let created = app.create(json!({ field: sent })).await;
            assert_eq!(
                created[field].as_str(),
                Some(kept.as_str()),
                "{field} {}",
                sent.len()
            );
            assert!(kept.len() <= max);
            let (status, cycled) = app
                .call(
                    Method::POST,
                    &format!("/v1/sessions/{}/cycle", created["id"].as_str().unwrap()),
                    Some(json!({ field: sent })),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED);
            assert_eq!(cycled[field].as_str(), Some(kept.as_str()), "cycle {field}");
        }
    }
}

#[tokio::test]
async fn a_user_ends_one_session_by_its_handle() {
    let app = spawn().await;
    let here = app.create(json!({"user": "mia"})).await;
    let there = app.create(json!({"user": "mia"})).await;
    let other = app.create(json!({"user": "noah"})).await;
    let path = |user: &str, handle: &str| format!("/v1/users/{user}/sessions/{handle}");

    // Another user's handle, under this user, is no session of theirs.
    let (status, _) = app
        .call(
            Method::DELETE,
            &path("mia", &handle_of_session(&other)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app
        .call(
            Method::DELETE,
            &path("mia", &handle_of_session(&there)),
            None,
        )
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (status, _) = app
        .call(
            Method::DELETE,
            &path("mia", &handle_of_session(&there)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already gone");
    let (_, list) = app.call(Method::GET, "/v1/users/mia/sessions", None).await;
    assert_eq!(listed_handles(&list), vec![handle_of_session(&here)]);
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/v1/sessions/{}", there["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, noah) = app.call(Method::GET, "/v1/users/noah/sessions", None).await;
    assert_eq!(listed_handles(&noah), vec![handle_of_session(&other)]);

    // A session id is not a handle, nor is anything else that is not 22 characters of
    // canonical base64url.
    let id = here["id"].as_str().unwrap();
    let handle = handle_of_session(&here);
    for bad in [
        id.to_string(),
        handle[..21].to_string(),
        format!("{handle}A"),
        // Stray bits in the last character: `B` sets one, unless the handle ends in it.
        format!("{}B", &handle[..21]),
        "..".repeat(11),
    ] {
        if proto::SessionHandle::parse(&bad).is_ok() {
            continue;
        }
        let (status, body) = app.call(Method::DELETE, &path("mia", &bad), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request");
    }
    let long_user = "u".repeat(proto::MAX_USER_BYTES + 1);
    let (status, _) = app
        .call(Method::DELETE, &path(&long_user, &handle), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, list) = app.call(Method::GET, "/v1/users/mia/sessions", None).await;
    assert_eq!(listed_handles(&list), vec![handle], "nothing else ended");
}

#[tokio::test]
async fn a_user_ends_every_session_but_the_one_in_use() {
    let app = spawn().await;
    let here = app.create(json!({"user": "olga"})).await;
    let phone = app.create(json!({"user": "olga"})).await;
    let laptop = app.create(json!({"user": "olga"})).await;
    let other = app.create(json!({"user": "pete"})).await;
    let (status, deleted) = app
        .call(
            Method::DELETE,
            &format!(
                "/v1/users/olga/sessions?except={}",
                handle_of_session(&here)
            ),
            None,
        )
        .await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({"deleted": 2})));
    let (_, list) = app.call(Method::GET, "/v1/users/olga/sessions", None).await;
    assert_eq!(listed_handles(&list), vec![handle_of_session(&here)]);
    for gone in [&phone, &laptop] {
        let (status, _) = app
            .call(
                Method::GET,
                &format!("/v1/sessions/{}", gone["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, pete) = app.call(Method::GET, "/v1/users/pete/sessions", None).await;
    assert_eq!(listed_handles(&pete), vec![handle_of_session(&other)]);

    // A handle that names none of the user's sessions keeps none.
    let (status, deleted) = app
        .call(
            Method::DELETE,
            &format!(
                "/v1/users/olga/sessions?except={}",
                handle_of_session(&other)
            ),
            None,
        )
        .await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({"deleted": 1})));
    for bad in [
        "?except=".to_string(),
        "?except=nope".to_string(),
        format!("?except={}", here["id"].as_str().unwrap()),
        format!("?excep={}", handle_of_session(&here)),
        format!(
            "?except={}&except={}",
            handle_of_session(&here),
            handle_of_session(&here)
        ),
    ] {
        let (status, body) = app
            .call(
                Method::DELETE,
                &format!("/v1/users/pete/sessions{bad}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (_, pete) = app.call(Method::GET, "/v1/users/pete/sessions", None).await;
    assert_eq!(
        listed_handles(&pete),
        sorted(vec![handle_of_session(&other)]),
        "untouched"
    );
}
