//! One worker VM and the streams on it, driven as Envoy drives a proxy-wasm HTTP filter.
//!
//! Lifecycle: `_initialize` (then `main` if exported) or `_start`; `proxy_on_context_create`
//! for the root context; `proxy_on_vm_start`; `proxy_on_configure`. Per stream: context
//! create, request headers (body, trailers), response headers (body, trailers), then
//! `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`. Continue, close and local responses
//! the module asks for are applied after the VM call returns, as Envoy defers them.

use crate::abi::{Action, LogLevel, StreamType};
use crate::callout::CalloutReply;
use crate::error::HarnessError;
use crate::header_map::HeaderMap;
use crate::host::Host;
use crate::plugin::FailurePolicy;
use crate::state::{CallReply, Callout, Deferred, HostState, LocalResponse, Phase};
use crate::stream::{Flow, Message, Side, Stream};
use std::collections::HashSet;
use std::time::Duration;
use wasmtime::{Instance, Store, TypedFunc, WasmParams, WasmResults};

mod idle_timeout;
mod start;
mod trailers;

const ROOT_CONTEXT: u32 = 1;

/// `(context, count or size, end_of_stream) -> action`: the header and body callbacks.
type StreamCallback = TypedFunc<(i32, i32, i32), i32>;
/// `(context, trailer count) -> action`.
type TrailersCallback = TypedFunc<(i32, i32), i32>;
/// `(root, token, headers, body size, trailers)`.
type CallResponseCallback = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The module's callbacks, resolved once. Only `proxy_on_context_create` is required (a VM
/// whose plugin did not start has none at all).
#[derive(Default)]
struct Exports {
    context_create: Option<TypedFunc<(i32, i32), ()>>,
    vm_start: Option<TypedFunc<(i32, i32), i32>>,
    configure: Option<TypedFunc<(i32, i32), i32>>,
    tick: Option<TypedFunc<i32, ()>>,
    request_headers: Option<StreamCallback>,
    request_body: Option<StreamCallback>,
    request_trailers: Option<TrailersCallback>,
    response_headers: Option<StreamCallback>,
    response_body: Option<StreamCallback>,
    response_trailers: Option<TrailersCallback>,
    http_call_response: Option<CallResponseCallback>,
    done: Option<TypedFunc<i32, i32>>,
    log: Option<TypedFunc<i32, ()>>,
    delete: Option<TypedFunc<i32, ()>>,
}

