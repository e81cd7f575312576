//! Request bodies and errors of the companion's `/v1` API. Request bodies refuse unknown
//! fields, so a typo in a client is a 400, not a silently ignored setting.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How deeply session data may nest: a value inside more than this many objects and arrays
/// (the data object itself counts as one) is refused. The filter checks it before it writes,
/// the companion before it stores, so a too-deep control header is refused by name instead of
/// failing as a write. MongoDB itself stops at 100 levels of documents.
pub const MAX_DATA_DEPTH: usize = 64;

/// Whether every value in `data` lies within `MAX_DATA_DEPTH` levels. Iterative, so hostile
/// input cannot exhaust the stack.
pub fn data_within_depth(data: &Map<String, Value>) -> bool {
    let mut stack: Vec<(&Value, usize)> = data.values().map(|v| (v, 1)).collect();
    while let Some((value, depth)) = stack.pop() {
        if depth > MAX_DATA_DEPTH {
            return false;
        }
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    true
}

/// The longest user id, in bytes of UTF-8. The filter refuses a longer `x-session-user`
/// before it writes, the companion before it stores or looks one up.
pub const MAX_USER_BYTES: usize = 256;

/// Whether `user` is a user id: 1 to [`MAX_USER_BYTES`] bytes without control characters
/// (C0, DEL and C1: a user id ends up in request headers and logs).
pub fn valid_user(user: &str) -> bool {
    !user.is_empty() && user.len() <= MAX_USER_BYTES && !user.chars().any(char::is_control)
}

/// `POST /v1/sessions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_session: Option<bool>,
}

/// `PATCH /v1/sessions/{id}`: `set` and `unset` apply as one atomic update.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unset: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_session: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub touch: bool,
}

/// `DELETE /v1/users/{user}/sessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: u64,
}

/// The `error` code of an error answer; each matches one HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::NotFound => 404,
            Self::PayloadTooLarge => 413,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }
}

/// `{error, message}`: every error answer of the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_have_the_documented_shape() {
        let patch = PatchSession {
            set: Some(json!({"a": 1}).as_object().cloned().unwrap_or_default()),
            unset: Some(vec!["b".into()]),
            touch: true,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({"set": {"a": 1}, "unset": ["b"], "touch": true})
        );
        assert_eq!(
            serde_json::to_value(CreateSession::default()).unwrap(),
            json!({})
        );
        let error = ApiError {
            error: ErrorCode::PayloadTooLarge,
            message: "too big".into(),
        };
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"error": "payload_too_large", "message": "too big"})
        );
        assert_eq!(ErrorCode::Unavailable.http_status(), 503);
    }

    #[test]
    fn unknown_fields_in_request_bodies_are_refused() {
        assert!(serde_json::from_value::<CreateSession>(json!({"ttl": 5})).is_err());
        assert!(serde_json::from_value::<PatchSession>(json!({"sett": {}})).is_err());
        let parsed: PatchSession = serde_json::from_value(json!({"touch": true})).unwrap();
        assert!(parsed.touch);
    }

    #[test]
    fn user_ids_are_1_to_256_bytes_without_control_characters() {
        assert!(valid_user("alice"));
        assert!(
            valid_user("Alice Smith <alice@example.com>"),
            "spaces are text"
        );
        assert!(valid_user(&"u".repeat(MAX_USER_BYTES)), "exactly the limit");
        assert!(
            !valid_user(&"u".repeat(MAX_USER_BYTES + 1)),
            "one byte past"
        );
        // The limit counts bytes, not characters: 128 two-byte characters are 256 bytes.
        assert!(valid_user(&"é".repeat(128)));
        assert!(!valid_user(&format!("{}u", "é".repeat(128))));
        assert!(!valid_user(""));
        for control in ['\0', '\t', '\n', '\r', '\u{7f}', '\u{85}', '\u{9f}'] {
            assert!(!valid_user(&format!("a{control}b")), "{control:?}");
        }
    }

    /// `depth` levels: `{"d": {"d": ... 1}}` with the data object as level one.
    fn nested(depth: usize, array: bool) -> Map<String, Value> {
        let mut value = json!(1);
        for _ in 1..depth {
            value = if array {
                json!([value])
            } else {
                json!({ "d": value })
            };
        }
        json!({ "d": value }).as_object().cloned().unwrap()
    }

    #[test]
    fn data_depth_is_counted_from_the_data_object() {
        for array in [false, true] {
            assert!(data_within_depth(&nested(MAX_DATA_DEPTH, array)));
            assert!(!data_within_depth(&nested(MAX_DATA_DEPTH + 1, array)));
        }
        assert!(data_within_depth(&Map::new()));
        let mut wide = Map::new();
        wide.insert("ok".into(), json!([1, [2]]));
        wide.insert("deep".into(), Value::Object(nested(MAX_DATA_DEPTH, false)));
        assert!(!data_within_depth(&wide), "one deep value is enough");
    }
}
