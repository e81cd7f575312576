//! Trailers, the request's and the response's, as Envoy's `Context::decodeTrailers` and
//! `encodeTrailers` hand them to `proxy_on_request_trailers` and `proxy_on_response_trailers`.
//! They end their direction; the body before them did not end it.

use super::Vm;
use crate::abi::Action;
use crate::error::HarnessError;
use crate::header_map::HeaderMap;
use crate::state::Phase;
use crate::stream::{Flow, Side};

impl Vm {
    /// The client's request trailers arrive, ending the request. Once the request headers have
    /// gone on, the filter's `proxy_on_request_trailers` runs now; while they are paused the
    /// trailers wait with the body (Envoy buffers both under StopAllIteration) and the filter
    /// gets them after the body when it resumes.
    pub fn request_trailers<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: u32,
        trailers: &[(K, V)],
    ) -> Result<Action, HarnessError> {
        self.trailers_arrive(id, Side::Request, HeaderMap::from_pairs(trailers))
    }

    /// The upstream's response trailers arrive, ending the response; as
    /// [`Vm::request_trailers`], through `proxy_on_response_trailers`.
    pub fn response_trailers<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        id: u32,
        trailers: &[(K, V)],
    ) -> Result<Action, HarnessError> {
        self.trailers_arrive(id, Side::Response, HeaderMap::from_pairs(trailers))
    }

    /// Takes the trailers that have gone on in one direction (upstream for the request, to the
    /// client for the response), once: a streaming proxy sends them after the last body chunk.
    pub fn take_forwarded_trailers(
        &mut self,
        id: u32,
        side: Side,
    ) -> Result<Option<HeaderMap>, HarnessError> {
        let message = self.stream_mut(id)?.forwarded_mut(side).as_mut();
        Ok(message.and_then(|m| m.trailers.take()))
    }

    fn trailers_arrive(
        &mut self,
        id: u32,
        side: Side,
        trailers: HeaderMap,
    ) -> Result<Action, HarnessError> {
        let d = self.stream_mut(id)?.side_mut(side);
        match d.flow {
            Flow::Idle => {
                return Err(HarnessError::Usage(format!(
                    "stream {id}: trailers sent before headers"
                )));
            }
            Flow::Stopped => return Ok(Action::Pause),
            Flow::Paused | Flow::Forwarded => {}
        }
        if d.end_of_stream {
            return Err(HarnessError::Usage(format!(
                "stream {id}: trailers sent after the end of the {side:?}"
            )));
        }
        d.trailers = Some(trailers);
        d.end_of_stream = true;
        if d.flow == Flow::Paused {
            return Ok(Action::Pause);
        }
        if self.failed.is_some() {
            return Ok(self.fail_stream(id));
        }
        let action = self.run_trailers_callback(id, side)?;
        self.drain_deferred()?;
        Ok(action)
    }

    /// Runs `proxy_on_*_trailers(context, count)`. Continue lets the held body and the
    /// trailers go on; Pause (Envoy's StopIteration) holds them until `proxy_continue_stream`.
    pub(super) fn run_trailers_callback(
        &mut self,
        id: u32,
        side: Side,
    ) -> Result<Action, HarnessError> {
        let (callback, phase, func) = match side {
            Side::Request => (
                "proxy_on_request_trailers",
                Phase::RequestTrailers,
                self.exports.request_trailers.clone(),
            ),
            Side::Response => (
                "proxy_on_response_trailers",
                Phase::ResponseTrailers,
                self.exports.response_trailers.clone(),
            ),
        };
        let d = self.stream_mut(id)?.side_mut(side);
        d.trailers_delivered = true;
        d.trailers_accessible = true;
        let count = d.trailers.as_ref().map_or(0, HeaderMap::len) as i32;
        let Some(func) = func else {
            self.flush_body(id, side)?;
            return Ok(Action::Continue);
        };
        let action = match self.invoke(callback, phase, id, &func, (id as i32, count)) {
            Ok(raw) => Action::from_raw(raw),
            Err(err) => {
                self.fail_stream_after_trap(id);
                return Err(err);
            }
        };
        if self.stream_end_pending(id) {
            return Ok(action);
        }
        match action {
            Action::Continue => self.flush_body(id, side)?,
            Action::Pause => self.stream_mut(id)?.side_mut(side).trailers_paused = true,
        }
        Ok(action)
    }
}
