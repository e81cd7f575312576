//! Request and response trailers: map types 1 and 3, their callbacks, and where Envoy lets a
//! filter reach them (`Context::getMap`, `decodeTrailers`, `encodeTrailers`).

use crate::support::*;
use harness::{Action, CalloutReply, Flow, Side};

fn post(vm: &mut harness::Vm, scenario: &str) -> u32 {
    let id = vm.create_stream().unwrap();
    let headers = [
        (":method", "POST"),
        (":path", "/"),
        (scenario::NAME_HEADER, scenario),
    ];
    assert_eq!(
        vm.request_headers(id, &headers, false),
        Ok(Action::Continue)
    );
    id
}

/// `Context::decodeTrailers` hands the trailers to `proxy_on_request_trailers(ctx, count)`
/// after the body, whose last callback said `end_of_stream` false (the trailers end the
/// request). The filter edits them there, and they go upstream after the body.
#[test]
fn request_trailers_reach_their_callback_after_the_body_and_go_upstream_as_edited() {
    let (host, mut vm) = probe();
    let id = post(&mut vm, scenario::PLAIN);
    vm.request_body(id, b"abc", false).unwrap();
    assert_eq!(
        vm.request_trailers(id, &[("x-t", "1"), ("X-Session-User", "forged")]),
        Ok(Action::Continue)
    );
    assert_eq!(report(&host, "request_body"), "size=3 eos=false");
    assert_eq!(report(&host, "request_trailers"), "n=2");
    assert_eq!(report(&host, "request_trailers.x_t"), "1");
    assert_eq!(
        report(&host, "request_trailers.headers_reachable"),
        "BadArgument",
        "the headers went on before"
    );
    let upstream = vm.stream(id).unwrap().upstream.clone().unwrap();
    assert_eq!(upstream.body, b"abc");
    assert!(upstream.end_of_stream);
    let trailers = upstream.trailers.unwrap();
    assert_eq!(trailers.get("x-t"), Some("1"));
    assert_eq!(trailers.get("x-added"), Some("1"));
    assert!(!trailers.contains("x-session-user"));
    assert!(!vm.stream(id).unwrap().request.trailers_accessible);
    assert_eq!(
        vm.take_forwarded_trailers(id, Side::Request).unwrap(),
        Some(trailers)
    );
    assert_eq!(vm.take_forwarded_trailers(id, Side::Request).unwrap(), None);
}

/// Response trailers the same way, through `proxy_on_response_trailers`; `proxy_on_log` reads
/// them (Envoy's access-log phase holds the response trailers, never the request's).
#[test]
fn response_trailers_are_edited_before_the_client_and_readable_in_on_log() {
    let (host, mut vm) = probe();
    let id = post(&mut vm, scenario::PLAIN);
    vm.request_body(id, b"", false).unwrap();
    vm.request_trailers(id, &[("x-t", "1")]).unwrap();
    vm.response_headers(id, &[(":status", "200")], false)
        .unwrap();
    vm.response_body(id, b"out", false).unwrap();
    assert_eq!(
        vm.response_trailers(id, &[("x-rt", "2"), ("x-session-user", "app")]),
        Ok(Action::Continue)
    );
    assert_eq!(report(&host, "response_trailers"), "n=2");
    let client = vm.stream(id).unwrap().client.clone().unwrap();
    assert_eq!(client.body, b"out");
    assert!(client.end_of_stream);
    let trailers = client.trailers.unwrap();
    assert_eq!(trailers.get("x-rt"), Some("2"));
    assert_eq!(trailers.get("x-added"), Some("1"));
    assert!(!trailers.contains("x-session-user"));
    vm.finish_stream(id).unwrap();
    assert_eq!(report(&host, "on_log.request_trailer"), "NotFound");
    assert_eq!(report(&host, "on_log.response_trailer"), "2");
}

/// Trailers that arrive while the filter holds the request headers wait, with the body, until
/// it resumes; it then gets the body and the trailers in that order.
#[test]
fn trailers_arriving_while_the_headers_are_paused_wait_for_the_resume() {
    let (host, mut vm) = probe();
    let id = vm.create_stream().unwrap();
    let headers = [
        (":method", "POST"),
        (":path", "/"),
        (scenario::NAME_HEADER, scenario::CALLOUT),
    ];
    assert_eq!(vm.request_headers(id, &headers, false), Ok(Action::Pause));
    assert_eq!(vm.request_body(id, b"abc", false), Ok(Action::Pause));
    assert_eq!(vm.request_trailers(id, &[("x-t", "9")]), Ok(Action::Pause));
    assert!(!reports(&host).iter().any(|(w, _)| w == "request_trailers"));
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(token, CalloutReply::new(200)).unwrap();
    let names: Vec<String> = reports(&host).into_iter().map(|(w, _)| w).collect();
    let at = |w: &str| names.iter().position(|n| n == w).unwrap();
    assert!(at("request_body") < at("request_trailers"));
    assert_eq!(report(&host, "request_body"), "size=3 eos=false");
    let upstream = vm.stream(id).unwrap().upstream.clone().unwrap();
    assert_eq!(upstream.body, b"abc");
    assert_eq!(upstream.trailers.unwrap().get("x-t"), Some("9"));
}

