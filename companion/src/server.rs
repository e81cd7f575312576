//! Running the service: indexes ensured (retried in the background while the database is
//! down), the listener served, and a graceful shutdown with a deadline.

use crate::app::{AppState, build_app};
use crate::config::Config;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot set up the database client: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Ensures the indexes, retrying with backoff until the database answers, then marks the
/// service ready. Requests are served meanwhile; reads and writes work as soon as the
/// database does.
pub fn ensure_indexes_in_background(state: &AppState) {
    let store = state.store.clone();
    let ready = state.indexes_ready.clone();
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(200);
        loop {
            match store.ensure_indexes().await {
                Ok(()) => {
                    ready.store(true, Ordering::Release);
                    tracing::info!("indexes ensured");
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "cannot ensure indexes yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    });
}

/// Serves the API on an already bound listener (tests and embedding; no shutdown handling).
pub async fn serve_listener(
    listener: TcpListener,
    state: AppState,
    request_timeout: Duration,
) -> std::io::Result<()> {
    axum::serve(listener, build_app(state, request_timeout)).await
}

/// Serves until `shutdown` resolves, then gives in-flight requests the grace period.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let state = AppState::from_config(&config).await?;
    ensure_indexes_in_background(&state);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.listen,
            source,
        })?;
    tracing::info!(addr = %config.listen, database = %config.database, collection = %config.collection, "listening");
    let app = build_app(state, config.request_timeout());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        tracing::info!("shutting down");
    });
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let deadline = async move {
        let mut stop_rx = stop_rx;
        while !*stop_rx.borrow() {
            if stop_rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result.map_err(RunError::Serve),
        () = deadline => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still open after the grace period; exiting");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
