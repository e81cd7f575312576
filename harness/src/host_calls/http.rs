//! Stream control and HTTP: callouts, `proxy_get_status`, continue/close, local responses.
//!
//! Continue, close and local responses take effect after the VM call returns, as Envoy defers
//! them (`addAfterVmCallAction`); the VM driver applies them. A continue revokes the request
//! headers at the call, though (`Context::continueStream`).

use super::{enter, unimplemented};
use crate::abi::{LogLevel, Status, StreamType};
use crate::header_map::HeaderMap;
use crate::host::ClusterHealth;
use crate::memory::{CallError, CallResult, finish, give, read, read_str, write_u32};
use crate::pairs;
use crate::state::{Callout, Deferred, HostState, LocalResponse};
use std::time::Duration;
use wasmtime::{Caller, Linker};

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Caller<'_, HostState>,
         up_ptr: i32,
         up_len: i32,
         hdr_ptr: i32,
         hdr_len: i32,
         body_ptr: i32,
         body_len: i32,
         trl_ptr: i32,
         trl_len: i32,
         timeout_ms: i32,
         ret_token: i32| {
            let args = CalloutArgs {
                upstream: (up_ptr, up_len),
                headers: (hdr_ptr, hdr_len),
                body: (body_ptr, body_len),
                trailers: (trl_ptr, trl_len),
                timeout_ms,
                ret_token,
            };
            finish(http_call(&mut c, args))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: Caller<'_, HostState>, ret_code: i32, ret_ptr: i32, ret_len: i32| {
            finish(get_status(&mut c, ret_code, ret_ptr, ret_len))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: Caller<'_, HostState>, kind: i32| {
            finish(defer_stream_op(&mut c, "proxy_continue_stream", kind, true))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: Caller<'_, HostState>, kind: i32| {
            finish(defer_stream_op(&mut c, "proxy_close_stream", kind, false))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Caller<'_, HostState>,
         status: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         hdr_ptr: i32,
         hdr_len: i32,
         grpc_status: i32| {
            let args = LocalArgs {
                status,
                details: (details_ptr, details_len),
                body: (body_ptr, body_len),
                headers: (hdr_ptr, hdr_len),
                grpc_status,
            };
            finish(send_local_response(&mut c, args))
        },
    )?;
    Ok(())
}

struct CalloutArgs {
    upstream: (i32, i32),
    headers: (i32, i32),
    body: (i32, i32),
    trailers: (i32, i32),
    timeout_ms: i32,
    ret_token: i32,
}

fn read_map(c: &Caller<'_, HostState>, (ptr, len): (i32, i32)) -> Result<HeaderMap, CallError> {
    let bytes = read(c, ptr, len)?;
    let list = pairs::deserialize_within_limits(&bytes).map_err(|_| Status::BadArgument)?;
    Ok(HeaderMap::from_pairs(&list))
}

