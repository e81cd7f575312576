//! Failure drills under load, over real sockets: the database stopped and restarted, the
//! companion killed and restarted, the companion answering after the filter's timeout. In each,
//! no request hangs past the filter's timeout, nothing answers 5xx beyond the configured policy,
//! no cookie is cleared for an outage, and service comes back without restarting anything.

use super::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The filter's companion timeout in `envoy.yaml` is 500 ms; on a busy two-core machine a
/// request may take a while longer end to end, but never as long as this.
const WITHIN_TIMEOUT: Duration = Duration::from_millis(2_000);
/// Load: this many clients, each sending one request after another.
const CLIENTS: usize = 4;

#[derive(Debug)]
struct Sample {
    status: u16,
    /// `x-session-state` as the app saw it (200 answers only).
    state: Option<String>,
    set_cookie: bool,
    took: Duration,
}

/// `CLIENTS` concurrent loops of `GET /` with `cookie` for `period`. A request that gets no
/// answer within ten seconds is recorded with status 0.
async fn load(stack: &Arc<Stack>, cookie: &str, period: Duration) -> Vec<Sample> {
    let deadline = Instant::now() + period;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (stack, cookie) = (stack.clone(), cookie.to_string());
        clients.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let reply = tokio::time::timeout(
                    Duration::from_secs(10),
                    stack.get("/", Some(&cookie), &[]),
                )
                .await;
                let took = started.elapsed();
                samples.push(match reply {
                    Ok(reply) => Sample {
                        status: reply.status.as_u16(),
                        state: serde_json::from_str::<Value>(&reply.body)
                            .ok()
                            .and_then(|seen| seen["x-session-state"].as_str().map(String::from)),
                        set_cookie: reply.set_cookie.is_some(),
                        took,
                    },
                    Err(_) => Sample {
                        status: 0,
                        state: None,
                        set_cookie: false,
                        took,
                    },
                });
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.unwrap());
    }
    all
}

/// How often each `(status, state)` occurred, for assertion messages.
fn tally(samples: &[Sample]) -> BTreeMap<(u16, String), usize> {
    let mut counts = BTreeMap::new();
    for s in samples {
        let state = s.state.clone().unwrap_or_default();
        *counts.entry((s.status, state)).or_insert(0) += 1;
    }
    counts
}

fn slowest(samples: &[Sample]) -> Duration {
    samples.iter().map(|s| s.took).max().unwrap_or_default()
}

/// Every request answered in time and none cleared the cookie.
fn assert_in_time_and_no_logout(samples: &[Sample], phase: &str) {
    assert!(!samples.is_empty(), "{phase}: no request completed");
    assert!(
        slowest(samples) < WITHIN_TIMEOUT,
        "{phase}: the slowest request took {:?}; {:?}",
        slowest(samples),
        tally(samples)
    );
    assert!(
        samples.iter().all(|s| !s.set_cookie),
        "{phase}: an outage never clears the cookie"
    );
}

fn assert_all_valid(samples: &[Sample], phase: &str) {
    assert!(!samples.is_empty(), "{phase}: no request completed");
    assert!(
        samples
            .iter()
            .all(|s| s.status == 200 && s.state.as_deref() == Some("valid")),
        "{phase}: {:?}",
        tally(samples)
    );
}

/// During an outage under `fail_open`: every answer is a 200, the session either still
/// cached (`valid`) or `unavailable`, and the outage was seen at least once.
fn assert_fail_open(samples: &[Sample], phase: &str) {
    assert_in_time_and_no_logout(samples, phase);
    let counts = tally(samples);
    assert!(
        counts
            .keys()
            .all(|(status, state)| *status == 200 && (state == "valid" || state == "unavailable")),
        "{phase}: {counts:?}"
    );
    assert!(
        counts.contains_key(&(200, "unavailable".to_string())),
        "{phase}: the outage was never seen: {counts:?}"
    );
}

/// During an outage under `fail_closed`: 503 unless the session was still cached.
fn assert_fail_closed(samples: &[Sample], phase: &str) {
    assert_in_time_and_no_logout(samples, phase);
    let counts = tally(samples);
    assert!(
        counts
            .keys()
            .all(|(status, state)| *status == 503 || (*status == 200 && state == "valid")),
        "{phase}: {counts:?}"
    );
    assert!(
        counts.keys().any(|(status, _)| *status == 503),
        "{phase}: the outage was never seen: {counts:?}"
    );
}

