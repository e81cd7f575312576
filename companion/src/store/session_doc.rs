//! A session as stored, what the API shows of it, and the arithmetic of its lifetimes.

use super::{StoreError, after, before, data};
use bson::{DateTime, Document};
use proto::{Session, SessionId, SessionSummary, Timestamp};
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
    /// Missing in documents written before it existed: `updated_at` stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) last_seen_at: Option<DateTime>,
    /// The session's own absolute lifetime, as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) absolute_ttl_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client_address: Option<String>,
    /// Set when a cycle sealed this document, to the id it drew for the copy: the session
    /// moved (or is moving) there, and this document is no session any more (see `cycle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) moved_to: Option<String>,
}

/// The absolute lifetime that applies: the smaller of the companion's default and the
/// session's own; `None` when neither is set.
pub(super) fn absolute_limit(default: Option<u64>, own: Option<u64>) -> Option<u64> {
    match (default, own) {
        (Some(default), Some(own)) => Some(default.min(own)),
        (default, own) => default.or(own),
    }
}

/// The time past which nothing extends a session created at `created_at`.
pub(super) fn absolute_end(created_at: DateTime, limit: Option<u64>) -> Option<DateTime> {
    limit.map(|seconds| after(created_at, seconds))
}

/// `candidate`, but never past `end`.
pub(super) fn within(candidate: DateTime, end: Option<DateTime>) -> DateTime {
    end.map_or(candidate, |end| candidate.min(end))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("stored session has {what}"))
}

fn timestamp(t: DateTime) -> Option<Timestamp> {
    Timestamp::from_unix_nanos(i128::from(t.timestamp_millis()) * 1_000_000)
}

fn shown(t: DateTime, field: &str) -> Result<Timestamp, StoreError> {
    timestamp(t).ok_or_else(|| corrupt(&format!("{field} out of range")))
}

impl SessionDoc {
    pub(super) fn own_absolute(&self) -> Option<u64> {
        self.absolute_ttl_seconds
            .and_then(|seconds| u64::try_from(seconds).ok())
    }

    /// Live exactly when `Store::live` would match it, `default_absolute` being the
    /// companion's default absolute lifetime.
    pub(super) fn is_live(&self, now: DateTime, default_absolute: Option<u64>) -> bool {
        self.expires_at > now
            && self.moved_to.is_none()
            && default_absolute.is_none_or(|default| self.created_at > before(now, default))
    }

    pub(super) fn last_seen(&self) -> DateTime {
        self.last_seen_at.unwrap_or(self.updated_at)
    }

    /// A stored document as the API shows it, `default_absolute` being the companion's
    /// default absolute lifetime. Documents this service wrote always convert; one that does
    /// not was written by something else and is reported, not guessed at.
    pub(super) fn into_session(self, default_absolute: Option<u64>) -> Result<Session, StoreError> {
        let absolute_end = absolute_end(
            self.created_at,
            absolute_limit(default_absolute, self.own_absolute()),
        );
        Ok(Session {
            id: SessionId::parse(&self.id).map_err(|_| corrupt("a malformed id"))?,
            data: data::document_to_object(&self.data),
            user: self.user,
            ttl_seconds: u64::try_from(self.ttl_seconds)
                .map_err(|_| corrupt("a negative ttl_seconds"))?,
            browser_session: self.browser_session,
            created_at: shown(self.created_at, "created_at")?,
            updated_at: shown(self.updated_at, "updated_at")?,
            // The stored expiry was bounded by the default as it was then; a default
            // lowered since ends the session sooner, and the answer says so.
            expires_at: shown(within(self.expires_at, absolute_end), "expires_at")?,
            last_seen_at: Some(shown(
                self.last_seen_at.unwrap_or(self.updated_at),
                "last_seen_at",
            )?),
            absolute_ttl_seconds: self
                .absolute_ttl_seconds
                .map(u64::try_from)
                .transpose()
                .map_err(|_| corrupt("a negative absolute_ttl_seconds"))?,
            absolute_expires_at: absolute_end
                .map(|end| shown(end, "absolute_expires_at"))
                .transpose()?,
            user_agent: self.user_agent,
            client_address: self.client_address,
        })
    }

    /// What a user's listing shows of the session: its handle, never its id or data.
    pub(super) fn into_summary(
        self,
        default_absolute: Option<u64>,
    ) -> Result<SessionSummary, StoreError> {
        let id = SessionId::parse(&self.id).map_err(|_| corrupt("a malformed id"))?;
        let absolute_end = absolute_end(
            self.created_at,
            absolute_limit(default_absolute, self.own_absolute()),
        );
        Ok(SessionSummary {
            handle: id.handle(),
            created_at: shown(self.created_at, "created_at")?,
            last_seen_at: shown(self.last_seen(), "last_seen_at")?,
            expires_at: shown(within(self.expires_at, absolute_end), "expires_at")?,
            browser_session: self.browser_session,
            user_agent: self.user_agent,
            client_address: self.client_address,
        })
    }
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
            last_seen_at: None,
            absolute_ttl_seconds: None,
            user_agent: None,
            client_address: None,
            moved_to: None,
        }
    }

    #[test]
    fn a_session_is_live_until_the_millisecond_it_expires_as_the_query_says() {
        let doc = expiring_at(1_000);
        assert!(doc.is_live(DateTime::from_millis(999), None));
        // `expires_at > now`: at the same millisecond it is already gone.
        assert!(!doc.is_live(DateTime::from_millis(1_000), None));
        assert!(!doc.is_live(DateTime::from_millis(1_001), None));
    }

    /// The default absolute lifetime counts from `created_at` as the query's
    /// `created_at > now - default` does: at exactly `created_at + default` it is over.
    #[test]
    fn the_default_absolute_lifetime_ends_a_session_whatever_its_expiry() {
        let mut doc = expiring_at(0);
        doc.expires_at = DateTime::from_millis(1_000_000);
        assert!(doc.is_live(DateTime::from_millis(9_999), Some(10)));
        assert!(!doc.is_live(DateTime::from_millis(10_000), Some(10)));
        assert!(doc.is_live(DateTime::from_millis(10_000), None));
    }

    #[test]
    fn the_smaller_absolute_lifetime_wins() {
        assert_eq!(absolute_limit(None, None), None);
        assert_eq!(absolute_limit(Some(60), None), Some(60));
        assert_eq!(absolute_limit(None, Some(30)), Some(30));
        assert_eq!(absolute_limit(Some(60), Some(30)), Some(30));
        assert_eq!(absolute_limit(Some(30), Some(60)), Some(30));
    }

    #[test]
    fn an_expiry_never_passes_the_absolute_end() {
        let created = DateTime::from_millis(1_000_000);
        let end = absolute_end(created, Some(100));
        assert_eq!(end, Some(DateTime::from_millis(1_100_000)));
        let later = DateTime::from_millis(2_000_000);
        assert_eq!(within(later, end), DateTime::from_millis(1_100_000));
        let sooner = DateTime::from_millis(1_050_000);
        assert_eq!(within(sooner, end), sooner);
        assert_eq!(within(later, None), later);
    }
}
