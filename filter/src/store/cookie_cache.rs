//! The per-VM cache of opened cookies (docs/architecture.md, "Cookie store"): a browser sends
//! the same cookie value on every request until a write replaces it, so the value's session
//! and its rendered headers are kept, and a repeated value skips base64, AES-GCM-SIV, the
//! JSON and the rendering. Nothing else is skipped: every use checks the payload's expiry and
//! the revocation table again (`cookie_session::Opened::recheck`), exactly as for a value just
//! opened. Why this is safe: docs/security.md, "Cookie store".
//!
//! The value is a credential, so the table never branches on it: it is filed under a keyed
//! hash (SipHash-2-4 of the value's tail under a key derived from the sealing key, unknown
//! to clients), and the value kept with the entry is compared in full, in constant time.
//! Only a value that opened is inserted, so a client cannot fill the table with values of
//! its choosing.
//!
//! Bounded like the session cache (`crate::cache`): `cache.max_entries`, `cache.max_bytes`
//! (each entry's memory counted the way the allocator takes it), `cache.max_session_bytes`
//! per entry, and `cache.ttl_ms` per entry; least recently used entries go first.

use super::cookie::CookieKeyring;
use super::cookie_session::Opened;
use crate::cache::{Resolved, allocation, entry_bytes, make_room};
use crate::config::CacheConfig;
use lru::LruCache;
use serde_json::Value;
use std::hash::Hasher;
use std::rc::Rc;
use subtle::ConstantTimeEq;

/// How many bytes at the end of a value the table's keyed hash covers: the base64 of the
/// 16-byte AEAD tag is 22 of them.
const HASHED_TAIL: usize = 32;

/// A cookie value that opened: its session and checks, and its headers rendered once.
#[derive(Debug)]
pub struct OpenedCookie {
    pub opened: Opened,
    pub resolved: Rc<Resolved>,
}

struct Entry {
    /// The cookie value, compared in full on every lookup.
    value: Box<[u8]>,
    cookie: Rc<OpenedCookie>,
    bytes: usize,
    cached_at: i128,
    fresh_until: i128,
}

/// The table's keys are already keyed SipHash outputs: hashing them again buys nothing.
#[derive(Clone, Copy, Default)]
struct Prehashed;

impl std::hash::BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;

    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub struct CookieCache {
    entries: LruCache<u64, Entry, Prehashed>,
    hash_key: (u64, u64),
    ttl_nanos: i128,
    max_entries: usize,
    max_bytes: usize,
    max_session_bytes: usize,
    bytes: usize,
}

/// Whether two byte strings are equal, in time that depends only on their lengths (a
/// length is no secret: every value of one session has the same). Eight bytes at a time,
/// every difference folded in with no branch on the data; `subtle` decides the result.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a_words, mut b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = 0u64;
    for (x, y) in (&mut a_words).zip(&mut b_words) {
        let (mut wx, mut wy) = ([0u8; 8], [0u8; 8]);
        wx.copy_from_slice(x);
        wy.copy_from_slice(y);
        diff |= u64::from_le_bytes(wx) ^ u64::from_le_bytes(wy);
    }
    for (x, y) in a_words.remainder().iter().zip(b_words.remainder()) {
        diff |= u64::from(x ^ y);
    }
    bool::from(diff.ct_eq(&0))
}

/// The memory a JSON value holds on the heap, rounded the way the allocator takes it. A map
/// entry counts two slots of its node: B-tree nodes are at least about half full.
fn value_bytes(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(text) => allocation(text.capacity()),
        Value::Array(items) => {
            allocation(items.capacity() * size_of::<Value>())
                + items.iter().map(value_bytes).sum::<usize>()
        }
        Value::Object(map) => map_bytes(map),
    }
}

fn map_bytes(map: &serde_json::Map<String, Value>) -> usize {
    map.iter()
        .map(|(key, value)| {
            2 * (size_of::<String>() + size_of::<Value>())
                + allocation(key.capacity())
                + value_bytes(value)
        })
        .sum()
}

/// The memory one entry holds: the value's copy, the session, its rendered headers (as the
/// session cache counts them), the revocation tag and the LRU's node and table slots.
fn cookie_entry_bytes(value: &[u8], cookie: &OpenedCookie) -> usize {
    let session = &cookie.opened.session;
    allocation(value.len())
        + allocation(size_of::<OpenedCookie>() + 2 * size_of::<usize>())
        + allocation(session.id.as_str().len())
        + session
            .user
            .as_ref()
            .map_or(0, |user| allocation(user.capacity()))
        + map_bytes(&session.data)
        + allocation(cookie.opened.handle.as_str().len())
        + allocation(cookie.opened.tag.key.capacity())
        + entry_bytes(&cookie.resolved)
        + allocation(size_of::<u64>() + size_of::<Entry>() + 2 * size_of::<usize>())
        + 2 * (2 * size_of::<usize>() + 1)
}

