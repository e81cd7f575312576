use crate::support::*;
use harness::{Action, CalloutReply, HarnessError};

#[test]
fn local_response_stops_the_request_and_passes_the_response_path() {
    let (host, mut vm) = probe();
    let (id, action) = request(&mut vm, scenario::LOCAL, &[]);
    assert_eq!(action, Ok(Action::Pause));
    let stream = vm.stream(id).unwrap();
    assert!(stream.upstream.is_none());
    let client = stream.client.as_ref().unwrap();
    assert_eq!(client.status(), Some(401));
    assert_eq!(client.header("x-local"), Some("1"));
    assert_eq!(client.header("content-length"), Some("6"));
    assert_eq!(client.header("content-type"), Some("text/plain"));
    assert_eq!(client.body, b"denied");
    assert_eq!(report(&host, "response_body"), "size=6 eos=true");
    assert!(
        vm.response_headers(id, &[(":status", "200")], true)
            .is_err(),
        "no upstream response follows"
    );
}

#[test]
fn local_response_wins_over_a_continue() {
    let (_host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::LOCAL_CONTINUE, &[]);
    let stream = vm.stream(id).unwrap();
    assert!(stream.upstream.is_none());
    assert_eq!(stream.client_status(), Some(418));
}

#[test]
fn continuing_a_request_that_is_not_paused_is_flagged() {
    let (_host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::CONTINUE_UNPAUSED, &[]);
    let stream = vm.stream(id).unwrap();
    assert!(stream.upstream.is_some());
    assert_eq!(stream.request.resumes, 0);
    assert_eq!(stream.violations.len(), 1);
}

#[test]
fn paused_response_resumes_from_a_callout() {
    let (_host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::PAUSE_RESPONSE, &[]);
    assert_eq!(
        vm.response_headers(id, &[(":status", "200")], true),
        Ok(Action::Pause)
    );
    assert!(
        vm.stream(id).unwrap().client.is_none(),
        "a paused response does not reach the client"
    );
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(token, CalloutReply::new(200)).unwrap();
    let stream = vm.stream(id).unwrap();
    assert_eq!(stream.response.resumes, 1);
    assert_eq!(
        stream
            .client
            .as_ref()
            .unwrap()
            .header(scenario::SEEN_HEADER),
        Some("1")
    );
}

#[test]
fn local_response_during_the_response_replaces_it() {
    let (_host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::LOCAL_IN_RESPONSE, &[]);
    vm.response_headers(id, &[(":status", "200")], false)
        .unwrap();
    let client = vm.stream(id).unwrap().client.clone().unwrap();
    assert_eq!(client.status(), Some(502));
    assert_eq!(client.body, b"replaced");
}

#[test]
fn paused_body_is_buffered_then_forwarded_as_the_filter_left_it() {
    let (host, mut vm) = probe();
    let (id, action) = {
        let id = vm.create_stream().unwrap();
        let action = vm.request_headers(
            id,
            &[
                (":method", "POST"),
                (":path", "/"),
                (scenario::NAME_HEADER, scenario::BODY),
            ],
            false,
        );
        (id, action)
    };
    assert_eq!(action, Ok(Action::Continue));
    assert_eq!(vm.request_body(id, b"hello ", false), Ok(Action::Pause));
    assert!(
        vm.stream(id)
            .unwrap()
            .upstream
            .as_ref()
            .unwrap()
            .body
            .is_empty()
    );
    assert_eq!(vm.request_body(id, b"world", true), Ok(Action::Continue));
    assert_eq!(
        report(&host, "request_body"),
        "size=11 eos=true",
        "the size is the whole buffered body"
    );
    assert_eq!(report(&host, "request_body.first_byte"), "H");
    let upstream = vm.stream(id).unwrap().upstream.clone().unwrap();
    assert_eq!(upstream.body, b"HELLO WORLD");
    assert!(upstream.end_of_stream);
}

