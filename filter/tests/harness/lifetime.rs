//! A session's lifetime as the browser sees it (docs/architecture.md, "Lifetime"): the cookie
//! follows sliding expiry, a 5xx response saves nothing but a logout, and the app is told
//! whether the session is a browser session.

use crate::support::*;
use harness::{Action, CalloutReply};
use serde_json::json;

/// A request for a session with an hour of lifetime and 20 minutes left (the harness clock
/// starts at 2026-01-01T00:00:00Z): it is touched. Returns the stream and the touch's token.
fn touched_request(vm: &mut harness::Vm, n: u8, browser: bool) -> (u32, u32) {
    let sid = id(n);
    let body = session_with(&sid, json!({}), None, 3600, "2026-01-01T00:20:00Z", browser);
    let s = resolved_request(vm, &sid, body);
    let touch = only_callout(vm);
    assert_eq!(touch.method(), Some("PATCH"));
    (s, touch.token)
}

/// The store's answer to the touch: the session now ends an hour from the clock's start.
fn touch_reply(n: u8, browser: bool) -> CalloutReply {
    let body = session_with(
        &id(n),
        json!({}),
        None,
        3600,
        "2026-01-01T01:00:00Z",
        browser,
    );
    CalloutReply::new(200).body(body)
}

fn renewed_cookie(n: u8, max_age: u64) -> String {
    format!(
        "sid={}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=Lax",
        valid_token(&id(n))
    )
}

#[test]
fn a_touched_session_gets_its_cookie_again_with_the_expiry_the_store_answered() {
    let (_host, mut vm) = start(config(json!({})));
    let (s, touch) = touched_request(&mut vm, 1, false);
    vm.answer_callout(touch, touch_reply(1, false)).unwrap();
    let out = respond(&mut vm, s, &[("cache-control", "public, max-age=60")]);
    assert_eq!(
        out.headers.get("set-cookie"),
        Some(renewed_cookie(1, 3600).as_str())
    );
    assert_eq!(
        out.headers.get("cache-control"),
        Some("max-age=60, private"),
        "a response that sets the cookie is never public"
    );
    // Without a touch, nothing is renewed.
    let fresh = id(2);
    let s = resolved_request(&mut vm, &fresh, session_body(&fresh, json!({}), None));
    assert!(vm.pending_callouts().is_empty());
    assert!(!respond(&mut vm, s, &[]).headers.contains("set-cookie"));
}

#[test]
fn a_response_before_the_touchs_answer_waits_for_it() {
    let (_host, mut vm) = start(config(json!({})));
    let (s, touch) = touched_request(&mut vm, 3, false);
    assert_eq!(app_responds(&mut vm, s, &[]), Action::Pause);
    assert!(vm.stream(s).unwrap().client.is_none(), "held for the touch");
    vm.answer_callout(touch, touch_reply(3, false)).unwrap();
    let stream = vm.stream(s).unwrap();
    assert!(stream.violations.is_empty(), "{:?}", stream.violations);
    let out = stream.client.clone().expect("the response went on");
    assert_eq!(
        out.headers.get("set-cookie"),
        Some(renewed_cookie(3, 3600).as_str())
    );
}

#[test]
fn a_failed_touch_renews_nothing_and_is_counted() {
    let (host, mut vm) = start(config(json!({})));
    let (s, touch) = touched_request(&mut vm, 4, false);
    assert_eq!(app_responds(&mut vm, s, &[]), Action::Pause);
    vm.fail_callout(touch).unwrap();
    let out = vm
        .stream(s)
        .unwrap()
        .client
        .clone()
        .expect("the response went on");
    assert!(!out.headers.contains("set-cookie"));
    assert_eq!(host.counter("edge_session_touch_failed"), 1);
    // A 503 from the companion is a failure too.
    let (s, touch) = touched_request(&mut vm, 5, false);
    vm.answer_callout(touch, CalloutReply::new(503).body("down"))
        .unwrap();
    assert!(!respond(&mut vm, s, &[]).headers.contains("set-cookie"));
    assert_eq!(host.counter("edge_session_touch_failed"), 2);
}

#[test]
fn a_browser_session_is_touched_but_its_cookie_gets_no_max_age() {
    let (_host, mut vm) = start(config(json!({})));
    let (s, touch) = touched_request(&mut vm, 6, true);
    vm.answer_callout(touch, touch_reply(6, true)).unwrap();
    assert!(!respond(&mut vm, s, &[]).headers.contains("set-cookie"));
}

#[test]
fn refresh_cookie_never_does_not_wait_and_every_request_renews_from_the_cache() {
    let (_host, mut vm) = start(config(json!({"refresh_cookie": "never"})));
    let (s, _touch) = touched_request(&mut vm, 7, false);
    assert_eq!(app_responds(&mut vm, s, &[]), Action::Continue, "no wait");
    assert!(
        !vm.stream(s)
            .unwrap()
            .client
            .clone()
            .unwrap()
            .headers
            .contains("set-cookie")
    );

    let (_host, mut vm) = start(config(json!({"refresh_cookie": "every_request"})));
    let sid = id(8);
    for _ in 0..2 {
        // The first request reads the store, the second the cache: both renew, no write.
        let s = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&sid)));
        if let Some(call) = vm.pending_callouts().into_iter().next() {
            vm.answer_callout(call.token, ok_reply(&sid, json!({}), None))
                .unwrap();
        }
        let out = respond(&mut vm, s, &[]);
        // session_body expires on 2026-01-15: 14 days from the clock's start.
        assert_eq!(
            out.headers.get("set-cookie"),
            Some(renewed_cookie(8, 1_209_600).as_str())
        );
        assert!(vm.pending_callouts().is_empty(), "no extra companion write");
    }
}

