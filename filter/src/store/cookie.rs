//! The cookie store's codec (docs/architecture.md, "Cookie store"): the whole session in the
//! cookie, authenticated and encrypted with AES-256-GCM-SIV, as
//! `v1.<kid>.<base64url(nonce || ciphertext || tag)>`. Pure: the time, the nonce and the
//! inputs of a new id are passed in, so everything here runs natively in tests and fuzzing.
//!
//! Why a nonce-misuse-resistant AEAD, how the keys are separated and why the derived ids are
//! unique and unpredictable: docs/security.md, "Cookie store".

use crate::token::KeyId;
use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use proto::{SESSION_ID_BYTES, SessionId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::fmt;

/// The most bytes a cookie's `name=value` pair may take: what browsers keep per cookie.
pub const MAX_COOKIE_PAIR_BYTES: usize = 4096;
/// The format's version, the value's first part.
pub const VERSION: &str = "v1";
/// Bytes of the AES-GCM-SIV nonce.
pub const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// Associated data: this domain, then the key id. A value moved to another key id, or to a
/// later version of the format, fails authentication instead of being read under its rules.
const AAD_DOMAIN: &[u8] = b"edge-session/cookie/v1|";
/// Labels of the keys derived from each configured secret (HMAC-SHA256(secret, label)): the
/// secret itself is never used twice.
const AEAD_LABEL: &[u8] = b"edge-session/cookie/v1/aead";
const FRESH_LABEL: &[u8] = b"edge-session/cookie/v1/fresh";
/// Labels of what is derived from the fresh-value key: a new session id, a nonce.
const NEW_ID_LABEL: &[u8] = b"new-id|";
const NONCE_LABEL: &[u8] = b"nonce|";
/// Label of the key of the cache of opened cookies' keyed hash.
const CACHE_LABEL: &[u8] = b"opened-cookie-cache";

/// Whether a cookie `name=value` pair fits in [`MAX_COOKIE_PAIR_BYTES`].
pub fn pair_fits(name: &str, value: &str) -> bool {
    pair_bytes(name.len(), value.len()) <= MAX_COOKIE_PAIR_BYTES
}

fn pair_bytes(name: usize, value: usize) -> usize {
    name.saturating_add(1).saturating_add(value)
}

/// What the cookie carries: the session and its lifetime settings. Times are Unix seconds
/// (a cookie's `Max-Age` has no finer unit). Field order is the JSON's order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookiePayload {
    /// Derived with [`CookieKeyring::new_id`]: names the session for revocation and for the
    /// app (`x-session-id`); never the cookie's value.
    pub id: SessionId,
    pub data: Map<String, Value>,
    pub user: Option<String>,
    /// When the session was created; a cycle keeps it, so the absolute limit holds.
    pub created_at: i64,
    /// When this cookie value was written.
    pub issued_at: i64,
    /// When the session ends unless renewed, never after `absolute_expires_at`. The filter
    /// enforces it whatever `Max-Age` the client kept.
    pub expires_at: i64,
    pub ttl_seconds: u64,
    /// The cookie carries no `Max-Age`.
    pub browser_session: bool,
    pub absolute_expires_at: Option<i64>,
}

/// A payload borrowed from the session it describes, serialised exactly as
/// [`CookiePayload`] (same fields, same order): sealing a session does not copy its data.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PayloadRef<'a> {
    pub id: &'a SessionId,
    pub data: &'a Map<String, Value>,
    pub user: Option<&'a str>,
    pub created_at: i64,
    pub issued_at: i64,
    pub expires_at: i64,
    pub ttl_seconds: u64,
    pub browser_session: bool,
    pub absolute_expires_at: Option<i64>,
}

