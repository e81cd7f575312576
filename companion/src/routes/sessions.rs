//! `/v1/sessions`: read, create, change, delete and cycle one session, and the proxies'
//! batched "seen" reports.

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, IdPath, OptionalJson, check_user};
use crate::store::{self, Changes, NewSession, Origin, PatchOutcome};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bson::DateTime;
use proto::{
    CreateSessionRequest, CycleSession, MAX_CLIENT_ADDRESS_BYTES, MAX_SEEN_IDS,
    MAX_USER_AGENT_BYTES, PatchSessionRequest, Seen, SeenSessions, Session, SessionId,
    truncate_at_char_boundary,
};

/// The client's user agent and address, cut to their limits at a character boundary.
fn origin(user_agent: Option<String>, client_address: Option<String>) -> Origin {
    let cut = |text: String, max: usize| truncate_at_char_boundary(&text, max).to_string();
    Origin {
        user_agent: user_agent.map(|ua| cut(ua, MAX_USER_AGENT_BYTES)),
        client_address: client_address.map(|a| cut(a, MAX_CLIENT_ADDRESS_BYTES)),
    }
}

/// Holds the user to the per-user limit after a binding. The binding itself stands whatever
/// happens here: the next binding of that user trims again.
async fn limit_sessions_of(state: &AppState, user: &str, now: DateTime) {
    if let Err(err) = state.store.enforce_session_limit(user, now).await {
        tracing::warn!(error = %err, "the per-user session limit could not be applied after a login");
    }
}

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
    ApiJson(body): ApiJson<CreateSessionRequest>,
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
        absolute_ttl_seconds: state.limits.absolute_ttl(body.absolute_ttl_seconds)?,
        origin: origin(body.user_agent, body.client_address),
    };
    let now = store::now();
    let session = state.store.create(new, now).await?;
    if let Some(user) = &session.user {
        limit_sessions_of(&state, user, now).await;
    }
    Ok((StatusCode::CREATED, Json(session)))
}

pub async fn patch(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<PatchSessionRequest>,
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
        absolute_ttl_seconds: state.limits.absolute_ttl(body.absolute_ttl_seconds)?,
    };
    let binds = changes.user.clone();
    let now = store::now();
    match state
        .store
        .patch(&id, changes, now, state.limits.max_data_bytes)
        .await?
    {
        PatchOutcome::Updated(session) => {
            if let Some(user) = &binds {
                limit_sessions_of(&state, user, now).await;
            }
            Ok(Json(*session))
        }
        PatchOutcome::NotFound => Err(ApiError::NotFound),
        PatchOutcome::TooLarge(size) => Err(state.limits.too_large(size)),
    }
}

/// 204 whether or not the session existed; its revocation is recorded either way.
pub async fn delete(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    state.store.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body is optional; when it names the client's user agent or address, they replace the
/// session's.
pub async fn cycle(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    OptionalJson(body): OptionalJson<CycleSession>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let origin = origin(body.user_agent, body.client_address);
    match state.store.cycle(&id, origin, store::now()).await? {
        Some(session) => Ok((StatusCode::CREATED, Json(session))),
        None => Err(ApiError::NotFound),
    }
}

/// `POST /v1/sessions/seen`: up to `MAX_SEEN_IDS` ids, each a well-formed session id (the
/// first bad one is named by its index); `last_seen_at` of the live ones moves to now in one
/// write, unknown ones are passed by.
pub async fn seen(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SeenSessions>,
) -> Result<Json<Seen>, ApiError> {
    if body.ids.len() > MAX_SEEN_IDS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_SEEN_IDS} ids per report, not {}",
            body.ids.len()
        )));
    }
    let ids = body
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            SessionId::parse(id).map_err(|e| ApiError::BadRequest(format!("ids[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let seen = state.store.seen(&ids, store::now()).await?;
    Ok(Json(Seen { seen }))
}
