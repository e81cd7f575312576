//! Following the companion's revocation feed (docs/architecture.md, "Revocation feed"): one
//! worker polls under a lease, a session revoked elsewhere stops being served from every
//! worker's cache, a user revoked as a whole is dropped at each worker's next tick, and a feed
//! that cannot be read turns the cache off until it can.

use crate::support::*;
use harness::{CalloutReply, Vm};
use serde_json::{Value, json};
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

fn feed_config() -> Value {
    config(json!({"revocation_feed": {"interval_ms": 1000}, "cache": {"ttl_ms": 60000}}))
}

/// The feed polls in flight on `vm` (the root context's calls).
fn polls(vm: &Vm) -> Vec<harness::Callout> {
    vm.pending_callouts()
        .into_iter()
        .filter(|c| c.path().is_some_and(|p| p.starts_with("/v1/revocations")))
        .collect()
}

fn page(entries: Value, cursor: &str) -> CalloutReply {
    CalloutReply::new(200)
        .body(json!({"entries": entries, "cursor": cursor, "more": false}).to_string())
}

/// Ticks `vm` once and answers its poll with `reply`; panics unless exactly one poll went out.
fn poll_once(vm: &mut Vm, reply: CalloutReply) -> String {
    vm.advance(SECOND).unwrap();
    let sent = polls(vm);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let path = sent[0].path().unwrap_or_default().to_string();
    vm.answer_callout(sent[0].token, reply).unwrap();
    path
}

/// A request for `sid` on `vm`; answers its lookup when there is one. Returns whether the
/// companion was asked.
fn request(vm: &mut Vm, sid: &proto::SessionId, user: Option<&str>) -> bool {
    let s = get_with_cookie(vm, &format!("sid={}", valid_token(sid)));
    let lookups: Vec<_> = vm
        .pending_callouts()
        .into_iter()
        .filter(|c| c.path().is_some_and(|p| p.starts_with("/v1/sessions/")))
        .collect();
    for call in &lookups {
        vm.answer_callout(call.token, ok_reply(sid, json!({}), user))
            .unwrap();
    }
    assert_eq!(upstream(vm, s).get("x-session-state"), Some("valid"));
    respond(vm, s, &[]);
    !lookups.is_empty()
}

#[test]
fn a_session_revoked_through_the_feed_is_not_served_from_any_cache() {
    let host = host();
    let mut a = try_start(&host, &feed_config()).unwrap();
    let mut b = try_start(&host, &feed_config()).unwrap();
    // The first poll asks for the head; then from the cursor.
    assert_eq!(poll_once(&mut a, page(json!([]), "3-1")), "/v1/revocations");
    b.run_timers().unwrap();
    assert!(
        polls(&b).is_empty(),
        "one poller per proxy: a holds the lease"
    );
    let sid = id(1);
    assert!(request(&mut a, &sid, None));
    assert!(request(&mut b, &sid, None));
    assert!(!request(&mut b, &sid, None), "b serves it from its cache");
    let entry = json!([{"seq": 4, "at": "2026-01-01T00:00:00Z", "kind": "session",
        "handle": sid.handle().as_str(), "reason": "deleted"}]);
    let path = poll_once(&mut a, page(entry, "4-1"));
    assert_eq!(path, "/v1/revocations?after=3-1&limit=1000");
    assert!(
        request(&mut b, &sid, None),
        "b asks the companion again at once"
    );
    assert!(request(&mut a, &sid, None), "and so does a");
}

#[test]
fn a_user_revoked_as_a_whole_is_dropped_at_each_workers_next_tick() {
    let host = host();
    let mut a = try_start(&host, &feed_config()).unwrap();
    let mut b = try_start(&host, &feed_config()).unwrap();
    poll_once(&mut a, page(json!([]), "1-1"));
    b.run_timers().unwrap();
    let (alice, kept, bob) = (id(2), id(3), id(4));
    for sid in [&alice, &kept] {
        request(&mut b, sid, Some("alice"));
    }
    request(&mut b, &bob, Some("bob"));
    let entry = json!([{"seq": 2, "at": "2026-01-01T00:00:00Z", "kind": "user", "user": "alice",
        "except": kept.handle().as_str(), "reason": "deleted"}]);
    poll_once(&mut a, page(entry, "2-1"));
    b.run_timers().unwrap();
    assert!(
        request(&mut b, &alice, Some("alice")),
        "alice's session is dropped"
    );
    assert!(
        !request(&mut b, &kept, Some("alice")),
        "but the one she kept"
    );
    assert!(!request(&mut b, &bob, Some("bob")), "and other users'");
}

