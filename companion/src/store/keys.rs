//! Session data keys as stored in MongoDB. Any JSON key must work (Django uses `_auth_user_id`,
//! apps use `cart.items`), but MongoDB reads `.` in an update path as nesting and a leading `$`
//! as an operator, and BSON keys cannot hold NUL. Keys are stored with a reversible escape:
//! `%` becomes `%25`, `.` `%2E`, NUL `%00` and a leading `$` `%24`, so `data.<key>` paths stay
//! unambiguous and the API always shows the original keys.

use std::fmt;

/// Why a key cannot be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    TooLong { max: usize },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("data keys must not be empty"),
            Self::TooLong { max } => write!(f, "data keys must be at most {max} bytes"),
        }
    }
}

/// The stored form of `key`; `max_bytes` bounds the original key.
pub fn escape(key: &str, max_bytes: usize) -> Result<String, KeyError> {
    if !proto::valid_data_key(key) {
        return Err(KeyError::Empty);
    }
    if key.len() > max_bytes {
        return Err(KeyError::TooLong { max: max_bytes });
    }
    let mut out = String::with_capacity(key.len() + 4);
    for (i, ch) in key.char_indices() {
        match ch {
            '%' => out.push_str("%25"),
            '.' => out.push_str("%2E"),
            '\0' => out.push_str("%00"),
            '$' if i == 0 => out.push_str("%24"),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The original key of a stored one. Keys this module did not write are returned as they are.
pub fn unescape(stored: &str) -> String {
    let mut out = String::with_capacity(stored.len());
    let mut rest = stored;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let decoded = match rest.get(at + 1..at + 3) {
            Some("25") => Some('%'),
            Some("2E") => Some('.'),
            Some("00") => Some('\0'),
            Some("24") => Some('$'),
            _ => None,
        };
        match decoded {
            Some(ch) => {
                out.push(ch);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_mongodb_would_misread_and_round_trips() {
        let cases = [
            ("_auth_user_id", "_auth_user_id"),
            ("cart.items", "cart%2Eitems"),
            ("$where", "%24where"),
            ("a$b", "a$b"),
            ("100%", "100%25"),
            ("%2E", "%252E"),
            ("nul\0byte", "nul%00byte"),
            ("日本.語", "日本%2E語"),
            ("..", "%2E%2E"),
        ];
        for (key, stored) in cases {
            let escaped = escape(key, 256).unwrap();
            assert_eq!(escaped, stored, "{key:?}");
            assert!(!escaped.contains('.') && !escaped.starts_with('$') && !escaped.contains('\0'));
            assert_eq!(unescape(&escaped), key, "{key:?} round trip");
        }
    }

    #[test]
    fn refuses_empty_and_long_keys() {
        assert_eq!(escape("", 256), Err(KeyError::Empty));
        assert_eq!(
            escape(&"k".repeat(257), 256),
            Err(KeyError::TooLong { max: 256 })
        );
        assert!(escape(&"k".repeat(256), 256).is_ok());
    }

    #[test]
    fn unescape_leaves_foreign_percent_signs() {
        assert_eq!(unescape("50%off"), "50%off");
        assert_eq!(unescape("%"), "%");
        assert_eq!(unescape("%2"), "%2");
    }
}
