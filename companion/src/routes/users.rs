//! `/v1/users/{user}/sessions`: the sessions a user can be shown, ending one of them by
//! handle, and "log out everywhere" (or everywhere but here).

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, UserHandlePath, UserPath, parse_handle};
use crate::store;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use proto::{Deleted, SessionSummary};
use serde::Deserialize;

/// The user's live sessions, most recently seen first: handles and metadata, never ids or
/// data.
pub async fn list(
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<Json<Vec<SessionSummary>>, ApiError> {
    Ok(Json(state.store.list_user(&user, store::now()).await?))
}

/// `DELETE /v1/users/{user}/sessions/{handle}`: 204, or 404 when the user has no such
/// session.
pub async fn delete_one(
    State(state): State<AppState>,
    UserHandlePath(user, handle): UserHandlePath,
) -> Result<StatusCode, ApiError> {
    if state
        .store
        .delete_user_session(&user, &handle, store::now())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteAllQuery {
    except: Option<String>,
}

/// `DELETE /v1/users/{user}/sessions[?except={handle}]`: every session of the user, or every
/// one but `except`. 200 `{deleted: n}`.
pub async fn delete_all(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    ApiQuery(query): ApiQuery<DeleteAllQuery>,
) -> Result<Json<Deleted>, ApiError> {
    let except = query.except.as_deref().map(parse_handle).transpose()?;
    Ok(Json(Deleted {
        deleted: state.store.delete_user(&user, except.as_ref()).await?,
    }))
}
