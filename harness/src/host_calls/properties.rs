//! Properties (Envoy attributes) and foreign functions.
//!
//! Paths arrive as segments joined by NUL (`["request", "path"]` becomes `request\0path`).
//! Plugin properties come from the VM; stream properties from the effective stream's request
//! headers and from per-stream values the test sets (`source.address` has a default).

use super::{enter, unimplemented};
use crate::abi::Status;
use crate::memory::{CallResult, finish, give, read};
use crate::state::HostState;
use wasmtime::{Caller, Linker};

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Caller<'_, HostState>, path_ptr: i32, path_len: i32, ret_ptr: i32, ret_len: i32| {
            finish(get(&mut c, path_ptr, path_len, ret_ptr, ret_len))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |c: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32| {
            finish(unimplemented(&c, "proxy_set_property"))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |c: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            // No foreign functions are registered, which Envoy answers with NotFound.
            finish(enter(&c, "proxy_call_foreign_function").and(Err(Status::NotFound.into())))
        },
    )?;
    Ok(())
}

fn get(
    c: &mut Caller<'_, HostState>,
    path_ptr: i32,
    path_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> CallResult {
    enter(c, "proxy_get_property")?;
    let raw = read(c, path_ptr, path_len)?;
    let path: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|segment| String::from_utf8_lossy(segment).into_owned())
        .collect();
    let value = lookup(c.data(), &path).ok_or(Status::NotFound)?;
    give(c, &value, ret_ptr, ret_len)
}

/// Each segment is one identifier, as in Envoy: `request.path` in a single segment is no
/// property.
fn lookup(state: &HostState, path: &[String]) -> Option<Vec<u8>> {
    let plugin = match path {
        [name] if name == "plugin_name" => Some(&state.plugin_name),
        [name] if name == "plugin_root_id" => Some(&state.root_id),
        [name] if name == "plugin_vm_id" => Some(&state.vm_id),
        _ => None,
    };
    if let Some(value) = plugin {
        return Some(value.as_bytes().to_vec());
    }
    let stream = state.streams.get(&state.effective_context)?;
    if let Some(value) = stream.properties.get(path) {
        return Some(value.clone());
    }
    let header = match path {
        [top, field] if top == "source" && field == "address" => {
            return Some(crate::stream::DEFAULT_SOURCE_ADDRESS.as_bytes().to_vec());
        }
        [top, field] if top == "request" => match field.as_str() {
            "path" => ":path",
            "method" => ":method",
            "host" => ":authority",
            "scheme" => ":scheme",
            "id" => "x-request-id",
            "referer" => "referer",
            "useragent" => "user-agent",
            _ => return None,
        },
        _ => return None,
    };
    stream.request.headers.get_bytes(header).map(<[u8]>::to_vec)
}