fn optional<P: WasmParams, R: WasmResults>(
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
    fn resolve(store: &mut Store<HostState>, instance: &Instance) -> Result<Self, HarnessError> {
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

    // ----- streams -------------------------------------------------------------------------

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

    /// The client's request headers arrive. Returns what the filter answered; what went
    /// upstream (if anything) is on the stream.
    pub fn request_headers<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: u32,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> Result<Action, HarnessError> {
        let stream = self.stream_mut(id)?;
        if stream.request.flow != Flow::Idle {
            return Err(HarnessError::Usage(format!(
                "stream {id}: request headers were already sent"
            )));
        }
        stream.request.headers = HeaderMap::from_pairs(headers);
        self.headers_arrive(id, Side::Request, end_of_stream)
    }

    /// The upstream's response headers arrive. The request must have reached the upstream.
    pub fn response_headers<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: u32,
        headers: &[(K, V)],
        end_of_stream: bool,
    ) -> Result<Action, HarnessError> {
        let stream = self.stream_mut(id)?;
        if stream.upstream.is_none() || stream.local_response.is_some() || stream.reset {
            return Err(HarnessError::Usage(format!(
                "stream {id}: no upstream response is possible, the request never reached the upstream"
            )));
        }
        if stream.response.flow != Flow::Idle {
            return Err(HarnessError::Usage(format!(
                "stream {id}: response headers were already sent"
            )));
        }
        stream.response.headers = HeaderMap::from_pairs(headers);
        self.headers_arrive(id, Side::Response, end_of_stream)
    }

    /// A chunk of the request body arrives.
    pub fn request_body(
        &mut self,
        id: u32,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HarnessError> {
        self.body_arrives(id, Side::Request, chunk, end_of_stream)
    }

    /// A chunk of the upstream's response body arrives.
    pub fn response_body(
        &mut self,
        id: u32,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HarnessError> {
        self.body_arrives(id, Side::Response, chunk, end_of_stream)
    }

    /// Takes the body bytes that have gone on in one direction since the last call (upstream
    /// for the request, to the client for the response) and whether that direction has ended,
    /// for a proxy that streams bodies: the stream's message then keeps only its headers.
    pub fn take_forwarded_body(
        &mut self,
        id: u32,
        side: Side,
    ) -> Result<(Vec<u8>, bool), HarnessError> {
        let message = self.stream_mut(id)?.forwarded_mut(side).as_mut();
        Ok(message.map_or((Vec::new(), false), |m| {
            (std::mem::take(&mut m.body), m.end_of_stream)
        }))
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

    fn headers_arrive(
        &mut self,
        id: u32,
        dir: Side,
        end_of_stream: bool,
    ) -> Result<Action, HarnessError> {
        {
            let d = self.stream_mut(id)?.side_mut(dir);
            d.end_of_stream = end_of_stream;
            d.headers_accessible = true;
            d.flow = Flow::Paused;
        }
        if self.failed.is_some() {
            return Ok(self.fail_stream(id));
        }
        let (callback, phase, func) = match dir {
            Side::Request => (
                "proxy_on_request_headers",
                Phase::RequestHeaders,
                self.exports.request_headers.clone(),
            ),
            Side::Response => (
                "proxy_on_response_headers",
                Phase::ResponseHeaders,
                self.exports.response_headers.clone(),
            ),
        };
        let count = self.stream_ref(id)?.side(dir).headers.len() as i32;
        let action = self.stream_callback(id, callback, phase, func, count, end_of_stream)?;
        if action == Action::Continue && !self.stream_end_pending(id) {
            self.forward_headers(id, dir)?;
        }
        self.drain_deferred()?;
        Ok(action)
    }

    fn body_arrives(
        &mut self,
        id: u32,
        dir: Side,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HarnessError> {
        let d = self.stream_mut(id)?.side_mut(dir);
        if d.end_of_stream && d.flow != Flow::Stopped {
            return Err(HarnessError::Usage(format!(
                "stream {id}: body sent after the end of the {dir:?}"
            )));
        }
        match d.flow {
            Flow::Idle => {
                return Err(HarnessError::Usage(format!(
                    "stream {id}: body sent before headers"
                )));
            }
            Flow::Stopped => return Ok(Action::Pause),
            Flow::Paused => {
                // Headers are stopped (StopAllIteration): Envoy buffers the body until resumed.
                d.pending_body.extend_from_slice(chunk);
                d.end_of_stream = end_of_stream;
                return Ok(Action::Pause);
            }
            Flow::Forwarded => {
                d.buffered_body.extend_from_slice(chunk);
                d.end_of_stream = end_of_stream;
            }
        }
        if self.failed.is_some() {
            return Ok(self.fail_stream(id));
        }
        let action = self.run_body_callback(id, dir)?;
        self.drain_deferred()?;
        Ok(action)
    }

    /// Runs a header or body callback `(context, count or size, end_of_stream) -> action`. A
    /// module without that export continues; a trap fails the stream and is returned.
    fn stream_callback(
        &mut self,
        id: u32,
        callback: &str,
        phase: Phase,
        func: Option<StreamCallback>,
        count: i32,
        end_of_stream: bool,
    ) -> Result<Action, HarnessError> {
        let Some(func) = func else {
            return Ok(Action::Continue);
        };
        match self.invoke(
            callback,
            phase,
            id,
            &func,
            (id as i32, count, end_of_stream as i32),
        ) {
            Ok(raw) => Ok(Action::from_raw(raw)),
            Err(err) => {
                self.fail_stream_after_trap(id);
                Err(err)
            }
        }
    }

    /// A trap in one of the stream's own callbacks: cpp-host's `CHECK_FAIL_HTTP` fails the
    /// stream at once (`failStream`), before the actions the module deferred run, so this
    /// stream's are moot; those for other streams still run.
    fn fail_stream_after_trap(&mut self, id: u32) {
        self.store.data_mut().deferred.retain(|d| d.context() != id);
        self.fail_stream(id);
        // The VM is failed, so draining calls no module code and cannot trap.
        let _ = self.drain_deferred();
    }

    /// Gives the buffered body to the filter; on Continue it goes on, on Pause it stays.
    fn run_body_callback(&mut self, id: u32, dir: Side) -> Result<Action, HarnessError> {
        let (callback, phase, func) = match dir {
            Side::Request => (
                "proxy_on_request_body",
                Phase::RequestBody,
                self.exports.request_body.clone(),
            ),
            Side::Response => (
                "proxy_on_response_body",
                Phase::ResponseBody,
                self.exports.response_body.clone(),
            ),
        };
        let (size, eos) = {
            let d = self.stream_ref(id)?.side(dir);
            (d.buffered_body.len() as i32, d.body_ends())
        };
        let action = self.stream_callback(id, callback, phase, func, size, eos)?;
        if self.stream_end_pending(id) {
            return Ok(action);
        }
        match action {
            Action::Continue => self.flush_body(id, dir)?,
            Action::Pause => self.stream_mut(id)?.side_mut(dir).body_paused = true,
        }
        Ok(action)
    }

    /// Whether the module, during the callback that just returned, sent a local response or
    /// closed the stream. Envoy applies both before the callback's own answer, so the headers
    /// do not go on whatever it returned.
    fn stream_end_pending(&self, id: u32) -> bool {
        self.store.data().deferred.iter().any(|d| match d {
            Deferred::LocalResponse { context, .. } | Deferred::Close { context } => *context == id,
            Deferred::Continue { .. } => false,
        })
    }

    /// The headers leave the filter: upstream for a request, to the client for a response.
    /// Envoy drops its pointer to them then, so the ABI no longer reaches them.
    fn forward_headers(&mut self, id: u32, dir: Side) -> Result<(), HarnessError> {
        let stream = self.stream_mut(id)?;
        let d = stream.side_mut(dir);
        d.flow = Flow::Forwarded;
        d.headers_accessible = false;
        let message = Message {
            headers: d.headers.clone(),
            body: Vec::new(),
            trailers: None,
            end_of_stream: d.body_ends() && d.pending_body.is_empty(),
        };
        *stream.forwarded_mut(dir) = Some(message);
        Ok(())
    }

    /// The body the filter held goes on, and with it the trailers once the filter let them
    /// go (their callback continued, or the filter made them itself): they end the message.
    fn flush_body(&mut self, id: u32, dir: Side) -> Result<(), HarnessError> {
        let stream = self.stream_mut(id)?;
        let d = stream.side_mut(dir);
        d.body_paused = false;
        let body = std::mem::take(&mut d.buffered_body);
        let trailers_go = d.trailers_delivered && !d.trailers_paused;
        let trailers = match (&d.trailers, trailers_go) {
            (Some(trailers), true) => {
                d.trailers_accessible = false;
                Some(trailers.clone())
            }
            _ => None,
        };
        let eos = d.body_ends() || trailers.is_some();
        if let Some(message) = stream.forwarded_mut(dir) {
            message.body.extend_from_slice(&body);
            if trailers.is_some() {
                message.trailers = trailers;
            }
            message.end_of_stream = eos;
        }
        Ok(())
    }

    // ----- deferred actions ----------------------------------------------------------------

    /// Applies what the module asked for during the last VM call, until nothing is left
    /// (applying one may call into the VM again and defer more).
    fn drain_deferred(&mut self) -> Result<(), HarnessError> {
        loop {
            let actions = std::mem::take(&mut self.store.data_mut().deferred);
            if actions.is_empty() {
                return Ok(());
            }
            for action in actions {
                match action {
                    Deferred::Continue { context, stream } => self.resume(context, stream)?,
                    Deferred::Close { context } => self.reset_stream(context),
                    Deferred::LocalResponse { context, response } => {
                        self.apply_local_response(context, response)?
                    }
                }
            }
        }
    }

    /// `proxy_continue_stream`: resumes a paused direction exactly once. Resuming one that is
    /// not paused does nothing in Envoy; the harness records it as a violation.
    fn resume(&mut self, id: u32, kind: StreamType) -> Result<(), HarnessError> {
        let dir = if kind == StreamType::Response {
            Side::Response
        } else {
            Side::Request
        };
        let Some(stream) = self.store.data_mut().streams.get_mut(&id) else {
            return Ok(());
        };
        let d = stream.side_mut(dir);
        if d.flow == Flow::Paused {
            d.resumes += 1;
            self.forward_headers(id, dir)?;
            let d = self.stream_mut(id)?.side_mut(dir);
            let pending = std::mem::take(&mut d.pending_body);
            let trailers_wait = d.trailers.is_some() && !d.trailers_delivered;
            if pending.is_empty() && !trailers_wait {
                return Ok(());
            }
            d.buffered_body = pending;
            if self.failed.is_some() {
                // Resumed by an action deferred before the VM failed: what the filter held
                // meets the failed filter (`CHECK_FAIL_HTTP` in `onRequestBody`).
                self.fail_stream(id);
                return Ok(());
            }
            if !self.stream_ref(id)?.side(dir).buffered_body.is_empty() {
                self.run_body_callback(id, dir)?;
            }
            if trailers_wait && !self.stream_end_pending(id) {
                self.run_trailers_callback(id, dir)?;
            }
        } else if d.trailers_paused {
            d.resumes += 1;
            d.trailers_paused = false;
            self.flush_body(id, dir)?;
        } else if d.body_paused {
            d.resumes += 1;
            self.flush_body(id, dir)?;
        } else {
            let what = match dir {
                Side::Request => "request",
                Side::Response => "response",
            };
            let flow = d.flow;
            stream.violations.push(format!(
                "proxy_continue_stream({what}) while the {what} was not paused ({flow:?})"
            ));
        }
        Ok(())
    }

    fn reset_stream(&mut self, id: u32) {
        if let Some(stream) = self.store.data_mut().streams.get_mut(&id) {
            stream.reset = true;
            stream.stop();
        }
    }

    /// `proxy_send_local_response`. Sent while the request is in the filter, Envoy runs the
    /// reply through the encoder filters, this one included, so the module's response
    /// callbacks see it. Sent while the response is in the filter, it replaces the response.
    /// After the response reached the client it can only reset the stream.
    fn apply_local_response(
        &mut self,
        id: u32,
        response: LocalResponse,
    ) -> Result<(), HarnessError> {
        let Some(stream) = self.store.data_mut().streams.get_mut(&id) else {
            return Ok(());
        };
        if stream.client.is_some() || self.local_replies_in_flight.contains(&id) {
            stream.violations.push(
                "proxy_send_local_response after the response had started; Envoy resets the stream"
                    .into(),
            );
            self.reset_stream(id);
            return Ok(());
        }
        let response_started = stream.response.flow != Flow::Idle;
        if !response_started
            && self.failed.is_some()
            && self.filter_missing.is_none()
            && self.failure_policy == FailurePolicy::FailClosed
        {
            // The reply's headers meet the failed filter on their way out: cpp-host's
            // `CHECK_FAIL_HTTP` in `onResponseHeaders` fails the stream, and Envoy's
            // `sendLocalReply` sends its 503 straight to the codec.
            self.fail_stream(id);
            return Ok(());
        }
        stream.local_response = Some(response.clone());
        stream.stop();
        let headers = local_reply_headers(&response);
        let through_filter = !response_started && self.failed.is_none();
        if !through_filter {
            stream.response.flow = Flow::Forwarded;
            stream.client = Some(Message {
                headers,
                body: response.body,
                trailers: None,
                end_of_stream: true,
            });
            return Ok(());
        }
        stream.response = crate::stream::Direction::fresh();
        stream.response.headers = headers;
        self.local_replies_in_flight.insert(id);
        let eos = response.body.is_empty();
        let result = self.headers_arrive(id, Side::Response, eos).and_then(|_| {
            if eos {
                Ok(Action::Continue)
            } else {
                self.body_arrives(id, Side::Response, &response.body, true)
            }
        });
        self.local_replies_in_flight.remove(&id);
        result.map(|_| ())
    }

    /// Envoy's `failStream`: after a VM failure, fail-closed answers 503 with details
    /// `wasm_fail_stream` without running the filter; fail-open lets the stream through as is.
    fn fail_stream(&mut self, id: u32) -> Action {
        // A worker without the filter passes everything, as Envoy installed none there.
        let missing = self.filter_missing.is_some();
        let fail_open = missing || self.failure_policy == FailurePolicy::FailOpen;
        let reason = self.failed.clone().unwrap_or_default();
        let Some(stream) = self.store.data_mut().streams.get_mut(&id) else {
            return Action::Pause;
        };
        if !missing {
            stream.failure.get_or_insert(reason);
        }
        if fail_open {
            // Held directions go on without the filter; so does body that arrived on a
            // direction already forwarded (the filter no longer sees it).
            let held: Vec<Side> = [Side::Request, Side::Response]
                .into_iter()
                .filter(|dir| {
                    let d = stream.side(*dir);
                    d.is_paused() || d.flow == Flow::Forwarded
                })
                .collect();
            for dir in held {
                // The stream exists (checked above), so this cannot fail.
                let _ = self.resume_without_filter(id, dir);
            }
            Action::Continue
        } else {
            if stream.client.is_none() {
                let response = LocalResponse {
                    status: 503,
                    headers: HeaderMap::new(),
                    body: Vec::new(),
                    details: "wasm_fail_stream".to_string(),
                    grpc_status: None,
                };
                stream.client = Some(Message {
                    headers: local_reply_headers(&response),
                    body: Vec::new(),
                    trailers: None,
                    end_of_stream: true,
                });
                stream.local_response = Some(response);
            } else {
                stream.reset = true;
            }
            stream.stop();
            Action::Pause
        }
    }

    fn resume_without_filter(&mut self, id: u32, dir: Side) -> Result<(), HarnessError> {
        if self.stream_ref(id)?.side(dir).flow == Flow::Paused {
            self.forward_headers(id, dir)?;
        }
        let d = self.stream_mut(id)?.side_mut(dir);
        let pending = std::mem::take(&mut d.pending_body);
        d.buffered_body.extend_from_slice(&pending);
        // Trailers go on with the rest, as if the filter were not there.
        d.trailers_delivered = true;
        d.trailers_paused = false;
        self.flush_body(id, dir)
    }

    // ----- callouts ------------------------------------------------------------------------

    /// Callouts dispatched and not yet answered, oldest first.
    pub fn pending_callouts(&self) -> Vec<Callout> {
        self.store.data().callouts.values().cloned().collect()
    }

    /// Answers a callout; the module's `proxy_on_http_call_response` runs now. On a failed VM
    /// the reply goes nowhere (`VmFailed`) and the stream that waited for it stays paused.
    pub fn answer_callout(&mut self, token: u32, reply: CalloutReply) -> Result<(), HarnessError> {
        self.deliver(token, Some(reply.into_call_reply()))
    }

    /// Fails a callout (connection reset): delivered with no headers, body or trailers, and
    /// `proxy_get_status` answering 11 (BrokenConnection) "reset", as Envoy does.
    pub fn fail_callout(&mut self, token: u32) -> Result<(), HarnessError> {
        self.deliver(token, None)
    }

    fn deliver(&mut self, token: u32, reply: Option<CallReply>) -> Result<(), HarnessError> {
        self.store
            .data_mut()
            .callouts
            .remove(&token)
            .ok_or(HarnessError::UnknownCallout(token))?;
        if let Some(reason) = &self.failed {
            return Err(HarnessError::VmFailed(reason.clone()));
        }
        let Some(func) = self.exports.http_call_response.clone() else {
            return Ok(());
        };
        let counts = reply.as_ref().map_or((0, 0, 0), |r| {
            (
                r.headers.len() as i32,
                r.body.len() as i32,
                r.trailers.len() as i32,
            )
        });
        let state = self.store.data_mut();
        state.call_status = Some(if reply.is_some() {
            (0, Vec::new())
        } else {
            (11, b"reset".to_vec())
        });
        state.call_reply = reply;
        let params = (
            ROOT_CONTEXT as i32,
            token as i32,
            counts.0,
            counts.1,
            counts.2,
        );
        let result = self.invoke(
            "proxy_on_http_call_response",
            Phase::HttpCallResponse,
            ROOT_CONTEXT,
            &func,
            params,
        );
        self.store.data_mut().call_reply = None;
        // cpp-host's `ContextBase::onHttpCallResponse` has no `CHECK_FAIL_HTTP`: a trap here
        // fails the VM but not the stream, which stays paused (as does every other stream of
        // this VM waiting on a callout, whose replies now find the VM failed) until Envoy's
        // stream idle timeout or the client gives up; see [`Vm::stream_idle_timeout`]. What
        // the module deferred before trapping still runs (`DeferAfterCallActions`).
        let drained = self.drain_deferred();
        result.and(drained)
    }

    // ----- time ----------------------------------------------------------------------------

    /// Moves the host clock on by `by`, running on the way, each at its own time, every tick
    /// and callout timeout that falls due.
    pub fn advance(&mut self, by: Duration) -> Result<(), HarnessError> {
        let target = self.host.clock().now_nanos().saturating_add(nanos(by));
        self.run_timers_until(target)?;
        self.host.clock().advance_to(target);
        Ok(())
    }

    /// Runs every tick and callout timeout already due by the host clock (another VM may
    /// have moved it).
    pub fn run_timers(&mut self) -> Result<(), HarnessError> {
        self.run_timers_until(self.host.clock().now_nanos())
    }

    /// Runs, in time order, the events due by `until`: each tick period that passes gives one
    /// `proxy_on_tick`; a callout whose timeout passes gets Envoy's synthesized 504 reply. The
    /// clock stands at each event's time while it runs.
    fn run_timers_until(&mut self, until: u64) -> Result<(), HarnessError> {
        loop {
            let state = self.store.data();
            let next_timeout = state
                .callouts
                .values()
                .filter_map(|c| {
                    c.timeout
                        .map(|t| (c.dispatched_at.saturating_add(nanos(t)), c.token))
                })
                .min();
            let next_tick = state.next_tick_at;
            let tick_first = match (next_tick, next_timeout) {
                (Some(tick), Some((due, _))) => tick <= due,
                (Some(_), None) => true,
                _ => false,
            };
            if tick_first {
                let tick = next_tick.unwrap_or(u64::MAX);
                if tick > until {
                    return Ok(());
                }
                self.host.clock().advance_to(tick);
                let period = state.tick_period.map_or(u64::MAX, nanos);
                self.store.data_mut().next_tick_at = Some(tick.saturating_add(period));
                // A failed VM gets no more ticks (cpp-host `ContextBase::onTick`).
                if let (Some(f), None) = (self.exports.tick.clone(), &self.failed) {
                    let result = self.invoke(
                        "proxy_on_tick",
                        Phase::Root,
                        ROOT_CONTEXT,
                        &f,
                        ROOT_CONTEXT as i32,
                    );
                    let drained = self.drain_deferred();
                    result.and(drained)?;
                }
            } else if let Some((due, token)) = next_timeout.filter(|(due, _)| *due <= until) {
                self.host.clock().advance_to(due);
                match self.answer_callout(token, CalloutReply::envoy_timeout()) {
                    // The timeout's reply finds the VM failed: it goes nowhere, as in Envoy.
                    Err(HarnessError::VmFailed(_)) => {}
                    other => other?,
                }
            } else {
                return Ok(());
            }
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The headers of a local reply as Envoy builds them: `:status`, the module's headers, and a
/// `content-length` (plus `content-type: text/plain` for a body without one).
fn local_reply_headers(response: &LocalResponse) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.add(b":status", response.status.to_string().as_bytes());
    for (k, v) in response.headers.iter() {
        headers.add(k, v);
    }
    headers.replace(
        b"content-length",
        response.body.len().to_string().as_bytes(),
    );
    if !response.body.is_empty() && !headers.contains("content-type") {
        headers.add(b"content-type", b"text/plain");
    }
    headers
}
