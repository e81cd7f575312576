//! The edge-session companion: the session API (docs/architecture.md, "Companion API") over
//! MongoDB (docs/architecture.md, "Session storage").

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod healthcheck;
pub mod ids;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod store;

pub use app::{AppState, build_app};
pub use config::Config;