impl CookiePayload {
    pub fn as_ref(&self) -> PayloadRef<'_> {
        PayloadRef {
            id: &self.id,
            data: &self.data,
            user: self.user.as_deref(),
            created_at: self.created_at,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            ttl_seconds: self.ttl_seconds,
            browser_session: self.browser_session,
            absolute_expires_at: self.absolute_expires_at,
        }
    }

    /// Whether the session has ended at `now` (Unix seconds): its expiry, or its absolute
    /// expiry, is not after it.
    pub fn is_expired(&self, now: i64) -> bool {
        ended(self.expires_at, self.absolute_expires_at, now)
    }
}

/// Whether a session with this expiry and absolute expiry (Unix seconds) has ended at `now`:
/// one rule for a cookie just opened and for one served from the cache of opened cookies.
pub fn ended(expires_at: i64, absolute_expires_at: Option<i64>, now: i64) -> bool {
    expires_at <= now || absolute_expires_at.is_some_and(|at| at <= now)
}

/// Why a cookie value was refused. Carries nothing from the value itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Longer than any cookie pair can be.
    TooLong,
    /// The first part is not a version this filter reads.
    UnknownVersion,
    /// Not three parts, a malformed key id, or too short to hold a nonce and a tag.
    Malformed,
    /// A key id no configured key has: a removed key's cookies are invalid.
    UnknownKey,
    /// The third part is not canonical unpadded base64url.
    BadBase64,
    /// Authentication failed: forged, altered, or under another key or key id.
    BadTag,
    /// Authentic, but not a payload of this version (only a bug or a leaked key gives this).
    BadPayload,
    /// Authentic and well formed, but the session has ended.
    Expired,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLong => "cookie value too long",
            Self::UnknownVersion => "cookie value of an unknown version",
            Self::Malformed => "cookie value malformed",
            Self::UnknownKey => "cookie value sealed with an unknown key",
            Self::BadBase64 => "cookie value is not base64url",
            Self::BadTag => "cookie value fails authentication",
            Self::BadPayload => "cookie payload is not a session",
            Self::Expired => "cookie session has expired",
        })
    }
}

/// Why a payload could not be sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// The `name=value` pair would take `bytes`, over [`MAX_COOKIE_PAIR_BYTES`].
    TooLarge { bytes: usize },
    /// The cipher refused (it does only past 2^36 bytes, which the size limit rules out).
    Cipher,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { bytes } => write!(
                f,
                "the session cookie would take {bytes} bytes, over {MAX_COOKIE_PAIR_BYTES}"
            ),
            Self::Cipher => f.write_str("the cipher refused the payload"),
        }
    }
}

/// What makes a new id or nonce fresh, all from the host: Envoy's per-request id (random per
/// request), the time, and a per-VM counter that never repeats within the VM.
#[derive(Clone, Copy, Debug)]
pub struct Freshness<'a> {
    pub request_id: &'a [u8],
    pub now_nanos: i128,
    pub counter: u64,
}

/// A configured cookie key: the AEAD key and the fresh-value key derived from its secret.
/// `Debug` never shows either.
#[derive(Clone)]
pub struct CookieKey {
    id: KeyId,
    aead: Aes256GcmSiv,
    fresh: Hmac<Sha256>,
}

impl CookieKey {
    /// `secret` passed the secret rules (`proto::secrets`) in the configuration parser.
    pub fn new(id: KeyId, secret: &[u8]) -> Self {
        let aead_key = derive(secret, AEAD_LABEL);
        Self {
            id,
            aead: Aes256GcmSiv::new(&aead_key.into()),
            fresh: hmac_key(&derive(secret, FRESH_LABEL)),
        }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    fn fresh(&self, label: &[u8], input: &Freshness<'_>) -> [u8; 32] {
        let mut mac = self.fresh.clone();
        mac.update(label);
        // Length-prefixed, then fixed widths: distinct inputs are distinct messages.
        let request_len = u32::try_from(input.request_id.len()).unwrap_or(u32::MAX);
        mac.update(&request_len.to_be_bytes());
        mac.update(input.request_id);
        mac.update(&input.now_nanos.to_be_bytes());
        mac.update(&input.counter.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    fn aad(&self) -> Vec<u8> {
        [AAD_DOMAIN, self.id.as_str().as_bytes()].concat()
    }
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CookieKey({})", self.id.as_str())
    }
}

fn hmac_key(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail; the fallback is unreachable.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()))
}