impl CookieCache {
    pub fn new(config: CacheConfig, ring: &CookieKeyring) -> Self {
        let key = ring.cache_hash_key();
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&key[..8]);
        k1.copy_from_slice(&key[8..]);
        Self {
            entries: LruCache::unbounded_with_hasher(Prehashed),
            hash_key: (u64::from_le_bytes(k0), u64::from_le_bytes(k1)),
            ttl_nanos: config.ttl.as_nanos() as i128,
            max_entries: config.max_entries.get(),
            max_bytes: config.max_bytes,
            max_session_bytes: config.max_session_bytes,
            bytes: 0,
        }
    }

    /// The table's key for a value: its last [`HASHED_TAIL`] bytes under the keyed hash. A
    /// value's tail is the base64 of its AEAD tag (and a few bytes before it), which differs
    /// between any two values that opened; a collision only costs a re-open, since every
    /// lookup compares the whole value. Hashing the whole value cost about 10 instructions a
    /// byte, more than the rest of a cached read.
    fn hash(&self, value: &[u8]) -> u64 {
        let tail = &value[value.len().saturating_sub(HASHED_TAIL)..];
        // SipHash-2-4 is the keyed PRF std ships; deprecated only as a public hasher name.
        #[allow(deprecated)]
        let mut hasher = std::hash::SipHasher::new_with_keys(self.hash_key.0, self.hash_key.1);
        hasher.write(tail);
        hasher.finish()
    }

    /// The memory the cache holds, as counted.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The opened cookie of exactly this value, if fresh; the caller still checks it
    /// (`Opened::recheck`). A stale entry is dropped on the way.
    pub fn get(&mut self, value: &[u8], now_nanos: i128) -> Option<Rc<OpenedCookie>> {
        let hash = self.hash(value);
        let entry = self.entries.get(&hash)?;
        if !same(&entry.value, value) {
            return None;
        }
        if (entry.cached_at..entry.fresh_until).contains(&now_nanos) {
            return Some(entry.cookie.clone());
        }
        self.remove(value);
        None
    }

    /// Keeps a value that just opened, evicting the least recently used entries to stay
    /// within both bounds. Returns false when it is not kept (over `max_session_bytes`).
    pub fn insert(&mut self, value: &[u8], cookie: Rc<OpenedCookie>, now_nanos: i128) -> bool {
        let bytes = cookie_entry_bytes(value, &cookie);
        let hash = self.hash(value);
        if let Some(old) = self.entries.pop(&hash) {
            self.bytes -= old.bytes;
        }
        if bytes > self.max_session_bytes {
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
            hash,
            Entry {
                value: value.into(),
                cookie,
                bytes,
                cached_at: now_nanos,
                fresh_until: now_nanos.saturating_add(self.ttl_nanos),
            },
        );
        true
    }

    /// Drops the entry of exactly this value (one refused on a later use: expired or revoked).
    pub fn remove(&mut self, value: &[u8]) {
        let hash = self.hash(value);
        let matches = self
            .entries
            .peek(&hash)
            .is_some_and(|entry| same(&entry.value, value));
        if matches && let Some(entry) = self.entries.pop(&hash) {
            self.bytes -= entry.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, StoreMode};
    use crate::core::{Core, Host};
    use crate::metrics::Counter;
    use crate::request::{Header, RequestHost, RequestNext};
    use crate::revocation::{SetError, SharedStore};
    use crate::store::cookie_session::{self, seal};
    use crate::store::{StoreOp, WriteOutcome};
    use proto::{CreateSessionRequest, Session};
    use serde_json::json;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::num::NonZeroUsize;
    use std::time::Duration;

    const NOW: i128 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
    const SECOND: i128 = 1_000_000_000;

    /// One proxy: a clock that can move, shared data every request sees, the request headers.
    #[derive(Default)]
    struct Proxy {
        now: Cell<i128>,
        shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        headers: RefCell<Vec<(String, Vec<u8>)>>,
    }

    impl Host for Proxy {
        fn now_nanos(&self) -> i128 {
            NOW + self.now.get()
        }
        fn count(&self, _: Counter) {}
        fn request_id(&self) -> Vec<u8> {
            b"req".to_vec()
        }
    }

    impl SharedStore for Proxy {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.shared.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8], _: u32) -> Result<(), SetError> {
            let mut shared = self.shared.borrow_mut();
            let stamp = shared.len() as u32 + 1;
            shared.insert(key.to_string(), (value.to_vec(), stamp));
            Ok(())
        }
    }

    impl RequestHost for Proxy {
        fn read_headers(&self) -> Vec<(String, Vec<u8>)> {
            self.headers.borrow().clone()
        }
        fn replace_headers(&self, headers: &[Header<'_>]) {
            *self.headers.borrow_mut() = headers
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_vec()))
                .collect();
        }
        fn add_header(&self, name: &str, value: &[u8]) {
            self.headers
                .borrow_mut()
                .push((name.to_string(), value.to_vec()));
        }
        fn remove_header(&self, name: &str) {
            self.headers.borrow_mut().retain(|(n, _)| n != name);
        }
    }

    impl Proxy {
        /// Sends a request with this session cookie; the state the app is told.
        fn state(&self, core: &Core, value: &str) -> String {
            *self.headers.borrow_mut() = vec![
                (":path".into(), b"/".to_vec()),
                ("cookie".into(), format!("sid={value}").into_bytes()),
            ];
            let next = core.handle_request(self);
            assert!(matches!(next, RequestNext::Continue { .. }));
            let headers = self.headers.borrow();
            let state = headers.iter().find(|(n, _)| n == "x-session-state");
            String::from_utf8(state.map(|(_, v)| v.clone()).unwrap_or_default()).unwrap()
        }
    }

    fn core(cache_ttl_ms: u64) -> Core {
        let config = json!({
            "keys": [{"id": "k1", "secret": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}],
            "store": "cookie",
            "cookie_store": {"keys": [{"id": "c1",
                "secret": "gYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6A="}]},
            "cache": {"ttl_ms": cache_ttl_ms},
            "ttl_seconds": 100,
        });
        Core::new(Config::parse(config.to_string().as_bytes()).unwrap())
    }

    fn ring(core: &Core) -> &CookieKeyring {
        match &core.config.store {
            StoreMode::Cookie(ring) => ring,
            StoreMode::Companion => unreachable!(),
        }
    }

    /// A new session with `data`, and its cookie value.
    fn login(proxy: &Proxy, core: &Core, data: serde_json::Value) -> (Session, String) {
        let create = StoreOp::Create(CreateSessionRequest {
            data: data.as_object().cloned(),
            user: Some("alice".into()),
            ..CreateSessionRequest::default()
        });
        let WriteOutcome::Stored(session) =
            cookie_session::write(proxy, &core.config, &mut None, &create).0
        else {
            panic!("create")
        };
        let value = seal(proxy, ring(core), "sid", &session).unwrap();
        (*session, value)
    }

    fn cached(core: &Core) -> usize {
        core.cookies.borrow().as_ref().map_or(0, CookieCache::len)
    }

    #[test]
    fn a_cached_cookie_is_refused_once_revoked_or_expired_as_an_opened_one_is() {
        let (proxy, core) = (Proxy::default(), core(60_000));
        let (session, value) = login(&proxy, &core, json!({"cart": [1, 2]}));
        assert_eq!(proxy.state(&core, &value), "valid");
        assert_eq!(cached(&core), 1);
        assert_eq!(proxy.state(&core, &value), "valid", "served from the cache");
        assert_eq!(cached(&core), 1);

        // A logout (on any worker: the table is shared data) refuses the cached value.
        let mut current = Some(Box::new(session.clone()));
        let delete = StoreOp::Delete(session.id.clone());
        cookie_session::write(&proxy, &core.config, &mut current, &delete);
        assert_eq!(proxy.state(&core, &value), "expired");
        assert_eq!(cached(&core), 0, "a refused value leaves the cache");
        assert_eq!(proxy.state(&core, &value), "expired");

        // Past its expiry, a cached value is refused whatever the cache's own TTL.
        let (_, value) = login(&proxy, &core, json!({}));
        assert_eq!(proxy.state(&core, &value), "valid");
        assert_eq!(cached(&core), 1);
        proxy.now.set(99 * SECOND);
        assert_eq!(proxy.state(&core, &value), "valid");
        proxy.now.set(100 * SECOND);
        assert_eq!(proxy.state(&core, &value), "expired");
        assert_eq!(cached(&core), 0);
    }

    #[test]
    fn only_the_exact_value_is_served_from_the_cache() {
        let (proxy, core) = (Proxy::default(), core(60_000));
        let (_, value) = login(&proxy, &core, json!({"a": 1}));
        assert_eq!(proxy.state(&core, &value), "valid");
        for at in [0, value.len() / 2, value.len() - 1] {
            let mut altered = value.clone().into_bytes();
            altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            assert_eq!(proxy.state(&core, &altered), "invalid", "byte {at}");
        }
        let longer = format!("{value}A");
        assert_eq!(proxy.state(&core, &longer), "invalid");
        assert_eq!(proxy.state(&core, &value[..value.len() - 1]), "invalid");
        assert_eq!(cached(&core), 1);
        assert_eq!(proxy.state(&core, &value), "valid");
    }

    #[test]
    fn with_caching_off_nothing_is_kept() {
        let (proxy, core) = (Proxy::default(), core(0));
        let (_, value) = login(&proxy, &core, json!({}));
        assert_eq!(proxy.state(&core, &value), "valid");
        assert!(core.cookies.borrow().is_none());
    }

    #[test]
    fn an_entry_lives_at_most_the_cache_ttl() {
        let (proxy, core) = (Proxy::default(), core(1_000));
        let (_, value) = login(&proxy, &core, json!({}));
        let mut cache = CookieCache::new(core.config.cache.unwrap(), ring(&core));
        let opened = cookie_session::open_checked(&proxy, ring(&core), value.as_bytes(), NOW);
        let opened = opened.unwrap();
        let resolved = Rc::new(core.resolved(&opened.session));
        let cookie = Rc::new(OpenedCookie { opened, resolved });
        assert!(cache.insert(value.as_bytes(), cookie, NOW));
        assert!(cache.get(value.as_bytes(), NOW + SECOND - 1).is_some());
        assert!(cache.get(value.as_bytes(), NOW + SECOND).is_none());
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
    }

    /// Opened cookies of three sessions, each with as much data, all of one entry size.
    fn three(core: &Core, proxy: &Proxy) -> Vec<(String, Rc<OpenedCookie>)> {
        (0..3)
            .map(|n| {
                let (_, value) = login(proxy, core, json!({"n": format!("{n:04}")}));
                let opened =
                    cookie_session::open_checked(proxy, ring(core), value.as_bytes(), NOW).unwrap();
                let resolved = Rc::new(core.resolved(&opened.session));
                (value, Rc::new(OpenedCookie { opened, resolved }))
            })
            .collect()
    }

    fn bounded(core: &Core, entries: usize, bytes: usize, session_bytes: usize) -> CookieCache {
        let config = CacheConfig {
            ttl: Duration::from_secs(60),
            max_entries: NonZeroUsize::new(entries).unwrap(),
            max_bytes: bytes,
            max_session_bytes: session_bytes,
        };
        CookieCache::new(config, ring(core))
    }

    #[test]
    fn the_bounds_hold_exactly_at_the_limit_and_one_past() {
        let (proxy, core) = (Proxy::default(), core(60_000));
        let cookies = three(&core, &proxy);
        let size = cookie_entry_bytes(cookies[0].0.as_bytes(), &cookies[0].1);
        assert!(
            cookies
                .iter()
                .all(|(v, c)| cookie_entry_bytes(v.as_bytes(), c) == size)
        );
        assert!(size > cookies[0].0.len(), "the value's copy and more");

        let fill = |cache: &mut CookieCache| {
            for (value, cookie) in &cookies {
                cache.insert(value.as_bytes(), cookie.clone(), NOW);
            }
        };
        let kept = |cache: &mut CookieCache| -> Vec<bool> {
            cookies
                .iter()
                .map(|(value, _)| cache.get(value.as_bytes(), NOW).is_some())
                .collect()
        };
        // Entries: two kept, the least recently used one goes.
        let mut cache = bounded(&core, 2, 1 << 20, size);
        fill(&mut cache);
        assert_eq!(kept(&mut cache), [false, true, true]);
        assert_eq!(cache.bytes(), 2 * size);
        // Bytes: exactly two entries' worth keeps two; one byte less keeps one.
        let mut cache = bounded(&core, 10, 2 * size, size);
        fill(&mut cache);
        assert_eq!(kept(&mut cache), [false, true, true]);
        let mut cache = bounded(&core, 10, 2 * size - 1, size);
        fill(&mut cache);
        assert_eq!(kept(&mut cache), [false, false, true]);
        assert_eq!(cache.bytes(), size);
        // Per entry: exactly at max_session_bytes it is kept, one past it is not.
        let mut cache = bounded(&core, 10, 1 << 20, size - 1);
        let (value, cookie) = &cookies[0];
        assert!(!cache.insert(value.as_bytes(), cookie.clone(), NOW));
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn values_are_compared_in_full() {
        assert!(same(b"", b""));
        assert!(same(b"0123456789abcdef!", b"0123456789abcdef!"));
        assert!(!same(b"0123456789abcdef!", b"0123456789abcdef?"));
        assert!(!same(b"x123456789abcdef!", b"0123456789abcdef!"));
        assert!(!same(b"0123456789", b"012345678"));
    }
}
