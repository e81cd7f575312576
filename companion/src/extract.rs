//! Request extractors whose failures answer in the API's own `{error, message}` shape.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use proto::{SessionHandle, SessionId};
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

/// A JSON body that may be left out: an empty (or all-whitespace) body is `T::default()`.
/// For calls whose body came later than the call itself (a cycle), so callers that send
/// none go on working. Unlike `ApiJson` it does not ask for a JSON content type.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge("request body too large".into())
                } else {
                    ApiError::BadRequest(rejection.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| ApiError::BadRequest(format!("Failed to deserialize the JSON body: {e}")))
    }
}

/// A query string; anything it cannot be parsed into is 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
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

/// A user id and a session handle from the path, both checked before any database call.
pub struct UserHandlePath(pub String, pub SessionHandle);

impl<S: Send + Sync> FromRequestParts<S> for UserHandlePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((user, handle)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(path_error)?;
        check_user(&user)?;
        Ok(Self(user, parse_handle(&handle)?))
    }
}

/// A session handle from the network.
pub fn parse_handle(text: &str) -> Result<SessionHandle, ApiError> {
    SessionHandle::parse(text).map_err(|e| ApiError::BadRequest(e.to_string()))
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
