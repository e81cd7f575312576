//! What the fuzz targets share: the filter configured as in production, from its own parser.

use filter::config::{Config, StoreMode};
use filter::store::cookie::CookieKeyring;
use serde_json::json;
use std::sync::OnceLock;

/// 32 bytes 0x01..0x20, base64: the key `k1` that signs.
pub const SECRET_K1: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
/// 32 bytes 0x65..0x84, base64: the older key `k2` that still verifies.
pub const SECRET_K2: &str = "ZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4Q=";
/// The session the resolve target's replies are expected to be about.
pub const EXPECTED_ID: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
/// 2026-01-01T00:00:00Z, the resolve target's clock.
pub const NOW_NANOS: i128 = 1_767_225_600_000_000_000;

/// A configuration with these keys (the first signs) and two mapped headers.
pub fn config(keys: &[(&str, &str)]) -> Config {
    let keys: Vec<_> = keys
        .iter()
        .map(|(id, secret)| json!({"id": id, "secret": secret}))
        .collect();
    let text = json!({
        "keys": keys,
        "companion": {"cluster": "companion", "token": "fuzz-token-0123456789abcdefghijklmn"},
        "headers": {"map": {"roles": "x-user-roles", "name": "x-user-name"}},
    });
    match Config::parse(text.to_string().as_bytes()) {
        Ok(config) => config,
        Err(err) => panic!("the fuzz configuration is refused: {err:?}"),
    }
}

/// 32 bytes 0x00..0x1f, base64: the cookie store key `c1` that seals (as in
/// testdata/cookie_store_vectors.json, so its cookies make good seeds).
pub const COOKIE_SECRET_C1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// 32 bytes 0x80..0x9f, base64: the older cookie store key `c0` that still opens.
pub const COOKIE_SECRET_C0: &str = "gIGCg4SFhoeIiYqLjI2Oj5CRkpOUlZaXmJmam5ydnp8=";

/// The cookie store's keys as the parser makes them from a cookie-mode configuration with
/// these keys (the first seals).
pub fn cookie_keys(keys: &[(&str, &str)]) -> CookieKeyring {
    let keys: Vec<_> = keys
        .iter()
        .map(|(id, secret)| json!({"id": id, "secret": secret}))
        .collect();
    let text = json!({
        "keys": [{"id": "k1", "secret": SECRET_K1}],
        "store": "cookie",
        "cookie_store": {"keys": keys},
    });
    match Config::parse(text.to_string().as_bytes()).map(|c| c.store) {
        Ok(StoreMode::Cookie(keys)) => keys,
        Ok(StoreMode::Companion) => panic!("the fuzz configuration is not in cookie mode"),
        Err(err) => panic!("the fuzz cookie configuration is refused: {err:?}"),
    }
}

/// The configuration of the fuzz targets, parsed once: `k1` signs, `k2` verifies.
pub fn rotated() -> &'static Config {
    static ROTATED: OnceLock<Config> = OnceLock::new();
    ROTATED.get_or_init(|| config(&[("k1", SECRET_K1), ("k2", SECRET_K2)]))
}
