//! `/v1/users/{user}/sessions`: every session of a user, and "log out everywhere".

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::UserPath;
use crate::store;
use axum::Json;
use axum::extract::State;
use proto::{Deleted, Session};

pub async fn list(
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<Json<Vec<Session>>, ApiError> {
    Ok(Json(state.store.list_user(&user, store::now()).await?))
}

pub async fn delete_all(
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<Json<Deleted>, ApiError> {
    Ok(Json(Deleted {
        deleted: state.store.delete_user(&user).await?,
    }))
}