#[test]
fn a_feed_that_cannot_be_read_turns_the_cache_off_until_it_can() {
    let host = host();
    let cfg = config(json!({"revocation_feed": {"interval_ms": 1000}, "cache": {"ttl_ms": 2500}}));
    let mut vm = try_start(&host, &cfg).unwrap();
    poll_once(&mut vm, page(json!([]), "1-1"));
    let sid = id(5);
    request(&mut vm, &sid, None);
    assert!(!request(&mut vm, &sid, None), "cached");
    for _ in 0..3 {
        poll_once(&mut vm, CalloutReply::new(503).body("down"));
    }
    assert!(host.counter("edge_session_feed_failed") >= 3);
    assert!(
        request(&mut vm, &sid, None),
        "3 s without the feed: past the TTL, no cache"
    );
    assert!(request(&mut vm, &sid, None), "still none");
    poll_once(&mut vm, page(json!([]), "1-1"));
    assert!(request(&mut vm, &sid, None));
    assert!(
        !request(&mut vm, &sid, None),
        "the feed is back, and the cache"
    );
}

#[test]
fn a_resync_clears_every_workers_cache_and_follows_from_the_head() {
    let host = host();
    let mut a = try_start(&host, &feed_config()).unwrap();
    let mut b = try_start(&host, &feed_config()).unwrap();
    poll_once(&mut a, page(json!([]), "7-1"));
    b.run_timers().unwrap();
    let sid = id(6);
    request(&mut b, &sid, None);
    assert!(!request(&mut b, &sid, None));
    let resync = json!({"error": "resync", "message": "cursor too old", "cursor": "90-5"});
    poll_once(&mut a, CalloutReply::new(410).body(resync.to_string()));
    assert_eq!(host.counter("edge_session_feed_resync"), 1);
    b.run_timers().unwrap();
    assert!(request(&mut b, &sid, None), "b dropped its cache");
    let path = poll_once(&mut a, page(json!([]), "90-5"));
    assert_eq!(path, "/v1/revocations?after=90-5&limit=1000");
}

#[test]
fn a_poller_that_stops_is_replaced_when_its_lease_runs_out() {
    let host = host();
    let mut a = try_start(&host, &feed_config()).unwrap();
    let mut b = try_start(&host, &feed_config()).unwrap();
    poll_once(&mut a, page(json!([]), "1-1"));
    // a stops ticking (a stuck worker); b takes over once the 3 s lease has run out.
    let mut took_over = false;
    for _ in 0..4 {
        b.advance(SECOND).unwrap();
        if let Some(call) = polls(&b).into_iter().next() {
            assert_eq!(call.path(), Some("/v1/revocations?after=1-1&limit=1000"));
            took_over = true;
            break;
        }
    }
    assert!(took_over, "b never took the lease");
}

#[test]
fn bad_feed_settings_are_refused_by_name() {
    let host = host();
    for (feed, field) in [
        (json!({"interval_ms": 50}), "revocation_feed.interval_ms"),
        (
            json!({"interval_ms": 1000, "lease_ms": 1000}),
            "revocation_feed.lease_ms",
        ),
        (json!({"interval": 1000}), "revocation_feed"),
    ] {
        let err = try_start(&host, &config(json!({"revocation_feed": feed}))).err();
        assert!(err.is_some(), "{feed} accepted");
        assert!(
            host.logs().iter().any(|l| l.message.contains(field)),
            "{field} not named"
        );
    }
}

#[test]
fn nothing_is_cached_before_the_feeds_head_is_read() {
    let (_host, mut vm) = start(feed_config());
    let sid = id(7);
    assert!(request(&mut vm, &sid, None));
    assert!(
        request(&mut vm, &sid, None),
        "no cache yet: a revocation before the head would be lost"
    );
    poll_once(&mut vm, page(json!([]), "1-1"));
    assert!(request(&mut vm, &sid, None));
    assert!(
        !request(&mut vm, &sid, None),
        "cached once the head is read"
    );
}

/// A poll answered with a `:status` that is not a number, or not even UTF-8, is a failed poll:
/// counted, never a trap in the root context.
#[test]
fn a_poll_answered_with_a_broken_status_is_a_failure_not_a_trap() {
    let (host, mut vm) = start(feed_config());
    for status in [&b"\xff\xfe"[..], b"abc", b"", b"99999"] {
        poll_once(
            &mut vm,
            CalloutReply::with_raw_status(status.to_vec()).body("{}"),
        );
    }
    assert_eq!(host.counter("edge_session_feed_failed"), 4);
    poll_once(&mut vm, page(json!([]), "1-1"));
    let sid = id(8);
    request(&mut vm, &sid, None);
    assert!(
        !request(&mut vm, &sid, None),
        "the VM still works and caches"
    );
}
