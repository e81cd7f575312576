//! What the module asks for during a VM call and Envoy applies once the call returns:
//! `proxy_continue_stream`, `proxy_close_stream` and `proxy_send_local_response`, whose reply
//! runs through the filter's own response callbacks.

use super::Vm;
use crate::abi::{Action, StreamType};
use crate::error::HarnessError;
use crate::header_map::HeaderMap;
use crate::plugin::FailurePolicy;
use crate::state::{Deferred, LocalResponse};
use crate::stream::{Direction, Flow, Message, Side};

impl Vm {
    /// Applies what the module asked for during the last VM call, until nothing is left
    /// (applying one may call into the VM again and defer more).
    pub(super) fn drain_deferred(&mut self) -> Result<(), HarnessError> {
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

    pub(super) fn reset_stream(&mut self, id: u32) {
        if let Some(stream) = self.store.data_mut().streams.get_mut(&id) {
            stream.reset = true;
            stream.stop();
        }
    }

    /// `proxy_send_local_response`. Sent while the request is in the filter, Envoy runs the
    /// reply through the encoder filters, this one included, so the module's response
    /// callbacks see it. Sent while the response is in the filter, it replaces the response.
    /// After the response reached the client it can only reset the stream.
    pub(super) fn apply_local_response(
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
        stream.response = Direction::fresh();
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
}

/// The headers of a local reply as Envoy builds them: `:status`, the module's headers, and a
/// `content-length` (plus `content-type: text/plain` for a body without one).
pub(super) fn local_reply_headers(response: &LocalResponse) -> HeaderMap {
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
