//! The HTTP handlers, one file per resource.
//!
//! Every `/v1` route needs `Authorization: Bearer <token>` (401 otherwise). Every error is
//! `{error, message}` with `error` one of `bad_request` 400, `unauthorized` 401, `not_found`
//! 404, `payload_too_large` 413, `resync` 410, `unavailable` 503 (retry later), `internal`
//! 500. Input from the network (ids, handles, user ids, cursors, limits, bodies) is checked
//! before any database call: a malformed one is 400, never 500.
//!
//! # Lifetimes (`sessions`)
//!
//! `POST /v1/sessions` and `PATCH /v1/sessions/{id}` take `absolute_ttl_seconds` (1 to
//! 3 153 600 000, else 400): the longest the session lives from its `created_at`, whatever
//! touches it gets. The companion's `--absolute-ttl-seconds` applies too; the smaller wins.
//! Every write sets `expires_at = min(now + ttl, created_at + absolute)`, so a Session's
//! `expires_at` is always the time a cookie's `Max-Age` counts to, and `absolute_expires_at`
//! (`null` when no absolute limit applies) is the end no touch passes. A cycle keeps
//! `created_at`. A PATCH setting an absolute limit the session is already past ends it (404).
//!
//! # Metadata, listing and ending sessions (`sessions`, `users`)
//!
//! A session keeps `created_at`, `last_seen_at` (moved to now by a create, a cycle, every
//! PATCH and every "seen" report; never back) and the client's `user_agent` and
//! `client_address` from the create body or the cycle body, each cut at the last character
//! boundary within 512 and 128 bytes (never refused: a long `User-Agent` must not break a
//! login). A cycle body is optional (an empty body is `{}`); its fields, when given, replace
//! the session's.
//!
//! A session is named to users by its handle (`proto::SessionId::handle`): the unpadded
//! base64url of the first 16 bytes of SHA-256(`"edge-session/handle/v1|"` + id), 22
//! characters. A handle opens nothing; the raw id never appears in a listing or the feed.
//!
//! - `GET /v1/users/{user}/sessions` → 200 `[{handle, created_at, last_seen_at, expires_at,
//!   browser_session, user_agent, client_address}]`, the user's live sessions, most
//!   recently seen first. No ids, no data.
//! - `DELETE /v1/users/{user}/sessions/{handle}` → 204; 404 when the user has no live
//!   session with that handle (another user's handle is 404 too); 400 for a malformed user
//!   or handle. Writes a `session` entry to the feed after the delete, on 404 too, so a
//!   retry after a 503 (delete done, entry not written) does not lose the entry.
//! - `DELETE /v1/users/{user}/sessions?except={handle}` → 200 `{deleted: n}`: every session
//!   of the user but the one named (when it names none of them, all go). Without `except`,
//!   every session. Either way one `user` entry (with `except`) goes to the feed, even when
//!   nothing was deleted.
//! - `POST /v1/sessions/seen {"ids": [...]}` → 200 `{seen: n}`, n the live sessions among
//!   the ids, whose `last_seen_at` moved to now in one `update_many`. At most 1000 ids (1001
//!   is 400); each must be a well-formed id (the first bad one is named by index, 400);
//!   unknown, expired and cycled-away ids are passed by. A proxy reports the sessions it
//!   served at most every few seconds, which keeps `last_seen_at` within its reporting
//!   interval of the truth (the documented bound is 5 minutes).
//!
//! # The per-user limit
//!
//! With `--max-sessions-per-user N`, a create with a `user` and a PATCH setting `user` end
//! that user's least recently seen sessions past N (each one ended is a `capped` feed entry).
//! The binding's own answer stands (201/200); under many concurrent logins the session it
//! returns may itself be among those ended by a later login. See `store::users`.
//!
//! # The revocation feed (`revocations`)
//!
//! `GET /v1/revocations[?after=CURSOR][&limit=N]` and `POST /v1/revocations`: the read
//! contract is in the `revocations` module.

pub mod health;
pub mod revocations;
pub mod sessions;
pub mod users;
