//! The root context: parses the configuration once, defines the counters, owns the core, and
//! follows the companion's revocation feed on a timer (`crate::feed`).

use super::log_level;
use super::stream::{SessionStream, Unconfigured};
use crate::config::Config;
use crate::core::{CacheTrust, Core};
use crate::feed::{self, Polled};
use crate::metrics::Counter;
use crate::revocation::{SetError, SharedStore};
use crate::seen;
use crate::store::companion::{self, HttpCall};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, MetricType};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// What every stream of this plugin shares: the core (configuration and cache) and the
/// counters Envoy handed out.
pub struct Filter {
    pub core: Core,
    counters: [Option<u32>; Counter::ALL.len()],
}

impl Filter {
    pub fn count(&self, counter: Counter) {
        if let Some(id) = self.counters[counter.index()] {
            // Envoy refuses only ids it never handed out; nothing to do about that here.
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

#[derive(Default)]
pub struct Root {
    filter: Option<Rc<Filter>>,
    /// This worker's name in the feed's lease: a number drawn from shared data by CAS, or the
    /// clock if shared data refused. Two workers with one name would both poll: twice the
    /// feed's reads, never a lost entry (every state write is a CAS).
    owner: u64,
    /// The feed poll in flight, if any: one at a time.
    polling: Option<u32>,
    /// The "seen" report in flight, if any: one at a time.
    reporting: Option<u32>,
}

impl Root {
    fn now_ms(&self) -> i64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// Applies the feed's shared state to this worker's cache.
    fn follow(&self, filter: &Filter) {
        let (state, _) = feed::read(self);
        match filter.core.follow_feed(state.as_ref(), self.now_ms()) {
            Some(CacheTrust::Suspended) => log::warn!(
                "edge-session: revocation feed not read for longer than cache.ttl_ms: \
                 not caching until it is"
            ),
            Some(CacheTrust::Trusted) => {
                log::info!("edge-session: revocation feed read: caching sessions")
            }
            None => {}
        }
    }

    /// Asks the feed for what follows the shared cursor.
    fn poll(&mut self, filter: &Filter) {
        let (state, _) = feed::read(self);
        let call = HttpCall {
            method: "GET",
            path: feed::poll_path_for(state.as_ref(), feed_target(filter)),
            body: None,
        };
        self.polling = filter
            .core
            .config
            .companion
            .as_ref()
            .and_then(|companion| super::dispatch(self, companion, &call));
        if self.polling.is_none() {
            filter.count(Counter::FeedFailed);
        }
    }
}

impl Root {
    /// Sends the sessions this worker served to the companion when a report is due.
    fn report_seen(&mut self, filter: &Filter, interval: Duration) {
        if self.reporting.is_some() {
            return;
        }
        let now_ms = self.now_ms();
        let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        let ids = match filter.core.seen.borrow_mut().as_mut() {
            Some(log) if log.due(now_ms, interval_ms) => log.take(now_ms),
            _ => return,
        };
        self.reporting = filter
            .core
            .config
            .companion
            .as_ref()
            .and_then(|companion| super::dispatch(self, companion, &seen::report_call(&ids)));
        if self.reporting.is_none() {
            filter.count(Counter::SeenFailed);
        }
    }

    /// The companion answered a "seen" report. A lost report costs staleness only: the
    /// sessions still in use are noted again for the next one.
    fn seen_answered(&self, filter: &Filter, num_headers: usize, body_size: usize) {
        let (status, _) = super::call_reply(self, num_headers, body_size);
        let status = status.as_deref().and_then(companion::parse_status);
        if status != Some(200) {
            filter.count(Counter::SeenFailed);
            log::warn!("edge-session: \"seen\" report not taken (status {status:?})");
        }
    }
}

fn feed_target(filter: &Filter) -> feed::Target {
    match filter.core.config.store.is_cookie() {
        true => feed::Target::Cookies,
        false => feed::Target::CachedSessions,
    }
}

impl SharedStore for Root {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        super::shared_get(self, key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        super::shared_set(self, key, value, cas)
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(filter) = self.filter.clone() else {
            return;
        };
        if self.reporting == Some(token) {
            self.reporting = None;
            self.seen_answered(&filter, num_headers, body_size);
            return;
        }
        if self.polling != Some(token) {
            return;
        }
        self.polling = None;
        let (status, body) = super::call_reply(self, num_headers, body_size);
        let Some(status) = status.as_deref().and_then(companion::parse_status) else {
            filter.count(Counter::FeedFailed);
            log::warn!(
                "edge-session: revocation feed poll failed (no answer, or no valid :status)"
            );
            return;
        };
        let applied = feed::apply_to(self, status, &body, self.now_ms(), feed_target(&filter));
        if applied.is_ok() {
            // This worker need not wait for its next tick to see what it just applied.
            self.follow(&filter);
        }
        match applied {
            Ok(Polled::Page { more: true, .. }) => self.poll(&filter),
            Ok(Polled::Page { .. }) => {}
            Ok(Polled::Resync) => {
                filter.count(Counter::FeedResync);
                log::warn!(
                    "edge-session: revocation feed resynchronised: every worker drops its cache"
                );
            }
            Err(err) => {
                filter.count(Counter::FeedFailed);
                log::warn!("edge-session: revocation feed poll failed (status {status}): {err}");
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        if let Some(level) = log_level::get() {
            proxy_wasm::set_log_level(level);
        }
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(err) => {
                log::error!("edge-session: refusing the plugin configuration: {err}");
                return false;
            }
        };
        for accepted in &config.development_secrets {
            log::error!(
                "edge-session: DEVELOPMENT SECRET ACCEPTED (allow_development_secrets is on): \
                 {accepted}. Anyone who knows it can forge sessions: never run this in production"
            );
        }
        let mut counters = [None; Counter::ALL.len()];
        for counter in Counter::ALL {
            counters[counter.index()] =
                hostcalls::define_metric(MetricType::Counter, counter.name()).ok();
        }
        // One timer serves both, at the shorter interval.
        let feed = config.revocation_feed.map(|feed| feed.interval);
        let tick = [feed, config.seen_reports].into_iter().flatten().min();
        if let Some(tick) = tick {
            self.set_tick_period(tick);
        }
        self.owner = feed::worker_number(self).unwrap_or_else(|| {
            self.get_current_time()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| (d.as_nanos() as u64).max(1))
        });
        self.filter = Some(Rc::new(Filter {
            core: Core::new(config),
            counters,
        }));
        log::info!("edge-session: configured");
        true
    }

    /// Each tick: a due "seen" report goes out; the worker holding the lease polls the feed
    /// (one poll at a time), and every worker applies the feed's state to its own cache.
    fn on_tick(&mut self) {
        let Some(filter) = self.filter.clone() else {
            return;
        };
        if let Some(interval) = filter.core.config.seen_reports {
            self.report_seen(&filter, interval);
        }
        let Some(config) = filter.core.config.revocation_feed else {
            return;
        };
        let now_ms = self.now_ms();
        let lease_ms = i64::try_from(config.lease.as_millis()).unwrap_or(i64::MAX);
        match feed::take_lease(self, self.owner, now_ms, lease_ms) {
            Ok(true) if self.polling.is_none() => self.poll(&filter),
            Ok(_) => {}
            Err(err) => {
                filter.count(Counter::FeedFailed);
                log::warn!("edge-session: revocation feed lease: {err}");
            }
        }
        self.follow(&filter);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.filter {
            Some(filter) => Some(Box::new(SessionStream::new(filter.clone()))),
            None => Some(Box::new(Unconfigured)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
