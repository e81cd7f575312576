//! `edge-session-companion`: configuration, logging, serve (or, with `healthcheck`, probe).

use clap::Parser;
use companion::config::Command;
use companion::server::{run, shutdown_signal};
use companion::{Config, healthcheck};
use std::process::ExitCode;
use std::time::Duration;
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
    if let Some(Command::Healthcheck { timeout_ms }) = config.command {
        return match healthcheck::check(config.listen, Duration::from_millis(timeout_ms)).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("edge-session-companion healthcheck: {err}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(err) = config.validate() {
        eprintln!("edge-session-companion: {err}");
        return ExitCode::from(2);
    }
    if config.token.is_none() {
        tracing::warn!(
            "running WITHOUT a token (--insecure-no-token): anyone who reaches this port owns every session"
        );
    }
    if let Some(weakness) = config.accepted_weak_token() {
        tracing::warn!(
            token = %weakness,
            "running with a WEAK token because of --allow-development-secrets (COMPANION_ALLOW_DEVELOPMENT_SECRETS): development only; generate one with `openssl rand -hex 24`"
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
