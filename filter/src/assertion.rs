//! The signed session assertion (docs/architecture.md, "Injected headers"; the reasoning in
//! docs/security.md, "Session assertion"): a compact JWS (RFC 7515), HS256, over the injected
//! session claims, the request's `:authority` as `aud`, `iat` and a short `exp`, sent upstream
//! so an app can tell the filter's session from headers forged by a client that reached it
//! around the proxy.
//!
//! The cache-hit path pays for one short base64 encoding and about two SHA-256 blocks. The
//! claims that do not change per request (everything but `iat`, `exp` and `aud`) are encoded
//! once per resolved session, padded with JSON whitespace to a multiple of 3 bytes so their
//! base64 ends on a group boundary and the per-request tail can be encoded on its own and
//! appended; the HMAC state after that prefix is kept too, so a hit only feeds it the tail.

use crate::inject::Injection;
use crate::json_ascii;
use crate::request::Header;
use crate::token::KeyId;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use proto::Session;
use sha2::Sha256;
use std::fmt;
use std::fmt::Write as _;

/// The longest `:authority` an assertion names; a longer one (or none) gets no assertion.
/// Host names are at most 253 bytes, and a port adds at most 6.
pub const MAX_AUTHORITY_BYTES: usize = 259;
/// The default `assertion.ttl_seconds`.
pub const DEFAULT_TTL_SECONDS: u64 = 30;
/// The largest `assertion.ttl_seconds`: an assertion is for the request it came with.
pub const MAX_TTL_SECONDS: u64 = 300;
/// The issuer every assertion names.
pub const ISSUER: &str = "edge-session";

/// The longest per-request tail: `"iat":N,"exp":N,"aud":"<authority>"}` with 20-digit numbers.
const MAX_TAIL_BYTES: usize = 6 + 20 + 7 + 20 + 8 + MAX_AUTHORITY_BYTES + 2;
/// The base64 of the longest tail, the `.` and the signature: what a prepared prefix must
/// leave room for under `max_header_bytes`.
const MAX_SUFFIX_BYTES: usize = MAX_TAIL_BYTES.div_ceil(3) * 4 + 1 + 43;

/// `assertion` in the plugin configuration: the header, the lifetime, and the key that signs
/// (the first of `assertion.keys`; the others are listed for the apps, which verify with all).
#[derive(Clone)]
pub struct AssertionConfig {
    /// The request header it goes in, under the injected prefix (so a client's copy is stripped).
    pub header: String,
    pub ttl_seconds: u64,
    /// Every configured key id, the signing one first.
    pub key_ids: Vec<KeyId>,
    /// The base64url JOSE header naming the signing key, with the `.` after it.
    jose: String,
    mac: Hmac<Sha256>,
}

impl fmt::Debug for AssertionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionConfig")
            .field("header", &self.header)
            .field("ttl_seconds", &self.ttl_seconds)
            .field("key_ids", &self.key_ids)
            .finish_non_exhaustive()
    }
}

/// The part of a session's assertion that holds for every request while it is cached.
#[derive(Clone)]
pub struct Prepared {
    /// `<jose>.<static claims>`, base64url: the token's start.
    prefix: String,
    /// The HMAC state after `prefix`.
    mac: Hmac<Sha256>,
}

impl Prepared {
    /// The heap bytes it owns besides itself, for the cache's byte count.
    pub fn prefix_capacity(&self) -> usize {
        self.prefix.capacity()
    }
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prepared({} bytes)", self.prefix.len())
    }
}

/// Two prepared prefixes are alike when their text is: the state follows from it and the key.
impl PartialEq for Prepared {
    fn eq(&self, other: &Self) -> bool {
        self.prefix == other.prefix
    }
}

impl Eq for Prepared {}

