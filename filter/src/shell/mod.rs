//! The proxy-wasm shell: the root context (`root`), one stream (`stream`) and Envoy's log
//! level (`log_level`). Only these call the host.

mod log_level;
pub mod root;
mod stream;

use crate::config::Companion;
use crate::revocation::SetError;
use crate::store::companion::HttpCall;
use proxy_wasm::traits::Context;
use proxy_wasm::types::Status;

/// One HTTP call to the companion cluster, from a stream or the root context; `None` when
/// Envoy refused to send it (no such cluster, no healthy host).
fn dispatch(context: &impl Context, companion: &Companion, call: &HttpCall) -> Option<u32> {
    let mut headers = vec![
        (":method", call.method),
        (":path", call.path.as_str()),
        (":authority", companion.authority.as_str()),
        ("authorization", companion.authorization.as_str()),
        ("accept", "application/json"),
    ];
    if call.body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let sent = context.dispatch_http_call(
        &companion.cluster,
        headers,
        call.body.as_deref(),
        vec![],
        companion.timeout,
    );
    match sent {
        Ok(token) => Some(token),
        Err(status) => {
            log::error!(
                "edge-session: cannot call cluster {:?}: {status:?}",
                companion.cluster
            );
            None
        }
    }
}

/// A callout's reply as bytes: its `:status`, `None` for a failed call, and its body. With no
/// headers the call failed and Envoy holds no reply maps: reading them would trap. Bytes, not
/// the SDK's strings, which panic on a value that is not UTF-8.
fn call_reply(
    context: &impl Context,
    num_headers: usize,
    body_size: usize,
) -> (Option<Vec<u8>>, Vec<u8>) {
    if num_headers == 0 {
        return (None, Vec::new());
    }
    (
        context.get_http_call_response_header_bytes(":status"),
        context
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default(),
    )
}

/// Shared data with its CAS stamp, as the revocation table and the feed read it.
fn shared_get(context: &impl Context, key: &str) -> Option<(Vec<u8>, u32)> {
    match context.get_shared_data(key) {
        (Some(value), cas) => Some((value, cas.unwrap_or(0))),
        (None, _) => None,
    }
}

fn shared_set(context: &impl Context, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
    let cas = (cas != 0).then_some(cas);
    context
        .set_shared_data(key, Some(value), cas)
        .map_err(|status| match status {
            Status::CasMismatch => SetError::CasMismatch,
            _ => SetError::Refused,
        })
}
