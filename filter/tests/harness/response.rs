//! The response path: legacy apps write sessions with control headers (docs/architecture.md,
//! "Response path").

use crate::support::*;
use harness::{Action, CalloutReply};
use serde_json::{Value, json};
use std::time::Duration;

const LATER: &str = "2026-01-15T00:00:00Z";

fn body_of(call: &harness::Callout) -> Value {
    serde_json::from_slice(&call.body).unwrap()
}

fn client(vm: &harness::Vm, s: u32) -> harness::Message {
    let stream = vm.stream(s).unwrap();
    assert!(stream.violations.is_empty(), "{:?}", stream.violations);
    stream
        .client
        .clone()
        .unwrap_or_else(|| panic!("nothing reached the client: {stream:#?}"))
}

#[test]
fn login_without_a_session_creates_one_and_sets_its_cookie() {
    let (host, mut vm) = start(config(json!({})));
    let s = get(&mut vm, &[]);
    let action = app_responds(
        &mut vm,
        s,
        &[
            ("x-session-cycle", "1"),
            ("x-session-user", "alice"),
            ("x-session-set", r#"{"user": "alice"}"#),
        ],
    );
    assert_eq!(
        action,
        Action::Pause,
        "the response waits for the companion"
    );
    assert!(vm.stream(s).unwrap().client.is_none());
    let call = only_callout(&vm);
    assert_eq!(
        (call.method(), call.path()),
        (Some("POST"), Some("/v1/sessions"))
    );
    assert_eq!(call.headers.get("content-type"), Some("application/json"));
    assert_eq!(
        body_of(&call),
        json!({"data": {"user": "alice"}, "user": "alice", "ttl_seconds": 1209600,
            "user_agent": "test", "client_address": "127.0.0.1"})
    );

    let new = id(20);
    let created = session_with(
        &new,
        json!({"user": "alice"}),
        Some("alice"),
        1209600,
        LATER,
        false,
    );
    vm.answer_callout(call.token, CalloutReply::new(201).body(created))
        .unwrap();
    let out = client(&vm, s);
    assert_eq!(
        out.header("set-cookie").map(str::to_string),
        Some(format!(
            "sid={}; Max-Age=1209600; Path=/; Secure; HttpOnly; SameSite=Lax",
            valid_token(&new)
        ))
    );
    assert!(
        session_headers(&out.headers).is_empty(),
        "control headers never reach the client"
    );
    assert_eq!(out.header("vary"), Some("Cookie"));
    assert_eq!(vm.stream(s).unwrap().response.resumes, 1);
    assert_eq!(host.counter("edge_session_writes"), 1);
}

/// A shared cache must never keep a response that hands out a session: the app's `public`
/// becomes `private` on any response that sets or clears the cookie, its other directives
/// kept; without a cookie change the app's own caching stands.
#[test]
fn a_response_that_writes_the_cookie_is_never_public() {
    let new = id(21);
    let created = session_with(&new, json!({}), Some("alice"), 60, LATER, false);
    let (_host, mut vm) = start(config(json!({})));
    let s = get(&mut vm, &[]);
    app_responds(
        &mut vm,
        s,
        &[
            ("x-session-user", "alice"),
            ("cache-control", "public, max-age=600"),
        ],
    );
    let call = only_callout(&vm);
    vm.answer_callout(call.token, CalloutReply::new(201).body(created))
        .unwrap();
    let out = client(&vm, s);
    assert!(out.header("set-cookie").is_some());
    assert_eq!(
        out.headers.get_all("cache-control"),
        vec!["max-age=600, private"]
    );

    // Clearing a bad cookie is a cookie write too.
    let (_host, mut vm) = start(config(json!({})));
    let s = get_with_cookie(&mut vm, "sid=bad");
    let out = respond(&mut vm, s, &[("cache-control", "public")]);
    assert!(out.header("set-cookie").is_some());
    assert_eq!(out.headers.get_all("cache-control"), vec!["private"]);

    // A cached session read, no cookie written: the app's own caching stands.
    let (_host, mut vm) = start(config(json!({})));
    let sid = id(22);
    let s = resolved_request(&mut vm, &sid, session_body(&sid, json!({}), None));
    let out = respond(&mut vm, s, &[("cache-control", "public, max-age=5")]);
    assert_eq!(out.header("set-cookie"), None);
    assert_eq!(
        out.headers.get_all("cache-control"),
        vec!["public, max-age=5"]
    );
}

#[test]
fn login_with_a_session_cycles_it_then_applies_the_changes_on_the_new_id() {
    let (host, mut vm) = start(config(json!({})));
    let old = id(21);
    let s = resolved_request(
        &mut vm,
        &old,
        session_body(&old, json!({"cart": [1]}), None),
    );
    app_responds(
        &mut vm,
        s,
        &[("x-session-cycle", "1"), ("x-session-user", "bob")],
    );
    let cycle = only_callout(&vm);
    assert_eq!(
        (cycle.method(), cycle.path()),
        (
            Some("POST"),
            Some(format!("/v1/sessions/{}/cycle", old.as_str()).as_str())
        )
    );
    let new = id(22);
    vm.answer_callout(
        cycle.token,
        CalloutReply::new(201).body(session_body(&new, json!({"cart": [1]}), None)),
    )
    .unwrap();
    let patch = only_callout(&vm);
    assert_eq!(
        (patch.method(), patch.path()),
        (
            Some("PATCH"),
            Some(format!("/v1/sessions/{}", new.as_str()).as_str())
        )
    );
    assert_eq!(body_of(&patch), json!({"user": "bob"}));
    vm.answer_callout(
        patch.token,
        CalloutReply::new(200).body(session_body(&new, json!({"cart": [1]}), Some("bob"))),
    )
    .unwrap();
    let cookie = client(&vm, s).header("set-cookie").unwrap().to_string();
    assert!(
        cookie.starts_with(&format!("sid={};", valid_token(&new))),
        "{cookie}"
    );
    assert_eq!(
        host.counter("edge_session_writes"),
        1,
        "one write, two calls"
    );

    // The old id was dropped from the cache: the companion is asked, and says it is gone.
    let again = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&old)));
    let read = only_callout(&vm);
    vm.answer_callout(read.token, CalloutReply::new(404))
        .unwrap();
    assert_eq!(upstream(&vm, again).get("x-session-state"), Some("expired"));
}

