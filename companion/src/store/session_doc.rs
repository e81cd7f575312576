//! A session as stored, and what the API shows of it.

use super::{StoreError, data};
use bson::{DateTime, Document};
use proto::{Session, SessionId, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct SessionDoc {
    #[serde(rename = "_id")]
    pub(super) id: String,
    pub(super) data: Document,
    pub(super) user: Option<String>,
    pub(super) ttl_seconds: i64,
    pub(super) browser_session: bool,
    pub(super) created_at: DateTime,
    pub(super) updated_at: DateTime,
    pub(super) expires_at: DateTime,
    /// Set when a cycle sealed this document, to the id it drew for the copy: the session
    /// moved (or is moving) there, and this document is no session any more (see `cycle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) moved_to: Option<String>,
}

impl SessionDoc {
    /// Live exactly when the query `Store::live` would match it.
    pub(super) fn is_live(&self, now: DateTime) -> bool {
        self.expires_at > now && self.moved_to.is_none()
    }

    /// A stored document as the API shows it. Documents this service wrote always convert;
    /// one that does not was written by something else and is reported, not guessed at.
    pub(super) fn into_session(self) -> Result<Session, StoreError> {
        let corrupt = |what: &str| StoreError::Unavailable(format!("stored session has {what}"));
        Ok(Session {
            id: SessionId::parse(&self.id).map_err(|_| corrupt("a malformed id"))?,
            data: data::document_to_object(&self.data),
            user: self.user,
            ttl_seconds: u64::try_from(self.ttl_seconds)
                .map_err(|_| corrupt("a negative ttl_seconds"))?,
            browser_session: self.browser_session,
            created_at: timestamp(self.created_at)
                .ok_or_else(|| corrupt("created_at out of range"))?,
            updated_at: timestamp(self.updated_at)
                .ok_or_else(|| corrupt("updated_at out of range"))?,
            expires_at: timestamp(self.expires_at)
                .ok_or_else(|| corrupt("expires_at out of range"))?,
            // Not kept yet: the fields are optional on the wire, for companions like this.
            last_seen_at: None,
            absolute_ttl_seconds: None,
            absolute_expires_at: None,
            user_agent: None,
            client_address: None,
        })
    }
}

fn timestamp(t: DateTime) -> Option<Timestamp> {
    Timestamp::from_unix_nanos(i128::from(t.timestamp_millis()) * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiring_at(millis: i64) -> SessionDoc {
        let at = DateTime::from_millis(millis);
        SessionDoc {
            id: "x".into(),
            data: Document::new(),
            user: None,
            ttl_seconds: 60,
            browser_session: false,
            created_at: at,
            updated_at: at,
            expires_at: at,
            moved_to: None,
        }
    }

    #[test]
    fn a_session_is_live_until_the_millisecond_it_expires_as_the_query_says() {
        let doc = expiring_at(1_000);
        assert!(doc.is_live(DateTime::from_millis(999)));
        // `expires_at > now`: at the same millisecond it is already gone.
        assert!(!doc.is_live(DateTime::from_millis(1_000)));
        assert!(!doc.is_live(DateTime::from_millis(1_001)));
    }
}
