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
            ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"),
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
    assert_eq!(out.header("set-cookie"), None, "this device stays logged in");
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
    assert_eq!(out.header("set-cookie"), None, "gone already: nothing to do");
}
