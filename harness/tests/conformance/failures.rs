use crate::support::*;
use harness::{Action, CalloutReply, FailurePolicy, HarnessError, Plugin, PluginConfig, Side, Vm};

fn trap_message(result: Result<impl std::fmt::Debug, HarnessError>, callback: &str) -> String {
    match result {
        Err(HarnessError::Trap {
            callback: at,
            message,
        }) => {
            assert_eq!(at, callback);
            message
        }
        other => panic!("expected a trap in {callback}, got {other:?}"),
    }
}

#[test]
fn trap_is_an_error_value_and_fails_the_stream_closed() {
    let (host, mut vm) = probe();
    let (id, result) = request(&mut vm, scenario::TRAP, &[]);
    let message = trap_message(result, "proxy_on_request_headers");
    assert!(message.contains("unreachable"), "{message}");
    assert!(
        host.logged("probe asked to trap"),
        "the SDK's panic hook logs the panic message"
    );
    let stream = vm.stream(id).unwrap();
    assert!(stream.upstream.is_none());
    assert_eq!(stream.client_status(), Some(503));
    assert_eq!(
        stream.local_response.as_ref().unwrap().details,
        "wasm_fail_stream"
    );
    assert!(vm.failure().is_some());

    // Envoy keeps the failed VM failed: later streams on it are answered 503 without the module.
    let (next, action) = request(&mut vm, scenario::PLAIN, &[]);
    assert_eq!(action, Ok(Action::Pause));
    assert_eq!(vm.stream(next).unwrap().client_status(), Some(503));
}

#[test]
fn other_vms_keep_serving_after_one_traps() {
    let host = host();
    let plugin = probe_plugin(&host);
    let mut broken = Vm::start(&plugin, config("")).unwrap();
    let mut healthy = Vm::start(&plugin, config("")).unwrap();
    let _ = request(&mut broken, scenario::TRAP, &[]);
    let (id, action) = request(&mut healthy, scenario::PLAIN, &[]);
    assert_eq!(action, Ok(Action::Continue));
    assert!(healthy.stream(id).unwrap().upstream.is_some());
    assert!(healthy.failure().is_none());
}

#[test]
fn fail_open_passes_streams_through_after_a_trap() {
    let host = host();
    let plugin = probe_plugin(&host);
    let mut open = config("");
    open.failure_policy = FailurePolicy::FailOpen;
    let mut vm = Vm::start(&plugin, open).unwrap();
    let (id, result) = request(&mut vm, scenario::TRAP, &[("x-keep", "1")]);
    trap_message(result, "proxy_on_request_headers");
    let upstream = vm.stream(id).unwrap().upstream.clone().unwrap();
    assert_eq!(upstream.header("x-keep"), Some("1"));
    let (next, action) = request(&mut vm, scenario::PLAIN, &[]);
    assert_eq!(action, Ok(Action::Continue));
    assert!(vm.stream(next).unwrap().upstream.is_some());
}

#[test]
fn fail_open_passes_body_that_arrives_after_the_trap() {
    let host = host();
    let plugin = probe_plugin(&host);
    let mut open = config("");
    open.failure_policy = FailurePolicy::FailOpen;
    let mut vm = Vm::start(&plugin, open).unwrap();
    // A stream whose headers went on before the VM failed on another stream.
    let id = vm.create_stream().unwrap();
    let headers = [
        (":method", "POST"),
        (":path", "/"),
        (scenario::NAME_HEADER, scenario::PLAIN),
    ];
    assert_eq!(
        vm.request_headers(id, &headers, false),
        Ok(Action::Continue)
    );
    let (_, result) = request(&mut vm, scenario::TRAP, &[]);
    trap_message(result, "proxy_on_request_headers");
    assert_eq!(vm.request_body(id, b"late", true), Ok(Action::Continue));
    let upstream = vm.stream(id).unwrap().upstream.clone().unwrap();
    assert_eq!(upstream.body, b"late");
    assert!(upstream.end_of_stream);
}

