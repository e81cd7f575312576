//! The per-VM cache of resolved sessions (docs/architecture.md, "Caching"): an LRU bounded in
//! entries and in bytes, each entry fresh for the configured TTL and never past the session's
//! own expiry. An entry keeps the revocation sequence its lookup was sent under (see
//! `revocation`), which decides whether it may still be served; the clock only decides
//! freshness, and a clock that stepped back before an entry's caching time makes it stale,
//! never fresher.
//!
//! Envoy caps a VM's memory at 1 GiB, and a module that cannot grow its memory traps, which
//! in a callout's callback hangs every waiting stream of the worker. So the cache counts the
//! memory each entry holds ([`entry_bytes`]: every heap allocation it owns, rounded up the
//! way the allocator does, plus the LRU's node and table slots) and evicts to stay within
//! `cache.max_bytes`; a session over `cache.max_session_bytes` is served but not kept. The
//! table is allocated as it grows, never for `max_entries` up front: every configuration
//! update starts a canary VM that would pay for it again.

use crate::assertion::Prepared;
use crate::config::CacheConfig;
use crate::inject::Injection;
use crate::revocation::{RevocationTag, Sequence};
use crate::token::{Presented, Verified};
use lru::LruCache;
use proto::SessionHandle;
use proto::SessionId;
use std::cell::Cell;
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
    /// Its cookie carries no `Max-Age`.
    pub browser_session: bool,
    /// Where another worker announces that this session changed.
    pub revocation: RevocationTag,
    /// The bound user, for the revocation feed's "every session of this user".
    pub user: Option<String>,
    /// The session's handle, for the feed's "every session but this one".
    pub handle: SessionHandle,
    /// The static part of its signed assertion, when assertions are on and it fits.
    pub assertion: Option<Box<Prepared>>,
    /// The "seen" report it was last noted for (`crate::seen`).
    pub seen: Cell<u32>,
}

struct Entry {
    resolved: Rc<Resolved>,
    /// What [`entry_bytes`] counted for it.
    bytes: usize,
    /// The revocation sequence when the lookup was sent.
    sequence: Sequence,
    /// The clock when it was cached, nanoseconds since the epoch.
    cached_at: i128,
    fresh_until: i128,
    /// The last token whose signature was checked for this session, if any.
    verified: Option<Verified>,
}

/// The cache's hash: ids are the base64 of 32 bytes from the companion's CSPRNG, and only a
/// verified token (or the companion's answer for one) puts an id in the table, so no client
/// can fill it with keys that collide; SipHash's keyed defence against that buys nothing here
/// and costs a fifth of a cache hit. A lookup of a key a client chose costs one probe.
#[derive(Clone, Copy, Default)]
pub struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// Eight bytes at a time, each folded in with a multiply (as FxHash does).
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*byte)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub struct SessionCache {
    entries: LruCache<SessionId, Entry, IdHash>,
    ttl_nanos: i128,
    max_entries: usize,
    max_bytes: usize,
    max_session_bytes: usize,
    /// The sum of the entries' [`entry_bytes`].
    bytes: usize,
}

/// Rounds one heap allocation of `size` bytes up to what the allocator takes for it: a
/// header word and 8-byte alignment (wasm32 dlmalloc: 4 bytes of header, 16-byte minimum
/// chunk; the native build's allocator is close enough for the unit tests). Nothing for an
/// empty allocation.
pub(crate) fn allocation(size: usize) -> usize {
    if size == 0 {
        0
    } else {
        ((size + 2 * size_of::<usize>() + 7) & !7).max(16)
    }
}

/// Evicts the least recently used entries of `entries` until one of `incoming` bytes fits
/// within `(max_entries, max_bytes)`, then counts it in `used`: one rule for both caches
/// (this one and `store::cookie_cache`), whose entries say their own size.
pub(crate) fn make_room<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(
    entries: &mut LruCache<K, V, S>,
    used: &mut usize,
    incoming: usize,
    (max_entries, max_bytes): (usize, usize),
    bytes_of: impl Fn(&V) -> usize,
) {
    while entries.len() >= max_entries || *used + incoming > max_bytes {
        match entries.pop_lru() {
            Some((_, evicted)) => *used -= bytes_of(&evicted),
            None => break,
        }
    }
    *used += incoming;
}

