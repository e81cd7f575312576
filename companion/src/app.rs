//! The application: shared state and the router, callable by tests without a socket.

use crate::auth::{BearerToken, require_token};
use crate::config::{Config, MAX_TTL_LIMIT_SECONDS};
use crate::error::ApiError;
use crate::metrics::{Metrics, track};
use crate::routes::{health, revocations, sessions, users};
use crate::store::{Store, StoreError, data};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use proto::Timestamp;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;

/// How far past --max-ttl-seconds an announced revocation's `until` may lie.
pub const ANNOUNCE_SLACK_SECONDS: u64 = 300;

/// Limits every request is held to.
#[derive(Clone, Debug)]
pub struct Limits {
    pub default_ttl_seconds: u64,
    pub max_ttl_seconds: u64,
    pub max_data_bytes: usize,
}

impl Limits {
    /// The TTL a session gets: the default, or the one asked for if within bounds.
    pub fn ttl(&self, asked: Option<u64>) -> Result<u64, ApiError> {
        match asked {
            None => Ok(self.default_ttl_seconds),
            Some(ttl) if (1..=self.max_ttl_seconds).contains(&ttl) => Ok(ttl),
            Some(_) => Err(ApiError::BadRequest(format!(
                "ttl_seconds must be between 1 and {}",
                self.max_ttl_seconds
            ))),
        }
    }

    /// A session's own absolute lifetime, if asked and within bounds (1 s to 100 years, the
    /// bound every timestamp the API shows stays within).
    pub fn absolute_ttl(&self, asked: Option<u64>) -> Result<Option<u64>, ApiError> {
        match asked {
            None => Ok(None),
            Some(seconds) if (1..=MAX_TTL_LIMIT_SECONDS).contains(&seconds) => Ok(Some(seconds)),
            Some(_) => Err(ApiError::BadRequest(format!(
                "absolute_ttl_seconds must be between 1 and {MAX_TTL_LIMIT_SECONDS}"
            ))),
        }
    }

    /// The latest `until` an announced revocation may ask for: no session lives longer than
    /// --max-ttl-seconds, and the slack absorbs clocks a little apart.
    pub fn check_announced_until(
        &self,
        until: &Timestamp,
        now: &Timestamp,
    ) -> Result<(), ApiError> {
        let latest = i128::from(self.max_ttl_seconds.saturating_add(ANNOUNCE_SLACK_SECONDS))
            .saturating_mul(1_000_000_000)
            .saturating_add(now.unix_nanos());
        if until.unix_nanos() > latest {
            return Err(ApiError::BadRequest(format!(
                "until must be at most --max-ttl-seconds ({} s) plus {ANNOUNCE_SLACK_SECONDS} s from now",
                self.max_ttl_seconds
            )));
        }
        Ok(())
    }

    pub fn check_data(&self, data: &Map<String, Value>) -> Result<(), ApiError> {
        let size = data::json_size(data);
        if size > self.max_data_bytes {
            Err(self.too_large(size))
        } else {
            Ok(())
        }
    }

    pub fn too_large(&self, size: usize) -> ApiError {
        ApiError::PayloadTooLarge(format!(
            "session data of {size} bytes is over the {}-byte limit",
            self.max_data_bytes
        ))
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// `None` only in the explicit insecure development mode.
    pub token: Option<BearerToken>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// Set once the indexes are known to exist; `/readyz` waits for it.
    pub indexes_ready: Arc<AtomicBool>,
}

impl AppState {
    /// Connects the store (lazily: the database may still be down) and sets up the state.
    pub async fn from_config(config: &Config) -> Result<Self, StoreError> {
        let store = Store::connect(
            &config.mongodb_uri,
            &config.database,
            config.store_settings(),
        )
        .await?;
        Ok(Self {
            store: Arc::new(store),
            token: config.token.as_deref().map(BearerToken::new),
            limits: Limits {
                default_ttl_seconds: config.default_ttl_seconds,
                max_ttl_seconds: config.max_ttl_seconds,
                max_data_bytes: config.max_data_bytes,
            },
            metrics: Arc::new(Metrics::default()),
            indexes_ready: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// The whole HTTP API.
pub fn build_app(state: AppState, request_timeout: Duration) -> Router {
    // Room for the largest data after JSON escaping, plus the rest of the body.
    let body_limit = state
        .limits
        .max_data_bytes
        .saturating_mul(4)
        .saturating_add(16 * 1024);
    let v1 = Router::new()
        .route("/v1/sessions", post(sessions::create))
        .route("/v1/sessions/seen", post(sessions::seen))
        .route(
            "/v1/sessions/{id}",
            get(sessions::get)
                .patch(sessions::patch)
                .delete(sessions::delete),
        )
        .route("/v1/sessions/{id}/cycle", post(sessions::cycle))
        .route(
            "/v1/users/{user}/sessions",
            get(users::list).delete(users::delete_all),
        )
        .route(
            "/v1/users/{user}/sessions/{handle}",
            delete(users::delete_one),
        )
        .route(
            "/v1/revocations",
            get(revocations::read).post(revocations::announce),
        )
        .route_layer(from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route_layer(from_fn_with_state(state.metrics.clone(), track))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .with_state(state)
}