#[test]
fn cookie_max_age_seconds_caps_the_renewed_cookie() {
    let overrides = json!({"cookie": {"max_age_seconds": 600}});
    let (_host, mut vm) = start(config(overrides));
    let (s, touch) = touched_request(&mut vm, 9, false);
    vm.answer_callout(touch, touch_reply(9, false)).unwrap();
    let out = respond(&mut vm, s, &[]);
    assert_eq!(
        out.headers.get("set-cookie"),
        Some(renewed_cookie(9, 600).as_str())
    );
}

#[test]
fn a_server_error_saves_nothing_but_a_logout_still_logs_out() {
    // Without a cache every request reads the store, so each is resolved the same way.
    let (host, mut vm) = start(config(json!({"cache": {"ttl_ms": 0}})));
    let sid = id(10);
    for status in ["500", "502", "503"] {
        let s = resolved_request(&mut vm, &sid, session_body(&sid, json!({}), None));
        let headers = [
            (":status", status),
            ("x-session-set", r#"{"cart": 1}"#),
            ("x-session-user", "alice"),
            ("x-session-cycle", "1"),
        ];
        assert_eq!(
            vm.response_headers(s, &headers, true).unwrap(),
            Action::Continue
        );
        assert!(
            vm.pending_callouts().is_empty(),
            "{status}: nothing written"
        );
        let out = vm.stream(s).unwrap().client.clone().unwrap();
        assert!(
            session_headers(&out.headers).is_empty(),
            "control headers still removed"
        );
        assert!(!out.headers.contains("set-cookie"));
    }
    assert_eq!(host.counter("edge_session_control_skipped"), 3);
    assert_eq!(host.counter("edge_session_writes"), 0);
    let s = resolved_request(&mut vm, &sid, session_body(&sid, json!({}), None));
    let headers = [
        (":status", "500"),
        ("x-session-flush", "1"),
        ("x-session-set", "{}"),
    ];
    assert_eq!(
        vm.response_headers(s, &headers, true).unwrap(),
        Action::Pause
    );
    let delete = only_callout(&vm);
    assert_eq!(delete.method(), Some("DELETE"));
    vm.answer_callout(delete.token, CalloutReply::new(204))
        .unwrap();
    let out = vm.stream(s).unwrap().client.clone().unwrap();
    assert!(
        out.headers
            .get("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    assert_eq!(out.status(), Some(500));
}

#[test]
fn controls_on_server_error_all_applies_them_as_on_any_status() {
    let (host, mut vm) = start(config(json!({"controls_on_server_error": "all"})));
    let sid = id(11);
    let s = resolved_request(&mut vm, &sid, session_body(&sid, json!({}), None));
    let headers = [(":status", "500"), ("x-session-set", r#"{"cart": 1}"#)];
    assert_eq!(
        vm.response_headers(s, &headers, true).unwrap(),
        Action::Pause
    );
    assert_eq!(only_callout(&vm).method(), Some("PATCH"));
    assert_eq!(host.counter("edge_session_control_skipped"), 0);
}

#[test]
fn the_app_is_told_whether_the_session_is_a_browser_session() {
    let (_host, mut vm) = start(config(json!({})));
    for (n, browser, told) in [(12, true, "1"), (13, false, "0")] {
        let sid = id(n);
        let body = session_with(&sid, json!({}), None, 3600, "2026-01-01T00:50:00Z", browser);
        let s = resolved_request(&mut vm, &sid, body);
        assert_eq!(upstream(&vm, s).get("x-session-browser"), Some(told));
    }
    // A client cannot claim it.
    let s = get(
        &mut vm,
        &[("x-session-browser", "1"), ("X_Session_Browser", "1")],
    );
    assert_eq!(
        session_headers(&upstream(&vm, s)),
        [("x-session-state".to_string(), "none".to_string())]
    );
}

#[test]
fn new_sessions_carry_the_configured_lifetime_and_an_expiry_may_be_a_time() {
    let overrides = json!({"expire_at_browser_close": true, "absolute_ttl_seconds": 86400});
    let (_host, mut vm) = start(config(overrides));
    let s = get(&mut vm, &[]);
    app_responds(&mut vm, s, &[("x-session-user", "alice")]);
    let create = only_callout(&vm);
    let body: serde_json::Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(body["browser_session"], json!(true));
    assert_eq!(body["absolute_ttl_seconds"], json!(86400));
    vm.fail_callout(create.token).unwrap();

    let s = get(&mut vm, &[]);
    app_responds(
        &mut vm,
        s,
        &[("x-session-expiry", "2026-01-01T02:00:00+01:00")],
    );
    let create = only_callout(&vm);
    let body: serde_json::Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(
        (body["ttl_seconds"].clone(), body["browser_session"].clone()),
        (json!(3600), json!(false))
    );
    vm.fail_callout(create.token).unwrap();

    let s = get(&mut vm, &[]);
    let action = app_responds(&mut vm, s, &[("x-session-expiry", "2025-12-31T23:00:00Z")]);
    assert_eq!(
        action,
        Action::Continue,
        "a past time is refused: nothing written"
    );
    assert!(vm.pending_callouts().is_empty());
}
