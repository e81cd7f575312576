//! The cookie store's revocation table (docs/architecture.md, "Cookie store revocation"): a
//! cookie session carries itself, so a logout cannot delete it anywhere; instead its id is
//! recorded as revoked in the proxy's shared data until the cookie's own expiry, and every
//! worker refuses a cookie whose id is there.
//!
//! Bounded whatever the traffic: [`BUCKETS`] shared-data keys, each holding at most
//! [`ENTRIES_PER_BUCKET`] entries of (tag, until). An entry is dropped once its `until` has
//! passed (the cookie it names is expired by then and refused by the opener anyway). When a
//! bucket is full of live entries, the entry that would expire first is pushed out and the
//! bucket's floor is raised: every cookie of that bucket issued at or before now is refused
//! until the pushed-out entry's `until`. So overflow logs users out; it never lets a revoked
//! cookie back in. A bucket this version cannot read refuses every cookie it covers, and the
//! next write replaces it with a floor at that moment.
//!
//! Envoy creates a missing key whatever CAS value is given, so a writer that created a
//! bucket reads it back and tries again until its entry is there (as `crate::revocation`).

use crate::revocation::{AnnounceError, SetError, SharedStore};
use proto::SessionHandle;
use sha2::{Digest, Sha256};

/// Number of buckets, so of shared-data keys.
pub const BUCKETS: u32 = 4096;
/// Live entries a bucket keeps before the one expiring first is pushed out.
pub const ENTRIES_PER_BUCKET: usize = 16;
const BUCKET_PREFIX: &str = "edge-session/cookie-revocations/";
const BUCKET_VERSION: u8 = 1;
const TAG_BYTES: usize = 8;
const ENTRY_BYTES: usize = TAG_BYTES + 8;
/// Version, floor (issued at or before, i64 LE), floor until (i64 LE).
const HEADER_BYTES: usize = 1 + 8 + 8;
/// The largest a bucket's value gets.
pub const MAX_BUCKET_BYTES: usize = HEADER_BYTES + ENTRIES_PER_BUCKET * ENTRY_BYTES;
const MAX_ATTEMPTS: usize = 64;

/// Where a cookie session's revocation is recorded: from its handle, so an entry of the
/// companion's feed (which names sessions by handle) lands where this proxy's own do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieTag {
    pub key: String,
    tag: [u8; TAG_BYTES],
}

impl CookieTag {
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
}

/// What the table says of a cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// Its id was revoked.
    Revoked,
    /// Issued at or before the floor of a bucket that overflowed (or that this version cannot
    /// read): it may be a revoked cookie whose entry was pushed out.
    BelowFloor,
}

/// Whether a cookie of session `tag`, issued at `issued_at` (Unix seconds), may be used at
/// `now` (Unix seconds).
pub fn check(store: &impl SharedStore, tag: &CookieTag, issued_at: i64, now: i64) -> Verdict {
    match store.get(&tag.key) {
        None => Verdict::Trusted,
        Some((value, _)) => match Bucket::parse(&value) {
            Some(bucket) => bucket.verdict(&tag.tag, issued_at, now),
            None => Verdict::BelowFloor,
        },
    }
}

/// Records that every cookie of session `tag` is revoked until `until` (Unix seconds), on
/// every worker of this proxy.
pub fn record(
    store: &impl SharedStore,
    tag: &CookieTag,
    until: i64,
    now: i64,
) -> Result<(), AnnounceError> {
    if until <= now {
        // Every cookie of it has expired: the opener refuses them without the table.
        return Ok(());
    }
    for _ in 0..MAX_ATTEMPTS {
        let (bucket, cas) = match store.get(&tag.key) {
            Some((value, cas)) => (Bucket::parse(&value), cas),
            None => (Some(Bucket::default()), 0),
        };
        // What an unreadable bucket said is lost: refuse every cookie issued until now.
        let mut bucket = bucket.unwrap_or(Bucket {
            floor: now,
            floor_until: i64::MAX,
            entries: Vec::new(),
        });
        bucket.record(tag.tag, until, now);
        match store.set(&tag.key, &bucket.encode(), cas) {
            Ok(()) if cas != 0 => return Ok(()),
            Ok(()) => {
                let landed = store
                    .get(&tag.key)
                    .and_then(|(value, _)| Bucket::parse(&value))
                    .is_some_and(|b| b.verdict(&tag.tag, now, now) != Verdict::Trusted);
                if landed {
                    return Ok(());
                }
            }
            Err(SetError::CasMismatch) => {}
            Err(SetError::Refused) => return Err(AnnounceError::Refused),
        }
    }
    Err(AnnounceError::Contended)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Bucket {
    /// Cookies issued at or before this (Unix seconds) are refused while `floor_until` is
    /// ahead.
    floor: i64,
    floor_until: i64,
    /// (tag, until), in no particular order.
    entries: Vec<([u8; TAG_BYTES], i64)>,
}

fn i64_at(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(bytes.try_into().ok()?))
}

