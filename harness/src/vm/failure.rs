//! Envoy's `failStream` for a VM that failed (a trap) or a worker without the filter:
//! fail-closed answers 503 `wasm_fail_stream` without running the filter, fail-open and a
//! missing filter let the stream through as it is.

use super::Vm;
use super::deferred::local_reply_headers;
use crate::abi::Action;
use crate::error::HarnessError;
use crate::header_map::HeaderMap;
use crate::plugin::FailurePolicy;
use crate::state::LocalResponse;
use crate::stream::{Flow, Message, Side};

impl Vm {
    /// A trap in one of the stream's own callbacks: cpp-host's `CHECK_FAIL_HTTP` fails the
    /// stream at once (`failStream`), before the actions the module deferred run, so this
    /// stream's are moot; those for other streams still run.
    pub(super) fn fail_stream_after_trap(&mut self, id: u32) {
        self.store.data_mut().deferred.retain(|d| d.context() != id);
        self.fail_stream(id);
        // The VM is failed, so draining calls no module code and cannot trap.
        let _ = self.drain_deferred();
    }

    /// Envoy's `failStream`: after a VM failure, fail-closed answers 503 with details
    /// `wasm_fail_stream` without running the filter; fail-open lets the stream through as is.
    pub(super) fn fail_stream(&mut self, id: u32) -> Action {
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
}