impl AssertionConfig {
    /// `keys` holds at least one key (the configuration parser makes sure); the first signs.
    pub fn new(header: String, ttl_seconds: u64, keys: &[(KeyId, Vec<u8>)]) -> Option<Self> {
        let (id, secret) = keys.first()?;
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).ok()?;
        let header_json = format!(
            r#"{{"alg":"HS256","typ":"JWT","kid":{}}}"#,
            json_ascii::to_string(id.as_str())
        );
        let mut jose = URL_SAFE_NO_PAD.encode(header_json);
        jose.push('.');
        Some(Self {
            header,
            ttl_seconds,
            key_ids: keys.iter().map(|(id, _)| id.clone()).collect(),
            jose,
            mac,
        })
    }

    /// The static claims of a session, encoded and fed to the HMAC once. `None`, with the
    /// header named in `injection.omitted`, when an assertion for it could be over
    /// `max_bytes` (it is then never sent; the app falls back to the store).
    pub fn prepare(
        &self,
        session: &Session,
        injection: &mut Injection,
        max_bytes: usize,
    ) -> Option<Box<Prepared>> {
        let mut claims = String::with_capacity(256);
        let _ = write!(
            claims,
            r#"{{"iss":"{ISSUER}","state":"valid","sid":"{}","user":{},"data":{},"expires":"{}","browser":{},"ttl_seconds":{},"updated_at":"{}","#,
            session.id.as_str(),
            match &session.user {
                Some(user) => json_ascii::to_string(user),
                None => "null".to_string(),
            },
            json_ascii::to_string(&session.data),
            session.expires_at.to_rfc3339(),
            session.browser_session,
            session.ttl_seconds,
            session.updated_at.to_rfc3339(),
        );
        // JSON whitespace, so the encoding ends on a base64 group and the tail appends.
        while !claims.len().is_multiple_of(3) {
            claims.push(' ');
        }
        let mut prefix = String::with_capacity(self.jose.len() + claims.len().div_ceil(3) * 4);
        prefix.push_str(&self.jose);
        URL_SAFE_NO_PAD.encode_string(claims, &mut prefix);
        if prefix.len() + MAX_SUFFIX_BYTES > max_bytes {
            injection.omitted.push(self.header.clone());
            return None;
        }
        let mut mac = self.mac.clone();
        mac.update(prefix.as_bytes());
        Some(Box::new(Prepared { prefix, mac }))
    }

    /// The assertion for one request: the prepared claims with `iat` (the clock, in seconds),
    /// `exp` and `aud`, signed. `None` without a usable `:authority`: 1 to
    /// [`MAX_AUTHORITY_BYTES`] of visible ASCII other than `"` and `\` (an assertion that
    /// named no audience could be replayed to any app).
    pub fn sign(
        &self,
        prepared: &Prepared,
        authority: Option<&[u8]>,
        now_nanos: i128,
    ) -> Option<String> {
        let authority = authority.filter(|a| usable_authority(a))?;
        // Checked above: visible ASCII.
        let authority = std::str::from_utf8(authority).ok()?;
        // Within 20 digits each, as the size budget assumes (a clock before 1970 or past
        // u64 seconds is no clock to sign with).
        let iat = u64::try_from(now_nanos.div_euclid(1_000_000_000)).ok()?;
        let exp = iat.checked_add(self.ttl_seconds)?;
        let mut tail = String::with_capacity(48 + authority.len());
        let _ = write!(tail, r#""iat":{iat},"exp":{exp},"aud":"{authority}"}}"#);
        let mut token =
            String::with_capacity(prepared.prefix.len() + tail.len().div_ceil(3) * 4 + 44);
        token.push_str(&prepared.prefix);
        let signed_from = token.len();
        URL_SAFE_NO_PAD.encode_string(tail, &mut token);
        let mut mac = prepared.mac.clone();
        mac.update(&token.as_bytes()[signed_from..]);
        let signature = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Some(token)
    }
}

impl AssertionConfig {
    /// The header to add to a request whose headers are `headers`: `sign` with its
    /// `:authority`.
    pub fn for_request<'a>(
        &'a self,
        prepared: &Prepared,
        headers: &[Header<'_>],
        now_nanos: i128,
    ) -> Option<(&'a str, Vec<u8>)> {
        let authority = headers
            .iter()
            .find(|(name, _)| name == ":authority")
            .map(|(_, value)| value.as_ref());
        let token = self.sign(prepared, authority, now_nanos)?;
        Some((self.header.as_str(), token.into_bytes()))
    }
}

