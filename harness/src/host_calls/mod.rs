//! The host side of every `env.proxy_*` import, one file per ABI area, all registered by
//! [`add_to_linker`].

mod buffers;
mod headers;
mod http;
mod log;
mod metrics;
mod properties;
mod shared_data;
mod unsupported;
mod wasi;

use crate::abi::{LogLevel, Status};
use crate::memory::{CallError, CallResult};
use crate::state::{HostState, Phase};
use wasmtime::{Caller, Linker};

/// Registers every host function a proxy-wasm 0.2.x module may import.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    log::add_to_linker(linker)?;
    headers::add_to_linker(linker)?;
    buffers::add_to_linker(linker)?;
    http::add_to_linker(linker)?;
    shared_data::add_to_linker(linker)?;
    properties::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    unsupported::add_to_linker(linker)?;
    wasi::add_to_linker(linker)?;
    Ok(())
}

/// Envoy lets a starting module (`_initialize`, `_start`, `main`) call only `proxy_log` and a
/// few WASI functions; any other call fails the VM, so it traps here.
pub(crate) fn enter(caller: &Caller<'_, HostState>, name: &str) -> CallResult {
    if caller.data().phase == Phase::Starting && name != "proxy_log" {
        return Err(CallError::Trap(wasmtime::Error::msg(format!(
            "{name} called while the module was starting; Envoy allows only proxy_log then"
        ))));
    }
    Ok(())
}

/// Answers a call the harness does not support with `Unimplemented`, and says so in the log.
pub(crate) fn unimplemented(caller: &Caller<'_, HostState>, name: &str) -> CallResult {
    enter(caller, name)?;
    caller.data().host_note(
        LogLevel::Warn,
        format!("{name} is not implemented by the harness"),
    );
    Err(Status::Unimplemented.into())
}