/// The memory one cached session holds: the `Rc` of its `Resolved` and every string and
/// vector inside, the key, the LRU's node, a remembered token, and two table slots (the hash
/// table runs at most half full just after it doubles).
pub fn entry_bytes(resolved: &Resolved) -> usize {
    let Injection { headers, omitted } = &resolved.injection;
    let strings = headers
        .iter()
        .map(|(name, value)| allocation(name.capacity()) + allocation(value.capacity()))
        .sum::<usize>()
        + omitted
            .iter()
            .map(|name| allocation(name.capacity()))
            .sum::<usize>();
    let id = allocation(resolved.id.as_str().len());
    allocation(size_of::<Resolved>() + 2 * size_of::<usize>())
        + id
        + allocation(resolved.revocation.key.capacity())
        + resolved.user.as_ref().map_or(0, |user| allocation(user.capacity()))
        + allocation(resolved.handle.as_str().len())
        + allocation(headers.capacity() * size_of::<(String, String)>())
        + allocation(omitted.capacity() * size_of::<String>())
        + strings
        // The LRU node holds the key (whose string is a second copy of the id) and the entry.
        + allocation(size_of::<SessionId>() + size_of::<Entry>() + 2 * size_of::<usize>())
        + id
        + allocation(crate::token::MAX_KEY_ID_BYTES)
        + 2 * (2 * size_of::<usize>() + 1)
        + resolved.assertion.as_ref().map_or(0, |prepared| {
            allocation(size_of::<Prepared>()) + allocation(prepared.prefix_capacity())
        })
}

impl SessionCache {
    pub fn new(config: CacheConfig) -> Self {
        Self {
            entries: LruCache::unbounded_with_hasher(IdHash),
            ttl_nanos: config.ttl.as_nanos() as i128,
            max_entries: config.max_entries.get(),
            max_bytes: config.max_bytes,
            max_session_bytes: config.max_session_bytes,
            bytes: 0,
        }
    }

    /// The memory the cache holds, as [`entry_bytes`] counts it.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A fresh entry and the revocation sequence it was looked up under, or `None` (a stale
    /// one is dropped on the way).
    pub fn get(
        &mut self,
        id: &(impl AsRef<str> + ?Sized),
        now_nanos: i128,
    ) -> Option<(Rc<Resolved>, Sequence)> {
        match self.entries.get(id.as_ref()) {
            Some(entry) if (entry.cached_at..entry.fresh_until).contains(&now_nanos) => {
                Some((entry.resolved.clone(), entry.sequence))
            }
            Some(_) => {
                self.remove(id);
                None
            }
            None => None,
        }
    }

    /// Caches a session whose lookup was sent at revocation sequence `sequence`, evicting the
    /// least recently used entries to stay within both bounds. Returns false when the session
    /// is not kept: too large for `max_session_bytes`, or already expired.
    pub fn insert(&mut self, resolved: Rc<Resolved>, now_nanos: i128, sequence: Sequence) -> bool {
        let fresh_until = now_nanos
            .saturating_add(self.ttl_nanos)
            .min(resolved.expires_at_nanos);
        let bytes = entry_bytes(&resolved);
        self.remove(resolved.id.as_str());
        if fresh_until <= now_nanos || bytes > self.max_session_bytes {
            return false;
        }
        make_room(
            &mut self.entries,
            &mut self.bytes,
            bytes,
            (self.max_entries, self.max_bytes),
            |entry| entry.bytes,
        );
        self.entries.put(
            resolved.id.clone(),
            Entry {
                resolved,
                bytes,
                sequence,
                cached_at: now_nanos,
                fresh_until,
                verified: None,
            },
        );
        true
    }

    /// Whether `presented` is the token last verified for this session (compared in constant
    /// time); such a token needs no HMAC. Does not touch the LRU order.
    pub fn knows(&self, id: &(impl AsRef<str> + ?Sized), presented: &Presented<'_>) -> bool {
        self.entries
            .peek(id.as_ref())
            .and_then(|entry| entry.verified.as_ref())
            .is_some_and(|verified| presented.is(verified))
    }

