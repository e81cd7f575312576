use crate::support::*;
use harness::{Action, CalloutReply, HarnessError};
use serde_json::json;
use std::time::Duration;

#[test]
fn no_cookie_continues_with_state_none_and_no_callout() {
    let (host, mut vm) = start(config(json!({})));
    let s = get(&mut vm, &[("cookie", "theme=dark")]);
    let up = upstream(&vm, s);
    assert_eq!(
        session_headers(&up),
        vec![("x-session-state".into(), "none".into())]
    );
    assert_eq!(up.get("cookie"), Some("theme=dark"), "other cookies pass");
    assert!(vm.pending_callouts().is_empty());
    assert_eq!(host.counter("edge_session_none"), 1);
    let client = respond(&mut vm, s, &[]);
    assert!(!client.headers.contains("set-cookie"));
    assert!(
        !client.headers.contains("vary"),
        "nothing depended on a session"
    );
}

#[test]
fn bad_cookies_are_invalid_without_a_callout_and_are_cleared() {
    let good = valid_token(&id(1));
    let mac = good.rsplit('.').next().unwrap().to_string();
    let sid = id(1);
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "hello-world".into()),
        ("truncated", good[..good.len() - 3].to_string()),
        ("oversize", "a".repeat(300)),
        ("wrong kid", format!("k9.{}.{mac}", sid.as_str())),
        ("wrong mac", token("k1", SECRET_B, &sid)),
        (
            "non-base64",
            format!("k1.{}.{}", "!".repeat(43), "*".repeat(43)),
        ),
        ("empty", String::new()),
    ];
    for (name, cookie) in cases {
        let (host, mut vm) = start(config(json!({})));
        let s = get_with_cookie(&mut vm, &format!("a=1; sid={cookie}; b=2"));
        assert!(
            vm.pending_callouts().is_empty(),
            "{name}: a bad token never causes a callout"
        );
        let up = upstream(&vm, s);
        assert_eq!(up.get("x-session-state"), Some("invalid"), "{name}");
        assert_eq!(
            up.get("cookie"),
            Some("a=1; b=2"),
            "{name}: the bad token is not forwarded"
        );
        assert_eq!(host.counter("edge_session_invalid"), 1, "{name}");
        let client = respond(&mut vm, s, &[]);
        assert_eq!(
            client.header("set-cookie"),
            Some("sid=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax"),
            "{name}: the cookie is cleared"
        );
        assert_eq!(client.header("vary"), Some("Cookie"), "{name}");
    }
}

/// A sibling subdomain (or a longer `Path`) can toss in a second cookie of the session's
/// name; browsers then send both and no rule can tell the user's own. The request gets no
/// session, nothing is looked up, and the cookie is not cleared: clearing would delete the
/// user's own cookie and leave the tossed one to take over.
#[test]
fn two_different_session_cookies_are_no_session_and_are_not_cleared() {
    let mine = valid_token(&id(1));
    let tossed = valid_token(&id(2));
    for headers in [
        vec![format!("sid={tossed}; a=1; sid={mine}")],
        vec![format!("sid={mine}"), format!("b=2; sid={tossed}")],
    ] {
        let (host, mut vm) = start(config(json!({})));
        let mut request = vec![];
        for header in &headers {
            request.push(("cookie", header.as_str()));
        }
        let s = get(&mut vm, &request);
        assert!(vm.pending_callouts().is_empty(), "{headers:?}: no lookup");
        let up = upstream(&vm, s);
        assert_eq!(up.get("x-session-state"), Some("invalid"), "{headers:?}");
        assert!(!up.contains("x-session-id") && !up.contains("x-session-user"));
        assert!(
            up.get_all("cookie").iter().all(|c| !c.contains("sid=")),
            "{headers:?}: neither token goes upstream"
        );
        assert_eq!(host.counter("edge_session_invalid"), 1);
        let client = respond(&mut vm, s, &[]);
        assert_eq!(
            client.header("set-cookie"),
            None,
            "{headers:?}: not cleared"
        );
        assert_eq!(client.header("vary"), Some("Cookie"));
    }

    // The same value twice is one cookie.
    let (_host, mut vm) = start(config(json!({})));
    let s = get_with_cookie(&mut vm, &format!("sid={mine}; sid={mine}"));
    assert_eq!(vm.pending_callouts().len(), 1, "looked up as usual");
    let call = only_callout(&vm);
    vm.answer_callout(call.token, ok_reply(&id(1), json!({}), None))
        .unwrap();
    assert_eq!(upstream(&vm, s).get("x-session-state"), Some("valid"));
}

