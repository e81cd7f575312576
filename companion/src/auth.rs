//! Bearer-token authentication of `/v1`, compared in constant time.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The expected token, kept as its SHA-256 so comparing takes the same time whatever the
/// length of what a client sends.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl BearerToken {
    pub fn new(token: &str) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// Lets a request through only with `Authorization: Bearer <token>`; with no token
/// configured (the explicit insecure dev mode) everything passes.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.token {
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or_default();
        if !expected.matches(presented) {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = BearerToken::new("s3cret");
        assert!(token.matches(b"s3cret"));
        for bad in [&b""[..], b"s3cre", b"s3cret ", b"S3CRET", b"s3crets"] {
            assert!(!token.matches(bad), "{bad:?}");
        }
    }

    /// The comparison is of two SHA-256 digests with `subtle`, so its time does not depend
    /// on where a guess first differs; a guess differing in the first or the last of the
    /// same number of bytes is refused alike.
    #[test]
    fn same_length_guesses_are_refused_wherever_they_differ() {
        let secret = "0123456789abcdef0123456789abcdef01234567";
        let token = BearerToken::new(secret);
        assert!(token.matches(secret.as_bytes()));
        for at in [0, secret.len() / 2, secret.len() - 1] {
            let mut guess = secret.as_bytes().to_vec();
            guess[at] ^= 1;
            assert!(!token.matches(&guess), "differs at {at}");
        }
        assert!(!token.matches(&secret.as_bytes()[..secret.len() - 1]));
    }
}
