//! What every stream of a worker shares, and the host operations the pure paths need
//! (docs/architecture.md, "Core and shell"). The request path (`request`) and the response path
//! (`response`) are methods of [`Core`], written against the [`Host`] traits: the proxy-wasm
//! shell implements them with host calls, the benchmark and the unit tests natively, so all of
//! them run exactly this code.

use crate::cache::SessionCache;
use crate::config::Config;
use crate::metrics::Counter;
use crate::revocation::SharedStore;
use std::cell::RefCell;

/// The plugin's configuration and its cache.
pub struct Core {
    pub config: Config,
    pub cache: RefCell<Option<SessionCache>>,
}

impl Core {
    pub fn new(config: Config) -> Self {
        let cache = config.cache.map(SessionCache::new);
        Self {
            config,
            cache: RefCell::new(cache),
        }
    }
}

/// What both paths need from the proxy: shared data (the revocation table), the clock, and
/// the counters.
pub trait Host: SharedStore {
    /// The proxy's clock, nanoseconds since the epoch.
    fn now_nanos(&self) -> i128;
    fn count(&self, counter: Counter);
}
