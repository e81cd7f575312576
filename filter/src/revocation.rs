//! Cross-worker revocation (docs/architecture.md, "Revocation"). Each Envoy worker caches
//! sessions in its own VM; a write or a logout on one worker must stop every other worker
//! serving its cached copy, at once.
//!
//! Events are ordered by a sequence number, never by the clock (a wall clock can step back):
//! one shared-data key holds the proxy's revocation sequence, raised by compare-and-swap for
//! every announcement. A worker reads the sequence before it asks the companion for a session
//! and caches the answer under that number. An announcement raises the sequence, then records
//! `(tag, sequence)` in the session's bucket, one of [`BUCKETS`] shared-data keys (so the
//! table is bounded whatever the traffic). A cached copy is trusted only while its bucket holds
//! no entry for its session with a higher number: a lookup sent before a logout and answered
//! after it is therefore never trusted, whenever its reply arrives.
//!
//! Capacity and retention: a bucket keeps the newest [`ENTRIES_PER_BUCKET`] entries, so the
//! proxy holds at least that many per bucket (32 768 in all with an even spread). An entry is
//! kept until newer ones push it out; nothing expires by time. Pushing an entry out raises the
//! bucket's floor to its number, and a copy cached below a bucket's floor is not trusted: it
//! is fetched again. So an overflowing table costs extra lookups for the sessions of that
//! bucket, never a revoked session served. A bucket that cannot be read as this version wrote
//! it trusts nothing.
//!
//! Envoy's shared data creates a missing key unconditionally, whatever CAS value is given, so
//! two workers creating one bucket at once can overwrite each other. A writer reads its bucket
//! back after writing and tries again until its entry is there; the entry is missing for the
//! moment between, and only on a bucket's first write in the proxy's life.

use proto::{SessionHandle, SessionId};
use sha2::{Digest, Sha256};

/// Number of buckets, so of shared-data keys for revocations (plus the sequence).
pub const BUCKETS: u32 = 4096;
/// Entries a bucket keeps before the oldest is pushed out (raising the bucket's floor).
pub const ENTRIES_PER_BUCKET: usize = 8;
/// The shared-data key of the proxy's revocation sequence.
pub const SEQUENCE_KEY: &str = "edge-session/revocations/sequence";
const BUCKET_PREFIX: &str = "edge-session/revocations/";
/// Writes tried before an announcement gives up: each failure means another writer made
/// progress, so this many in a row means something else is wrong.
const MAX_ATTEMPTS: usize = 64;
/// First byte of a bucket's value: the layout below.
const BUCKET_VERSION: u8 = 1;
const TAG_BYTES: usize = 8;
const ENTRY_BYTES: usize = TAG_BYTES + 8;

/// A revocation sequence number. 0 is "before any announcement".
pub type Sequence = u64;

/// Shared data as the revocation table needs it: values with their CAS stamps.
pub trait SharedStore {
    /// The value and its CAS stamp, or `None` when the key does not exist.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the key's stamp is still `cas` (0: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError>;
}

/// Why a shared-data write did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetError {
    /// Someone wrote the key since it was read: read again and retry.
    CasMismatch,
    /// The host refused the write.
    Refused,
}

/// Why an announcement did not reach the other workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnounceError {
    /// The host refused a shared-data write.
    Refused,
    /// Other writers won every attempt.
    Contended,
}

impl std::fmt::Display for AnnounceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Refused => "the host refused a shared-data write",
            Self::Contended => "shared data stayed contended",
        })
    }
}

/// Where and how a session's revocations are recorded; computed once per resolved session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationTag {
    pub key: String,
    tag: [u8; TAG_BYTES],
}

impl RevocationTag {
    /// A session's tag comes from its handle, so a revocation read from the companion's feed
    /// (which names sessions by handle, never by id) lands where this proxy's own
    /// announcements for the same session do.
    pub fn of(id: &SessionId) -> Self {
        Self::of_handle(&id.handle())
    }