#[test]
fn non_utf8_cookie_headers_do_not_trap() {
    let (_host, mut vm) = start(config(json!({})));
    let s = vm.create_stream().unwrap();
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":path", b"/"),
        (b"cookie", b"sid=\xff\xfe\x00; x=\xc3"),
    ];
    assert_eq!(vm.request_headers(s, &headers, true), Ok(Action::Continue));
    assert_eq!(upstream(&vm, s).get("x-session-state"), Some("invalid"));
    assert!(vm.failure().is_none());
}

#[test]
fn valid_cookie_is_resolved_through_one_callout_and_injected() {
    let (host, mut vm) = start(config(
        json!({"headers": {"map": {"roles": "x-user-roles"}}}),
    ));
    let sid = id(7);
    let cookie = valid_token(&sid);
    let s = get_with_cookie(&mut vm, &format!("theme=dark; sid={cookie}"));
    assert!(
        vm.stream(s).unwrap().upstream.is_none(),
        "paused until the companion answers"
    );
    let calls = vm.pending_callouts();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.cluster, "companion");
    assert_eq!(call.method(), Some("GET"));
    assert_eq!(
        call.path(),
        Some(format!("/v1/sessions/{}", sid.as_str()).as_str())
    );
    assert_eq!(call.authority(), Some("companion"));
    assert_eq!(
        call.headers.get("authorization"),
        Some(format!("Bearer {COMPANION_TOKEN}").as_str())
    );
    assert_eq!(call.timeout, Some(Duration::from_millis(200)));

    vm.answer_callout(
        call.token,
        ok_reply(
            &sid,
            json!({"roles": ["admin"], "name": "Zoë"}),
            Some("u-42"),
        ),
    )
    .unwrap();
    let stream = vm.stream(s).unwrap();
    assert_eq!(stream.request.resumes, 1, "resumed exactly once");
    assert!(stream.violations.is_empty(), "{:?}", stream.violations);
    let up = upstream(&vm, s);
    assert_eq!(up.get("x-session-state"), Some("valid"));
    assert_eq!(up.get("x-session-id"), Some(sid.as_str()));
    assert_eq!(up.get("x-session-user"), Some("u-42"));
    let data = up.get("x-session-data").unwrap();
    assert!(
        data.is_ascii() && data.contains(r#""name":"Zo\u00eb""#),
        "{data}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(data).unwrap(),
        json!({"name": "Zoë", "roles": ["admin"]})
    );
    assert_eq!(up.get("x-session-expires"), Some("2026-01-15T00:00:00Z"));
    assert_eq!(up.get("x-user-roles"), Some(r#"["admin"]"#));
    assert_eq!(
        up.get("cookie"),
        Some("theme=dark"),
        "the session cookie stays out of the app"
    );
    assert_eq!(
        (
            host.counter("edge_session_valid"),
            host.counter("edge_session_cache_miss")
        ),
        (1, 1)
    );

    let client = respond(&mut vm, s, &[]);
    assert_eq!(client.header("vary"), Some("Cookie"));
    assert_eq!(client.header("cache-control"), Some("private"));
    assert!(!client.headers.contains("set-cookie"));
}

#[test]
fn the_same_session_comes_from_the_cache_until_the_ttl_passes() {
    let (host, mut vm) = start(config(json!({})));
    let sid = id(3);
    let cookie = format!("sid={}", valid_token(&sid));
    let first = get_with_cookie(&mut vm, &cookie);
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(token, ok_reply(&sid, json!({"n": 1}), None))
        .unwrap();
    let first_headers = session_headers(&upstream(&vm, first));

    vm.advance(Duration::from_millis(1999)).unwrap();
    let second = get_with_cookie(&mut vm, &cookie);
    assert!(vm.pending_callouts().is_empty(), "served from the cache");
    assert_eq!(session_headers(&upstream(&vm, second)), first_headers);
    assert_eq!(host.counter("edge_session_cache_hit"), 1);

    vm.advance(Duration::from_millis(1)).unwrap();
    let third = get_with_cookie(&mut vm, &cookie);
    assert_eq!(
        vm.pending_callouts().len(),
        1,
        "after the TTL the companion is asked again"
    );
    assert!(vm.stream(third).unwrap().upstream.is_none());
    assert_eq!(host.counter("edge_session_cache_miss"), 2);
}

#[test]
fn cache_ttl_zero_always_asks_the_companion() {
    let (_host, mut vm) = start(config(json!({"cache": {"ttl_ms": 0}})));
    let sid = id(4);
    let cookie = format!("sid={}", valid_token(&sid));
    get_with_cookie(&mut vm, &cookie);
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(token, ok_reply(&sid, json!({}), None))
        .unwrap();
    get_with_cookie(&mut vm, &cookie);
    assert_eq!(vm.pending_callouts().len(), 1);
}

#[test]
fn unknown_session_is_expired_and_its_cookie_cleared() {
    let (host, mut vm) = start(config(json!({})));
    let sid = id(5);
    let s = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&sid)));
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(
        token,
        CalloutReply::new(404).body(r#"{"error":"not_found","message":"no such session"}"#),
    )
    .unwrap();
    assert_eq!(upstream(&vm, s).get("x-session-state"), Some("expired"));
    assert_eq!(vm.stream(s).unwrap().request.resumes, 1);
    assert_eq!(host.counter("edge_session_expired"), 1);
    let client = respond(&mut vm, s, &[]);
    assert_eq!(
        client.header("set-cookie"),
        Some("sid=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Lax")
    );
}

