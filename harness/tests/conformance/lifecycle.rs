use crate::support::*;
use harness::{Action, HarnessError, Vm};

#[test]
fn start_runs_vm_start_then_configure_with_their_buffers() {
    let (host, _vm) = probe();
    let reports = reports(&host);
    let position = |what: &str| reports.iter().position(|(w, _)| w == what).unwrap();
    assert!(position("vm_start.size") < position("configure.size"));
    assert_eq!(report(&host, "vm_start.size"), "7");
    assert_eq!(report(&host, "vm_start.config"), "vm-conf");
    assert_eq!(report(&host, "configure.size"), "0");
}

#[test]
fn plugin_configuration_reaches_on_configure() {
    let host = host();
    let plugin = probe_plugin(&host);
    let _vm = Vm::start(&plugin, config("alpha beta")).unwrap();
    assert_eq!(report(&host, "configure.size"), "10");
    assert_eq!(report(&host, "configure.config"), "alpha beta");
}

#[test]
fn refused_configuration_is_an_error_and_logged() {
    let host = host();
    let plugin = probe_plugin(&host);
    let err = Vm::start(&plugin, config("refuse")).err().unwrap();
    assert_eq!(err, HarnessError::ConfigureRejected);
    assert_eq!(report(&host, "configure.refused"), "true");
    assert!(
        host.logged("refused its configuration"),
        "{:#?}",
        host.logs()
    );
}

/// Envoy's `ConnectionManagerImpl::doDeferredStreamDestroy` writes the access log (the
/// filter's `proxy_on_log`) before `destroyFilters` (its `proxy_on_done`, then
/// `proxy_on_delete`, from `Context::onDestroy`).
#[test]
fn stream_runs_log_then_done_then_delete() {
    let (host, mut vm) = probe();
    let (id, action) = request(&mut vm, scenario::PLAIN, &[]);
    assert_eq!(action, Ok(Action::Continue));
    assert_eq!(
        vm.response_headers(id, &[(":status", "200")], true),
        Ok(Action::Continue)
    );
    let stream = vm.finish_stream(id).unwrap();
    assert!(stream.client.is_some());
    let names: Vec<String> = reports(&host).into_iter().map(|(w, _)| w).collect();
    let at = |w: &str| {
        names
            .iter()
            .position(|n| n == w)
            .unwrap_or_else(|| panic!("no {w} in {names:?}"))
    };
    assert!(at("request_headers") < at("response_headers"));
    assert!(at("response_headers") < at("on_log.request_header"));
    assert!(at("on_log.request_header") < at("on_done"));
    assert!(at("on_done") < at("deleted"));
    assert_eq!(report(&host, "deleted"), id.to_string());
    assert!(vm.stream(id).is_none(), "a finished stream is gone");
}

#[test]
fn many_streams_interleave_on_one_vm() {
    let (_host, mut vm) = probe();
    let (a, _) = request(&mut vm, scenario::CALLOUT, &[]);
    let (b, _) = request(&mut vm, scenario::PLAIN, &[]);
    let (c, _) = request(&mut vm, scenario::CALLOUT, &[]);
    assert!(vm.stream(b).unwrap().upstream.is_some());
    let callouts = vm.pending_callouts();
    assert_eq!(
        callouts.iter().map(|c| c.context).collect::<Vec<_>>(),
        vec![a, c]
    );
    vm.answer_callout(callouts[1].token, harness::CalloutReply::new(200))
        .unwrap();
    assert!(vm.stream(c).unwrap().upstream.is_some());
    assert!(
        vm.stream(a).unwrap().upstream.is_none(),
        "only the answered stream resumes"
    );
}

#[test]
fn stream_context_ids_are_unique_and_never_the_roots() {
    let (_host, mut vm) = probe();
    let root = vm.root_context_id();
    assert_ne!(root, 0);
    let ids: Vec<u32> = (0..5).map(|_| vm.create_stream().unwrap()).collect();
    for (i, id) in ids.iter().enumerate() {
        assert!(*id != 0 && *id != root, "{id}");
        assert!(!ids[..i].contains(id), "{id} reused");
    }
}
