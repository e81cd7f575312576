use crate::support::*;
use harness::Action;

#[test]
fn header_reads_and_edits_follow_envoy() {
    let (host, mut vm) = probe();
    let (id, action) = request(
        &mut vm,
        "headers",
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
    let (id, _) = request(&mut vm, "set-pairs", &[("x-old", "1")]);
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
    let (id, _) = request(&mut vm, "plain", &[]);
    vm.response_headers(id, &[(":status", "201"), ("x-app", "1")], true)
        .unwrap();
    let client = vm.stream(id).unwrap().client.clone().unwrap();
    assert_eq!(client.status(), Some(201));
    assert_eq!(client.header("x-probe-seen"), Some("1"));
    assert_eq!(
        report(&host, "response.request_header_after_forward"),
        "BadArgument"
    );
}

#[test]
fn maps_and_buffers_outside_their_callback_are_refused() {
    let (host, mut vm) = probe();
    run(&mut vm, "maps-out-of-phase", &[]);
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
    let (id, _) = request(&mut vm, "plain", &[]);
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
