//! The module's exported callbacks, typed and resolved once when the VM starts, as cpp-host
//! resolves them after instantiation; a wrong signature is an error, not a later trap.

use crate::error::HarnessError;
use crate::state::HostState;
use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};

/// `(context, count or size, end_of_stream) -> action`: the header and body callbacks.
pub(super) type StreamCallback = TypedFunc<(i32, i32, i32), i32>;
/// `(context, trailer count) -> action`.
type TrailersCallback = TypedFunc<(i32, i32), i32>;
/// `(root, token, headers, body size, trailers)`.
type CallResponseCallback = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The module's callbacks, resolved once. Only `proxy_on_context_create` is required (a VM
/// whose plugin did not start has none at all).
#[derive(Default)]
pub(super) struct Exports {
    pub(super) context_create: Option<TypedFunc<(i32, i32), ()>>,
    pub(super) vm_start: Option<TypedFunc<(i32, i32), i32>>,
    pub(super) configure: Option<TypedFunc<(i32, i32), i32>>,
    pub(super) tick: Option<TypedFunc<i32, ()>>,
    pub(super) request_headers: Option<StreamCallback>,
    pub(super) request_body: Option<StreamCallback>,
    pub(super) request_trailers: Option<TrailersCallback>,
    pub(super) response_headers: Option<StreamCallback>,
    pub(super) response_body: Option<StreamCallback>,
    pub(super) response_trailers: Option<TrailersCallback>,
    pub(super) http_call_response: Option<CallResponseCallback>,
    pub(super) done: Option<TypedFunc<i32, i32>>,
    pub(super) log: Option<TypedFunc<i32, ()>>,
    pub(super) delete: Option<TypedFunc<i32, ()>>,
}

/// The export `name` as a typed function, if the module has it; one of another signature is
/// an error.
pub(super) fn optional<P: WasmParams, R: WasmResults>(
    store: &mut Store<HostState>,
    instance: &Instance,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>, HarnessError> {
    match instance.get_func(&mut *store, name) {
        None => Ok(None),
        Some(func) => func
            .typed::<P, R>(&*store)
            .map(Some)
            .map_err(|e| HarnessError::BadExport {
                name: name.to_string(),
                message: format!("{e:#}"),
            }),
    }
}

impl Exports {
    pub(super) fn resolve(
        store: &mut Store<HostState>,
        instance: &Instance,
    ) -> Result<Self, HarnessError> {
        Ok(Self {
            context_create: Some(
                optional(store, instance, "proxy_on_context_create")?
                    .ok_or(HarnessError::MissingExport("proxy_on_context_create"))?,
            ),
            vm_start: optional(store, instance, "proxy_on_vm_start")?,
            configure: optional(store, instance, "proxy_on_configure")?,
            tick: optional(store, instance, "proxy_on_tick")?,
            request_headers: optional(store, instance, "proxy_on_request_headers")?,
            request_body: optional(store, instance, "proxy_on_request_body")?,
            request_trailers: optional(store, instance, "proxy_on_request_trailers")?,
            response_headers: optional(store, instance, "proxy_on_response_headers")?,
            response_body: optional(store, instance, "proxy_on_response_body")?,
            response_trailers: optional(store, instance, "proxy_on_response_trailers")?,
            http_call_response: optional(store, instance, "proxy_on_http_call_response")?,
            done: optional(store, instance, "proxy_on_done")?,
            log: optional(store, instance, "proxy_on_log")?,
            delete: optional(store, instance, "proxy_on_delete")?,
        })
    }
}
