//! Envoy's stream idle timeout, for streams the filter left waiting: the one place a stream
//! whose callout callback trapped (or whose callout reply never came) ends in Envoy.

use super::Vm;
use crate::error::HarnessError;
use crate::header_map::HeaderMap;
use crate::state::LocalResponse;

/// The body of Envoy's idle-timeout reply.
pub const STREAM_TIMEOUT_BODY: &str = "stream timeout";

impl Vm {
    /// Envoy's stream idle timeout fires for stream `id` (`ActiveStream::onIdleTimeout`): a
    /// local reply "stream timeout" with details `stream_idle_timeout`, 504 once the client has
    /// sent the whole request and 408 before (`Utility::maybeRequestTimeoutCode`). Like any
    /// local reply it runs through the filter's response callbacks, meets a failed VM's
    /// failure policy (fail-closed: 503 `wasm_fail_stream`), or, when the response is already
    /// held in the filter, goes straight to the client; once the client has response headers
    /// the stream is reset instead. The harness keeps no idle timer: the test (or edge-dev,
    /// from `stream_idle_timeout`) says when.
    pub fn stream_idle_timeout(&mut self, id: u32) -> Result<(), HarnessError> {
        let stream = self.stream_ref(id)?;
        if stream.reset || stream.local_response.is_some() {
            return Ok(());
        }
        if stream.client.is_some() {
            self.reset_stream(id);
            return Ok(());
        }
        let status = if stream.request.end_of_stream {
            504
        } else {
            408
        };
        let response = LocalResponse {
            status,
            headers: HeaderMap::new(),
            body: STREAM_TIMEOUT_BODY.as_bytes().to_vec(),
            details: "stream_idle_timeout".to_string(),
            grpc_status: None,
        };
        self.apply_local_response(id, response)?;
        self.drain_deferred()
    }

    /// Streams with a direction the filter holds (paused headers or a held body): after a
    /// trap in a callout callback, the ones nothing will ever resume.
    pub fn paused_streams(&self) -> Vec<u32> {
        self.store
            .data()
            .streams
            .values()
            .filter(|s| s.request.is_paused() || s.response.is_paused())
            .map(|s| s.id)
            .collect()
    }
}
