use crate::support::*;

#[test]
fn plugin_and_request_properties_are_readable() {
    let (host, mut vm) = probe();
    let id = vm.create_stream().unwrap();
    vm.set_stream_property(id, "source.address", "192.0.2.7:5123")
        .unwrap();
    vm.request_headers(
        id,
        &[
            (":method", "POST"),
            (":path", "/a?b=1"),
            (scenario::NAME_HEADER, scenario::PROPERTIES),
        ],
        true,
    )
    .unwrap();
    assert_eq!(
        report(&host, "property.plugin_name"),
        "Some(\"probe-plugin\")"
    );
    assert_eq!(
        report(&host, "property.plugin_root_id"),
        "Some(\"probe-root\")"
    );
    assert_eq!(report(&host, "property.plugin_vm_id"), "Some(\"probe-vm\")");
    assert_eq!(report(&host, "property.request.path"), "Some(\"/a?b=1\")");
    assert_eq!(report(&host, "property.request.method"), "Some(\"POST\")");
    assert_eq!(
        report(&host, "property.source.address"),
        "Some(\"192.0.2.7:5123\")"
    );
    assert_eq!(report(&host, "property.missing"), "None");
    assert_eq!(
        report(&host, "property.single_segment_dotted"),
        "NotFound",
        "paths are NUL-separated segments"
    );
}

#[test]
fn source_address_has_a_default() {
    let (host, mut vm) = probe();
    run(&mut vm, scenario::PROPERTIES, &[]);
    assert_eq!(
        report(&host, "property.source.address"),
        "Some(\"127.0.0.1:40000\")"
    );
}
