//! Callouts (`proxy_http_call`) from the test's side: the ones waiting for a reply, and their
//! answers, which run `proxy_on_http_call_response` on the root context as in Envoy.

use super::{ROOT_CONTEXT, Vm};
use crate::callout::CalloutReply;
use crate::error::HarnessError;
use crate::state::{CallReply, Callout, Phase};

impl Vm {
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
}
