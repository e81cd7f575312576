//! The session id: 32 random bytes in unpadded base64url (43 characters), made by the
//! companion. Parsed once into a type that cannot hold anything else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

/// Bytes of randomness in an id.
pub const SESSION_ID_BYTES: usize = 32;
/// Characters of an id in unpadded base64url.
pub const SESSION_ID_LEN: usize = 43;

/// A well-formed session id. Its `Debug` shows only a short hash, so an id cannot leak into a
/// log through `{:?}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

/// Why a string is not a session id. Deliberately says nothing about the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSessionId;

impl fmt::Display for InvalidSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a session id is 43 characters of unpadded base64url encoding 32 bytes")
    }
}

impl std::error::Error for InvalidSessionId {}

/// Looks up a map keyed by ids with the id as written (a cookie's bytes), without building a
/// `SessionId`: `SessionId` hashes and compares as its text does.
impl std::borrow::Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl SessionId {
    /// Accepts exactly the canonical encoding of 32 bytes: 43 base64url characters whose
    /// last character carries no stray bits. No allocation unless it is valid.
    pub fn parse(text: &str) -> Result<Self, InvalidSessionId> {
        if text.len() != SESSION_ID_LEN {
            return Err(InvalidSessionId);
        }
        let mut bytes = [0u8; SESSION_ID_BYTES + 1];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(SESSION_ID_BYTES) => Ok(Self(text.to_string())),
            _ => Err(InvalidSessionId),
        }
    }

    /// The id for 32 bytes (from the operating system's CSPRNG, in the companion).
    pub fn from_bytes(bytes: &[u8; SESSION_ID_BYTES]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short, stable, one-way tag for logs: the first 4 bytes of SHA-256 of the id, as hex.
    /// Enough to correlate log lines, useless for finding the session.
    pub fn short_hash(&self) -> String {
        short_hash(self.0.as_bytes())
    }
}

/// The log tag of any byte string (used for ids that failed to parse, too).
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(#{})", self.short_hash())
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    #[test]
    fn encodes_32_bytes_as_43_characters() {
        let bytes: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(SessionId::from_bytes(&bytes).as_str(), VALID);
        assert_eq!(
            SessionId::parse(VALID).map(|id| id.as_str().to_string()),
            Ok(VALID.to_string())
        );
    }

    #[test]
    fn refuses_everything_that_is_not_a_canonical_id() {
        let cases = [
            ("empty", String::new()),
            ("too short", VALID[..42].to_string()),
            ("too long", format!("{VALID}A")),
            ("padded", format!("{}=", &VALID[..42])),
            ("standard alphabet", VALID.replacen('A', "+", 1)),
            ("non-canonical last char", format!("{}9", &VALID[..42])),
            ("non-ascii", format!("{}é", &VALID[..41])),
            ("space", format!(" {}", &VALID[1..])),
        ];
        for (name, input) in cases {
            assert_eq!(SessionId::parse(&input), Err(InvalidSessionId), "{name}");
        }
    }

    #[test]
    fn debug_and_errors_never_show_the_id() {
        let id = SessionId::parse(VALID).unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{id:?}");
        assert!(!shown.contains(VALID));
        assert_eq!(shown, format!("SessionId(#{})", id.short_hash()));
        assert_eq!(id.short_hash().len(), 8);
        assert_eq!(id.short_hash(), short_hash(VALID.as_bytes()));
    }

    #[test]
    fn deserializes_only_valid_ids() {
        let ok: Result<SessionId, _> = serde_json::from_str(&format!("\"{VALID}\""));
        assert!(ok.is_ok());
        let bad: Result<SessionId, _> = serde_json::from_str("\"nope\"");
        assert!(bad.is_err());
    }
}
