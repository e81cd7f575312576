//! Sessions users can see and end (docs/architecture.md, "Control headers" and "Session
//! listing"): a login keeps who the client was, `x-session-revoke` ends the user's other
//! sessions through the companion.

use crate::support::*;
use harness::{Action, CalloutReply};
use serde_json::{Value, json};

fn body_of(call: &harness::Callout) -> Value {
    serde_json::from_slice(&call.body).unwrap()
}

#[test]
fn a_cycle_keeps_the_clients_agent_and_address() {
    let (_host, mut vm) = start(config(json!({})));
    let sid = id(1);
    let s = vm.create_stream().unwrap();
    vm.set_stream_property(s, "source.address", "[2001:db8::7]:5555")
        .unwrap();
    let cookie = format!("sid={}", valid_token(&sid));
    vm.request_headers(
        s,
        &[
            (":method", "POST"),
            (":path", "/login"),
            (":authority", "app.example"),
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
            ),
            ("cookie", &cookie),
        ],
        true,
    )
    .unwrap();
    let lookup = only_callout(&vm);
    vm.answer_callout(lookup.token, ok_reply(&sid, json!({}), None))
        .unwrap();
    assert_eq!(
        app_responds(&mut vm, s, &[("x-session-cycle", "1")]),
        Action::Pause
    );
    let cycle = only_callout(&vm);
    assert_eq!(
        cycle.path().map(str::to_string),
        Some(format!("/v1/sessions/{}/cycle", sid.as_str()))
    );
    assert_eq!(
        body_of(&cycle),
        json!({"user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
               "client_address": "2001:db8::7"})
    );
}

/// A request with alice's session `sid`, resolved, and the app's response with `headers`;
/// returns the stream, paused on the revocation's call.
fn revoking(vm: &mut harness::Vm, sid: &proto::SessionId, headers: &[(&str, &str)]) -> u32 {
    let s = resolved_request(vm, sid, session_body(sid, json!({}), Some("alice")));
    assert_eq!(upstream(vm, s).get("x-session-state"), Some("valid"));
    assert_eq!(app_responds(vm, s, headers), Action::Pause);
    s
}

