//! Wire types shared by the filter, the companion and the tests: the session, the companion
//! API's request bodies and errors, the session id and its handle, and the revocation feed.
//! One definition, so the two sides of the API cannot drift. Builds for wasm32 and native.

mod api;
mod revocation;
pub mod secrets;
mod session;
mod session_handle;
mod session_id;

pub use api::{
    ApiError, CreateSession, CreateSessionRequest, CycleSession, DEFAULT_TTL_SECONDS, Deleted,
    ErrorCode, MAX_CLIENT_ADDRESS_BYTES, MAX_DATA_DEPTH, MAX_SEEN_IDS, MAX_USER_AGENT_BYTES,
    MAX_USER_BYTES, PatchSession, PatchSessionRequest, Seen, SeenSessions, SessionSummary,
    data_within_depth, truncate_at_char_boundary, valid_data_key, valid_user,
};
pub use revocation::{
    AnnounceRevocation, DEFAULT_REVOCATION_PAGE, InvalidCursor, MAX_REVOCATION_PAGE, Resync,
    Revocation, RevocationCursor, RevocationPage, RevocationReason, Revoked,
};
pub use session::{Session, Timestamp};
pub use session_handle::{
    HANDLE_PREFIX, InvalidSessionHandle, SESSION_HANDLE_BYTES, SESSION_HANDLE_LEN, SessionHandle,
};
pub use session_id::{InvalidSessionId, SESSION_ID_BYTES, SESSION_ID_LEN, SessionId, short_hash};
