use crate::support::*;
use harness::{Action, CalloutReply};
use std::time::Duration;

#[test]
fn callout_carries_cluster_headers_and_timeout_and_pauses_the_request() {
    let (host, mut vm) = probe();
    let (id, action) = request(&mut vm, scenario::CALLOUT, &[]);
    assert_eq!(action, Ok(Action::Pause));
    let callouts = vm.pending_callouts();
    assert_eq!(callouts.len(), 1);
    let call = &callouts[0];
    assert_eq!(call.cluster, "companion");
    assert_eq!(call.context, id);
    assert_eq!(
        (call.method(), call.path(), call.authority()),
        (Some("GET"), Some("/v1/x"), Some("companion"))
    );
    assert_eq!(
        call.headers.get("x-token"),
        Some("t"),
        "header names are lowercased"
    );
    assert_eq!(call.timeout, Some(Duration::from_millis(500)));
    assert!(call.body.is_empty());
    assert_eq!(report(&host, "dispatch"), format!("Ok {}", call.token));
    assert!(
        vm.stream(id).unwrap().upstream.is_none(),
        "a paused request does not go upstream"
    );
}

#[test]
fn answered_callout_is_readable_in_its_callback_and_resumes_once() {
    let (host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::CALLOUT, &[]);
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(
        token,
        CalloutReply::new(200)
            .header("Content-Type", "text/plain")
            .body("hello"),
    )
    .unwrap();
    assert_eq!(report(&host, "callout.token_matches"), "true");
    assert_eq!(report(&host, "callout.counts"), "2 5 0");
    assert_eq!(report(&host, "callout.status"), "200");
    assert_eq!(report(&host, "callout.body"), "hello");
    assert_eq!(report(&host, "callout.get_status"), "0 ");
    assert_eq!(
        report(&host, "callout.header_names"),
        ":status,content-type"
    );
    let stream = vm.stream(id).unwrap();
    assert_eq!(
        stream.upstream.as_ref().unwrap().header("x-callout-status"),
        Some("200")
    );
    assert_eq!(stream.request.resumes, 1);
    assert!(stream.violations.is_empty(), "{:?}", stream.violations);
    assert!(vm.pending_callouts().is_empty());
    assert!(
        vm.answer_callout(token, CalloutReply::new(200)).is_err(),
        "a callout is answered once"
    );
}

#[test]
fn failed_callout_arrives_with_no_headers_and_a_reset_status() {
    let (host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::CALLOUT, &[]);
    let token = vm.pending_callouts()[0].token;
    vm.fail_callout(token).unwrap();
    assert_eq!(report(&host, "callout.counts"), "0 0 0");
    assert_eq!(report(&host, "callout.get_status"), "11 reset");
    assert_eq!(
        report(&host, "callout.failed_header_read"),
        "BadArgument",
        "no header map on failure"
    );
    assert_eq!(vm.stream(id).unwrap().request.resumes, 1);
}

#[test]
fn callout_timeout_delivers_envoys_504_when_the_clock_passes_it() {
    let (host, mut vm) = probe();
    run(&mut vm, scenario::CALLOUT, &[("x-timeout-ms", "300")]);
    vm.advance(Duration::from_millis(299)).unwrap();
    assert_eq!(vm.pending_callouts().len(), 1, "not due yet");
    vm.advance(Duration::from_millis(1)).unwrap();
    assert!(vm.pending_callouts().is_empty());
    assert_eq!(report(&host, "callout.status"), "504");
    assert_eq!(report(&host, "callout.body"), "upstream request timeout");
}

#[test]
fn zero_timeout_means_none_and_a_body_gets_content_length() {
    let (host, mut vm) = probe();
    run(&mut vm, scenario::CALLOUT_WITH_BODY, &[]);
    assert!(report(&host, "dispatch").starts_with("Ok("));
    let call = vm.pending_callouts().pop().unwrap();
    assert_eq!(call.timeout, None);
    assert_eq!(call.body, b"{\"a\":1}");
    assert_eq!(call.headers.get("content-length"), Some("7"));
    vm.advance(Duration::from_secs(3600)).unwrap();
    assert_eq!(vm.pending_callouts().len(), 1, "no timeout ever fires");
}

#[test]
fn http_call_refuses_missing_pseudo_headers_unknown_clusters_and_negative_timeouts() {
    let (host, mut vm) = probe();
    let (id, action) = request(&mut vm, scenario::CALLOUT_MISSING, &[]);
    assert_eq!(action, Ok(Action::Continue));
    for what in [
        "dispatch_without:method",
        "dispatch_without:path",
        "dispatch_without:authority",
    ] {
        assert_eq!(report(&host, what), "BadArgument", "{what}");
    }
    assert_eq!(report(&host, "dispatch_unknown_cluster"), "BadArgument");
    assert_eq!(report(&host, "dispatch_negative_timeout"), "BadArgument");
    assert!(
        vm.pending_callouts().is_empty(),
        "refused calls leave nothing pending"
    );
    assert!(vm.stream(id).unwrap().upstream.is_some());
}

