//! Time, which only the test (or edge-dev, from the wall clock) moves: `proxy_on_tick` once
//! per elapsed period and callout timeouts, each run with the clock at its own time.

use super::{ROOT_CONTEXT, Vm};
use crate::callout::CalloutReply;
use crate::error::HarnessError;
use crate::state::Phase;
use std::time::Duration;

impl Vm {
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
