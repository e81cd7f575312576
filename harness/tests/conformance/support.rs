//! Loading the probe module and reading what it reported.

use harness::{Host, LogLevel, Plugin, PluginConfig, Vm};
pub use probe_scenarios as scenario;
use std::path::PathBuf;

/// The directory `cargo xtask wasm` builds modules into (`EDGE_SESSION_WASM_DIR` overrides).
pub fn wasm_dir() -> PathBuf {
    match std::env::var_os("EDGE_SESSION_WASM_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir().join("../target/wasm/wasm32-unknown-unknown/release"),
    }
}

pub fn probe_plugin(host: &Host) -> Plugin {
    let path = wasm_dir().join("probe.wasm");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo xtask wasm` (or run `cargo xtask test`)",
        path.display()
    );
    match Plugin::load(host, &path) {
        Ok(plugin) => plugin,
        Err(err) => panic!("probe.wasm does not load: {err}"),
    }
}

/// A host with the `companion` cluster and every log line kept.
pub fn host() -> Host {
    let host = Host::new();
    host.add_cluster("companion");
    host.set_log_level(LogLevel::Trace);
    host
}

pub fn config(plugin_config: &str) -> PluginConfig {
    let mut config = PluginConfig::new(plugin_config.as_bytes().to_vec());
    config.name = "probe-plugin".into();
    config.root_id = "probe-root".into();
    config.vm_id = "probe-vm".into();
    config.vm_configuration = b"vm-conf".to_vec();
    config
}

/// A started probe VM with an empty plugin configuration.
pub fn probe() -> (Host, Vm) {
    let host = host();
    let plugin = probe_plugin(&host);
    let vm =
        Vm::start(&plugin, config("")).unwrap_or_else(|e| panic!("probe VM did not start: {e}"));
    (host, vm)
}

/// Every `probe: <what> <value>` line, as `(what, value)`.
pub fn reports(host: &Host) -> Vec<(String, String)> {
    host.logs()
        .into_iter()
        .filter_map(|line| {
            let rest = line.message.strip_prefix("probe: ")?;
            let (what, value) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((what.to_string(), value.to_string()))
        })
        .collect()
}

/// The value of the last report named `what`; panics naming it when absent.
pub fn report(host: &Host, what: &str) -> String {
    reports(host)
        .into_iter()
        .rev()
        .find(|(w, _)| w == what)
        .map(|(_, v)| v)
        .unwrap_or_else(|| {
            panic!(
                "the probe did not report {what:?}; reports: {:#?}",
                reports(host)
            )
        })
}

/// Sends a GET with the scenario header and extra headers; returns the stream id.
pub fn request(
    vm: &mut Vm,
    scenario: &str,
    extra: &[(&str, &str)],
) -> (u32, Result<harness::Action, harness::HarnessError>) {
    let id = vm
        .create_stream()
        .unwrap_or_else(|e| panic!("create_stream: {e}"));
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/probe"),
        (":authority", "app"),
        (scenario::NAME_HEADER, scenario),
    ];
    headers.extend_from_slice(extra);
    let action = vm.request_headers(id, &headers, true);
    (id, action)
}

/// Like [`request`], for scenarios that must not fail; returns the stream id.
pub fn run(vm: &mut Vm, scenario: &str, extra: &[(&str, &str)]) -> u32 {
    let (id, result) = request(vm, scenario, extra);
    if let Err(err) = result {
        panic!("scenario {scenario} failed: {err}");
    }
    id
}

/// This package's directory: where cargo says it is now (a checkout moved, or a build reused
/// from another path, keeps the compile-time value of `env!`), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}