/// How the companion can fail a read.
#[derive(Clone, Copy, Debug)]
enum StoreFailure {
    ServerError,
    GarbageBody,
    CallFailed,
    Timeout,
}

fn fail(vm: &mut harness::Vm, failure: StoreFailure, sid: &proto::SessionId) {
    let token = vm.pending_callouts()[0].token;
    match failure {
        StoreFailure::ServerError => vm
            .answer_callout(token, CalloutReply::new(500).body("boom"))
            .unwrap(),
        StoreFailure::GarbageBody => vm
            .answer_callout(token, CalloutReply::new(200).body("<html>not json"))
            .unwrap(),
        StoreFailure::CallFailed => vm.fail_callout(token).unwrap(),
        StoreFailure::Timeout => {
            vm.advance(Duration::from_millis(199)).unwrap();
            assert_eq!(
                vm.pending_callouts().len(),
                1,
                "not before the configured timeout"
            );
            vm.advance(Duration::from_millis(1)).unwrap();
        }
    }
    let _ = sid;
}

const FAILURES: [StoreFailure; 4] = [
    StoreFailure::ServerError,
    StoreFailure::GarbageBody,
    StoreFailure::CallFailed,
    StoreFailure::Timeout,
];

#[test]
fn store_failures_under_fail_open_continue_as_unavailable() {
    for failure in FAILURES {
        let (host, mut vm) = start(config(json!({})));
        let sid = id(6);
        let s = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&sid)));
        fail(&mut vm, failure, &sid);
        let stream = vm.stream(s).unwrap();
        assert_eq!(stream.request.resumes, 1, "{failure:?}");
        assert!(stream.local_response.is_none(), "{failure:?}");
        let up = upstream(&vm, s);
        assert_eq!(
            session_headers(&up),
            vec![("x-session-state".into(), "unavailable".into())],
            "{failure:?}"
        );
        assert_eq!(host.counter("edge_session_unavailable"), 1, "{failure:?}");
        assert_eq!(host.counter("edge_session_callout_error"), 1, "{failure:?}");
        let client = respond(&mut vm, s, &[]);
        assert!(
            !client.headers.contains("set-cookie"),
            "{failure:?}: a store failure never logs anyone out"
        );
    }
}

