//! The session store as the request and response paths see it (docs/architecture.md,
//! "Stores"): the operations they ask of it and what comes back, whatever keeps the sessions.
//! The companion (`companion`) turns each operation into one HTTP call and its reply into an
//! outcome. The cookie store (`cookie_session`, with the codec `cookie` and the revocation
//! table `cookie_revocations`) is the second implementation: it opens the session from the
//! cookie and answers each write at once, with no callout.

pub mod companion;
pub mod cookie;
pub mod cookie_cache;
pub mod cookie_revocations;
pub mod cookie_session;

use crate::control::Revoke;
use proto::{CreateSessionRequest, PatchSession, Session, SessionId};
use std::fmt;

/// A write the response path asks of the store.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreOp {
    Create(CreateSessionRequest),
    /// A new id for the same session; the old id stops answering.
    Cycle(SessionId),
    Patch(SessionId, PatchSession),
    Delete(SessionId),
    /// End sessions of a user (`x-session-revoke`); `Revoke::Others` keeps the session with
    /// handle `current`. Comes back `Deleted`, also when nothing matched.
    Revoke {
        user: String,
        revoke: Revoke,
        current: proto::SessionHandle,
    },
}

impl StoreOp {
    /// What the operation is, without its contents (which hold session data): for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::Cycle(_) => "cycle",
            Self::Patch(..) => "patch",
            Self::Delete(_) => "delete",
            Self::Revoke { .. } => "revoke",
        }
    }
}

/// What a write came to.
#[derive(Debug, PartialEq)]
pub enum WriteOutcome {
    /// The session as stored after the write (create, cycle, patch).
    Stored(Box<Session>),
    /// The session is gone (a delete, also of one already gone).
    Deleted,
    /// Nothing is known to be stored: the failure policy decides.
    Failed(Failure),
}

impl WriteOutcome {
    /// What the outcome is, without the session it may hold: for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stored(_) => "a stored session",
            Self::Deleted => "deleted",
            Self::Failed(_) => "a failure",
        }
    }
}

/// What a read of the cookie's session came to.
#[derive(Debug, PartialEq)]
pub enum Resolution {
    /// The session asked for, live: a store never answers with another or an expired one.
    Found(Box<Session>),
    /// Unknown, or a session whose expiry has passed: the cookie is cleared.
    Expired,
    /// The store could not answer; the failure policy decides.
    Unavailable(Failure),
}

/// Why the store did not answer as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The call could not be made, was reset, or got no reply.
    CallFailed,
    /// An answer the operation does not expect (Envoy's timeout is a 504).
    Status(u16),
    /// No parsable `:status`.
    NoStatus,
    /// The answer's body is not a session.
    Unparsable,
    /// A session other than the one asked for: never used.
    WrongSession,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CallFailed => f.write_str("store call failed (not sent, reset or no reply)"),
            Self::Status(code) => write!(f, "companion answered {code}"),
            Self::NoStatus => f.write_str("companion reply has no valid :status"),
            Self::Unparsable => f.write_str("companion reply body is not a session"),
            Self::WrongSession => f.write_str("companion answered with another session"),
        }
    }
}