/// A body the filter holds (Pause from its body callbacks) is still held when the trailers
/// come; their callback reaches it, and Continue there sends body and trailers on.
#[test]
fn a_held_body_is_readable_in_the_trailers_callback_and_goes_on_with_the_trailers() {
    let (host, mut vm) = probe();
    let id = post(&mut vm, scenario::TRAILERS_HOLD_BODY);
    assert_eq!(vm.request_body(id, b"held", false), Ok(Action::Pause));
    assert_eq!(
        vm.request_trailers(id, &[("x-t", "1")]),
        Ok(Action::Continue)
    );
    assert_eq!(report(&host, "request_trailers.held_body"), "held");
    let upstream = vm.stream(id).unwrap().upstream.clone().unwrap();
    assert_eq!(upstream.body, b"held");
    assert!(upstream.end_of_stream && upstream.trailers.is_some());
}

/// Pause from the trailers callback (Envoy's StopIteration) holds them, still editable, until
/// `proxy_continue_stream`.
#[test]
fn trailers_paused_for_a_callout_stay_editable_until_resumed() {
    let (_host, mut vm) = probe();
    let id = post(&mut vm, scenario::TRAILERS_PAUSE);
    vm.request_body(id, b"x", false).unwrap();
    assert_eq!(vm.request_trailers(id, &[("x-t", "1")]), Ok(Action::Pause));
    let stream = vm.stream(id).unwrap();
    assert!(stream.request.trailers_paused);
    assert!(!stream.upstream.as_ref().unwrap().end_of_stream);
    assert_eq!(vm.paused_streams(), vec![id]);
    let token = vm.pending_callouts()[0].token;
    vm.answer_callout(token, CalloutReply::new(200)).unwrap();
    let stream = vm.stream(id).unwrap();
    assert_eq!(stream.request.resumes, 1);
    assert!(stream.violations.is_empty(), "{:?}", stream.violations);
    let trailers = stream.upstream.clone().unwrap().trailers.unwrap();
    assert_eq!(trailers.get("x-from-callout"), Some("1"));
    assert_eq!(trailers.get("x-added"), Some("1"));
}

/// Envoy's `Context::getMap` adds trailers (`addDecodedTrailers`, `addEncodedTrailers`) when
/// the filter writes to them from the last body callback of a direction that has none; from
/// any other body callback there is no map (`BadArgument`).
#[test]
fn the_last_body_callback_can_add_trailers_when_there_are_none() {
    let (host, mut vm) = probe();
    let id = post(&mut vm, scenario::ADD_TRAILERS);
    vm.request_body(id, b"a", false).unwrap();
    assert_eq!(report(&host, "add_trailer"), "eos=false BadArgument");
    vm.request_body(id, b"b", true).unwrap();
    assert_eq!(report(&host, "add_trailer"), "eos=true Ok");
    let upstream = vm.stream(id).unwrap().upstream.clone().unwrap();
    assert_eq!(upstream.body, b"ab");
    assert!(upstream.end_of_stream);
    assert_eq!(upstream.trailers.unwrap().get("x-made"), Some("1"));
    assert!(
        !reports(&host).iter().any(|(w, _)| w == "request_trailers"),
        "Envoy does not hand a filter the trailers it made"
    );
    vm.response_headers(id, &[(":status", "200")], false)
        .unwrap();
    vm.response_body(id, b"z", true).unwrap();
    assert_eq!(report(&host, "add_response_trailer"), "eos=true Ok");
    let client = vm.stream(id).unwrap().client.clone().unwrap();
    assert_eq!(client.trailers.unwrap().get("x-made"), Some("1"));
}

/// Outside their callbacks (and the last body callback) there is no trailer map to reach.
#[test]
fn trailers_are_out_of_reach_in_the_headers_callback() {
    let (host, mut vm) = probe();
    run(&mut vm, scenario::MAPS_OUT_OF_PHASE, &[]);
    assert_eq!(
        report(&host, "maps.request_trailers_in_headers"),
        "BadArgument"
    );
    assert_eq!(
        report(&host, "maps.add_request_trailer_in_headers"),
        "BadArgument"
    );
}

/// Trailers end a direction: more body after them, or trailers twice, is a misuse of the
/// test API; on a stopped stream they go nowhere.
#[test]
fn trailers_end_the_direction() {
    let (_host, mut vm) = probe();
    let id = post(&mut vm, scenario::PLAIN);
    vm.request_trailers(id, &[("x-t", "1")]).unwrap();
    assert!(vm.request_body(id, b"late", false).is_err());
    assert!(vm.request_trailers(id, &[("x-t", "2")]).is_err());
    let fresh = vm.create_stream().unwrap();
    assert!(vm.request_trailers(fresh, &[("x-t", "1")]).is_err());
    let local = run(&mut vm, scenario::LOCAL, &[]);
    assert_eq!(vm.stream(local).unwrap().request.flow, Flow::Stopped);
    assert_eq!(
        vm.request_trailers(local, &[("x-t", "1")]),
        Ok(Action::Pause)
    );
}
