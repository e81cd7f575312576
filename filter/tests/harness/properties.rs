//! Property tests: whatever bytes a client puts in `cookie` headers and whatever the companion
//! answers, the module never traps and answers the request exactly once.

use crate::support::*;
use harness::{CalloutReply, Vm};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The request was answered exactly once: it went upstream (resumed at most once) or got a
/// local response, never both, never neither, and the VM is healthy.
fn assert_answered_once(vm: &Vm, stream: u32) -> Result<(), TestCaseError> {
    prop_assert!(
        vm.failure().is_none(),
        "the module trapped: {:?}",
        vm.failure()
    );
    let s = vm.stream(stream).unwrap();
    prop_assert!(s.upstream.is_some() != s.local_response.is_some(), "{s:#?}");
    prop_assert!(s.request.resumes <= 1);
    prop_assert!(s.violations.is_empty(), "{:?}", s.violations);
    if let Some(up) = &s.upstream {
        prop_assert_eq!(up.headers.get_all("x-session-state").len(), 1);
    }
    Ok(())
}

fn status_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u16..1000).prop_map(|n| n.to_string().into_bytes()),
        Just(b"200".to_vec()),
        Just(b"404".to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ]
}

fn reply_body() -> impl Strategy<Value = Vec<u8>> {
    let sid = id(1);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        Just(session_body(&sid, json!({"k": "v"}), Some("u")).into_bytes()),
        Just(session_body(&id(2), json!({}), None).into_bytes()),
        any::<String>()
            .prop_map(move |s| session_body(&id(1), json!({ "s": s }), Some(&s)).into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_cookie_headers_never_trap(cookies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..320), 0..4)) {
        let (_host, mut vm) = start(config(json!({})));
        let stream = vm.create_stream().unwrap();
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = vec![(b":method".to_vec(), b"GET".to_vec()), (b":path".to_vec(), b"/".to_vec())];
        for cookie in cookies {
            headers.push((b"cookie".to_vec(), cookie));
        }
        prop_assert!(vm.request_headers(stream, &headers, true).is_ok());
        for call in vm.pending_callouts() {
            vm.fail_callout(call.token).unwrap();
        }
        assert_answered_once(&vm, stream)?;
    }

    #[test]
    fn arbitrary_companion_replies_never_trap(
        status in status_bytes(),
        extra in prop::collection::vec(("[a-z-]{1,12}", prop::collection::vec(any::<u8>(), 0..40)), 0..4),
        body in reply_body(),
        failed in any::<bool>(),
        closed in any::<bool>(),
    ) {
        let policy = if closed { "fail_closed" } else { "fail_open" };
        let (_host, mut vm) = start(config(json!({"on_store_error": policy, "headers": {"map": {"k": "x-k"}}})));
        let stream = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&id(1))));
        let token = vm.pending_callouts()[0].token;
        if failed {
            vm.fail_callout(token).unwrap();
        } else {
            // Envoy puts `:status` first; a reply may still carry anything after it.
            let mut reply = CalloutReply::with_raw_status(status).body(body);
            for (name, value) in extra {
                reply = reply.header(&name, value);
            }
            vm.answer_callout(token, reply).unwrap();
        }
        assert_answered_once(&vm, stream)?;
    }
}

/// Header names a client or an app may send: the reserved and control ones in any case, the
/// mapped one, cookies, and any other valid header name (Envoy refuses invalid ones before
/// a filter sees them).
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "x-session-state",
            "X-Session-State",
            "x-session-id",
            "x-session-user",
            "x-session-data",
            "x-session-expires",
            "x-session-set",
            "x-session-flush",
            "x-k",
            "cookie",
            "Cookie",
            "vary",
            "cache-control",
            "set-cookie",
        ])
        .prop_map(str::to_string),
        "[a-z0-9!#$%&'*+.^_`|~-]{1,24}",
        "x-session-[a-z-]{0,12}",
    ]
}

