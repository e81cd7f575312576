//! The rules every part applies to its secrets: the cookie keys (filter) and the companion's
//! bearer token (filter and companion), so both sides refuse the same values.
//!
//! A placeholder (a value containing [`PLACEHOLDER_MARKER`], as the shipped templates do) is
//! always refused: it is a template someone forgot to fill in, never a choice. A weak value
//! (too short, too few distinct symbols, or a key that is text instead of random bytes) is
//! refused unless the operator turned on the explicit development switch of that part, which
//! then logs loudly at start. The rules are deliberately simple, so an operator can predict
//! them; each is far from what a real random secret ever hits:
//!
//! - a key is at least [`MIN_KEY_BYTES`] bytes, holds at least [`MIN_KEY_DISTINCT_BYTES`]
//!   distinct byte values, and is not all printable ASCII. 32 random bytes hold about 30
//!   distinct values; fewer than 16 happens with a probability near 1e-16, and all printable
//!   near 1e-14. A passphrase in base64 ("dev-only-secret...") is text, and refused.
//! - a token is at least [`MIN_TOKEN_CHARS`] characters (`openssl rand -hex 16` is exactly
//!   that: 128 bits) with at least [`MIN_TOKEN_DISTINCT_CHARS`] distinct characters; 32 random
//!   hex digits have fewer than 6 with a probability near 1e-13.

use std::fmt;

/// The text the shipped templates put where a secret must go.
pub const PLACEHOLDER_MARKER: &str = "REPLACE-ME";
/// The shortest cookie key, in bytes (HMAC-SHA256's block of security).
pub const MIN_KEY_BYTES: usize = 32;
/// The fewest distinct byte values a key may hold.
pub const MIN_KEY_DISTINCT_BYTES: usize = 16;
/// The shortest companion token, in characters.
pub const MIN_TOKEN_CHARS: usize = 32;
/// The fewest distinct characters a companion token may hold.
pub const MIN_TOKEN_DISTINCT_CHARS: usize = 6;

/// Why a secret is refused. Never carries the secret itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weakness {
    /// It contains the templates' placeholder marker: refused even in development.
    Placeholder,
    /// Shorter than the minimum (bytes for a key, characters for a token).
    TooShort { min: usize },
    /// Fewer distinct symbols than the minimum.
    TooFewDistinct { min: usize },
    /// A key made only of printable ASCII: a passphrase, not random bytes.
    Text,
}

impl Weakness {
    /// Whether the development switch may accept a secret refused for this reason.
    pub fn allowed_in_development(self) -> bool {
        self != Self::Placeholder
    }
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Placeholder => write!(
                f,
                "is the template's placeholder ({PLACEHOLDER_MARKER}...): put a real secret there"
            ),
            Self::TooShort { min } => write!(f, "is shorter than {min}"),
            Self::TooFewDistinct { min } => {
                write!(f, "has fewer than {min} distinct values: not random")
            }
            Self::Text => write!(
                f,
                "is printable text, not random bytes (use the base64 of `openssl rand 32`)"
            ),
        }
    }
}

/// Whether `value` holds the placeholder marker, in any case.
pub fn is_placeholder(value: &[u8]) -> bool {
    let marker = PLACEHOLDER_MARKER.as_bytes();
    value
        .windows(marker.len())
        .any(|window| window.eq_ignore_ascii_case(marker))
}

fn distinct(bytes: &[u8]) -> usize {
    let mut seen = [false; 256];
    for b in bytes {
        seen[usize::from(*b)] = true;
    }
    seen.iter().filter(|s| **s).count()
}

/// Checks a cookie key: `written` as it appears in the configuration (base64), `decoded` the
/// bytes it stands for.
pub fn key_weakness(written: &str, decoded: &[u8]) -> Option<Weakness> {
    if is_placeholder(written.as_bytes()) || is_placeholder(decoded) {
        Some(Weakness::Placeholder)
    } else if decoded.len() < MIN_KEY_BYTES {
        Some(Weakness::TooShort { min: MIN_KEY_BYTES })
    } else if distinct(decoded) < MIN_KEY_DISTINCT_BYTES {
        Some(Weakness::TooFewDistinct {
            min: MIN_KEY_DISTINCT_BYTES,
        })
    } else if decoded.iter().all(|b| (0x20..0x7f).contains(b)) {
        Some(Weakness::Text)
    } else {
        None
    }
}

/// Checks the companion's bearer token.
pub fn token_weakness(token: &str) -> Option<Weakness> {
    if is_placeholder(token.as_bytes()) {
        Some(Weakness::Placeholder)
    } else if token.chars().count() < MIN_TOKEN_CHARS {
        Some(Weakness::TooShort {
            min: MIN_TOKEN_CHARS,
        })
    } else if distinct(token.as_bytes()) < MIN_TOKEN_DISTINCT_CHARS {
        Some(Weakness::TooFewDistinct {
            min: MIN_TOKEN_DISTINCT_CHARS,
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes 0 to 31: the project's test key.
    fn test_key() -> Vec<u8> {
        (0..32).collect()
    }

    #[test]
    fn random_looking_keys_pass() {
        assert_eq!(key_weakness("x", &test_key()), None);
        let mut key: Vec<u8> = (0..16).collect();
        key.extend(std::iter::repeat_n(0x80, 16));
        assert_eq!(
            key_weakness("x", &key),
            None,
            "exactly the distinct minimum, not text"
        );
    }

    #[test]
    fn placeholders_are_refused_written_or_decoded_in_any_case() {
        let text = b"REPLACE-ME: 32+ random bytes, base64";
        assert_eq!(key_weakness("x", text), Some(Weakness::Placeholder));
        assert_eq!(
            key_weakness("replace-me-later", &test_key()),
            Some(Weakness::Placeholder)
        );
        assert_eq!(
            token_weakness("REPLACE-ME-openssl-rand-hex-24"),
            Some(Weakness::Placeholder)
        );
        assert!(!Weakness::Placeholder.allowed_in_development());
    }

    #[test]
    fn short_uniform_and_text_keys_are_weak() {
        assert_eq!(
            key_weakness("x", &test_key()[..31]),
            Some(Weakness::TooShort { min: 32 })
        );
        assert_eq!(
            key_weakness("x", &[0; 32]),
            Some(Weakness::TooFewDistinct { min: 16 })
        );
        let mut fifteen: Vec<u8> = (0..15).collect();
        fifteen.extend(std::iter::repeat_n(0, 17));
        assert_eq!(
            key_weakness("x", &fifteen),
            Some(Weakness::TooFewDistinct { min: 16 }),
            "one below the distinct minimum"
        );
        assert_eq!(
            key_weakness("x", b"dev-only-secret-do-not-use-in-production!"),
            Some(Weakness::Text)
        );
        assert!(Weakness::Text.allowed_in_development());
    }

    #[test]
    fn tokens_need_length_and_variety() {
        let good = "0123456789abcdef0123456789abcdef";
        assert_eq!(token_weakness(good), None, "exactly the minimum length");
        assert_eq!(
            token_weakness(&good[..31]),
            Some(Weakness::TooShort { min: 32 })
        );
        assert_eq!(token_weakness("t"), Some(Weakness::TooShort { min: 32 }));
        assert_eq!(
            token_weakness(&"abcde".repeat(8)),
            Some(Weakness::TooFewDistinct { min: 6 })
        );
        assert_eq!(token_weakness(&"abcdef".repeat(6)), None);
    }
}