/// The payload as compact JSON. A payload of JSON values with string keys always
/// serialises; the fallback is an empty plaintext that no reader accepts as a session.
fn plaintext(payload: PayloadRef<'_>) -> Vec<u8> {
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// The length of [`plaintext`], counted without keeping the bytes.
fn plaintext_len(payload: PayloadRef<'_>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, &payload) {
        Ok(()) => count.0,
        Err(_) => 0,
    }
}

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = hmac_key(secret);
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// The cookie store's keys, separate from the signing keys: the first seals, every one opens
/// (rotation without logging anyone out); a cookie of a removed key is invalid.
#[derive(Clone, Debug)]
pub struct CookieKeyring {
    keys: Vec<CookieKey>,
}

impl CookieKeyring {
    /// `None` when `keys` is empty.
    pub fn new(keys: Vec<CookieKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self { keys })
    }

    pub fn sealing_key(&self) -> &CookieKey {
        // `new` refuses an empty list, so there is a first key.
        &self.keys[0]
    }

    /// A new session id: HMAC-SHA256 under the sealing key's fresh-value key over the
    /// request id, the time and the counter (docs/security.md, "Cookie store"). Unique
    /// because no two writes share all three inputs (the counter never repeats in a VM; VMs
    /// and restarts differ in request id and time) and HMAC-SHA256 collides on distinct
    /// inputs only with probability about n^2 / 2^257; unpredictable because HMAC is a
    /// pseudorandom function: without the key its output looks random even to someone who
    /// knows, or chose, every input and has seen every earlier id.
    pub fn new_id(&self, input: &Freshness<'_>) -> SessionId {
        let bytes: [u8; SESSION_ID_BYTES] = self.sealing_key().fresh(NEW_ID_LABEL, input);
        SessionId::from_bytes(&bytes)
    }

    /// A nonce for one seal, from the same inputs under another label. AES-GCM-SIV stays
    /// safe if it ever repeats (docs/security.md, "Cookie store").
    pub fn nonce(&self, input: &Freshness<'_>) -> [u8; NONCE_BYTES] {
        let block = self.sealing_key().fresh(NONCE_LABEL, input);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&block[..NONCE_BYTES]);
        nonce
    }

    /// The key of the keyed hash the cache of opened cookies files values under
    /// (`store::cookie_cache`): derived from the sealing key's fresh-value key under its own
    /// label, so it is secret and no other derived value repeats it.
    pub fn cache_hash_key(&self) -> [u8; 16] {
        let mut mac = self.sealing_key().fresh.clone();
        mac.update(CACHE_LABEL);
        let block: [u8; 32] = mac.finalize().into_bytes().into();
        let mut key = [0u8; 16];
        key.copy_from_slice(&block[..16]);
        key
    }

    /// The cookie value for `payload` under the first key, refused when `cookie_name=value`
    /// would not fit in [`MAX_COOKIE_PAIR_BYTES`] (checked before encrypting).
    pub fn seal(
        &self,
        cookie_name: &str,
        payload: &CookiePayload,
        nonce: &[u8; NONCE_BYTES],
    ) -> Result<String, SealError> {
        self.seal_ref(cookie_name, payload.as_ref(), nonce)
    }

    /// [`Self::seal`] of a borrowed payload.
    pub fn seal_ref(
        &self,
        cookie_name: &str,
        payload: PayloadRef<'_>,
        nonce: &[u8; NONCE_BYTES],
    ) -> Result<String, SealError> {
        let key = self.sealing_key();
        let plaintext = plaintext(payload);
        let bytes = self.pair_bytes_of(cookie_name, plaintext.len());
        if bytes > MAX_COOKIE_PAIR_BYTES {
            return Err(SealError::TooLarge { bytes });
        }
        let sealed = key
            .aead
            .encrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: &plaintext,
                    aad: &key.aad(),
                },
            )
            .map_err(|_| SealError::Cipher)?;
        let mut body = Vec::with_capacity(NONCE_BYTES + sealed.len());
        body.extend_from_slice(nonce);
        body.extend_from_slice(&sealed);
        Ok(format!(
            "{VERSION}.{}.{}",
            key.id.as_str(),
            URL_SAFE_NO_PAD.encode(body)
        ))
    }

    /// The bytes `cookie_name=value` would take with `payload` sealed, computed without
    /// encrypting: to refuse a write before it has any effect.
    pub fn pair_bytes_for(&self, cookie_name: &str, payload: &CookiePayload) -> usize {
        self.pair_bytes_for_ref(cookie_name, payload.as_ref())
    }

    /// [`Self::pair_bytes_for`] of a borrowed payload.
    pub fn pair_bytes_for_ref(&self, cookie_name: &str, payload: PayloadRef<'_>) -> usize {
        self.pair_bytes_of(cookie_name, plaintext_len(payload))
    }

    fn pair_bytes_of(&self, cookie_name: &str, plaintext_len: usize) -> usize {
        let body_bytes = NONCE_BYTES + plaintext_len + TAG_BYTES;
        // Unpadded base64 takes 4 characters per 3 bytes, rounded up.
        let value_len = VERSION.len()
            + 1
            + self.sealing_key().id.as_str().len()
            + 1
            + (body_bytes * 4).div_ceil(3);
        pair_bytes(cookie_name.len(), value_len)
    }

    /// Opens a cookie value and refuses a session ended at `now` (Unix seconds).
    pub fn open(&self, value: &[u8], now: i64) -> Result<CookiePayload, OpenError> {
        let payload = self.open_any_time(value)?;
        if payload.is_expired(now) {
            return Err(OpenError::Expired);
        }
        Ok(payload)
    }

    /// Opens a cookie value whatever its expiry (for revocation, which needs the id of an
    /// expired cookie too, and for tests).
    pub fn open_any_time(&self, value: &[u8]) -> Result<CookiePayload, OpenError> {
        if value.len() > MAX_COOKIE_PAIR_BYTES {
            return Err(OpenError::TooLong);
        }
        let mut parts = value.splitn(3, |b| *b == b'.');
        let (Some(version), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(if value.starts_with(b"v1.") || value == b"v1" {
                OpenError::Malformed
            } else {
                OpenError::UnknownVersion
            });
        };
        if version != VERSION.as_bytes() {
            return Err(OpenError::UnknownVersion);
        }
        if kid.is_empty() || body.contains(&b'.') {
            return Err(OpenError::Malformed);
        }
        let Some(key) = self.keys.iter().find(|k| k.id.as_str().as_bytes() == kid) else {
            let well_formed = std::str::from_utf8(kid).is_ok_and(|k| KeyId::parse(k).is_some());
            return Err(if well_formed {
                OpenError::UnknownKey
            } else {
                OpenError::Malformed
            });
        };
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| OpenError::BadBase64)?;
        if body.len() < NONCE_BYTES + TAG_BYTES {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = body.split_at(NONCE_BYTES);
        let plaintext = key
            .aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &key.aad(),
                },
            )
            .map_err(|_| OpenError::BadTag)?;
        serde_json::from_slice(&plaintext).map_err(|_| OpenError::BadPayload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;
    use testkit::keys::{COOKIE_STORE_C0, COOKIE_STORE_C1};

    /// Known answers shared with the Python codec (`clients/python/tests/test_cookie_store.py`).
    const VECTORS: &str = include_str!("../../../testdata/cookie_store_vectors.json");
    const ID: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const T: i64 = 1_767_225_600;

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    fn key(id: &str, secret: &[u8]) -> CookieKey {
        CookieKey::new(KeyId::parse(id).unwrap(), secret)
    }

    /// The vectors' keys (testdata/test_keys.json), in order: `c1` seals, `c0` still opens.
    fn vector_keys() -> Vec<CookieKey> {
        [("c1", COOKIE_STORE_C1), ("c0", COOKIE_STORE_C0)]
            .into_iter()
            .map(|(id, secret)| key(id, &STANDARD.decode(secret).unwrap()))
            .collect()
    }

    fn ring(keys: Vec<CookieKey>) -> CookieKeyring {
        CookieKeyring::new(keys).unwrap()
    }

    fn only(kid: &str) -> CookieKeyring {
        ring(
            vector_keys()
                .into_iter()
                .filter(|k| k.id().as_str() == kid)
                .collect(),
        )
    }

    fn nonce(hex: &str) -> [u8; NONCE_BYTES] {
        let mut out = [0u8; NONCE_BYTES];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn payload(data: Value) -> CookiePayload {
        CookiePayload {
            id: SessionId::parse(ID).unwrap(),
            data: data.as_object().unwrap().clone(),
            user: Some("42".into()),
            created_at: T,
            issued_at: T,
            expires_at: T + 3600,
            ttl_seconds: 3600,
            browser_session: false,
            absolute_expires_at: None,
        }
    }

    #[test]
    fn a_borrowed_payload_is_the_same_plaintext_and_length() {
        for (data, user, end) in [
            (json!({}), None, None),
            (
                json!({"cart": ["x", 1, null], "name": "Zoë", "q": "\"\\\n"}),
                Some("u"),
                Some(T),
            ),
        ] {
            let mut owned = payload(data);
            owned.user = user.map(str::to_string);
            owned.absolute_expires_at = end;
            let bytes = serde_json::to_vec(&owned).unwrap();
            assert_eq!(plaintext(owned.as_ref()), bytes);
            assert_eq!(plaintext_len(owned.as_ref()), bytes.len());
        }
    }

    #[test]
    fn seals_and_opens_the_shared_known_answers() {
        let doc = vectors();
        let both = ring(vector_keys());
        let now = doc["now"].as_i64().unwrap();
        let name = doc["cookie_name"].as_str().unwrap();
        for vector in doc["vectors"].as_array().unwrap() {
            let label = vector["name"].as_str().unwrap();
            let plaintext = vector["plaintext"].as_str().unwrap();
            let cookie = vector["cookie"].as_str().unwrap();
            let parsed: CookiePayload = serde_json::from_str(plaintext).unwrap();
            assert_eq!(
                serde_json::to_string(&parsed).unwrap(),
                plaintext,
                "{label}: the payload serialises to the same bytes"
            );
            let sealer = only(vector["kid"].as_str().unwrap());
            let sealed = sealer.seal(name, &parsed, &nonce(vector["nonce"].as_str().unwrap()));
            assert_eq!(sealed.as_deref(), Ok(cookie), "{label}");
            assert_eq!(both.open(cookie.as_bytes(), now), Ok(parsed), "{label}");
        }
    }

    #[test]
    fn refuses_each_invalid_value_with_its_error() {
        let doc = vectors();
        let both = ring(vector_keys());
        let now = doc["now"].as_i64().unwrap();
        let invalid = doc["invalid"].as_array().unwrap();
        assert!(invalid.len() >= 10);
        for case in invalid {
            let label = case["name"].as_str().unwrap();
            let expected = match case["error"].as_str().unwrap() {
                "too_long" => OpenError::TooLong,
                "unknown_version" => OpenError::UnknownVersion,
                "malformed" => OpenError::Malformed,
                "unknown_key" => OpenError::UnknownKey,
                "bad_base64" => OpenError::BadBase64,
                "bad_tag" => OpenError::BadTag,
                "bad_payload" => OpenError::BadPayload,
                other => panic!("{label}: unknown error {other}"),
            };
            let cookie = case["cookie"].as_str().unwrap();
            assert_eq!(both.open(cookie.as_bytes(), now), Err(expected), "{label}");
        }
        for bytes in [&b"v1.c1.\xff\xfe"[..], b"v1.\xff.AAAA", b"\0", b"v1"] {
            assert!(both.open(bytes, now).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn a_value_one_past_the_pair_limit_is_refused_before_decoding() {
        let both = ring(vector_keys());
        let at_limit = format!("v1.c1.{}", "A".repeat(MAX_COOKIE_PAIR_BYTES - 6));
        assert_eq!(both.open(at_limit.as_bytes(), T), Err(OpenError::BadTag));
        let past = format!("{at_limit}A");
        assert_eq!(both.open(past.as_bytes(), T), Err(OpenError::TooLong));
    }

    #[test]
    fn derives_the_shared_new_ids() {
        let sealer = ring(vector_keys());
        for case in vectors()["new_ids"].as_array().unwrap() {
            let input = Freshness {
                request_id: case["request_id"].as_str().unwrap().as_bytes(),
                now_nanos: i128::from(case["now_nanos"].as_i64().unwrap()),
                counter: case["counter"].as_u64().unwrap(),
            };
            assert_eq!(sealer.new_id(&input).as_str(), case["id"].as_str().unwrap());
        }
    }

    #[test]
    fn new_ids_and_nonces_change_with_every_input_and_key() {
        let sealer = ring(vector_keys());
        let base = Freshness {
            request_id: b"req-1",
            now_nanos: 1,
            counter: 7,
        };
        let variants = [
            base,
            Freshness {
                request_id: b"req-2",
                ..base
            },
            Freshness {
                now_nanos: 2,
                ..base
            },
            Freshness { counter: 8, ..base },
            // The length prefix keeps a request id's tail from passing as the time.
            Freshness {
                request_id: b"req-1\0",
                now_nanos: 1 << 8,
                ..base
            },
        ];
        let ids: std::collections::BTreeSet<_> =
            variants.iter().map(|v| sealer.new_id(v)).collect();
        assert_eq!(ids.len(), variants.len());
        let nonces: std::collections::BTreeSet<_> =
            variants.iter().map(|v| sealer.nonce(v)).collect();
        assert_eq!(nonces.len(), variants.len());
        let id = sealer.new_id(&base);
        assert_eq!(sealer.new_id(&base), id, "a pure function of its inputs");
        let other_key = ring(vec![key("c1", &[9u8; 32])]);
        assert_ne!(other_key.new_id(&base), id, "unpredictable without the key");
        let id_bytes = URL_SAFE_NO_PAD.decode(id.as_str()).unwrap();
        assert_ne!(
            &id_bytes[..NONCE_BYTES],
            &sealer.nonce(&base)[..],
            "the nonce is not a prefix of the id"
        );
    }

    #[test]
    fn first_key_seals_every_key_opens_and_a_removed_key_is_invalid() {
        let old = only("c0");
        let rotated = ring(vector_keys());
        let p = payload(json!({"k": 1}));
        let old_cookie = old.seal("sid", &p, &[1; NONCE_BYTES]).unwrap();
        assert_eq!(rotated.open(old_cookie.as_bytes(), T), Ok(p.clone()));
        let new_cookie = rotated.seal("sid", &p, &[1; NONCE_BYTES]).unwrap();
        assert!(new_cookie.starts_with("v1.c1."), "{new_cookie}");
        assert_eq!(
            old.open(new_cookie.as_bytes(), T),
            Err(OpenError::UnknownKey)
        );
        assert_eq!(
            only("c1").open(old_cookie.as_bytes(), T),
            Err(OpenError::UnknownKey),
            "a cookie of a removed key is invalid"
        );
        assert!(CookieKeyring::new(Vec::new()).is_none());
    }

    #[test]
    fn expiry_and_the_absolute_limit_are_enforced_to_the_second() {
        let sealer = ring(vector_keys());
        let mut p = payload(json!({}));
        p.absolute_expires_at = Some(T + 1800);
        let cookie = sealer.seal("sid", &p, &[0; NONCE_BYTES]).unwrap();
        assert_eq!(sealer.open(cookie.as_bytes(), T + 1799), Ok(p.clone()));
        assert_eq!(
            sealer.open(cookie.as_bytes(), T + 1800),
            Err(OpenError::Expired),
            "the absolute limit"
        );
        p.absolute_expires_at = None;
        let cookie = sealer.seal("sid", &p, &[0; NONCE_BYTES]).unwrap();
        assert_eq!(sealer.open(cookie.as_bytes(), T + 3599), Ok(p.clone()));
        assert_eq!(
            sealer.open(cookie.as_bytes(), T + 3600),
            Err(OpenError::Expired)
        );
        assert_eq!(
            sealer.open_any_time(cookie.as_bytes()),
            Ok(p),
            "revocation can still read an expired cookie's id"
        );
    }

    #[test]
    fn the_pair_limit_holds_exactly_at_4096_and_one_past() {
        assert!(pair_fits(&"n".repeat(95), &"v".repeat(4000)));
        assert!(!pair_fits(&"n".repeat(96), &"v".repeat(4000)));
        let sealer = ring(vector_keys());
        let p = payload(json!({"blob": "x".repeat(2800)}));
        let probe = sealer.seal("s", &p, &[0; NONCE_BYTES]).unwrap();
        // A name that brings `name=value` to exactly the limit, then one byte more.
        let name = "s".repeat(MAX_COOKIE_PAIR_BYTES - 1 - probe.len());
        let at_limit = sealer.seal(&name, &p, &[0; NONCE_BYTES]).unwrap();
        assert_eq!(name.len() + 1 + at_limit.len(), MAX_COOKIE_PAIR_BYTES);
        assert_eq!(sealer.pair_bytes_for(&name, &p), MAX_COOKIE_PAIR_BYTES);
        assert_eq!(
            sealer.pair_bytes_for(&format!("{name}s"), &p),
            MAX_COOKIE_PAIR_BYTES + 1
        );
        assert!(pair_fits(&name, &at_limit));
        assert_eq!(sealer.open(at_limit.as_bytes(), T), Ok(p.clone()));
        let longer = format!("{name}s");
        assert_eq!(
            sealer.seal(&longer, &p, &[0; NONCE_BYTES]),
            Err(SealError::TooLarge {
                bytes: MAX_COOKIE_PAIR_BYTES + 1
            })
        );
        let bigger = payload(json!({"blob": "x".repeat(4000)}));
        assert!(matches!(
            sealer.seal("sid", &bigger, &[0; NONCE_BYTES]),
            Err(SealError::TooLarge { bytes }) if bytes > MAX_COOKIE_PAIR_BYTES
        ));
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let sealer = ring(vector_keys());
        let cookie = sealer
            .seal("sid", &payload(json!({"a": [1, 2]})), &[3; NONCE_BYTES])
            .unwrap();
        let bytes = cookie.as_bytes();
        for at in 0..bytes.len() {
            for replacement in [b'A', b'-', b'.', b'z'] {
                if bytes[at] == replacement {
                    continue;
                }
                let mut changed = bytes.to_vec();
                changed[at] = replacement;
                assert!(
                    sealer.open(&changed, T).is_err(),
                    "byte {at} changed to {replacement}"
                );
            }
        }
        assert!(sealer.open(&bytes[..bytes.len() - 1], T).is_err());
    }

    #[test]
    fn debug_never_shows_keys() {
        let shown = format!("{:?}", ring(vector_keys()));
        assert_eq!(
            shown,
            "CookieKeyring { keys: [CookieKey(c1), CookieKey(c0)] }"
        );
    }
}
