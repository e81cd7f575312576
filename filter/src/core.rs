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
    pub fn follow_feed(&self, state: Option<&FeedState>, now_ms: i64) -> bool {
        let ttl = match (&self.config.store, self.config.cache) {
            (StoreMode::Companion, Some(cache)) => cache.ttl,
            _ => return false,
        };
        let mut follower = self.follower.get();
        let stale_after = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let follow = follower.follow(state, now_ms, stale_after);
        self.follower.set(follower);
        let (mut cache, mut suspended) = (self.cache.borrow_mut(), self.suspended.borrow_mut());
        match (follow.suspend, cache.is_some()) {
            (true, true) => *suspended = cache.take(),
            (false, false) => *cache = suspended.take(),
            _ => {}
        }
        for cache in [cache.as_mut(), suspended.as_mut()].into_iter().flatten() {
            if follow.clear || follow.suspend {
                cache.clear();
            }
            for (user, except) in &follow.users {
                cache.remove_user(user, except.as_ref());
            }
        }
        follow.suspend
    }
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
