//! Property tests: whatever bytes a client puts in `cookie` headers and whatever the companion
//! answers, the module never traps and answers the request exactly once.

use crate::support::*;
use harness::{CalloutReply, Vm};
use proptest::prelude::*;
use serde_json::json;

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