#[test]
fn body_arriving_while_headers_are_paused_is_delivered_on_resume() {
    let (host, mut vm) = probe();
    let id = vm.create_stream().unwrap();
    vm.request_headers(
        id,
        &[
            (":method", "POST"),
            (":path", "/"),
            (scenario::NAME_HEADER, scenario::CALLOUT),
        ],
        false,
    )
    .unwrap();
    assert_eq!(vm.request_body(id, b"abc", true), Ok(Action::Pause));
    assert!(
        !reports(&host).iter().any(|(w, _)| w == "request_body"),
        "not given to the filter while paused"
    );
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(token, CalloutReply::new(200)).unwrap();
    assert_eq!(report(&host, "request_body"), "size=3 eos=true");
    assert_eq!(
        vm.stream(id).unwrap().upstream.as_ref().unwrap().body,
        b"abc"
    );
}

#[test]
fn response_body_streams_through() {
    let (host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::PLAIN, &[]);
    vm.response_headers(id, &[(":status", "200")], false)
        .unwrap();
    vm.response_body(id, b"part1", false).unwrap();
    vm.response_body(id, b"part2", true).unwrap();
    assert_eq!(report(&host, "response_body"), "size=5 eos=true");
    let client = vm.stream(id).unwrap().client.clone().unwrap();
    assert_eq!(client.body, b"part1part2");
    assert!(client.end_of_stream);
}

#[test]
fn misuse_of_the_test_api_is_an_error_not_a_panic() {
    let (_host, mut vm) = probe();
    assert_eq!(
        vm.request_headers(99, &[(":path", "/")], true),
        Err(HarnessError::UnknownStream(99))
    );
    let (id, _) = request(&mut vm, scenario::CALLOUT, &[]);
    assert!(matches!(
        vm.response_headers(id, &[(":status", "200")], true),
        Err(HarnessError::Usage(_))
    ));
    assert!(matches!(
        vm.request_headers(id, &[(":path", "/")], true),
        Err(HarnessError::Usage(_))
    ));
    assert_eq!(
        vm.answer_callout(4242, CalloutReply::new(200)),
        Err(HarnessError::UnknownCallout(4242))
    );
}

#[test]
fn close_stream_resets_it_before_anything_goes_upstream() {
    let (_host, mut vm) = probe();
    let id = run(&mut vm, scenario::CLOSE, &[]);
    let stream = vm.stream(id).unwrap();
    assert!(stream.reset);
    assert!(stream.upstream.is_none());
    assert!(stream.client.is_none());
}

#[test]
fn body_edits_are_envoys_three_and_reads_are_clamped() {
    let (host, mut vm) = probe();
    let id = vm.create_stream().unwrap();
    vm.request_headers(
        id,
        &[
            (":method", "POST"),
            (":path", "/"),
            (scenario::NAME_HEADER, scenario::BUFFER_EDITS),
        ],
        false,
    )
    .unwrap();
    vm.request_body(id, b"abc", true).unwrap();
    assert_eq!(report(&host, "buffer.status"), "Ok 3");
    assert_eq!(report(&host, "buffer.prepend"), "Ok");
    assert_eq!(report(&host, "buffer.append"), "Ok");
    assert_eq!(
        report(&host, "buffer.middle"),
        "BadArgument",
        "only prepend, replace-all and append"
    );
    assert_eq!(report(&host, "buffer.after"), "<abc>");
    assert_eq!(
        report(&host, "buffer.read_at_end"),
        "None",
        "reading from the end gives nothing"
    );
    assert_eq!(report(&host, "buffer.read_past_end"), "BadArgument");
    assert_eq!(
        vm.stream(id).unwrap().upstream.as_ref().unwrap().body,
        b"<abc>"
    );
}

#[test]
fn header_map_size_is_the_byte_size_of_names_and_values() {
    let (host, mut vm) = probe();
    let id = vm.create_stream().unwrap();
    vm.request_headers(
        id,
        &[(":path", "/"), (scenario::NAME_HEADER, scenario::MAP_SIZE)],
        true,
    )
    .unwrap();
    assert_eq!(
        report(&host, "map_size"),
        format!(
            "Ok {}",
            ":path".len() + 1 + scenario::NAME_HEADER.len() + scenario::MAP_SIZE.len()
        )
    );
}

#[test]
fn proxy_done_has_nothing_to_finish_when_on_done_returned_true() {
    let (host, mut vm) = probe();
    run(&mut vm, scenario::DONE, &[]);
    assert_eq!(report(&host, "done.status"), "NotFound");
}

