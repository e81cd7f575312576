//! Header maps: request/response headers of the effective stream and the callout response.
//!
//! Availability follows Envoy: a stream's request (response) headers are reachable from the
//! moment they arrive until they have gone on, and read-only in `proxy_on_log`; trailers from
//! their callback until they go on, and can be added from the last body callback when there
//! are none (`Context::getMap`); in `proxy_on_log` the response trailers read as they are and
//! the request trailers as empty (Envoy's access-log phase holds none). The callout's headers
//! only during `proxy_on_http_call_response`. Anything else is `BadArgument`, which Envoy
//! returns for a map it holds no pointer to.

use super::{enter, unimplemented};
use crate::abi::{MapType, Status};
use crate::header_map::{EMPTY_MAP, HeaderMap};
use crate::memory::{CallResult, finish, give, read, write_u32};
use crate::pairs;
use crate::state::{HostState, Phase};
use crate::stream::Side;
use wasmtime::{Caller, Linker};

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: Caller<'_, HostState>, map: i32, ret: i32| finish(get_size(&mut c, map, ret)),
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, HostState>, map: i32, ret_ptr: i32, ret_len: i32| {
            finish(get_pairs(&mut c, map, ret_ptr, ret_len))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Caller<'_, HostState>, map: i32, ptr: i32, len: i32| {
            finish(set_pairs(&mut c, map, ptr, len))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Caller<'_, HostState>,
         map: i32,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_len: i32| {
            finish(get_value(&mut c, map, key_ptr, key_len, ret_ptr, ret_len))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: Caller<'_, HostState>,
         map: i32,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32| {
            finish(edit(
                &mut c,
                "proxy_add_header_map_value",
                map,
                key_ptr,
                key_len,
                Some((val_ptr, val_len)),
                Edit::Add,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: Caller<'_, HostState>,
         map: i32,
         key_ptr: i32,
         key_len: i32,
         val_ptr: i32,
         val_len: i32| {
            finish(edit(
                &mut c,
                "proxy_replace_header_map_value",
                map,
                key_ptr,
                key_len,
                Some((val_ptr, val_len)),
                Edit::Replace,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, HostState>, map: i32, key_ptr: i32, key_len: i32| {
            finish(edit(
                &mut c,
                "proxy_remove_header_map_value",
                map,
                key_ptr,
                key_len,
                None,
                Edit::Remove,
            ))
        },
    )?;
    Ok(())
}

fn map_type(
    caller: &Caller<'_, HostState>,
    raw: i32,
    call: &str,
) -> Result<MapType, crate::memory::CallError> {
    let map = MapType::from_raw(raw).ok_or(Status::BadArgument)?;
    if matches!(
        map,
        MapType::GrpcInitialMetadata | MapType::GrpcTrailingMetadata
    ) {
        unimplemented(caller, call)?;
    }
    Ok(map)
}

/// The map a read reaches, or `BadArgument` when Envoy would hold no pointer to it now.
fn readable(state: &HostState, map: MapType) -> Result<&HeaderMap, Status> {
    match map {
        MapType::HttpCallResponseHeaders | MapType::HttpCallResponseTrailers => {
            let reply = match (state.phase, &state.call_reply) {
                (Phase::HttpCallResponse, Some(reply)) => reply,
                _ => return Err(Status::BadArgument),
            };
            Ok(if map == MapType::HttpCallResponseHeaders {
                &reply.headers
            } else {
                &reply.trailers
            })
        }
        MapType::RequestHeaders | MapType::ResponseHeaders => {
            let stream = state
                .streams
                .get(&state.effective_context)
                .ok_or(Status::BadArgument)?;
            let direction = stream.side(map_side(map));
            if direction.headers_accessible || state.phase == Phase::Log {
                Ok(&direction.headers)
            } else {
                Err(Status::BadArgument)
            }
        }
        MapType::RequestTrailers | MapType::ResponseTrailers => {
            let stream = state
                .streams
                .get(&state.effective_context)
                .ok_or(Status::BadArgument)?;
            let side = map_side(map);
            let direction = stream.side(side);
            if state.phase == Phase::Log {
                // Envoy's access-log phase (`Context::log`) holds the response trailers and no
                // request trailers; a map it lacks reads as empty there.
                return Ok(match (side, &direction.trailers) {
                    (Side::Response, Some(trailers)) => trailers,
                    _ => &EMPTY_MAP,
                });
            }
            match &direction.trailers {
                Some(trailers) if direction.trailers_accessible => Ok(trailers),
                _ => Err(Status::BadArgument),
            }
        }
        MapType::GrpcInitialMetadata | MapType::GrpcTrailingMetadata => Err(Status::BadArgument),
    }
}

/// The side of the stream a header or trailer map belongs to.
fn map_side(map: MapType) -> Side {
    if matches!(map, MapType::ResponseHeaders | MapType::ResponseTrailers) {
        Side::Response
    } else {
        Side::Request
    }
}

fn writable(state: &mut HostState, map: MapType) -> Result<&mut HeaderMap, Status> {
    if state.phase == Phase::Log {
        return Err(Status::BadArgument);
    }
    if matches!(map, MapType::RequestTrailers | MapType::ResponseTrailers) {
        return writable_trailers(state, map_side(map));
    }
    if !matches!(map, MapType::RequestHeaders | MapType::ResponseHeaders) {
        return Err(Status::BadArgument);
    }
    let stream = state.effective_stream().ok_or(Status::BadArgument)?;
    let direction = stream.side_mut(map_side(map));
    if direction.headers_accessible {
        Ok(&mut direction.headers)
    } else {
        Err(Status::BadArgument)
    }
}

/// A direction's trailers for editing. In the last body callback of a direction that has none,
/// the first edit makes them: Envoy's `Context::getMap` calls `addDecodedTrailers` (or
/// `addEncodedTrailers`) there, and the trailers go on after the body.
fn writable_trailers(state: &mut HostState, side: Side) -> Result<&mut HeaderMap, Status> {
    let body_phase = match side {
        Side::Request => Phase::RequestBody,
        Side::Response => Phase::ResponseBody,
    };
    let in_body_callback = state.phase == body_phase;
    let stream = state.effective_stream().ok_or(Status::BadArgument)?;
    let direction = stream.side_mut(side);
    if direction.trailers.is_none() && in_body_callback && direction.body_ends() {
        direction.trailers = Some(HeaderMap::new());
        direction.trailers_delivered = true;
        direction.trailers_accessible = true;
    }
    match (&mut direction.trailers, direction.trailers_accessible) {
        (Some(trailers), true) => Ok(trailers),
        _ => Err(Status::BadArgument),
    }
}

fn get_size(c: &mut Caller<'_, HostState>, map: i32, ret: i32) -> CallResult {
    enter(c, "proxy_get_header_map_size")?;
    let map = map_type(c, map, "proxy_get_header_map_size")?;
    let size = readable(c.data(), map)?.byte_size();
    write_u32(c, ret, u32::try_from(size).unwrap_or(u32::MAX))?;
    Ok(())
}

fn get_pairs(c: &mut Caller<'_, HostState>, map: i32, ret_ptr: i32, ret_len: i32) -> CallResult {
    enter(c, "proxy_get_header_map_pairs")?;
    let map = map_type(c, map, "proxy_get_header_map_pairs")?;
    let bytes = pairs::serialize(&readable(c.data(), map)?.iter().collect::<Vec<_>>());
    give(c, &bytes, ret_ptr, ret_len)
}

fn set_pairs(c: &mut Caller<'_, HostState>, map: i32, ptr: i32, len: i32) -> CallResult {
    enter(c, "proxy_set_header_map_pairs")?;
    let map = map_type(c, map, "proxy_set_header_map_pairs")?;
    let bytes = read(c, ptr, len)?;
    let new_pairs = pairs::deserialize_within_limits(&bytes).map_err(|_| Status::BadArgument)?;
    writable(c.data_mut(), map)?.set_pairs(&new_pairs);
    Ok(())
}

fn get_value(
    c: &mut Caller<'_, HostState>,
    map: i32,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> CallResult {
    enter(c, "proxy_get_header_map_value")?;
    let map = map_type(c, map, "proxy_get_header_map_value")?;
    let key = read(c, key_ptr, key_len)?;
    let value = readable(c.data(), map)?
        .get_bytes(&key)
        .ok_or(Status::NotFound)?
        .to_vec();
    give(c, &value, ret_ptr, ret_len)
}

enum Edit {
    Add,
    Replace,
    Remove,
}

fn edit(
    c: &mut Caller<'_, HostState>,
    call: &str,
    map: i32,
    key_ptr: i32,
    key_len: i32,
    value: Option<(i32, i32)>,
    edit: Edit,
) -> CallResult {
    enter(c, call)?;
    let map = map_type(c, map, call)?;
    let key = read(c, key_ptr, key_len)?;
    let value = match value {
        Some((ptr, len)) => read(c, ptr, len)?,
        None => Vec::new(),
    };
    let target = writable(c.data_mut(), map)?;
    match edit {
        Edit::Add => target.add(&key, &value),
        Edit::Replace => target.replace(&key, &value),
        Edit::Remove => target.remove(&key),
    }
    Ok(())
}