#[test]
fn store_failures_under_fail_closed_answer_503() {
    for failure in FAILURES {
        let (host, mut vm) = start(config(json!({"on_store_error": "fail_closed"})));
        let sid = id(6);
        let s = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&sid)));
        fail(&mut vm, failure, &sid);
        let stream = vm.stream(s).unwrap();
        assert!(
            stream.upstream.is_none(),
            "{failure:?}: nothing reaches the app"
        );
        assert_eq!(stream.request.resumes, 0, "{failure:?}");
        assert_eq!(stream.client_status(), Some(503), "{failure:?}");
        assert!(
            !stream
                .client
                .as_ref()
                .unwrap()
                .headers
                .contains("set-cookie")
        );
        assert!(stream.violations.is_empty(), "{:?}", stream.violations);
        assert_eq!(host.counter("edge_session_unavailable"), 1, "{failure:?}");
    }
}

#[test]
fn an_unknown_companion_cluster_follows_the_failure_policy() {
    let host = host();
    let mut vm = try_start(
        &host,
        &config(json!({"companion": {"cluster": "missing", "token": COMPANION_TOKEN}})),
    )
    .unwrap();
    let s = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&id(1))));
    assert_eq!(upstream(&vm, s).get("x-session-state"), Some("unavailable"));
    assert_eq!(host.counter("edge_session_callout_error"), 1);
}

#[test]
fn rotated_keys_verify_old_tokens() {
    let rotated = config(
        json!({"keys": [{"id": "k2", "secret": SECRET_B}, {"id": "k1", "secret": SECRET_A}]}),
    );
    let (_host, mut vm) = start(rotated);
    let sid = id(8);
    let s = get_with_cookie(&mut vm, &format!("sid={}", token("k1", SECRET_A, &sid)));
    assert_eq!(
        vm.pending_callouts().len(),
        1,
        "a token of the old key still verifies"
    );
    let t = vm.pending_callouts()[0].token;
    vm.answer_callout(t, ok_reply(&sid, json!({}), None))
        .unwrap();
    assert_eq!(upstream(&vm, s).get("x-session-state"), Some("valid"));

    // A token of a key that was dropped from the list is invalid.
    let (_host, mut vm) = start(config(json!({"keys": [{"id": "k2", "secret": SECRET_B}]})));
    let s = get_with_cookie(&mut vm, &format!("sid={}", token("k1", SECRET_A, &sid)));
    assert_eq!(upstream(&vm, s).get("x-session-state"), Some("invalid"));
    // New tokens use the first key: the same code signs natively, and the filter verifies it.
    let new = filter::config::Config::parse(
        config(
            json!({"keys": [{"id": "k2", "secret": SECRET_B}, {"id": "k1", "secret": SECRET_A}]}),
        )
        .to_string()
        .as_bytes(),
    )
    .unwrap()
    .keys
    .sign(&sid);
    assert!(new.starts_with("k2."));
}

/// No header an app server would read as one of ours (`_` for `-`) reached the upstream.
fn assert_no_underscore_spelling(up: &harness::HeaderMap) {
    for (name, _) in up.iter() {
        let name = String::from_utf8_lossy(name);
        let folded = name.to_ascii_lowercase().replace('_', "-");
        let ours = folded.starts_with("x-session-") || folded == "x-user-roles";
        assert!(
            !(ours && name.contains('_')),
            "a spoofed spelling reached the upstream: {name}"
        );
    }
}