/// Header values: any bytes (Envoy passes obs-text and, from a filter's view, anything), any
/// text, or a valid session cookie.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        ".{0,80}".prop_map(String::into_bytes),
        Just(format!("sid={}", valid_token(&id(1))).into_bytes()),
    ]
}

/// Small arbitrary JSON: what an app or a companion might put in session data.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What an app may send as a control header value.
fn control_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::btree_map(".{0,8}", json_value(), 0..4).prop_map(|m| Value::Object(
            m.into_iter().collect()
        )
        .to_string()
        .into_bytes()),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::sample::select(vec![
            "1",
            "0",
            "true",
            "browser",
            "default",
            "3600",
            "alice",
            "",
            "2999-01-01T00:00:00Z",
            "2000-01-01T00:00:00+01:00"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..120),
        ".{0,40}".prop_map(String::into_bytes),
    ]
}

fn control_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "x-session-set",
        "x-session-user",
        "x-session-expiry",
        "x-session-cycle",
        "x-session-flush",
        "X-SESSION-SET",
        "x-session-other",
    ])
}

/// A companion reply to a write: the statuses it answers and others, with session bodies for
/// the current id (a patch) or a new one (a create or cycle), or anything at all.
fn write_reply() -> impl Strategy<Value = (u16, Vec<u8>)> {
    let status = prop_oneof![
        prop::sample::select(vec![200u16, 201, 204, 400, 404, 413, 503]),
        0u16..1000,
    ];
    let body = prop_oneof![
        Just(session_body(&id(1), json!({"k": "v"}), Some("u")).into_bytes()),
        Just(session_body(&id(2), json!({}), None).into_bytes()),
        json_value().prop_map(|data| session_body(&id(3), json!({ "d": data }), None).into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300),
    ];
    (status, body)
}