#[test]
fn set_patches_the_session_without_a_new_cookie() {
    let (_host, mut vm) = start(config(json!({})));
    let sid = id(23);
    let s = resolved_request(&mut vm, &sid, session_body(&sid, json!({"a": 1}), None));
    app_responds(
        &mut vm,
        s,
        &[("x-session-set", r#"{"b": "two", "a": null}"#)],
    );
    let call = only_callout(&vm);
    assert_eq!(call.method(), Some("PATCH"));
    assert_eq!(body_of(&call), json!({"set": {"b": "two"}, "unset": ["a"]}));
    vm.answer_callout(
        call.token,
        CalloutReply::new(200).body(session_body(&sid, json!({"b": "two"}), None)),
    )
    .unwrap();
    let out = client(&vm, s);
    assert!(
        !out.headers.contains("set-cookie"),
        "same session, same cookie"
    );
    assert_eq!(out.header("cache-control"), Some("private"));
}

#[test]
fn browser_expiry_reissues_the_cookie_without_max_age() {
    let (_host, mut vm) = start(config(json!({})));
    let sid = id(24);
    let s = resolved_request(&mut vm, &sid, session_body(&sid, json!({}), None));
    app_responds(&mut vm, s, &[("x-session-expiry", "browser")]);
    let call = only_callout(&vm);
    assert_eq!(body_of(&call), json!({"browser_session": true}));
    vm.answer_callout(
        call.token,
        CalloutReply::new(200).body(session_with(&sid, json!({}), None, 1209600, LATER, true)),
    )
    .unwrap();
    assert_eq!(
        client(&vm, s).header("set-cookie").map(str::to_string),
        Some(format!(
            "sid={}; Path=/; Secure; HttpOnly; SameSite=Lax",
            valid_token(&sid)
        ))
    );
}

#[test]
fn logout_deletes_the_session_clears_the_cookie_and_every_worker_forgets_it() {
    let host = host();
    let cfg = config(json!({}));
    let mut a = try_start(&host, &cfg).unwrap();
    let mut b = try_start(&host, &cfg).unwrap();
    let sid = id(25);
    // Both workers have the session cached.
    let on_a = resolved_request(&mut a, &sid, session_body(&sid, json!({}), Some("u")));
    let on_b = resolved_request(&mut b, &sid, session_body(&sid, json!({}), Some("u")));
    respond(&mut b, on_b, &[]);
    let cached = get_with_cookie(&mut b, &format!("sid={}", valid_token(&sid)));
    assert!(
        b.pending_callouts().is_empty(),
        "b serves it from its cache"
    );
    respond(&mut b, cached, &[]);

    app_responds(
        &mut a,
        on_a,
        &[
            ("x-session-flush", "1"),
            ("x-session-set", r#"{"ignored": 1}"#),
        ],
    );
    let call = only_callout(&a);
    assert_eq!(
        (call.method(), call.path()),
        (
            Some("DELETE"),
            Some(format!("/v1/sessions/{}", sid.as_str()).as_str())
        )
    );
    a.answer_callout(call.token, CalloutReply::new(204))
        .unwrap();
    assert_eq!(
        client(&a, on_a).header("set-cookie"),
        Some("sid=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax")
    );

    // Worker b no longer trusts its cached copy: the replayed cookie goes to the companion.
    let replay = get_with_cookie(&mut b, &format!("sid={}", valid_token(&sid)));
    let read = only_callout(&b);
    b.answer_callout(read.token, CalloutReply::new(404))
        .unwrap();
    assert_eq!(upstream(&b, replay).get("x-session-state"), Some("expired"));
    assert_eq!(host.counter("edge_session_writes"), 1);
}

/// A lookup sent before a logout on another worker and answered after the logout was
/// announced must not be cached as fresh: its answer is older than the logout, however late
/// it lands (docs/architecture.md, "Revocation").
#[test]
fn a_lookup_that_raced_a_logout_on_another_worker_is_not_cached() {
    let host = host();
    let cfg = config(json!({"cache": {"ttl_ms": 60_000}}));
    let mut a = try_start(&host, &cfg).unwrap();
    let mut b = try_start(&host, &cfg).unwrap();
    let sid = id(26);
    let cookie = format!("sid={}", valid_token(&sid));

    // a asks the companion; the answer is on its way.
    let slow = get_with_cookie(&mut a, &cookie);
    let lookup = only_callout(&a);

    // Meanwhile b logs the session out, and announces it.
    let on_b = resolved_request(&mut b, &sid, session_body(&sid, json!({}), Some("u")));
    a.advance(Duration::from_millis(5)).unwrap();
    app_responds(&mut b, on_b, &[("x-session-flush", "1")]);
    let delete = only_callout(&b);
    b.answer_callout(delete.token, CalloutReply::new(204))
        .unwrap();

    // a's answer, from before the logout, arrives later still.
    a.advance(Duration::from_millis(5)).unwrap();
    a.answer_callout(lookup.token, ok_reply(&sid, json!({}), Some("u")))
        .unwrap();
    assert_eq!(
        upstream(&a, slow).get("x-session-state"),
        Some("valid"),
        "the request that asked first is answered"
    );
    respond(&mut a, slow, &[]);

    // The replayed cookie is not served from a's cache: it goes to the companion.
    a.advance(Duration::from_millis(5)).unwrap();
    let replay = get_with_cookie(&mut a, &cookie);
    let read = only_callout(&a);
    a.answer_callout(read.token, CalloutReply::new(404))
        .unwrap();
    assert_eq!(upstream(&a, replay).get("x-session-state"), Some("expired"));
}

/// The clock steps back between caching a session and a logout (Envoy's wall clock can):
/// revocations are ordered by sequence, not time, so the copy cached before the logout is
/// refused although the logout carries an earlier time.
#[test]
fn a_clock_stepping_back_never_revives_a_revoked_copy() {
    let host = host();
    let cfg = config(json!({"cache": {"ttl_ms": 60_000}}));
    let mut a = try_start(&host, &cfg).unwrap();
    let mut b = try_start(&host, &cfg).unwrap();
    let sid = id(27);
    let cookie = format!("sid={}", valid_token(&sid));
    let on_b = resolved_request(&mut b, &sid, session_body(&sid, json!({}), Some("u")));
    a.advance(Duration::from_secs(5)).unwrap();
    let cached = resolved_request(&mut a, &sid, session_body(&sid, json!({}), Some("u")));
    respond(&mut a, cached, &[]);
    host.clock().step_back(Duration::from_secs(3));
    app_responds(&mut b, on_b, &[("x-session-flush", "1")]);
    let delete = only_callout(&b);
    b.answer_callout(delete.token, CalloutReply::new(204))
        .unwrap();
    host.clock().advance(Duration::from_secs(1));
    let replay = get_with_cookie(&mut a, &cookie);
    assert_eq!(
        a.pending_callouts().len(),
        1,
        "the revoked copy is not served"
    );
    let read = only_callout(&a);
    a.answer_callout(read.token, CalloutReply::new(404))
        .unwrap();
    assert_eq!(upstream(&a, replay).get("x-session-state"), Some("expired"));
}

#[test]
fn logout_without_a_session_just_clears_the_cookie() {
    let (_host, mut vm) = start(config(json!({})));
    let s = get_with_cookie(&mut vm, "sid=garbage");
    assert_eq!(
        app_responds(&mut vm, s, &[("x-session-flush", "1")]),
        Action::Continue
    );
    assert!(vm.pending_callouts().is_empty());
    assert_eq!(
        client(&vm, s).header("set-cookie"),
        Some("sid=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax")
    );
}

#[test]
fn bad_control_headers_change_nothing_and_are_counted() {
    for (name, value) in [
        ("x-session-set", "{broken"),
        ("x-session-set", "[1]"),
        ("x-session-expiry", "later"),
        ("x-session-cycle", "yes"),
    ] {
        let (host, mut vm) = start(config(json!({})));
        let sid = id(26);
        let s = resolved_request(&mut vm, &sid, session_body(&sid, json!({}), None));
        let action = app_responds(&mut vm, s, &[(name, value), ("x-session-user", "mallory")]);
        assert_eq!(action, Action::Continue, "{name}: {value}");
        assert!(vm.pending_callouts().is_empty(), "{name}: no write at all");
        let out = client(&vm, s);
        assert!(session_headers(&out.headers).is_empty());
        assert!(!out.headers.contains("set-cookie"));
        assert_eq!(host.counter("edge_session_bad_control"), 1);
        assert!(host.logged(name), "the log names the header");
    }
}

#[test]
fn a_failed_write_never_sets_a_cookie_and_follows_the_policy() {
    // pass: the app's response goes out unchanged, counted.
    let (host, mut vm) = start(config(json!({})));
    let s = get(&mut vm, &[]);
    app_responds(&mut vm, s, &[("x-session-cycle", "1")]);
    let call = only_callout(&vm);
    vm.answer_callout(call.token, CalloutReply::new(503).body("down"))
        .unwrap();
    let out = client(&vm, s);
    assert_eq!(out.status(), Some(200));
    assert!(!out.headers.contains("set-cookie"));
    assert_eq!(host.counter("edge_session_write_error"), 1);
    assert_eq!(host.counter("edge_session_writes"), 0);

    // fail: 503, still no cookie; a reset call counts the same.
    let (_host, mut vm) = start(config(json!({"on_write_error": "fail"})));
    let s = get(&mut vm, &[]);
    app_responds(&mut vm, s, &[("x-session-set", r#"{"a": 1}"#)]);
    let call = only_callout(&vm);
    vm.fail_callout(call.token).unwrap();
    let out = client(&vm, s);
    assert_eq!(out.status(), Some(503));
    assert!(!out.headers.contains("set-cookie"));
}

#[test]
fn writes_while_the_store_is_unavailable_go_to_the_cookies_session_never_a_new_one() {
    // fail_open: the app runs without the session, but what it writes must not replace the
    // user's session with a new one (a new cookie would log them out over an outage).
    for (control, method) in [
        (("x-session-set", r#"{"a": 1}"#), "PATCH"),
        (("x-session-flush", "1"), "DELETE"),
        (("x-session-cycle", "1"), "POST"),
    ] {
        let (_host, mut vm) = start(config(json!({})));
        let sid = id(29);
        let s = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&sid)));
        let read = only_callout(&vm);
        vm.answer_callout(read.token, CalloutReply::new(503).body("down"))
            .unwrap();
        assert_eq!(upstream(&vm, s).get("x-session-state"), Some("unavailable"));
        app_responds(&mut vm, s, &[control]);
        let write = only_callout(&vm);
        let own = format!("/v1/sessions/{}", sid.as_str());
        let expected = match method {
            "POST" => format!("{own}/cycle"),
            _ => own,
        };
        assert_eq!(
            (write.method(), write.path()),
            (Some(method), Some(expected.as_str())),
            "{control:?}"
        );
        // Still down: nothing changes for the client.
        vm.answer_callout(write.token, CalloutReply::new(503).body("down"))
            .unwrap();
        let out = client(&vm, s);
        assert_eq!(out.status(), Some(200));
        assert!(!out.headers.contains("set-cookie"), "{control:?}");
    }
}

#[test]
fn sliding_expiry_touches_a_session_past_half_its_life_without_pausing() {
    let (_host, mut vm) = start(config(json!({})));
    let sid = id(27);
    // One hour of lifetime, 20 minutes left (the harness clock starts at 2026-01-01T00:00:00Z).
    let s = resolved_request(
        &mut vm,
        &sid,
        session_with(&sid, json!({}), None, 3600, "2026-01-01T00:20:00Z", false),
    );
    assert!(
        vm.stream(s).unwrap().upstream.is_some(),
        "the request did not wait"
    );
    let touch = only_callout(&vm);
    assert_eq!(
        (touch.method(), touch.path()),
        (
            Some("PATCH"),
            Some(format!("/v1/sessions/{}", sid.as_str()).as_str())
        )
    );
    assert_eq!(body_of(&touch), json!({"touch": true}));
    vm.answer_callout(
        touch.token,
        CalloutReply::new(200).body(session_body(&sid, json!({}), None)),
    )
    .unwrap();
    assert!(vm.stream(s).unwrap().violations.is_empty());
    // A fresh session is not touched.
    let fresh = id(28);
    resolved_request(&mut vm, &fresh, session_body(&fresh, json!({}), None));
    assert!(vm.pending_callouts().is_empty());
}
