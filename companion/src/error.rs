//! Every outcome of the API that is not a success, as one enum mapped to HTTP answers with the
//! `{error, message}` body. Internal details are logged, never sent.

use crate::store::StoreError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proto::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("no such session")]
    NotFound,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the session store is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Unauthorized => ErrorCode::Unauthorized,
            Self::NotFound => ErrorCode::NotFound,
            Self::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Data(message) => Self::BadRequest(message),
            other => Self::Unavailable(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Unavailable(source) => {
                tracing::warn!(error = %source, "session store unavailable")
            }
            Self::Internal(detail) => tracing::error!(%detail, "internal error"),
            _ => {}
        }
        let code = self.code();
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = proto::ApiError {
            error: code,
            message: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}
