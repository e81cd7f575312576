//! `/v1/sessions`: read, create, change, delete and cycle one session.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, IdPath, check_user};
use crate::store::{self, Changes, NewSession, PatchOutcome};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use proto::{CreateSession, PatchSession, Session};

pub async fn get(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Session>, ApiError> {
    state
        .store
        .get(&id, store::now())
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateSession>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let data = body.data.unwrap_or_default();
    state.limits.check_data(&data)?;
    if let Some(user) = &body.user {
        check_user(user)?;
    }
    let new = NewSession {
        data,
        user: body.user,
        ttl_seconds: state.limits.ttl(body.ttl_seconds)?,
        browser_session: body.browser_session.unwrap_or(false),
    };
    let session = state.store.create(new, store::now()).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

pub async fn patch(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<PatchSession>,
) -> Result<Json<Session>, ApiError> {
    if let Some(user) = &body.user {
        check_user(user)?;
    }
    let ttl_seconds = match body.ttl_seconds {
        Some(ttl) => Some(state.limits.ttl(Some(ttl))?),
        None => None,
    };
    let changes = Changes {
        set: body.set.unwrap_or_default(),
        unset: body.unset.unwrap_or_default(),
        user: body.user,
        ttl_seconds,
        browser_session: body.browser_session,
        touch: body.touch,
    };
    match state
        .store
        .patch(&id, changes, store::now(), state.limits.max_data_bytes)
        .await?
    {
        PatchOutcome::Updated(session) => Ok(Json(*session)),
        PatchOutcome::NotFound => Err(ApiError::NotFound),
        PatchOutcome::TooLarge(size) => Err(state.limits.too_large(size)),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    state.store.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn cycle(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    match state.store.cycle(&id, store::now()).await? {
        Some(session) => Ok((StatusCode::CREATED, Json(session))),
        None => Err(ApiError::NotFound),
    }
}
