//! `/v1/revocations`: the revocation feed, read with a cursor, and revocations announced by
//! proxies.
//!
//! # Read contract
//!
//! `GET /v1/revocations` (no `after`) answers the head: `{entries: [], cursor, more: false}`.
//! A new reader takes it before it caches anything, and follows from there: every revocation
//! made before it is of a session the reader will find gone when it looks it up.
//!
//! `GET /v1/revocations?after=CURSOR&limit=N` (`limit` 1 to 1000, default 100) answers 200
//! `{entries, cursor, more}`:
//!
//! - `entries` are the kept entries numbered after `CURSOR`, in `seq` order, at most `N`.
//! - `cursor` is what to pass next. It never moves past a number that may still appear (a
//!   number is drawn before its entry is written, so entries can appear out of order), so
//!   entries past the new cursor may come again in the next answer: the reader skips those
//!   whose `seq` it already applied. A reader keeps the numbers it applied that are above
//!   the cursor it holds, and forgets those at or below it.
//! - `more` is true when asking again at once returns further entries.
//!
//! `after=start` reads from the oldest entry still kept (a proxy that needs every live
//! announcement, such as one keeping sessions in cookies, starts there).
//!
//! A cursor the feed cannot continue from, because it is older than the retention
//! (`--revocation-retention-seconds`, less twice the grace time) or from the future (not
//! given by this feed, or by one whose collection was dropped), answers **410**
//! `{error: "resync", message, cursor}`: the reader drops everything it caches and continues
//! from `cursor`, the current head. A malformed cursor or limit is 400.
//!
//! The cursor is opaque to readers (today `<seq>-<millis>`, see `proto::RevocationCursor`);
//! only `start` and cursors this feed answered are meant to be passed. A reader that follows
//! this contract sees every entry at least once, in `seq` order within each page, and
//! exactly once after skipping numbers it applied; it sees an entry at its first poll after
//! the entry's insert, even when an older number is still missing (only the cursor waits at
//! the gap, for at most the grace time, `--revocation-grace-ms`, 10 s by default). While the
//! cursor waits at a gap, a page repeats the same first `limit` entries after it: a reader
//! behind by more than `limit` entries catches up once the gap closes or times out.
//!
//! Entry kinds: `{seq, at, kind: "session", handle, reason}` (reason `deleted`, `cycled` (the
//! old id's handle), `capped` or `announced`, which also has `until`), and `{seq, at, kind:
//! "user", user, except?, reason: "deleted"}`: every session the user held at `at`, but the
//! one named by `except`. Each entry is written after the change it reports, so a reader that
//! applies it and then looks the session up finds it gone.
//!
//! What the contract assumes: the companion replicas' clocks agree to well within the grace
//! time (the reader's companion compares its clock with the writer's `at`), and a database
//! write that timed out at the companion is not applied more than the grace time later
//! (`--revocation-grace-ms` must be at least twice `--db-timeout-ms`; a writer abandons a
//! number it could not write within half the grace time). Sharded clusters are expected to
//! work (the counter and each entry are single-document writes, the read is a range on
//! `_id`) but are not tested.
//!
//! Cost: a poll is one indexed range query on `_id` (`_id >= cursor`, sorted, at most
//! `limit + 2` documents; an idle poll returns one document, the cursor's own entry). The
//! head, a resync, and a cursor whose own entry the TTL monitor removed read the counter
//! document by `_id` as well. A write is one `findOneAndUpdate` on the counter and one
//! insert; every entry updates the one counter document, so the feed's write rate is that
//! of updates to a single document (entries come from logouts, cycles and limits, not from
//! page views).
//!
//! `POST /v1/revocations {handle, until}` records the revocation of a session the companion
//! never held, kept in the feed until `until` at least; `until` may lie at most
//! `--max-ttl-seconds` plus 5 minutes ahead. 201 with the entry.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::store::{self, FeedRead};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bson::DateTime;
use proto::{
    AnnounceRevocation, DEFAULT_REVOCATION_PAGE, ErrorCode, MAX_REVOCATION_PAGE, Resync,
    Revocation, RevocationCursor, RevocationPage, Timestamp,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    after: Option<String>,
    limit: Option<String>,
}

fn parse_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = limit else {
        return Ok(DEFAULT_REVOCATION_PAGE);
    };
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_REVOCATION_PAGE).contains(n) && !text.starts_with('+'))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "limit must be a whole number from 1 to {MAX_REVOCATION_PAGE}"
            ))
        })
}

pub async fn read(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ReadQuery>,
) -> Result<Response, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let now = store::now();
    let Some(after) = query.after else {
        let page = RevocationPage {
            entries: Vec::new(),
            cursor: state.store.revocation_head(now).await?,
            more: false,
        };
        return Ok(Json(page).into_response());
    };
    let cursor =
        RevocationCursor::parse(&after).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    match state.store.revocations_after(cursor, limit, now).await? {
        FeedRead::Page(page) => Ok(Json(page).into_response()),
        FeedRead::Resync(head) => {
            let body = Resync {
                error: ErrorCode::Resync,
                message: "this cursor is older than the feed keeps entries, or was not given by it: drop what the feed keeps fresh and continue from the cursor given here".into(),
                cursor: head,
            };
            Ok((StatusCode::GONE, Json(body)).into_response())
        }
    }
}

pub async fn announce(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<AnnounceRevocation>,
) -> Result<(StatusCode, Json<Revocation>), ApiError> {
    let now = store::now();
    let shown_now = Timestamp::from_unix_nanos(i128::from(now.timestamp_millis()) * 1_000_000)
        .ok_or_else(|| ApiError::Internal("the clock is out of range".into()))?;
    state
        .limits
        .check_announced_until(&body.until, &shown_now)?;
    let until_millis = i64::try_from(body.until.unix_nanos() / 1_000_000)
        .map_err(|_| ApiError::BadRequest("until is out of range".into()))?;
    let entry = state
        .store
        .announce(body.handle, DateTime::from_millis(until_millis))
        .await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_a_plain_number_from_1_to_1000() {
        assert_eq!(parse_limit(None).ok(), Some(DEFAULT_REVOCATION_PAGE));
        assert_eq!(parse_limit(Some("1")).ok(), Some(1));
        assert_eq!(parse_limit(Some("1000")).ok(), Some(1000));
        for bad in [
            "0",
            "1001",
            "-1",
            "+5",
            "",
            "ten",
            "1e3",
            "99999999999999999999999",
        ] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