#[test]
fn spoofed_session_headers_never_reach_the_upstream() {
    let spoofed: &[(&str, &str)] = &[
        ("X-Session-State", "valid"),
        ("x-session-user", "admin"),
        ("x-session-user", "root"),
        ("X-SESSION-ID", "forged"),
        ("x-session-data", r#"{"is_admin":true}"#),
        ("x-session-anything-else", "1"),
        ("X-User-Roles", "admin"),
        ("x-user-roles", "superuser"),
        // Every spelling an app server folds into the same CGI/WSGI/Rack variable.
        ("x_session_user", "admin"),
        ("X_Session_State", "valid"),
        ("x-session_data", r#"{"is_admin":true}"#),
        ("x_session-id", "forged"),
        ("X_SESSION_EXPIRES", "2099-01-01T00:00:00Z"),
        ("x_user_roles", "superuser"),
        ("X_User-Roles", "superuser"),
    ];
    let mapped = config(json!({"headers": {"map": {"roles": "x-user-roles"}}}));

    // Without a cookie: only the real state header remains.
    let (_host, mut vm) = start(mapped.clone());
    let s = get(&mut vm, spoofed);
    let up = upstream(&vm, s);
    assert_eq!(
        session_headers(&up),
        vec![("x-session-state".into(), "none".into())]
    );
    assert!(!up.contains("x-user-roles"));
    assert_no_underscore_spelling(&up);

    // With a valid session: only the injected values, once each.
    let (_host, mut vm) = start(mapped);
    let sid = id(9);
    let cookie = format!("sid={}", valid_token(&sid));
    let mut headers = spoofed.to_vec();
    headers.push(("cookie", &cookie));
    let s = get(&mut vm, &headers);
    let t = vm.pending_callouts()[0].token;
    vm.answer_callout(
        t,
        ok_reply(&sid, json!({"roles": "viewer"}), Some("real-user")),
    )
    .unwrap();
    let up = upstream(&vm, s);
    assert_eq!(up.get_all("x-session-user"), vec!["real-user"]);
    assert_eq!(up.get_all("x-session-state"), vec!["valid"]);
    assert_eq!(up.get_all("x-session-id"), vec![sid.as_str()]);
    assert_eq!(
        up.get_all("x-user-roles"),
        vec![r#""viewer""#],
        "mapped strings arrive as JSON"
    );
    assert!(!up.contains("x-session-anything-else"));
    assert_no_underscore_spelling(&up);
}

#[test]
fn forward_cookie_true_keeps_the_session_cookie_upstream() {
    let (_host, mut vm) = start(config(json!({"forward_cookie": true})));
    let cookie = format!("a=1; sid={}", valid_token(&id(2)));
    let s = get_with_cookie(&mut vm, &cookie);
    vm.fail_callout(vm.pending_callouts()[0].token).unwrap();
    assert_eq!(upstream(&vm, s).get("cookie"), Some(cookie.as_str()));
}

#[test]
fn oversized_values_are_not_injected_and_are_counted() {
    let (host, mut vm) = start(config(json!({"max_header_bytes": 64})));
    let sid = id(10);
    let s = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&sid)));
    let t = vm.pending_callouts()[0].token;
    vm.answer_callout(t, ok_reply(&sid, json!({"blob": "x".repeat(100)}), None))
        .unwrap();
    let up = upstream(&vm, s);
    assert_eq!(up.get("x-session-state"), Some("valid"));
    assert!(!up.contains("x-session-data"));
    assert_eq!(host.counter("edge_session_header_omitted"), 1);
    assert!(host.logged("x-session-data not injected"));
}