#[test]
fn forwarded_body_is_taken_in_pieces_as_a_streaming_proxy_sends_it() {
    let (_host, mut vm) = probe();
    let id = vm.create_stream().unwrap();
    let headers = [
        (":method", "POST"),
        (":path", "/"),
        (scenario::NAME_HEADER, scenario::PLAIN),
    ];
    vm.request_headers(id, &headers, false).unwrap();
    assert_eq!(
        vm.take_forwarded_body(id, Side::Request),
        Ok((Vec::new(), false))
    );
    vm.request_body(id, b"one", false).unwrap();
    assert_eq!(
        vm.take_forwarded_body(id, Side::Request),
        Ok((b"one".to_vec(), false))
    );
    vm.request_body(id, b"two", true).unwrap();
    assert_eq!(
        vm.take_forwarded_body(id, Side::Request),
        Ok((b"two".to_vec(), true))
    );
    // Nothing has reached the client yet; an unknown stream is an error.
    assert_eq!(
        vm.take_forwarded_body(id, Side::Response),
        Ok((Vec::new(), false))
    );
    assert!(vm.take_forwarded_body(id + 100, Side::Request).is_err());
}

/// cpp-host's `ContextBase::onHttpCallResponse` returns early on a failed VM and has no
/// `CHECK_FAIL_HTTP`: a trap there fails the VM, not the stream. The stream stays paused,
/// with nothing upstream and nothing for the client, until Envoy's stream idle timeout
/// answers it, through the failed filter: 503 `wasm_fail_stream` when fail-closed.
#[test]
fn trap_in_a_callout_response_leaves_the_stream_paused_until_the_idle_timeout() {
    let (_host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::CALLOUT_TRAP, &[]);
    let token = vm.pending_callouts()[0].token;
    trap_message(
        vm.answer_callout(token, CalloutReply::new(200)),
        "proxy_on_http_call_response",
    );
    assert!(vm.failure().is_some());
    let stream = vm.stream(id).unwrap();
    assert_eq!(stream.request.flow, harness::Flow::Paused);
    assert!(stream.upstream.is_none() && stream.client.is_none());
    assert_eq!(vm.paused_streams(), vec![id]);

    vm.stream_idle_timeout(id).unwrap();
    let stream = vm.stream(id).unwrap();
    assert_eq!(stream.client_status(), Some(503));
    assert_eq!(
        stream.local_response.as_ref().unwrap().details,
        "wasm_fail_stream"
    );
    assert!(vm.paused_streams().is_empty());
}

/// The other streams of that VM waiting on callouts are never answered: their replies (and
/// their timeouts' 504s) find the VM failed. With fail-open the idle timeout's own reply
/// reaches the client: 504 "stream timeout" once the request was complete.
#[test]
fn after_a_trap_in_a_callout_response_no_other_stream_is_answered() {
    let host = host();
    let plugin = probe_plugin(&host);
    let mut open = config("");
    open.failure_policy = FailurePolicy::FailOpen;
    let mut vm = Vm::start(&plugin, open).unwrap();
    let (trapping, _) = request(&mut vm, scenario::CALLOUT_TRAP, &[]);
    let (answered, _) = request(&mut vm, scenario::CALLOUT, &[]);
    let (timed, _) = request(&mut vm, scenario::CALLOUT, &[("x-timeout-ms", "300")]);
    let tokens: Vec<u32> = vm.pending_callouts().iter().map(|c| c.token).collect();
    trap_message(
        vm.answer_callout(tokens[0], CalloutReply::new(200)),
        "proxy_on_http_call_response",
    );
    assert!(matches!(
        vm.answer_callout(tokens[1], CalloutReply::new(200)),
        Err(HarnessError::VmFailed(_))
    ));
    vm.advance(std::time::Duration::from_secs(1)).unwrap();
    assert!(vm.pending_callouts().is_empty());
    assert_eq!(vm.paused_streams(), vec![trapping, answered, timed]);
    for id in [trapping, answered, timed] {
        let stream = vm.stream(id).unwrap();
        assert!(stream.upstream.is_none() && stream.client.is_none(), "{id}");
    }
    vm.stream_idle_timeout(answered).unwrap();
    let client = vm.stream(answered).unwrap().client.clone().unwrap();
    assert_eq!(client.status(), Some(504));
    assert_eq!(client.body, b"stream timeout");
    assert!(
        client.header(scenario::SEEN_HEADER).is_none(),
        "the failed filter is skipped"
    );
}