impl Bucket {
    fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < HEADER_BYTES
            || value[0] != BUCKET_VERSION
            || !(value.len() - HEADER_BYTES).is_multiple_of(ENTRY_BYTES)
            || value.len() > MAX_BUCKET_BYTES
        {
            return None;
        }
        let entries = value[HEADER_BYTES..]
            .chunks_exact(ENTRY_BYTES)
            .map(|entry| {
                let (tag, until) = entry.split_at(TAG_BYTES);
                Some((tag.try_into().ok()?, i64_at(until)?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            floor: i64_at(&value[1..9])?,
            floor_until: i64_at(&value[9..17])?,
            entries,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.entries.len() * ENTRY_BYTES);
        out.push(BUCKET_VERSION);
        out.extend_from_slice(&self.floor.to_le_bytes());
        out.extend_from_slice(&self.floor_until.to_le_bytes());
        for (tag, until) in &self.entries {
            out.extend_from_slice(tag);
            out.extend_from_slice(&until.to_le_bytes());
        }
        out
    }

    fn verdict(&self, tag: &[u8; TAG_BYTES], issued_at: i64, now: i64) -> Verdict {
        if self
            .entries
            .iter()
            .any(|(t, until)| t == tag && *until > now)
        {
            return Verdict::Revoked;
        }
        if now < self.floor_until && issued_at <= self.floor {
            return Verdict::BelowFloor;
        }
        Verdict::Trusted
    }

    /// Drops what has expired, adds (or extends) the entry, and pushes out the entry that
    /// expires first while over capacity, raising the floor to cover it.
    fn record(&mut self, tag: [u8; TAG_BYTES], until: i64, now: i64) {
        self.entries.retain(|(_, at)| *at > now);
        if self.floor_until <= now {
            (self.floor, self.floor_until) = (0, 0);
        }
        match self.entries.iter_mut().find(|(t, _)| *t == tag) {
            Some(entry) => entry.1 = entry.1.max(until),
            None => self.entries.push((tag, until)),
        }
        while self.entries.len() > ENTRIES_PER_BUCKET {
            let first = (0..self.entries.len())
                .min_by_key(|&i| self.entries[i].1)
                .unwrap_or(0);
            let (_, pushed_out) = self.entries.swap_remove(first);
            // The pushed-out cookie was issued before its revocation, so at or before now.
            self.floor = self.floor.max(now);
            self.floor_until = self.floor_until.max(pushed_out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::fakes::{Refusing, Store};
    use proto::SessionId;

    const NOW: i64 = 1_767_225_600;

    fn tag(n: u32) -> CookieTag {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        CookieTag::of_handle(&SessionId::from_bytes(&bytes).handle())
    }

    /// `count` tags that share one bucket.
    fn same_bucket(count: usize) -> Vec<CookieTag> {
        let first = tag(0);
        (0..)
            .map(tag)
            .filter(|t| t.key == first.key)
            .take(count)
            .collect()
    }

    #[test]
    fn a_revoked_id_is_refused_until_its_expiry_and_forgotten_after() {
        let store = Store::default();
        let (revoked, other) = (tag(1), tag(2));
        assert_eq!(check(&store, &revoked, NOW, NOW), Verdict::Trusted);
        record(&store, &revoked, NOW + 100, NOW).unwrap();
        assert_eq!(check(&store, &revoked, NOW - 5, NOW), Verdict::Revoked);
        assert_eq!(check(&store, &revoked, NOW, NOW + 99), Verdict::Revoked);
        assert_eq!(check(&store, &revoked, NOW, NOW + 100), Verdict::Trusted);
        assert_eq!(check(&store, &other, NOW, NOW), Verdict::Trusted);
        // A later write to the bucket drops the expired entry.
        record(&store, &other, NOW + 500, NOW + 200).unwrap();
        let (value, _) = store.get(&other.key).unwrap_or_default();
        if other.key == revoked.key {
            assert_eq!(value.len(), HEADER_BYTES + ENTRY_BYTES);
        }
        // Nothing to keep for a cookie already expired.
        let fresh = Store::default();
        record(&fresh, &revoked, NOW, NOW).unwrap();
        assert!(fresh.values.borrow().is_empty());
    }

    #[test]
    fn a_full_bucket_pushes_out_the_first_to_expire_and_its_floor_refuses_older_cookies() {
        let store = Store::default();
        let tags = same_bucket(ENTRIES_PER_BUCKET + 1);
        // Exactly at capacity: every entry kept, no floor.
        for (i, t) in tags[..ENTRIES_PER_BUCKET].iter().enumerate() {
            record(&store, t, NOW + 1000 + i as i64, NOW).unwrap();
        }
        let bucket = Bucket::parse(&store.get(&tags[0].key).unwrap().0).unwrap();
        assert_eq!(bucket.entries.len(), ENTRIES_PER_BUCKET);
        assert_eq!((bucket.floor, bucket.floor_until), (0, 0));
        let bystander = tags[ENTRIES_PER_BUCKET].clone();
        assert_eq!(
            check(&store, &bystander, NOW - 1, NOW + 1),
            Verdict::Trusted
        );

        // One past: the first to expire (tags[0], until NOW + 1000) is pushed out, and every
        // cookie of the bucket issued at or before NOW + 10 is refused until NOW + 1000.
        record(&store, &bystander, NOW + 5000, NOW + 10).unwrap();
        let bucket = Bucket::parse(&store.get(&tags[0].key).unwrap().0).unwrap();
        assert_eq!(bucket.entries.len(), ENTRIES_PER_BUCKET);
        assert_eq!(store.get(&tags[0].key).unwrap().0.len(), MAX_BUCKET_BYTES);
        assert_eq!(
            check(&store, &tags[0], NOW, NOW + 20),
            Verdict::BelowFloor,
            "the pushed-out revoked cookie is still refused"
        );
        let innocent = tag(u32::MAX);
        let neighbour = CookieTag {
            key: tags[0].key.clone(),
            tag: innocent.tag,
        };
        assert_eq!(
            check(&store, &neighbour, NOW + 10, NOW + 20),
            Verdict::BelowFloor,
            "fails safe: an older cookie of the bucket is refused too"
        );
        assert_eq!(
            check(&store, &neighbour, NOW + 11, NOW + 20),
            Verdict::Trusted,
            "a cookie issued after the floor is not"
        );
        assert_eq!(
            check(&store, &tags[0], NOW, NOW + 1000),
            Verdict::Trusted,
            "the floor ends when the pushed-out cookie has expired"
        );
    }

    #[test]
    fn an_unreadable_bucket_refuses_everything_until_rewritten_with_a_floor() {
        let store = Store::default();
        let t = tag(3);
        store.set(&t.key, b"\x02garbage", 0).unwrap();
        assert_eq!(check(&store, &t, NOW, NOW), Verdict::BelowFloor);
        record(&store, &t, NOW + 60, NOW).unwrap();
        let other = CookieTag {
            key: t.key.clone(),
            tag: tag(4).tag,
        };
        assert_eq!(check(&store, &other, NOW, NOW + 1), Verdict::BelowFloor);
        assert_eq!(check(&store, &other, NOW + 1, NOW + 2), Verdict::Trusted);
        for bad in [
            &b""[..],
            &[BUCKET_VERSION; HEADER_BYTES + 1][..],
            &[BUCKET_VERSION; MAX_BUCKET_BYTES + ENTRY_BYTES][..],
        ] {
            assert!(Bucket::parse(bad).is_none(), "{}", bad.len());
        }
    }

    #[test]
    fn a_refusing_host_is_an_error() {
        assert_eq!(
            record(&Refusing, &tag(1), NOW + 1, NOW),
            Err(AnnounceError::Refused)
        );
    }
}
