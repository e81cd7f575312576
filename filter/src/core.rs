//! What every stream of a worker shares, and the host operations the pure paths need
//! (docs/architecture.md, "Core and shell"). The request path (`request`) and the response path
//! (`response`) are methods of [`Core`], written against the [`Host`] traits: the proxy-wasm
//! shell implements them with host calls, the benchmark and the unit tests natively, so all of
//! them run exactly this code.

use crate::cache::SessionCache;
use crate::config::{Config, StoreMode};
use crate::feed::{FeedState, Follower};
use crate::metrics::Counter;
use crate::revocation::SharedStore;
use crate::seen::SeenLog;
use crate::store::cookie_cache::CookieCache;
use std::cell::{Cell, RefCell};

/// The plugin's configuration and its cache.
pub struct Core {
    pub config: Config,
    /// `None` when caching is off, or set aside while the revocation feed is stale.
    pub cache: RefCell<Option<SessionCache>>,
    /// The cache while it is set aside (docs/architecture.md, "Revocation feed").
    suspended: RefCell<Option<SessionCache>>,
    /// What this worker applied of the feed's state.
    follower: Cell<Follower>,
    /// The sessions served since the last "seen" report; `None` when reports are off.
    pub seen: RefCell<Option<SeenLog>>,
    /// The cookie store's opened cookies; `None` in companion mode or when caching is off.
    pub cookies: RefCell<Option<CookieCache>>,
}

impl Core {
    pub fn new(config: Config) -> Self {
        // The cookie store reads every session from its cookie: there is nothing to cache.
        let cache = match config.store {
            StoreMode::Companion => config.cache.map(SessionCache::new),
            StoreMode::Cookie(_) => None,
        };
        // With the feed, nothing is cached until its head has been read.
        let (cache, suspended) = match config.revocation_feed {
            Some(_) => (None, cache),
            None => (cache, None),
        };
        let seen = config.seen_reports.map(|_| SeenLog::default());
        let cookies = match &config.store {
            StoreMode::Cookie(ring) => config.cache.map(|cache| CookieCache::new(cache, ring)),
            StoreMode::Companion => None,
        };
        Self {
            cookies: RefCell::new(cookies),
            seen: RefCell::new(seen),
            config,
            cache: RefCell::new(cache),
            suspended: RefCell::new(suspended),
            follower: Cell::new(Follower::default()),
        }
    }

    /// Applies the revocation feed's state to this worker's cache: clears it on a resync,
    /// drops the sessions of users revoked as a whole, and sets the cache aside (every request
    /// asks the store) while the feed has not been read for longer than the cache TTL.
    /// Returns whether the cache is set aside.
    /// Returns what changed for the cache, so the shell logs a change once, not every tick.
    pub fn follow_feed(&self, state: Option<&FeedState>, now_ms: i64) -> Option<CacheTrust> {
        let ttl = match (&self.config.store, self.config.cache) {
            (StoreMode::Companion, Some(cache)) => cache.ttl,
            _ => return None,
        };
        let mut follower = self.follower.get();
        let stale_after = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let follow = follower.follow(state, now_ms, stale_after);
        self.follower.set(follower);
        let (mut cache, mut suspended) = (self.cache.borrow_mut(), self.suspended.borrow_mut());
        let change = match (follow.suspend, cache.is_some()) {
            (true, true) => {
                *suspended = cache.take();
                Some(CacheTrust::Suspended)
            }
            (false, false) => {
                *cache = suspended.take();
                Some(CacheTrust::Trusted)
            }
            _ => None,
        };
        for cache in [cache.as_mut(), suspended.as_mut()].into_iter().flatten() {
            if follow.clear || follow.suspend {
                cache.clear();
            }
            for (user, except) in &follow.users {
                cache.remove_user(user, except.as_ref());
            }
        }
        change
    }
}

/// A change in whether this worker trusts its session cache, as the revocation feed is read
/// or goes stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheTrust {
    /// The feed was read: sessions are cached (at start, after the first read; or again
    /// after an outage).
    Trusted,
    /// The feed has not been read for longer than the cache TTL: every request asks the store
    /// until it is.
    Suspended,
}

/// What both paths need from the proxy: shared data (the revocation table), the clock, and
/// the counters.
pub trait Host: SharedStore {
    /// The proxy's clock, nanoseconds since the epoch.
    fn now_nanos(&self) -> i128;
    fn count(&self, counter: Counter);
    /// Envoy's id of the request (`x-request-id`, random per request): one input of the
    /// cookie store's fresh ids and nonces. Empty when there is none.
    fn request_id(&self) -> Vec<u8> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use testkit::keys::{COMPANION_TOKEN, UNIT_SIGNING as SECRET};

    #[test]
    fn a_feed_change_is_reported_once_each_way() {
        let config = json!({"keys": [{"id": "k1", "secret": SECRET}],
            "companion": {"cluster": "c", "token": COMPANION_TOKEN},
            "cache": {"ttl_ms": 2000}, "revocation_feed": {"interval_ms": 1000}});
        let core = Core::new(Config::parse(config.to_string().as_bytes()).unwrap());
        let read_at = |ok_ms| FeedState {
            ok_ms,
            ..FeedState::default()
        };
        // Not read yet: nothing cached, nothing to report on every tick.
        assert_eq!(core.follow_feed(None, 1_000), None);
        assert_eq!(core.follow_feed(None, 2_000), None);
        assert!(core.cache.borrow().is_none());
        // The first read: cached from now on, reported once.
        assert_eq!(
            core.follow_feed(Some(&read_at(3_000)), 3_000),
            Some(CacheTrust::Trusted)
        );
        assert_eq!(core.follow_feed(Some(&read_at(3_000)), 4_000), None);
        assert!(core.cache.borrow().is_some());
        // Stale for longer than the TTL: set aside once, then quiet while the outage lasts.
        assert_eq!(
            core.follow_feed(Some(&read_at(3_000)), 5_001),
            Some(CacheTrust::Suspended)
        );
        assert_eq!(core.follow_feed(Some(&read_at(3_000)), 9_000), None);
        assert!(core.cache.borrow().is_none());
        // Read again: trusted again, once.
        assert_eq!(
            core.follow_feed(Some(&read_at(9_500)), 9_500),
            Some(CacheTrust::Trusted)
        );
        assert_eq!(core.follow_feed(Some(&read_at(9_500)), 9_600), None);
    }
}
