//! The session handle: a non-secret name for a session, derived from its id with a one-way
//! function. Listings and revocations name sessions by handle, so a page that shows a user
//! their sessions, a log line or a revocation feed never carries an id that would open one.
//!
//! `handle = base64url_nopad(SHA-256("edge-session/handle/v1|" + id)[..16])`: 22 characters.
//! The prefix keeps this hash apart from any other SHA-256 of an id (the log tag of
//! `short_hash` is the bare hash); 128 bits keep handles of distinct sessions distinct.

use crate::session_id::SessionId;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

/// What the id is hashed after.
pub const HANDLE_PREFIX: &str = "edge-session/handle/v1|";
/// Bytes of the hash a handle keeps.
pub const SESSION_HANDLE_BYTES: usize = 16;
/// Characters of a handle in unpadded base64url.
pub const SESSION_HANDLE_LEN: usize = 22;

/// A well-formed handle: exactly the canonical encoding of 16 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle(String);

/// Why a string is not a handle. Says nothing about the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSessionHandle;

impl fmt::Display for InvalidSessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a session handle is 22 characters of unpadded base64url encoding 16 bytes")
    }
}

impl std::error::Error for InvalidSessionHandle {}

impl SessionHandle {
    /// Accepts exactly the canonical encoding of 16 bytes: 22 base64url characters whose last
    /// character carries no stray bits, so one handle has one spelling.
    pub fn parse(text: &str) -> Result<Self, InvalidSessionHandle> {
        if text.len() != SESSION_HANDLE_LEN {
            return Err(InvalidSessionHandle);
        }
        let mut bytes = [0u8; SESSION_HANDLE_BYTES + 1];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(SESSION_HANDLE_BYTES) => Ok(Self(text.to_string())),
            _ => Err(InvalidSessionHandle),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl SessionId {
    /// This session's handle (see the module's doc).
    pub fn handle(&self) -> SessionHandle {
        let mut hasher = Sha256::new();
        hasher.update(HANDLE_PREFIX.as_bytes());
        hasher.update(self.as_str().as_bytes());
        let digest = hasher.finalize();
        SessionHandle(URL_SAFE_NO_PAD.encode(&digest[..SESSION_HANDLE_BYTES]))
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SessionHandle {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionHandle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    /// Pinned, so the filter, the companion and the Python client cannot drift: the same
    /// value as `printf 'edge-session/handle/v1|%s' "$ID" | sha256sum`, first 16 bytes, in
    /// unpadded base64url.
    #[test]
    fn the_handle_of_an_id_is_pinned() {
        let id = SessionId::parse(ID).unwrap();
        let digest = Sha256::digest(format!("{HANDLE_PREFIX}{ID}").as_bytes());
        let expected = URL_SAFE_NO_PAD.encode(&digest[..16]);
        assert_eq!(id.handle().as_str(), expected);
        assert_eq!(id.handle().as_str(), "vc86YyI-rc7uZbuCD_I65w");
        assert_eq!(id.handle().as_str().len(), SESSION_HANDLE_LEN);
        assert_eq!(SessionHandle::parse(id.handle().as_str()), Ok(id.handle()));
    }

    #[test]
    fn the_handle_is_not_the_id_nor_its_log_tag() {
        let id = SessionId::parse(ID).unwrap();
        let handle = id.handle();
        assert!(!ID.contains(handle.as_str()));
        assert!(!handle.as_str().contains(&id.short_hash()));
        let other = SessionId::from_bytes(&[7; 32]);
        assert_ne!(other.handle(), handle);
    }

    #[test]
    fn refuses_everything_that_is_not_a_canonical_handle() {
        let valid = "vc86YyI-rc7uZbuCD_I65w";
        assert!(SessionHandle::parse(valid).is_ok());
        let cases = [
            ("empty", String::new()),
            ("one short", valid[..21].to_string()),
            ("one past", format!("{valid}A")),
            ("padded", format!("{valid}==")),
            ("standard alphabet", format!("+{}", &valid[1..])),
            ("slash", format!("/{}", &valid[1..])),
            // The last of 22 characters carries 4 bits that must be zero: `B` sets one.
            ("non-canonical last char", format!("{}B", &valid[..21])),
            ("non-ascii", format!("{}é", &valid[..20])),
            ("a session id", ID.to_string()),
        ];
        for (name, input) in cases {
            assert_eq!(
                SessionHandle::parse(&input),
                Err(InvalidSessionHandle),
                "{name}"
            );
        }
        let bad: Result<SessionHandle, _> = serde_json::from_str("\"nope\"");
        assert!(bad.is_err());
    }
}