    pub fn of_handle(handle: &SessionHandle) -> Self {
        let digest = Sha256::digest(handle.as_str().as_bytes());
        let bucket = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) % BUCKETS;
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&digest[8..8 + TAG_BYTES]);
        Self {
            key: format!("{BUCKET_PREFIX}{bucket}"),
            tag,
        }
    }

    /// Whether a copy of this session cached at `cached_at` may still be served, given its
    /// bucket's value (`None`: no bucket yet, nothing announced there).
    pub fn trusts(&self, bucket: Option<&[u8]>, cached_at: Sequence) -> bool {
        match bucket {
            None => true,
            Some(value) => Bucket::parse(value).is_some_and(|b| b.trusts(&self.tag, cached_at)),
        }
    }
}

/// The proxy's current revocation sequence, to cache a lookup under. Read before the lookup
/// is sent. A value this version cannot read counts as "after everything": nothing cached
/// under it is trusted until the next announcement rewrites it.
pub fn current(store: &impl SharedStore) -> Sequence {
    match store.get(SEQUENCE_KEY) {
        None => 0,
        Some((value, _)) => parse_sequence(&value).unwrap_or(0),
    }
}

/// Records that the session behind `tag` changed: every copy cached before now stops being
/// trusted on every worker of this proxy. Returns the announcement's number.
pub fn announce(store: &impl SharedStore, tag: &RevocationTag) -> Result<Sequence, AnnounceError> {
    let sequence = next_sequence(store)?;
    for _ in 0..MAX_ATTEMPTS {
        let (bucket, cas) = match store.get(&tag.key) {
            Some((value, cas)) => (Bucket::parse(&value), cas),
            None => (Some(Bucket::default()), 0),
        };
        // A bucket this version cannot read is replaced by one whose floor distrusts every
        // copy cached before this announcement: nothing it may have said is lost.
        let mut bucket = bucket.unwrap_or(Bucket {
            floor: sequence,
            entries: Vec::new(),
        });
        bucket.record(tag.tag, sequence);
        match store.set(&tag.key, &bucket.encode(), cas) {
            Ok(()) if cas != 0 => return Ok(sequence),
            // Created: read back, since a concurrent creator may have overwritten it.
            Ok(()) => {
                let landed = store
                    .get(&tag.key)
                    .and_then(|(value, _)| Bucket::parse(&value))
                    .is_some_and(|b| !b.trusts(&tag.tag, sequence - 1));
                if landed {
                    return Ok(sequence);
                }
            }
            Err(SetError::CasMismatch) => {}
            Err(SetError::Refused) => return Err(AnnounceError::Refused),
        }
    }
    Err(AnnounceError::Contended)
}

/// Raises the shared sequence by one and returns the new value.
fn next_sequence(store: &impl SharedStore) -> Result<Sequence, AnnounceError> {
    for _ in 0..MAX_ATTEMPTS {
        let (current, cas) = match store.get(SEQUENCE_KEY) {
            Some((value, cas)) => (parse_sequence(&value).unwrap_or(0), cas),
            None => (0, 0),
        };
        let next = current.saturating_add(1);
        match store.set(SEQUENCE_KEY, &next.to_le_bytes(), cas) {
            Ok(()) => return Ok(next),
            Err(SetError::CasMismatch) => {}
            Err(SetError::Refused) => return Err(AnnounceError::Refused),
        }
    }
    Err(AnnounceError::Contended)
}

fn parse_sequence(value: &[u8]) -> Option<Sequence> {
    Some(Sequence::from_le_bytes(value.try_into().ok()?))
}

/// One bucket: a floor and the newest entries, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Bucket {
    /// Copies cached below this number are not trusted (entries were pushed out).
    floor: Sequence,
    entries: Vec<([u8; TAG_BYTES], Sequence)>,
}