/// What the module deferred before trapping still runs: cpp-host's `DeferAfterCallActions`
/// does so whatever the call did. A filter that resumes the request, then writes a request
/// header (`BadArgument` since the resume, a panic in the Rust SDK), sends the request on
/// without that header, and leaves its VM failed.
#[test]
fn a_resume_before_a_trap_in_a_callout_response_still_happens() {
    let (_host, mut vm) = probe();
    let (id, _) = request(&mut vm, scenario::RESUME_THEN_SDK_WRITE, &[]);
    let token = vm.pending_callouts()[0].token;
    trap_message(
        vm.answer_callout(token, CalloutReply::new(200)),
        "proxy_on_http_call_response",
    );
    assert!(vm.failure().is_some());
    let upstream = vm.stream(id).unwrap().upstream.clone().unwrap();
    assert!(!upstream.headers.contains("x-late"));
    // Its response then meets the failed filter: fail-closed answers 503.
    vm.response_headers(id, &[(":status", "200")], true)
        .unwrap();
    assert_eq!(vm.stream(id).unwrap().client_status(), Some(503));
}

#[test]
fn trap_in_configure_is_an_error() {
    let host = host();
    let plugin = probe_plugin(&host);
    trap_message(
        Vm::start(&plugin, config("trap-on-configure")).map(|_| ()),
        "proxy_on_configure",
    );
}

const PREAMBLE: &str = r#"
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) i32.const 1024)
  (func (export "proxy_on_context_create") (param i32 i32))
"#;

fn wat_plugin(body: &str) -> Result<(harness::Host, Plugin), HarnessError> {
    let host = host();
    let plugin = Plugin::from_bytes(&host, format!("(module {body})").as_bytes())?;
    Ok((host, plugin))
}

#[test]
fn reading_outside_memory_traps_with_a_clear_message() {
    let module = format!(
        r#"{PREAMBLE}
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          i32.const -16
          i32.load)"#
    );
    let (_host, plugin) = wat_plugin(&module).unwrap();
    let mut vm = Vm::start(&plugin, PluginConfig::new("")).unwrap();
    let (id, result) = request(&mut vm, "x", &[]);
    let message = trap_message(result, "proxy_on_request_headers");
    assert!(message.contains("out of bounds memory access"), "{message}");
    assert_eq!(vm.stream(id).unwrap().client_status(), Some(503));
}

#[test]
fn only_logging_is_allowed_while_the_module_starts() {
    let logs_at_start = format!(
        r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
        {PREAMBLE}
        (data (i32.const 64) "starting")
        (func (export "_initialize") i32.const 2 i32.const 64 i32.const 8 call $log drop)"#
    );
    let (host, plugin) = wat_plugin(&logs_at_start).unwrap();
    Vm::start(&plugin, PluginConfig::new("")).unwrap();
    assert!(host.logged("starting"));

    let reads_level_at_start = format!(
        r#"(import "env" "proxy_get_log_level" (func $level (param i32) (result i32)))
        {PREAMBLE}
        (func (export "_initialize") i32.const 16 call $level drop)"#
    );
    let (_host, plugin) = wat_plugin(&reads_level_at_start).unwrap();
    let message = trap_message(
        Vm::start(&plugin, PluginConfig::new("")).map(|_| ()),
        "_initialize",
    );
    assert!(
        message.contains("while the module was starting"),
        "{message}"
    );
}

#[test]
fn start_is_called_when_there_is_no_initialize() {
    let module = format!(
        r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
        {PREAMBLE}
        (data (i32.const 64) "via _start")
        (func (export "_start") i32.const 2 i32.const 64 i32.const 10 call $log drop)"#
    );
    let (host, plugin) = wat_plugin(&module).unwrap();
    Vm::start(&plugin, PluginConfig::new("")).unwrap();
    assert!(host.logged("via _start"));
}

