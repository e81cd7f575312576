//! The filter under Envoy's harder rules, as the harness models them: a cluster with no healthy
//! host, header maps past cpp-host's limits, a log level of "off", trailers, and the 1 GiB
//! memory cap with the cache filled past every bound.

use crate::support::*;
use harness::{Action, CalloutReply, ClusterHealth, LogLevel, Side};
use serde_json::json;

fn unhealthy(host: &harness::Host) {
    host.set_cluster_health("companion", ClusterHealth::NoHealthyHost);
}

/// `proxy_http_call` fails at once with INTERNAL_FAILURE when the cluster has no healthy host
/// (Envoy's async client `send()` returns null): no callback ever follows, so the filter must
/// decide on the spot, by its read policy.
#[test]
fn a_read_with_no_healthy_companion_follows_the_store_policy_at_once() {
    for (policy, expected) in [("fail_open", "unavailable"), ("fail_closed", "503")] {
        let (host, mut vm) = start(config(json!({"on_store_error": policy})));
        unhealthy(&host);
        let sid = id(1);
        let s = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&sid)));
        assert!(
            vm.pending_callouts().is_empty(),
            "{policy}: nothing in flight"
        );
        let stream = vm.stream(s).unwrap();
        assert!(stream.violations.is_empty(), "{:?}", stream.violations);
        if expected == "503" {
            assert_eq!(stream.local_response.as_ref().map(|r| r.status), Some(503));
        } else {
            assert_eq!(upstream(&vm, s).get("x-session-state"), Some("unavailable"));
        }
        assert_eq!(host.counter("edge_session_callout_error"), 1, "{policy}");
        assert!(
            vm.paused_streams().is_empty(),
            "{policy}: nothing left hanging"
        );
    }
}

/// The same for a write (the app logs a user in): `pass` lets the app's response out with no
/// cookie change, `fail` answers 503; never a cookie for a session that was not stored.
#[test]
fn a_write_with_no_healthy_companion_follows_the_write_policy_at_once() {
    for policy in ["pass", "fail"] {
        let (host, mut vm) = start(config(json!({"on_write_error": policy})));
        let s = get(&mut vm, &[]);
        unhealthy(&host);
        let action = app_responds(&mut vm, s, &[("x-session-user", "alice")]);
        assert!(vm.pending_callouts().is_empty());
        let stream = vm.stream(s).unwrap();
        let client = stream.client.clone().expect("answered at once");
        assert!(client.header("set-cookie").is_none(), "{policy}: no cookie");
        match policy {
            "pass" => {
                assert_eq!(action, Action::Continue);
                assert_eq!(client.status(), Some(200));
            }
            _ => assert_eq!(client.status(), Some(503)),
        }
        assert!(session_headers(&client.headers).is_empty());
        assert_eq!(host.counter("edge_session_write_error"), 1, "{policy}");
    }
}

/// A login with a session cycles it, then patches the new id: the cluster loses its last
/// healthy host between the two legs. The second leg fails at once, inside the first leg's
/// callback: the response is answered by the write policy and never left paused.
#[test]
fn the_second_leg_of_a_cycle_fails_at_once_when_the_cluster_goes_unhealthy() {
    for policy in ["pass", "fail"] {
        let (host, mut vm) = start(config(json!({"on_write_error": policy})));
        let old = id(2);
        let s = resolved_request(&mut vm, &old, session_body(&old, json!({}), None));
        app_responds(
            &mut vm,
            s,
            &[("x-session-cycle", "1"), ("x-session-user", "bob")],
        );
        let cycle = only_callout(&vm);
        unhealthy(&host);
        let new = id(3);
        vm.answer_callout(
            cycle.token,
            CalloutReply::new(201).body(session_body(&new, json!({}), None)),
        )
        .unwrap();
        assert!(
            vm.pending_callouts().is_empty(),
            "{policy}: the patch never left"
        );
        let stream = vm.stream(s).unwrap();
        assert!(stream.violations.is_empty(), "{:?}", stream.violations);
        let client = stream.client.clone().expect("the response is answered");
        assert!(
            client.header("set-cookie").is_none(),
            "{policy}: no cookie for a write that did not complete"
        );
        let status = if policy == "pass" { 200 } else { 503 };
        assert_eq!(client.status(), Some(status), "{policy}");
        assert!(vm.paused_streams().is_empty());
    }
}

