//! Request bodies and errors of the companion's `/v1` API. Request bodies refuse unknown
//! fields, so a typo in a client is a 400, not a silently ignored setting.

use crate::session::Timestamp;
use crate::session_handle::SessionHandle;
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

/// Whether `key` may name a value in session data: any string but the empty one. The filter
/// refuses an `x-session-set` with an empty key before it writes, the companion refuses one
/// at any depth before it stores (and bounds a key's length by its own `--max-key-bytes`).
pub fn valid_data_key(key: &str) -> bool {
    !key.is_empty()
}

/// The lifetime of a session that asks for none, in seconds: two weeks, as Django's
/// `SESSION_COOKIE_AGE`. The filter's `ttl_seconds` and the companion's
/// `--default-ttl-seconds` default to it, so a cookie and its session end together.
pub const DEFAULT_TTL_SECONDS: u64 = 1_209_600;

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

/// `POST /v1/sessions`: everything a create may carry. [`CreateSession`] is the part the
/// filter sends today; every `CreateSession` is also a valid `CreateSessionRequest` (see
/// `From`), so the filter moves to this type by adding the fields it wants to send.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_session: Option<bool>,
    /// The longest the session may live from its creation, whatever touches it gets; the
    /// companion's own default applies too, and the smaller wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_ttl_seconds: Option<u64>,
    /// The client's `User-Agent` as the filter saw it; cut to [`MAX_USER_AGENT_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client's address as the filter saw it; cut to [`MAX_CLIENT_ADDRESS_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
}

impl From<CreateSession> for CreateSessionRequest {
    fn from(create: CreateSession) -> Self {
        Self {
            data: create.data,
            user: create.user,
            ttl_seconds: create.ttl_seconds,
            browser_session: create.browser_session,
            ..Self::default()
        }
    }
}

/// `PATCH /v1/sessions/{id}`: everything a patch may carry. [`PatchSession`] is the part the
/// filter sends today, and parses as this type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchSessionRequest {
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
    /// A new absolute lifetime, counted from the session's creation (never from now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_ttl_seconds: Option<u64>,
}

impl From<PatchSession> for PatchSessionRequest {
    fn from(patch: PatchSession) -> Self {
        Self {
            set: patch.set,
            unset: patch.unset,
            user: patch.user,
            ttl_seconds: patch.ttl_seconds,
            browser_session: patch.browser_session,
            touch: patch.touch,
            absolute_ttl_seconds: None,
        }
    }
}

/// `POST /v1/sessions/{id}/cycle`: the body is optional (an empty body is `{}`). The client's
/// user agent and address, when given, replace the session's: a cycle is usually a login.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
}

/// The most bytes of a client's user agent a session keeps; longer ones are cut at the last
/// character boundary within it, never refused (a long `User-Agent` must not break a login).
pub const MAX_USER_AGENT_BYTES: usize = 512;
/// The most bytes of a client's address a session keeps, cut like the user agent. An IPv6
/// address with a zone and a port fits in 64.
pub const MAX_CLIENT_ADDRESS_BYTES: usize = 128;

/// The longest prefix of `text` that is at most `max_bytes` long and ends on a character
/// boundary.
pub fn truncate_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The most ids one `POST /v1/sessions/seen` may carry.
pub const MAX_SEEN_IDS: usize = 1000;

/// `POST /v1/sessions/seen`: sessions a proxy served since its last report. Ids are checked
/// one by one by the companion, so a bad one is named by its index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenSessions {
    pub ids: Vec<String>,
}

/// The answer to `POST /v1/sessions/seen`: how many of the ids named a live session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub seen: u64,
}

/// One entry of `GET /v1/users/{user}/sessions`: what a user may be shown about a session of
/// theirs. Never the id (the handle names it) and never its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub handle: SessionHandle,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub browser_session: bool,
    pub user_agent: Option<String>,
    pub client_address: Option<String>,
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
    /// The revocation feed cannot continue from the cursor given: drop what the feed was
    /// keeping fresh and start again from the cursor in the answer (410).
    Resync,
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
            Self::Resync => 410,
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
    fn a_data_key_is_any_string_but_the_empty_one() {
        assert!(!valid_data_key(""));
        for key in [" ", "a", "$set", "cart.items", "\0", "_auth_user_id"] {
            assert!(valid_data_key(key), "{key:?}");
        }
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

    /// The filter still sends the older bodies; each parses, unchanged, as the full one.
    #[test]
    fn the_bodies_the_filter_sends_today_parse_as_the_full_ones() {
        let create = CreateSession {
            data: json!({"a": 1}).as_object().cloned(),
            user: Some("u".into()),
            ttl_seconds: Some(60),
            browser_session: Some(true),
        };
        let wire = serde_json::to_value(&create).unwrap();
        let full: CreateSessionRequest = serde_json::from_value(wire).unwrap();
        assert_eq!(full, CreateSessionRequest::from(create));
        let patch = PatchSession {
            set: json!({"b": 2}).as_object().cloned(),
            unset: Some(vec!["c".into()]),
            touch: true,
            ..Default::default()
        };
        let wire = serde_json::to_value(&patch).unwrap();
        let full: PatchSessionRequest = serde_json::from_value(wire).unwrap();
        assert_eq!(full, PatchSessionRequest::from(patch));
        assert!(serde_json::from_value::<CycleSession>(json!({})).is_ok());
        for (body, ok) in [
            (
                json!({"absolute_ttl_seconds": 5, "user_agent": "x", "client_address": "::1"}),
                true,
            ),
            (json!({"absolute_ttl": 5}), false),
            (json!({"absolute_ttl_seconds": -1}), false),
        ] {
            assert_eq!(
                serde_json::from_value::<CreateSessionRequest>(body.clone()).is_ok(),
                ok,
                "{body}"
            );
        }
        assert!(serde_json::from_value::<CycleSession>(json!({"user": "x"})).is_err());
        assert!(serde_json::from_value::<SeenSessions>(json!({"ids": [], "x": 1})).is_err());
    }

    #[test]
    fn truncation_keeps_whole_characters_up_to_the_limit() {
        assert_eq!(truncate_at_char_boundary("abc", 3), "abc");
        assert_eq!(truncate_at_char_boundary("abcd", 3), "abc");
        assert_eq!(truncate_at_char_boundary("", 0), "");
        // "é" is two bytes: at 3 bytes "aé" fits, at 2 only "a" does.
        assert_eq!(truncate_at_char_boundary("aé", 3), "aé");
        assert_eq!(truncate_at_char_boundary("aé", 2), "a");
        assert_eq!(truncate_at_char_boundary("日本", 5), "日");
        let at = "u".repeat(MAX_USER_AGENT_BYTES);
        assert_eq!(truncate_at_char_boundary(&at, MAX_USER_AGENT_BYTES), at);
        let past = format!("{at}u");
        assert_eq!(truncate_at_char_boundary(&past, MAX_USER_AGENT_BYTES), at);
    }

    #[test]
    fn a_resync_is_410() {
        assert_eq!(ErrorCode::Resync.http_status(), 410);
        assert_eq!(
            serde_json::to_value(ErrorCode::Resync).unwrap(),
            json!("resync")
        );
    }
}
