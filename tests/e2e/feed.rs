//! Two proxies in front of one companion (docs/architecture.md, "Revocation feed"): with the
//! feed, a logout, a cycle and an API "log out everywhere" made through proxy A (or the API)
//! are refused on proxy B within 3 s, though B caches sessions for 60 s. Without the feed, B
//! serves a revoked session until its cache TTL runs out.

use super::{Options, Stack, cookie_of, stack_for, start_proxy};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Proxy A (the stack's) and proxy B, with the filter settings `filter`.
async fn two_proxies(filter: Value) -> (Stack, SocketAddr, harness::Host) {
    let stack = stack_for(Options {
        filter,
        ..Options::default()
    })
    .await;
    let (b, host) = start_proxy(stack.dev.clone()).await;
    (stack, b, host)
}

/// The state proxy `proxy` gives the app for `cookie`.
async fn state_on(stack: &Stack, proxy: SocketAddr, cookie: &str) -> String {
    let reply = stack.get_via(proxy, "/", Some(cookie), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let seen: Value = serde_json::from_str(&reply.body).unwrap();
    seen["x-session-state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// How long until proxy `b` stops serving `cookie` as valid, asking every 100 ms for at most
/// `limit`; `None` if it never did.
async fn refused_within(
    stack: &Stack,
    b: SocketAddr,
    cookie: &str,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if state_on(stack, b, cookie).await != "valid" {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Logs `user` in through A and has B serve the session; with `b_host`, until B serves it
/// from a cache. B runs two workers, each with its own cache, and a request that comes on a
/// new connection may land on the worker that has not seen the session yet: a few requests
/// make sure one of them has it cached.
async fn cached_on_b(
    stack: &Stack,
    b: SocketAddr,
    b_host: Option<&harness::Host>,
    user: &str,
) -> String {
    let (cookie, _) = stack.login(user).await;
    assert_eq!(state_on(stack, b, &cookie).await, "valid");
    let Some(host) = b_host else {
        assert_eq!(state_on(stack, b, &cookie).await, "valid");
        return cookie;
    };
    let before = host.counter("edge_session_cache_hit");
    for _ in 0..6 {
        assert_eq!(state_on(stack, b, &cookie).await, "valid");
        if host.counter("edge_session_cache_hit") > before {
            return cookie;
        }
    }
    panic!("B did not serve {user}'s session from its cache in 6 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_feed_a_revocation_through_a_reaches_b_within_3_seconds() {
    let filter = json!({"cache": {"ttl_ms": 60000}, "revocation_feed": {"interval_ms": 1000}});
    let (stack, b, host) = two_proxies(filter).await;
    let logs = || {
        host.logs()
            .iter()
            .filter(|l| l.message.contains("feed") || l.message.contains("cluster"))
            .map(|l| l.message.clone())
            .collect::<Vec<_>>()
    };
    // B's workers start with its first request; their poller then reads the feed's head
    // within a second, and only then does B cache anything.
    stack.get_via(b, "/", None, &[]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let limit = Duration::from_secs(3);

    let cookie = cached_on_b(&stack, b, Some(&host), "kim").await;
    stack.get("/logout", Some(&cookie), &[]).await;
    let took = refused_within(&stack, b, &cookie, limit).await;
    assert!(
        took.is_some(),
        "a logout through A still served on B after {limit:?}; feed failures {}: {:#?}",
        host.counter("edge_session_feed_failed"),
        logs()
    );
    eprintln!("logout through A refused on B after {took:?}");

    let cookie = cached_on_b(&stack, b, Some(&host), "lee").await;
    let cycled = stack.get("/login?user=lee", Some(&cookie), &[]).await;
    assert_ne!(
        cookie_of(&cycled.set_cookie.unwrap()),
        cookie,
        "the login cycled the id"
    );
    let took = refused_within(&stack, b, &cookie, limit).await;
    assert!(
        took.is_some(),
        "the old id of a cycle still served on B after {limit:?}"
    );
    eprintln!("cycled id refused on B after {took:?}");

    let cookie = cached_on_b(&stack, b, Some(&host), "max").await;
    let deleted = stack
        .client
        .delete(format!(
            "http://{}/v1/users/max/sessions",
            stack.companion.listen
        ))
        .bearer_auth(super::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let took = refused_within(&stack, b, &cookie, limit).await;
    assert!(
        took.is_some(),
        "log out everywhere still served on B after {limit:?}"
    );
    eprintln!("log out everywhere refused on B after {took:?}");
}

/// The case the feed exists for, once, with a short cache: without it, B serves a session
/// logged out through A until its cache TTL (4 s) runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_feed_b_serves_a_logged_out_session_until_its_cache_ttl() {
    let filter = json!({"cache": {"ttl_ms": 4000}, "revocation_feed": {"interval_ms": 0}});
    let (stack, b, _) = two_proxies(filter).await;
    let cookie = cached_on_b(&stack, b, None, "ned").await;
    stack.get("/logout", Some(&cookie), &[]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        state_on(&stack, b, &cookie).await,
        "valid",
        "B still serves its copy"
    );
    let took = refused_within(&stack, b, &cookie, Duration::from_secs(6)).await;
    assert!(took.is_some(), "B served it past its cache TTL");
}