/// More than 1024 request headers: Envoy's `set_header_map_pairs` would remove every one of
/// them and say OK, so the filter edits them one at a time; the app gets all 1100, without the
/// spoofed ones, with the session.
#[test]
fn a_request_with_1100_headers_reaches_the_app_whole() {
    let (_host, mut vm) = start(config(json!({})));
    let sid = id(4);
    let cookie = format!("theme=dark; sid={}", valid_token(&sid));
    let fillers: Vec<(String, String)> = (0..1100)
        .map(|i| (format!("x-filler-{i}"), format!("value-{i}")))
        .collect();
    let mut headers: Vec<(&str, &str)> = fillers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    headers.push(("x_session_user", "admin"));
    headers.push(("cookie", &cookie));
    let s = get(&mut vm, &headers);
    let call = only_callout(&vm);
    vm.answer_callout(call.token, ok_reply(&sid, json!({}), Some("alice")))
        .unwrap();
    let up = upstream(&vm, s);
    for (name, value) in &fillers {
        assert_eq!(up.get(name), Some(value.as_str()), "{name}");
    }
    assert_eq!(up.get("x-session-user"), Some("alice"));
    assert!(!up.contains("x_session_user"));
    assert_eq!(up.get("cookie"), Some("theme=dark"));
    assert_eq!(up.get("x-session-state"), Some("valid"));
}

/// Envoy's log level can be "off", which the host reports as 6, past the SDK's enum: the
/// filter starts, serves and logs nothing.
#[test]
fn a_log_level_of_off_is_no_trouble() {
    let host = host();
    host.set_log_level(LogLevel::Off);
    let mut vm = try_start(&host, &config(json!({}))).unwrap();
    let s = get_with_cookie(&mut vm, "sid=garbage");
    assert_eq!(upstream(&vm, s).get("x-session-state"), Some("invalid"));
    assert!(vm.failure().is_none());
}

/// A client's request trailers are the app's input too: every spelling of ours is removed
/// there, the rest goes on. Response trailers with our prefix never reach the client.
#[test]
fn session_headers_in_trailers_are_removed_both_ways() {
    let (_host, mut vm) = start(config(
        json!({"headers": {"map": {"roles": "x-user-roles"}}}),
    ));
    let s = vm.create_stream().unwrap();
    vm.request_headers(s, &[(":method", "POST"), (":path", "/upload")], false)
        .unwrap();
    vm.request_body(s, b"data", false).unwrap();
    vm.request_trailers(
        s,
        &[
            ("x-checksum", "abc"),
            ("x-session-user", "admin"),
            ("X_Session_State", "valid"),
            ("x_user_roles", "root"),
        ],
    )
    .unwrap();
    let trailers = vm
        .take_forwarded_trailers(s, Side::Request)
        .unwrap()
        .expect("the trailers went upstream");
    assert_eq!(trailers.get("x-checksum"), Some("abc"));
    assert_eq!(trailers.len(), 1, "{trailers:?}");

    vm.response_headers(s, &[(":status", "200")], false)
        .unwrap();
    vm.response_body(s, b"ok", false).unwrap();
    vm.response_trailers(s, &[("grpc-status", "0"), ("x-session-set", r#"{"a":1}"#)])
        .unwrap();
    let trailers = vm
        .take_forwarded_trailers(s, Side::Response)
        .unwrap()
        .expect("the trailers reached the client");
    assert_eq!(trailers.get("grpc-status"), Some("0"));
    assert!(!trailers.contains("x-session-set"));
    assert!(
        vm.pending_callouts().is_empty(),
        "a trailer is never applied"
    );
}
