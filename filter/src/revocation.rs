//! Cross-worker revocation (DESIGN.md section 7). Each Envoy worker caches sessions in its own
//! VM; a write or logout on one worker must stop the others serving their cached copy. The
//! filter publishes `<tag>:<time>` for the changed session in a fixed table of shared-data
//! slots (bounded: at most `SLOTS` keys, whatever the traffic), and a worker checks the one
//! slot of a session on every cache hit. Two sessions can share a slot; a later write then
//! hides an earlier one's revocation, and that worker serves its copy until the cache TTL
//! ends, which is the bound DESIGN.md gives for other proxies anyway.

use proto::SessionId;
use sha2::{Digest, Sha256};

/// Number of slots, so of shared-data keys at most.
pub const SLOTS: u32 = 4096;
const KEY_PREFIX: &str = "edge-session/revoked/";

/// Where and how a session's revocation is published; computed once per resolved session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationTag {
    pub key: String,
    tag: [u8; 8],
}

impl RevocationTag {
    pub fn of(id: &SessionId) -> Self {
        let digest = Sha256::digest(id.as_str().as_bytes());
        let slot = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) % SLOTS;
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest[8..16]);
        Self {
            key: format!("{KEY_PREFIX}{slot}"),
            tag,
        }
    }

    /// The slot's value announcing that this session changed at `now_nanos`.
    pub fn entry(&self, now_nanos: i128) -> Vec<u8> {
        let mut out = hex(&self.tag).into_bytes();
        out.push(b':');
        out.extend_from_slice(now_nanos.to_string().as_bytes());
        out
    }

    /// Whether the slot's value says this session changed at or after `cached_at`.
    pub fn revokes(&self, value: &[u8], cached_at: i128) -> bool {
        let Some(at) = value.iter().position(|b| *b == b':') else {
            return false;
        };
        let (tag, time) = (&value[..at], &value[at + 1..]);
        let time = std::str::from_utf8(time)
            .ok()
            .and_then(|t| t.parse::<i128>().ok());
        tag == hex(&self.tag).as_bytes() && time.is_some_and(|t| t >= cached_at)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_entry_for_the_same_session_revokes() {
        let tag = RevocationTag::of(&SessionId::from_bytes(&[1; 32]));
        assert!(tag.key.starts_with(KEY_PREFIX));
        let entry = tag.entry(1_000);
        assert!(
            tag.revokes(&entry, 1_000),
            "a change at the caching instant counts"
        );
        assert!(tag.revokes(&entry, 999));
        assert!(
            !tag.revokes(&entry, 1_001),
            "a copy cached after the change is fresh"
        );
    }

    #[test]
    fn other_sessions_and_garbage_do_not_revoke() {
        let a = RevocationTag::of(&SessionId::from_bytes(&[1; 32]));
        let b = RevocationTag::of(&SessionId::from_bytes(&[2; 32]));
        assert!(!a.revokes(&b.entry(5), 0));
        for junk in [&b""[..], b":", b"zz:1", b"no-colon", b"\xff\xfe:12"] {
            assert!(!a.revokes(junk, 0));
        }
        let raw = a.entry(7);
        assert!(
            !String::from_utf8_lossy(&raw).contains(SessionId::from_bytes(&[1; 32]).as_str()),
            "no raw id in shared data"
        );
    }
}