#[test]
fn unknown_cluster_is_refused_synchronously_through_the_sdk() {
    let (host, mut vm) = probe();
    let (id, action) = request(&mut vm, scenario::CALLOUT, &[("x-cluster", "nowhere")]);
    assert_eq!(action, Ok(Action::Continue));
    assert_eq!(report(&host, "dispatch"), "BadArgument");
    assert!(vm.stream(id).unwrap().upstream.is_some());
}

#[test]
fn local_response_from_the_callout_callback_replaces_the_upstream() {
    let (host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::CALLOUT_LOCAL, &[]);
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(token, CalloutReply::new(200)).unwrap();
    let stream = vm.stream(id).unwrap();
    assert!(stream.upstream.is_none(), "the request never goes upstream");
    let local = stream.local_response.as_ref().unwrap();
    assert_eq!(
        (local.status, local.body.as_slice()),
        (403, b"no entry".as_slice())
    );
    let client = stream.client.as_ref().unwrap();
    assert_eq!(client.status(), Some(403));
    assert_eq!(client.header("x-denied"), Some("yes"));
    assert_eq!(client.body, b"no entry");
    assert_eq!(
        client.header(scenario::SEEN_HEADER),
        Some("1"),
        "the local reply runs through the response path"
    );
    assert_eq!(report(&host, "response.saw_local_reply"), "true");
}

#[test]
fn resuming_twice_resumes_once_and_is_flagged() {
    let (_host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::RESUME_TWICE, &[]);
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(token, CalloutReply::new(200)).unwrap();
    let stream = vm.stream(id).unwrap();
    assert_eq!(stream.request.resumes, 1);
    assert_eq!(stream.violations.len(), 1, "{:?}", stream.violations);
    assert!(stream.violations[0].contains("not paused"));
}

#[test]
fn reply_to_a_finished_stream_reaches_the_module_without_harm() {
    let (host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::CALLOUT, &[]);
    let token = vm.pending_callouts()[0].token;
    vm.finish_stream(id).unwrap();
    assert_eq!(
        vm.pending_callouts().len(),
        1,
        "callouts belong to the root context"
    );
    vm.answer_callout(token, CalloutReply::new(200)).unwrap();
    assert!(vm.failure().is_none());
    assert!(
        !reports(&host).iter().any(|(w, _)| w == "callout.counts"),
        "the SDK drops it"
    );
}

/// Envoy's `Context::httpCall`: when the cluster's async client cannot start the request (no
/// healthy host), `send()` returns null and the call fails at once with `InternalFailure`;
/// no callback ever follows. The switch is on the host, so every worker sees it.
#[test]
fn a_cluster_without_a_healthy_host_fails_the_call_synchronously() {
    use harness::ClusterHealth;
    let host = host();
    let plugin = probe_plugin(&host);
    let mut first = harness::Vm::start(&plugin, config("")).unwrap();
    let mut second = harness::Vm::start(&plugin, config("")).unwrap();
    host.set_cluster_health("companion", ClusterHealth::NoHealthyHost);
    for vm in [&mut first, &mut second] {
        let (id, action) = request(vm, scenario::CALLOUT, &[]);
        assert_eq!(action, Ok(Action::Continue));
        assert_eq!(report(&host, "dispatch"), "InternalFailure");
        assert!(vm.pending_callouts().is_empty());
        assert!(vm.stream(id).unwrap().upstream.is_some());
    }
    host.set_cluster_health("companion", ClusterHealth::Healthy);
    let (_, action) = request(&mut first, scenario::CALLOUT, &[]);
    assert_eq!(action, Ok(Action::Pause));
    assert_eq!(first.pending_callouts().len(), 1);
}

/// A stream waiting on a callout that never answers (no timeout) is ended by Envoy's stream
/// idle timeout (`ActiveStream::onIdleTimeout`): 504 "stream timeout" once the request was
/// complete, 408 while the client was still sending it; on a healthy VM the reply runs
/// through the filter's response callbacks like any local reply.
#[test]
fn the_idle_timeout_answers_a_stream_left_waiting() {
    let (_host, mut vm) = probe();
    let (complete, _) = request(&mut vm, scenario::CALLOUT, &[("x-timeout-ms", "0")]);
    vm.stream_idle_timeout(complete).unwrap();
    let client = vm.stream(complete).unwrap().client.clone().unwrap();
    assert_eq!(client.status(), Some(504));
    assert_eq!(client.body, b"stream timeout");
    assert_eq!(client.header(scenario::SEEN_HEADER), Some("1"));
    assert_eq!(
        vm.stream(complete)
            .unwrap()
            .local_response
            .as_ref()
            .unwrap()
            .details,
        "stream_idle_timeout"
    );

    let sending = vm.create_stream().unwrap();
    let headers = [
        (":method", "POST"),
        (":path", "/"),
        (scenario::NAME_HEADER, scenario::CALLOUT),
    ];
    vm.request_headers(sending, &headers, false).unwrap();
    vm.stream_idle_timeout(sending).unwrap();
    assert_eq!(vm.stream(sending).unwrap().client_status(), Some(408));
    assert!(vm.stream(sending).unwrap().upstream.is_none());
}