impl Bucket {
    /// `version, floor (u64 LE), then (tag, sequence u64 LE) per entry`.
    fn parse(value: &[u8]) -> Option<Self> {
        let (&version, rest) = value.split_first()?;
        if version != BUCKET_VERSION || rest.len() < 8 || (rest.len() - 8) % ENTRY_BYTES != 0 {
            return None;
        }
        let (floor, rest) = rest.split_at(8);
        let entries = rest
            .chunks_exact(ENTRY_BYTES)
            .map(|entry| {
                let (tag, sequence) = entry.split_at(TAG_BYTES);
                Some((tag.try_into().ok()?, parse_sequence(sequence)?))
            })
            .collect::<Option<Vec<_>>>()?;
        if entries.len() > ENTRIES_PER_BUCKET {
            return None;
        }
        Some(Self {
            floor: parse_sequence(floor)?,
            entries,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.entries.len() * ENTRY_BYTES);
        out.push(BUCKET_VERSION);
        out.extend_from_slice(&self.floor.to_le_bytes());
        for (tag, sequence) in &self.entries {
            out.extend_from_slice(tag);
            out.extend_from_slice(&sequence.to_le_bytes());
        }
        out
    }

    fn trusts(&self, tag: &[u8; TAG_BYTES], cached_at: Sequence) -> bool {
        cached_at >= self.floor
            && !self
                .entries
                .iter()
                .any(|(t, sequence)| t == tag && *sequence > cached_at)
    }

    /// Adds an entry, pushing out the oldest past capacity (and raising the floor to it).
    fn record(&mut self, tag: [u8; TAG_BYTES], sequence: Sequence) {
        self.entries.retain(|(t, _)| *t != tag);
        self.entries.push((tag, sequence));
        while self.entries.len() > ENTRIES_PER_BUCKET {
            let (_, pushed_out) = self.entries.remove(0);
            self.floor = self.floor.max(pushed_out);
        }
    }
}

/// Stand-ins for Envoy's shared data, for the tests of every module that keeps state there.
#[cfg(test)]
pub(crate) mod fakes {
    use super::{SetError, SharedStore};
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Envoy's shared data: a stamp per key from a global counter; a missing key is written
    /// whatever the CAS; a stale CAS is refused.
    #[derive(Default)]
    pub struct Store {
        /// Every key's value and stamp, for tests that inspect what was written.
        pub values: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        stamps: RefCell<u32>,
    }

    impl SharedStore for Store {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.values.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
            let mut values = self.values.borrow_mut();
            if let Some((_, stamp)) = values.get(key)
                && cas != 0
                && cas != *stamp
            {
                return Err(SetError::CasMismatch);
            }
            *self.stamps.borrow_mut() += 1;
            values.insert(key.to_string(), (value.to_vec(), *self.stamps.borrow()));
            Ok(())
        }
    }

    /// A host whose shared data refuses every write.
    pub struct Refusing;

