//! Oversized and malicious input at the filter's boundaries: cookies at and over the token
//! limit, control headers at and over `max_header_bytes`, deep or huge JSON, invalid UTF-8 and
//! NUL bytes, and hostile session data from the companion. Each is refused by name (counted
//! and logged), the app's response goes out unchanged, and nothing is written.

use crate::support::*;
use filter::token::MAX_TOKEN_LEN;
use harness::{CalloutReply, Host, Vm};
use serde_json::json;

/// The client's response, with the checks every boundary shares: no violation, no control
/// header leaked to the client.
fn client_response(vm: &Vm, stream: u32) -> harness::Message {
    let s = vm.stream(stream).unwrap();
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert!(vm.failure().is_none(), "trapped: {:?}", vm.failure());
    let client = s.client.clone().expect("nothing reached the client");
    assert!(session_headers(&client.headers).is_empty(), "{client:?}");
    client
}

/// A request without a session whose app response carries `control`: the control header is
/// refused by name, nothing is written, and the response goes out as the app sent it.
fn assert_control_refused(
    config_overrides: serde_json::Value,
    name: &str,
    value: &[u8],
    reason: &str,
) {
    let (host, mut vm) = start(config(config_overrides));
    let s = get(&mut vm, &[]);
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b":status", b"200"),
        (b"content-type", b"text/html"),
        (b"x-app", b"kept"),
        (name.as_bytes(), value),
    ];
    vm.response_headers(s, &headers, true).unwrap();
    assert!(
        vm.pending_callouts().is_empty(),
        "{name} ({reason}): a write was started"
    );
    let out = client_response(&vm, s);
    assert_eq!(out.status(), Some(200), "{reason}");
    assert_eq!(out.header("x-app"), Some("kept"), "{reason}");
    assert!(!out.headers.contains("set-cookie"), "{reason}");
    assert_eq!(host.counter("edge_session_bad_control"), 1, "{reason}");
    assert_eq!(host.counter("edge_session_writes"), 0, "{reason}");
    assert!(
        host.logged(&format!("{name}: {reason}")),
        "the log names the header and the reason {reason:?}: {:#?}",
        host.logs()
    );
}

/// A cookie value that is refused without any callout, counted as invalid and cleared.
fn assert_cookie_refused(host: &Host, vm: &mut Vm, cookie: &[u8], invalid_so_far: u64) {
    let s = vm.create_stream().unwrap();
    let headers: Vec<(&[u8], &[u8])> =
        vec![(b":method", b"GET"), (b":path", b"/"), (b"cookie", cookie)];
    vm.request_headers(s, &headers, true).unwrap();
    assert!(
        vm.pending_callouts().is_empty(),
        "a bad cookie caused a callout"
    );
    let up = upstream(vm, s);
    assert_eq!(up.get("x-session-state"), Some("invalid"));
    assert_eq!(host.counter("edge_session_invalid"), invalid_so_far + 1);
    let out = respond(vm, s, &[]);
    assert!(
        out.headers
            .get_all("set-cookie")
            .iter()
            .any(|c| c.contains("Max-Age=0")),
        "the bad cookie is cleared"
    );
}

#[test]
fn tokens_at_and_over_the_length_limit_are_refused_without_a_callout() {
    let (host, mut vm) = start(config(json!({})));
    let at_limit = format!("sid=k1.{}", "A".repeat(MAX_TOKEN_LEN - 3));
    assert_eq!(at_limit.len() - 4, MAX_TOKEN_LEN);
    assert_cookie_refused(&host, &mut vm, at_limit.as_bytes(), 0);
    let over = format!("sid={}", "A".repeat(MAX_TOKEN_LEN + 1));
    assert_cookie_refused(&host, &mut vm, over.as_bytes(), 1);
    let huge = format!("sid={}", "A".repeat(64 * 1024));
    assert_cookie_refused(&host, &mut vm, huge.as_bytes(), 2);
}

#[test]
fn nul_bytes_and_invalid_utf8_in_the_session_cookie_are_refused_without_a_callout() {
    let (host, mut vm) = start(config(json!({})));
    let good = valid_token(&id(1));
    let mut cases: Vec<Vec<u8>> = Vec::new();
    let mut with_nul = format!("sid={good}").into_bytes();
    with_nul.insert(10, 0);
    cases.push(with_nul);
    cases.push([format!("sid={good}").as_bytes(), b"\xff"].concat());
    cases.push([b"sid=\xc3\x28".as_slice(), &good.as_bytes()[2..]].concat());
    cases.push(format!("sid=\"{good}\0\"").into_bytes());
    for (n, cookie) in cases.iter().enumerate() {
        assert_cookie_refused(&host, &mut vm, cookie, n as u64);
    }
}