#[test]
fn modules_that_are_not_proxy_wasm_0_2_are_refused_at_load() {
    let no_marker = r#"(memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) i32.const 0)"#;
    assert_eq!(
        wat_plugin(no_marker).err(),
        Some(HarnessError::MissingAbiMarker)
    );

    let unknown_import = format!(r#"(import "env" "proxy_bogus" (func (param i32))) {PREAMBLE}"#);
    match wat_plugin(&unknown_import).err() {
        Some(HarnessError::Link(message)) => assert!(message.contains("proxy_bogus"), "{message}"),
        other => panic!("expected a link error, got {other:?}"),
    }

    let no_allocator = r#"(memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
        (func (export "proxy_on_context_create") (param i32 i32))"#;
    let (_host, plugin) = wat_plugin(no_allocator).unwrap();
    assert_eq!(
        Vm::start(&plugin, PluginConfig::new("")).err(),
        Some(HarnessError::MissingAllocator)
    );

    assert!(matches!(
        wat_plugin("(module"),
        Err(HarnessError::Compile(_))
    ));
}

#[test]
fn allocator_falls_back_to_proxy_on_memory_allocate() {
    let module = r#"(memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
        (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 1024)
        (func (export "proxy_on_context_create") (param i32 i32))"#;
    let (_host, plugin) = wat_plugin(module).unwrap();
    assert!(Vm::start(&plugin, PluginConfig::new("")).is_ok());
}

#[test]
fn unsupported_calls_answer_unimplemented_and_log() {
    let (host, mut vm) = probe();
    run(&mut vm, scenario::UNIMPLEMENTED, &[]);
    assert_eq!(report(&host, "unimplemented.queue"), "Unimplemented");
    assert_eq!(
        report(&host, "unimplemented.continue_upstream"),
        "Unimplemented"
    );
    assert_eq!(
        report(&host, "unimplemented.continue_bad_type"),
        "BadArgument"
    );
    assert!(host.logged("proxy_register_shared_queue is not implemented"));
}

#[test]
fn effective_context_must_name_a_live_context() {
    let (host, mut vm) = probe();
    run(&mut vm, scenario::EFFECTIVE_CONTEXT, &[]);
    assert_eq!(report(&host, "effective.unknown"), "BadArgument");
    assert_eq!(report(&host, "effective.self"), "Ok");
}

/// Envoy's `createFilter` (`PluginConfig::createContext`) installs no filter on a worker
/// whose thread-local plugin is missing: cpp-host's `getOrCreateThreadLocalPlugin` returns
/// none when the worker's VM does not start or configure. That holds whatever the failure
/// policy (fail-closed here): the worker's requests reach the upstream untouched, forged
/// headers included.
#[test]
fn a_worker_whose_plugin_cannot_start_runs_without_the_filter() {
    let host = host();
    let plugin = probe_plugin(&host);
    for (words, why) in [
        ("refuse", "ConfigureRejected"),
        ("trap-on-configure", "Trap"),
    ] {
        host.clear_logs();
        let mut vm = Vm::start_worker(&plugin, config(words), "worker-9");
        let missing = format!("{:?}", vm.filter_missing());
        assert!(
            missing.starts_with(&format!("Some({why}")),
            "{words}: {missing}"
        );
        assert!(
            host.logged("runs WITHOUT the filter"),
            "{words}: said loudly"
        );
        let (id, action) = request(&mut vm, scenario::LOCAL, &[("x-session-user", "forged")]);
        assert_eq!(action, Ok(Action::Continue), "{words}");
        vm.response_headers(id, &[(":status", "200")], true)
            .unwrap();
        let stream = vm.finish_stream(id).unwrap();
        let upstream = stream.upstream.unwrap();
        assert_eq!(upstream.header("x-session-user"), Some("forged"));
        assert!(stream.local_response.is_none() && stream.failure.is_none());
        assert!(
            stream
                .client
                .unwrap()
                .header(scenario::SEEN_HEADER)
                .is_none()
        );
        assert!(
            !reports(&host).iter().any(|(w, _)| w == "request_headers"),
            "{words}: no module code ran for the stream"
        );
    }
    let healthy = Vm::start_worker(&plugin, config(""), "worker-1");
    assert!(healthy.filter_missing().is_none() && healthy.failure().is_none());
}