    impl SharedStore for Refusing {
        fn get(&self, _: &str) -> Option<(Vec<u8>, u32)> {
            None
        }
        fn set(&self, _: &str, _: &[u8], _: u32) -> Result<(), SetError> {
            Err(SetError::Refused)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fakes::{Refusing, Store};
    use super::*;

    fn tag(n: u8) -> RevocationTag {
        RevocationTag::of(&SessionId::from_bytes(&[n; 32]))
    }

    fn bucket_of(store: &Store, tag: &RevocationTag) -> Option<Vec<u8>> {
        store.get(&tag.key).map(|(v, _)| v)
    }

    #[test]
    fn a_copy_cached_before_an_announcement_is_not_trusted_after_it() {
        let store = Store::default();
        let a = tag(1);
        let before = current(&store);
        assert!(a.trusts(bucket_of(&store, &a).as_deref(), before));
        let announced = announce(&store, &a).unwrap();
        assert!(announced > before);
        assert_eq!(current(&store), announced);
        assert!(!a.trusts(bucket_of(&store, &a).as_deref(), before));
        assert!(
            a.trusts(bucket_of(&store, &a).as_deref(), announced),
            "a lookup sent after the announcement is fresh"
        );
    }

    /// The race of a lookup sent before a logout and answered after it: the copy is cached
    /// under the number read when the lookup was sent, so it is refused however late it lands.
    #[test]
    fn a_lookup_sent_before_a_logout_is_never_trusted() {
        let store = Store::default();
        let a = tag(1);
        announce(&store, &tag(2)).unwrap();
        let sent_at = current(&store);
        announce(&store, &a).unwrap(); // the logout lands while the lookup is in flight
        for _ in 0..3 {
            announce(&store, &tag(3)).unwrap(); // time and other traffic pass
        }
        assert!(!a.trusts(bucket_of(&store, &a).as_deref(), sent_at));
    }

    #[test]
    fn other_sessions_in_the_same_bucket_stay_trusted() {
        let store = Store::default();
        let a = tag(1);
        // Find another session that shares a's bucket.
        let b = (2..=255u8)
            .flat_map(|x| (0..=255u8).map(move |y| (x, y)))
            .map(|(x, y)| {
                let mut bytes = [x; 32];
                bytes[1] = y;
                RevocationTag::of(&SessionId::from_bytes(&bytes))
            })
            .find(|t| t.key == a.key)
            .unwrap();
        let cached = current(&store);
        announce(&store, &b).unwrap();
        assert!(a.trusts(bucket_of(&store, &a).as_deref(), cached));
        assert!(!b.trusts(bucket_of(&store, &b).as_deref(), cached));
    }

    #[test]
    fn a_full_bucket_raises_its_floor_and_never_forgets() {
        let store = Store::default();
        let a = tag(1);
        let cached = current(&store);
        let first = announce(&store, &a).unwrap();
        // Fill the same bucket with other tags past its capacity.
        let mut bucket = Bucket::parse(&bucket_of(&store, &a).unwrap()).unwrap();
        for n in 0..ENTRIES_PER_BUCKET as u8 {
            bucket.record([n; TAG_BYTES], first + 1 + u64::from(n));
        }
        assert_eq!(bucket.entries.len(), ENTRIES_PER_BUCKET);
        assert_eq!(bucket.floor, first, "pushed out: the floor rose to it");
        assert!(
            !a.trusts(Some(&bucket.encode()), cached),
            "the pushed-out revocation still holds"
        );
        assert!(
            a.trusts(Some(&bucket.encode()), first),
            "copies cached after it are trusted"
        );
        assert_eq!(
            bucket.encode().len(),
            9 + ENTRIES_PER_BUCKET * ENTRY_BYTES,
            "a bucket is bounded"
        );
    }

    #[test]
    fn unreadable_values_fail_safe() {
        let a = tag(1);
        for junk in [
            &b""[..],
            b"\x02",
            b"\x01short",
            b"\x01\0\0\0\0\0\0\0\0\x01",
            &[1; 9 + (ENTRIES_PER_BUCKET + 1) * ENTRY_BYTES],
        ] {
            assert!(!a.trusts(Some(junk), 0), "{junk:?}");
            assert!(!a.trusts(Some(junk), u64::MAX), "{junk:?}");
        }
        let store = Store::default();
        store.set(&a.key, b"garbage", 0).unwrap();
        let cached = current(&store);
        let announced = announce(&store, &a).unwrap();
        let value = bucket_of(&store, &a).unwrap();
        assert!(Bucket::parse(&value).is_some(), "rewritten in this version");
        assert!(!a.trusts(Some(&value), cached));
        assert!(!tag(9).trusts(Some(&value), cached), "the floor covers all");
        assert!(a.trusts(Some(&value), announced));
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        // Interleave two writers by hand: B writes between A's read and A's write.
        let store = Store::default();
        let (a, b) = (tag(1), tag(2));
        announce(&store, &a).unwrap();
        let (stale, cas) = store.get(&a.key).unwrap();
        announce(&store, &a).unwrap();
        assert_eq!(
            store.set(&a.key, &stale, cas),
            Err(SetError::CasMismatch),
            "a stale write is refused"
        );
        let cached = current(&store);
        announce(&store, &b).unwrap();
        announce(&store, &a).unwrap();
        assert!(!a.trusts(bucket_of(&store, &a).as_deref(), cached));
        assert!(!b.trusts(bucket_of(&store, &b).as_deref(), cached));
    }

    #[test]
    fn a_refusing_host_is_reported() {
        assert_eq!(announce(&Refusing, &tag(1)), Err(AnnounceError::Refused));
    }

    #[test]
    fn no_raw_id_in_shared_data() {
        let store = Store::default();
        let id = SessionId::from_bytes(&[1; 32]);
        announce(&store, &RevocationTag::of(&id)).unwrap();
        for (key, (value, _)) in store.values.borrow().iter() {
            assert!(!key.contains(id.as_str()));
            assert!(!String::from_utf8_lossy(value).contains(id.as_str()));
        }
    }
}
