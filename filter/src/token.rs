//! The cookie token (docs/architecture.md, "Cookie token"): `<kid>.<id>.<mac>`, where `mac`
//! is unpadded base64url of HMAC-SHA256(secret(kid), "edge-session/v1|" kid "|" id).
//!
//! Each key's HMAC state (the padded inner and outer keys) is computed once at configure time
//! and cloned per token. Verification decodes into stack buffers, compares in constant time,
//! and allocates only the verified id. A checked token can be remembered ([`Verified`]) so that
//! the same token presented again is recognised by a constant-time comparison of its tag as
//! written, with neither base64 decoding nor three SHA-256 blocks: the session cache does this
//! for the sessions it holds.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use proto::{SESSION_ID_LEN, SessionId};
use sha2::Sha256;
use std::fmt;
use subtle::ConstantTimeEq;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 256;
const MAC_LEN: usize = 43;
const DOMAIN: &[u8] = b"edge-session/v1|";

/// The longest key id, in bytes.
pub const MAX_KEY_ID_BYTES: usize = 16;

/// A key id: 1 to 16 of `A-Z a-z 0-9 _ -`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(text: &str) -> Option<Self> {
        valid_key_id(text.as_bytes()).then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

fn valid_key_id(bytes: &[u8]) -> bool {
    (1..=MAX_KEY_ID_BYTES).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// A key with its HMAC state prepared. `Debug` never shows the secret.
#[derive(Clone)]
pub struct SigningKey {
    id: KeyId,
    mac: Hmac<Sha256>,
}

impl SigningKey {
    pub fn new(id: KeyId, secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail; the fallback is unreachable
        // and still yields a key that verifies nothing an attacker could forge without it.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
        Self { id, mac }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    fn mac_for(&self, kid: &[u8], id: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(kid);
        mac.update(b"|");
        mac.update(id);
        mac
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.id.0)
    }
}

/// Why a token was refused. Carries nothing from the token itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    TooLong,
    Malformed,
    UnknownKey,
    BadSignature,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLong => "token too long",
            Self::Malformed => "token malformed",
            Self::UnknownKey => "token signed with an unknown key",
            Self::BadSignature => "token signature does not match",
        })
    }
}

/// The configured keys: the first signs, every one verifies (rotation without logging anyone
/// out).
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<SigningKey>,
}

impl Keyring {
    /// `keys` must not be empty (the configuration parser guarantees it).
    pub fn new(keys: Vec<SigningKey>) -> Self {
        Self { keys }
    }

    pub fn signing_key(&self) -> &SigningKey {
        // The parser refuses an empty key list; indexing is safe by construction.
        &self.keys[0]
    }

    /// The cookie value for a session id, signed with the first key.
    pub fn sign(&self, id: &SessionId) -> String {
        let key = self.signing_key();
        let tag = key
            .mac_for(key.id.0.as_bytes(), id.as_str().as_bytes())
            .finalize()
            .into_bytes();
        format!(
            "{}.{}.{}",
            key.id.0,
            id.as_str(),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks a token and returns its session id.
    pub fn verify(&self, token: &[u8]) -> Result<SessionId, TokenError> {
        let presented = Presented::parse(token)?;
        let id = presented.session_id()?;
        self.check(&presented)?;
        Ok(id)
    }

    /// Checks a parsed token's signature with the key it names; on success, what a later
    /// presentation of the same token can be matched against without the HMAC.
    pub fn check(&self, presented: &Presented<'_>) -> Result<Verified, TokenError> {
        let mut tag_bytes = [0u8; 33];
        if URL_SAFE_NO_PAD.decode_slice(presented.tag, &mut tag_bytes) != Ok(32) {
            return Err(TokenError::Malformed);
        }
        let key = self
            .keys
            .iter()
            .find(|k| k.id.0.as_bytes() == presented.kid)
            .ok_or(TokenError::UnknownKey)?;
        key.mac_for(presented.kid, presented.id)
            .verify_slice(&tag_bytes[..32])
            .map_err(|_| TokenError::BadSignature)?;
        Ok(Verified {
            kid: presented.kid.to_vec(),
            tag: presented.tag_text(),
        })
    }
}

/// A token split into its parts, nothing decoded and its signature not yet checked.
/// Borrowed from the cookie: a token seen before is recognised from these bytes alone.
pub struct Presented<'a> {
    kid: &'a [u8],
    id: &'a [u8],
    /// The tag as written: 43 characters of base64url.
    tag: &'a [u8],
}

impl<'a> Presented<'a> {
    /// Splits a token into key id, session id and tag, checking only their shapes: decoding
    /// waits until it is needed (a token seen before never needs it).
    pub fn parse(token: &'a [u8]) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let mut parts = token.split(|b| *b == b'.');
        let (Some(kid), Some(id), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if !valid_key_id(kid) || id.len() != SESSION_ID_LEN || tag.len() != MAC_LEN {
            return Err(TokenError::Malformed);
        }
        Ok(Self { kid, id, tag })
    }

    /// The session id as written, when it is ASCII: what the session cache is keyed by. Not
    /// validated as an id (a cache lookup of a malformed one finds nothing).
    pub fn id_text(&self) -> Option<&'a str> {
        std::str::from_utf8(self.id).ok()
    }

