//! A compiled proxy-wasm module, checked once and pre-linked so that every worker VM
//! instantiates quickly, plus the configuration Envoy would hand it.

use crate::error::HarnessError;
use crate::host::{Host, lock};
use crate::state::HostState;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use wasmtime::{InstancePre, Linker, Module};

/// A module ready to start VMs from. Load once, start as many workers as needed.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) host: Host,
    pub(crate) pre: InstancePre<HostState>,
}

impl Plugin {
    /// Loads a `.wasm` (or `.wat`) file.
    pub fn load(host: &Host, path: impl AsRef<Path>) -> Result<Self, HarnessError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| HarnessError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_bytes(host, &bytes)
    }

    /// Compiles a module from binary or text format, checks its ABI marker and resolves every
    /// import against the host functions.
    pub fn from_bytes(host: &Host, bytes: &[u8]) -> Result<Self, HarnessError> {
        let module = compile(host, bytes)?;
        let has_marker = module.exports().any(|e| {
            matches!(
                e.name(),
                "proxy_abi_version_0_2_1" | "proxy_abi_version_0_2_0"
            )
        });
        if !has_marker {
            return Err(HarnessError::MissingAbiMarker);
        }
        let mut linker = Linker::new(host.engine());
        crate::host_calls::add_to_linker(&mut linker)
            .map_err(|e| HarnessError::Link(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| HarnessError::Link(format!("{e:#}")))?;
        Ok(Self {
            host: host.clone(),
            pre,
        })
    }

    /// Where each of the module's functions was compiled to, as `(start address, length,
    /// name)` in this process, sorted by address: what a profiler that sees only addresses
    /// (callgrind) needs to name the module's own code.
    pub fn code_map(&self) -> Vec<(usize, usize, String)> {
        let module = self.pre.module();
        let text = module.text().as_ptr() as usize;
        let mut map: Vec<_> = module
            .functions()
            .map(|f| {
                let name = f
                    .name
                    .unwrap_or_else(|| format!("wasm-function[{}]", f.index.as_u32()));
                (text + f.offset, f.len, name)
            })
            .collect();
        map.sort();
        map
    }

    /// The module's imports as `module.name`, for checks and messages.
    pub fn imports(&self) -> Vec<String> {
        self.pre
            .module()
            .imports()
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect()
    }

    pub fn exports(&self) -> Vec<String> {
        self.pre
            .module()
            .exports()
            .map(|e| e.name().to_string())
            .collect()
    }
}

/// Compiles a module once per process: tests start hundreds of VMs from the same few modules,
/// and compiling dominates their cost.
fn compile(host: &Host, bytes: &[u8]) -> Result<Module, HarnessError> {
    static COMPILED: OnceLock<Mutex<HashMap<Vec<u8>, Module>>> = OnceLock::new();
    let cache = COMPILED.get_or_init(Default::default);
    if let Some(module) = lock(cache).get(bytes) {
        return Ok(module.clone());
    }
    let module =
        Module::new(host.engine(), bytes).map_err(|e| HarnessError::Compile(format!("{e:#}")))?;
    lock(cache).insert(bytes.to_vec(), module.clone());
    Ok(module)
}

/// What Envoy does with a stream once its VM has failed (a trap, say): Envoy's
/// `PluginConfig.failure_policy`, or the deprecated `fail_open` boolean (true is `FailOpen`).
/// Unset means `FailClosed` in current Envoy (`PluginConfig::PluginConfig`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Answer 503 with details `wasm_fail_stream` (Envoy's `failStream`).
    #[default]
    FailClosed,
    /// Let the stream through as if the filter were not there.
    FailOpen,
}

/// What Envoy's `PluginConfig` gives a plugin.
#[derive(Clone, Debug)]
pub struct PluginConfig {
    /// `name`, readable as the `plugin_name` property.
    pub name: String,
    /// `root_id`, readable as `plugin_root_id`.
    pub root_id: String,
    /// `vm_config.vm_id`: VMs with the same id share one shared-data store.
    pub vm_id: String,
    /// `configuration`, the bytes `proxy_on_configure` reads.
    pub configuration: Vec<u8>,
    /// `vm_config.configuration`, the bytes `proxy_on_vm_start` reads.
    pub vm_configuration: Vec<u8>,
    /// What a stream gets once the VM failed.
    pub failure_policy: FailurePolicy,
}

impl PluginConfig {
    pub fn new(configuration: impl Into<Vec<u8>>) -> Self {
        Self {
            name: "plugin".to_string(),
            root_id: String::new(),
            vm_id: String::new(),
            configuration: configuration.into(),
            vm_configuration: Vec::new(),
            failure_policy: FailurePolicy::FailClosed,
        }
    }
}
