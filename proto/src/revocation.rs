//! The revocation feed's wire types: its entries, pages and cursors (`GET /v1/revocations`),
//! and the announcement of a revocation (`POST /v1/revocations`). The read contract these
//! carry is in the companion's `routes::revocations` and in docs/architecture.md.

use crate::api::ErrorCode;
use crate::session::Timestamp;
use crate::session_handle::SessionHandle;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The most entries one page may hold (`limit`).
pub const MAX_REVOCATION_PAGE: usize = 1000;
/// Entries in a page when `limit` is not given.
pub const DEFAULT_REVOCATION_PAGE: usize = 100;

/// What an entry revokes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revoked {
    /// One session, by handle.
    Session { handle: SessionHandle },
    /// Every session the user held when the entry was written (`at`), but `except`.
    User {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        except: Option<SessionHandle>,
    },
}

/// Why an entry was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// `DELETE` of a session, or of a user's sessions.
    Deleted,
    /// The session moved to a new id; the entry names the old one.
    Cycled,
    /// Ended by the per-user session limit.
    Capped,
    /// Announced by a proxy (`POST /v1/revocations`) for a session the companion never held.
    Announced,
}

/// One entry of the feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The entry's place in the feed's total order, from 1.
    pub seq: u64,
    /// When its number was allocated (the writing companion's clock).
    pub at: Timestamp,
    #[serde(flatten)]
    pub revoked: Revoked,
    pub reason: RevocationReason,
    /// For announced entries: the time until which the entry is kept at least.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

/// `GET /v1/revocations`: the entries after the cursor given, in `seq` order, and the cursor
/// to pass next. Entries past `cursor` may come again in the next page (the overlap):
/// readers skip numbers they already applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationPage {
    pub entries: Vec<Revocation>,
    pub cursor: RevocationCursor,
    /// Asking again at once returns further entries.
    pub more: bool,
}

/// `POST /v1/revocations`: a proxy announces the revocation of a session the companion never
/// held (a cookie-store session), kept in the feed until `until` at least.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnounceRevocation {
    pub handle: SessionHandle,
    pub until: Timestamp,
}

/// The 410 answer of `GET /v1/revocations` to a cursor it cannot continue from (from the
/// future, or older than the feed's retention): drop everything the feed kept fresh and
/// continue from `cursor`, the current head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resync {
    pub error: ErrorCode,
    pub message: String,
    pub cursor: RevocationCursor,
}

/// A place in the feed. On the wire an opaque string; readers store it and pass it back.
///
/// `start` reads from the oldest entry still kept. Otherwise `<seq>-<millis>`: every entry
/// up to `seq` has been answered, and every entry after it was numbered no earlier than
/// `millis` (Unix milliseconds), which is how the companion tells a cursor that waited past
/// the feed's retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevocationCursor {
    Start,
    At { seq: u64, since_millis: u64 },
}

/// Why a string is not a cursor. Says nothing about the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCursor;

impl fmt::Display for InvalidCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a revocation cursor is `start` or one given by the companion (`<seq>-<millis>`)",
        )
    }
}

impl std::error::Error for InvalidCursor {}

/// The longest decimal a `u64` takes.
const MAX_DIGITS: usize = 20;

/// A canonical decimal: digits only, no sign, no leading zero but in `0` itself.
fn canonical_number(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= MAX_DIGITS
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

impl RevocationCursor {
    /// The one spelling of each cursor: `start`, or two canonical decimals joined by `-`;
    /// `seq` fits the stored 63 bits.
    pub fn parse(text: &str) -> Result<Self, InvalidCursor> {
        if text == "start" {
            return Ok(Self::Start);
        }
        let (seq, since) = text.split_once('-').ok_or(InvalidCursor)?;
        let seq = canonical_number(seq).ok_or(InvalidCursor)?;
        let since_millis = canonical_number(since).ok_or(InvalidCursor)?;
        if i64::try_from(seq).is_err() || i64::try_from(since_millis).is_err() {
            return Err(InvalidCursor);
        }
        Ok(Self::At { seq, since_millis })
    }
}

impl fmt::Display for RevocationCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Start => f.write_str("start"),
            Self::At { seq, since_millis } => write!(f, "{seq}-{since_millis}"),
        }
    }
}

impl Serialize for RevocationCursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RevocationCursor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cursors_round_trip_in_their_one_spelling() {
        for text in ["start", "0-0", "1-1767225600123", "9223372036854775807-1"] {
            let cursor = RevocationCursor::parse(text).unwrap();
            assert_eq!(cursor.to_string(), text);
        }
        assert_eq!(
            RevocationCursor::parse("42-7"),
            Ok(RevocationCursor::At {
                seq: 42,
                since_millis: 7
            })
        );
    }

    #[test]
    fn anything_else_is_not_a_cursor() {
        for bad in [
            "",
            "Start",
            "42",
            "-",
            "42-",
            "-7",
            "+42-7",
            "042-7",
            "42-07",
            "42-7-1",
            "4 2-7",
            "42.0-7",
            "0x2a-7",
            "٤٢-7",
            "9223372036854775808-1",
            "1-9223372036854775808",
            "99999999999999999999999-1",
        ] {
            assert_eq!(RevocationCursor::parse(bad), Err(InvalidCursor), "{bad:?}");
        }
    }

    #[test]
    fn entries_have_the_documented_shape() {
        let handle = SessionHandle::parse("vc86YyI-rc7uZbuCD_I65w").unwrap();
        let at = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        let session = Revocation {
            seq: 7,
            at,
            revoked: Revoked::Session {
                handle: handle.clone(),
            },
            reason: RevocationReason::Cycled,
            until: None,
        };
        let wire = json!({"seq": 7, "at": "2026-01-01T00:00:00Z", "kind": "session",
            "handle": "vc86YyI-rc7uZbuCD_I65w", "reason": "cycled"});
        assert_eq!(serde_json::to_value(&session).unwrap(), wire);
        assert_eq!(serde_json::from_value::<Revocation>(wire).unwrap(), session);
        let user = Revocation {
            seq: 8,
            at,
            revoked: Revoked::User {
                user: "alice".into(),
                except: Some(handle),
            },
            reason: RevocationReason::Deleted,
            until: None,
        };
        let wire = json!({"seq": 8, "at": "2026-01-01T00:00:00Z", "kind": "user",
            "user": "alice", "except": "vc86YyI-rc7uZbuCD_I65w", "reason": "deleted"});
        assert_eq!(serde_json::to_value(&user).unwrap(), wire);
        assert_eq!(serde_json::from_value::<Revocation>(wire).unwrap(), user);
        let page = RevocationPage {
            entries: vec![],
            cursor: RevocationCursor::At {
                seq: 8,
                since_millis: 5,
            },
            more: false,
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            json!({"entries": [], "cursor": "8-5", "more": false})
        );
    }
}