#[test]
fn revoke_others_ends_the_users_other_sessions_and_keeps_this_one() {
    let (host, mut vm) = start(config(json!({})));
    let sid = id(1);
    let s = revoking(&mut vm, &sid, &[("x-session-revoke", "others")]);
    let call = only_callout(&vm);
    assert_eq!(call.method(), Some("DELETE"));
    assert_eq!(
        call.path().map(str::to_string),
        Some(format!(
            "/v1/users/alice/sessions?except={}",
            sid.handle().as_str()
        ))
    );
    vm.answer_callout(call.token, CalloutReply::new(200).body(r#"{"deleted":2}"#))
        .unwrap();
    let out = vm.stream(s).unwrap().client.clone().unwrap();
    assert_eq!(
        out.header("set-cookie"),
        None,
        "this device stays logged in"
    );
    assert!(session_headers(&out.headers).is_empty());
    assert_eq!(host.counter("edge_session_writes"), 1);
}

#[test]
fn revoke_all_clears_this_cookie_too_and_revoking_a_handle_names_it() {
    let (_host, mut vm) = start(config(json!({})));
    let sid = id(1);
    let s = revoking(&mut vm, &sid, &[("x-session-revoke", "all")]);
    let call = only_callout(&vm);
    assert_eq!(call.path(), Some("/v1/users/alice/sessions"));
    vm.answer_callout(call.token, CalloutReply::new(200).body(r#"{"deleted":3}"#))
        .unwrap();
    let out = vm.stream(s).unwrap().client.clone().unwrap();
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.starts_with("sid=;") && c.contains("Max-Age=0")),
        "{out:?}"
    );

    let other = id(2).handle();
    let s = revoking(&mut vm, &sid, &[("x-session-revoke", other.as_str())]);
    let call = only_callout(&vm);
    assert_eq!(
        call.path().map(str::to_string),
        Some(format!("/v1/users/alice/sessions/{}", other.as_str()))
    );
    vm.answer_callout(call.token, CalloutReply::new(404).body("{}"))
        .unwrap();
    let out = vm.stream(s).unwrap().client.clone().unwrap();
    assert_eq!(
        out.header("set-cookie"),
        None,
        "gone already: nothing to do"
    );
}

fn listing_config() -> Value {
    config(json!({"session_list": {"path": "/account/sessions"}}))
}

/// A request for `path` with session `sid` (bound to `user`) and a spoofed listing header;
/// answers its lookup. Returns the stream.
fn listing_request(
    vm: &mut harness::Vm,
    path: &str,
    sid: &proto::SessionId,
    user: Option<&str>,
) -> u32 {
    let s = vm.create_stream().unwrap();
    let cookie = format!("sid={}", valid_token(sid));
    vm.request_headers(
        s,
        &[
            (":method", "GET"),
            (":path", path),
            (":authority", "app.example"),
            ("x-session-list", r#"{"sessions":[],"forged":true}"#),
            ("cookie", &cookie),
        ],
        true,
    )
    .unwrap();
    let lookup = only_callout(vm);
    vm.answer_callout(lookup.token, ok_reply(sid, json!({}), user))
        .unwrap();
    s
}

#[test]
fn the_listing_route_gets_the_users_sessions_with_the_current_one_marked() {
    let (_host, mut vm) = start(listing_config());
    let (sid, other) = (id(1), id(2));
    let s = listing_request(
        &mut vm,
        "/account/sessions?tab=devices",
        &sid,
        Some("alice"),
    );
    assert!(
        vm.stream(s).unwrap().upstream.is_none(),
        "waits for the list"
    );
    let call = only_callout(&vm);
    assert_eq!(
        (call.method(), call.path()),
        (Some("GET"), Some("/v1/users/alice/sessions"))
    );
    let summary = |id: &proto::SessionId, agent: &str| {
        json!({"handle": id.handle().as_str(), "created_at": "2026-01-01T00:00:00Z",
            "last_seen_at": "2026-01-01T00:10:00Z", "expires_at": "2026-01-15T00:00:00Z",
            "browser_session": false, "user_agent": agent, "client_address": "192.0.2.1"})
    };
    let body = json!([summary(&other, "phone"), summary(&sid, "laptop")]).to_string();
    vm.answer_callout(call.token, CalloutReply::new(200).body(body))
        .unwrap();
    let up = upstream(&vm, s);
    assert_eq!(up.get("x-session-state"), Some("valid"));
    let list: Value = serde_json::from_str(up.get("x-session-list").unwrap()).unwrap();
    assert_eq!(list["truncated"], false);
    assert_eq!(list["sessions"][0]["handle"], other.handle().as_str());
    assert_eq!(list["sessions"][0]["current"], false);
    assert_eq!(list["sessions"][1]["current"], true);
    assert_eq!(list["sessions"][1]["user_agent"], "laptop");
    assert_eq!(vm.stream(s).unwrap().request.resumes, 1);
}

#[test]
fn the_listing_is_never_forged_asked_off_route_or_without_a_user() {
    let (host, mut vm) = start(listing_config());
    let sid = id(1);
    // Another path: no call, and the client's forged list never reaches the app.
    let s = listing_request(&mut vm, "/account/sessions/", &sid, Some("alice"));
    assert!(vm.pending_callouts().is_empty());
    assert_eq!(upstream(&vm, s).get("x-session-list"), None);
    // The route, with a session bound to no user: nothing to list.
    let s = listing_request(&mut vm, "/account/sessions", &id(3), None);
    assert!(vm.pending_callouts().is_empty());
    assert_eq!(upstream(&vm, s).get("x-session-list"), None);
    // The companion fails: the app is told, and the request goes on.
    let s = listing_request(&mut vm, "/account/sessions", &id(4), Some("bob"));
    let call = only_callout(&vm);
    vm.answer_callout(call.token, CalloutReply::new(503).body("{}"))
        .unwrap();
    assert_eq!(
        upstream(&vm, s).get("x-session-list"),
        Some(r#"{"error":"unavailable"}"#)
    );
    assert_eq!(host.counter("edge_session_list_failed"), 1);
}

#[test]
fn a_listing_route_needs_the_companion_and_a_sane_path() {
    let host = host();
    for bad in [
        json!({"session_list": {"path": "sessions"}}),
        json!({"session_list": {"path": "/s?x=1"}}),
        json!({"session_list": {"path": "/s", "max_bytes": 255}}),
        json!({"session_list": {"path": "/s", "max_bytes": 32769}}),
    ] {
        assert!(try_start(&host, &config(bad.clone())).is_err(), "{bad}");
    }
    for good in [
        json!({"session_list": {"path": "/s", "max_bytes": 256}}),
        json!({"session_list": {"path": "/s", "max_bytes": 32768}}),
    ] {
        assert!(try_start(&host, &config(good.clone())).is_ok(), "{good}");
    }
}

/// The "seen" reports in flight on `vm` (the root context's calls).
fn reports(vm: &harness::Vm) -> Vec<harness::Callout> {
    vm.pending_callouts()
        .into_iter()
        .filter(|c| c.path() == Some("/v1/sessions/seen"))
        .collect()
}

#[test]
fn sessions_served_are_reported_as_seen_in_batches() {
    let config = config(json!({"seen_reports": {"interval_ms": 1000},
        "cache": {"ttl_ms": 60000}}));
    let (host, mut vm) = start(config);
    let (a, b) = (id(1), id(2));
    for sid in [&a, &a, &b, &a] {
        let s = get_with_cookie(&mut vm, &format!("sid={}", valid_token(sid)));
        for call in vm.pending_callouts() {
            vm.answer_callout(call.token, ok_reply(sid, json!({}), None))
                .unwrap();
        }
        respond(&mut vm, s, &[]);
    }
    assert_eq!(host.counter("edge_session_cache_miss"), 2);
    assert!(reports(&vm).is_empty(), "nothing before the interval");
    vm.advance(std::time::Duration::from_secs(1)).unwrap();
    let sent = reports(&vm);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let mut ids: Vec<String> = serde_json::from_slice::<Value>(&sent[0].body).unwrap()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut expected = vec![a.as_str().to_string(), b.as_str().to_string()];
    expected.sort();
    assert_eq!(ids, expected, "each session once");
    vm.answer_callout(sent[0].token, CalloutReply::new(200).body(r#"{"seen":2}"#))
        .unwrap();
    vm.advance(std::time::Duration::from_secs(1)).unwrap();
    assert!(reports(&vm).is_empty(), "nothing served since");

    let s = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&a)));
    respond(&mut vm, s, &[]);
    vm.advance(std::time::Duration::from_secs(1)).unwrap();
    let sent = reports(&vm);
    assert_eq!(sent.len(), 1, "served from the cache, noted again");
    vm.answer_callout(sent[0].token, CalloutReply::new(503).body("{}"))
        .unwrap();
    assert_eq!(host.counter("edge_session_seen_failed"), 1);
}

#[test]
fn report_and_feed_intervals_are_bounded_on_the_wasm_target() {
    let host = host();
    for bad in [
        json!({"seen_reports": {"interval_ms": 999}}),
        json!({"seen_reports": {"interval_ms": 300001}}),
        // 2^32 + 1000 and 2^32 + 100: a 32-bit usize would read them as in range.
        json!({"seen_reports": {"interval_ms": 4294968296u64}}),
        json!({"revocation_feed": {"interval_ms": 4294967396u64}}),
    ] {
        assert!(try_start(&host, &config(bad.clone())).is_err(), "{bad}");
    }
    for good in [1000, 300000] {
        let good = json!({"seen_reports": {"interval_ms": good}});
        assert!(try_start(&host, &config(good.clone())).is_ok(), "{good}");
    }
}
