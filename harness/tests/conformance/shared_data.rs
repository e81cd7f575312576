use crate::support::*;
use harness::Vm;

#[test]
fn shared_data_has_envoys_cas_semantics() {
    let (host, mut vm) = probe();
    run(&mut vm, scenario::SHARED, &[]);
    assert_eq!(report(&host, "shared.get_missing"), "NotFound");
    assert_eq!(report(&host, "shared.set_unconditional"), "Ok");
    assert_eq!(report(&host, "shared.get"), "Ok v1 cas_nonzero=true");
    assert_eq!(report(&host, "shared.set_with_cas"), "Ok");
    assert_eq!(report(&host, "shared.set_with_stale_cas"), "CasMismatch");
    assert_eq!(report(&host, "shared.value_after"), "v2");
    assert_eq!(report(&host, "shared.fresh_key_any_cas"), "Ok");
    assert_eq!(
        host.shared_data("probe-vm", b"probe-k").map(|(v, _)| v),
        Some(b"v2".to_vec())
    );
}

#[test]
fn workers_with_one_vm_id_share_one_store_and_other_vm_ids_do_not() {
    let host = host();
    let plugin = probe_plugin(&host);
    let mut first = Vm::start_named(&plugin, config(""), "worker-1").unwrap();
    let mut second = Vm::start_named(&plugin, config(""), "worker-2").unwrap();
    let mut other_config = config("");
    other_config.vm_id = "another-vm".into();
    let mut other = Vm::start_named(&plugin, other_config, "worker-3").unwrap();
    run(&mut first, scenario::SHARED_WRITE, &[("x-value", "hello")]);
    assert_eq!(report(&host, "shared.write"), "Ok");
    run(&mut second, scenario::SHARED_READ, &[]);
    assert_eq!(report(&host, "shared.read"), "Ok hello");
    run(&mut other, scenario::SHARED_READ, &[]);
    assert_eq!(report(&host, "shared.read"), "NotFound ");
}