/// The header map the filter reads, as the control parser takes it.
fn as_pairs(headers: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any request headers at all: the module never traps, answers once, and nothing the
    /// client sent under a reserved name reaches the app.
    #[test]
    fn arbitrary_request_headers_never_trap_or_pass_a_spoofed_session(
        headers in prop::collection::vec((header_name(), header_value()), 0..10),
        reply in prop::option::of((status_bytes(), reply_body())),
    ) {
        let (_host, mut vm) = start(config(json!({"headers": {"map": {"k": "x-k"}}})));
        let stream = vm.create_stream().unwrap();
        let mut all: Vec<(Vec<u8>, Vec<u8>)> = vec![(b":method".to_vec(), b"GET".to_vec()), (b":path".to_vec(), b"/".to_vec())];
        all.extend(headers.into_iter().map(|(k, v)| (k.into_bytes(), v)));
        prop_assert!(vm.request_headers(stream, &all, true).is_ok());
        for call in vm.pending_callouts() {
            match &reply {
                Some((status, body)) => vm.answer_callout(call.token, CalloutReply::with_raw_status(status.clone()).body(body.clone())).unwrap(),
                None => vm.fail_callout(call.token).unwrap(),
            }
        }
        assert_answered_once(&vm, stream)?;
        let s = vm.stream(stream).unwrap();
        let Some(up) = &s.upstream else { return Ok(()) };
        let state = up.headers.get("x-session-state").unwrap_or_default().to_string();
        prop_assert!(["valid", "none", "invalid", "expired", "unavailable"].contains(&state.as_str()), "{state}");
        let filter_sets = ["x-session-state", "x-session-id", "x-session-user", "x-session-data", "x-session-expires", "x-session-browser", "x-session-handle", "x-k"];
        for (name, _) in up.headers.to_strings() {
            let name = name.to_ascii_lowercase();
            if !name.starts_with("x-session-") && name != "x-k" {
                continue;
            }
            prop_assert!(filter_sets.contains(&name.as_str()), "a spoofed {name} reached the app");
            prop_assert_eq!(up.headers.get_all(&name).len(), 1, "{} twice: a spoof survived", name);
            prop_assert!(state == "valid" || name == "x-session-state", "{name} without a valid session");
        }
        let cookies = up.headers.iter().filter(|(name, _)| *name == b"cookie").map(|(_, value)| value);
        prop_assert_eq!(filter::cookie::find(cookies, "sid"), filter::cookie::Found::None, "the session cookie went upstream");
    }

    /// Any control headers from the app, any companion replies to the writes they cause: the
    /// module never traps, the client gets exactly one response without any control header,
    /// a refused control header writes nothing, and a cookie is issued only for a session a
    /// reply said was stored.
    #[test]
    fn arbitrary_control_headers_and_write_replies_never_trap(
        with_session in any::<bool>(),
        fail_writes in any::<bool>(),
        controls in prop::collection::vec((control_name(), control_value()), 0..5),
        replies in prop::collection::vec(prop::option::of(write_reply()), 3),
    ) {
        let policy = if fail_writes { "fail" } else { "pass" };
        let overrides = json!({"on_write_error": policy, "headers": {"map": {"k": "x-k"}}});
        let (host, mut vm) = start(config(overrides.clone()));
        let stream = if with_session {
            resolved_request(&mut vm, &id(1), session_body(&id(1), json!({"k": "v"}), Some("u")))
        } else {
            get(&mut vm, &[])
        };
        let controls: Vec<(String, Vec<u8>)> = controls.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let names = filter::config::Config::parse(config(overrides).to_string().as_bytes()).unwrap().headers;
        let now = i128::from(host.clock().wall_nanos());
        let expected = filter::control::parse(&names, &as_pairs(&controls), 8192, now);
        let mut all: Vec<(Vec<u8>, Vec<u8>)> = vec![(b":status".to_vec(), b"200".to_vec()), (b"content-type".to_vec(), b"text/html".to_vec())];
        all.extend(controls.iter().map(|(k, v)| (k.clone().into_bytes(), v.clone())));
        prop_assert!(vm.response_headers(stream, &all, true).is_ok());
        let mut writes = 0;
        let mut stored = Vec::new();
        for reply in &replies {
            let Some(call) = vm.pending_callouts().into_iter().next() else { break };
            writes += 1;
            match reply {
                None => vm.fail_callout(call.token).unwrap(),
                Some((status, body)) => {
                    if matches!(status, 200 | 201)
                        && let Ok(session) = serde_json::from_slice::<proto::Session>(body)
                    {
                        stored.push(session.id);
                    }
                    vm.answer_callout(call.token, CalloutReply::new(*status).body(body.clone())).unwrap();
                }
            }
        }
        for call in vm.pending_callouts() {
            // A reply chain longer than the replies given: the companion stops answering.
            writes += 1;
            vm.fail_callout(call.token).unwrap();
        }
        prop_assert!(vm.failure().is_none(), "the module trapped: {:?}", vm.failure());
        let s = vm.stream(stream).unwrap();
        prop_assert!(s.violations.is_empty(), "{:?}", s.violations);
        let Some(client) = &s.client else {
            return Err(TestCaseError::fail(format!("no response reached the client: {s:#?}")));
        };
        for (name, _) in client.headers.to_strings() {
            prop_assert!(!name.to_ascii_lowercase().starts_with("x-session-"), "{name} reached the client");
        }
        if expected.is_err() {
            prop_assert_eq!(writes, 0, "a refused control header wrote");
            prop_assert_eq!(host.counter("edge_session_bad_control"), 1);
            prop_assert_eq!(client.status(), Some(200));
        }
        for cookie in client.headers.get_all("set-cookie") {
            let token = cookie.strip_prefix("sid=").and_then(|c| c.split(';').next()).unwrap_or_default();
            if token.is_empty() {
                continue;
            }
            let keys = filter::config::Config::parse(config(json!({})).to_string().as_bytes()).unwrap().keys;
            let issued = keys.verify(token.as_bytes());
            prop_assert!(issued.as_ref().is_ok_and(|id| stored.contains(id)), "a cookie for a session no reply stored: {cookie}");
        }
    }
}
