use crate::support::*;
use harness::Action;

#[test]
fn header_reads_and_edits_follow_envoy() {
    let (host, mut vm) = probe();
    let (id, action) = request(
        &mut vm,
        scenario::HEADERS,
        &[
            ("X-Dup", "a"),
            ("x-dup", "b"),
            ("x-replaced", "old"),
            ("x-replaced", "older"),
            ("x-removed", "gone"),
            ("x-empty", ""),
        ],
    );
    assert_eq!(action, Ok(Action::Continue));
    assert_eq!(report(&host, "headers.count"), "10");
    assert_eq!(
        report(&host, "headers.first_dup"),
        "a",
        "get returns the first value"
    );
    assert_eq!(
        report(&host, "headers.mixed_case_lookup"),
        "a",
        "lookups are case-insensitive"
    );
    assert_eq!(report(&host, "headers.missing"), "NotFound");
    assert_eq!(report(&host, "headers.empty_value"), "Some(\"\")");
    let upstream = &vm.stream(id).unwrap().upstream.as_ref().unwrap().headers;
    assert_eq!(
        upstream.get_all("x-dup"),
        vec!["a", "b", "c"],
        "add appends"
    );
    assert_eq!(
        upstream.get("x-added"),
        Some("1"),
        "names from the module are lowercased"
    );
    assert!(
        upstream
            .iter()
            .all(|(k, _)| k == k.to_ascii_lowercase().as_slice())
    );
    assert_eq!(
        upstream.get_all("x-replaced"),
        vec!["new"],
        "replace leaves one value"
    );
    assert_eq!(
        upstream.get("x-fresh"),
        Some("made"),
        "replace adds when absent"
    );
    assert!(!upstream.contains("x-removed"));
}

#[test]
fn set_pairs_replaces_the_whole_map() {
    let (_host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::SET_PAIRS, &[("x-old", "1")]);
    let upstream = &vm.stream(id).unwrap().upstream.as_ref().unwrap().headers;
    assert_eq!(
        upstream.to_strings(),
        vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/rewritten".into()),
            ("x-only".into(), "this".into())
        ]
    );
}

#[test]
fn response_headers_are_editable_and_request_headers_are_gone_after_forwarding() {
    let (host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::PLAIN, &[]);
    vm.response_headers(id, &[(":status", "201"), ("x-app", "1")], true)
        .unwrap();
    let client = vm.stream(id).unwrap().client.clone().unwrap();
    assert_eq!(client.status(), Some(201));
    assert_eq!(client.header(scenario::SEEN_HEADER), Some("1"));
    assert_eq!(
        report(&host, "response.request_header_after_forward"),
        "BadArgument"
    );
}

#[test]
fn maps_and_buffers_outside_their_callback_are_refused() {
    let (host, mut vm) = probe();
    run(&mut vm, scenario::MAPS_OUT_OF_PHASE, &[]);
    assert_eq!(report(&host, "maps.response_in_request"), "BadArgument");
    assert_eq!(
        report(&host, "maps.call_response_in_request"),
        "BadArgument"
    );
    assert_eq!(report(&host, "maps.unknown_type"), "BadArgument");
    assert_eq!(report(&host, "buffers.call_body_in_request"), "NotFound");
}

#[test]
fn on_log_reads_both_header_maps() {
    let (host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::PLAIN, &[]);
    vm.response_headers(id, &[(":status", "204")], true)
        .unwrap();
    vm.finish_stream(id).unwrap();
    assert_eq!(report(&host, "on_log.request_header"), "Ok");
    assert_eq!(report(&host, "on_log.response_status"), "204");
    assert_eq!(
        report(&host, "on_log.write"),
        "BadArgument",
        "nothing is writable once the stream is done"
    );
}

/// Sends `scenario` with `x-n: n` and returns what went upstream, or the local reply.
fn limit_case(scenario: &str, n: usize) -> (harness::Host, harness::Stream) {
    let (host, mut vm) = probe();
    let id = run(&mut vm, scenario, &[("x-n", &n.to_string())]);
    (host, vm.stream(id).unwrap().clone())
}

/// cpp-host's `PairsUtil::toPairs` reads a map of more than `PROXY_WASM_HOST_PAIRS_MAX_COUNT`
/// (1024) pairs as empty, and Envoy's `Context::setHeaderMapPairs` then removes every header
/// and answers OK.
#[test]
fn set_pairs_past_the_pair_limit_removes_every_header() {
    let (host, at_limit) = limit_case(scenario::SET_PAIRS_COUNT, 1024);
    assert_eq!(report(&host, "set_pairs.status"), "Ok");
    assert_eq!(at_limit.upstream.unwrap().headers.len(), 1024);

    let (host, past) = limit_case(scenario::SET_PAIRS_COUNT, 1025);
    assert_eq!(report(&host, "set_pairs.status"), "Ok");
    assert!(past.upstream.unwrap().headers.is_empty());
}

/// The same for a serialized map over `PROXY_WASM_HOST_PAIRS_MAX_BYTES` (1 MiB).
#[test]
fn set_pairs_past_the_byte_limit_removes_every_header() {
    let (host, at_limit) = limit_case(scenario::SET_PAIRS_BYTES, 1 << 20);
    assert_eq!(report(&host, "set_pairs.bytes"), (1 << 20).to_string());
    assert_eq!(report(&host, "set_pairs.status"), "Ok");
    let headers = at_limit.upstream.unwrap().headers;
    assert_eq!(
        headers.get_bytes("a").map(<[u8]>::len),
        Some((1 << 20) - 15)
    );

    let (host, past) = limit_case(scenario::SET_PAIRS_BYTES, (1 << 20) + 1);
    assert_eq!(
        report(&host, "set_pairs.bytes"),
        ((1 << 20) + 1).to_string()
    );
    assert_eq!(report(&host, "set_pairs.status"), "Ok");
    assert!(past.upstream.unwrap().headers.is_empty());
}

/// `proxy_send_local_response` reads its extra headers with the same `toPairs`: past the
/// limit the reply goes out without them (cpp-host `exports::send_local_response`).
#[test]
fn a_local_reply_with_too_many_headers_goes_out_without_them() {
    let (_host, at_limit) = limit_case(scenario::LOCAL_MANY_HEADERS, 1024);
    let client = at_limit.client.unwrap();
    assert_eq!(client.status(), Some(200));
    assert_eq!(client.header("k1023"), Some("v"));

    let (_host, past) = limit_case(scenario::LOCAL_MANY_HEADERS, 1025);
    let client = past.client.unwrap();
    assert_eq!(client.status(), Some(200));
    assert_eq!(client.body, b"local");
    assert!(!client.headers.contains("k0"));
}