#[test]
fn a_valid_cookie_among_huge_and_binary_cookies_still_resolves_and_only_it_is_removed() {
    let (host, mut vm) = start(config(json!({})));
    let others = format!("big={}; bin=", "b".repeat(60 * 1024));
    let mut header = others.into_bytes();
    header.extend_from_slice(b"\xff\x00\xfe; ");
    header.extend_from_slice(format!("sid={}", valid_token(&id(1))).as_bytes());
    let s = vm.create_stream().unwrap();
    let headers: Vec<(&[u8], &[u8])> =
        vec![(b":method", b"GET"), (b":path", b"/"), (b"cookie", &header)];
    vm.request_headers(s, &headers, true).unwrap();
    let call = only_callout(&vm);
    vm.answer_callout(call.token, ok_reply(&id(1), json!({}), None))
        .unwrap();
    let up = upstream(&vm, s);
    assert_eq!(up.get("x-session-state"), Some("valid"));
    let forwarded = up
        .get_bytes("cookie")
        .expect("the other cookies go upstream");
    assert!(forwarded.starts_with(b"big=bbb") && forwarded.ends_with(b"bin=\xff\x00\xfe"));
    assert_eq!(host.counter("edge_session_valid"), 1);
}

#[test]
fn control_headers_at_the_size_limit_apply_and_one_byte_over_are_refused() {
    let limit = 1024;
    let overrides = json!({"max_header_bytes": limit});
    let body = |len: usize| {
        let filler = len - r#"{"a":""}"#.len();
        format!(r#"{{"a":"{}"}}"#, "x".repeat(filler))
    };
    let (host, mut vm) = start(config(overrides.clone()));
    let s = get(&mut vm, &[]);
    app_responds(&mut vm, s, &[("x-session-set", &body(limit))]);
    let call = only_callout(&vm);
    assert_eq!(
        call.headers.get(":method"),
        Some("POST"),
        "at the limit it is written"
    );
    assert_eq!(host.counter("edge_session_bad_control"), 0);
    assert_control_refused(
        overrides,
        "x-session-set",
        body(limit + 1).as_bytes(),
        "too large",
    );
}

#[test]
fn deep_or_huge_json_in_a_control_header_is_refused_before_any_write() {
    let big = json!({"max_header_bytes": 65536});
    let nested = |depth: usize| {
        format!(
            r#"{{"a":{}1{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    // Deeper than the companion stores: refused here, by name, not as a failed write.
    assert_control_refused(
        big.clone(),
        "x-session-set",
        nested(proto::MAX_DATA_DEPTH + 1).as_bytes(),
        "nested too deep",
    );
    // Deeper than the JSON parser's recursion limit: refused as not JSON, never a stack overflow.
    assert_control_refused(
        big.clone(),
        "x-session-set",
        nested(20_000).as_bytes(),
        "not JSON",
    );
    // The default limit holds a wide object too.
    let wide: String = (0..2000).map(|i| format!(r#""k{i}":{i},"#)).collect();
    assert_control_refused(
        json!({}),
        "x-session-set",
        format!("{{{wide}\"z\":0}}").as_bytes(),
        "too large",
    );
    // At the depth limit, it is written.
    let (_host, mut vm) = start(config(big));
    let s = get(&mut vm, &[]);
    app_responds(
        &mut vm,
        s,
        &[("x-session-set", &nested(proto::MAX_DATA_DEPTH))],
    );
    assert_eq!(only_callout(&vm).headers.get(":method"), Some("POST"));
}

#[test]
fn invalid_utf8_and_nul_bytes_in_control_headers_are_refused_by_name() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("x-session-set", b"{\"a\": \"\xff\"}", "not UTF-8"),
        ("x-session-set", b"{\"a\": \"b\x00c\"}", "not JSON"),
        ("x-session-set", b"\x00", "not JSON"),
        ("x-session-user", b"alice\x00admin", "not a user id"),
        ("x-session-user", b"\xc3\x28", "not UTF-8"),
        ("x-session-user", b"bob\x7f", "not a user id"),
        (
            "x-session-expiry",
            b"60\x00",
            "not seconds, an RFC 3339 time, browser or default",
        ),
        ("x-session-flush", b"1\x00", "not 1 or 0"),
        ("x-session-cycle", b"\xff", "not UTF-8"),
    ];
    for (name, value, reason) in cases {
        assert_control_refused(json!({}), name, value, reason);
    }
}

#[test]
fn an_escaped_nul_in_session_data_is_data_and_is_written_as_such() {
    let (_host, mut vm) = start(config(json!({})));
    let s = get(&mut vm, &[]);
    app_responds(
        &mut vm,
        s,
        &[("x-session-set", r#"{"a\u0000b": "c\u0000d"}"#)],
    );
    let call = only_callout(&vm);
    let body: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["data"], json!({"a\u{0}b": "c\u{0}d"}));
}

#[test]
fn huge_session_data_is_not_injected_but_counted_and_logged_by_name() {
    let (host, mut vm) = start(config(
        json!({"headers": {"map": {"blob": "x-blob", "small": "x-small"}}}),
    ));
    let sid = id(5);
    let data = json!({"blob": "z".repeat(100 * 1024), "small": "ok"});
    let s = resolved_request(&mut vm, &sid, session_body(&sid, data, Some("u")));
    let up = upstream(&vm, s);
    assert_eq!(up.get("x-session-state"), Some("valid"));
    assert_eq!(up.get("x-session-user"), Some("u"));
    assert_eq!(
        up.get("x-small"),
        Some(r#""ok""#),
        "mapped strings arrive as JSON"
    );
    assert!(!up.contains("x-session-data") && !up.contains("x-blob"));
    assert_eq!(host.counter("edge_session_header_omitted"), 2);
    assert!(host.logged("x-session-data not injected") && host.logged("x-blob not injected"));
    assert!(
        !host.logs().iter().any(|l| l.message.contains(sid.as_str())),
        "the log never names the session"
    );
}

#[test]
fn hostile_session_data_is_injected_as_visible_ascii_only() {
    let (_host, mut vm) = start(config(json!({"headers": {"map": {"name": "x-name"}}})));
    let sid = id(6);
    let hostile = "a\r\nx-evil: 1\u{0}\u{7f}\u{202e}é";
    let s = resolved_request(
        &mut vm,
        &sid,
        session_body(&sid, json!({"name": hostile}), Some(hostile)),
    );
    let up = upstream(&vm, s);
    assert_eq!(up.get("x-session-state"), Some("valid"));
    assert!(!up.contains("x-evil"));
    for name in ["x-session-data", "x-session-user", "x-name"] {
        let value = up
            .get_bytes(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            value
                .iter()
                .all(|b| *b == b'\t' || (0x20..0x7f).contains(b)),
            "{name} carries a byte a header may not: {:?}",
            String::from_utf8_lossy(value)
        );
    }
    let user: String = serde_json::from_slice(up.get_bytes("x-session-user").unwrap()).unwrap();
    assert_eq!(
        user, hostile,
        "the value survives, escaped as a JSON string"
    );
}

#[test]
fn hostile_companion_replies_make_the_store_unavailable_without_a_trap() {
    let sid = id(7);
    let mut invalid_utf8 = session_body(&sid, json!({"s": "PLACEHOLDER"}), None).into_bytes();
    let at = invalid_utf8
        .windows(11)
        .position(|w| w == b"PLACEHOLDER")
        .unwrap();
    invalid_utf8.splice(at..at + 11, b"\xff\xfe".iter().copied());
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000)).into_bytes();
    let huge_garbage = vec![b'{'; 2 * 1024 * 1024];
    let with_nul = [
        b"\0".as_slice(),
        session_body(&sid, json!({}), None).as_bytes(),
    ]
    .concat();
    for (what, body) in [
        ("invalid UTF-8", invalid_utf8),
        ("deep JSON", deep),
        ("2 MiB of garbage", huge_garbage),
        ("a NUL byte", with_nul),
    ] {
        let (host, mut vm) = start(config(json!({})));
        let s = get_with_cookie(&mut vm, &format!("sid={}", valid_token(&sid)));
        let call = only_callout(&vm);
        vm.answer_callout(call.token, CalloutReply::new(200).body(body))
            .unwrap();
        assert!(vm.failure().is_none(), "{what}: trapped");
        let up = upstream(&vm, s);
        assert_eq!(up.get("x-session-state"), Some("unavailable"), "{what}");
        assert_eq!(host.counter("edge_session_callout_error"), 1, "{what}");
        assert!(
            host.logged("companion reply body is not a session"),
            "{what}"
        );
    }
}