/// Envoy's `Context::httpCall`: the cluster must exist, `:method`, `:path` and `:authority`
/// must be present, a negative timeout is refused and 0 means none; a body gets a
/// `content-length`; a cluster with no healthy host fails with `InternalFailure`. All
/// refusals are synchronous and no callback follows them.
fn http_call(c: &mut Caller<'_, HostState>, args: CalloutArgs) -> CallResult {
    enter(c, "proxy_http_call")?;
    let cluster = read_str(c, args.upstream.0, args.upstream.1)?;
    let mut headers = read_map(c, args.headers)?;
    let body = read(c, args.body.0, args.body.1)?;
    let trailers = read_map(c, args.trailers)?;
    if !c.data().host.has_cluster(&cluster) {
        c.data().host_note(
            LogLevel::Debug,
            format!("proxy_http_call: unknown cluster {cluster:?}"),
        );
        return Err(Status::BadArgument.into());
    }
    if [":method", ":path", ":authority"]
        .iter()
        .any(|h| !headers.contains(h))
    {
        c.data().host_note(
            LogLevel::Debug,
            "proxy_http_call: :method, :path and :authority are required".to_string(),
        );
        return Err(Status::BadArgument.into());
    }
    if args.timeout_ms < 0 {
        return Err(Status::BadArgument.into());
    }
    if c.data().host.cluster_health(&cluster) == Some(ClusterHealth::NoHealthyHost) {
        // Envoy's `Context::httpCall`: the async client's `send()` returned null. The token
        // is left at 0, as cpp-host's `exports::http_call` writes it.
        c.data().host_note(
            LogLevel::Debug,
            format!("proxy_http_call: cluster {cluster:?} has no healthy host"),
        );
        write_u32(c, args.ret_token, 0)?;
        return Err(Status::InternalFailure.into());
    }
    if !body.is_empty() {
        headers.replace(b"content-length", body.len().to_string().as_bytes());
    }
    let token = c.data().next_token;
    write_u32(c, args.ret_token, token)?;
    let state = c.data_mut();
    state.next_token = state.next_token.wrapping_add(1).max(1);
    let callout = Callout {
        token,
        context: state.effective_context,
        cluster,
        headers,
        body,
        trailers,
        timeout: (args.timeout_ms > 0).then(|| Duration::from_millis(args.timeout_ms as u64)),
        dispatched_at: state.host.clock().now_nanos(),
    };
    state.callouts.insert(token, callout);
    Ok(())
}

/// The status of the callout being delivered: 0 and an empty message for a reply, Envoy's
/// `BrokenConnection` (11) and `"reset"` for a failed call.
fn get_status(
    c: &mut Caller<'_, HostState>,
    ret_code: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> CallResult {
    enter(c, "proxy_get_status")?;
    let (code, message) = c.data().call_status.clone().unwrap_or((0, Vec::new()));
    write_u32(c, ret_code, code)?;
    give(c, &message, ret_ptr, ret_len)
}

fn defer_stream_op(
    c: &mut Caller<'_, HostState>,
    call: &str,
    kind: i32,
    resume: bool,
) -> CallResult {
    enter(c, call)?;
    let stream = match StreamType::from_raw(kind).ok_or(Status::BadArgument)? {
        kind @ (StreamType::Request | StreamType::Response) => kind,
        StreamType::Downstream | StreamType::Upstream => return unimplemented(c, call),
    };
    let state = c.data_mut();
    let context = state.effective_context;
    let Some(target) = state.streams.get_mut(&context) else {
        return Err(Status::NotFound.into());
    };
    if resume {
        // Envoy's `Context::continueStream` defers the continue but drops its pointers to
        // the request headers, body and trailers now, for either direction: a later
        // request-header edit in this callback is `BadArgument`. The response headers stay.
        target.request.headers_accessible = false;
        target.request.trailers_accessible = false;
    }
    state.deferred.push(if resume {
        Deferred::Continue { context, stream }
    } else {
        Deferred::Close { context }
    });
    Ok(())
}

struct LocalArgs {
    status: i32,
    details: (i32, i32),
    body: (i32, i32),
    headers: (i32, i32),
    grpc_status: i32,
}

fn send_local_response(c: &mut Caller<'_, HostState>, args: LocalArgs) -> CallResult {
    enter(c, "proxy_send_local_response")?;
    let details = read(c, args.details.0, args.details.1)?;
    let body = read(c, args.body.0, args.body.1)?;
    let headers = read_map(c, args.headers)?;
    let state = c.data_mut();
    let context = state.effective_context;
    if !state.streams.contains_key(&context) {
        return Err(Status::BadArgument.into());
    }
    // Envoy replaces whitespace in details so they fit its access log format.
    let details = String::from_utf8_lossy(&details)
        .chars()
        .map(|ch| if ch.is_whitespace() { '_' } else { ch })
        .collect();
    let response = LocalResponse {
        status: args.status as u32,
        headers,
        body,
        details,
        grpc_status: u32::try_from(args.grpc_status).ok().filter(|s| *s <= 16),
    };
    state
        .deferred
        .push(Deferred::LocalResponse { context, response });
    Ok(())
}
