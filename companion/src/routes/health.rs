//! Liveness, readiness (the database answers and the indexes exist) and metrics.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::sync::atomic::Ordering;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.store.ping().await?;
    if !state.indexes_ready.load(Ordering::Acquire) {
        return Err(ApiError::Unavailable(
            crate::store::StoreError::Unavailable("indexes not ensured yet".into()),
        ));
    }
    Ok("ready\n")
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