fn usable_authority(authority: &[u8]) -> bool {
    (1..=MAX_AUTHORITY_BYTES).contains(&authority.len())
        && authority
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b'"' && *b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn config(keys: &[(&str, &[u8])]) -> AssertionConfig {
        let keys: Vec<(KeyId, Vec<u8>)> = keys
            .iter()
            .map(|(id, s)| (KeyId::parse(id).unwrap(), s.to_vec()))
            .collect();
        AssertionConfig::new("x-session-assertion".into(), 30, &keys).unwrap()
    }

    fn session(data: Value, user: Option<&str>) -> Session {
        let id = proto::SessionId::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
        testkit::session(&id)
            .data(data)
            .user(user)
            .ttl_seconds(60)
            .browser_session(true)
            .updated_at("2026-01-01T00:00:00.125Z")
            .build()
    }

    fn empty() -> Injection {
        Injection {
            headers: vec![],
            omitted: vec![],
        }
    }

    /// Splits and checks a token the way any JWT library does, from scratch.
    fn verify(token: &str, secret: &[u8]) -> (Value, Value) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        mac.verify_slice(&signature).expect("signature verifies");
        let decode = |part: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        (decode(parts[0]), decode(parts[1]))
    }

    fn signed(config: &AssertionConfig, session: &Session, authority: &[u8]) -> Option<String> {
        let prepared = config.prepare(session, &mut empty(), 1 << 20).unwrap();
        config.sign(&prepared, Some(authority), 1_767_225_600_500_000_000)
    }

    #[test]
    fn signs_a_jws_any_library_verifies_with_every_claim() {
        let config = config(&[("a2", SECRET)]);
        for (data, user) in [
            (json!({"name": "Zoë", "cart": [1, 2]}), Some("u-\"42\"")),
            (json!({}), None),
            (json!({"k": "x".repeat(7)}), Some("é")),
        ] {
            let s = session(data.clone(), user);
            let token = signed(&config, &s, b"app.example:8443").unwrap();
            assert!(token.is_ascii() && !token.contains(['=', '+', '/', ' ']));
            let (header, claims) = verify(&token, SECRET);
            assert_eq!(header, json!({"alg": "HS256", "typ": "JWT", "kid": "a2"}));
            assert_eq!(
                claims,
                json!({"iss": "edge-session", "state": "valid",
                    "sid": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
                    "user": user, "data": data, "expires": "2026-01-01T00:01:00Z",
                    "browser": true, "ttl_seconds": 60, "updated_at": "2026-01-01T00:00:00.125Z",
                    "iat": 1_767_225_600_i64, "exp": 1_767_225_630_i64,
                    "aud": "app.example:8443"})
            );
        }
    }

    #[test]
    fn a_wrong_key_or_a_changed_byte_does_not_verify() {
        let config = config(&[("a2", SECRET)]);
        let token = signed(&config, &session(json!({}), Some("u")), b"app").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(b"another key entirely, 32 bytes!!").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert!(
            mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
                .is_err()
        );
        // Another authority changes the signed bytes: the signature is over `aud` too.
        let other = signed(&config, &session(json!({}), Some("u")), b"evil").unwrap();
        assert_ne!(
            token.rsplit('.').next(),
            other.rsplit('.').next(),
            "aud is signed"
        );
    }

    #[test]
    fn the_first_key_signs_and_names_itself() {
        let config = config(&[
            ("new", SECRET),
            ("old", b"fedcba9876543210fedcba9876543210"),
        ]);
        let token = signed(&config, &session(json!({}), None), b"app").unwrap();
        let (header, _) = verify(&token, SECRET);
        assert_eq!(header["kid"], "new");
        assert_eq!(config.key_ids.len(), 2);
    }

    #[test]
    fn no_usable_authority_no_assertion_and_the_limit_is_exact() {
        let config = config(&[("a", SECRET)]);
        let s = session(json!({}), None);
        let prepared = config.prepare(&s, &mut empty(), 1 << 20).unwrap();
        let longest = "a".repeat(MAX_AUTHORITY_BYTES);
        let token = config.sign(&prepared, Some(longest.as_bytes()), 0).unwrap();
        assert_eq!(verify(&token, SECRET).1["aud"], longest.as_str());
        let past = "a".repeat(MAX_AUTHORITY_BYTES + 1);
        assert_eq!(config.sign(&prepared, Some(past.as_bytes()), 0), None);
        for bad in [&b""[..], b"a\"b", b"a\\b", b"a b", b"a\x7fb", b"\xc3\xa9"] {
            assert_eq!(config.sign(&prepared, Some(bad), 0), None, "{bad:?}");
        }
        assert_eq!(config.sign(&prepared, None, 0), None);
        assert_eq!(
            config.sign(&prepared, Some(b"app"), -1),
            None,
            "before 1970"
        );
    }

    /// The budget is exact: a prefix that leaves room for the longest tail and signature
    /// is prepared, one byte less room is omitted and reported.
    #[test]
    fn an_assertion_that_could_pass_max_header_bytes_is_omitted_and_reported() {
        let config = config(&[("a", SECRET)]);
        let s = session(json!({"name": "x".repeat(300)}), Some("u"));
        let prefix = config
            .prepare(&s, &mut empty(), 1 << 20)
            .unwrap()
            .prefix
            .len();
        let limit = prefix + MAX_SUFFIX_BYTES;
        let mut injection = empty();
        let prepared = config.prepare(&s, &mut injection, limit).unwrap();
        assert!(injection.omitted.is_empty());
        let longest = "a".repeat(MAX_AUTHORITY_BYTES);
        let token = config
            .sign(
                &prepared,
                Some(longest.as_bytes()),
                (i128::from(u64::MAX) - 300) * 1_000_000_000,
            )
            .unwrap();
        assert!(token.len() <= limit, "{} > {limit}", token.len());
        assert_eq!(config.prepare(&s, &mut injection, limit - 1), None);
        assert_eq!(injection.omitted, ["x-session-assertion"]);
    }

    #[test]
    fn debug_never_shows_the_key_or_the_claims() {
        let config = config(&[("a", SECRET)]);
        let prepared = config
            .prepare(
                &session(json!({"secret": "hunter2"}), None),
                &mut empty(),
                1 << 20,
            )
            .unwrap();
        let shown = format!("{config:?} {prepared:?}");
        assert!(
            !shown.contains("0123456789abcdef") && !shown.contains("AAEC"),
            "{shown}"
        );
    }
}
