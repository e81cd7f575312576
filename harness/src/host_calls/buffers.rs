//! Buffers: HTTP bodies, the callout response body and the configuration buffers.

use super::enter;
use crate::abi::{BufferType, Status};
use crate::memory::{CallResult, finish, give, read, write_u32};
use crate::state::{HostState, Phase};
use crate::stream::Side;
use wasmtime::{Caller, Linker};

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         max: i32,
         ret_ptr: i32,
         ret_len: i32| { finish(get_bytes(&mut c, kind, start, max, ret_ptr, ret_len)) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Caller<'_, HostState>, kind: i32, start: i32, size: i32, ptr: i32, len: i32| {
            finish(set_bytes(&mut c, kind, start, size, ptr, len))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: Caller<'_, HostState>, kind: i32, ret_size: i32, ret_flags: i32| {
            finish(get_status(&mut c, kind, ret_size, ret_flags))
        },
    )?;
    Ok(())
}

fn body_phase(kind: BufferType) -> Option<(Side, Phase)> {
    match kind {
        BufferType::RequestBody => Some((Side::Request, Phase::RequestBody)),
        BufferType::ResponseBody => Some((Side::Response, Phase::ResponseBody)),
        _ => None,
    }
}

/// Callbacks in which a body the filter holds is still reachable: Envoy's `getBuffer` reaches a
/// buffering body through `modifyDecodingBuffer`/`modifyEncodingBuffer` from the callout's
/// callback and from the same direction's trailers callback.
fn reaches_held_body(phase: Phase, side: Side) -> bool {
    matches!(
        (phase, side),
        (Phase::HttpCallResponse, _)
            | (Phase::RequestTrailers, Side::Request)
            | (Phase::ResponseTrailers, Side::Response)
    )
}

/// The buffer a read reaches now, or `NotFound` when it does not exist in this callback.
fn buffer(state: &HostState, kind: BufferType) -> Result<&[u8], Status> {
    match kind {
        BufferType::PluginConfiguration => Ok(&state.plugin_configuration),
        BufferType::VmConfiguration => Ok(&state.vm_configuration),
        BufferType::HttpCallResponseBody => match (state.phase, &state.call_reply) {
            (Phase::HttpCallResponse, Some(reply)) => Ok(&reply.body),
            _ => Err(Status::NotFound),
        },
        BufferType::RequestBody | BufferType::ResponseBody => {
            let (side, phase) = body_phase(kind).ok_or(Status::NotFound)?;
            let stream = state
                .streams
                .get(&state.effective_context)
                .ok_or(Status::NotFound)?;
            let direction = stream.side(side);
            if state.phase == phase
                || (reaches_held_body(state.phase, side) && direction.body_paused)
            {
                Ok(&direction.buffered_body)
            } else {
                Err(Status::NotFound)
            }
        }
        _ => Err(Status::NotFound),
    }
}

fn get_bytes(
    c: &mut Caller<'_, HostState>,
    kind: i32,
    start: i32,
    max: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> CallResult {
    enter(c, "proxy_get_buffer_bytes")?;
    let kind = BufferType::from_raw(kind).ok_or(Status::BadArgument)?;
    let data = buffer(c.data(), kind)?;
    let start = start as u32 as usize;
    if start > data.len() {
        return Err(Status::BadArgument.into());
    }
    let end = start.saturating_add(max as u32 as usize).min(data.len());
    let slice = data[start..end].to_vec();
    give(c, &slice, ret_ptr, ret_len)
}

/// Envoy supports exactly three edits of a body: prepend `(0, 0)`, replace all `(0, >= len)`
/// and append `(>= len, _)`; anything else is `BadArgument`.
fn set_bytes(
    c: &mut Caller<'_, HostState>,
    kind: i32,
    start: i32,
    size: i32,
    ptr: i32,
    len: i32,
) -> CallResult {
    enter(c, "proxy_set_buffer_bytes")?;
    let kind = BufferType::from_raw(kind).ok_or(Status::BadArgument)?;
    let value = read(c, ptr, len)?;
    let (side, phase) = body_phase(kind).ok_or(Status::BadArgument)?;
    let state = c.data_mut();
    let in_phase = state.phase == phase;
    let stream = state.effective_stream().ok_or(Status::NotFound)?;
    let direction = stream.side_mut(side);
    if !(in_phase || direction.body_paused) {
        return Err(Status::NotFound.into());
    }
    let body = &mut direction.buffered_body;
    let (start, size) = (start as u32 as usize, size as u32 as usize);
    if start == 0 && size == 0 {
        body.splice(0..0, value);
    } else if start == 0 && size >= body.len() {
        *body = value;
    } else if start >= body.len() {
        body.extend_from_slice(&value);
    } else {
        return Err(Status::BadArgument.into());
    }
    Ok(())
}

fn get_status(
    c: &mut Caller<'_, HostState>,
    kind: i32,
    ret_size: i32,
    ret_flags: i32,
) -> CallResult {
    enter(c, "proxy_get_buffer_status")?;
    let kind = BufferType::from_raw(kind).ok_or(Status::BadArgument)?;
    let size = buffer(c.data(), kind)?.len();
    write_u32(c, ret_size, u32::try_from(size).unwrap_or(u32::MAX))?;
    write_u32(c, ret_flags, 0)?;
    Ok(())
}
