//! Headers and bodies on their way through the filter, both directions, as Envoy's filter
//! manager passes them: each callback's Continue lets them go on, Pause holds them (headers
//! with the body behind them, or the body alone) until `proxy_continue_stream`.

use super::Vm;
use super::exports::StreamCallback;
use crate::abi::Action;
use crate::error::HarnessError;
use crate::header_map::HeaderMap;
use crate::state::{Deferred, Phase};
use crate::stream::{Flow, Message, Side};

impl Vm {
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

    pub(super) fn headers_arrive(
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

    pub(super) fn body_arrives(
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

    /// Gives the buffered body to the filter; on Continue it goes on, on Pause it stays.
    pub(super) fn run_body_callback(&mut self, id: u32, dir: Side) -> Result<Action, HarnessError> {
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
    pub(super) fn stream_end_pending(&self, id: u32) -> bool {
        self.store.data().deferred.iter().any(|d| match d {
            Deferred::LocalResponse { context, .. } | Deferred::Close { context } => *context == id,
            Deferred::Continue { .. } => false,
        })
    }

    /// The headers leave the filter: upstream for a request, to the client for a response.
    /// Envoy drops its pointer to them then, so the ABI no longer reaches them.
    pub(super) fn forward_headers(&mut self, id: u32, dir: Side) -> Result<(), HarnessError> {
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
    pub(super) fn flush_body(&mut self, id: u32, dir: Side) -> Result<(), HarnessError> {
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
}
