//! One worker VM and the streams on it, driven as Envoy drives a proxy-wasm HTTP filter.
//!
//! Lifecycle: `_initialize` (then `main` if exported) or `_start`; `proxy_on_context_create`
//! for the root context; `proxy_on_vm_start`; `proxy_on_configure`. Per stream: context
//! create, request headers (body, trailers), response headers (body, trailers), then
//! `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`. Continue, close and local responses
//! the module asks for are applied after the VM call returns, as Envoy defers them.
//!
//! This file holds the VM, its calls into the module and its streams' start and end; each
//! concern of driving them has its own file: `start` (instantiate and configure), `exports`
//! (the module's callbacks), `flow` (headers and bodies both ways), `trailers`, `deferred`
//! (continue, close and local replies after a call), `failure` (Envoy's `failStream`),
//! `callouts`, `timers` (ticks and callout timeouts) and `idle_timeout`.

use crate::abi::LogLevel;
use crate::error::HarnessError;
use crate::host::Host;
use crate::plugin::FailurePolicy;
use crate::state::{HostState, Phase};
use crate::stream::Stream;
use exports::Exports;
use std::collections::HashSet;
use wasmtime::{Store, TypedFunc, WasmParams, WasmResults};

mod callouts;
mod deferred;
mod exports;
mod failure;
mod flow;
mod idle_timeout;
mod start;
mod timers;
mod trailers;

const ROOT_CONTEXT: u32 = 1;

/// A worker VM running one plugin, with its streams and callouts.
pub struct Vm {
    host: Host,
    store: Store<HostState>,
    exports: Exports,
    failure_policy: FailurePolicy,
    failed: Option<String>,
    /// Why the plugin did not start on this worker, which then runs without the filter.
    filter_missing: Option<HarnessError>,
    next_context: u32,
    /// Streams whose local response is being run through the filter's response path, so a
    /// second local response from it is not looped back again.
    local_replies_in_flight: HashSet<u32>,
}

impl Vm {
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Why the VM failed, if it did. A failed VM runs no more callbacks; its streams get
    /// Envoy's fail-open or fail-closed treatment.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    pub fn root_context_id(&self) -> u32 {
        ROOT_CONTEXT
    }

    fn note(&self, level: LogLevel, message: String) {
        self.store.data().host_note(level, message);
    }

    /// Calls into the module with the phase and context set, turning a trap into an error
    /// value and marking the VM failed. What the module deferred before trapping stays queued:
    /// cpp-host's `DeferAfterCallActions` runs those actions whatever the call did, so each
    /// caller decides (a failed stream drops its own, see [`Vm::fail_stream_after_trap`]).
    fn invoke<P: WasmParams, R: WasmResults>(
        &mut self,
        callback: &str,
        phase: Phase,
        context: u32,
        func: &TypedFunc<P, R>,
        params: P,
    ) -> Result<R, HarnessError> {
        if let Some(reason) = &self.failed {
            return Err(HarnessError::VmFailed(reason.clone()));
        }
        let state = self.store.data_mut();
        let saved = (state.phase, state.current_context, state.effective_context);
        state.phase = phase;
        state.current_context = context;
        state.effective_context = context;
        let result = func.call(&mut self.store, params);
        let state = self.store.data_mut();
        (state.phase, state.current_context, state.effective_context) = saved;
        result.map_err(|e| {
            let message = format!("{e:#}");
            self.failed = Some(format!("trapped in {callback}: {message}"));
            self.note(
                LogLevel::Critical,
                format!("wasm trapped in {callback}: {message}"),
            );
            HarnessError::Trap {
                callback: callback.to_string(),
                message,
            }
        })
    }

    /// Opens a stream (`proxy_on_context_create(stream, root)`) and returns its context id.
    pub fn create_stream(&mut self) -> Result<u32, HarnessError> {
        let id = self.next_context;
        self.next_context += 1;
        self.store.data_mut().streams.insert(id, Stream::new(id));
        let Some(create) = self.exports.context_create.clone() else {
            return Ok(id);
        };
        if self.failed.is_some() {
            return Ok(id);
        }
        if let Err(err) = self.invoke(
            "proxy_on_context_create",
            Phase::Root,
            id,
            &create,
            (id as i32, ROOT_CONTEXT as i32),
        ) {
            self.fail_stream_after_trap(id);
            return Err(err);
        }
        Ok(id)
    }

    pub fn stream(&self, id: u32) -> Option<&Stream> {
        self.store.data().streams.get(&id)
    }

    /// Sets a property the filter can read on this stream, by dotted path (`source.address`).
    pub fn set_stream_property(
        &mut self,
        id: u32,
        path: &str,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), HarnessError> {
        let segments = path.split('.').map(str::to_string).collect();
        self.stream_mut(id)?
            .properties
            .insert(segments, value.into());
        Ok(())
    }

    fn stream_mut(&mut self, id: u32) -> Result<&mut Stream, HarnessError> {
        self.store
            .data_mut()
            .streams
            .get_mut(&id)
            .ok_or(HarnessError::UnknownStream(id))
    }

    fn stream_ref(&self, id: u32) -> Result<&Stream, HarnessError> {
        self.store
            .data()
            .streams
            .get(&id)
            .ok_or(HarnessError::UnknownStream(id))
    }

    /// Ends the stream: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`. Returns the
    /// stream's final state; its callouts still in flight stay pending, as in Envoy, where
    /// they belong to the root context.
    pub fn finish_stream(&mut self, id: u32) -> Result<Stream, HarnessError> {
        self.stream_ref(id)?;
        let mut outcome = Ok(());
        if self.failed.is_none() {
            outcome = self.end_callbacks(id);
        }
        let mut stream = self
            .store
            .data_mut()
            .streams
            .remove(&id)
            .ok_or(HarnessError::UnknownStream(id))?;
        stream.done = true;
        self.local_replies_in_flight.remove(&id);
        outcome.map(|()| stream)
    }

    /// Envoy's `ConnectionManagerImpl::doDeferredStreamDestroy`: the access log first
    /// (`proxy_on_log`, through the filter's `Context::log`), then `destroyFilters`
    /// (`Context::onDestroy`: `proxy_on_done`, then `proxy_on_delete`).
    fn end_callbacks(&mut self, id: u32) -> Result<(), HarnessError> {
        let ctx = id as i32;
        if let Some(f) = self.exports.log.clone() {
            self.invoke("proxy_on_log", Phase::Log, id, &f, ctx)?;
        }
        if let Some(f) = self.exports.done.clone() {
            self.invoke("proxy_on_done", Phase::StreamEnd, id, &f, ctx)?;
        }
        if let Some(f) = self.exports.delete.clone() {
            self.invoke("proxy_on_delete", Phase::StreamEnd, id, &f, ctx)?;
        }
        Ok(())
    }
}
