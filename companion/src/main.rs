//! `edge-session-companion`: configuration, logging, serve.

use clap::Parser;
use companion::Config;
use companion::server::{run, shutdown_signal};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    if let Err(err) = config.validate() {
        eprintln!("edge-session-companion: {err}");
        return ExitCode::from(2);
    }
    if config.token.is_none() {
        tracing::warn!(
            "running WITHOUT a token (--insecure-no-token): anyone who reaches this port owns every session"
        );
    }
    match run(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "exiting");
            ExitCode::FAILURE
        }
    }
}
