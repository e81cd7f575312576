//! What the fuzz targets share: the filter configured as in production, from its own parser.

use filter::config::Config;
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

/// The configuration of the fuzz targets, parsed once: `k1` signs, `k2` verifies.
pub fn rotated() -> &'static Config {
    static ROTATED: OnceLock<Config> = OnceLock::new();
    ROTATED.get_or_init(|| config(&[("k1", SECRET_K1), ("k2", SECRET_K2)]))
}
