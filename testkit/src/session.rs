//! A session as the companion answers it, for tests: [`session`] starts from a plain one and
//! each method changes one field, so a test names only what it is about.
//!
//! The defaults follow the harness clock (it starts on 2026-01-01): created and updated at
//! 2026-01-01T00:00:00Z, the companion's default lifetime of two weeks, no data, no user, not a
//! browser session. Unless set, `updated_at` is `created_at` and `expires_at` is `created_at`
//! plus the lifetime, as the companion makes them on create.

use proto::{Session, SessionId, Timestamp};
use serde_json::{Map, Value};

/// Starts a session with id `id` and the defaults above.
pub fn session(id: &SessionId) -> SessionBuilder {
    SessionBuilder {
        id: id.clone(),
        data: Map::new(),
        user: None,
        ttl_seconds: proto::DEFAULT_TTL_SECONDS,
        browser_session: false,
        created_at: at("2026-01-01T00:00:00Z"),
        updated_at: None,
        expires_at: None,
    }
}

#[derive(Clone, Debug)]
pub struct SessionBuilder {
    id: SessionId,
    data: Map<String, Value>,
    user: Option<String>,
    ttl_seconds: u64,
    browser_session: bool,
    created_at: Timestamp,
    updated_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
}

impl SessionBuilder {
    /// The session's data; panics unless `data` is a JSON object.
    pub fn data(mut self, data: Value) -> Self {
        let Value::Object(map) = data else {
            panic!("session data is a JSON object, not {data}");
        };
        self.data = map;
        self
    }

    pub fn user(mut self, user: Option<&str>) -> Self {
        self.user = user.map(str::to_string);
        self
    }

    pub fn ttl_seconds(mut self, ttl_seconds: u64) -> Self {
        self.ttl_seconds = ttl_seconds;
        self
    }

    pub fn browser_session(mut self, browser_session: bool) -> Self {
        self.browser_session = browser_session;
        self
    }

    /// RFC 3339; panics on anything else.
    pub fn created_at(mut self, rfc3339: &str) -> Self {
        self.created_at = at(rfc3339);
        self
    }

    /// RFC 3339; panics on anything else.
    pub fn updated_at(mut self, rfc3339: &str) -> Self {
        self.updated_at = Some(at(rfc3339));
        self
    }

    /// RFC 3339; panics on anything else.
    pub fn expires_at(mut self, rfc3339: &str) -> Self {
        self.expires_at = Some(at(rfc3339));
        self
    }

    pub fn build(self) -> Session {
        let expires_at = self.expires_at.unwrap_or_else(|| {
            let seconds = i64::try_from(self.ttl_seconds).expect("a lifetime within i64");
            Timestamp::from_unix_seconds(self.created_at.unix_seconds() + seconds)
                .expect("an expiry within the representable years")
        });
        Session {
            id: self.id,
            data: self.data,
            user: self.user,
            ttl_seconds: self.ttl_seconds,
            browser_session: self.browser_session,
            created_at: self.created_at,
            updated_at: self.updated_at.unwrap_or(self.created_at),
            expires_at,
            last_seen_at: None,
            absolute_ttl_seconds: None,
            absolute_expires_at: None,
            user_agent: None,
            client_address: None,
        }
    }

    /// The session as JSON. The fields this builder never sets (`last_seen_at`, the absolute
    /// lifetime, the client's user agent and address) are left out rather than `null`, as a
    /// companion from before them answers: the filter reads either.
    pub fn json(self) -> Value {
        let mut value = serde_json::to_value(self.build()).expect("a session serializes");
        if let Some(object) = value.as_object_mut() {
            for later in LATER_FIELDS {
                if object.get(later).is_some_and(Value::is_null) {
                    object.remove(later);
                }
            }
        }
        value
    }

    /// The session as the body of a companion's answer.
    pub fn body(self) -> String {
        self.json().to_string()
    }
}

/// The fields a session gained after the first companion: optional when parsing.
const LATER_FIELDS: [&str; 5] = [
    "last_seen_at",
    "absolute_ttl_seconds",
    "absolute_expires_at",
    "user_agent",
    "client_address",
];

fn at(rfc3339: &str) -> Timestamp {
    Timestamp::parse(rfc3339).unwrap_or_else(|| panic!("not an RFC 3339 time: {rfc3339}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id() -> SessionId {
        SessionId::from_bytes(&[1; 32])
    }

    /// The JSON the harness tests wrote by hand before the builder: the defaults must give
    /// exactly it, so no fixture changed.
    #[test]
    fn the_defaults_are_the_harness_session() {
        let by_hand = json!({
            "id": id().as_str(), "data": {}, "user": null, "ttl_seconds": 1209600,
            "browser_session": false, "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-15T00:00:00Z"
        });
        assert_eq!(session(&id()).json(), by_hand);
        assert_eq!(session(&id()).body(), by_hand.to_string());
    }

    #[test]
    fn the_expiry_follows_creation_and_lifetime_unless_set() {
        let s = session(&id())
            .created_at("1970-01-01T00:00:00Z")
            .ttl_seconds(60)
            .build();
        assert_eq!(s.expires_at.to_rfc3339(), "1970-01-01T00:01:00Z");
        assert_eq!(s.updated_at, s.created_at);
        let s = session(&id())
            .ttl_seconds(60)
            .updated_at("2026-01-01T00:00:00.125Z")
            .expires_at("2026-01-01T00:20:00Z")
            .build();
        assert_eq!(s.expires_at.to_rfc3339(), "2026-01-01T00:20:00Z");
        assert_eq!(s.updated_at.to_rfc3339(), "2026-01-01T00:00:00.125Z");
    }

    #[test]
    fn every_field_set_round_trips_through_the_wire_type() {
        let json = session(&id())
            .data(json!({"cart": [1, 2]}))
            .user(Some("u-42"))
            .browser_session(true)
            .json();
        assert_eq!(json["user"], "u-42");
        assert_eq!(json["browser_session"], true);
        let parsed: Session = serde_json::from_value(json).unwrap();
        assert_eq!(parsed.data["cart"], json!([1, 2]));
    }
}