#[test]
fn a_second_local_response_from_the_filters_own_reply_resets_the_stream() {
    let (_host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::LOCAL_TWICE, &[]);
    let stream = vm.stream(id).unwrap();
    assert!(stream.reset);
    assert_eq!(stream.violations.len(), 1, "{:?}", stream.violations);
    assert_eq!(stream.local_response.as_ref().unwrap().status, 401);
}

#[test]
fn body_held_for_a_callout_goes_on_when_resumed() {
    let (_host, mut vm) = probe();
    let id = vm.create_stream().unwrap();
    vm.request_headers(
        id,
        &[
            (":method", "POST"),
            (":path", "/"),
            (scenario::NAME_HEADER, scenario::BODY_CALLOUT),
        ],
        false,
    )
    .unwrap();
    assert_eq!(vm.request_body(id, b"payload", true), Ok(Action::Pause));
    let upstream = vm.stream(id).unwrap().upstream.clone().unwrap();
    assert!(
        upstream.body.is_empty() && !upstream.end_of_stream,
        "headers went on, the body is held"
    );
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(token, CalloutReply::new(200)).unwrap();
    let stream = vm.stream(id).unwrap();
    assert_eq!(stream.request.resumes, 1);
    let upstream = stream.upstream.clone().unwrap();
    assert_eq!(upstream.body, b"payload");
    assert!(upstream.end_of_stream);
}

#[test]
fn end_of_stream_is_carried_upstream() {
    let (_host, mut vm) = probe();
    let get = run(&mut vm, scenario::PLAIN, &[]);
    assert!(
        vm.stream(get)
            .unwrap()
            .upstream
            .as_ref()
            .unwrap()
            .end_of_stream,
        "a GET ends with its headers"
    );
    let post = vm.create_stream().unwrap();
    vm.request_headers(
        post,
        &[
            (":method", "POST"),
            (":path", "/"),
            (scenario::NAME_HEADER, scenario::PLAIN),
        ],
        false,
    )
    .unwrap();
    assert!(
        !vm.stream(post)
            .unwrap()
            .upstream
            .as_ref()
            .unwrap()
            .end_of_stream
    );
}

#[test]
fn stopped_streams_are_stopped_in_both_directions() {
    use harness::Flow;
    let (_host, mut vm) = probe();
    let local = run(&mut vm, scenario::LOCAL, &[]);
    assert_eq!(vm.stream(local).unwrap().request.flow, Flow::Stopped);
    let closed = run(&mut vm, scenario::CLOSE, &[]);
    let stream = vm.stream(closed).unwrap();
    assert_eq!(
        (stream.request.flow, stream.response.flow),
        (Flow::Stopped, Flow::Stopped)
    );
    assert!(!stream.request.headers_accessible);
    let forwarded = run(&mut vm, scenario::PLAIN, &[]);
    assert_eq!(vm.stream(forwarded).unwrap().request.flow, Flow::Forwarded);
}

/// Envoy's `Context::continueStream` defers the continue but drops its pointers to the request
/// headers, body and trailers at the call: a request-header write later in the same callback
/// is `BadArgument` (which the Rust SDK turns into a panic), and never reaches the upstream.
#[test]
fn continue_stream_revokes_request_headers_at_the_call() {
    let (host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::RESUME_THEN_WRITE, &[]);
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(token, CalloutReply::new(200)).unwrap();
    assert_eq!(report(&host, "late_request_write"), "BadArgument");
    assert_eq!(report(&host, "late_request_read"), "BadArgument");
    let stream = vm.stream(id).unwrap();
    assert_eq!(stream.request.resumes, 1);
    assert!(!stream.upstream.as_ref().unwrap().headers.contains("x-late"));
}

/// Resuming the response leaves the response headers writable for the rest of the callback
/// (`Context::continueStream` drops only the request's pointers), and the edit goes out.
#[test]
fn response_headers_stay_writable_after_resuming_the_response() {
    let (host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::PAUSE_RESPONSE_WRITE, &[]);
    vm.response_headers(id, &[(":status", "200")], true)
        .unwrap();
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(token, CalloutReply::new(200)).unwrap();
    assert_eq!(report(&host, "late_response_write"), "Ok");
    let client = vm.stream(id).unwrap().client.clone().unwrap();
    assert_eq!(client.header("x-after-resume"), Some("1"));
}
