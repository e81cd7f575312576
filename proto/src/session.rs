//! A session as the companion returns it.

use crate::session_id::SessionId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `{id, data, user, ttl_seconds, browser_session, created_at, updated_at, expires_at,
/// last_seen_at, absolute_ttl_seconds, absolute_expires_at, user_agent, client_address}`. The
/// fields after `expires_at` came later: an answer without them still parses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    /// The session's keys and values, as the app stored them.
    pub data: Map<String, Value>,
    /// The bound user, for "log out everywhere".
    pub user: Option<String>,
    /// The session's own lifetime, used by sliding expiry.
    pub ttl_seconds: u64,
    /// Its cookie carries no `Max-Age`.
    pub browser_session: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the session ends unless touched: never later than `absolute_expires_at`, so it is
    /// what a cookie's `Max-Age` counts to.
    pub expires_at: Timestamp,
    /// The last time a request was seen with this session (a create, a cycle, a PATCH, or a
    /// proxy's "seen" report), within the reporting delay.
    #[serde(default)]
    pub last_seen_at: Option<Timestamp>,
    /// The session's own absolute lifetime, as asked on create or PATCH.
    #[serde(default)]
    pub absolute_ttl_seconds: Option<u64>,
    /// When the session ends whatever touches it gets: `created_at` plus the smaller of its
    /// own absolute lifetime and the companion's default. `null` when neither applies. A
    /// touch cannot move `expires_at` past it, so a filter need not touch a session whose
    /// `expires_at` has reached it.
    #[serde(default)]
    pub absolute_expires_at: Option<Timestamp>,
    /// The client's user agent when the session was created or last cycled.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// The client's address when the session was created or last cycled.
    #[serde(default)]
    pub client_address: Option<String>,
}

/// A point in time, written as RFC 3339 in UTC (`2026-01-01T00:00:00Z`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// From nanoseconds since the Unix epoch; `None` outside the representable years.
    pub fn from_unix_nanos(nanos: i128) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .map(Self)
    }

    pub fn from_unix_seconds(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds).ok().map(Self)
    }

    pub fn unix_nanos(&self) -> i128 {
        self.0.unix_timestamp_nanos()
    }

    pub fn unix_seconds(&self) -> i64 {
        self.0.unix_timestamp()
    }

    /// Parses RFC 3339 with any offset, normalised to UTC.
    pub fn parse(text: &str) -> Option<Self> {
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .map(|t| Self(t.to_offset(time::UtcOffset::UTC)))
    }

    /// RFC 3339 in UTC with a `Z`, fractional seconds only when there are any.
    pub fn to_rfc3339(&self) -> String {
        // Formatting a UTC time between years 0 and 9999 as RFC 3339 cannot fail; the
        // fallback keeps this total for the few representable times outside that range.
        self.0
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.0.unix_timestamp().to_string())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

    fn sample() -> Value {
        json!({
            "id": ID,
            "data": {"cart": [1, 2], "_auth_user_id": "42"},
            "user": "42",
            "ttl_seconds": 1209600,
            "browser_session": false,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:01.5Z",
            "expires_at": "2026-01-15T00:00:00Z",
            "last_seen_at": "2026-01-01T00:00:01.5Z",
            "absolute_ttl_seconds": 43200,
            "absolute_expires_at": "2026-01-01T12:00:00Z",
            "user_agent": "Mozilla/5.0",
            "client_address": "192.0.2.7"
        })
    }

    /// A companion from before these fields answers without them.
    #[test]
    fn an_answer_without_the_later_fields_parses() {
        let mut value = sample();
        let object = value.as_object_mut().unwrap();
        for later in [
            "last_seen_at",
            "absolute_ttl_seconds",
            "absolute_expires_at",
            "user_agent",
            "client_address",
        ] {
            object.remove(later);
        }
        let session: Session = serde_json::from_value(value).unwrap();
        assert_eq!(session.last_seen_at, None);
        assert_eq!(session.absolute_expires_at, None);
    }

    #[test]
    fn session_json_shape_is_pinned() {
        let session: Session = serde_json::from_value(sample()).unwrap();
        assert_eq!(session.id.as_str(), ID);
        assert_eq!(session.user.as_deref(), Some("42"));
        assert_eq!(session.expires_at.unix_seconds(), 1_768_435_200);
        assert_eq!(serde_json::to_value(&session).unwrap(), sample());
    }

    #[test]
    fn missing_user_is_null_and_offsets_normalise_to_utc() {
        let mut value = sample();
        value["user"] = Value::Null;
        value["expires_at"] = json!("2026-01-15T02:00:00+02:00");
        let session: Session = serde_json::from_value(value).unwrap();
        assert_eq!(session.user, None);
        assert_eq!(session.expires_at.to_rfc3339(), "2026-01-15T00:00:00Z");
    }

    #[test]
    fn malformed_sessions_are_refused() {
        for (field, bad) in [
            ("id", json!("short")),
            ("data", json!([1])),
            ("ttl_seconds", json!(-1)),
            ("expires_at", json!("yesterday")),
            ("browser_session", json!("no")),
        ] {
            let mut value = sample();
            value[field] = bad;
            assert!(serde_json::from_value::<Session>(value).is_err(), "{field}");
        }
        let mut missing = sample();
        missing.as_object_mut().unwrap().remove("expires_at");
        assert!(serde_json::from_value::<Session>(missing).is_err());
    }

    #[test]
    fn timestamps_round_trip_through_nanos() {
        let t = Timestamp::from_unix_nanos(1_767_225_600_123_000_000).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-01T00:00:00.123Z");
        assert_eq!(Timestamp::parse(&t.to_rfc3339()), Some(t));
    }
}
