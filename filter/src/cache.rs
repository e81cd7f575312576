//! The per-VM cache of resolved sessions (docs/architecture.md, "Caching"): bounded LRU, each
//! entry fresh for the configured TTL and never past the session's own expiry. An entry keeps
//! the revocation sequence its lookup was sent under (see `revocation`), which decides whether
//! it may still be served; the clock only decides freshness, and a clock that stepped back
//! before an entry's caching time makes it stale, never fresher.

use crate::config::CacheConfig;
use crate::inject::Injection;
use crate::revocation::{RevocationTag, Sequence};
use crate::token::{Presented, Verified};
use lru::LruCache;
use proto::SessionId;
use std::rc::Rc;

/// A session resolved through the companion, ready to inject.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    pub id: SessionId,
    pub injection: Injection,
    /// The session's expiry, nanoseconds since the epoch.
    pub expires_at_nanos: i128,
    /// The session's own lifetime, for sliding expiry.
    pub ttl_seconds: u64,
    /// Where another worker announces that this session changed.
    pub revocation: RevocationTag,
}

struct Entry {
    resolved: Rc<Resolved>,
    /// The revocation sequence when the lookup was sent.
    sequence: Sequence,
    /// The clock when it was cached, nanoseconds since the epoch.
    cached_at: i128,
    fresh_until: i128,
    /// The last token whose signature was checked for this session, if any.
    verified: Option<Verified>,
}

pub struct SessionCache {
    entries: LruCache<SessionId, Entry>,
    ttl_nanos: i128,
}

impl SessionCache {
    pub fn new(config: CacheConfig) -> Self {
        Self {
            entries: LruCache::new(config.max_entries),
            ttl_nanos: config.ttl.as_nanos() as i128,
        }
    }

    /// A fresh entry and the revocation sequence it was looked up under, or `None` (a stale
    /// one is dropped on the way).
    pub fn get(&mut self, id: &SessionId, now_nanos: i128) -> Option<(Rc<Resolved>, Sequence)> {
        match self.entries.get(id) {
            Some(entry) if (entry.cached_at..entry.fresh_until).contains(&now_nanos) => {
                Some((entry.resolved.clone(), entry.sequence))
            }
            Some(_) => {
                self.entries.pop(id);
                None
            }
            None => None,
        }
    }

    /// Caches a session whose lookup was sent at revocation sequence `sequence`.
    pub fn insert(&mut self, resolved: Rc<Resolved>, now_nanos: i128, sequence: Sequence) {
        let fresh_until = now_nanos
            .saturating_add(self.ttl_nanos)
            .min(resolved.expires_at_nanos);
        if fresh_until > now_nanos {
            self.entries.put(
                resolved.id.clone(),
                Entry {
                    resolved,
                    sequence,
                    cached_at: now_nanos,
                    fresh_until,
                    verified: None,
                },
            );
        }
    }

    /// Whether `presented` is the token last verified for this session (compared in constant
    /// time); such a token needs no HMAC. Does not touch the LRU order.
    pub fn knows(&self, id: &SessionId, presented: &Presented<'_>) -> bool {
        self.entries
            .peek(id)
            .and_then(|entry| entry.verified.as_ref())
            .is_some_and(|verified| presented.is(verified))
    }

    /// Remembers the token just verified for a cached session.
    pub fn remember(&mut self, id: &SessionId, verified: Verified) {
        if let Some(entry) = self.entries.peek_mut(id) {
            entry.verified = Some(verified);
        }
    }

    pub fn remove(&mut self, id: &SessionId) {
        self.entries.pop(id);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;
    use std::time::Duration;

    const SECOND: i128 = 1_000_000_000;

    fn id(n: u8) -> SessionId {
        SessionId::from_bytes(&[n; 32])
    }

    fn resolved(n: u8, expires_at_nanos: i128) -> Rc<Resolved> {
        Rc::new(Resolved {
            id: id(n),
            injection: Injection {
                headers: vec![],
                omitted: vec![],
            },
            expires_at_nanos,
            ttl_seconds: 60,
            revocation: RevocationTag::of(&id(n)),
        })
    }

    fn cache(ttl_ms: u64, max: usize) -> SessionCache {
        SessionCache::new(CacheConfig {
            ttl: Duration::from_millis(ttl_ms),
            max_entries: NonZeroUsize::new(max).unwrap(),
        })
    }

    #[test]
    fn entries_are_fresh_for_the_ttl_only() {
        let mut c = cache(2000, 10);
        c.insert(resolved(1, 100 * SECOND), 5, 42);
        assert_eq!(
            c.get(&id(1), 6).map(|(_, sequence)| sequence),
            Some(42),
            "reports the sequence it was looked up under"
        );
        assert!(
            c.get(&id(1), 4).is_none(),
            "a clock that stepped back before its caching time makes it stale"
        );
        c.insert(resolved(1, 100 * SECOND), 0, 0);
        assert!(c.get(&id(1), 0).is_some());
        assert!(c.get(&id(1), 2 * SECOND - 1).is_some());
        assert!(c.get(&id(1), 2 * SECOND).is_none(), "stale at the TTL");
        assert!(c.is_empty(), "a stale entry is dropped");
    }

    #[test]
    fn never_past_the_sessions_own_expiry() {
        let mut c = cache(2000, 10);
        c.insert(resolved(1, SECOND), 0, 0);
        assert!(c.get(&id(1), SECOND).is_none());
        c.insert(resolved(2, 0), 0, 0);
        assert!(c.is_empty(), "an already expired session is not cached");
    }

    #[test]
    fn bounded_with_least_recently_used_eviction() {
        let mut c = cache(2000, 2);
        c.insert(resolved(1, 100 * SECOND), 0, 0);
        c.insert(resolved(2, 100 * SECOND), 0, 0);
        assert!(c.get(&id(1), 0).is_some());
        c.insert(resolved(3, 100 * SECOND), 0, 0);
        assert_eq!(c.len(), 2);
        assert!(c.get(&id(2), 0).is_none(), "the least recently used went");
        assert!(c.get(&id(1), 0).is_some() && c.get(&id(3), 0).is_some());
        c.remove(&id(1));
        assert!(c.get(&id(1), 0).is_none());
    }
}