    /// Remembers the token just verified for a cached session.
    pub fn remember(&mut self, id: &(impl AsRef<str> + ?Sized), verified: Verified) {
        if let Some(entry) = self.entries.peek_mut(id.as_ref()) {
            entry.verified = Some(verified);
        }
    }

    pub fn remove(&mut self, id: &(impl AsRef<str> + ?Sized)) {
        if let Some(entry) = self.entries.pop(id.as_ref()) {
            self.bytes -= entry.bytes;
        }
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Drops every session bound to `user` but the one whose handle is `except`. Returns how
    /// many were dropped.
    pub fn remove_user(&mut self, user: &str, except: Option<&SessionHandle>) -> usize {
        let gone: Vec<SessionId> = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                entry.resolved.user.as_deref() == Some(user)
                    && except != Some(&entry.resolved.handle)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.remove(id);
        }
        gone.len()
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
            browser_session: false,
            revocation: RevocationTag::of(&id(n)),
            user: None,
            handle: id(n).handle(),
            assertion: None,
            seen: Cell::new(crate::seen::NEVER),
        })
    }

    fn cache(ttl_ms: u64, max: usize) -> SessionCache {
        SessionCache::new(CacheConfig {
            ttl: Duration::from_millis(ttl_ms),
            max_entries: NonZeroUsize::new(max).unwrap(),
            max_bytes: 64 << 20,
            max_session_bytes: 64 << 10,
        })
    }

    /// A session whose injected data header holds `data_bytes` bytes.
    fn sized(n: u8, data_bytes: usize) -> Rc<Resolved> {
        Rc::new(Resolved {
            id: id(n),
            injection: Injection {
                headers: vec![("x-session-data".into(), "d".repeat(data_bytes))],
                omitted: vec![],
            },
            expires_at_nanos: 100 * SECOND,
            ttl_seconds: 60,
            browser_session: false,
            revocation: RevocationTag::of(&id(n)),
            user: None,
            handle: id(n).handle(),
            assertion: None,
            seen: Cell::new(crate::seen::NEVER),
        })
    }

    #[test]
    fn bytes_are_bounded_and_counted_exactly() {
        let one = entry_bytes(&sized(0, 10_000));
        assert!(one > 10_000 && one < 11_000, "{one}");
        let mut c = SessionCache::new(CacheConfig {
            ttl: Duration::from_secs(60),
            max_entries: NonZeroUsize::new(1000).unwrap(),
            max_bytes: 3 * one,
            max_session_bytes: one,
        });
        for n in 0..3 {
            assert!(c.insert(sized(n, 10_000), 0, 0));
        }
        assert_eq!((c.len(), c.bytes()), (3, 3 * one), "exactly at the bound");
        assert!(c.insert(sized(3, 10_000), 0, 0));
        assert_eq!((c.len(), c.bytes()), (3, 3 * one), "one past it evicts one");
        assert!(c.get(&id(0), 0).is_none(), "the least recently used went");
        assert!(
            !c.insert(sized(9, 10_001), 0, 0),
            "over max_session_bytes: not kept"
        );
        assert!(c.get(&id(9), 0).is_none());
        assert_eq!(c.bytes(), 3 * one, "and nothing evicted for it");
        c.insert(sized(1, 10), 0, 0);
        assert_eq!(c.len(), 3, "replacing an entry counts the new size");
        assert_eq!(c.bytes(), 2 * one + entry_bytes(&sized(1, 10)));
        c.remove(&id(1));
        c.remove(&id(2));
        c.remove(&id(3));
        assert_eq!(
            (c.len(), c.bytes()),
            (0, 0),
            "removal gives every byte back"
        );
    }

    #[test]
    fn a_stale_or_expired_entry_gives_its_bytes_back() {
        let mut c = cache(1000, 10);
        c.insert(sized(1, 100), 0, 0);
        assert!(c.bytes() > 0);
        assert!(c.get(&id(1), 2 * SECOND).is_none());
        assert_eq!(c.bytes(), 0);
        assert!(!c.insert(sized(1, 100), 200 * SECOND, 0), "already expired");
        assert_eq!((c.len(), c.bytes()), (0, 0));
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
