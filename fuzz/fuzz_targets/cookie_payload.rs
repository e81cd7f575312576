//! The cookie store decoder (`filter::store::cookie::CookieKeyring::open`): arbitrary bytes
//! never panic, and what opens re-seals to a value that opens to the same session. Round
//! trip: a payload made from the input seals, opens to itself, and any single-byte change,
//! deletion or insertion is refused.
#![no_main]

use edge_session_fuzz::{COOKIE_SECRET_C0, COOKIE_SECRET_C1, cookie_keys};
use filter::store::cookie::{
    CookieKeyring, CookiePayload, MAX_COOKIE_PAIR_BYTES, NONCE_BYTES, OpenError, SealError,
};
use libfuzzer_sys::fuzz_target;
use proto::SessionId;
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;

/// `c1` seals, `c0` still opens.
fn rotated() -> &'static CookieKeyring {
    static RING: OnceLock<CookieKeyring> = OnceLock::new();
    RING.get_or_init(|| cookie_keys(&[("c1", COOKIE_SECRET_C1), ("c0", COOKIE_SECRET_C0)]))
}

fuzz_target!(|data: &[u8]| {
    let ring = rotated();
    // Arbitrary input: never a panic, and what opens is a session that seals and opens again.
    match ring.open_any_time(data) {
        Ok(payload) => {
            let nonce = [7u8; NONCE_BYTES];
            match ring.seal("sid", &payload, &nonce) {
                Ok(again) => assert_eq!(
                    ring.open_any_time(again.as_bytes()),
                    Ok(payload.clone()),
                    "a re-sealed session does not open to itself"
                ),
                // A value near the limit may not fit beside the name, or may re-serialise a
                // little longer (another writer's number formatting).
                Err(SealError::TooLarge { .. }) if data.len() > MAX_COOKIE_PAIR_BYTES - 100 => {}
                Err(err) => panic!("an opened session does not seal again: {err}"),
            }
            let expired = ring.open(data, NOW);
            assert_eq!(
                expired.is_err(),
                payload.is_expired(NOW),
                "open and is_expired disagree"
            );
        }
        Err(OpenError::Expired) => panic!("open_any_time never says expired"),
        Err(_) => {}
    }
    // Round trip with a session made from the input.
    let Some((id_bytes, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let (edit, text) = rest.split_at(rest.len().min(2));
    let mut map = Map::new();
    map.insert(
        "v".into(),
        Value::String(String::from_utf8_lossy(text).into_owned()),
    );
    let payload = CookiePayload {
        id: SessionId::from_bytes(id_bytes),
        data: map,
        user: None,
        created_at: NOW,
        issued_at: NOW,
        expires_at: NOW + 60,
        ttl_seconds: 60,
        browser_session: false,
        absolute_expires_at: None,
    };
    let Ok(cookie) = ring.seal("sid", &payload, &[1u8; NONCE_BYTES]) else {
        return;
    };
    let cookie = cookie.into_bytes();
    assert_eq!(
        ring.open(&cookie, NOW),
        Ok(payload),
        "a sealed session does not open"
    );
    let (at, with) = match edit {
        [a, b] => (usize::from(*a) % cookie.len(), *b),
        [a] => (usize::from(*a) % cookie.len(), 0),
        _ => (0, 0),
    };
    let mut changed = cookie.clone();
    changed[at] ^= with.max(1);
    assert!(ring.open(&changed, NOW).is_err(), "a changed byte still opens");
    let mut shorter = cookie.clone();
    shorter.remove(at);
    assert!(ring.open(&shorter, NOW).is_err(), "a deleted byte still opens");
    let mut longer = cookie;
    longer.insert(at, with);
    assert!(ring.open(&longer, NOW).is_err(), "an inserted byte still opens");
});