    /// The session id the token names, validated (its signature is a separate question).
    pub fn session_id(&self) -> Result<SessionId, TokenError> {
        let id = std::str::from_utf8(self.id).map_err(|_| TokenError::Malformed)?;
        SessionId::parse(id).map_err(|_| TokenError::Malformed)
    }

    fn tag_text(&self) -> [u8; MAC_LEN] {
        let mut tag = [0u8; MAC_LEN];
        tag.copy_from_slice(self.tag);
        tag
    }

    /// Whether this is a token already verified: same key id, and the same tag as written,
    /// compared in constant time. Base64url without padding has one spelling per tag (the
    /// decoder refuses stray bits), so the same text is the same tag, and the tag is the HMAC
    /// of this very key id and session id (the caller keeps `verified` per session id): a
    /// match is as good as computing it again.
    pub fn is(&self, verified: &Verified) -> bool {
        self.kid == verified.kid.as_slice() && bool::from(self.tag.ct_eq(&verified.tag[..]))
    }
}

/// A token whose signature was checked: the key id and the tag as written, to recognise the
/// same token again. Kept only beside its session id, in memory, for as long as the key ring
/// lives.
#[derive(Clone, PartialEq, Eq)]
pub struct Verified {
    kid: Vec<u8>,
    tag: [u8; MAC_LEN],
}

impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The tag is a credential: never printed.
        write!(f, "Verified({})", String::from_utf8_lossy(&self.kid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known answer: key id `k1` with secret bytes 0x00..0x1f signs the id of bytes
    /// 0x00..0x1f as this cookie value. Computed independently with Python's `hmac`:
    /// `hmac.new(bytes(range(32)), b"edge-session/v1|k1|" + id, "sha256")`.
    const ID: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const KNOWN_TOKEN: &str = "k1.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8.D9s66XiaoFpkcvRsMEKi9H53berk1bcERXTsFJo--EI";

    fn key(id: &str, fill: u8) -> SigningKey {
        let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_add(fill)).collect();
        SigningKey::new(KeyId::parse(id).unwrap(), &secret)
    }

    fn id() -> SessionId {
        SessionId::parse(ID).unwrap()
    }

    #[test]
    fn a_verified_token_is_recognised_and_nothing_else_is() {
        let ring = Keyring::new(vec![key("k1", 0), key("k2", 3)]);
        let verified = ring
            .check(&Presented::parse(KNOWN_TOKEN.as_bytes()).unwrap())
            .unwrap();
        assert!(
            Presented::parse(KNOWN_TOKEN.as_bytes())
                .unwrap()
                .is(&verified)
        );
        // Any other tag, or the same tag under another key id, is not the verified token.
        let mut other_tag = KNOWN_TOKEN.as_bytes().to_vec();
        let last = other_tag.len() - 2;
        other_tag[last] = if other_tag[last] == b'A' { b'B' } else { b'A' };
        assert!(!Presented::parse(&other_tag).unwrap().is(&verified));
        let other_kid = KNOWN_TOKEN.replacen("k1.", "k2.", 1);
        assert!(
            !Presented::parse(other_kid.as_bytes())
                .unwrap()
                .is(&verified)
        );
        assert_eq!(format!("{verified:?}"), "Verified(k1)");
    }

    #[test]
    fn signs_the_known_answer() {
        let ring = Keyring::new(vec![key("k1", 0)]);
        assert_eq!(ring.sign(&id()), KNOWN_TOKEN);
        assert_eq!(ring.verify(KNOWN_TOKEN.as_bytes()), Ok(id()));
    }

    #[test]
    fn first_key_signs_and_every_key_verifies() {
        let old = Keyring::new(vec![key("old", 7)]);
        let rotated = Keyring::new(vec![key("new", 9), key("old", 7)]);
        let old_token = old.sign(&id());
        assert_eq!(
            rotated.verify(old_token.as_bytes()),
            Ok(id()),
            "tokens of the old key still verify"
        );
        let new_token = rotated.sign(&id());
        assert!(
            new_token.starts_with("new."),
            "new tokens use the first key"
        );
        assert_eq!(
            old.verify(new_token.as_bytes()),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn refuses_every_malformed_or_forged_token() {
        let ring = Keyring::new(vec![key("k1", 0)]);
        let good = ring.sign(&id());
        let mac = good.rsplit('.').next().unwrap().to_string();
        let flip = |s: &str, at: usize| {
            let mut b = s.as_bytes().to_vec();
            b[at] = if b[at] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        };
        let cases: Vec<(&str, Vec<u8>, TokenError)> = vec![
            ("empty", vec![], TokenError::Malformed),
            ("garbage", b"hello world".to_vec(), TokenError::Malformed),
            (
                "two parts",
                format!("k1.{ID}").into_bytes(),
                TokenError::Malformed,
            ),
            (
                "four parts",
                format!("{good}.x").into_bytes(),
                TokenError::Malformed,
            ),
            (
                "truncated mac",
                good.as_bytes()[..good.len() - 1].to_vec(),
                TokenError::Malformed,
            ),
            (
                "truncated id",
                format!("k1.{}.{mac}", &ID[..42]).into_bytes(),
                TokenError::Malformed,
            ),
            (
                "oversize",
                vec![b'a'; MAX_TOKEN_LEN + 1],
                TokenError::TooLong,
            ),
            (
                "empty kid",
                format!(".{ID}.{mac}").into_bytes(),
                TokenError::Malformed,
            ),
            (
                "kid too long",
                format!("{}.{ID}.{mac}", "k".repeat(17)).into_bytes(),
                TokenError::Malformed,
            ),
            (
                "unknown kid",
                format!("k2.{ID}.{mac}").into_bytes(),
                TokenError::UnknownKey,
            ),
            (
                "wrong mac",
                format!("k1.{ID}.{}", flip(&mac, 5)).into_bytes(),
                TokenError::BadSignature,
            ),
            (
                "other id",
                format!("k1.{}.{mac}", flip(ID, 3)).into_bytes(),
                TokenError::BadSignature,
            ),
            (
                "non-base64 mac",
                format!("k1.{ID}.{}", "*".repeat(43)).into_bytes(),
                TokenError::Malformed,
            ),
            (
                "standard alphabet id",
                format!("k1.{}.{mac}", ID.replacen('A', "+", 1)).into_bytes(),
                TokenError::Malformed,
            ),
            (
                "padded mac",
                format!("k1.{ID}.{}=", &mac[..42]).into_bytes(),
                TokenError::Malformed,
            ),
            ("non-utf8", vec![0xff; 90], TokenError::Malformed),
            (
                "nul bytes",
                format!("k1\0.{ID}.{mac}").into_bytes(),
                TokenError::Malformed,
            ),
        ];
        for (name, token, expected) in cases {
            assert_eq!(ring.verify(&token), Err(expected), "{name}");
        }
    }

    #[test]
    fn key_ids_are_checked() {
        for ok in ["a", "K-1_z", "0123456789abcdef"] {
            assert!(KeyId::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", "has.dot", "sp ace", "0123456789abcdefg", "é"] {
            assert!(KeyId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let shown = format!("{:?}", Keyring::new(vec![key("k1", 0)]));
        assert_eq!(shown, "Keyring { keys: [SigningKey(k1)] }");
    }
}
