use crate::support::*;
use harness::{Plugin, PluginConfig, Vm};

/// Every `env` import of the proxy-wasm Rust SDK 0.2.5 (`src/hostcalls.rs`), plus
/// `proxy_get_header_map_size` and `proxy_get_buffer_status` from the ABI spec, with their
/// wasm signatures: the number of i32 parameters, then any i64 parameter.
const SDK_IMPORTS: &[(&str, usize, usize)] = &[
    ("proxy_log", 3, 0),
    ("proxy_get_log_level", 1, 0),
    ("proxy_get_current_time_nanoseconds", 1, 0),
    ("proxy_set_tick_period_milliseconds", 1, 0),
    ("proxy_get_buffer_bytes", 5, 0),
    ("proxy_set_buffer_bytes", 5, 0),
    ("proxy_get_buffer_status", 3, 0),
    ("proxy_get_header_map_pairs", 3, 0),
    ("proxy_set_header_map_pairs", 3, 0),
    ("proxy_get_header_map_size", 2, 0),
    ("proxy_get_header_map_value", 5, 0),
    ("proxy_add_header_map_value", 5, 0),
    ("proxy_replace_header_map_value", 5, 0),
    ("proxy_remove_header_map_value", 3, 0),
    ("proxy_get_property", 4, 0),
    ("proxy_set_property", 4, 0),
    ("proxy_get_shared_data", 5, 0),
    ("proxy_set_shared_data", 5, 0),
    ("proxy_register_shared_queue", 3, 0),
    ("proxy_resolve_shared_queue", 5, 0),
    ("proxy_dequeue_shared_queue", 3, 0),
    ("proxy_enqueue_shared_queue", 3, 0),
    ("proxy_continue_stream", 1, 0),
    ("proxy_close_stream", 1, 0),
    ("proxy_send_local_response", 8, 0),
    ("proxy_http_call", 10, 0),
    ("proxy_grpc_call", 12, 0),
    ("proxy_grpc_stream", 9, 0),
    ("proxy_grpc_send", 4, 0),
    ("proxy_grpc_cancel", 1, 0),
    ("proxy_grpc_close", 1, 0),
    ("proxy_get_status", 3, 0),
    ("proxy_set_effective_context", 1, 0),
    ("proxy_call_foreign_function", 6, 0),
    ("proxy_done", 0, 0),
    ("proxy_define_metric", 4, 0),
    ("proxy_increment_metric", 1, 1),
    ("proxy_record_metric", 1, 1),
    ("proxy_get_metric", 2, 0),
];

#[test]
fn every_sdk_import_resolves_with_its_signature() {
    let mut module = String::from("(module\n");
    for (name, i32s, i64s) in SDK_IMPORTS {
        let params = std::iter::repeat_n("i32", *i32s)
            .chain(std::iter::repeat_n("i64", *i64s))
            .collect::<Vec<_>>()
            .join(" ");
        module.push_str(&format!(
            "  (import \"env\" \"{name}\" (func (param {params}) (result i32)))\n"
        ));
    }
    module.push_str(
        r#"  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) i32.const 1024)
  (func (export "proxy_on_context_create") (param i32 i32)))"#,
    );
    let host = host();
    let plugin = Plugin::from_bytes(&host, module.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plugin.imports().len(), SDK_IMPORTS.len());
    Vm::start(&plugin, PluginConfig::new("")).unwrap();
}

#[test]
fn the_probe_is_a_plain_proxy_wasm_module() {
    let host = host();
    let plugin = probe_plugin(&host);
    let imports = plugin.imports();
    assert!(
        imports.iter().all(|i| i.starts_with("env.proxy_")),
        "{imports:?}"
    );
    assert!(
        imports.len() > 25,
        "the probe exercises most host calls: {imports:?}"
    );
    let exports = plugin.exports();
    for needed in [
        "proxy_abi_version_0_2_1",
        "_initialize",
        "malloc",
        "proxy_on_http_call_response",
    ] {
        assert!(
            exports.iter().any(|e| e == needed),
            "{needed} missing from {exports:?}"
        );
    }
}
