//! What the fuzz targets share: the filter configured as in production, from its own parser.

use filter::config::{Config, StoreMode};
use filter::store::cookie::CookieKeyring;
use serde_json::json;
use std::sync::OnceLock;

/// The key `k1` that signs (testdata/test_keys.json).
pub use testkit::keys::SIGNING as SECRET_K1;
/// The older key `k2` that still verifies.
pub use testkit::keys::SIGNING_OLD as SECRET_K2;
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
        "companion": {"cluster": "companion", "token": testkit::keys::COMPANION_TOKEN},
        "headers": {"map": {"roles": "x-user-roles", "name": "x-user-name"}},
    });
    match Config::parse(text.to_string().as_bytes()) {
        Ok(config) => config,
        Err(err) => panic!("the fuzz configuration is refused: {err:?}"),
    }
}

/// The cookie store key `c1` that seals, as in testdata/cookie_store_vectors.json, so its
/// cookies make good seeds.
pub use testkit::keys::COOKIE_STORE_C1 as COOKIE_SECRET_C1;
/// The older cookie store key `c0` that still opens.
pub use testkit::keys::COOKIE_STORE_C0 as COOKIE_SECRET_C0;

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