#[test]
fn logs_never_carry_the_session_id_or_the_token() {
    let (host, mut vm) = start(config(json!({})));
    let sid = id(11);
    let token = valid_token(&sid);
    // A resolved session, a failed one and a refused token all log something.
    let s = get_with_cookie(&mut vm, &format!("sid={token}"));
    let t = vm.pending_callouts()[0].token;
    vm.answer_callout(t, CalloutReply::new(500)).unwrap();
    respond(&mut vm, s, &[]);
    get_with_cookie(&mut vm, &format!("sid={}x", &token[..token.len() - 1]));
    let logs = host.logs();
    assert!(
        logs.iter().any(|l| l.message.contains(&sid.short_hash())),
        "the short hash is logged: {logs:#?}"
    );
    for line in &logs {
        assert!(
            !line.message.contains(sid.as_str()),
            "id in log: {}",
            line.message
        );
        assert!(
            !line.message.contains(&token[token.len() - 20..]),
            "token in log: {}",
            line.message
        );
        assert!(
            !line.message.contains(COMPANION_TOKEN),
            "companion token in log: {}",
            line.message
        );
    }
}

#[test]
fn control_headers_from_the_app_never_reach_the_client() {
    let (_host, mut vm) = start(config(json!({})));
    let s = get(&mut vm, &[]);
    let client = respond(
        &mut vm,
        s,
        &[
            ("x-session-set", r#"{"a":1}"#),
            ("X-Session-Flush", "1"),
            ("x-app", "kept"),
        ],
    );
    assert!(
        session_headers(&client.headers).is_empty(),
        "{:?}",
        client.headers
    );
    assert_eq!(client.header("x-app"), Some("kept"));
}

#[test]
fn upstream_cache_control_and_vary_are_respected() {
    let (_host, mut vm) = start(config(json!({})));
    let s = get_with_cookie(&mut vm, "sid=bad");
    let client = respond(
        &mut vm,
        s,
        &[
            ("cache-control", "no-store"),
            ("vary", "Accept-Encoding, Cookie"),
        ],
    );
    assert_eq!(client.headers.get_all("cache-control"), vec!["no-store"]);
    assert_eq!(
        client.headers.get_all("vary"),
        vec!["Accept-Encoding, Cookie"]
    );
}

#[test]
fn a_bad_plugin_configuration_is_refused_with_the_field_named() {
    let cases = [
        (
            config(json!({"keys": [{"id": "k1", "secret": "c2hvcnQ="}]})),
            "keys[0].secret",
        ),
        (
            config(json!({"cookie": {"same_site": "Sideways"}})),
            "cookie.same_site",
        ),
        (
            config(json!({"companion": {"cluster": "c"}})),
            "companion.token",
        ),
        (config(json!({"surprise": 1})), "surprise"),
    ];
    for (bad, field) in cases {
        let host = host();
        assert_eq!(
            try_start(&host, &bad).err(),
            Some(HarnessError::ConfigureRejected),
            "{field}"
        );
        let line = host
            .logs()
            .into_iter()
            .find(|l| l.message.contains("refusing the plugin configuration"));
        let line =
            line.unwrap_or_else(|| panic!("no refusal logged for {field}: {:#?}", host.logs()));
        assert!(
            line.message.contains(field),
            "{field} not named in {:?}",
            line.message
        );
        assert!(
            !line.message.contains("c2hvcnQ"),
            "the secret is not logged"
        );
    }
}

#[test]
fn the_release_module_is_plain_proxy_wasm() {
    let host = host();
    let plugin = plugin(&host);
    let imports = plugin.imports();
    assert!(
        imports.iter().all(|i| i.starts_with("env.proxy_")),
        "{imports:?}"
    );
    let exports = plugin.exports();
    for needed in [
        "proxy_abi_version_0_2_1",
        "_initialize",
        "malloc",
        "proxy_on_request_headers",
        "proxy_on_http_call_response",
    ] {
        assert!(
            exports.iter().any(|e| e == needed),
            "{needed} missing from {exports:?}"
        );
    }
}