/// Waits until the session reads as valid again (no restart of anything), then checks that
/// a second of load is all valid.
async fn assert_recovers(stack: &Arc<Stack>, cookie: &str, phase: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = stack.get("/", Some(cookie), &[]).await;
        if reply.status == StatusCode::OK && reply.body.contains(r#""x-session-state": "valid""#) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{phase}: not recovered after 30 s: {} {}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_all_valid(&load(stack, cookie, Duration::from_secs(1)).await, phase);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_stopped_and_restarted_under_load() {
    for policy in ["fail_open", "fail_closed"] {
        let stack = Arc::new(
            stack_for(Options {
                store_policy: policy,
                database_link: true,
                ..Options::default()
            })
            .await,
        );
        let (cookie, id) = stack.login("ivy").await;
        assert_all_valid(&load(&stack, &cookie, Duration::from_secs(1)).await, policy);

        let database = stack.database_link.as_ref().unwrap();
        database.cut();
        let outage = load(&stack, &cookie, Duration::from_secs(3)).await;
        match policy {
            "fail_open" => assert_fail_open(&outage, "database down, fail_open"),
            _ => assert_fail_closed(&outage, "database down, fail_closed"),
        }
        // A write while the database is down: `on_write_error: pass` sends the app's response
        // on without any cookie change. The companion may still apply it if the database
        // returns within the companion's own timeout (the filter stopped waiting earlier), so
        // it is stored whole or not at all; the session is never lost or mangled.
        let write = stack.get("/set?key=late&value=1", Some(&cookie), &[]).await;
        // Under fail_closed the request itself is refused unless its session was cached.
        let allowed: &[u16] = match policy {
            "fail_open" => &[200],
            _ => &[200, 503],
        };
        assert!(
            allowed.contains(&write.status.as_u16()),
            "{policy}: {}",
            write.status
        );
        assert!(write.set_cookie.is_none());

        database.restore().await;
        assert_recovers(&stack, &cookie, policy).await;
        let data = &stack.stored(&id).await["data"];
        assert!(
            *data == serde_json::json!({"user": "ivy"})
                || *data == serde_json::json!({"user": "ivy", "late": "1"}),
            "{data}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn companion_killed_and_restarted_under_load() {
    let stack = Arc::new(
        stack_for(Options {
            companion_link: true,
            ..Options::default()
        })
        .await,
    );
    let (cookie, _) = stack.login("jan").await;
    assert_all_valid(
        &load(&stack, &cookie, Duration::from_secs(1)).await,
        "before",
    );

    // Killed: its connections drop at once and its port refuses, as for a dead process.
    stack.companion_link.as_ref().unwrap().cut();
    stack.stop_companion().await;
    let outage = load(&stack, &cookie, Duration::from_secs(3)).await;
    assert_fail_open(&outage, "companion down");

    stack.start_companion().await;
    stack.companion_link.as_ref().unwrap().restore().await;
    assert_recovers(&stack, &cookie, "companion back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_companion_is_cut_off_at_the_filter_timeout() {
    for policy in ["fail_open", "fail_closed"] {
        // No cache, so every request asks the companion.
        let stack = Arc::new(
            stack_for(Options {
                store_policy: policy,
                cache_ttl_ms: Some(0),
                companion_link: true,
                ..Options::default()
            })
            .await,
        );
        let (cookie, _) = stack.login("kim").await;
        let link = stack.companion_link.as_ref().unwrap();
        // Replies arrive a second and a half late, three times the filter's timeout.
        let delay = Duration::from_millis(1_500);
        link.slow_down(delay);
        let slow = load(&stack, &cookie, Duration::from_secs(3)).await;
        assert!(
            slowest(&slow) < delay,
            "{policy}: the filter waited for the slow reply ({:?})",
            slowest(&slow)
        );
        let counts = tally(&slow);
        let expected = match policy {
            "fail_open" => (200, "unavailable".to_string()),
            _ => (503, String::new()),
        };
        assert!(
            counts.keys().all(|k| *k == expected),
            "{policy}: {counts:?}"
        );
        assert_in_time_and_no_logout(&slow, policy);

        link.slow_down(Duration::ZERO);
        assert_recovers(&stack, &cookie, policy).await;
    }
}
