//! Request extractors whose failures answer in the API's own `{error, message}` shape.

use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use proto::SessionId;
use serde::de::DeserializeOwned;

/// A JSON body; malformed is 400, over the body limit is 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("request body too large".into())
    } else {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// A session id from the path, refused with 400 before any database call.
pub struct IdPath(pub SessionId);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(path_error)?;
        SessionId::parse(&raw)
            .map(Self)
            .map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

/// A user id from the path, by `check_user`'s rule.
pub struct UserPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(path_error)?;
        check_user(&raw)?;
        Ok(Self(raw))
    }
}

fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::BadRequest(rejection.body_text())
}

/// A user id by the rule the filter also applies (`proto::valid_user`).
pub fn check_user(user: &str) -> Result<(), ApiError> {
    if !proto::valid_user(user) {
        return Err(ApiError::BadRequest(format!(
            "a user id is 1 to {} bytes without control characters",
            proto::MAX_USER_BYTES
        )));
    }
    Ok(())
}
